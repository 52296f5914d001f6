//! `GET /metrics`: the Prometheus text exposition (format 0.0.4).
//!
//! Node counts and capacity are read from the store at scrape time, so they are never stale;
//! loop durations and failure counts come from the in-memory [`Metrics`]. Every node type ×
//! state pair is always written (0 when empty), so series do not vanish when a node changes
//! state. Rendering is a pure function of a snapshot, hence hand-written rather than kept in a
//! metrics registry that would have to be rebuilt on every scrape.

use std::fmt::Write;
use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use meshrun_shared::node_type::NodeType;

use super::{ApiError, AppState};
use crate::metrics::{DurationStat, Metrics};
use crate::store::NodeState;

/// The exposition format's content type.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What `/metrics` shows of one node.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeFigures {
    /// Its hostname (receptor node id).
    pub hostname: String,
    /// Its type.
    pub node_type: NodeType,
    /// Its state.
    pub node_state: NodeState,
    /// Its capacity.
    pub capacity: i64,
    /// Capacity taken by active jobs.
    pub consumed: i64,
}

/// Escapes a label value (backslash, double quote and newline, as the format requires).
fn label(v: &str) -> String {
    v.replace('\\', r"\\")
        .replace('"', "\\\"")
        .replace('\n', r"\n")
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn seconds(us: u64) -> f64 {
    us as f64 / 1_000_000.0
}

fn durations(out: &mut String, name: &str, help: &str, stat: &DurationStat) {
    header(out, &format!("{name}_seconds"), "summary", help);
    let _ = writeln!(
        out,
        "{name}_seconds_sum {}",
        seconds(stat.sum_us.load(Ordering::Relaxed))
    );
    let _ = writeln!(
        out,
        "{name}_seconds_count {}",
        stat.count.load(Ordering::Relaxed)
    );
    header(
        out,
        &format!("{name}_last_seconds"),
        "gauge",
        "Duration of the most recent one.",
    );
    let _ = writeln!(
        out,
        "{name}_last_seconds {}",
        seconds(stat.last_us.load(Ordering::Relaxed))
    );
}

/// Renders the exposition for control node `node_id`.
pub fn render(node_id: &str, nodes: &[NodeFigures], m: &Metrics) -> String {
    let mut out = String::new();
    header(
        &mut out,
        "meshrun_coordinator_info",
        "gauge",
        "The coordinator's control node and version.",
    );
    let _ = writeln!(
        out,
        "meshrun_coordinator_info{{node_id=\"{}\",version=\"{}\"}} 1",
        label(node_id),
        env!("CARGO_PKG_VERSION")
    );

    header(
        &mut out,
        "meshrun_instances",
        "gauge",
        "Instances by node type and state.",
    );
    for t in NodeType::ALL {
        for s in NodeState::ALL {
            let n = nodes
                .iter()
                .filter(|f| f.node_type == t && f.node_state == s)
                .count();
            let _ = writeln!(
                out,
                "meshrun_instances{{node_type=\"{t}\",node_state=\"{s}\"}} {n}"
            );
        }
    }

    header(
        &mut out,
        "meshrun_instance_capacity",
        "gauge",
        "Capacity of each instance (forks it may run).",
    );
    for f in nodes {
        let _ = writeln!(
            out,
            "meshrun_instance_capacity{{hostname=\"{}\",node_type=\"{}\"}} {}",
            label(&f.hostname),
            f.node_type,
            f.capacity
        );
    }
    header(
        &mut out,
        "meshrun_instance_consumed_capacity",
        "gauge",
        "Capacity taken by each instance's active jobs.",
    );
    for f in nodes {
        let _ = writeln!(
            out,
            "meshrun_instance_consumed_capacity{{hostname=\"{}\",node_type=\"{}\"}} {}",
            label(&f.hostname),
            f.node_type,
            f.consumed
        );
    }
    header(
        &mut out,
        "meshrun_capacity_total",
        "gauge",
        "Capacity of all instances together.",
    );
    let total: i64 = nodes.iter().map(|f| f.capacity).sum();
    let _ = writeln!(out, "meshrun_capacity_total {total}");
    header(
        &mut out,
        "meshrun_consumed_capacity_total",
        "gauge",
        "Capacity taken by active jobs on all instances together.",
    );
    let consumed: i64 = nodes.iter().map(|f| f.consumed).sum();
    let _ = writeln!(out, "meshrun_consumed_capacity_total {consumed}");

    durations(
        &mut out,
        "meshrun_discovery_cycle",
        "Time spent reading the mesh status and reconciling the instances.",
        &m.discovery_cycle,
    );
    header(
        &mut out,
        "meshrun_discovery_failures_total",
        "counter",
        "Discovery cycles that failed.",
    );
    let _ = writeln!(
        out,
        "meshrun_discovery_failures_total {}",
        m.discovery_failures.load(Ordering::Relaxed)
    );
    durations(
        &mut out,
        "meshrun_health_check",
        "Time spent on health checks.",
        &m.health_check,
    );
    header(
        &mut out,
        "meshrun_health_check_failures_total",
        "counter",
        "Health checks that found a node unhealthy or could not run.",
    );
    let _ = writeln!(
        out,
        "meshrun_health_check_failures_total {}",
        m.health_check_failures.load(Ordering::Relaxed)
    );
    header(
        &mut out,
        "meshrun_reaper_released_units_total",
        "counter",
        "Work units the reaper released, by reason.",
    );
    for (reason, n) in [
        ("ended_job", &m.reaper.ended_job),
        ("unknown_job", &m.reaper.unknown_job),
        ("health_check", &m.reaper.health_check),
    ] {
        let _ = writeln!(
            out,
            "meshrun_reaper_released_units_total{{reason=\"{reason}\"}} {}",
            n.load(Ordering::Relaxed)
        );
    }
    header(
        &mut out,
        "meshrun_reaper_force_released_units_total",
        "counter",
        "Released units that needed a force-release because their node could not be told.",
    );
    let _ = writeln!(
        out,
        "meshrun_reaper_force_released_units_total {}",
        m.reaper.forced.load(Ordering::Relaxed)
    );
    header(
        &mut out,
        "meshrun_reaper_failures_total",
        "counter",
        "Reaper passes that could not read the work list or the store.",
    );
    let _ = writeln!(
        out,
        "meshrun_reaper_failures_total {}",
        m.reaper.failures.load(Ordering::Relaxed)
    );
    out
}

/// `GET /metrics`.
pub async fn metrics(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let instances = state.store.all_instances().await?;
    let load = state.store.node_loads().await?;
    let nodes: Vec<NodeFigures> = instances
        .into_iter()
        .map(|i| NodeFigures {
            consumed: load
                .get(&i.hostname)
                .map(|l| l.consumed(i.node_type))
                .unwrap_or(0),
            hostname: i.hostname,
            node_type: i.node_type,
            node_state: i.node_state,
            capacity: i.capacity,
        })
        .collect();
    let mut text = render(&state.node_id, &nodes, &state.metrics);
    let mut certs: Vec<CertExpiry> = state
        .store
        .current_node_certs()
        .await?
        .into_iter()
        .filter_map(|c| {
            let at = chrono::DateTime::parse_from_rfc3339(&c.not_after).ok()?;
            Some(CertExpiry {
                subject: format!("node/{}", c.hostname),
                not_after: at.timestamp(),
            })
        })
        .collect();
    for (subject, file) in [("control_node", "control-node.crt"), ("api", "api.crt")] {
        if let Some(at) = crate::pki::context::cert_not_after(&state.pki.dir.join(file)) {
            certs.push(CertExpiry {
                subject: subject.into(),
                not_after: at.timestamp(),
            });
        }
    }
    text.push_str(&render_cert_expiry(&certs));
    Ok(([(header::CONTENT_TYPE, CONTENT_TYPE)], text))
}

/// One certificate's expiry, for `/metrics`.
#[derive(Debug, Clone, PartialEq)]
pub struct CertExpiry {
    /// `node/<id>`, `control_node` or `api`.
    pub subject: String,
    /// Unix seconds.
    pub not_after: i64,
}

/// The earliest expiry over every current certificate of the mesh (nodes, control node, API),
/// and each one's.
pub fn render_cert_expiry(certs: &[CertExpiry]) -> String {
    let mut out = String::new();
    let Some(earliest) = certs.iter().map(|c| c.not_after).min() else {
        return out;
    };
    header(
        &mut out,
        "meshrun_mesh_cert_earliest_expiry_timestamp_seconds",
        "gauge",
        "When the first current mesh certificate (node, control node or API) expires.",
    );
    let _ = writeln!(
        out,
        "meshrun_mesh_cert_earliest_expiry_timestamp_seconds {earliest}"
    );
    header(
        &mut out,
        "meshrun_mesh_cert_expiry_timestamp_seconds",
        "gauge",
        "When each current mesh certificate expires.",
    );
    for c in certs {
        let _ = writeln!(
            out,
            "meshrun_mesh_cert_expiry_timestamp_seconds{{subject=\"{}\"}} {}",
            label(&c.subject),
            c.not_after
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn node(h: &str, t: NodeType, s: NodeState, capacity: i64, consumed: i64) -> NodeFigures {
        NodeFigures {
            hostname: h.into(),
            node_type: t,
            node_state: s,
            capacity,
            consumed,
        }
    }

    #[test]
    fn the_earliest_certificate_expiry_is_the_minimum_and_each_is_labelled() {
        assert_eq!(render_cert_expiry(&[]), "");
        let text = render_cert_expiry(&[
            CertExpiry {
                subject: "node/exec1".into(),
                not_after: 300,
            },
            CertExpiry {
                subject: "api".into(),
                not_after: 200,
            },
        ]);
        assert!(text.contains("\nmeshrun_mesh_cert_earliest_expiry_timestamp_seconds 200\n"));
        assert!(
            text.contains("meshrun_mesh_cert_expiry_timestamp_seconds{subject=\"node/exec1\"} 300")
        );
    }

    /// Every sample line, as (name with labels, value).
    fn samples(text: &str) -> Vec<(String, String)> {
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| {
                let (k, v) = l.rsplit_once(' ').expect("a sample has a value");
                (k.to_string(), v.to_string())
            })
            .collect()
    }

    fn value(text: &str, key: &str) -> String {
        samples(text)
            .into_iter()
            .find(|(k, _)| k == key)
            .unwrap_or_else(|| panic!("{key} missing from\n{text}"))
            .1
    }

    #[test]
    fn renders_counts_capacity_and_loop_figures() {
        let m = Metrics::default();
        m.discovery_cycle.observe(Duration::from_millis(1500));
        m.discovery_cycle.observe(Duration::from_millis(500));
        m.health_check.observe(Duration::from_micros(250));
        m.health_check_failures.fetch_add(3, Ordering::Relaxed);
        let nodes = [
            node("exec1", NodeType::Execution, NodeState::Ready, 143, 6),
            node("exec2", NodeType::Execution, NodeState::Unavailable, 0, 0),
            node("hop", NodeType::Hop, NodeState::Ready, 0, 0),
            node("ctl", NodeType::Control, NodeState::Ready, 32, 1),
        ];
        let text = render("ctl", &nodes, &m);
        assert_eq!(
            value(
                &text,
                "meshrun_instances{node_type=\"execution\",node_state=\"ready\"}"
            ),
            "1"
        );
        assert_eq!(
            value(
                &text,
                "meshrun_instances{node_type=\"execution\",node_state=\"unavailable\"}"
            ),
            "1"
        );
        assert_eq!(
            value(
                &text,
                "meshrun_instances{node_type=\"hybrid\",node_state=\"installed\"}"
            ),
            "0",
            "empty pairs are written as 0"
        );
        assert_eq!(
            value(
                &text,
                "meshrun_instance_capacity{hostname=\"exec1\",node_type=\"execution\"}"
            ),
            "143"
        );
        assert_eq!(value(&text, "meshrun_capacity_total"), "175");
        assert_eq!(value(&text, "meshrun_consumed_capacity_total"), "7");
        assert_eq!(value(&text, "meshrun_discovery_cycle_seconds_sum"), "2");
        assert_eq!(value(&text, "meshrun_discovery_cycle_seconds_count"), "2");
        assert_eq!(value(&text, "meshrun_discovery_cycle_last_seconds"), "0.5");
        assert_eq!(value(&text, "meshrun_health_check_seconds_sum"), "0.00025");
        assert_eq!(value(&text, "meshrun_health_check_failures_total"), "3");
        assert_eq!(value(&text, "meshrun_discovery_failures_total"), "0");
        assert_eq!(
            samples(&text)
                .iter()
                .filter(|(k, _)| k.starts_with("meshrun_instances{"))
                .count(),
            NodeType::ALL.len() * NodeState::ALL.len()
        );
    }

    #[test]
    fn every_family_is_typed_once_and_labels_are_escaped() {
        let nodes = [node(
            "we\"ird\\host\nname",
            NodeType::Execution,
            NodeState::Ready,
            1,
            0,
        )];
        let text = render("c", &nodes, &Metrics::default());
        assert!(text.contains(r#"hostname="we\"ird\\host\nname""#), "{text}");
        let mut typed: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .map(|l| l.split(' ').next().unwrap_or(""))
            .collect();
        let n = typed.len();
        typed.sort_unstable();
        typed.dedup();
        assert_eq!(typed.len(), n, "a family is declared twice");
        for (k, _) in samples(&text) {
            let family = k.split('{').next().unwrap_or("");
            assert!(
                typed.iter().any(|t| family == *t
                    || family
                        .strip_prefix(t)
                        .is_some_and(|s| s == "_sum" || s == "_count")),
                "sample {k} has no # TYPE"
            );
        }
        assert!(text.ends_with('\n'));
    }
}
