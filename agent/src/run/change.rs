//! What a new receptor.conf means for the running receptor: nothing, a `reload`, or a restart.
//!
//! receptor 1.4.8 reloads only the link backends (`tcp-*`/`ws-*`/`udp-*` listeners and peers,
//! `local-only`); it refuses a reload when any other entry was added, changed or removed,
//! comparing each such entry's YAML text as a set. A reload cancels *every* backend of the node
//! (all links drop and redial), so an unchanged config must not be reloaded at all.

use meshrun_shared::receptor_conf::{Entry, ReceptorConfig};

/// The actions receptor can reload (its `reloadableActions`).
pub const RELOADABLE: &[&str] = &[
    "tcp-peer",
    "tcp-listener",
    "ws-peer",
    "ws-listener",
    "udp-peer",
    "udp-listener",
    "local-only",
];

/// How to bring a running receptor to a new config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// The same entries: leave receptor alone.
    Nothing,
    /// Only link backends differ: `reload` through the control socket.
    Reload,
    /// Something receptor reads only at start differs: restart it.
    Restart,
}

/// True for an entry receptor re-reads on `reload`.
pub fn is_reloadable(entry: &Entry) -> bool {
    RELOADABLE.contains(&entry.action())
}

/// Classifies going from `running` (what the receptor was started or last reloaded with) to
/// `next`. Order does not matter to receptor, so neither does it here.
pub fn classify(running: &ReceptorConfig, next: &ReceptorConfig) -> Change {
    if sorted_texts(running, |_| true) == sorted_texts(next, |_| true) {
        Change::Nothing
    } else if sorted_texts(running, |e| !is_reloadable(e))
        == sorted_texts(next, |e| !is_reloadable(e))
    {
        Change::Reload
    } else {
        Change::Restart
    }
}

/// Each selected entry as the renderer writes it on its own, sorted.
fn sorted_texts(config: &ReceptorConfig, select: impl Fn(&Entry) -> bool) -> Vec<String> {
    let mut texts: Vec<String> = config
        .entries
        .iter()
        .filter(|e| select(e))
        .map(|e| {
            ReceptorConfig {
                entries: vec![e.clone()],
            }
            .render()
        })
        .collect();
    texts.sort();
    texts
}

#[cfg(test)]
mod tests {
    use super::*;
    use meshrun_shared::node_id::NodeId;
    use meshrun_shared::node_type::NodeType;
    use meshrun_shared::receptor_conf::{ListenSpec, NodeConfigSpec, TlsFiles, node_config};

    fn spec() -> NodeConfigSpec {
        let mut s = NodeConfigSpec::new(
            NodeType::Execution,
            NodeId::new("exec1").unwrap(),
            "/var/lib/receptor",
            "/run/receptor/receptor.sock",
            "/usr/bin/meshrun-agent",
        );
        s.peers = vec!["hop1:27199".into()];
        s
    }

    fn conf(s: &NodeConfigSpec) -> ReceptorConfig {
        node_config(s).unwrap()
    }

    #[test]
    fn identical_configs_need_nothing() {
        assert_eq!(classify(&conf(&spec()), &conf(&spec())), Change::Nothing);
        // Reordered entries are the same config to receptor.
        let mut shuffled = conf(&spec());
        shuffled.entries.reverse();
        assert_eq!(classify(&conf(&spec()), &shuffled), Change::Nothing);
    }

    #[test]
    fn peer_and_listener_changes_are_reloaded() {
        let base = conf(&spec());
        let mut more = spec();
        more.peers.push("hop2:27199".into());
        assert_eq!(classify(&base, &conf(&more)), Change::Reload);
        // No peer left: local-only replaces the tcp-peer; both are backends.
        let mut none = spec();
        none.peers.clear();
        assert_eq!(classify(&base, &conf(&none)), Change::Reload);
        let mut listening = spec();
        listening.listen = Some(ListenSpec {
            port: 27199,
            bindaddr: None,
        });
        assert_eq!(classify(&base, &conf(&listening)), Change::Reload);
        let mut rebound = listening.clone();
        rebound.listen = Some(ListenSpec {
            port: 27199,
            bindaddr: Some("127.0.0.1".into()),
        });
        assert_eq!(classify(&conf(&listening), &conf(&rebound)), Change::Reload);
        // A foreign backend counts the same.
        let mut ws = base.clone();
        ws.entries.push(Entry::Other {
            key: "ws-peer".into(),
            value: meshrun_shared::receptor_conf::YamlValue::Map(vec![(
                "address".into(),
                meshrun_shared::receptor_conf::YamlValue::String("ws://relay:80/".into()),
            )]),
        });
        assert_eq!(classify(&base, &ws), Change::Reload);
    }

    #[test]
    fn everything_else_needs_a_restart() {
        let base = conf(&spec());
        let mut cases: Vec<(&str, NodeConfigSpec)> = Vec::new();
        let mut s = spec();
        s.log_level = "debug".into();
        cases.push(("log level", s));
        let mut s = spec();
        s.worker_command = "/opt/meshrun/bin/meshrun-agent".into();
        cases.push(("work command", s));
        let mut s = spec();
        s.worker_params = "--config /etc/other.toml worker".into();
        cases.push(("work params", s));
        let mut s = spec();
        s.id = NodeId::new("exec2").unwrap();
        cases.push(("node id", s));
        let mut s = spec();
        s.data_dir = "/srv/receptor".into();
        cases.push(("data dir", s));
        let mut s = spec();
        s.socket_path = "/run/other.sock".into();
        cases.push(("socket", s));
        let mut s = spec();
        s.tls = Some(TlsFiles {
            ca: "/etc/receptor/tls/ca.crt".into(),
            cert: "/etc/receptor/tls/node.crt".into(),
            key: "/etc/receptor/tls/node.key".into(),
        });
        cases.push(("tls", s));
        let mut s = spec();
        s.work_verification_key = Some("/etc/receptor/work.pub".into());
        cases.push(("work verification", s));
        let mut s = spec();
        s.node_type = NodeType::Hop;
        cases.push(("node type", s));
        for (what, s) in cases {
            assert_eq!(classify(&base, &conf(&s)), Change::Restart, "{what}");
        }
        // A foreign non-backend entry too.
        let mut traced = base.clone();
        traced.entries.push(Entry::Other {
            key: "trace".into(),
            value: meshrun_shared::receptor_conf::YamlValue::Null,
        });
        assert_eq!(classify(&base, &traced), Change::Restart);
        assert_eq!(classify(&traced, &base), Change::Restart);
    }
}
