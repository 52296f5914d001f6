//! The agent's config file: where it logs, where it keeps per-unit state, which
//! `ansible-runner` it runs. Defaults live here and nowhere else.

use std::path::{Path, PathBuf};

use meshrun_shared::node_id::NodeId;
use meshrun_shared::node_type::NodeType;
use serde::Deserialize;

use crate::byte_size::ByteSize;

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
    /// The agent's state: the node's uuid, probe caches, private data dirs of host-mode units.
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    /// How jobs are run.
    #[serde(default)]
    pub worker: WorkerSettings,
    /// How podman is used (worker mode `podman`).
    #[serde(default)]
    pub podman: PodmanSettings,
    /// Resource limits applied to every job's container.
    #[serde(default)]
    pub limits: JobLimits,
    /// What the capacity report counts.
    #[serde(default)]
    pub capacity: CapacitySettings,
    /// This node's place in the mesh, for `meshrun-agent run` (which renders receptor.conf).
    #[serde(default)]
    pub node: Option<NodeSettings>,
    /// The node's receptor, for `meshrun-agent run`.
    #[serde(default)]
    pub receptor: ReceptorSettings,
    /// Written by `meshrun-agent join`: where the node's certificate is renewed.
    #[serde(default)]
    pub join: Option<JoinSettings>,
}

/// How `meshrun-agent run` renews the node's certificate (written by `join`).
#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct JoinSettings {
    /// The coordinator's API URL (`https://host:port`).
    pub coordinator: String,
    /// Seconds between two looks at the certificate's remaining life.
    #[serde(default = "default_renew_check")]
    pub renew_check_secs: u64,
}

fn default_renew_check() -> u64 {
    300
}

/// Where jobs run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WorkerMode {
    /// In a podman container of the execution-environment image (the default).
    #[default]
    Podman,
    /// `ansible-runner worker` directly on the host.
    Host,
}

/// How the worker runs jobs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerSettings {
    /// `podman` or `host`.
    #[serde(default)]
    pub mode: WorkerMode,
    /// The `ansible-runner` executable for host mode and host-side probes (absolute path).
    #[serde(default = "default_ansible_runner")]
    pub ansible_runner: PathBuf,
    /// The longest line the worker may emit before the agent ends the job as an error.
    #[serde(default = "default_max_line_bytes")]
    pub max_line_bytes: usize,
}

/// The node's pull policy for images (a job's `--pull` is mapped to it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PullPolicy {
    /// Never pull: images must be on the node (offline nodes).
    #[default]
    Never,
    /// Pull when the image is missing.
    Missing,
    /// Pull when the job asks to (`--pull=always`), else when missing.
    Always,
}

/// How podman is used.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PodmanSettings {
    /// The podman executable (absolute path).
    #[serde(default = "default_podman")]
    pub executable: PathBuf,
    /// The image used when a job names none.
    #[serde(default)]
    pub default_image: Option<String>,
    /// A containers.conf given to podman as `CONTAINERS_CONF` (runtime, ulimits) without
    /// touching /etc.
    #[serde(default)]
    pub containers_conf: Option<PathBuf>,
    /// The node's pull policy.
    #[serde(default)]
    pub pull: PullPolicy,
    /// The network jobs get when they ask for none.
    #[serde(default = "default_network")]
    pub default_network: String,
    /// Networks a job may ask for with `--network`.
    #[serde(default = "default_networks")]
    pub allowed_networks: Vec<String>,
    /// Host directories below which a job may mount volumes (`container_volume_mounts`).
    #[serde(default)]
    pub volume_roots: Vec<PathBuf>,
    /// Seconds `podman stop` waits before killing a canceled job's container.
    #[serde(default = "default_stop_timeout")]
    pub stop_timeout_secs: u64,
}

/// Per-job resource limits (podman `--memory`, `--cpus`, `--pids-limit`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobLimits {
    /// Memory limit of a job's container.
    #[serde(default)]
    pub memory: Option<ByteSize>,
    /// CPU limit of a job's container, in cores.
    #[serde(default)]
    pub cpus: Option<f64>,
    /// Process limit of a job's container.
    #[serde(default)]
    pub pids: Option<u64>,
}

/// What the capacity report counts (like Nomad's `reserved`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CapacitySettings {
    /// CPU cores kept for the host, subtracted from what jobs may use.
    #[serde(default)]
    pub reserved_cpus: f64,
    /// Memory kept for the host.
    #[serde(default)]
    pub reserved_memory: ByteSize,
    /// Below this much free disk in the state dir the node reports an error.
    #[serde(default = "default_min_free_disk")]
    pub min_free_disk: ByteSize,
    /// How long a podman probe result is reused.
    #[serde(default = "default_probe_ttl")]
    pub probe_ttl_secs: u64,
    /// The cgroup whose CPU quota and memory limit bound jobs (default: the agent's own).
    #[serde(default)]
    pub cgroup: Option<PathBuf>,
    /// The file the node's boot id is read from (the coordinator treats a new boot id as a
    /// reboot that killed every unit). Meant to be changed only for tests and containers that
    /// must fake or pin a boot.
    #[serde(default = "default_boot_id_file")]
    pub boot_id_file: PathBuf,
}

/// The node's place in the mesh (for `meshrun-agent run`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSettings {
    /// control, hybrid, execution or hop.
    pub node_type: NodeType,
    /// Listen for nodes that dial in on this port.
    #[serde(default)]
    pub listen: Option<u16>,
    /// Address the listener binds to.
    #[serde(default)]
    pub bind: Option<String>,
    /// Listeners this node dials (`host:port`).
    #[serde(default)]
    pub peers: Vec<String>,
    /// receptor's log level.
    #[serde(default = "default_log_level")]
    pub log_level: String,
    /// Mesh CA, certificate and key (all three, or none).
    #[serde(default)]
    pub tls_ca: Option<PathBuf>,
    /// This node's certificate.
    #[serde(default)]
    pub tls_cert: Option<PathBuf>,
    /// This node's key.
    #[serde(default)]
    pub tls_key: Option<PathBuf>,
    /// Public key signed work is verified with.
    #[serde(default)]
    pub work_verification_key: Option<PathBuf>,
    /// Private key this node signs work with (control and hybrid).
    #[serde(default)]
    pub work_signing_key: Option<PathBuf>,
}

/// The node's receptor.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceptorSettings {
    /// The receptor executable (absolute path; receptor re-executes itself for work).
    #[serde(default = "default_receptor")]
    pub binary: PathBuf,
    /// Where receptor.conf is written.
    #[serde(default = "default_receptor_config")]
    pub config: PathBuf,
    /// receptor's data directory (work units).
    #[serde(default = "default_receptor_data_dir")]
    pub data_dir: PathBuf,
    /// receptor's control socket.
    #[serde(default = "default_receptor_socket")]
    pub socket: PathBuf,
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
fn default_podman() -> PathBuf {
    PathBuf::from("/usr/bin/podman")
}
fn default_network() -> String {
    "host".to_string()
}
fn default_networks() -> Vec<String> {
    vec!["host".to_string(), "none".to_string()]
}
fn default_stop_timeout() -> u64 {
    2
}
fn default_min_free_disk() -> ByteSize {
    ByteSize(1 << 30)
}
fn default_probe_ttl() -> u64 {
    60
}
fn default_boot_id_file() -> PathBuf {
    PathBuf::from(crate::capacity::identity::BOOT_ID_PATH)
}
fn default_log_level() -> String {
    "info".to_string()
}
fn default_receptor() -> PathBuf {
    PathBuf::from("/usr/bin/receptor")
}
fn default_receptor_config() -> PathBuf {
    PathBuf::from("/etc/receptor/receptor.conf")
}
fn default_receptor_data_dir() -> PathBuf {
    PathBuf::from("/var/lib/receptor")
}
fn default_receptor_socket() -> PathBuf {
    PathBuf::from("/var/run/receptor/receptor.sock")
}

impl Default for WorkerSettings {
    fn default() -> Self {
        WorkerSettings {
            mode: WorkerMode::default(),
            ansible_runner: default_ansible_runner(),
            max_line_bytes: default_max_line_bytes(),
        }
    }
}

impl Default for PodmanSettings {
    fn default() -> Self {
        PodmanSettings {
            executable: default_podman(),
            default_image: None,
            containers_conf: None,
            pull: PullPolicy::default(),
            default_network: default_network(),
            allowed_networks: default_networks(),
            volume_roots: Vec::new(),
            stop_timeout_secs: default_stop_timeout(),
        }
    }
}

impl Default for CapacitySettings {
    fn default() -> Self {
        CapacitySettings {
            reserved_cpus: 0.0,
            reserved_memory: ByteSize(0),
            min_free_disk: default_min_free_disk(),
            probe_ttl_secs: default_probe_ttl(),
            cgroup: None,
            boot_id_file: default_boot_id_file(),
        }
    }
}

impl Default for ReceptorSettings {
    fn default() -> Self {
        ReceptorSettings {
            binary: default_receptor(),
            config: default_receptor_config(),
            data_dir: default_receptor_data_dir(),
            socket: default_receptor_socket(),
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
            podman: PodmanSettings::default(),
            limits: JobLimits::default(),
            capacity: CapacitySettings::default(),
            node: None,
            receptor: ReceptorSettings::default(),
            join: None,
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
    /// A value that parsed but cannot work.
    #[error("invalid agent config {path}: {field}: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The setting.
        field: &'static str,
        /// Why.
        reason: String,
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
        let mut paths = vec![
            ("log_file", &settings.log_file),
            ("state_dir", &settings.state_dir),
            ("worker.ansible_runner", &settings.worker.ansible_runner),
            ("podman.executable", &settings.podman.executable),
            ("receptor.binary", &settings.receptor.binary),
            ("receptor.config", &settings.receptor.config),
            ("receptor.data_dir", &settings.receptor.data_dir),
            ("receptor.socket", &settings.receptor.socket),
        ];
        if let Some(conf) = &settings.podman.containers_conf {
            paths.push(("podman.containers_conf", conf));
        }
        if let Some(cg) = &settings.capacity.cgroup {
            paths.push(("capacity.cgroup", cg));
        }
        for root in &settings.podman.volume_roots {
            paths.push(("podman.volume_roots", root));
        }
        for (field, value) in paths {
            if !value.is_absolute() {
                return Err(SettingsError::NotAbsolute {
                    path,
                    field,
                    value: value.clone(),
                });
            }
        }
        settings
            .check()
            .map_err(|(field, reason)| SettingsError::Invalid {
                path,
                field,
                reason,
            })?;
        Ok(settings)
    }

    fn check(&self) -> Result<(), (&'static str, String)> {
        let c = &self.capacity;
        if !(c.reserved_cpus.is_finite() && c.reserved_cpus >= 0.0) {
            return Err((
                "capacity.reserved_cpus",
                format!("must be 0 or more, got {}", c.reserved_cpus),
            ));
        }
        if let Some(cpus) = self.limits.cpus
            && !(cpus.is_finite() && cpus > 0.0)
        {
            return Err(("limits.cpus", format!("must be more than 0, got {cpus}")));
        }
        let p = &self.podman;
        if !p.allowed_networks.contains(&p.default_network) {
            return Err((
                "podman.default_network",
                format!(
                    "{:?} is not in podman.allowed_networks {:?}",
                    p.default_network, p.allowed_networks
                ),
            ));
        }
        if p.stop_timeout_secs > 5 {
            return Err((
                "podman.stop_timeout_secs",
                format!(
                    "must be at most 5 (receptor kills the worker 10 s after a cancel), got {}",
                    p.stop_timeout_secs
                ),
            ));
        }
        if self.worker.max_line_bytes < 1024 {
            return Err((
                "worker.max_line_bytes",
                format!("must be at least 1024, got {}", self.worker.max_line_bytes),
            ));
        }
        Ok(())
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
    fn every_section_loads() {
        let s = load_text(
            "node_id = \"exec1\"\n\
             [worker]\nmode = \"podman\"\n\
             [podman]\ndefault_image = \"localhost/meshrun-ee:latest\"\npull = \"missing\"\n\
             containers_conf = \"/etc/meshrun/containers.conf\"\nvolume_roots = [\"/srv/share\"]\n\
             [limits]\nmemory = \"2GiB\"\ncpus = 1.5\npids = 512\n\
             [capacity]\nreserved_cpus = 0.5\nreserved_memory = \"1GiB\"\n\
             [node]\nnode_type = \"execution\"\npeers = [\"hop1:27199\"]\n\
             [receptor]\nbinary = \"/usr/local/bin/receptor\"\n",
        )
        .unwrap();
        assert_eq!(s.worker.mode, WorkerMode::Podman);
        assert_eq!(s.podman.pull, PullPolicy::Missing);
        assert_eq!(s.limits.memory, Some(ByteSize(2 << 30)));
        assert_eq!(s.capacity.reserved_memory, ByteSize(1 << 30));
        assert_eq!(s.node.unwrap().node_type, NodeType::Execution);
    }

    #[test]
    fn impossible_values_are_named() {
        for (text, field) in [
            (
                "[capacity]\nreserved_cpus = -1.0\n",
                "capacity.reserved_cpus",
            ),
            ("[limits]\ncpus = 0.0\n", "limits.cpus"),
            (
                "[podman]\ndefault_network = \"bridge\"\n",
                "podman.default_network",
            ),
            (
                "[podman]\nstop_timeout_secs = 30\n",
                "podman.stop_timeout_secs",
            ),
            ("[limits]\nmemory = \"lots\"\n", "lots"),
            ("[worker]\nmode = \"docker\"\n", "docker"),
        ] {
            let e = load_text(text).unwrap_err().to_string();
            assert!(e.contains(field), "{text}: {e}");
        }
    }

    #[test]
    fn missing_explicit_file_is_an_error() {
        let e = AgentSettings::load(Some(Path::new("/nonexistent/agent.toml"))).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/agent.toml"));
    }
}
