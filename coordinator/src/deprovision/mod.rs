//! Deprovisioning: the loop that carries out `meshrun instances remove NODE`.
//!
//! The API only records the removal ([`Store::begin_deprovision`]: the instance becomes
//! `deprovisioning` and disabled, so the scheduler places nothing more on it; a deadline is
//! stored). Everything else happens here, every [`PERIOD`], from what the store holds — so a
//! removal survives a coordinator restart, and asking twice does nothing twice:
//! - pending jobs pinned to the node end `error`, saying the node is being removed;
//! - jobs running on it finish normally until the deadline; the ones still running then are
//!   canceled through the job runner's cancel path, with an explanation naming the removal;
//! - once no job is bound to it, its units meshrun owns (of ended jobs, of health checks) are
//!   released on the control node, which releases them on the node too (forced when the node
//!   cannot be told for [`FORCE_AFTER`]);
//! - then its instance row is deleted and a tombstone written in one transaction: discovery
//!   does not register the node again while its receptor still runs, and certificate renewal
//!   refuses it (no row). Jobs keep their `execution_node` text.
//!
//! # Layout
//! - [`plan`]: the pure decision of the next step for one node.
//! - this module: the store reads and writes, the receptor calls, the loop.

pub mod plan;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use meshrun_shared::control_socket::{ControlClient, ControlError, ReleaseOutcome, UnitStatus};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::CoordinatorConfig;
use crate::discovery::reconcile::parse_stamp;
use crate::health::check::HEALTH_TAG_KEY;
use crate::reaper::claim::{self, Claim};
use crate::runner::JobRunner;
use crate::store::{Deprovision, DeprovisionCount, Store, StoreError};
use plan::{ActiveJob, NodeUnit, Snapshot, UnitOwner};

/// How often removals in progress are looked at.
pub const PERIOD: Duration = Duration::from_secs(2);
/// How long a release may stay pending (the node cannot be told) before it is forced.
pub const FORCE_AFTER: Duration = Duration::from_secs(20);

/// The explanation of a pending job pinned to a node being removed.
pub fn pinned_explanation(hostname: &str) -> String {
    format!(
        "Instance {hostname} is being removed (meshrun instances remove) and this job was pinned \
         to it (execution_node); it was not run. Submit it again without execution_node, or for \
         another node."
    )
}

/// The explanation of a job canceled because it still ran on a node at its removal deadline.
pub fn canceled_explanation(hostname: &str, deadline: &str) -> String {
    format!(
        "Canceled because instance {hostname} is being removed (meshrun instances remove) and \
         the job was still running there at the removal deadline ({deadline})."
    )
}

/// Why one pass stopped (the next one starts again).
#[derive(Debug, thiserror::Error)]
pub enum DeprovisionError {
    /// The store refused a read or write.
    #[error("deprovisioning: {0}")]
    Store(#[from] StoreError),
    /// The control node's receptor could not be asked.
    #[error("deprovisioning: cannot list the control node's work units: {0}")]
    Receptor(#[from] ControlError),
}

/// Everything the loop needs.
#[derive(Debug, Clone)]
pub struct DeprovisionDeps {
    /// The store.
    pub store: Store,
    /// Cancels jobs and ends pinned ones.
    pub runner: JobRunner,
    /// Stops the loop.
    pub shutdown: CancellationToken,
}

/// The loop's memory between passes (only for pacing and logs: the state is in the store).
struct Deprovisioner {
    deps: DeprovisionDeps,
    socket: PathBuf,
    /// When each unit's release was first answered "pending".
    pending_since: HashMap<String, Instant>,
    /// (node, phase) pairs already logged.
    logged: HashSet<(String, &'static str)>,
}

/// Starts the loop; it ends when `deps.shutdown` is cancelled.
pub fn start(config: &CoordinatorConfig, deps: DeprovisionDeps) -> JoinHandle<()> {
    let shutdown = deps.shutdown.clone();
    let mut d = Deprovisioner {
        deps,
        socket: config.receptor_socket.clone(),
        pending_since: HashMap::new(),
        logged: HashSet::new(),
    };
    tokio::spawn(async move {
        let mut failing = false;
        loop {
            match d.pass().await {
                Ok(()) => failing = false,
                Err(e) if !failing => {
                    tracing::warn!(error = %e, "deprovisioning pass failed; retrying");
                    failing = true;
                }
                Err(e) => tracing::debug!(error = %e, "deprovisioning pass failed again"),
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(PERIOD) => {}
            }
        }
    })
}

/// Whether `status` is a unit on `hostname` (remote units name their node; health checks are
/// also tagged with it).
fn on_node(status: &UnitStatus, hostname: &str) -> bool {
    status.remote_node() == Some(hostname) || status.remote_param(HEALTH_TAG_KEY) == Some(hostname)
}

impl Deprovisioner {
    async fn pass(&mut self) -> Result<(), DeprovisionError> {
        let removals = self.deps.store.deprovisions().await?;
        if removals.is_empty() {
            self.pending_since.clear();
            return Ok(());
        }
        let units = self.client().await?.work_list().await?;
        self.pending_since.retain(|u, _| units.contains_key(u));
        for dep in removals {
            if self.deps.shutdown.is_cancelled() {
                break;
            }
            self.step(&dep, &units).await?;
        }
        Ok(())
    }

    async fn step(
        &mut self,
        dep: &Deprovision,
        units: &std::collections::BTreeMap<String, UnitStatus>,
    ) -> Result<(), DeprovisionError> {
        let store = &self.deps.store.clone();
        let host = dep.hostname.as_str();
        let Some(deadline) = parse_stamp(&dep.deadline) else {
            return Err(StoreError::Invalid {
                what: "removal deadline",
                value: dep.deadline.clone(),
            }
            .into());
        };
        let pinned = store.pending_jobs_pinned_to(host).await?;
        let active = store.active_jobs_on(host).await?;
        let mut node_units = Vec::new();
        for (id, status) in units.iter().filter(|(_, s)| on_node(s, host)) {
            node_units.push(NodeUnit {
                id: id.clone(),
                owner: self.owner(id, status).await?,
            });
        }
        let snapshot = Snapshot {
            now: chrono::Utc::now(),
            deadline,
            pinned_pending: pinned.iter().map(|j| j.id).collect(),
            active: active
                .iter()
                .map(|j| ActiveJob {
                    id: j.id,
                    cancel_flag: j.cancel_flag,
                })
                .collect(),
            units: node_units,
        };
        let next = plan::step(&snapshot);

        if !next.draining.is_empty() && self.first(host, "draining") {
            tracing::info!(node = host, jobs = ?next.draining, deadline = %dep.deadline, "removing a node: draining; its running jobs may finish until the deadline");
        }
        for job in pinned.iter().filter(|j| next.fail_pending.contains(&j.id)) {
            self.deps
                .runner
                .fail_pending(job, pinned_explanation(host))
                .await;
            store
                .count_deprovision(host, DeprovisionCount::PendingFailed, 1)
                .await?;
        }
        if !next.cancel.is_empty() {
            tracing::info!(node = host, jobs = ?next.cancel, deadline = %dep.deadline, "removing a node: the deadline passed; canceling the jobs still running there");
        }
        let reason = canceled_explanation(host, &dep.deadline);
        for id in &next.cancel {
            match self.deps.runner.cancel_because(*id, &reason).await {
                Ok(crate::runner::cancel::Canceled::Requested(_))
                | Ok(crate::runner::cancel::Canceled::Ended(_)) => {
                    store
                        .count_deprovision(host, DeprovisionCount::JobsCanceled, 1)
                        .await?;
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(node = host, job_id = id, error = %e, "cannot cancel a job on a node being removed")
                }
            }
        }
        if !next.release.is_empty() && self.first(host, "releasing") {
            tracing::info!(
                node = host,
                units = next.release.len(),
                "removing a node: no job runs there any more; releasing its work units"
            );
        }
        for unit in &next.release {
            if self.release(host, unit, &units[unit]).await {
                store
                    .count_deprovision(host, DeprovisionCount::UnitsReleased, 1)
                    .await?;
            }
        }
        if next.finish
            && let Some(removed) = store.finish_deprovision(host).await?
        {
            self.logged.retain(|(h, _)| h != host);
            tracing::info!(
                node = host,
                pending_failed = removed.pending_failed,
                jobs_canceled = removed.jobs_canceled,
                units_released = removed.units_released,
                "node removed: instance deleted, tombstone written (discovery will not register it again)"
            );
        }
        Ok(())
    }

    /// Whether this is the first time `phase` of `host` is logged.
    fn first(&mut self, host: &str, phase: &'static str) -> bool {
        self.logged.insert((host.to_string(), phase))
    }

    /// Who `unit` belongs to: the job that recorded it, else what its tags say.
    async fn owner(&self, unit: &str, status: &UnitStatus) -> Result<UnitOwner, StoreError> {
        let store = &self.deps.store;
        let job = match store.job_by_work_unit(unit).await? {
            Some(job) => job,
            None => match claim::claim(status) {
                Claim::Job(id) => match store.job(id).await? {
                    Some(job) => job,
                    None => return Ok(UnitOwner::EndedJob(id)),
                },
                Claim::HealthCheck | Claim::LocalEnded => return Ok(UnitOwner::HealthCheck),
                Claim::Foreign => return Ok(UnitOwner::Foreign),
            },
        };
        Ok(if job.status.is_final() {
            UnitOwner::EndedJob(job.id)
        } else {
            UnitOwner::ActiveJob(job.id)
        })
    }

    /// Releases `unit` (forced after [`FORCE_AFTER`] pending, or when the release fails);
    /// returns whether this call removed it.
    async fn release(&mut self, host: &str, unit: &str, status: &UnitStatus) -> bool {
        let released = match self.client().await {
            Ok(mut c) => c.work_release(unit).await,
            Err(e) => Err(e),
        };
        let force = match released {
            Ok(ReleaseOutcome::Released) => {
                self.pending_since.remove(unit);
                tracing::info!(node = host, unit, state = %status.state_name, "released a work unit of a node being removed");
                return true;
            }
            // Released by its job's runner meanwhile.
            Err(ControlError::UnknownUnit(_)) => return false,
            Ok(ReleaseOutcome::Pending) => {
                let since = *self
                    .pending_since
                    .entry(unit.to_string())
                    .or_insert_with(Instant::now);
                since.elapsed() >= FORCE_AFTER
            }
            Err(e) => {
                tracing::warn!(node = host, unit, error = %e, "cannot release a work unit of a node being removed; forcing it");
                true
            }
        };
        if !force {
            return false;
        }
        let forced = match self.client().await {
            Ok(mut c) => c.work_force_release(unit).await,
            Err(e) => Err(e),
        };
        match forced {
            Ok(_) => {
                self.pending_since.remove(unit);
                tracing::warn!(
                    node = host,
                    unit,
                    "force-released a work unit of a node being removed (the node could not be told; its copy stays there)"
                );
                true
            }
            Err(ControlError::UnknownUnit(_)) => false,
            Err(e) => {
                tracing::warn!(node = host, unit, error = %e, "cannot force-release a work unit");
                false
            }
        }
    }

    async fn client(&self) -> Result<ControlClient, ControlError> {
        ControlClient::connect_unix(&self.socket).await
    }
}
