//! What a join writes under the config dir: `tls/ca.crt`, `tls/node.crt`, `tls/node.key` (0600),
//! `work.pub` and `agent.toml` (directories 0700), each atomically. agent.toml keeps everything
//! an operator wrote and gets the node id, the `[node]` TLS files, peers and listener, and the
//! `[join]` coordinator URL renewal uses.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use meshrun_shared::join::JoinResponse;
use toml::{Table, Value};

use crate::run::conf_file::write_atomic;

/// The files of a joined node.
#[derive(Debug, Clone)]
pub struct JoinPaths {
    /// The config dir.
    pub dir: PathBuf,
    /// agent.toml.
    pub agent_toml: PathBuf,
    /// The TLS dir.
    pub tls_dir: PathBuf,
    /// The mesh CA.
    pub ca: PathBuf,
    /// The node's certificate.
    pub cert: PathBuf,
    /// The node's key.
    pub key: PathBuf,
    /// The work-verification key.
    pub work_pub: PathBuf,
}

impl JoinPaths {
    /// The paths under `dir` (made absolute).
    pub fn new(dir: &Path) -> Self {
        let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
        let tls_dir = dir.join("tls");
        JoinPaths {
            agent_toml: dir.join("agent.toml"),
            ca: tls_dir.join("ca.crt"),
            cert: tls_dir.join("node.crt"),
            key: tls_dir.join("node.key"),
            work_pub: dir.join("work.pub"),
            tls_dir,
            dir,
        }
    }
}

/// What the join answered and chose.
#[derive(Debug)]
pub struct Written<'a> {
    /// The coordinator's URL.
    pub url: &'a str,
    /// A newly made key to write (None: the existing one is kept).
    pub key_pem: Option<&'a str>,
    /// The coordinator's answer.
    pub answer: &'a JoinResponse,
    /// The listener port, if the node listens.
    pub listen: Option<u16>,
    /// The address the listener binds to (all addresses when `None`).
    pub bind: Option<&'a str>,
}

/// agent.toml as a table, if it exists.
pub fn existing_settings(path: &Path) -> anyhow::Result<Option<Table>> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            Ok(Some(text.parse::<Table>().with_context(|| {
                format!("{} is not valid TOML", path.display())
            })?))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// The node id agent.toml names.
pub fn node_id_of(t: &Table) -> Option<String> {
    t.get("node_id").and_then(Value::as_str).map(str::to_string)
}

fn make_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("cannot make {} 0700", dir.display()))
}

fn write(path: &Path, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
    write_atomic(path, bytes, mode).with_context(|| format!("cannot write {}", path.display()))
}

fn path_value(p: &Path) -> Value {
    Value::String(p.display().to_string())
}

/// agent.toml with the join's results merged into `existing`.
pub fn merged_settings(paths: &JoinPaths, w: &Written<'_>, existing: Option<Table>) -> Table {
    let mut t = existing.unwrap_or_default();
    t.insert("node_id".into(), Value::String(w.answer.node_id.clone()));
    let node = t
        .entry("node")
        .or_insert_with(|| Value::Table(Table::new()));
    if !node.is_table() {
        *node = Value::Table(Table::new());
    }
    if let Some(node) = node.as_table_mut() {
        node.insert(
            "node_type".into(),
            Value::String(w.answer.node_type.as_str().to_string()),
        );
        if let Some(port) = w.listen {
            node.insert("listen".into(), Value::Integer(i64::from(port)));
        }
        if let Some(bind) = w.bind {
            node.insert("bind".into(), Value::String(bind.to_string()));
        }
        node.insert(
            "peers".into(),
            Value::Array(w.answer.peers.iter().cloned().map(Value::String).collect()),
        );
        node.insert("tls_ca".into(), path_value(&paths.ca));
        node.insert("tls_cert".into(), path_value(&paths.cert));
        node.insert("tls_key".into(), path_value(&paths.key));
        node.insert("work_verification_key".into(), path_value(&paths.work_pub));
    }
    let join = t
        .entry("join")
        .or_insert_with(|| Value::Table(Table::new()));
    if !join.is_table() {
        *join = Value::Table(Table::new());
    }
    if let Some(join) = join.as_table_mut() {
        join.insert("coordinator".into(), Value::String(w.url.to_string()));
    }
    t
}

/// Writes every file of the join; the key first and agent.toml last, so an interrupted join
/// leaves no agent.toml pointing at missing files.
pub fn write_all(
    paths: &JoinPaths,
    w: &Written<'_>,
    existing: Option<Table>,
) -> anyhow::Result<()> {
    make_dir(&paths.dir)?;
    make_dir(&paths.tls_dir)?;
    if let Some(key) = w.key_pem {
        write(&paths.key, key.as_bytes(), 0o600)?;
    } else if !paths.key.exists() {
        bail!(
            "the node key {} vanished during the join",
            paths.key.display()
        );
    }
    write(&paths.ca, w.answer.ca_pem.as_bytes(), 0o644)?;
    write(&paths.cert, w.answer.cert_pem.as_bytes(), 0o644)?;
    write(
        &paths.work_pub,
        w.answer.work_verification_pem.as_bytes(),
        0o644,
    )?;
    let settings = merged_settings(paths, w, existing);
    let text = settings.to_string();
    // Never write an agent.toml the agent itself would refuse.
    toml::from_str::<crate::settings::AgentSettings>(&text)
        .with_context(|| format!("the merged {} would be invalid", paths.agent_toml.display()))?;
    write(&paths.agent_toml, text.as_bytes(), 0o600)
}

#[cfg(test)]
mod tests {
    use super::*;
    use meshrun_shared::node_type::NodeType;

    fn answer() -> JoinResponse {
        JoinResponse {
            node_id: "exec1".into(),
            node_type: NodeType::Execution,
            ca_pem: "CA".into(),
            cert_pem: "CERT".into(),
            not_after: "2030-01-01T00:00:00Z".into(),
            work_verification_pem: "PUB".into(),
            peers: vec!["hop1:27199".into()],
        }
    }

    #[test]
    fn a_join_keeps_operator_settings_and_writes_private_files() {
        let dir = tempfile::tempdir().unwrap();
        let paths = JoinPaths::new(&dir.path().join("etc"));
        std::fs::create_dir_all(&paths.dir).unwrap();
        std::fs::write(
            &paths.agent_toml,
            "state_dir = \"/x/state\"\n[worker]\nmode = \"host\"\n[node]\nnode_type = \"hop\"\nlog_level = \"debug\"\n",
        )
        .unwrap();
        let a = answer();
        let w = Written {
            url: "https://c:1",
            key_pem: Some("KEY"),
            answer: &a,
            listen: Some(27199),
            bind: None,
        };
        let existing = existing_settings(&paths.agent_toml).unwrap();
        write_all(&paths, &w, existing).unwrap();
        let s: crate::settings::AgentSettings =
            toml::from_str(&std::fs::read_to_string(&paths.agent_toml).unwrap()).unwrap();
        assert_eq!(s.node_id.unwrap().as_str(), "exec1");
        assert_eq!(s.state_dir, PathBuf::from("/x/state"));
        let node = s.node.unwrap();
        assert_eq!(node.node_type, NodeType::Execution);
        assert_eq!(node.log_level, "debug");
        assert_eq!(node.listen, Some(27199));
        assert_eq!(node.peers, vec!["hop1:27199".to_string()]);
        assert_eq!(node.tls_key.unwrap(), paths.key);
        assert_eq!(s.join.unwrap().coordinator, "https://c:1");
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&paths.key), 0o600);
        assert_eq!(mode(&paths.tls_dir), 0o700);
        assert_eq!(std::fs::read_to_string(&paths.cert).unwrap(), "CERT");
        // Again, with the key kept: the same files.
        let before = std::fs::read_to_string(&paths.agent_toml).unwrap();
        let w = Written { key_pem: None, ..w };
        write_all(&paths, &w, existing_settings(&paths.agent_toml).unwrap()).unwrap();
        assert_eq!(std::fs::read_to_string(&paths.agent_toml).unwrap(), before);
        assert_eq!(std::fs::read_to_string(&paths.key).unwrap(), "KEY");
    }
}
