//! Runs jobs through the control node's receptor.
//!
//! One task per job: build the payload, check the node is reachable, submit following the
//! crash-safe protocol (status `submitting`; unit tagged with the job id; unit id stored the
//! moment receptor names it, before the payload is streamed; `ttl` on remote submits), then read
//! `work results` from the stored byte offset, store events with the offset they were parsed up
//! to, set the final status and release the unit.

mod after;
pub mod cancel;
pub mod failpoint;
mod follow;
pub mod outcome;
pub mod payload;
pub mod project_update;
pub mod reconcile;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use meshrun_shared::control_socket::{ControlClient, SubmitRequest};
use meshrun_shared::node_type::{WORK_TYPE_EXECUTION, WORK_TYPE_LOCAL};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::config::CoordinatorConfig;
use crate::events_bus::EventsBus;
use crate::mesh;
use crate::projects::ProjectStore;
use crate::store::{Job, JobStatus, StatusChange, Store};
use outcome::Outcome;

/// How long a submit waits for a routable node's first advertisement.
const ADVERTISEMENT_WAIT: std::time::Duration = std::time::Duration::from_secs(15);
/// The extra submit key that tags a unit with its job id (shown by `work list`).
pub const JOB_TAG_KEY: &str = "meshrun_job";

/// Everything a job task needs.
#[derive(Debug, Clone)]
pub struct JobRunner {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    store: Store,
    projects: ProjectStore,
    bus: EventsBus,
    socket: PathBuf,
    jobs_dir: PathBuf,
    artifacts_dir: PathBuf,
    project_cache: PathBuf,
    submit_ttl: String,
    tls_client: Option<String>,
    keepalive_secs: u32,
    shutdown: CancellationToken,
    scheduler_wake: Arc<Notify>,
}

/// A failure that ends a job as `error`.
#[derive(Debug)]
struct JobFailure {
    explanation: String,
    traceback: String,
}

impl JobFailure {
    fn new(explanation: impl Into<String>) -> Self {
        JobFailure {
            explanation: explanation.into(),
            traceback: String::new(),
        }
    }
}

impl JobRunner {
    /// A runner using `config`'s socket and data dir.
    pub fn new(
        config: &CoordinatorConfig,
        store: Store,
        projects: ProjectStore,
        bus: EventsBus,
        shutdown: CancellationToken,
        scheduler_wake: Arc<Notify>,
    ) -> Self {
        JobRunner {
            inner: Arc::new(Inner {
                store,
                projects,
                bus,
                socket: config.receptor_socket.clone(),
                jobs_dir: config.data_dir.join("jobs"),
                artifacts_dir: config.data_dir.join("artifacts"),
                project_cache: config.data_dir.join(crate::config::PROJECT_CACHE_DIR),
                submit_ttl: config.submit_ttl.clone(),
                tls_client: config.tls_client.clone(),
                keepalive_secs: config.node_loss.keepalive_secs,
                shutdown,
                scheduler_wake,
            }),
        }
    }

    /// The project archives jobs run from.
    pub fn projects(&self) -> &ProjectStore {
        &self.inner.projects
    }

    /// Starts a task for a job the scheduler placed (`waiting`).
    pub fn spawn(&self, job_id: i64) {
        let runner = self.clone();
        tokio::spawn(async move { runner.run(job_id).await });
    }

    /// Picks up jobs a previous coordinator process left behind: each `waiting`, `submitting`
    /// and `running` job is reconciled with the control node's `work list` by its tag (see
    /// [`reconcile`]).
    pub async fn resume_all(&self) -> Result<(), crate::store::StoreError> {
        // Log an armed test failpoint at start rather than at its first use.
        failpoint::armed();
        for job in self.inner.store.jobs_in(&JobStatus::ACTIVE).await? {
            // The scheduler places pending jobs.
            if job.status != JobStatus::Pending {
                let runner = self.clone();
                tokio::spawn(async move { runner.reconcile(job).await });
            }
        }
        Ok(())
    }

    async fn run(&self, job_id: i64) {
        let job = match self.inner.store.job(job_id).await {
            Ok(Some(job)) if job.status == JobStatus::Waiting => job,
            Ok(_) => return,
            Err(e) => {
                tracing::error!(job_id, error = %e, "cannot load job");
                return;
            }
        };
        match self.submit(&job).await {
            Ok(job) => self.finish_running(job).await,
            Err(failure) => self.fail(&job, failure).await,
        }
    }

    /// Everything up to a running unit. Returns the job as stored after `running`.
    async fn submit(&self, job: &Job) -> Result<Job, JobFailure> {
        let inner = &self.inner;
        let Some(node) = job.execution_node.clone() else {
            return Err(JobFailure::new(
                "the job was not placed on an execution node",
            ));
        };
        let job_dir = inner.jobs_dir.join(job.id.to_string());
        let stream_path = {
            let (projects, job2, dir) = (inner.projects.clone(), job.clone(), job_dir.clone());
            let cache = inner.project_cache.clone();
            tokio::task::spawn_blocking(move || payload::build(&projects, &cache, &job2, &dir))
                .await
                .map_err(|e| JobFailure::new(format!("payload task failed: {e}")))?
                .map_err(|e| JobFailure::new(e.to_string()))?
        };
        let mut control = self.connect().await?;
        let controller = control.node_id().to_string();
        let status = self.status_with_advertisement(&mut control, &node).await?;
        let Some(route) = mesh::route(&status, &node) else {
            let known = mesh::routable_nodes(&status).join(", ");
            return Err(JobFailure::new(format!(
                "Instance {node} is not in the receptor mesh: {controller} has no route to it \
                 (reachable now: {})",
                if known.is_empty() { "none" } else { &known }
            )));
        };
        let local = node == controller;
        let work_type = if local {
            WORK_TYPE_LOCAL
        } else {
            WORK_TYPE_EXECUTION
        };
        if let Some(types) = mesh::advertised_work_types(&status, &node)
            && !types.iter().any(|t| t == work_type)
        {
            return Err(JobFailure::new(format!(
                "Instance {node} does not offer work type {work_type} (it offers: {})",
                if types.is_empty() {
                    "none".to_string()
                } else {
                    types.join(", ")
                }
            )));
        }
        let mode = mesh::submit_mode(&status, &node, work_type);
        // With a tls_client every remote submit uses it, whatever the node advertises: a node
        // that serves `control` in plain text (an impostor, say) cannot downgrade the submit.
        let tlsclient = match (
            mode.tls || (!local && inner.tls_client.is_some()),
            &inner.tls_client,
        ) {
            (true, Some(name)) => Some(name.clone()),
            (true, None) => {
                return Err(JobFailure::new(format!(
                    "Instance {node}'s control service is TLS but the coordinator has no tls_client configured"
                )));
            }
            (false, _) => None,
        };
        let route_text = route.join(" -> ");
        let moved = inner
            .store
            .transition(
                job.id,
                &[JobStatus::Waiting],
                JobStatus::Submitting,
                &StatusChange {
                    controller_node: Some(&controller),
                    execution_node: Some(&node),
                    execution_route: Some(&route_text),
                    ..StatusChange::default()
                },
            )
            .await
            .map_err(|e| JobFailure::new(e.to_string()))?;
        if !moved {
            return Err(JobFailure::new(
                "the job changed status before it could be submitted",
            ));
        }
        inner.bus.changed(job.id);
        let request = SubmitRequest {
            node: node.clone(),
            worktype: work_type.to_string(),
            // The path names the job so that local units (which keep no extra keys) are
            // tagged too; the agent never uses the path itself.
            // Keepalive lines make silence mean a stalled worker (see `node_loss`).
            params: Some(format!(
                "--private-data-dir=/tmp/meshrun_{}_{} --delete{}",
                job.id,
                &uuid::Uuid::new_v4().simple().to_string()[..8],
                match inner.keepalive_secs {
                    0 => String::new(),
                    k => format!(" --keepalive-seconds={k}"),
                }
            )),
            tlsclient,
            ttl: (!local).then(|| inner.submit_ttl.clone()),
            signwork: mode.sign,
            extra: if local {
                BTreeMap::new()
            } else {
                BTreeMap::from([(JOB_TAG_KEY.to_string(), job.id.to_string())])
            },
        };
        let mut session = control
            .work_submit(&request)
            .await
            .map_err(|e| JobFailure::new(format!("receptor refused the submit: {e}")))?;
        failpoint::hit(failpoint::Failpoint::AbortAfterSubmit);
        inner
            .store
            .set_work_unit(job.id, &session.unit_id)
            .await
            .map_err(|e| JobFailure::new(e.to_string()))?;
        failpoint::half_payload_then_abort(&mut session, &stream_path).await;
        let mut file = tokio::fs::File::open(&stream_path)
            .await
            .map_err(|e| JobFailure::new(format!("cannot read the job payload: {e}")))?;
        session.copy_from(&mut file).await.map_err(|e| {
            JobFailure::new(format!("cannot stream the job payload to receptor: {e}"))
        })?;
        let result = session
            .finish()
            .await
            .map_err(|e| JobFailure::new(format!("receptor did not start the unit: {e}")))?;
        // The payload holds the job's secrets: keep it no longer than receptor needs it.
        let _ = tokio::fs::remove_file(&stream_path).await;
        tracing::info!(job_id = job.id, unit = %result.unit_id, node = %node, result = %result.result, "unit submitted");
        let started = inner
            .store
            .transition(
                job.id,
                &[JobStatus::Submitting],
                JobStatus::Running,
                &StatusChange {
                    stamp_started: true,
                    ..StatusChange::default()
                },
            )
            .await
            .map_err(|e| JobFailure::new(e.to_string()))?;
        if !started {
            // Ended meanwhile (node loss): its unit is left to whoever ended it.
            return Err(JobFailure::new(
                "the job was ended while it was being submitted",
            ));
        }
        inner.bus.changed(job.id);
        match inner.store.job(job.id).await {
            Ok(Some(job)) => Ok(job),
            _ => Err(JobFailure::new("the job vanished from the store")),
        }
    }

    /// Reads a running job's output to its end, stores the outcome and releases the unit.
    async fn finish_running(&self, job: Job) {
        let Some(unit) = job.work_unit_id.clone() else {
            return;
        };
        let job_dir = self.inner.jobs_dir.join(job.id.to_string());
        let followed = follow::follow(self, &job, &unit, &job_dir).await;
        let cancel_flag = match self.inner.store.job(job.id).await {
            Ok(Some(j)) => j.cancel_flag,
            _ => job.cancel_flag,
        };
        if self.inner.shutdown.is_cancelled() {
            // Leave the job running: the next coordinator process resumes it at its offset.
            return;
        }
        let (outcome, rc) = match followed {
            Ok(f) => {
                let mut outcome = outcome::decide(&f.end, cancel_flag);
                // As AWX: an error with no traceback of its own keeps the worker's last output.
                if outcome.status == JobStatus::Error && outcome.traceback.is_empty() {
                    outcome.traceback = f.tail;
                }
                if outcome.status == JobStatus::Successful
                    && let Err(explanation) = after::on_success(self, &job, &job_dir).await
                {
                    outcome = Outcome {
                        status: JobStatus::Error,
                        explanation,
                        traceback: String::new(),
                    };
                }
                (outcome, f.rc)
            }
            Err(failure) => (
                Outcome {
                    status: JobStatus::Error,
                    explanation: failure.explanation,
                    traceback: failure.traceback,
                },
                None,
            ),
        };
        let mut outcome = outcome::apply_cancel_flag(outcome, cancel_flag);
        if outcome.status == JobStatus::Canceled
            && let Ok(Some(reason)) = self.inner.store.cancel_reason(job.id).await
        {
            outcome.explanation = reason;
        }
        let stored = self
            .inner
            .store
            .transition(
                job.id,
                &[JobStatus::Running],
                outcome.status,
                &StatusChange {
                    job_explanation: Some(&outcome.explanation),
                    result_traceback: Some(&outcome.traceback),
                    rc,
                    ..StatusChange::default()
                },
            )
            .await;
        if let Err(e) = &stored {
            tracing::error!(job_id = job.id, error = %e, "cannot store the job's outcome");
        }
        if matches!(stored, Ok(false)) {
            // Someone else ended the job (node loss): its status and its unit are theirs.
            tracing::info!(
                job_id = job.id,
                "the job was ended elsewhere; leaving its unit to that"
            );
            let _ = tokio::fs::remove_dir_all(&job_dir).await;
            return;
        }
        self.inner.bus.changed(job.id);
        tracing::info!(job_id = job.id, status = %outcome.status, "job finished");
        self.inner.scheduler_wake.notify_one();
        self.release(&unit).await;
        self.keep_artifacts(job.id, &job_dir).await;
        let _ = tokio::fs::remove_dir_all(&job_dir).await;
    }

    /// Stores the job's artifacts (the worker's artifacts dir) as `artifacts/<id>.tar.zst`.
    async fn keep_artifacts(&self, job_id: i64, job_dir: &std::path::Path) {
        let src = job_dir.join("artifacts");
        if !src.is_dir() {
            return;
        }
        let dest_dir = self.inner.artifacts_dir.clone();
        let result = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            std::fs::create_dir_all(&dest_dir)?;
            let tmp = tempfile::NamedTempFile::new_in(&dest_dir)?;
            let file = std::io::BufWriter::new(tmp.reopen()?);
            crate::project_archive::pack(&src, file, crate::project_archive::DEFAULT_LEVEL)
                .map_err(std::io::Error::other)?;
            tmp.persist(dest_dir.join(format!("{job_id}.tar.zst")))
                .map_err(|e| e.error)?;
            Ok(())
        })
        .await;
        match result {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(job_id, error = %e, "cannot store the job's artifacts"),
            Err(e) => tracing::warn!(job_id, error = %e, "cannot store the job's artifacts"),
        }
    }

    /// Where a job's stored artifacts are, if it has any.
    pub fn artifacts_path(&self, job_id: i64) -> Option<std::path::PathBuf> {
        let p = self.inner.artifacts_dir.join(format!("{job_id}.tar.zst"));
        p.is_file().then_some(p)
    }

    async fn release(&self, unit: &str) {
        match self.connect().await {
            Ok(mut c) => {
                if let Err(e) = c.work_release(unit).await {
                    tracing::warn!(unit, error = %e, "cannot release work unit");
                }
            }
            Err(f) => tracing::warn!(unit, error = %f.explanation, "cannot release work unit"),
        }
    }

    /// Ends a job that cannot run (it is not placed yet) as `error` with `explanation`.
    pub async fn fail_pending(&self, job: &Job, explanation: String) {
        self.fail(job, JobFailure::new(explanation)).await;
    }

    async fn fail(&self, job: &Job, failure: JobFailure) {
        // A job whose cancel was requested meanwhile ends `canceled`: the failure is most
        // likely the cancel itself (e.g. its unit stopped while the payload was streamed).
        let canceled = self
            .inner
            .store
            .cancel_requested(job.id)
            .await
            .unwrap_or(false);
        let (status, explanation) = if canceled {
            let why = match self.inner.store.cancel_reason(job.id).await {
                Ok(Some(reason)) => reason,
                _ => outcome::CANCELED_ON_REQUEST.to_string(),
            };
            (
                JobStatus::Canceled,
                format!("{why} (before it ran: {})", failure.explanation),
            )
        } else {
            (JobStatus::Error, failure.explanation.clone())
        };
        let res = self
            .inner
            .store
            .transition(
                job.id,
                &[
                    JobStatus::Pending,
                    JobStatus::Waiting,
                    JobStatus::Submitting,
                ],
                status,
                &StatusChange {
                    job_explanation: Some(&explanation),
                    result_traceback: Some(&failure.traceback),
                    ..StatusChange::default()
                },
            )
            .await;
        match res {
            Ok(true) => {
                tracing::warn!(job_id = job.id, %status, explanation = %failure.explanation, "job ended before running");
            }
            // Already ended elsewhere (e.g. canceled while waiting): nothing to record.
            Ok(false) => {
                tracing::info!(job_id = job.id, explanation = %failure.explanation, "job not run: it had already ended");
            }
            Err(e) => {
                tracing::error!(job_id = job.id, error = %e, "cannot store the job's failure")
            }
        }
        if let Ok(Some(j)) = self.inner.store.job(job.id).await
            && let Some(unit) = j.work_unit_id
        {
            self.release(&unit).await;
        }
        self.inner.bus.changed(job.id);
        self.inner.scheduler_wake.notify_one();
        let _ = tokio::fs::remove_dir_all(self.inner.jobs_dir.join(job.id.to_string())).await;
    }

    /// The mesh status once `node` has advertised its work types (an unsigned submit to a node
    /// that verifies signatures is refused, and whether it verifies is only in its
    /// advertisement, which can arrive after the node becomes routable).
    async fn status_with_advertisement(
        &self,
        control: &mut ControlClient,
        node: &str,
    ) -> Result<meshrun_shared::control_socket::Status, JobFailure> {
        let deadline = tokio::time::Instant::now() + ADVERTISEMENT_WAIT;
        loop {
            let status = control
                .status()
                .await
                .map_err(|e| JobFailure::new(format!("cannot read the mesh status: {e}")))?;
            let routable = mesh::is_routable(&status, node);
            let advertised =
                node == status.node_id || mesh::advertised_work_types(&status, node).is_some();
            if !routable || advertised {
                return Ok(status);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(JobFailure::new(format!(
                    "Instance {node} is routable but has not advertised its work types within {} s",
                    ADVERTISEMENT_WAIT.as_secs()
                )));
            }
            tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        }
    }

    async fn connect(&self) -> Result<ControlClient, JobFailure> {
        ControlClient::connect_unix(&self.inner.socket)
            .await
            .map_err(|e| {
                JobFailure::new(format!(
                    "cannot reach the control node's receptor at {}: {e}",
                    self.inner.socket.display()
                ))
            })
    }
}
