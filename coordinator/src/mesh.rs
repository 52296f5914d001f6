//! What the control node's receptor `status` says about a node: is it reachable now, by which
//! path, and how must work be submitted to it (signed? over TLS?).

use std::cmp::Ordering;
use std::collections::{BTreeMap, BinaryHeap, HashMap};

use meshrun_shared::control_socket::Status;

/// receptor's ConnType for a stream service with TLS.
const CONN_TYPE_STREAM_TLS: u8 = 2;

/// How to submit work to a node, from its advertisements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SubmitMode {
    /// The node advertises the work type with `Secure: true`: the submit must be signed.
    pub sign: bool,
    /// The node's control service is TLS: the submit needs a `tlsclient`.
    pub tls: bool,
}

/// Whether `node` can be reached now: it is this node or it is in the routing table.
pub fn is_routable(status: &Status, node: &str) -> bool {
    node == status.node_id || status.routing_table.contains_key(node)
}

/// The nodes reachable now, sorted.
pub fn routable_nodes(status: &Status) -> Vec<String> {
    let mut nodes: Vec<String> = status.routing_table.keys().cloned().collect();
    nodes.sort();
    nodes
}

/// The work types `node` advertises, if an advertisement for it has arrived.
pub fn advertised_work_types(status: &Status, node: &str) -> Option<Vec<String>> {
    let ads: Vec<_> = status
        .advertisements
        .iter()
        .filter(|a| a.node_id == node)
        .collect();
    if ads.is_empty() {
        return None;
    }
    let mut types: Vec<String> = ads
        .iter()
        .flat_map(|a| a.work_commands.iter().map(|w| w.work_type.clone()))
        .collect();
    types.sort();
    types.dedup();
    Some(types)
}

/// How to submit `work_type` to `node`.
pub fn submit_mode(status: &Status, node: &str, work_type: &str) -> SubmitMode {
    let mut mode = SubmitMode::default();
    for ad in status.advertisements.iter().filter(|a| a.node_id == node) {
        if ad.service == "control" && ad.conn_type == CONN_TYPE_STREAM_TLS {
            mode.tls = true;
        }
        if ad
            .work_commands
            .iter()
            .any(|w| w.work_type == work_type && w.secure)
        {
            mode.sign = true;
        }
    }
    mode
}

#[derive(PartialEq)]
struct Candidate {
    cost: f64,
    node: String,
}

impl Eq for Candidate {}

impl Ord for Candidate {
    fn cmp(&self, other: &Self) -> Ordering {
        // Reversed: BinaryHeap is a max-heap and we want the cheapest first.
        other
            .cost
            .total_cmp(&self.cost)
            .then_with(|| other.node.cmp(&self.node))
    }
}

impl PartialOrd for Candidate {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// The cheapest path from this node to `to` over links between reachable nodes, both ends
/// included (`[control, hop, exec1]`). `None` when `to` is not reachable.
pub fn route(status: &Status, to: &str) -> Option<Vec<String>> {
    let from = status.node_id.as_str();
    if !is_routable(status, to) {
        return None;
    }
    let alive = |n: &str| is_routable(status, n);
    let graph: &BTreeMap<String, BTreeMap<String, f64>> = &status.known_connection_costs;
    let mut best: HashMap<&str, f64> = HashMap::from([(from, 0.0)]);
    let mut prev: HashMap<&str, &str> = HashMap::new();
    let mut heap = BinaryHeap::from([Candidate {
        cost: 0.0,
        node: from.to_string(),
    }]);
    while let Some(Candidate { cost, node }) = heap.pop() {
        if node == to {
            break;
        }
        if best.get(node.as_str()).is_some_and(|&b| cost > b) {
            continue;
        }
        let Some((node_key, peers)) = graph.get_key_value(node.as_str()) else {
            continue;
        };
        for (peer, link_cost) in peers {
            if !alive(peer) {
                continue;
            }
            let next = cost + link_cost;
            if best.get(peer.as_str()).is_none_or(|&b| next < b) {
                best.insert(peer, next);
                prev.insert(peer, node_key);
                heap.push(Candidate {
                    cost: next,
                    node: peer.clone(),
                });
            }
        }
    }
    let mut path = vec![to.to_string()];
    let mut at = to;
    while at != from {
        at = prev.get(at)?;
        path.push(at.to_string());
    }
    path.reverse();
    Some(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(json: serde_json::Value) -> Status {
        serde_json::from_value(json).unwrap()
    }

    fn mesh() -> Status {
        status(serde_json::json!({
            "NodeID": "control",
            "Version": "1.4.8",
            "SystemCPUCount": 2,
            "SystemMemoryMiB": 1024,
            "Connections": [{"NodeID": "hop", "Cost": 1.0}],
            "RoutingTable": {"hop": "hop", "exec1": "hop", "exec2": "hop"},
            "KnownConnectionCosts": {
                "control": {"hop": 1.0},
                "hop": {"control": 1.0, "exec1": 1.0, "exec2": 1.0, "dead": 1.0},
                "exec1": {"hop": 1.0},
                "exec2": {"hop": 1.0},
                "dead": {"hop": 1.0}
            },
            "Advertisements": [
                {"NodeID": "exec1", "Service": "control", "Time": "2026-11-27T00:00:00Z", "ConnType": 2,
                 "Tags": {"type": "Control Service"},
                 "WorkCommands": [{"WorkType": "ansible-runner", "Secure": true}]},
                {"NodeID": "exec2", "Service": "control", "Time": "2026-11-27T00:00:00Z", "ConnType": 1,
                 "Tags": null, "WorkCommands": [{"WorkType": "ansible-runner", "Secure": false}]},
                {"NodeID": "hop", "Service": "control", "Time": "2026-11-27T00:00:00Z", "ConnType": 1,
                 "Tags": null, "WorkCommands": null}
            ]
        }))
    }

    #[test]
    fn routes_go_through_the_hop_and_skip_dead_nodes() {
        let s = mesh();
        assert_eq!(route(&s, "exec1").unwrap(), ["control", "hop", "exec1"]);
        assert_eq!(route(&s, "control").unwrap(), ["control"]);
        assert_eq!(route(&s, "dead"), None);
        assert!(!is_routable(&s, "dead"));
        assert_eq!(routable_nodes(&s), ["exec1", "exec2", "hop"]);
    }

    #[test]
    fn submit_mode_follows_advertisements() {
        let s = mesh();
        assert_eq!(
            submit_mode(&s, "exec1", "ansible-runner"),
            SubmitMode {
                sign: true,
                tls: true
            }
        );
        assert_eq!(
            submit_mode(&s, "exec2", "ansible-runner"),
            SubmitMode::default()
        );
        assert_eq!(
            advertised_work_types(&s, "hop").unwrap(),
            Vec::<String>::new()
        );
        assert_eq!(
            advertised_work_types(&s, "exec1").unwrap(),
            ["ansible-runner"]
        );
        assert_eq!(advertised_work_types(&s, "nobody"), None);
    }
}
