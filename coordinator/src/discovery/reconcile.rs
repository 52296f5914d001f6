//! The pure half of discovery: from one reading of receptor's `status`, the stored instances
//! and the time, the list of changes to make. No I/O, so it is unit-tested and benchmarked
//! directly (the target is well under 20 ms for a 1,000-node mesh).
//!
//! Rules (DESIGN.md "Discovery"): a node is alive while it is in `RoutingTable` (the control
//! node always is); advertisements only tell what an unknown node is and how to submit to it
//! (`Secure`, `ConnType`), since they are re-sent every 60 s and never expire. Unroutable time
//! counts from the first reading without the node; past the grace period the node is
//! `unavailable`. Changes are expressed as [`Change`]s that are applied to the freshly read row
//! inside the store's optimistic write, so a concurrent health check or API write is never
//! overwritten with stale values.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use chrono::{DateTime, TimeDelta, Utc};
use meshrun_shared::control_socket::Status;
use meshrun_shared::node_type::{NodeType, WORK_TYPE_EXECUTION, WORK_TYPE_LOCAL};

use crate::store::{Instance, NodeState};

/// receptor's ConnType for a stream service with TLS.
const CONN_TYPE_STREAM_TLS: u8 = 2;

/// How stale `last_seen` may get while a node stays routable, before it is written again. Each
/// node's own threshold lies between half of this and all of it (from a hash of its name), so
/// a thousand nodes seen at once do not all need a write in the same later cycle. AWX updates
/// its `last_seen` once a minute; the moment a node stops being routable is stored exactly.
pub const LAST_SEEN_REFRESH_SECS: f64 = 60.0;

/// What discovery may decide on its own.
#[derive(Debug, Clone)]
pub struct Policy {
    /// The type the control node itself is registered as (`control` or `hybrid`, per config).
    pub control_type: NodeType,
    /// Register routable nodes the store does not know.
    pub auto_register: bool,
    /// How long a node may be unroutable before it is `unavailable`.
    pub grace: TimeDelta,
}

/// One reading: when, and which nodes were routable then.
#[derive(Debug, Clone, Default)]
pub struct Reading {
    /// When `status` was read.
    pub at: DateTime<Utc>,
    /// The routable nodes, the control node included.
    pub routable: HashSet<String>,
}

/// One change to one instance, applied to the current row (so each must make sense on a row
/// that changed since the reading it was planned from).
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// Routable now: `last_seen` = `at`, `unroutable_since` cleared.
    Seen {
        /// The reading's time.
        at: String,
    },
    /// Not routable: `unroutable_since` = `since` unless already set (the first reading without
    /// the node counts), and `last_seen` = the previous reading if it was routable then.
    Unroutable {
        /// This reading's time.
        since: String,
        /// The previous reading's time, when the node was routable in it.
        last_seen: Option<String>,
    },
    /// Unroutable past the grace period: `unavailable` with `errors` (unless deprovisioning).
    Lost {
        /// "not routable from <control> since <time>".
        errors: String,
    },
    /// How submits to it must be made, from its advertisement.
    SubmitMode {
        /// It verifies signatures for its work type.
        secure_work: bool,
        /// Its control service is TLS.
        control_tls: bool,
    },
    /// A routable hop node is `ready` (it runs nothing, so there is nothing else to check).
    HopReady,
}

impl Change {
    /// Applies the change to `inst` (the row as it is now in the store).
    pub fn apply(&self, inst: &mut Instance) {
        match self {
            Change::Seen { at } => {
                inst.last_seen = Some(at.clone());
                inst.unroutable_since = None;
            }
            Change::Unroutable { since, last_seen } => {
                if inst
                    .unroutable_since
                    .as_deref()
                    .and_then(parse_stamp)
                    .is_none()
                {
                    inst.unroutable_since = Some(since.clone());
                }
                if let Some(at) = last_seen {
                    inst.last_seen = Some(at.clone());
                }
            }
            Change::Lost { errors } => {
                // A node that came back while this was being written keeps its state.
                if inst.node_state != NodeState::Deprovisioning && inst.unroutable_since.is_some() {
                    inst.node_state = NodeState::Unavailable;
                    inst.errors = errors.clone();
                }
            }
            Change::SubmitMode {
                secure_work,
                control_tls,
            } => {
                inst.secure_work = *secure_work;
                inst.control_tls = *control_tls;
            }
            Change::HopReady => {
                if inst.node_type == NodeType::Hop
                    && inst.node_state != NodeState::Deprovisioning
                    && inst.unroutable_since.is_none()
                {
                    inst.node_state = NodeState::Ready;
                    inst.errors.clear();
                }
            }
        }
    }
}

/// An unknown routable node to register.
#[derive(Debug, Clone, PartialEq)]
pub struct Registration {
    /// Its node id.
    pub hostname: String,
    /// The type its advertisement implies (or the configured type of the control node).
    pub node_type: NodeType,
    /// Changes to apply right after creating it.
    pub changes: Vec<Change>,
}

/// Changes to one stored instance.
#[derive(Debug, Clone, PartialEq)]
pub struct Update {
    /// The instance id.
    pub id: i64,
    /// Its hostname (for logs).
    pub hostname: String,
    /// What to change, in order.
    pub changes: Vec<Change>,
}

/// Everything one reading asks for.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// Unknown nodes to register (then health-check at once, unless hops).
    pub register: Vec<Registration>,
    /// Changes to stored instances.
    pub updates: Vec<Update>,
    /// Stored instances to health-check at once: newly routable, or their submit mode changed.
    pub check_now: Vec<i64>,
    /// Nodes that become `unavailable` with this plan (for logs).
    pub lost: Vec<String>,
    /// Routable nodes left unregistered because `auto_register` is off.
    pub unknown: Vec<String>,
    /// Routable unknown nodes whose control-service advertisement has not arrived yet.
    pub awaiting_ad: Vec<String>,
    /// The mesh links between routable nodes, `(source, target, cost)`, sorted; the source is
    /// the end farther from the control node (the one that dialled, by meshrun's topology rule).
    pub links: Vec<(String, String, f64)>,
    /// This reading, for the next call.
    pub reading: Reading,
}

/// What a node's advertisements say, gathered in one pass.
#[derive(Debug, Default)]
struct AdSummary<'a> {
    /// An advertisement of its control service has arrived (work commands travel on it).
    control_service: bool,
    /// The control service is TLS.
    control_tls: bool,
    /// `(work type, secure)` pairs.
    work: Vec<(&'a str, bool)>,
}

impl AdSummary<'_> {
    fn secure(&self, work_type: Option<&str>) -> bool {
        work_type.is_some_and(|wt| self.work.iter().any(|(t, s)| *t == wt && *s))
    }

    /// The node type a node that never joined gets from what it offers. `local` on another
    /// node is another control node; `hybrid` is never guessed, because it would let user jobs
    /// run there — only a join or the config may grant that.
    fn implied_type(&self) -> NodeType {
        if self.work.iter().any(|(t, _)| *t == WORK_TYPE_EXECUTION) {
            NodeType::Execution
        } else if self.work.iter().any(|(t, _)| *t == WORK_TYPE_LOCAL) {
            NodeType::Control
        } else {
            NodeType::Hop
        }
    }
}

fn summarize(status: &Status) -> HashMap<&str, AdSummary<'_>> {
    let mut ads: HashMap<&str, AdSummary<'_>> = HashMap::new();
    for ad in &status.advertisements {
        let is_control = ad.service == "control"
            || ad
                .tags
                .as_ref()
                .is_some_and(|t| t.get("type").is_some_and(|v| v == "Control Service"));
        let entry = ads.entry(ad.node_id.as_str()).or_default();
        if is_control {
            entry.control_service = true;
            if ad.service == "control" && ad.conn_type == CONN_TYPE_STREAM_TLS {
                entry.control_tls = true;
            }
        }
        entry.work.extend(
            ad.work_commands
                .iter()
                .map(|w| (w.work_type.as_str(), w.secure)),
        );
    }
    ads
}

/// Reads a stored time.
pub fn parse_stamp(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// A time as the store writes it.
pub fn stamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// A fraction in [0, 1) from `name`, the same in every process (std's hasher is seeded per
/// process): FNV-1a, then murmur3's finalizer, without which names that differ only in their
/// last characters (`exec-0001`, `exec-0002`) land close together.
fn stable_fraction(name: &str) -> f64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^= h >> 33;
    (h >> 11) as f64 / (1u64 << 53) as f64
}

fn last_seen_is_stale(inst: &Instance, now: DateTime<Utc>) -> bool {
    let Some(seen) = inst.last_seen.as_deref().and_then(parse_stamp) else {
        return true;
    };
    let limit = LAST_SEEN_REFRESH_SECS * (0.5 + 0.5 * stable_fraction(&inst.hostname));
    (now - seen).as_seconds_f64() >= limit
}

/// The work type a stored node is submitted to, and so whose `Secure` flag matters.
fn work_type_of(hostname: &str, node_type: NodeType, control: &str) -> Option<&'static str> {
    if hostname == control {
        Some(WORK_TYPE_LOCAL)
    } else {
        node_type.work_type()
    }
}

/// Plans the changes one reading asks for. `previous` is the last reading this process made
/// (None at start: every routable node then counts as newly routable and is checked).
pub fn reconcile(
    status: &Status,
    stored: &[Instance],
    previous: Option<&Reading>,
    now: DateTime<Utc>,
    policy: &Policy,
) -> Plan {
    let control = status.node_id.as_str();
    let at = stamp(now);
    let ads = summarize(status);
    let by_name: HashMap<&str, &Instance> =
        stored.iter().map(|i| (i.hostname.as_str(), i)).collect();
    let mut routable: HashSet<String> = status.routing_table.keys().cloned().collect();
    if !control.is_empty() {
        routable.insert(control.to_string());
    }
    let mut plan = Plan::default();
    let mut names: Vec<&String> = routable.iter().collect();
    names.sort();

    for name in names {
        let ad = ads.get(name.as_str());
        let Some(inst) = by_name.get(name.as_str()) else {
            register_or_wait(&mut plan, name, ad, control, &at, policy);
            continue;
        };
        let mut changes = Vec::new();
        let newly = previous.is_none_or(|p| !p.routable.contains(name.as_str()))
            || inst.unroutable_since.is_some();
        if inst.unroutable_since.is_some() || last_seen_is_stale(inst, now) {
            changes.push(Change::Seen { at: at.clone() });
        }
        let mut mode_changed = false;
        if let Some(ad) = ad.filter(|a| a.control_service) {
            let secure = ad.secure(work_type_of(name, inst.node_type, control));
            if secure != inst.secure_work || ad.control_tls != inst.control_tls {
                mode_changed = true;
                changes.push(Change::SubmitMode {
                    secure_work: secure,
                    control_tls: ad.control_tls,
                });
            }
        }
        let active = inst.node_state != NodeState::Deprovisioning;
        if inst.node_type == NodeType::Hop {
            if active && (inst.node_state != NodeState::Ready || !inst.errors.is_empty()) {
                changes.push(Change::HopReady);
            }
        } else if active && (newly || mode_changed) {
            plan.check_now.push(inst.id);
        }
        if !changes.is_empty() {
            plan.updates.push(Update {
                id: inst.id,
                hostname: inst.hostname.clone(),
                changes,
            });
        }
    }

    for inst in stored {
        if routable.contains(&inst.hostname) {
            continue;
        }
        let mut changes = Vec::new();
        let since = match inst.unroutable_since.as_deref().and_then(parse_stamp) {
            Some(since) => since,
            None => {
                let was_routable = previous.filter(|p| p.routable.contains(&inst.hostname));
                changes.push(Change::Unroutable {
                    since: at.clone(),
                    last_seen: was_routable.map(|p| stamp(p.at)),
                });
                now
            }
        };
        let ever_seen = inst.last_seen.is_some() || inst.node_state != NodeState::Installed;
        if now - since > policy.grace && inst.node_state != NodeState::Deprovisioning && ever_seen {
            let since_text = inst.unroutable_since.clone().unwrap_or_else(|| at.clone());
            let errors = format!("not routable from {control} since {since_text}");
            if inst.node_state != NodeState::Unavailable || inst.errors != errors {
                if inst.node_state != NodeState::Unavailable {
                    plan.lost.push(inst.hostname.clone());
                }
                changes.push(Change::Lost { errors });
            }
        }
        if !changes.is_empty() {
            plan.updates.push(Update {
                id: inst.id,
                hostname: inst.hostname.clone(),
                changes,
            });
        }
    }

    plan.links = links(status, &routable);
    plan.reading = Reading { at: now, routable };
    plan
}

fn register_or_wait(
    plan: &mut Plan,
    name: &str,
    ad: Option<&AdSummary<'_>>,
    control: &str,
    at: &str,
    policy: &Policy,
) {
    let node_type = if name == control {
        policy.control_type
    } else if !policy.auto_register {
        plan.unknown.push(name.to_string());
        return;
    } else {
        match ad.filter(|a| a.control_service) {
            Some(a) => a.implied_type(),
            None => {
                plan.awaiting_ad.push(name.to_string());
                return;
            }
        }
    };
    let mut changes = vec![Change::Seen { at: at.to_string() }];
    if let Some(a) = ad {
        changes.push(Change::SubmitMode {
            secure_work: a.secure(work_type_of(name, node_type, control)),
            control_tls: a.control_tls,
        });
    }
    if node_type == NodeType::Hop {
        changes.push(Change::HopReady);
    }
    plan.register.push(Registration {
        hostname: name.to_string(),
        node_type,
        changes,
    });
}

/// Links between routable nodes from `KnownConnectionCosts` (which never forgets dead nodes)
/// and the control node's own `Connections`, one per pair.
fn links(status: &Status, routable: &HashSet<String>) -> Vec<(String, String, f64)> {
    let mut pairs: BTreeMap<(&str, &str), f64> = BTreeMap::new();
    let mut add = |a: &str, b: &str, cost: f64| {
        if a == b {
            return;
        }
        let (Some(a), Some(b)) = (routable.get(a), routable.get(b)) else {
            return;
        };
        let key = if a < b {
            (a.as_str(), b.as_str())
        } else {
            (b.as_str(), a.as_str())
        };
        pairs.entry(key).or_insert(cost);
    };
    for (node, peers) in &status.known_connection_costs {
        for (peer, cost) in peers {
            add(node, peer, *cost);
        }
    }
    for c in &status.connections {
        add(&status.node_id, &c.node_id, c.cost);
    }
    let hops = distances(&status.node_id, pairs.keys().copied());
    let far = |n: &str| hops.get(n).copied().unwrap_or(usize::MAX);
    let mut out: Vec<(String, String, f64)> = pairs
        .into_iter()
        .map(|((a, b), cost)| {
            if far(a) < far(b) {
                (b.to_string(), a.to_string(), cost)
            } else {
                (a.to_string(), b.to_string(), cost)
            }
        })
        .collect();
    out.sort_by(|x, y| (&x.0, &x.1).cmp(&(&y.0, &y.1)));
    out
}

/// Hop counts from `from` over the undirected `edges`.
fn distances<'a>(
    from: &'a str,
    edges: impl Iterator<Item = (&'a str, &'a str)>,
) -> HashMap<&'a str, usize> {
    let mut adjacent: HashMap<&str, Vec<&str>> = HashMap::new();
    for (a, b) in edges {
        adjacent.entry(a).or_default().push(b);
        adjacent.entry(b).or_default().push(a);
    }
    let mut dist = HashMap::from([(from, 0usize)]);
    let mut queue = VecDeque::from([from]);
    while let Some(n) = queue.pop_front() {
        let d = dist[n];
        for &m in adjacent.get(n).map(Vec::as_slice).unwrap_or_default() {
            if !dist.contains_key(m) {
                dist.insert(m, d + 1);
                queue.push_back(m);
            }
        }
    }
    dist
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: &str = "2026-11-27T10:00:00.000000Z";

    fn t(secs: i64) -> DateTime<Utc> {
        parse_stamp(T0).unwrap() + TimeDelta::seconds(secs)
    }

    fn policy() -> Policy {
        Policy {
            control_type: NodeType::Hybrid,
            auto_register: true,
            grace: TimeDelta::seconds(20),
        }
    }

    fn inst(id: i64, host: &str, node_type: NodeType, state: NodeState) -> Instance {
        Instance {
            id,
            hostname: host.into(),
            uuid: None,
            node_type,
            node_state: state,
            enabled: true,
            cpu: 0.0,
            memory: 0,
            cpu_capacity: 0,
            mem_capacity: 0,
            capacity: 0,
            capacity_adjustment: 1.0,
            version: String::new(),
            boot_id: None,
            errors: String::new(),
            last_seen: None,
            unroutable_since: None,
            last_health_check: None,
            health_check_started: None,
            listener_address: None,
            registered_by: "discovery".into(),
            secure_work: false,
            control_tls: false,
            revision: 0,
            created: T0.into(),
            modified: T0.into(),
        }
    }

    /// control ← hop ← exec1, exec2; `routable` lists who is in the routing table. exec1's
    /// advertisement is secure and TLS; exec2 has not advertised; `dead` is only remembered.
    fn status(routable: &[&str]) -> Status {
        let rt: serde_json::Map<String, serde_json::Value> = routable
            .iter()
            .map(|n| (n.to_string(), serde_json::json!("hop")))
            .collect();
        serde_json::from_value(serde_json::json!({
            "NodeID": "control",
            "Connections": [{"NodeID": "hop", "Cost": 1.0}],
            "RoutingTable": rt,
            "KnownConnectionCosts": {
                "control": {"hop": 1.0},
                "hop": {"control": 1.0, "exec1": 1.5, "exec2": 1.0, "dead": 1.0},
                "exec1": {"hop": 1.5},
                "exec2": {"hop": 1.0},
                "dead": {"hop": 1.0}
            },
            "Advertisements": [
                {"NodeID": "control", "Service": "control", "ConnType": 1,
                 "Tags": {"type": "Control Service"},
                 "WorkCommands": [{"WorkType": "local", "Secure": true}]},
                {"NodeID": "hop", "Service": "control", "ConnType": 1,
                 "Tags": {"type": "Control Service"}, "WorkCommands": null},
                {"NodeID": "exec1", "Service": "control", "ConnType": 2,
                 "Tags": {"type": "Control Service"},
                 "WorkCommands": [{"WorkType": "ansible-runner", "Secure": true}]},
                {"NodeID": "other", "Service": "control", "ConnType": 1,
                 "Tags": {"type": "Control Service"},
                 "WorkCommands": [{"WorkType": "local", "Secure": false}]}
            ]
        }))
        .unwrap()
    }

    fn apply(inst: &mut Instance, plan: &Plan) {
        let id = inst.id;
        for u in plan.updates.iter().filter(|u| u.id == id) {
            for c in &u.changes {
                c.apply(inst);
            }
        }
    }

    #[test]
    fn unknown_nodes_are_registered_by_what_they_advertise() {
        let s = status(&["hop", "exec1", "exec2", "other"]);
        let plan = reconcile(&s, &[], None, t(0), &policy());
        let reg: Vec<(&str, NodeType)> = plan
            .register
            .iter()
            .map(|r| (r.hostname.as_str(), r.node_type))
            .collect();
        assert_eq!(
            reg,
            [
                ("control", NodeType::Hybrid),
                ("exec1", NodeType::Execution),
                ("hop", NodeType::Hop),
                ("other", NodeType::Control),
            ]
        );
        assert_eq!(
            plan.awaiting_ad,
            ["exec2"],
            "no guess before the ad arrives"
        );
        let exec1 = &plan.register[1];
        assert!(exec1.changes.contains(&Change::SubmitMode {
            secure_work: true,
            control_tls: true
        }));
        let hop = &plan.register[2];
        assert!(hop.changes.contains(&Change::HopReady));
        let control = &plan.register[0];
        assert!(control.changes.contains(&Change::SubmitMode {
            secure_work: true,
            control_tls: false
        }));

        let off = Policy {
            auto_register: false,
            ..policy()
        };
        let plan = reconcile(&s, &[], None, t(0), &off);
        assert_eq!(
            plan.register.len(),
            1,
            "the control node is always registered"
        );
        assert_eq!(plan.unknown, ["exec1", "exec2", "hop", "other"]);
    }

    #[test]
    fn newly_routable_nodes_are_checked_once_and_steady_ones_cost_nothing() {
        let s = status(&["hop", "exec1"]);
        let mut exec1 = inst(2, "exec1", NodeType::Execution, NodeState::Installed);
        let mut hop = inst(3, "hop", NodeType::Hop, NodeState::Installed);
        let mut control = inst(1, "control", NodeType::Hybrid, NodeState::Ready);
        let plan = reconcile(
            &s,
            &[control.clone(), exec1.clone(), hop.clone()],
            None,
            t(0),
            &policy(),
        );
        assert_eq!(plan.check_now, [1, 2], "hops are not submitted to");
        for i in [&mut control, &mut exec1, &mut hop] {
            apply(i, &plan);
        }
        assert_eq!(hop.node_state, NodeState::Ready);
        assert_eq!(exec1.last_seen.as_deref(), Some(T0));
        assert!(exec1.secure_work && exec1.control_tls);

        let next = reconcile(
            &s,
            &[control.clone(), exec1.clone(), hop.clone()],
            Some(&plan.reading),
            t(2),
            &policy(),
        );
        assert!(next.check_now.is_empty(), "{:?}", next.check_now);
        assert!(next.updates.is_empty(), "{:?}", next.updates);

        // last_seen is refreshed once it is a minute old at the latest.
        let later = reconcile(
            &s,
            &[control, exec1, hop],
            Some(&next.reading),
            t(61),
            &policy(),
        );
        assert_eq!(later.updates.len(), 3);
        assert!(
            later
                .updates
                .iter()
                .all(|u| u.changes == [Change::Seen { at: stamp(t(61)) }])
        );
        assert!(later.check_now.is_empty());
    }

    #[test]
    fn a_lost_node_becomes_unavailable_after_the_grace_and_is_checked_when_back() {
        let mut exec1 = inst(2, "exec1", NodeType::Execution, NodeState::Ready);
        exec1.last_seen = Some(T0.into());
        let with = status(&["hop", "exec1"]);
        let without = status(&["hop"]);
        let first = reconcile(&with, &[exec1.clone()], None, t(0), &policy());
        apply(&mut exec1, &first);

        let gone = reconcile(
            &without,
            &[exec1.clone()],
            Some(&first.reading),
            t(2),
            &policy(),
        );
        assert!(gone.lost.is_empty());
        apply(&mut exec1, &gone);
        assert_eq!(exec1.unroutable_since, Some(stamp(t(2))));
        assert_eq!(
            exec1.last_seen,
            Some(stamp(t(0))),
            "last seen in the previous reading"
        );
        assert_eq!(exec1.node_state, NodeState::Ready, "still within the grace");

        let within = reconcile(
            &without,
            &[exec1.clone()],
            Some(&gone.reading),
            t(22),
            &policy(),
        );
        assert!(within.updates.is_empty(), "{:?}", within.updates);

        let past = reconcile(
            &without,
            &[exec1.clone()],
            Some(&within.reading),
            t(23),
            &policy(),
        );
        assert_eq!(past.lost, ["exec1"]);
        apply(&mut exec1, &past);
        assert_eq!(exec1.node_state, NodeState::Unavailable);
        assert_eq!(
            exec1.errors,
            format!("not routable from control since {}", stamp(t(2)))
        );
        assert_eq!(
            exec1.unroutable_since,
            Some(stamp(t(2))),
            "the first reading counts"
        );

        let again = reconcile(
            &without,
            &[exec1.clone()],
            Some(&past.reading),
            t(25),
            &policy(),
        );
        assert!(again.updates.is_empty() && again.lost.is_empty());

        let back = reconcile(
            &with,
            &[exec1.clone()],
            Some(&again.reading),
            t(27),
            &policy(),
        );
        assert_eq!(back.check_now, [2]);
        apply(&mut exec1, &back);
        assert_eq!(exec1.unroutable_since, None);
        assert_eq!(exec1.last_seen, Some(stamp(t(27))));
        assert_eq!(
            exec1.node_state,
            NodeState::Unavailable,
            "ready again only after a health check"
        );
    }

    #[test]
    fn never_seen_installed_and_deprovisioning_nodes_are_left_alone() {
        let joined = inst(5, "joined", NodeType::Execution, NodeState::Installed);
        let mut leaving = inst(6, "leaving", NodeType::Execution, NodeState::Deprovisioning);
        leaving.last_seen = Some(T0.into());
        leaving.unroutable_since = Some(T0.into());
        let mut joined_since = joined.clone();
        joined_since.unroutable_since = Some(T0.into());
        let plan = reconcile(
            &status(&[]),
            &[joined_since, leaving.clone()],
            None,
            t(100),
            &policy(),
        );
        assert!(plan.lost.is_empty() && plan.updates.is_empty(), "{plan:?}");
        // A lost-node write that lands after the node came back changes nothing.
        let mut back = inst(7, "back", NodeType::Execution, NodeState::Ready);
        Change::Lost { errors: "x".into() }.apply(&mut back);
        assert_eq!(back.node_state, NodeState::Ready);
        Change::Lost { errors: "x".into() }.apply(&mut leaving);
        assert_eq!(leaving.node_state, NodeState::Deprovisioning);
    }

    #[test]
    fn links_join_routable_nodes_and_point_toward_the_control_node() {
        let plan = reconcile(&status(&["hop", "exec1"]), &[], None, t(0), &policy());
        assert_eq!(
            plan.links,
            [
                ("exec1".to_string(), "hop".to_string(), 1.5),
                ("hop".to_string(), "control".to_string(), 1.0),
            ]
        );
    }

    #[test]
    fn a_changed_submit_mode_is_cached_and_rechecked() {
        let mut exec1 = inst(2, "exec1", NodeType::Execution, NodeState::Ready);
        exec1.last_seen = Some(T0.into());
        let s = status(&["hop", "exec1"]);
        let prev = Reading {
            at: t(0),
            routable: ["control", "hop", "exec1"].map(String::from).into(),
        };
        let plan = reconcile(&s, &[exec1], Some(&prev), t(2), &policy());
        assert_eq!(plan.check_now, [2]);
        assert_eq!(
            plan.updates[0].changes,
            [Change::SubmitMode {
                secure_work: true,
                control_tls: true
            }]
        );
    }
}
