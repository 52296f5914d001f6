//! The agent config the control node's `local` work runs with: the operator's
//! `control_node.agent_config` plus the coordinator's project cache as a podman volume root, so
//! that a project update's container may mount its checkout folder. Written to the coordinator's
//! data dir (atomically, only on change) and named in receptor.conf instead of the operator's
//! file, which the coordinator never writes.

use std::path::{Path, PathBuf};

use crate::config::PROJECT_CACHE_DIR;

/// The derived config's name, in the coordinator's data dir.
pub const LOCAL_AGENT_CONFIG_NAME: &str = "local-agent.toml";

/// Why the derived config could not be made.
#[derive(Debug, thiserror::Error)]
pub enum LocalAgentError {
    /// The operator's agent config could not be read.
    #[error("cannot read control_node.agent_config {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// It is not a TOML table with a usable `[podman]` section.
    #[error("control_node.agent_config {path}: {reason}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The derived config or the cache folder could not be written.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// `text` (an agent config) with `root` added to `podman.volume_roots` unless it is there.
pub fn with_volume_root(text: &str, root: &Path) -> Result<String, String> {
    let mut table: toml::Table = text.parse().map_err(|e| format!("{e}"))?;
    let root = root
        .to_str()
        .ok_or_else(|| format!("{} is not valid UTF-8", root.display()))?;
    let podman = table
        .entry("podman")
        .or_insert_with(|| toml::Value::Table(toml::Table::new()))
        .as_table_mut()
        .ok_or("podman is not a table")?;
    let roots = podman
        .entry("volume_roots")
        .or_insert_with(|| toml::Value::Array(Vec::new()))
        .as_array_mut()
        .ok_or("podman.volume_roots is not an array")?;
    if !roots.iter().any(|r| r.as_str() == Some(root)) {
        roots.push(toml::Value::String(root.to_string()));
    }
    Ok(format!(
        "# Written by meshrun-coordinator from {{agent_config}}; edit that file instead.\n{table}"
    ))
}

/// Writes `<state_dir>/local-agent.toml` from `agent_config` (creating the project cache
/// folder) and returns its path.
pub fn write(agent_config: &Path, state_dir: &Path) -> Result<PathBuf, LocalAgentError> {
    let text = std::fs::read_to_string(agent_config).map_err(|source| LocalAgentError::Read {
        path: agent_config.to_path_buf(),
        source,
    })?;
    let cache = state_dir.join(PROJECT_CACHE_DIR);
    let derived = with_volume_root(&text, &cache)
        .map_err(|reason| LocalAgentError::Parse {
            path: agent_config.to_path_buf(),
            reason,
        })?
        .replace("{agent_config}", &agent_config.display().to_string());
    let dest = state_dir.join(LOCAL_AGENT_CONFIG_NAME);
    let write_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| LocalAgentError::Write { path, source }
    };
    std::fs::create_dir_all(&cache).map_err(write_err(&cache))?;
    if std::fs::read_to_string(&dest).ok().as_deref() == Some(derived.as_str()) {
        return Ok(dest);
    }
    let tmp = tempfile::NamedTempFile::new_in(state_dir).map_err(write_err(state_dir))?;
    std::fs::write(tmp.path(), &derived).map_err(write_err(tmp.path()))?;
    tmp.persist(&dest).map_err(|e| write_err(&dest)(e.error))?;
    Ok(dest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_is_added_once_and_the_rest_is_kept() {
        let text =
            "node_id = \"c\"\n[worker]\nmode = \"podman\"\n[podman]\nvolume_roots = [\"/srv\"]\n";
        let out = with_volume_root(text, Path::new("/var/lib/meshrun/project_cache")).unwrap();
        let t: toml::Table = out.parse().unwrap();
        assert_eq!(t["node_id"].as_str(), Some("c"));
        assert_eq!(t["worker"]["mode"].as_str(), Some("podman"));
        let roots: Vec<&str> = t["podman"]["volume_roots"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|v| v.as_str())
            .collect();
        assert_eq!(roots, ["/srv", "/var/lib/meshrun/project_cache"]);
        let again = with_volume_root(&out, Path::new("/var/lib/meshrun/project_cache")).unwrap();
        assert_eq!(again.matches("project_cache").count(), 1);
        let bare = with_volume_root("", Path::new("/c")).unwrap();
        assert!(bare.contains("volume_roots = [\"/c\"]"), "{bare}");
        assert!(with_volume_root("podman = 1", Path::new("/c")).is_err());
    }

    #[test]
    fn the_derived_file_is_written_next_to_the_cache() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("agent.toml");
        std::fs::write(&src, "[worker]\nmode = \"host\"\n").unwrap();
        let state = dir.path().join("state");
        std::fs::create_dir_all(&state).unwrap();
        let dest = write(&src, &state).unwrap();
        assert_eq!(dest, state.join(LOCAL_AGENT_CONFIG_NAME));
        assert!(state.join(PROJECT_CACHE_DIR).is_dir());
        let text = std::fs::read_to_string(&dest).unwrap();
        assert!(text.contains(&src.display().to_string()));
        assert!(text.contains("mode = \"host\""));
    }
}
