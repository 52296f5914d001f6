//! The agent's config file: where it logs, where it keeps per-unit state, which
//! `ansible-runner` it runs. Defaults live here and nowhere else.

use std::path::{Path, PathBuf};

use meshrun_shared::node_id::NodeId;
use serde::Deserialize;

/// Where the agent looks for its config when `--config` is not given.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/meshrun/agent.toml";

/// The agent's settings, from `agent.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentSettings {
    /// This node's receptor id; when absent the worker reads it from its unit's directory.
    #[serde(default)]
    pub node_id: Option<NodeId>,
    /// The agent's own log file (worker mode never writes to stderr).
    #[serde(default = "default_log_file")]
    pub log_file: PathBuf,
    /// Private data dirs of running units live below this directory.
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    /// How jobs are run.
    #[serde(default)]
    pub worker: WorkerSettings,
}

/// How the worker runs jobs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerSettings {
    /// The `ansible-runner` executable (absolute path).
    #[serde(default = "default_ansible_runner")]
    pub ansible_runner: PathBuf,
    /// The longest line the worker may emit before the agent ends the job as an error.
    #[serde(default = "default_max_line_bytes")]
    pub max_line_bytes: usize,
}

fn default_log_file() -> PathBuf {
    PathBuf::from("/var/log/meshrun/agent.log")
}

fn default_state_dir() -> PathBuf {
    PathBuf::from("/var/lib/meshrun/agent")
}

fn default_ansible_runner() -> PathBuf {
    PathBuf::from("/usr/bin/ansible-runner")
}

fn default_max_line_bytes() -> usize {
    64 << 20
}

impl Default for WorkerSettings {
    fn default() -> Self {
        WorkerSettings {
            ansible_runner: default_ansible_runner(),
            max_line_bytes: default_max_line_bytes(),
        }
    }
}

impl Default for AgentSettings {
    fn default() -> Self {
        AgentSettings {
            node_id: None,
            log_file: default_log_file(),
            state_dir: default_state_dir(),
            worker: WorkerSettings::default(),
        }
    }
}

/// Why the settings could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// The file could not be read.
    #[error("cannot read agent config {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML for these settings.
    #[error("invalid agent config {path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What the parser said (names the key and line).
        source: toml::de::Error,
    },
    /// A path that must be absolute is not.
    #[error("invalid agent config {path}: {field} must be an absolute path, got {value:?}")]
    NotAbsolute {
        /// The file.
        path: PathBuf,
        /// The setting.
        field: &'static str,
        /// Its value.
        value: PathBuf,
    },
}

impl AgentSettings {
    /// Loads settings from `path`; a missing file at the default location means defaults.
    pub fn load(path: Option<&Path>) -> Result<Self, SettingsError> {
        let (path, explicit) = match path {
            Some(p) => (p.to_path_buf(), true),
            None => (PathBuf::from(DEFAULT_CONFIG_PATH), false),
        };
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if !explicit && e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(AgentSettings::default());
            }
            Err(source) => return Err(SettingsError::Read { path, source }),
        };
        let settings: AgentSettings =
            toml::from_str(&text).map_err(|source| SettingsError::Parse {
                path: path.clone(),
                source,
            })?;
        for (field, value) in [
            ("log_file", &settings.log_file),
            ("state_dir", &settings.state_dir),
            ("worker.ansible_runner", &settings.worker.ansible_runner),
        ] {
            if !value.is_absolute() {
                return Err(SettingsError::NotAbsolute {
                    path,
                    field,
                    value: value.clone(),
                });
            }
        }
        Ok(settings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_text(text: &str) -> Result<AgentSettings, SettingsError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.toml");
        std::fs::write(&path, text).unwrap();
        AgentSettings::load(Some(&path))
    }

    #[test]
    fn full_file_loads() {
        let s = load_text(
            "node_id = \"exec1\"\nlog_file = \"/x/agent.log\"\nstate_dir = \"/x/state\"\n\
             [worker]\nansible_runner = \"/venv/bin/ansible-runner\"\n",
        )
        .unwrap();
        assert_eq!(s.node_id.unwrap().as_str(), "exec1");
        assert_eq!(
            s.worker.ansible_runner,
            PathBuf::from("/venv/bin/ansible-runner")
        );
        assert_eq!(s.worker.max_line_bytes, 64 << 20);
    }

    #[test]
    fn unknown_keys_bad_ids_and_relative_paths_are_refused() {
        let e = load_text("nodeid = \"x\"\n").unwrap_err().to_string();
        assert!(e.contains("nodeid"), "{e}");
        let e = load_text("node_id = \"local host\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("node_id") || e.contains("local host"), "{e}");
        let e = load_text("state_dir = \"state\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("state_dir must be an absolute path"), "{e}");
    }

    #[test]
    fn missing_explicit_file_is_an_error() {
        let e = AgentSettings::load(Some(Path::new("/nonexistent/agent.toml"))).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/agent.toml"));
    }
}
