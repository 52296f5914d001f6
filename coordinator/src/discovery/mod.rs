//! Discovery: every `period_secs`, read the control node's receptor `status` and bring the
//! store in line with it — register unknown nodes, stamp `last_seen`, start the grace period of
//! nodes that left the routing table and mark them `unavailable` after it, cache how submits
//! must be made, and store the links. Newly routable nodes are handed to the health checker at
//! once.
//!
//! The instances are kept in memory between cycles and re-read only when a cheap fingerprint
//! of the table (row count, sum of write counters, newest id and change time) says another
//! writer changed them: re-reading 1,000 rows every 2 s would cost more than everything else a
//! cycle does.
//!
//! # Layout
//! - [`reconcile`]: the pure planning step (status + stored instances + time → changes).
//! - this module: [`Discovery`] applies plans to the store; [`start`] runs it on a timer.

pub mod reconcile;

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use meshrun_shared::control_socket::{ControlClient, ControlError, ControlOptions, Status};
use meshrun_shared::node_type::NodeType;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::CoordinatorConfig;
use crate::health::HealthChecker;
use crate::metrics::Metrics;
use crate::store::{Instance, NewInstance, Store, StoreError};
use reconcile::{Plan, Policy, Reading, Update};

/// Why a discovery cycle failed (the next one retries from scratch).
#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    /// The control node's receptor could not be read.
    #[error("cannot read the mesh status from {socket}: {source}")]
    Receptor {
        /// The control socket.
        socket: String,
        /// What the client said.
        source: ControlError,
    },
    /// The store refused a read or write.
    #[error("cannot bring the store in line with the mesh: {0}")]
    Store(#[from] StoreError),
}

/// What one cycle did.
#[derive(Debug, Clone, Default)]
pub struct CycleOutcome {
    /// Instances to health-check at once (newly routable, newly registered, or their submit
    /// mode changed).
    pub check_now: Vec<i64>,
    /// Nodes registered in this cycle.
    pub registered: Vec<String>,
    /// Instance writes made (registrations count once each).
    pub writes: usize,
    /// Whether the links were rewritten.
    pub links_written: bool,
    /// Time spent planning (the pure step), for benchmarks.
    pub reconcile_time: Duration,
    /// Whether the instances had to be re-read (another writer changed them).
    pub reloaded: bool,
}

/// What identifies the state of the instances table: any write bumps a row's revision and
/// its `modified`; any insert or delete changes the count, the newest id or `modified`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct Fingerprint {
    rows: i64,
    revisions: i64,
    newest_id: i64,
    newest_change: Option<String>,
}

/// The instances as last read or written by this loop.
#[derive(Debug, Default)]
struct Cache {
    rows: Vec<Instance>,
    index: std::collections::HashMap<i64, usize>,
}

impl Cache {
    fn load(rows: Vec<Instance>) -> Cache {
        let index = rows.iter().enumerate().map(|(n, i)| (i.id, n)).collect();
        Cache { rows, index }
    }

    fn put(&mut self, inst: Instance) {
        match self.index.get(&inst.id) {
            Some(&n) => self.rows[n] = inst,
            None => {
                self.index.insert(inst.id, self.rows.len());
                self.rows.push(inst);
            }
        }
    }

    fn fingerprint(&self) -> Fingerprint {
        Fingerprint {
            rows: self.rows.len() as i64,
            revisions: self.rows.iter().map(|i| i.revision).sum(),
            newest_id: self.rows.iter().map(|i| i.id).max().unwrap_or(0),
            newest_change: self.rows.iter().map(|i| i.modified.clone()).max(),
        }
    }
}

/// The table's fingerprint, read without decoding any row.
async fn table_fingerprint(store: &Store) -> Result<Fingerprint, StoreError> {
    let (rows, revisions, newest_id, newest_change) = store.instances_fingerprint().await?;
    Ok(Fingerprint {
        rows,
        revisions,
        newest_id,
        newest_change,
    })
}

/// The discovery state kept between cycles.
#[derive(Debug)]
pub struct Discovery {
    store: Store,
    policy: Policy,
    previous: Option<Reading>,
    links: Option<Vec<(String, String, f64)>>,
    cache: Option<Cache>,
    logged_unknown: HashSet<String>,
    logged_waiting: HashSet<String>,
    logged_removed: HashSet<String>,
}

impl Policy {
    /// The policy `config` sets.
    pub fn from_config(config: &CoordinatorConfig) -> Policy {
        let control_type = config
            .control_node
            .as_ref()
            .and_then(|c| c.node_type.parse().ok())
            .unwrap_or(NodeType::Control);
        let grace_ms = (config.discovery.grace_secs * 1000.0).round() as i64;
        Policy {
            control_type,
            auto_register: config.discovery.auto_register,
            grace: TimeDelta::milliseconds(grace_ms),
        }
    }
}

impl Discovery {
    /// Discovery over `store` with `policy`.
    pub fn new(store: Store, policy: Policy) -> Discovery {
        Discovery {
            store,
            policy,
            previous: None,
            links: None,
            cache: None,
            logged_unknown: HashSet::new(),
            logged_waiting: HashSet::new(),
            logged_removed: HashSet::new(),
        }
    }

    /// Reconciles the store with one reading of `status` taken at `now`.
    pub async fn cycle(
        &mut self,
        status: &Status,
        now: DateTime<Utc>,
    ) -> Result<CycleOutcome, DiscoveryError> {
        let reloaded = self.refresh_cache().await?;
        let stored = self
            .cache
            .as_ref()
            .map(|c| c.rows.as_slice())
            .unwrap_or_default();
        let planned = Instant::now();
        let mut plan =
            reconcile::reconcile(status, stored, self.previous.as_ref(), now, &self.policy);
        let reconcile_time = planned.elapsed();
        if !plan.register.is_empty() {
            self.skip_removed(&mut plan).await?;
        }
        let applied = self.apply(&plan).await;
        if applied.is_err() {
            // Some writes may have landed: read everything again next time.
            self.cache = None;
        }
        let mut outcome = applied?;
        outcome.reconcile_time = reconcile_time;
        outcome.reloaded = reloaded;
        self.log_newcomers(&plan);
        for name in &plan.lost {
            tracing::warn!(node = %name, grace_secs = self.policy.grace.as_seconds_f64(), "node unroutable past the grace period: unavailable");
        }
        self.previous = Some(plan.reading);
        Ok(outcome)
    }

    /// Re-reads the instances unless the cached ones are still what the table holds.
    async fn refresh_cache(&mut self) -> Result<bool, StoreError> {
        if let Some(cache) = &self.cache
            && cache.fingerprint() == table_fingerprint(&self.store).await?
        {
            return Ok(false);
        }
        self.cache = Some(Cache::load(self.store.all_instances().await?));
        Ok(true)
    }

    async fn apply(&mut self, plan: &Plan) -> Result<CycleOutcome, DiscoveryError> {
        let mut out = CycleOutcome {
            check_now: plan.check_now.clone(),
            ..CycleOutcome::default()
        };
        for reg in &plan.register {
            let created = self
                .store
                .create_instance(&NewInstance {
                    hostname: reg.hostname.clone(),
                    node_type: reg.node_type,
                    registered_by: "discovery".to_string(),
                    listener_address: None,
                })
                .await?;
            tracing::info!(node = %reg.hostname, node_type = %created.node_type, "registered a node found in the mesh");
            self.write(&Update {
                id: created.id,
                hostname: reg.hostname.clone(),
                changes: reg.changes.clone(),
            })
            .await?;
            out.writes += 1;
            out.registered.push(reg.hostname.clone());
            if created.node_type != NodeType::Hop {
                out.check_now.push(created.id);
            }
        }
        for update in &plan.updates {
            self.write(update).await?;
            out.writes += 1;
        }
        if self.links.as_ref() != Some(&plan.links) {
            self.store.replace_links(&plan.links).await?;
            self.links = Some(plan.links.clone());
            out.links_written = true;
        }
        Ok(out)
    }

    async fn write(&mut self, update: &Update) -> Result<(), StoreError> {
        let stored = self
            .store
            .update_instance(update.id, |inst| {
                for change in &update.changes {
                    change.apply(inst);
                }
            })
            .await?;
        // The row as written (with whatever others wrote before it) keeps the cache exact; a
        // row that vanished makes the fingerprint differ, so the next cycle re-reads.
        if let (Some(inst), Some(cache)) = (stored, self.cache.as_mut()) {
            cache.put(inst);
        }
        Ok(())
    }

    /// Drops registrations of nodes removed on purpose (`meshrun instances remove`): their
    /// receptor may well still run. Logged once per node until its tombstone is lifted.
    async fn skip_removed(&mut self, plan: &mut Plan) -> Result<(), StoreError> {
        let removed = self.store.removed_hostnames().await?;
        self.logged_removed.retain(|h| removed.contains(h));
        plan.register.retain(|reg| {
            if !removed.contains(&reg.hostname) {
                return true;
            }
            if self.logged_removed.insert(reg.hostname.clone()) {
                tracing::info!(node = %reg.hostname, "node in the mesh was removed (meshrun instances remove); not registering it again (it may join again with a new join token)");
            }
            false
        });
        Ok(())
    }

    fn log_newcomers(&mut self, plan: &Plan) {
        for name in &plan.unknown {
            if self.logged_unknown.insert(name.clone()) {
                tracing::warn!(node = %name, "unregistered node in the mesh; not registering it (discovery.auto_register is false)");
            }
        }
        for name in &plan.awaiting_ad {
            if self.logged_waiting.insert(name.clone()) {
                tracing::info!(node = %name, "new node in the mesh; registering it once its control service advertisement arrives");
            }
        }
    }
}

/// Everything the discovery loop needs.
#[derive(Debug)]
pub struct DiscoveryDeps {
    /// The store.
    pub store: Store,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// Receives the nodes to check at once.
    pub checker: HealthChecker,
    /// Stops the loop.
    pub shutdown: CancellationToken,
}

/// Starts the discovery loop; it ends when `deps.shutdown` is cancelled.
pub fn start(config: &CoordinatorConfig, deps: DiscoveryDeps) -> JoinHandle<()> {
    let discovery = Discovery::new(deps.store, Policy::from_config(config));
    let period = Duration::from_secs_f64(config.discovery.period_secs);
    let socket = config.receptor_socket.clone();
    tokio::spawn(run(
        discovery,
        socket,
        period,
        deps.metrics,
        deps.checker,
        deps.shutdown,
    ))
}

async fn run(
    mut discovery: Discovery,
    socket: PathBuf,
    period: Duration,
    metrics: Arc<Metrics>,
    checker: HealthChecker,
    shutdown: CancellationToken,
) {
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut client: Option<ControlClient> = None;
    let mut failing = false;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = ticks.tick() => {}
        }
        let started = Instant::now();
        let result = async {
            let status = read_status(&mut client, &socket, period).await?;
            discovery.cycle(&status, Utc::now()).await
        }
        .await;
        metrics.discovery_cycle.observe(started.elapsed());
        match result {
            Ok(outcome) => {
                if failing {
                    tracing::info!("discovery works again");
                    failing = false;
                }
                for id in outcome.check_now {
                    checker.request(id);
                }
            }
            Err(e) => {
                metrics.discovery_failures.fetch_add(1, Ordering::Relaxed);
                // One line per outage, not one per cycle.
                if !failing {
                    tracing::warn!(error = %e, "discovery cycle failed; retrying every period");
                    failing = true;
                } else {
                    tracing::debug!(error = %e, "discovery cycle failed again");
                }
            }
        }
    }
    tracing::debug!("discovery stopped");
}

/// `status` over a kept connection, reconnecting after any failure.
async fn read_status(
    client: &mut Option<ControlClient>,
    socket: &std::path::Path,
    period: Duration,
) -> Result<Status, DiscoveryError> {
    let wrap = |source| DiscoveryError::Receptor {
        socket: socket.display().to_string(),
        source,
    };
    let mut c = match client.take() {
        Some(c) => c,
        None => {
            let limit = period.max(Duration::from_secs(5));
            let options = ControlOptions {
                connect_timeout: limit,
                reply_timeout: limit,
                ..ControlOptions::default()
            };
            ControlClient::connect_unix_with(socket, options)
                .await
                .map_err(wrap)?
        }
    };
    let status = c.status().await.map_err(wrap)?;
    // Kept only after a clean reply: a failed one may leave the connection out of step.
    *client = Some(c);
    Ok(status)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::NodeState;

    fn status() -> Status {
        serde_json::from_value(serde_json::json!({
            "NodeID": "control",
            "RoutingTable": {"hop": "hop", "exec1": "hop"},
            "KnownConnectionCosts": {
                "control": {"hop": 1.0}, "hop": {"control": 1.0, "exec1": 1.0},
                "exec1": {"hop": 1.0}
            },
            "Advertisements": [
                {"NodeID": "hop", "Service": "control", "ConnType": 1,
                 "Tags": {"type": "Control Service"}, "WorkCommands": null},
                {"NodeID": "exec1", "Service": "control", "ConnType": 1,
                 "Tags": {"type": "Control Service"},
                 "WorkCommands": [{"WorkType": "ansible-runner", "Secure": false}]}
            ]
        }))
        .unwrap()
    }

    #[tokio::test]
    async fn cycles_register_write_links_once_and_then_write_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("t.db")).await.unwrap();
        let policy = Policy {
            control_type: NodeType::Control,
            auto_register: true,
            grace: TimeDelta::seconds(20),
        };
        let mut d = Discovery::new(store.clone(), policy);
        let now = Utc::now();
        let first = d.cycle(&status(), now).await.unwrap();
        assert_eq!(first.registered, ["control", "exec1", "hop"]);
        assert!(first.links_written);
        assert_eq!(first.check_now.len(), 2, "control and exec1, not the hop");
        let hop = store.instance_by_hostname("hop").await.unwrap().unwrap();
        assert_eq!((hop.node_state, hop.capacity), (NodeState::Ready, 0));
        assert_eq!(hop.registered_by, "discovery");
        let exec1 = store.instance_by_hostname("exec1").await.unwrap().unwrap();
        assert_eq!(exec1.node_type, NodeType::Execution);
        assert_eq!(exec1.node_state, NodeState::Installed);
        assert_eq!(store.links().await.unwrap().len(), 2);

        let second = d
            .cycle(&status(), now + TimeDelta::seconds(2))
            .await
            .unwrap();
        assert_eq!(second.writes, 0);
        assert!(!second.links_written && second.check_now.is_empty());
        assert!(
            !second.reloaded,
            "nothing changed: the cached rows are used"
        );

        // Another writer's change is noticed and acted on.
        store
            .update_instance(hop.id, |i| i.node_state = NodeState::Unavailable)
            .await
            .unwrap();
        let third = d
            .cycle(&status(), now + TimeDelta::seconds(4))
            .await
            .unwrap();
        assert!(third.reloaded);
        assert_eq!(third.writes, 1);
        let hop = store.instance_by_hostname("hop").await.unwrap().unwrap();
        assert_eq!(hop.node_state, NodeState::Ready);
        let fourth = d
            .cycle(&status(), now + TimeDelta::seconds(6))
            .await
            .unwrap();
        assert!(!fourth.reloaded && fourth.writes == 0, "{fourth:?}");
    }

    #[tokio::test]
    async fn a_removed_node_is_not_registered_again_until_its_tombstone_is_lifted() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("t.db")).await.unwrap();
        let policy = Policy {
            control_type: NodeType::Control,
            auto_register: true,
            grace: TimeDelta::seconds(20),
        };
        let mut d = Discovery::new(store.clone(), policy);
        let now = Utc::now();
        d.cycle(&status(), now).await.unwrap();
        let exec1 = store.instance_by_hostname("exec1").await.unwrap().unwrap();
        store
            .begin_deprovision(exec1.id, "2030-01-01T00:00:00.000000Z")
            .await
            .unwrap();
        // While draining the row stays; discovery leaves its state alone.
        d.cycle(&status(), now + TimeDelta::seconds(2))
            .await
            .unwrap();
        let draining = store.instance_by_hostname("exec1").await.unwrap().unwrap();
        assert_eq!(draining.node_state, NodeState::Deprovisioning);
        store.finish_deprovision("exec1").await.unwrap().unwrap();

        for n in 0..3 {
            let out = d
                .cycle(&status(), now + TimeDelta::seconds(4 + 2 * n))
                .await
                .unwrap();
            assert!(out.registered.is_empty(), "{out:?}");
        }
        assert!(store.instance_by_hostname("exec1").await.unwrap().is_none());
        assert_eq!(d.logged_removed.len(), 1, "logged once");

        assert!(store.clear_removed("exec1").await.unwrap());
        let out = d
            .cycle(&status(), now + TimeDelta::seconds(20))
            .await
            .unwrap();
        assert_eq!(out.registered, ["exec1"]);
        assert!(d.logged_removed.is_empty());
    }
}
