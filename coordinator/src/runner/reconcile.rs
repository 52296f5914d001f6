//! Reconciles the jobs a previous coordinator process left active with the control node's
//! `work list`, found by their tag, so that a restart neither loses a job nor runs it twice.
//!
//! - `waiting` / `submitting`: the units tagged with the job (remote units carry
//!   `meshrun_job=<id>`; local units name `/tmp/meshrun_<id>_` in their params) are inspected.
//!   A finished command unit loses its params in `work list` (receptor 1.4.8 shows
//!   `"ExtraData": null`), so the unit id the job recorded (stored before the payload is sent)
//!   is a candidate too; a local unit named but not recorded got no payload byte, ran nothing,
//!   and is left to the reaper if it cannot be found.
//!   A unit whose output shows the playbook started (an event), or that ended without saying its
//!   payload was cut, is adopted: its id is recorded and it is followed from the stored offset.
//!   A unit that only reports a payload it could not read (receptor starts a unit with whatever
//!   bytes it got when the submitting connection drops, and ansible-runner then refuses it before
//!   running anything) is released. With no unit adopted, the job is submitted once.
//! - `running`: followed from its stored byte offset; a unit receptor no longer knows ends the
//!   job as `error` with an explanation.

use std::collections::BTreeMap;
use std::time::Duration;

use meshrun_shared::control_socket::{ControlError, UnitStatus};
use meshrun_shared::runner_stream::decode::{DecoderLimits, Frame, StreamDecoder};
use serde_json::Value;
use tokio::io::AsyncReadExt;

use super::{JOB_TAG_KEY, JobFailure, JobRunner};
use crate::store::{Job, JobStatus, StatusChange};

/// How long a found unit may take to show whether its payload arrived whole.
const EVIDENCE_PATIENCE: Duration = Duration::from_secs(600);
const EVIDENCE_POLL: Duration = Duration::from_secs(1);
/// Output read to judge a unit; a refused payload produces a few hundred bytes.
const PEEK_BYTES: u64 = 256 * 1024;
/// How long a restarted coordinator retries reaching receptor for `work list`.
const LIST_PATIENCE: Duration = Duration::from_secs(60);

/// What ansible-runner's worker (and meshrun-agent in podman mode) say when the payload they
/// were given is cut short; they say it before running anything.
const REFUSED_PAYLOAD: [&str; 4] = [
    "Failed to JSON parse a line from transmit stream",
    "Failed to extract private data directory on worker",
    "meshrun-agent cannot read the job",
    "meshrun-agent refused the job: the kwargs line",
];

/// Whether `unit` was submitted for job `job_id`.
pub fn names_job(unit: &UnitStatus, job_id: i64) -> bool {
    if unit.remote_param(JOB_TAG_KEY) == Some(job_id.to_string().as_str()) {
        return true;
    }
    let marker = format!("/tmp/meshrun_{job_id}_");
    let params = unit
        .remote_param("params")
        .or_else(|| unit.extra_data.get("Params").and_then(Value::as_str));
    params.is_some_and(|p| p.contains(&marker))
}

/// The units of `list` submitted for job `job_id`, by unit id.
pub fn job_units(list: &BTreeMap<String, UnitStatus>, job_id: i64) -> Vec<(String, UnitStatus)> {
    list.iter()
        .filter(|(_, u)| names_job(u, job_id))
        .map(|(id, u)| (id.clone(), u.clone()))
        .collect()
}

/// The units that may hold job `job`'s submit: those named for it, and the unit id it
/// recorded if receptor still lists it.
pub fn candidates(
    list: &BTreeMap<String, UnitStatus>,
    job_id: i64,
    recorded: Option<&str>,
) -> Vec<String> {
    let mut units: Vec<String> = job_units(list, job_id)
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    if let Some(id) = recorded
        && list.contains_key(id)
        && !units.iter().any(|u| u == id)
    {
        units.push(id.to_string());
    }
    units
}

/// What a unit's state and output say about its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Evidence {
    /// The job ran (or may have): follow this unit, never submit again.
    Ran,
    /// The worker refused a cut payload, or the unit expired before it started: nothing ran.
    NeverRan,
    /// Too early to tell.
    NotYet,
}

/// Judges a unit from its status and the first bytes of its output.
pub fn judge(status: &UnitStatus, output: &[u8]) -> Evidence {
    let mut decoder = StreamDecoder::new(DecoderLimits::default());
    let mut events = 0usize;
    let mut refused = false;
    let mut sink = |frame: Frame| -> Result<(), std::convert::Infallible> {
        match frame {
            Frame::Event(map) if map.get("counter").and_then(Value::as_i64) > Some(0) => {
                events += 1;
            }
            Frame::Status(map) => {
                let explanation = map
                    .get("job_explanation")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                if map.get("status").and_then(Value::as_str) == Some("error")
                    && REFUSED_PAYLOAD.iter().any(|r| explanation.starts_with(r))
                {
                    refused = true;
                }
            }
            _ => {}
        }
        Ok(())
    };
    // A cut or odd stream is judged on the frames before the problem.
    let _ = decoder.push(output, &mut sink);
    if events > 0 {
        return Evidence::Ran;
    }
    if status.state.is_final() {
        let expired = output.is_empty() && status.detail.to_lowercase().contains("expired");
        return if refused || expired {
            Evidence::NeverRan
        } else {
            Evidence::Ran
        };
    }
    Evidence::NotYet
}

impl JobRunner {
    /// Reconciles one job a previous coordinator process left active.
    pub(super) async fn reconcile(&self, job: Job) {
        let list = match self.list_units().await {
            Ok(list) => list,
            // A running unit is followed anyway (following retries reaching receptor).
            Err(_) if job.status == JobStatus::Running => {
                self.finish_running(job).await;
                return;
            }
            Err(failure) => {
                self.fail(&job, failure).await;
                return;
            }
        };
        match job.status {
            JobStatus::Waiting | JobStatus::Submitting => self.reconcile_submit(job, &list).await,
            JobStatus::Running => self.reconcile_running(job, &list).await,
            _ => {}
        }
    }

    async fn list_units(&self) -> Result<BTreeMap<String, UnitStatus>, JobFailure> {
        let deadline = tokio::time::Instant::now() + LIST_PATIENCE;
        loop {
            let attempt = match self.connect().await {
                Ok(mut c) => c.work_list().await.map_err(|e| {
                    JobFailure::new(format!("cannot read the control node's work list: {e}"))
                }),
                Err(f) => Err(f),
            };
            match attempt {
                Ok(list) => return Ok(list),
                Err(f) if tokio::time::Instant::now() >= deadline => return Err(f),
                Err(_) => tokio::time::sleep(Duration::from_secs(1)).await,
            }
        }
    }

    async fn reconcile_submit(&self, job: Job, list: &BTreeMap<String, UnitStatus>) {
        let mut adopted: Option<String> = None;
        for unit in candidates(list, job.id, job.work_unit_id.as_deref()) {
            let evidence = match self.wait_evidence(&unit).await {
                Ok(e) => e,
                // The next coordinator process reconciles it again.
                Err(_) if self.inner.shutdown.is_cancelled() => return,
                Err(failure) => {
                    self.fail(&job, failure).await;
                    return;
                }
            };
            match (evidence, &adopted) {
                (Evidence::Ran, None) => {
                    tracing::info!(job_id = job.id, unit = %unit, "adopting the unit an interrupted submit created");
                    adopted = Some(unit);
                }
                (Evidence::Ran, Some(first)) => {
                    tracing::error!(job_id = job.id, unit = %unit, adopted = %first, "a second unit ran this job; releasing it");
                    self.release(&unit).await;
                }
                _ => {
                    tracing::info!(job_id = job.id, unit = %unit, "releasing a unit whose payload was cut short; nothing ran");
                    self.release(&unit).await;
                }
            }
        }
        let Some(unit) = adopted else {
            // Nothing ran: submit once, from `waiting` as a fresh placement would.
            if job.status == JobStatus::Submitting {
                let moved = self
                    .inner
                    .store
                    .transition(
                        job.id,
                        &[JobStatus::Submitting],
                        JobStatus::Waiting,
                        &StatusChange::default(),
                    )
                    .await;
                if !matches!(moved, Ok(true)) {
                    tracing::warn!(job_id = job.id, "cannot move the job back to waiting");
                    return;
                }
            }
            tracing::info!(job_id = job.id, "no unit ran the job; submitting it once");
            self.run(job.id).await;
            return;
        };
        let store = &self.inner.store;
        let adopted = async {
            store.set_work_unit(job.id, &unit).await?;
            store
                .transition(
                    job.id,
                    &[JobStatus::Waiting, JobStatus::Submitting],
                    JobStatus::Running,
                    &StatusChange {
                        stamp_started: true,
                        ..StatusChange::default()
                    },
                )
                .await?;
            store.job(job.id).await
        }
        .await;
        match adopted {
            Ok(Some(job)) if job.status == JobStatus::Running => {
                self.inner.bus.changed(job.id);
                self.finish_running(job).await;
            }
            Ok(_) => tracing::warn!(
                job_id = job.id,
                "the job changed status while it was reconciled"
            ),
            Err(e) => self.fail(&job, JobFailure::new(e.to_string())).await,
        }
    }

    /// Polls `unit` until its state and output show whether the payload arrived whole.
    async fn wait_evidence(&self, unit: &str) -> Result<Evidence, JobFailure> {
        let deadline = tokio::time::Instant::now() + EVIDENCE_PATIENCE;
        loop {
            let mut control = self.connect().await?;
            let status = match control.work_status(unit).await {
                Ok(s) => s,
                Err(ControlError::UnknownUnit(_)) => {
                    return Err(JobFailure::new(format!(
                        "unit {unit}, created for this job before the coordinator restarted, \
                         vanished from receptor before it could be inspected"
                    )));
                }
                Err(e) => {
                    return Err(JobFailure::new(format!(
                        "cannot read the status of unit {unit}: {e}"
                    )));
                }
            };
            let output = if status.stdout_size > 0 {
                self.peek_output(unit, status.stdout_size.min(PEEK_BYTES))
                    .await?
            } else {
                Vec::new()
            };
            match judge(&status, &output) {
                Evidence::NotYet => {}
                decided => return Ok(decided),
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(JobFailure::new(format!(
                    "unit {unit}, created for this job before the coordinator restarted, showed \
                     no sign of running within {} s (state {})",
                    EVIDENCE_PATIENCE.as_secs(),
                    status.state_name
                )));
            }
            tokio::select! {
                _ = tokio::time::sleep(EVIDENCE_POLL) => {}
                _ = self.inner.shutdown.cancelled() => {
                    return Err(JobFailure::new("the coordinator is shutting down"));
                }
            }
        }
    }

    /// The first `len` bytes of `unit`'s output (which exist already).
    async fn peek_output(&self, unit: &str, len: u64) -> Result<Vec<u8>, JobFailure> {
        let control = self.connect().await?;
        let mut results = control
            .work_results(unit, 0)
            .await
            .map_err(|e| JobFailure::new(format!("cannot read unit {unit}'s output: {e}")))?;
        let want = usize::try_from(len).unwrap_or(usize::MAX);
        let mut out = Vec::with_capacity(want);
        let mut buf = vec![0u8; 64 * 1024];
        while out.len() < want {
            let n = results
                .read(&mut buf)
                .await
                .map_err(|e| JobFailure::new(format!("cannot read unit {unit}'s output: {e}")))?;
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n.min(want - out.len())]);
        }
        Ok(out)
    }

    async fn reconcile_running(&self, job: Job, list: &BTreeMap<String, UnitStatus>) {
        let Some(unit) = job.work_unit_id.clone() else {
            self.fail_running(&job, "the job was running without a recorded unit".into())
                .await;
            return;
        };
        if !list.contains_key(&unit) {
            let node = job.execution_node.as_deref().unwrap_or("?");
            let explanation = format!(
                "unit {unit} (on {node}) is no longer known to the control node's receptor: it \
                 was released or lost while the coordinator was down; output was stored up to \
                 byte {}",
                job.result_offset
            );
            self.fail_running(&job, explanation).await;
            return;
        }
        tracing::info!(job_id = job.id, unit = %unit, offset = job.result_offset, "re-attaching to a running unit");
        self.finish_running(job).await;
    }

    /// Ends a running job as `error` without its unit (which is gone).
    async fn fail_running(&self, job: &Job, explanation: String) {
        tracing::warn!(job_id = job.id, explanation = %explanation, "running job lost");
        let res = self
            .inner
            .store
            .transition(
                job.id,
                &[JobStatus::Running],
                JobStatus::Error,
                &StatusChange {
                    job_explanation: Some(&explanation),
                    ..StatusChange::default()
                },
            )
            .await;
        if let Err(e) = res {
            tracing::error!(job_id = job.id, error = %e, "cannot store the job's failure");
        }
        self.inner.bus.changed(job.id);
        self.inner.scheduler_wake.notify_one();
        let _ = tokio::fs::remove_dir_all(self.inner.jobs_dir.join(job.id.to_string())).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use meshrun_shared::control_socket::UnitState;

    /// `work list` of a control node, captured from receptor 1.4.8 (unit ids and job numbers
    /// edited): a remote unit of job 7 still Pending on the control side while exec1 runs it, a
    /// finished remote unit of job 71, a running local unit of job 12, a health-check unit and a
    /// finished local unit, whose params receptor no longer shows.
    const WORK_LIST: &str = include_str!("testdata/work_list.json");

    fn list() -> BTreeMap<String, UnitStatus> {
        serde_json::from_str(WORK_LIST).expect("work list sample")
    }

    fn ids(units: &[(String, UnitStatus)]) -> Vec<&str> {
        units.iter().map(|(id, _)| id.as_str()).collect()
    }

    #[test]
    fn remote_units_are_found_by_their_tag() {
        let list = list();
        assert_eq!(ids(&job_units(&list, 7)), ["RemoteJob7"]);
        assert_eq!(ids(&job_units(&list, 71)), ["RemoteJob71"]);
        // Job 1 is a prefix of 12 and 71 but owns no unit.
        assert!(job_units(&list, 1).is_empty());
    }

    #[test]
    fn local_units_are_found_by_their_private_data_dir() {
        let list = list();
        assert_eq!(ids(&job_units(&list, 12)), ["LocalJob12"]);
        assert!(job_units(&list, 2).is_empty());
    }

    #[test]
    fn the_recorded_unit_counts_even_when_receptor_dropped_its_params() {
        let list = list();
        assert_eq!(candidates(&list, 5, Some("LocalDone")), ["LocalDone"]);
        // Not listed (released): not a candidate.
        assert!(candidates(&list, 5, Some("Gone")).is_empty());
        // Named and recorded: once.
        assert_eq!(candidates(&list, 7, Some("RemoteJob7")), ["RemoteJob7"]);
    }

    #[test]
    fn health_checks_and_other_units_belong_to_no_job() {
        let list = list();
        for job in 0..100 {
            assert!(
                !job_units(&list, job)
                    .iter()
                    .any(|(id, _)| id == "HealthCheck" || id == "LocalDone"),
                "job {job}"
            );
        }
    }

    fn status(state: UnitState, detail: &str) -> UnitStatus {
        UnitStatus {
            state,
            state_name: String::new(),
            detail: detail.into(),
            stdout_size: 0,
            work_type: "remote".into(),
            extra_data: Value::Null,
        }
    }

    const REFUSED: &[u8] = b"{\"status\": \"error\", \"job_explanation\": \"Failed to JSON parse a line from transmit stream.\"}\n{\"eof\": true}\n";
    const REFUSED_ZIP: &[u8] = b"{\"status\": \"error\", \"job_explanation\": \"Failed to extract private data directory on worker.\", \"result_traceback\": \"zipfile.BadZipFile\"}\n{\"eof\": true}\n";
    const STARTED: &[u8] = b"{\"status\": \"starting\"}\n{\"uuid\": \"u1\", \"counter\": 1, \"event\": \"playbook_on_start\", \"stdout\": \"\"}\n";

    #[test]
    fn a_refused_payload_never_ran() {
        assert_eq!(
            judge(&status(UnitState::Failed, "exit status 1"), REFUSED),
            Evidence::NeverRan
        );
        assert_eq!(
            judge(&status(UnitState::Failed, "exit status 1"), REFUSED_ZIP),
            Evidence::NeverRan
        );
        // Expired before the remote node started it.
        assert_eq!(
            judge(&status(UnitState::Failed, "Work unit expired on Fri"), b""),
            Evidence::NeverRan
        );
    }

    #[test]
    fn an_event_means_it_ran_whatever_the_state() {
        assert_eq!(
            judge(&status(UnitState::Running, ""), STARTED),
            Evidence::Ran
        );
        // A cut final line does not hide the event before it.
        let mut cut = STARTED.to_vec();
        cut.extend_from_slice(b"{\"uuid\": \"u2\", \"coun");
        assert_eq!(judge(&status(UnitState::Running, ""), &cut), Evidence::Ran);
    }

    #[test]
    fn a_finished_unit_with_other_output_is_followed_not_resubmitted() {
        let failed =
            b"{\"status\": \"error\", \"job_explanation\": \"podman failed\"}\n{\"eof\": true}\n";
        assert_eq!(
            judge(&status(UnitState::Failed, "exit status 1"), failed),
            Evidence::Ran
        );
        assert_eq!(
            judge(&status(UnitState::Succeeded, "exit status 0"), b""),
            Evidence::Ran
        );
        assert_eq!(judge(&status(UnitState::Canceled, ""), b""), Evidence::Ran);
    }

    #[test]
    fn a_unit_that_has_not_shown_anything_yet_is_waited_for() {
        assert_eq!(
            judge(&status(UnitState::Pending, ""), b""),
            Evidence::NotYet
        );
        assert_eq!(
            judge(&status(UnitState::Running, ""), b""),
            Evidence::NotYet
        );
        assert_eq!(
            judge(
                &status(UnitState::Running, ""),
                b"{\"status\": \"starting\"}\n"
            ),
            Evidence::NotYet
        );
    }
}
