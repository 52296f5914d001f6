//! The reaper: reconciles the control node's `work list` with the store at start and then
//! periodically, and releases the units nothing needs any more (a unit's `stdin` holds its
//! job's secrets until it is released):
//! - units of jobs that have ended (say the coordinator died between storing the outcome and
//!   the release);
//! - units tagged with a job id the store does not have;
//! - health-check units that have ended (and ended `local` units no job recorded), once they
//!   have been seen ended for the health-check timeout, so a check still reading its unit's
//!   output is never cut short.
//!
//! A unit of an active job (pending, waiting, submitting, running) is never touched: the job's
//! runner (or restart reconciliation) owns it. A unit nothing marks as meshrun's is left alone
//! and logged once. A remote unit whose release stays pending (its node cannot be told) longer
//! than `force_release_after_secs`, or whose release fails, is force-released.

pub mod claim;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use meshrun_shared::control_socket::{ControlClient, ControlError, ReleaseOutcome, UnitStatus};
use tokio_util::sync::CancellationToken;

use crate::config::CoordinatorConfig;
use crate::metrics::Metrics;
use crate::store::{Store, StoreError};
use claim::Claim;

/// What the reaper needs.
#[derive(Debug, Clone)]
pub struct ReaperDeps {
    /// The store.
    pub store: Store,
    /// Where releases are counted.
    pub metrics: Arc<Metrics>,
    /// Stops the loop.
    pub shutdown: CancellationToken,
}

/// Why a unit is released.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reason {
    EndedJob(i64),
    UnknownJob(i64),
    HealthCheck,
}

impl Reason {
    fn counter(self, m: &Metrics) -> &AtomicU64 {
        match self {
            Reason::EndedJob(_) => &m.reaper.ended_job,
            Reason::UnknownJob(_) => &m.reaper.unknown_job,
            Reason::HealthCheck => &m.reaper.health_check,
        }
    }

    fn describe(self) -> String {
        match self {
            Reason::EndedJob(id) => format!("job {id} has ended"),
            Reason::UnknownJob(id) => format!("it is tagged with job {id}, which does not exist"),
            Reason::HealthCheck => "a health check that has ended".to_string(),
        }
    }
}

/// The reaper's state between passes.
struct Reaper {
    deps: ReaperDeps,
    socket: PathBuf,
    /// How long an ended health-check unit is left to its check.
    health_grace: Duration,
    force_after: Duration,
    /// When each ended health-check unit was first seen ended.
    ended_since: HashMap<String, Instant>,
    /// When each remote unit's release was first answered "pending".
    pending_since: HashMap<String, Instant>,
    /// Foreign units already logged.
    logged_foreign: HashSet<String>,
}

/// Starts the reaper: a pass now, then one every `reaper.interval_secs`, until shutdown.
pub fn start(config: &CoordinatorConfig, deps: ReaperDeps) -> tokio::task::JoinHandle<()> {
    let interval = Duration::from_secs_f64(config.reaper.interval_secs);
    let shutdown = deps.shutdown.clone();
    let mut reaper = Reaper {
        deps,
        socket: config.receptor_socket.clone(),
        health_grace: Duration::from_secs_f64(config.discovery.health_check_timeout_secs),
        force_after: Duration::from_secs_f64(config.reaper.force_release_after_secs),
        ended_since: HashMap::new(),
        pending_since: HashMap::new(),
        logged_foreign: HashSet::new(),
    };
    tokio::spawn(async move {
        loop {
            if let Err(e) = reaper.pass().await {
                reaper
                    .deps
                    .metrics
                    .reaper
                    .failures
                    .fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, "reaper pass failed");
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(interval) => {}
            }
        }
    })
}

/// Why a pass stopped.
#[derive(Debug, thiserror::Error)]
enum PassError {
    #[error("cannot list the control node's work units: {0}")]
    Receptor(#[from] ControlError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Reaper {
    async fn pass(&mut self) -> Result<(), PassError> {
        let units = ControlClient::connect_unix(&self.socket)
            .await?
            .work_list()
            .await?;
        self.ended_since.retain(|u, _| units.contains_key(u));
        self.pending_since.retain(|u, _| units.contains_key(u));
        self.logged_foreign.retain(|u| units.contains_key(u));
        for (unit, status) in &units {
            if self.deps.shutdown.is_cancelled() {
                break;
            }
            if let Some(reason) = self.verdict(unit, status).await? {
                self.release(unit, status, reason).await;
            }
        }
        Ok(())
    }

    /// The reason to release `unit` now, or `None` to keep it.
    async fn verdict(
        &mut self,
        unit: &str,
        status: &UnitStatus,
    ) -> Result<Option<Reason>, StoreError> {
        let store = &self.deps.store;
        // The unit a job recorded is its own, whatever the unit shows.
        let owner = match store.job_by_work_unit(unit).await? {
            Some(job) => Some(job),
            None => match claim::claim(status) {
                Claim::Job(id) => match store.job(id).await? {
                    Some(job) => Some(job),
                    None => return Ok(Some(Reason::UnknownJob(id))),
                },
                Claim::HealthCheck | Claim::LocalEnded => {
                    if !status.state.is_final() {
                        return Ok(None);
                    }
                    let since = *self
                        .ended_since
                        .entry(unit.to_string())
                        .or_insert_with(Instant::now);
                    return Ok(
                        (since.elapsed() >= self.health_grace).then_some(Reason::HealthCheck)
                    );
                }
                Claim::Foreign => {
                    if self.logged_foreign.insert(unit.to_string()) {
                        tracing::info!(unit, work_type = %status.work_type, state = %status.state_name, "work unit not submitted by meshrun; the reaper leaves it alone");
                    }
                    return Ok(None);
                }
            },
        };
        Ok(owner
            .filter(|job| job.status.is_final())
            .map(|job| Reason::EndedJob(job.id)))
    }

    /// Releases `unit`; a remote unit is force-released when the release fails, or stays
    /// pending longer than `force_after`.
    async fn release(&mut self, unit: &str, status: &UnitStatus, reason: Reason) {
        let remote = status.remote_node().is_some() || status.work_type == "remote";
        let released = match self.client().await {
            Ok(mut c) => c.work_release(unit).await,
            Err(e) => Err(e),
        };
        let force = match released {
            Ok(ReleaseOutcome::Released) => {
                self.count(unit, reason, false);
                return;
            }
            // Released by its owner meanwhile.
            Err(ControlError::UnknownUnit(_)) => return,
            Ok(ReleaseOutcome::Pending) => {
                let since = *self
                    .pending_since
                    .entry(unit.to_string())
                    .or_insert_with(Instant::now);
                let due = since.elapsed() >= self.force_after;
                if !due {
                    tracing::info!(unit, reason = %reason.describe(), "release pending: the unit's node cannot be told yet");
                }
                due
            }
            Err(e) => {
                tracing::warn!(unit, reason = %reason.describe(), error = %e, "cannot release work unit");
                remote
            }
        };
        if !force {
            return;
        }
        let forced = match self.client().await {
            Ok(mut c) => c.work_force_release(unit).await,
            Err(e) => Err(e),
        };
        match forced {
            Ok(_) => self.count(unit, reason, true),
            Err(ControlError::UnknownUnit(_)) => {}
            Err(e) => {
                tracing::warn!(unit, reason = %reason.describe(), error = %e, "cannot force-release work unit")
            }
        }
    }

    fn count(&mut self, unit: &str, reason: Reason, forced: bool) {
        let m = &self.deps.metrics;
        reason.counter(m).fetch_add(1, Ordering::Relaxed);
        if forced {
            m.reaper.forced.fetch_add(1, Ordering::Relaxed);
        }
        self.pending_since.remove(unit);
        self.ended_since.remove(unit);
        tracing::info!(unit, forced, reason = %reason.describe(), "reaper released work unit");
    }

    async fn client(&self) -> Result<ControlClient, ControlError> {
        ControlClient::connect_unix(&self.socket).await
    }
}
