//! receptor.conf on disk: which entries the agent owns, how they are merged with an operator's
//! own entries, and writing the file atomically and only when its bytes change.
//!
//! **Ownership.** agent.toml is the only source of the entries meshrun renders, so the agent owns
//! (and replaces wholesale, every time) every entry of these kinds:
//! - the singletons it writes: `node`, `log-level`, `local-only`, `work-signing`,
//!   `work-verification`;
//! - every `tcp-listener` and `tcp-peer`: TCP links are configured in agent.toml's `[node]`
//!   (`listen`, `peers`). A hand-added `tcp-peer` cannot be told apart from one an operator
//!   removed from agent.toml, so keeping them would make a peer impossible to remove;
//! - the `control-service` named `control` (receptor's default name), the `tls-server` named
//!   `tls_server` and the `tls-client` named `tls_client`, and the `work-command`s of meshrun's
//!   work types (`ansible-runner`, `local`), whichever node type is configured now.
//!
//! Everything else belongs to the operator and is kept, in its original order, after the owned
//! entries: every action meshrun does not model (`ws-peer`, `udp-listener`, `trace`,
//! `work-kubernetes`, services, ...), and TLS configs, control services and work commands under
//! other names. An existing file that does not parse is never overwritten.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use meshrun_shared::node_type::{WORK_TYPE_EXECUTION, WORK_TYPE_LOCAL};
use meshrun_shared::receptor_conf::{
    CONTROL_SERVICE_NAME, ConfError, Entry, ReceptorConfig, TLS_CLIENT_NAME, TLS_SERVER_NAME,
};

/// receptor.conf's file mode: readable by all, it holds paths, never secrets.
pub const CONF_MODE: u32 = 0o644;

/// Why receptor.conf could not be brought up to date.
#[derive(Debug, thiserror::Error)]
pub enum ConfFileError {
    /// The existing file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// The existing file is not a receptor.conf this agent can merge with; it is left as is.
    #[error(
        "refusing to overwrite {path}: it is not a valid receptor.conf ({source}); fix or remove it"
    )]
    Unparseable {
        /// The file.
        path: PathBuf,
        /// What the parser said.
        source: Box<ConfError>,
    },
    /// The operator's entries and the agent's together do not make a valid config.
    #[error("the entries kept from {path} conflict with the agent's own: {source}")]
    Conflict {
        /// The file.
        path: PathBuf,
        /// What the parser said about the merged text.
        source: Box<ConfError>,
    },
    /// The new file could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
}

/// What [`update`] did.
#[derive(Debug, Clone, PartialEq)]
pub struct Updated {
    /// The config now on disk.
    pub config: ReceptorConfig,
    /// Whether the file was (re)written.
    pub written: bool,
}

/// True for an entry the agent renders and therefore replaces (see the module docs).
pub fn is_owned(entry: &Entry) -> bool {
    match entry {
        Entry::Node(_)
        | Entry::LogLevel(_)
        | Entry::LocalOnly
        | Entry::WorkSigning(_)
        | Entry::WorkVerification(_)
        | Entry::TcpListener(_)
        | Entry::TcpPeer(_) => true,
        Entry::ControlService(c) => {
            c.service.as_deref().unwrap_or(CONTROL_SERVICE_NAME) == CONTROL_SERVICE_NAME
        }
        Entry::TlsServer(t) => t.name == TLS_SERVER_NAME,
        Entry::TlsClient(t) => t.name == TLS_CLIENT_NAME,
        Entry::WorkCommand(w) => {
            [WORK_TYPE_EXECUTION, WORK_TYPE_LOCAL].contains(&w.worktype.as_str())
        }
        Entry::Other { .. } => false,
    }
}

/// The agent's entries, then the operator's entries of `existing`, in their order.
pub fn merge(owned: &ReceptorConfig, existing: Option<&ReceptorConfig>) -> ReceptorConfig {
    let mut entries = owned.entries.clone();
    if let Some(existing) = existing {
        entries.extend(existing.entries.iter().filter(|e| !is_owned(e)).cloned());
    }
    ReceptorConfig { entries }
}

/// Reads and parses the file at `path`; `None` when there is none.
pub fn read_existing(path: &Path) -> Result<Option<(Vec<u8>, ReceptorConfig)>, ConfFileError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(ConfFileError::Read {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    let text = std::str::from_utf8(&bytes).map_err(|e| ConfFileError::Read {
        path: path.to_path_buf(),
        source: io::Error::new(io::ErrorKind::InvalidData, format!("not UTF-8 text: {e}")),
    })?;
    let config = ReceptorConfig::parse(text).map_err(|e| ConfFileError::Unparseable {
        path: path.to_path_buf(),
        source: Box::new(e),
    })?;
    Ok(Some((bytes, config)))
}

/// Merges `owned` into the file at `path` and writes the result if its bytes differ from the
/// file's. Returns the config the file now holds.
pub fn update(path: &Path, owned: &ReceptorConfig) -> Result<Updated, ConfFileError> {
    let existing = read_existing(path)?;
    let merged = merge(owned, existing.as_ref().map(|(_, c)| c));
    let text = merged.render();
    // The renderer and the parser are tested to agree; this catches what only a merge can do.
    ReceptorConfig::parse(&text).map_err(|e| ConfFileError::Conflict {
        path: path.to_path_buf(),
        source: Box::new(e),
    })?;
    let unchanged = existing
        .as_ref()
        .is_some_and(|(bytes, _)| bytes == text.as_bytes());
    if !unchanged {
        write_atomic(path, text.as_bytes(), CONF_MODE).map_err(|source| ConfFileError::Write {
            path: path.to_path_buf(),
            source,
        })?;
    }
    Ok(Updated {
        config: merged,
        written: !unchanged,
    })
}

/// Replaces `path` with `bytes` so that readers see the old file or the new one, never a part:
/// a temp file in the same directory, fsynced, renamed over `path`, then the directory fsynced.
/// The parent directory is created if missing; the file gets exactly `mode`.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    let (dir, name) = match (path.parent(), path.file_name()) {
        (Some(dir), Some(name)) => (dir, name),
        _ => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is not a file path", path.display()),
            ));
        }
    };
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(
        ".{}.tmp.{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    // A leftover of an earlier process with the same PID; ours from now on.
    let _ = std::fs::remove_file(&tmp);
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        // The umask may have taken bits away.
        file.set_permissions(std::fs::Permissions::from_mode(mode))?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;
    use meshrun_shared::node_id::NodeId;
    use meshrun_shared::node_type::NodeType;
    use meshrun_shared::receptor_conf::{NodeConfigSpec, node_config};

    fn owned(peers: &[&str]) -> ReceptorConfig {
        let mut spec = NodeConfigSpec::new(
            NodeType::Execution,
            NodeId::new("exec1").unwrap(),
            "/var/lib/receptor",
            "/run/receptor/receptor.sock",
            "/usr/bin/meshrun-agent",
        );
        spec.peers = peers.iter().map(|p| p.to_string()).collect();
        node_config(&spec).unwrap()
    }

    const OPERATOR_FILE: &str = "---
- trace
- node:
    id: old-name
- tcp-peer:
    address: handmade:27199
- ws-peer:
    address: wss://relay.example.com/mesh
- work-command:
    worktype: echo
    command: /bin/cat
- tls-client:
    name: relay_tls
    cert: /etc/receptor/relay.crt
    key: /etc/receptor/relay.key
- work-command:
    worktype: ansible-runner
    command: /old/meshrun-agent
- udp-listener:
    port: 27300
";

    fn actions(c: &ReceptorConfig) -> Vec<String> {
        c.entries.iter().map(|e| e.action().to_string()).collect()
    }

    #[test]
    fn merge_replaces_owned_entries_and_keeps_foreign_ones_in_order_after_them() {
        let existing = ReceptorConfig::parse(OPERATOR_FILE).unwrap();
        let own = owned(&["hop1:27199"]);
        let merged = merge(&own, Some(&existing));
        assert_eq!(&merged.entries[..own.entries.len()], &own.entries[..]);
        let kept: Vec<&Entry> = merged.entries[own.entries.len()..].iter().collect();
        let kept_actions: Vec<&str> = kept.iter().map(|e| e.action()).collect();
        assert_eq!(
            kept_actions,
            [
                "trace",
                "ws-peer",
                "work-command",
                "tls-client",
                "udp-listener"
            ]
        );
        assert!(matches!(kept[2], Entry::WorkCommand(w) if w.worktype == "echo"));
        assert!(matches!(kept[3], Entry::TlsClient(t) if t.name == "relay_tls"));
        // The hand-made peer, the old node id and the old work command are gone.
        let text = merged.render();
        for gone in ["handmade", "old-name", "/old/meshrun-agent"] {
            assert!(!text.contains(gone), "{gone} survived:\n{text}");
        }
        assert_eq!(ReceptorConfig::parse(&text).unwrap(), merged);
    }

    #[test]
    fn merge_without_a_file_is_the_agents_config() {
        let own = owned(&[]);
        assert_eq!(merge(&own, None), own);
        assert!(actions(&own).contains(&"local-only".to_string()));
    }

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    fn dir_names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn update_writes_0644_atomically_into_a_new_dir_and_leaves_no_temp_file() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("etc/receptor/receptor.conf");
        let own = owned(&["hop1:27199"]);
        let up = update(&path, &own).unwrap();
        assert!(up.written);
        assert_eq!(up.config, own);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), own.render());
        assert_eq!(mode(&path), 0o644);
        assert_eq!(dir_names(path.parent().unwrap()), ["receptor.conf"]);

        // An existing file with other bits is replaced by one with exactly 0644.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let up = update(&path, &owned(&["hop2:27199"])).unwrap();
        assert!(up.written);
        assert_eq!(mode(&path), 0o644);
        assert_eq!(dir_names(path.parent().unwrap()), ["receptor.conf"]);
    }

    #[test]
    fn an_unchanged_render_does_not_touch_the_file() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("receptor.conf");
        let own = owned(&["hop1:27199"]);
        update(&path, &own).unwrap();
        let old = SystemTime::now() - Duration::from_secs(3600);
        File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(old)
            .unwrap();
        let ino = std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(&path).unwrap());
        let up = update(&path, &own).unwrap();
        assert!(!up.written);
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.modified().unwrap(), old);
        assert_eq!(std::os::unix::fs::MetadataExt::ino(&meta), ino);
    }

    #[test]
    fn foreign_entries_already_in_canonical_form_are_kept_without_a_rewrite() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("receptor.conf");
        let own = owned(&["hop1:27199"]);
        let with_trace = format!("{}- trace\n", own.render());
        std::fs::write(&path, &with_trace).unwrap();
        let up = update(&path, &own).unwrap();
        assert!(!up.written, "already in canonical form");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), with_trace);
        assert_eq!(actions(&up.config).last().unwrap(), "trace");
    }

    #[test]
    fn an_unparseable_file_is_refused_and_left_untouched() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("receptor.conf");
        let text = "---\n- node:\n    id: exec1\n- tcp-peer: {adress: hop1:27199}\n";
        std::fs::write(&path, text).unwrap();
        let e = update(&path, &owned(&["hop1:27199"])).unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, ConfFileError::Unparseable { .. }), "{msg}");
        assert!(
            msg.contains(&path.display().to_string()) && msg.contains("adress"),
            "{msg}"
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
        assert_eq!(dir_names(tmp.path()), ["receptor.conf"]);

        std::fs::write(&path, b"\xff\xfe- node\n").unwrap();
        let e = update(&path, &owned(&[])).unwrap_err();
        assert!(e.to_string().contains("UTF-8"), "{e}");
        assert_eq!(std::fs::read(&path).unwrap(), b"\xff\xfe- node\n");
    }

    #[test]
    fn a_failed_write_leaves_no_temp_file() {
        let tmp = tempfile::tempdir().unwrap();
        // The target is a directory: rename onto it fails after the temp file was written.
        let path = tmp.path().join("receptor.conf");
        std::fs::create_dir(&path).unwrap();
        std::fs::write(path.join("keep"), "x").unwrap();
        assert!(write_atomic(&path, b"---\n", CONF_MODE).is_err());
        assert_eq!(dir_names(tmp.path()), ["receptor.conf"]);
    }
}
