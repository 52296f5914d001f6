//! Health checks: when a node becomes routable (discovery asks through [`HealthChecker`]), on
//! demand (the API sets `health_check_started` and wakes the loop), and again every
//! `health_check_interval_secs` for routable nodes — ready ones too, which AWX never re-checks,
//! and unavailable ones, so a repaired node comes back by itself. One node is never checked
//! twice at once; different nodes are checked concurrently, at most [`MAX_CONCURRENT`].
//!
//! # Layout
//! - [`check`]: one check through receptor.
//! - this module: the loop that decides what to check, and [`record`], which stores a result.

pub mod check;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use meshrun_shared::node_type::NodeType;
use tokio::sync::{Notify, mpsc};
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

use crate::config::CoordinatorConfig;
use crate::discovery::reconcile::parse_stamp;
use crate::metrics::Metrics;
use crate::store::{HealthCheckRecord, Instance, NodeState, Store, StoreError, now};
use check::{CheckOutcome, CheckSettings, Target};

/// Checks running at once, at most.
pub const MAX_CONCURRENT: usize = 8;
/// How often the store is scanned for due checks besides wake-ups (on-demand requests are
/// seen at once through the wake-up; this bounds how late a periodic one starts).
const SCAN_EVERY: Duration = Duration::from_secs(5);

/// Asks the health-check loop for checks; cheap to clone.
#[derive(Debug, Clone)]
pub struct HealthChecker {
    tx: mpsc::UnboundedSender<i64>,
}

impl HealthChecker {
    /// Checks instance `id` as soon as possible; if a check of it is running, once more after
    /// that one (its answer may predate what prompted this request).
    pub fn request(&self, id: i64) {
        // A closed channel means the loop stopped (shutdown): nothing left to do.
        let _ = self.tx.send(id);
    }
}

/// Everything the health-check loop needs.
#[derive(Debug)]
pub struct HealthDeps {
    /// The store.
    pub store: Store,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// The control node's id.
    pub control_node: String,
    /// Woken by the API after it set an instance's `health_check_started`.
    pub wakeup: Arc<Notify>,
    /// Stops the loop and interrupts running checks.
    pub shutdown: CancellationToken,
}

/// Starts the health-check loop. The handle ends after shutdown, once running checks stopped.
pub fn start(config: &CoordinatorConfig, deps: HealthDeps) -> (HealthChecker, JoinHandle<()>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let settings = CheckSettings {
        socket: config.receptor_socket.clone(),
        control_node: deps.control_node,
        timeout: Duration::from_secs_f64(config.discovery.health_check_timeout_secs),
        tls_client: config.tls_client.clone(),
    };
    let interval = Duration::from_secs_f64(config.discovery.health_check_interval_secs);
    let ctx = Arc::new(Ctx {
        store: deps.store,
        metrics: deps.metrics,
        settings,
        shutdown: deps.shutdown,
    });
    let handle = tokio::spawn(run(ctx, rx, deps.wakeup, interval));
    (HealthChecker { tx }, handle)
}

#[derive(Debug)]
struct Ctx {
    store: Store,
    metrics: Arc<Metrics>,
    settings: CheckSettings,
    shutdown: CancellationToken,
}

/// Which checks are queued and running.
#[derive(Debug, Default)]
struct Schedule {
    queue: VecDeque<i64>,
    queued: HashSet<i64>,
    /// Running checks; the flag asks for one more run after this one.
    running: HashMap<i64, bool>,
    /// Tokio task id → instance id, to clean up after a check task that panicked.
    tasks: HashMap<tokio::task::Id, i64>,
}

impl Schedule {
    fn push(&mut self, id: i64, urgent: bool) {
        if let Some(again) = self.running.get_mut(&id) {
            *again |= urgent;
            return;
        }
        if self.queued.insert(id) {
            if urgent {
                self.queue.push_front(id);
            } else {
                self.queue.push_back(id);
            }
        }
    }

    fn is_busy(&self, id: i64) -> bool {
        self.running.contains_key(&id) || self.queued.contains(&id)
    }
}

async fn run(
    ctx: Arc<Ctx>,
    mut rx: mpsc::UnboundedReceiver<i64>,
    wakeup: Arc<Notify>,
    interval: Duration,
) {
    let mut sched = Schedule::default();
    let mut set: JoinSet<i64> = JoinSet::new();
    let mut scans = tokio::time::interval(SCAN_EVERY.min(interval));
    scans.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ctx.shutdown.cancelled() => break,
            Some(id) = rx.recv() => sched.push(id, true),
            _ = wakeup.notified() => scan(&ctx, &mut sched, interval).await,
            _ = scans.tick() => scan(&ctx, &mut sched, interval).await,
            Some(done) = set.join_next_with_id() => {
                let id = match done {
                    Ok((task, id)) => { sched.tasks.remove(&task); id }
                    Err(e) => {
                        tracing::error!(error = %e, "a health-check task failed");
                        match sched.tasks.remove(&e.id()) { Some(id) => id, None => continue }
                    }
                };
                if sched.running.remove(&id) == Some(true) {
                    sched.push(id, true);
                }
            }
        }
        while sched.running.len() < MAX_CONCURRENT {
            let Some(id) = sched.queue.pop_front() else {
                break;
            };
            sched.queued.remove(&id);
            sched.running.insert(id, false);
            let handle = set.spawn(check_one(ctx.clone(), id));
            sched.tasks.insert(handle.id(), id);
        }
    }
    // Running checks see the cancelled token and stop (releasing their units).
    while set.join_next().await.is_some() {}
    tracing::debug!("health checks stopped");
}

/// Queues every check that is due: on-demand requests first, then periodic ones.
async fn scan(ctx: &Ctx, sched: &mut Schedule, interval: Duration) {
    let instances = match ctx.store.all_instances().await {
        Ok(i) => i,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read instances to schedule health checks");
            return;
        }
    };
    let now = Utc::now();
    for inst in &instances {
        if sched.is_busy(inst.id) {
            continue;
        }
        match due(inst, now, interval) {
            Due::OnDemand => sched.push(inst.id, true),
            Due::Periodic => sched.push(inst.id, false),
            Due::No => {}
        }
    }
}

/// Why an instance needs a check now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    /// Someone asked (`health_check_started` is newer than `last_health_check`), or a check was
    /// cut short by a restart.
    OnDemand,
    /// A routable node's last check is older than the interval.
    Periodic,
    /// Not due.
    No,
}

/// Whether `inst` is due for a check at `now`.
pub fn due(inst: &Instance, now: DateTime<Utc>, interval: Duration) -> Due {
    if inst.node_state == NodeState::Deprovisioning {
        return Due::No;
    }
    let last = inst.last_health_check.as_deref().and_then(parse_stamp);
    let asked = inst.health_check_started.as_deref().and_then(parse_stamp);
    if let Some(asked) = asked
        && last.is_none_or(|l| asked > l)
    {
        return Due::OnDemand;
    }
    let routable = inst.last_seen.is_some() && inst.unroutable_since.is_none();
    if !routable || inst.node_type == NodeType::Hop {
        return Due::No;
    }
    let stale = last.is_none_or(|l| (now - l).to_std().is_ok_and(|age| age >= interval));
    if stale { Due::Periodic } else { Due::No }
}

async fn check_one(ctx: Arc<Ctx>, id: i64) -> i64 {
    let started_at = now();
    let begun = Instant::now();
    let marked = ctx
        .store
        .update_instance(id, |i| i.health_check_started = Some(started_at.clone()))
        .await;
    let inst = match marked {
        Ok(Some(inst)) => inst,
        Ok(None) => return id,
        Err(e) => {
            tracing::warn!(instance = id, error = %e, "cannot start a health check");
            return id;
        }
    };
    if inst.node_state == NodeState::Deprovisioning {
        return id;
    }
    let target = Target::from(&inst);
    let outcome = check::check(&ctx.settings, &target, &ctx.shutdown).await;
    if outcome == CheckOutcome::Interrupted {
        return id;
    }
    let elapsed = begun.elapsed();
    ctx.metrics.health_check.observe(elapsed);
    match record(&ctx.store, id, &started_at, elapsed, &outcome).await {
        Ok(Some(rec)) => {
            if !rec.ok {
                ctx.metrics
                    .health_check_failures
                    .fetch_add(1, Ordering::Relaxed);
            }
            match &outcome {
                CheckOutcome::Unroutable(why) => {
                    tracing::info!(node = %inst.hostname, reason = %why, "health check not run");
                }
                _ if !rec.ok => {
                    tracing::warn!(node = %inst.hostname, errors = %rec.instance.errors, "health check: unavailable");
                }
                _ if inst.node_state != NodeState::Ready => {
                    tracing::info!(node = %inst.hostname, capacity = rec.instance.capacity, "health check: ready");
                }
                _ => {
                    tracing::debug!(node = %inst.hostname, capacity = rec.instance.capacity, "health check: ready");
                }
            }
            if let Some((old, new)) = &rec.boot_id_changed {
                tracing::warn!(node = %inst.hostname, old_boot_id = %old, new_boot_id = %new,
                    "the node rebooted since its last health check: units that were running there are gone");
            }
        }
        Ok(None) => {}
        Err(e) => {
            ctx.metrics
                .health_check_failures
                .fetch_add(1, Ordering::Relaxed);
            tracing::warn!(node = %inst.hostname, error = %e, "cannot store a health check result");
        }
    }
    id
}

/// A stored health-check result.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// The instance as stored afterwards.
    pub instance: Instance,
    /// The check found the node healthy (it is `ready`).
    pub ok: bool,
    /// `(previous, new)` boot id when the node rebooted since its last check: every unit that
    /// was running there is dead (job-loss handling reads this).
    pub boot_id_changed: Option<(String, String)>,
}

/// Stores `outcome` (a check of instance `id` that started at `started`): figures, state,
/// errors, `last_health_check`, and a history row. None if the instance is gone.
pub async fn record(
    store: &Store,
    id: i64,
    started: &str,
    elapsed: Duration,
    outcome: &CheckOutcome,
) -> Result<Option<Recorded>, StoreError> {
    let finished = now();
    let mut rebooted = None;
    let stored = store
        .update_instance(id, |i| {
            rebooted = None;
            i.last_health_check = Some(finished.clone());
            let state = match outcome {
                CheckOutcome::Reported(info) => {
                    if info.cpu_count > 0.0 {
                        i.cpu = info.cpu_count;
                    }
                    if info.mem_in_bytes > 0 {
                        i.memory = i64::try_from(info.mem_in_bytes).unwrap_or(i64::MAX);
                    }
                    if !info.runner_version.is_empty() {
                        i.version = format!("ansible-runner-{}", info.runner_version);
                    } else if i.version.is_empty() {
                        i.version = "ansible-runner-???".to_string();
                    }
                    if info.uuid.is_some() {
                        i.uuid = info.uuid.clone();
                    }
                    if let Some(new) = &info.boot_id {
                        if let Some(old) = i.boot_id.as_ref().filter(|old| *old != new) {
                            rebooted = Some((old.clone(), new.clone()));
                        }
                        i.boot_id = Some(new.clone());
                    }
                    i.errors = info.errors.join("\n");
                    if info.errors.is_empty() {
                        NodeState::Ready
                    } else {
                        NodeState::Unavailable
                    }
                }
                CheckOutcome::HopRoutable => {
                    i.errors.clear();
                    NodeState::Ready
                }
                CheckOutcome::Failed(msg) => {
                    i.errors = msg.clone();
                    NodeState::Unavailable
                }
                CheckOutcome::Unroutable(_) | CheckOutcome::Interrupted => i.node_state,
            };
            if i.node_state != NodeState::Deprovisioning {
                i.node_state = state;
            }
        })
        .await?;
    let Some(instance) = stored else {
        return Ok(None);
    };
    let (ok, errors) = match outcome {
        CheckOutcome::Unroutable(msg) => (false, msg.clone()),
        _ => (
            instance.node_state == NodeState::Ready,
            instance.errors.clone(),
        ),
    };
    let reported = match outcome {
        CheckOutcome::Reported(info) => Some(info),
        _ => None,
    };
    store
        .record_health_check(
            id,
            &HealthCheckRecord {
                started: started.to_string(),
                finished: finished.clone(),
                duration_ms: i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX),
                ok,
                cpu: reported.map(|r| r.cpu_count),
                memory: reported.map(|r| i64::try_from(r.mem_in_bytes).unwrap_or(i64::MAX)),
                version: reported.map(|r| r.runner_version.clone()),
                boot_id: reported.and_then(|r| r.boot_id.clone()),
                errors,
            },
        )
        .await?;
    Ok(Some(Recorded {
        instance,
        ok,
        boot_id_changed: rebooted,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::NewInstance;
    use meshrun_shared::worker_info::WorkerInfo;

    const GIB: u64 = 1 << 30;

    async fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("t.db")).await.unwrap();
        (dir, store)
    }

    async fn exec(store: &Store) -> Instance {
        store
            .create_instance(&NewInstance {
                hostname: "exec1".into(),
                node_type: NodeType::Execution,
                registered_by: "discovery".into(),
                listener_address: None,
            })
            .await
            .unwrap()
    }

    fn info(errors: &[&str], boot: &str) -> WorkerInfo {
        WorkerInfo {
            cpu_count: 2.0,
            mem_in_bytes: 8 * GIB,
            runner_version: "2.4.3".into(),
            uuid: Some("u-1".into()),
            errors: errors.iter().map(|e| e.to_string()).collect(),
            boot_id: Some(boot.into()),
            agent_version: None,
        }
    }

    #[tokio::test]
    async fn results_set_state_capacity_history_and_notice_reboots() {
        let (_d, s) = store().await;
        let id = exec(&s).await.id;
        let t = Duration::from_millis(5);
        let ok = record(&s, id, &now(), t, &CheckOutcome::Reported(info(&[], "b1")))
            .await
            .unwrap()
            .unwrap();
        assert!(ok.ok && ok.boot_id_changed.is_none());
        let i = &ok.instance;
        assert_eq!(i.node_state, NodeState::Ready);
        assert_eq!((i.cpu_capacity, i.mem_capacity, i.capacity), (8, 61, 61));
        assert_eq!(i.version, "ansible-runner-2.4.3");
        assert_eq!(i.uuid.as_deref(), Some("u-1"));
        assert!(i.last_health_check.is_some());

        let sick = record(
            &s,
            id,
            &now(),
            t,
            &CheckOutcome::Reported(info(&["podman is missing", "disk full"], "b2")),
        )
        .await
        .unwrap()
        .unwrap();
        assert!(!sick.ok);
        assert_eq!(sick.instance.errors, "podman is missing\ndisk full");
        assert_eq!(sick.instance.capacity, 0);
        assert_eq!(
            sick.boot_id_changed,
            Some(("b1".to_string(), "b2".to_string()))
        );

        let failed = record(
            &s,
            id,
            &now(),
            t,
            &CheckOutcome::Failed("boom on exec1".into()),
        )
        .await
        .unwrap()
        .unwrap();
        assert_eq!(failed.instance.node_state, NodeState::Unavailable);
        assert_eq!(failed.instance.errors, "boom on exec1");
        assert_eq!(failed.instance.cpu, 2.0, "figures are kept");

        record(&s, id, &now(), t, &CheckOutcome::Reported(info(&[], "b2")))
            .await
            .unwrap();
        let away = record(
            &s,
            id,
            &now(),
            t,
            &CheckOutcome::Unroutable("exec1 is not routable".into()),
        )
        .await
        .unwrap()
        .unwrap();
        assert!(!away.ok);
        assert_eq!(
            away.instance.node_state,
            NodeState::Ready,
            "losing a node is discovery's call, after the grace"
        );

        let history = s.health_checks(id, 10).await.unwrap();
        assert_eq!(
            history.iter().map(|h| h.ok).collect::<Vec<_>>(),
            [false, true, false, false, true]
        );
        assert_eq!(history[0].errors, "exec1 is not routable");
        assert_eq!(history[4].boot_id.as_deref(), Some("b1"));
    }

    #[test]
    fn due_follows_requests_routability_and_the_interval() {
        let base = crate::discovery::reconcile::parse_stamp("2026-11-27T10:00:00Z").unwrap();
        let at =
            |secs: i64| crate::discovery::reconcile::stamp(base + chrono::TimeDelta::seconds(secs));
        let interval = Duration::from_secs(300);
        let mut i = Instance {
            id: 1,
            hostname: "exec1".into(),
            uuid: None,
            node_type: NodeType::Execution,
            node_state: NodeState::Ready,
            enabled: true,
            cpu: 2.0,
            memory: 0,
            cpu_capacity: 0,
            mem_capacity: 0,
            capacity: 0,
            capacity_adjustment: 1.0,
            version: String::new(),
            boot_id: None,
            errors: String::new(),
            last_seen: Some(at(0)),
            unroutable_since: None,
            last_health_check: Some(at(0)),
            health_check_started: Some(at(-1)),
            listener_address: None,
            registered_by: "discovery".into(),
            secure_work: false,
            control_tls: false,
            revision: 0,
            created: at(0),
            modified: at(0),
        };
        let now = base + chrono::TimeDelta::seconds(10);
        assert_eq!(due(&i, now, interval), Due::No);
        i.health_check_started = Some(at(5));
        assert_eq!(due(&i, now, interval), Due::OnDemand);
        i.health_check_started = Some(at(-1));
        let later = base + chrono::TimeDelta::seconds(301);
        assert_eq!(due(&i, later, interval), Due::Periodic);
        i.node_state = NodeState::Unavailable;
        assert_eq!(
            due(&i, later, interval),
            Due::Periodic,
            "repaired nodes come back"
        );
        i.unroutable_since = Some(at(200));
        assert_eq!(due(&i, later, interval), Due::No, "unroutable nodes wait");
        i.unroutable_since = None;
        i.node_type = NodeType::Hop;
        assert_eq!(due(&i, later, interval), Due::No);
        i.node_state = NodeState::Deprovisioning;
        i.health_check_started = Some(at(500));
        assert_eq!(due(&i, later, interval), Due::No);
    }
}
