//! Node loss: jobs whose unit died with its node end as `error` instead of staying `running`
//! for ever (receptor never fails a unit whose node vanished, receptor#711).
//!
//! Every `node_loss.period_secs` the loop looks at the jobs that are `waiting`, `submitting`
//! or `running` on an execution node, and at their nodes as discovery and the health checks
//! stored them:
//! - a node unroutable for longer than `node_loss.grace_secs` is lost: its jobs end `error`
//!   naming the node and the last event stored;
//! - a node whose health check reports a new boot id rebooted: every job that had a unit there
//!   before the check ends `error`, even if the node came back within the grace period;
//! - a running job whose unit output (the controller's `StdoutSize`) has not grown for
//!   `node_loss.stall_secs` while its node is routable is stalled when the worker was asked
//!   for keepalive lines (silence then cannot be a quiet playbook) and ends `error`; a unit
//!   receptor no longer knows ends `error` too. Without keepalives silence is only logged.
//!
//! Ending a job is a conditional transition, so a job that finished meanwhile keeps its
//! outcome, and the job's follower sees the new status and stops without touching the unit.
//! The units of ended jobs are released once their node is routable again: `work release`
//! first (receptor then also removes the unit on the node), `work force-release` when the
//! release is still pending after [`FORCE_AFTER`].
//!
//! What is remembered between looks (boot ids, output sizes, units to release) lives in memory:
//! after a coordinator restart, units of ended jobs are left to the reaper.
//!
//! # Layout
//! - [`verdict`]: the pure decisions and the explanations.
//! - this module: the loop, the store writes and the receptor calls.

pub mod verdict;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use meshrun_shared::control_socket::{
    ControlClient, ControlError, ControlOptions, ReleaseOutcome, UnitState, UnitStatus,
};
use meshrun_shared::node_type::NodeType;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::{CoordinatorConfig, NodeLossSettings};
use crate::discovery::reconcile::parse_stamp;
use crate::events_bus::EventsBus;
use crate::store::{Instance, Job, JobStatus, StatusChange, Store, StoreError};
use verdict::Loss;

/// How long a release may stay pending once the node is back before it is forced.
pub const FORCE_AFTER: Duration = Duration::from_secs(30);
/// Limit for each receptor call.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Why one look failed (the next one starts again).
#[derive(Debug, thiserror::Error)]
pub enum NodeLossError {
    /// The store refused a read or a write.
    #[error("node-loss check: {0}")]
    Store(#[from] StoreError),
    /// The control node's receptor could not be asked.
    #[error("node-loss check: cannot ask the control node's receptor: {0}")]
    Receptor(#[from] ControlError),
}

/// Everything the loop needs.
#[derive(Debug)]
pub struct NodeLossDeps {
    /// The store.
    pub store: Store,
    /// Tells followers of job pages that a job changed.
    pub bus: EventsBus,
    /// Woken after a job ended (its slot is free).
    pub scheduler_wake: Arc<Notify>,
    /// Stops the loop.
    pub shutdown: CancellationToken,
}

/// A unit of an ended job, waiting for its node to be routable so it can be released.
#[derive(Debug, Clone)]
struct Leftover {
    job_id: i64,
    unit: String,
    /// When the first release was sent while the node was routable.
    first_try: Option<Instant>,
}

/// How a running job's output grew.
#[derive(Debug, Clone, Copy)]
struct Growth {
    size: u64,
    since: DateTime<Utc>,
}

/// The loop's memory between looks.
#[derive(Debug)]
struct Watch {
    store: Store,
    bus: EventsBus,
    scheduler_wake: Arc<Notify>,
    socket: PathBuf,
    settings: NodeLossSettings,
    client: Option<ControlClient>,
    boot_ids: HashMap<String, String>,
    growth: HashMap<i64, Growth>,
    leftovers: BTreeMap<String, Vec<Leftover>>,
    silent_logged: HashSet<i64>,
}

/// Starts the node-loss loop; it ends when `deps.shutdown` is cancelled.
pub fn start(config: &CoordinatorConfig, deps: NodeLossDeps) -> JoinHandle<()> {
    let period = Duration::from_secs_f64(config.node_loss.period_secs);
    let watch = Watch {
        store: deps.store,
        bus: deps.bus,
        scheduler_wake: deps.scheduler_wake,
        socket: config.receptor_socket.clone(),
        settings: config.node_loss.clone(),
        client: None,
        boot_ids: HashMap::new(),
        growth: HashMap::new(),
        leftovers: BTreeMap::new(),
        silent_logged: HashSet::new(),
    };
    tokio::spawn(run(watch, period, deps.shutdown))
}

async fn run(mut watch: Watch, period: Duration, shutdown: CancellationToken) {
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = ticks.tick() => {}
        }
        match watch.look(Utc::now()).await {
            Ok(()) => failing = false,
            Err(e) => {
                watch.client = None;
                if !failing {
                    tracing::warn!(error = %e, "node-loss check failed; retrying every period");
                    failing = true;
                }
            }
        }
    }
    tracing::debug!("node-loss checks stopped");
}

impl Watch {
    /// One look at the active jobs and their nodes at `now`.
    async fn look(&mut self, now: DateTime<Utc>) -> Result<(), NodeLossError> {
        let instances = self.store.all_instances().await?;
        let rebooted = self.note_boot_ids(&instances);
        let jobs = self
            .store
            .jobs_in(&[
                JobStatus::Waiting,
                JobStatus::Submitting,
                JobStatus::Running,
            ])
            .await?;
        let by_name: HashMap<&str, &Instance> =
            instances.iter().map(|i| (i.hostname.as_str(), i)).collect();
        let grace = TimeDelta::milliseconds((self.settings.grace_secs * 1000.0).round() as i64);
        let mut work: Option<BTreeMap<String, UnitStatus>> = None;
        let mut running = HashSet::new();
        for job in &jobs {
            let Some(inst) = job
                .execution_node
                .as_deref()
                .and_then(|n| by_name.get(n).copied())
            else {
                continue;
            };
            if inst.node_type == NodeType::Hop {
                continue;
            }
            let mut loss = verdict::lost(inst, now, grace);
            if loss.is_none()
                && let Some((old, new, checked)) = rebooted.get(&inst.hostname)
                && verdict::killed_by_reboot(job, *checked)
            {
                loss = Some(Loss::Rebooted {
                    node: inst.hostname.clone(),
                    old: old.clone(),
                    new: new.clone(),
                });
            }
            if loss.is_none() && job.status == JobStatus::Running {
                if verdict::routable(inst) {
                    running.insert(job.id);
                    loss = self.stall(job, inst, now, &mut work).await?;
                } else {
                    // The clock restarts when the node is back.
                    self.growth.remove(&job.id);
                }
            }
            if let Some(loss) = loss {
                self.end(job, loss).await?;
            }
        }
        self.growth.retain(|id, _| running.contains(id));
        self.silent_logged.retain(|id| running.contains(id));
        self.release_leftovers(&by_name).await;
        Ok(())
    }

    /// Remembers every node's boot id; returns the nodes whose id changed since the last look,
    /// with the old and new id and when the check that saw it ended.
    fn note_boot_ids(
        &mut self,
        instances: &[Instance],
    ) -> HashMap<String, (String, String, Option<DateTime<Utc>>)> {
        let mut changed = HashMap::new();
        for inst in instances {
            let Some(new) = &inst.boot_id else { continue };
            if let Some(old) = self.boot_ids.insert(inst.hostname.clone(), new.clone())
                && old != *new
            {
                tracing::warn!(node = %inst.hostname, old_boot_id = %old, new_boot_id = %new,
                    "node rebooted: its units that were running are dead");
                let checked = inst.last_health_check.as_deref().and_then(parse_stamp);
                changed.insert(inst.hostname.clone(), (old, new.clone(), checked));
            }
        }
        changed
    }

    /// Whether running `job` on routable `inst` is stalled or its unit is gone.
    async fn stall(
        &mut self,
        job: &Job,
        inst: &Instance,
        now: DateTime<Utc>,
        work: &mut Option<BTreeMap<String, UnitStatus>>,
    ) -> Result<Option<Loss>, NodeLossError> {
        let Some(unit) = job.work_unit_id.as_deref() else {
            return Ok(None);
        };
        if work.is_none() {
            *work = Some(self.client().await?.work_list().await?);
        }
        let status = work.as_ref().and_then(|w| w.get(unit));
        let size = status.map(|s| s.stdout_size);
        let growth = self.growth.entry(job.id).or_insert(Growth {
            size: size.unwrap_or(0),
            since: now,
        });
        if let Some(size) = size
            && size != growth.size
        {
            *growth = Growth { size, since: now };
            self.silent_logged.remove(&job.id);
            return Ok(None);
        }
        let silent = (now - growth.since).as_seconds_f64();
        if silent <= self.settings.stall_secs {
            return Ok(None);
        }
        let node = inst.hostname.clone();
        let Some(status) = status else {
            return Ok(Some(Loss::UnitGone {
                node,
                unit: unit.to_string(),
                silent_secs: silent,
            }));
        };
        if status.state.is_final() {
            // The follower reads the end; nothing is lost.
            return Ok(None);
        }
        if self.settings.keepalive_secs > 0 {
            return Ok(Some(Loss::Stalled {
                node,
                silent_secs: silent,
                keepalive_secs: self.settings.keepalive_secs,
            }));
        }
        if self.silent_logged.insert(job.id) {
            tracing::warn!(job_id = job.id, node = %node, unit, silent_secs = silent, state = %status.state_name,
                "job output has not grown; receptor still reports the unit, so the job keeps running (no keepalives are asked for)");
        }
        Ok(None)
    }

    /// Ends `job` as `error` for `loss`; its unit is released now (node routable) or later.
    async fn end(&mut self, job: &Job, loss: Loss) -> Result<(), NodeLossError> {
        let last = self.store.last_event(job.id).await?;
        let explanation = loss.explain(last.as_ref());
        let moved = self
            .store
            .transition(
                job.id,
                &[
                    JobStatus::Waiting,
                    JobStatus::Submitting,
                    JobStatus::Running,
                ],
                JobStatus::Error,
                &StatusChange {
                    job_explanation: Some(&explanation),
                    result_traceback: Some(""),
                    ..StatusChange::default()
                },
            )
            .await?;
        if !moved {
            return Ok(());
        }
        tracing::warn!(job_id = job.id, node = %loss.node(), explanation = %explanation, "job ended: its unit is dead");
        self.bus.changed(job.id);
        self.scheduler_wake.notify_one();
        self.growth.remove(&job.id);
        if let Some(unit) = &job.work_unit_id {
            if matches!(loss, Loss::Stalled { .. }) {
                // The worker may still be alive (stopped, wedged): have receptor kill it.
                match self.client().await?.work_cancel(unit).await {
                    Ok(outcome) => {
                        tracing::info!(job_id = job.id, unit, ?outcome, "stalled unit canceled")
                    }
                    Err(e) => {
                        tracing::warn!(job_id = job.id, unit, error = %e, "cannot cancel the stalled unit")
                    }
                }
            }
            self.leftovers
                .entry(loss.node().to_string())
                .or_default()
                .push(Leftover {
                    job_id: job.id,
                    unit: unit.clone(),
                    first_try: None,
                });
        }
        Ok(())
    }

    /// Releases the units of ended jobs whose node is routable.
    async fn release_leftovers(&mut self, nodes: &HashMap<&str, &Instance>) {
        let ready: Vec<String> = self
            .leftovers
            .keys()
            .filter(|n| nodes.get(n.as_str()).is_none_or(|i| verdict::routable(i)))
            .cloned()
            .collect();
        for node in ready {
            let Some(mut units) = self.leftovers.remove(&node) else {
                continue;
            };
            let mut keep = Vec::new();
            for mut left in units.drain(..) {
                if !self.release_one(&node, &mut left).await {
                    keep.push(left);
                }
            }
            if !keep.is_empty() {
                self.leftovers.insert(node, keep);
            }
        }
    }

    /// One release attempt; true when the unit is gone from the controller.
    async fn release_one(&mut self, node: &str, left: &mut Leftover) -> bool {
        let first = *left.first_try.get_or_insert_with(Instant::now);
        let force = first.elapsed() >= FORCE_AFTER;
        let (job_id, unit) = (left.job_id, left.unit.as_str());
        let client = match self.client().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(job_id, unit, error = %e, "cannot release the unit of an ended job");
                return false;
            }
        };
        let answer = if force {
            client.work_force_release(unit).await
        } else {
            client.work_release(unit).await
        };
        match answer {
            Ok(ReleaseOutcome::Released) => {
                tracing::info!(
                    job_id,
                    unit,
                    node,
                    force,
                    "released the unit of a job its node lost"
                );
                true
            }
            Ok(ReleaseOutcome::Pending) if !force => {
                tracing::debug!(job_id, unit, node, "release pending");
                // A pending release is finished by receptor once the node answers; `work list`
                // tells when.
                matches!(self.unit_state(unit).await, Some(None))
            }
            Ok(ReleaseOutcome::Pending) => {
                tracing::info!(job_id, unit, node, "force-release pending");
                matches!(self.unit_state(unit).await, Some(None))
            }
            Err(ControlError::UnknownUnit(_)) => true,
            Err(e) => {
                self.client = None;
                tracing::warn!(job_id, unit, node, force, error = %e, "cannot release the unit of an ended job");
                false
            }
        }
    }

    /// `Some(Some(state))` when the controller lists `unit`, `Some(None)` when it does not,
    /// None when it could not be asked.
    async fn unit_state(&mut self, unit: &str) -> Option<Option<UnitState>> {
        let client = self.client().await.ok()?;
        match client.work_list().await {
            Ok(list) => Some(list.get(unit).map(|s| s.state)),
            Err(_) => {
                self.client = None;
                None
            }
        }
    }

    /// The kept control connection, opened when missing.
    async fn client(&mut self) -> Result<&mut ControlClient, ControlError> {
        if self.client.is_none() {
            let options = ControlOptions {
                connect_timeout: CALL_TIMEOUT,
                reply_timeout: CALL_TIMEOUT,
                ..ControlOptions::default()
            };
            self.client = Some(ControlClient::connect_unix_with(&self.socket, options).await?);
        }
        match self.client.as_mut() {
            Some(c) => Ok(c),
            None => Err(ControlError::ConnectionClosed {
                during: "opening the control connection".into(),
            }),
        }
    }
}
