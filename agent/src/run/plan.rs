//! What agent.toml asks `run` to do: the node's own receptor.conf entries (rendered by the shared
//! renderer) and where receptor's binary, config, data, socket, log and PID file are. Loaded at
//! start and again on every SIGHUP; a plan that fails to load never replaces a working one.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use meshrun_shared::node_id::NodeId;
use meshrun_shared::receptor_conf::{ConfError, ReceptorConfig, node_config};

use crate::config_cmd::{SpecError, SpecPaths, node_spec};
use crate::settings::{AgentSettings, SettingsError};

/// The file receptor's stdout and stderr go to, next to the agent's log.
pub const RECEPTOR_LOG_NAME: &str = "receptor.log";
/// The file, in the agent's state dir, that holds the PID of the receptor `run` started.
pub const PID_FILE_NAME: &str = "receptor.pid";

/// Why agent.toml cannot drive `run`.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// The file could not be read or is invalid.
    #[error(transparent)]
    Settings(#[from] SettingsError),
    /// `run` needs to know the node's place in the mesh.
    #[error(
        "agent config {path} has no [node] section: `meshrun-agent run` needs at least \
         node_type (and usually listen or peers) to write receptor.conf"
    )]
    NoNode {
        /// The agent config.
        path: PathBuf,
    },
    /// `node_id` is unset and the host name is not a usable node id.
    #[error(
        "agent config {path}: node_id is not set and the host name cannot stand in for it: {reason}"
    )]
    NodeId {
        /// The agent config.
        path: PathBuf,
        /// Why the host name is unusable.
        reason: String,
    },
    /// The node settings do not fit together.
    #[error("invalid agent config {path}: {source}")]
    Spec {
        /// The agent config.
        path: PathBuf,
        /// What is wrong.
        source: SpecError,
    },
    /// The renderer refused a value (a relative path, a bad peer address, ...).
    #[error("invalid agent config {path}: {source}")]
    Render {
        /// The agent config.
        path: PathBuf,
        /// The renderer's explanation, naming the field.
        source: ConfError,
    },
    /// receptor cannot be run from `receptor.binary`.
    #[error("agent config {path}: receptor.binary {binary} is not an executable file")]
    Binary {
        /// The agent config.
        path: PathBuf,
        /// The configured binary.
        binary: PathBuf,
    },
}

/// Everything `run` needs from agent.toml.
#[derive(Debug, Clone, PartialEq)]
pub struct RunPlan {
    /// The entries the agent owns in receptor.conf, in the renderer's order.
    pub owned: ReceptorConfig,
    /// receptor, by absolute path (it re-executes itself for every work unit).
    pub binary: PathBuf,
    /// receptor.conf.
    pub config: PathBuf,
    /// receptor's data directory (created 0700).
    pub data_dir: PathBuf,
    /// receptor's control socket.
    pub socket: PathBuf,
    /// receptor's stdout and stderr.
    pub receptor_log: PathBuf,
    /// The agent's state dir.
    pub state_dir: PathBuf,
    /// Where the running receptor's PID is kept.
    pub pid_file: PathBuf,
}

impl RunPlan {
    /// Loads agent.toml from `agent_config` and builds the plan; `worker_command` is the
    /// meshrun-agent executable receptor is to run for work.
    pub fn load(agent_config: &Path, worker_command: &Path) -> Result<Self, PlanError> {
        let settings = AgentSettings::load(Some(agent_config))?;
        Self::from_settings(&settings, agent_config, worker_command, host_name)
    }

    /// Builds the plan from loaded settings; `host_name` supplies the node id when the settings
    /// have none (meshrun's node ids equal the host name).
    pub fn from_settings(
        settings: &AgentSettings,
        agent_config: &Path,
        worker_command: &Path,
        host_name: impl FnOnce() -> Option<String>,
    ) -> Result<Self, PlanError> {
        let path = agent_config.to_path_buf();
        let node = settings
            .node
            .as_ref()
            .ok_or_else(|| PlanError::NoNode { path: path.clone() })?;
        let id = match &settings.node_id {
            Some(id) => id.clone(),
            None => {
                let name = host_name().ok_or_else(|| PlanError::NodeId {
                    path: path.clone(),
                    reason: "the host name is unknown".to_string(),
                })?;
                NodeId::new(name.as_str()).map_err(|e| PlanError::NodeId {
                    path: path.clone(),
                    reason: format!("{name:?}: {e}"),
                })?
            }
        };
        let receptor = &settings.receptor;
        let spec = node_spec(
            id,
            node,
            SpecPaths {
                data_dir: receptor.data_dir.clone(),
                socket: receptor.socket.clone(),
                worker_command: worker_command.to_path_buf(),
                agent_config: Some(path.clone()),
            },
        )
        .map_err(|source| PlanError::Spec {
            path: path.clone(),
            source,
        })?;
        let owned = node_config(&spec).map_err(|source| PlanError::Render {
            path: path.clone(),
            source,
        })?;
        if !is_executable_file(&receptor.binary) {
            return Err(PlanError::Binary {
                path,
                binary: receptor.binary.clone(),
            });
        }
        let log_dir = settings
            .log_file
            .parent()
            .map_or_else(|| settings.state_dir.clone(), Path::to_path_buf);
        Ok(RunPlan {
            owned,
            binary: receptor.binary.clone(),
            config: receptor.config.clone(),
            data_dir: receptor.data_dir.clone(),
            socket: receptor.socket.clone(),
            receptor_log: log_dir.join(RECEPTOR_LOG_NAME),
            state_dir: settings.state_dir.clone(),
            pid_file: settings.state_dir.join(PID_FILE_NAME),
        })
    }
}

fn host_name() -> Option<String> {
    sysinfo::System::host_name()
}

fn is_executable_file(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.toml");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    const EXEC: &str = "node_id = \"exec1\"\nlog_file = \"/x/log/agent.log\"\n\
        state_dir = \"/x/state\"\n[node]\nnode_type = \"execution\"\n\
        peers = [\"hop1:27199\"]\n[receptor]\nbinary = \"/bin/sh\"\n";

    #[test]
    fn a_plan_names_every_path_and_points_the_worker_at_the_agent_config() {
        let (_d, path) = settings(EXEC);
        let plan = RunPlan::load(&path, Path::new("/usr/bin/meshrun-agent")).unwrap();
        assert_eq!(plan.receptor_log, PathBuf::from("/x/log/receptor.log"));
        assert_eq!(plan.pid_file, PathBuf::from("/x/state/receptor.pid"));
        let wc = plan.owned.work_commands().next().unwrap();
        assert_eq!(wc.worktype, "ansible-runner");
        assert_eq!(wc.command, "/usr/bin/meshrun-agent");
        assert_eq!(
            wc.params.as_deref(),
            Some(format!("--config {} worker", path.display()).as_str())
        );
        assert_eq!(plan.owned.node().unwrap().id.as_ref().unwrap(), "exec1");
    }

    #[test]
    fn without_a_node_section_run_refuses_with_the_file_named() {
        let (_d, path) = settings("node_id = \"exec1\"\n");
        let e = RunPlan::load(&path, Path::new("/usr/bin/meshrun-agent")).unwrap_err();
        assert!(matches!(e, PlanError::NoNode { .. }), "{e}");
        assert!(e.to_string().contains(&path.display().to_string()), "{e}");
    }

    #[test]
    fn the_host_name_stands_in_for_a_missing_node_id_unless_it_is_unusable() {
        let s = AgentSettings {
            node_id: None,
            ..toml::from_str::<AgentSettings>(EXEC).unwrap()
        };
        let p = Path::new("/etc/meshrun/agent.toml");
        let w = Path::new("/usr/bin/meshrun-agent");
        let plan = RunPlan::from_settings(&s, p, w, || Some("web-7".into())).unwrap();
        assert_eq!(plan.owned.node().unwrap().id.as_ref().unwrap(), "web-7");
        let e = RunPlan::from_settings(&s, p, w, || Some("localhost".into())).unwrap_err();
        assert!(e.to_string().contains("localhost"), "{e}");
        let e = RunPlan::from_settings(&s, p, w, || None).unwrap_err();
        assert!(matches!(e, PlanError::NodeId { .. }), "{e}");
    }

    #[test]
    fn bad_node_settings_are_refused_naming_the_field() {
        for (extra, needle) in [
            ("tls_ca = \"/ca.pem\"\n", "tls_ca"),
            ("log_level = \"loud\"\n", "log_level"),
            ("listen = 0\n", "listen.port"),
        ] {
            let text = EXEC.replace("[receptor]", &format!("{extra}[receptor]"));
            let (_d, path) = settings(&text);
            let e = RunPlan::load(&path, Path::new("/usr/bin/meshrun-agent")).unwrap_err();
            assert!(e.to_string().contains(needle), "{extra}: {e}");
        }
        let (_d, path) = settings(&EXEC.replace("/bin/sh", "/nonexistent/receptor"));
        let e = RunPlan::load(&path, Path::new("/usr/bin/meshrun-agent")).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/receptor"), "{e}");
    }
}
