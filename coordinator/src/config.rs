//! The coordinator's config file (TOML). Defaults live here and nowhere else.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Where the coordinator looks for its config when none is given.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/meshrun/coordinator.toml";

/// The coordinator's settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CoordinatorConfig {
    /// Address the HTTP API listens on.
    #[serde(default = "default_api_listen")]
    pub api_listen: SocketAddr,
    /// The SQLite database file.
    #[serde(default = "default_database")]
    pub database: PathBuf,
    /// Project archives and per-job working files live here.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// The control node's receptor control socket.
    #[serde(default = "default_receptor_socket")]
    pub receptor_socket: PathBuf,
    /// `ttl` given to receptor for remote submits: an unreachable node fails the unit after it.
    #[serde(default = "default_submit_ttl")]
    pub submit_ttl: String,
    /// The name of the control node's `tls-client` entry. When set, every remote submit uses
    /// it (receptor then checks that the target's certificate carries the target's node id),
    /// even to a node whose control service is advertised as plain: none can downgrade it.
    #[serde(default)]
    pub tls_client: Option<String>,
    /// Largest project archive accepted, in bytes.
    #[serde(default = "default_max_upload_bytes")]
    pub max_upload_bytes: usize,
    /// How nodes are found and checked.
    #[serde(default)]
    pub discovery: DiscoverySettings,
    /// The control node's own receptor, when the coordinator runs it.
    #[serde(default)]
    pub control_node: Option<ControlNodeSettings>,
    /// Modules ad hoc commands may run (AWX's `AD_HOC_COMMANDS`); an ansible-core module may
    /// also be asked for as `ansible.builtin.<name>`. Empty: ad hoc commands are refused.
    #[serde(default = "crate::ad_hoc_modules::default_allowed")]
    pub ad_hoc_commands: Vec<String>,
    /// Projects and project updates.
    #[serde(default)]
    pub projects: ProjectSettings,
    /// What happens to jobs whose node is lost, rebooted or silent.
    #[serde(default)]
    pub node_loss: NodeLossSettings,
    /// The reaper of work units no job needs any more.
    #[serde(default)]
    pub reaper: ReaperSettings,
    /// The HTTP API's own settings.
    #[serde(default)]
    pub api: ApiSettings,
    /// The mesh CA and the certificates it issues.
    #[serde(default)]
    pub pki: PkiSettings,
}

/// The mesh CA (see `pki`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PkiSettings {
    /// Where the CA and the coordinator's own certificates live (default `<data_dir>/pki`).
    #[serde(default)]
    pub dir: Option<PathBuf>,
    /// How long node certificates are valid, in days (default 7; nodes renew after two thirds).
    #[serde(default)]
    pub node_cert_days: Option<u32>,
    /// DNS names the API's certificate carries (default: `localhost` and this host's name).
    #[serde(default)]
    pub api_names: Option<Vec<String>>,
    /// IP addresses the API's certificate carries (default: loopback and the listen address).
    #[serde(default)]
    pub api_ips: Option<Vec<std::net::IpAddr>>,
    /// The URL nodes reach the API at, written into join tokens (default: `https://` + the
    /// first API name or IP + the API port).
    #[serde(default)]
    pub public_url: Option<String>,
    /// Node certificates' lifetime in seconds, overriding `node_cert_days` (for tests that must
    /// see a renewal within minutes; not meant for production).
    #[serde(default)]
    pub node_cert_secs: Option<u64>,
    /// The work-verification public key handed to joining nodes when the coordinator runs no
    /// `[control_node]` (with one, its `work_verification_key` is used).
    #[serde(default)]
    pub work_verification_key: Option<PathBuf>,
    /// The listener (`host:port`) joining nodes dial when they name no `--peer` (default: the
    /// managed control node's listener, at its bind address or the public URL's host).
    #[serde(default)]
    pub join_peer: Option<String>,
}

/// Node certificates' default lifetime in days.
pub const DEFAULT_NODE_CERT_DAYS: u32 = 7;

impl CoordinatorConfig {
    /// The PKI directory.
    pub fn pki_dir(&self) -> PathBuf {
        self.pki
            .dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("pki"))
    }
}

/// The HTTP API.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiSettings {
    /// Require a bearer token on every route but `/api/v2/ping/`. On unless the config says
    /// `auth = false`, which the coordinator warns about at start.
    #[serde(default = "default_true")]
    pub auth: bool,
    /// Serve HTTPS with a certificate from the mesh CA. On unless the config says `tls = false`,
    /// which the coordinator warns about at start; nodes cannot join over plain HTTP.
    #[serde(default = "default_true")]
    pub tls: bool,
}

impl Default for ApiSettings {
    fn default() -> Self {
        ApiSettings {
            auth: true,
            tls: true,
        }
    }
}

/// Lost, rebooted and silent execution nodes (see `node_loss`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeLossSettings {
    /// Seconds an execution node may be unroutable before its jobs end as `error`.
    #[serde(default = "default_node_loss_grace")]
    pub grace_secs: f64,
    /// Seconds between keepalive lines the worker is asked for (`--keepalive-seconds`); 0
    /// asks for none, and then silence alone never ends a job.
    #[serde(default = "default_keepalive")]
    pub keepalive_secs: u32,
    /// Seconds a running job's output may stop growing, while its node is routable, before
    /// it is treated as stalled (must exceed twice `keepalive_secs`).
    #[serde(default = "default_stall")]
    pub stall_secs: f64,
    /// Seconds between two looks at the running jobs.
    #[serde(default = "default_node_loss_period")]
    pub period_secs: f64,
}

fn default_node_loss_grace() -> f64 {
    120.0
}
fn default_keepalive() -> u32 {
    30
}
fn default_stall() -> f64 {
    600.0
}
fn default_node_loss_period() -> f64 {
    2.0
}

impl Default for NodeLossSettings {
    fn default() -> Self {
        NodeLossSettings {
            grace_secs: default_node_loss_grace(),
            keepalive_secs: default_keepalive(),
            stall_secs: default_stall(),
            period_secs: default_node_loss_period(),
        }
    }
}

/// The reaper: how often it reconciles receptor's `work list` with the store.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReaperSettings {
    /// Seconds between two passes (one also runs at start).
    #[serde(default = "default_reaper_interval")]
    pub interval_secs: f64,
    /// Seconds a remote unit's release may stay pending (its node cannot be told) before the
    /// reaper force-releases it, deleting the control node's copy and its secrets.
    #[serde(default = "default_force_release_after")]
    pub force_release_after_secs: f64,
}

impl Default for ReaperSettings {
    fn default() -> Self {
        ReaperSettings {
            interval_secs: default_reaper_interval(),
            force_release_after_secs: default_force_release_after(),
        }
    }
}

fn default_reaper_interval() -> f64 {
    60.0
}
fn default_force_release_after() -> f64 {
    600.0
}

/// Projects and project updates.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProjectSettings {
    /// Accept `file://` repository URLs (a repository on the control node's own disk). Off by
    /// default: such a URL lets API users read any git repository the control node can read.
    #[serde(default)]
    pub allow_file_urls: bool,
}

/// The folder below the coordinator's data dir that holds project checkouts: project updates
/// check out into `<this>/<project id>/`, which the control node's `local` work may mount.
pub const PROJECT_CACHE_DIR: &str = "project_cache";

/// Discovery and health checks.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiscoverySettings {
    /// Seconds between two readings of receptor's `status`.
    #[serde(default = "default_discovery_period")]
    pub period_secs: f64,
    /// Seconds a node may be unroutable before it becomes `unavailable`.
    #[serde(default = "default_grace")]
    pub grace_secs: f64,
    /// Register nodes the store does not know when they appear in the mesh (the seed's
    /// behaviour); when false they are only logged.
    #[serde(default = "default_true")]
    pub auto_register: bool,
    /// Seconds between health checks of a ready node.
    #[serde(default = "default_health_interval")]
    pub health_check_interval_secs: f64,
    /// Seconds a health check may take before it fails.
    #[serde(default = "default_health_timeout")]
    pub health_check_timeout_secs: f64,
}

/// The control node's receptor, rendered and supervised by the coordinator.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlNodeSettings {
    /// The node id (also this control node's instance hostname).
    pub node_id: String,
    /// `control` (never runs user-space jobs) or `hybrid` (runs them through `local`).
    #[serde(default = "default_control_type")]
    pub node_type: String,
    /// The receptor executable (absolute path).
    pub receptor: PathBuf,
    /// Where receptor.conf is written.
    pub receptor_config: PathBuf,
    /// receptor's data directory.
    pub data_dir: PathBuf,
    /// Port that other nodes dial.
    pub listen_port: u16,
    /// Address the listener binds to.
    #[serde(default)]
    pub listen_bind: Option<String>,
    /// The meshrun-agent executable that runs `local` work (absolute path).
    pub agent: PathBuf,
    /// The agent config `local` work uses.
    pub agent_config: PathBuf,
    /// The RSA key that signs work (generated on first start if missing).
    pub work_signing_key: PathBuf,
    /// The public half, handed to nodes for `work-verification`.
    pub work_verification_key: PathBuf,
    /// receptor's log level.
    #[serde(default = "default_receptor_log_level")]
    pub log_level: String,
    /// Mutual TLS on the control node's listener and mesh links, with a certificate the
    /// coordinator issues from the mesh CA (on unless `mesh_tls = false`; nodes that dial in
    /// then need a certificate from `meshrun-agent join`).
    #[serde(default = "default_true")]
    pub mesh_tls: bool,
}

fn default_discovery_period() -> f64 {
    2.0
}
fn default_grace() -> f64 {
    20.0
}
fn default_true() -> bool {
    true
}
fn default_health_interval() -> f64 {
    300.0
}
fn default_health_timeout() -> f64 {
    30.0
}
fn default_control_type() -> String {
    "control".to_string()
}
fn default_receptor_log_level() -> String {
    "info".to_string()
}

impl Default for DiscoverySettings {
    fn default() -> Self {
        DiscoverySettings {
            period_secs: default_discovery_period(),
            grace_secs: default_grace(),
            auto_register: true,
            health_check_interval_secs: default_health_interval(),
            health_check_timeout_secs: default_health_timeout(),
        }
    }
}

fn default_api_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}
fn default_database() -> PathBuf {
    PathBuf::from("/var/lib/meshrun/coordinator.db")
}
fn default_data_dir() -> PathBuf {
    PathBuf::from("/var/lib/meshrun/coordinator")
}
fn default_receptor_socket() -> PathBuf {
    PathBuf::from("/var/run/receptor/receptor.sock")
}
fn default_submit_ttl() -> String {
    "60s".to_string()
}
fn default_max_upload_bytes() -> usize {
    512 << 20
}

/// Why the config could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Unreadable file.
    #[error("cannot read coordinator config {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Invalid TOML or values.
    #[error("invalid coordinator config {path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What the parser said.
        source: toml::de::Error,
    },
    /// A value that parsed but makes no sense.
    #[error("invalid coordinator config {path}: {field}: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The setting.
        field: &'static str,
        /// Why.
        reason: String,
    },
}

impl CoordinatorConfig {
    /// Loads and checks the config at `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let config: CoordinatorConfig =
            toml::from_str(&text).map_err(|source| ConfigError::Parse {
                path: path.to_path_buf(),
                source,
            })?;
        config
            .check()
            .map_err(|(field, reason)| ConfigError::Invalid {
                path: path.to_path_buf(),
                field,
                reason,
            })?;
        Ok(config)
    }

    fn check(&self) -> Result<(), (&'static str, String)> {
        for (field, p) in [
            ("database", &self.database),
            ("data_dir", &self.data_dir),
            ("receptor_socket", &self.receptor_socket),
        ] {
            if !p.is_absolute() {
                return Err((field, format!("must be an absolute path, got {p:?}")));
            }
        }
        let d = &self.discovery;
        for (field, v, min) in [
            ("discovery.period_secs", d.period_secs, 0.1),
            ("discovery.grace_secs", d.grace_secs, 0.0),
            (
                "discovery.health_check_interval_secs",
                d.health_check_interval_secs,
                1.0,
            ),
            (
                "discovery.health_check_timeout_secs",
                d.health_check_timeout_secs,
                1.0,
            ),
            ("reaper.interval_secs", self.reaper.interval_secs, 0.5),
            (
                "reaper.force_release_after_secs",
                self.reaper.force_release_after_secs,
                0.0,
            ),
        ] {
            if !(v.is_finite() && v >= min) {
                return Err((
                    field,
                    format!("must be a number of seconds of at least {min}, got {v}"),
                ));
            }
        }
        let n = &self.node_loss;
        for (field, v, min) in [
            ("node_loss.grace_secs", n.grace_secs, 0.0),
            ("node_loss.stall_secs", n.stall_secs, 1.0),
            ("node_loss.period_secs", n.period_secs, 0.1),
        ] {
            if !(v.is_finite() && v >= min) {
                return Err((
                    field,
                    format!("must be a number of seconds of at least {min}, got {v}"),
                ));
            }
        }
        if n.keepalive_secs > 0 && n.stall_secs <= 2.0 * f64::from(n.keepalive_secs) {
            return Err((
                "node_loss.stall_secs",
                format!(
                    "must exceed twice node_loss.keepalive_secs ({}), got {}",
                    n.keepalive_secs, n.stall_secs
                ),
            ));
        }
        if let Some(c) = &self.control_node {
            if !matches!(c.node_type.as_str(), "control" | "hybrid") {
                return Err((
                    "control_node.node_type",
                    format!("must be control or hybrid, got {:?}", c.node_type),
                ));
            }
            for (field, p) in [
                ("control_node.receptor", &c.receptor),
                ("control_node.receptor_config", &c.receptor_config),
                ("control_node.data_dir", &c.data_dir),
                ("control_node.agent", &c.agent),
                ("control_node.agent_config", &c.agent_config),
                ("control_node.work_signing_key", &c.work_signing_key),
                (
                    "control_node.work_verification_key",
                    &c.work_verification_key,
                ),
            ] {
                if !p.is_absolute() {
                    return Err((field, format!("must be an absolute path, got {p:?}")));
                }
            }
        }
        if let Some(days) = self.pki.node_cert_days
            && !(1..=365).contains(&days)
        {
            return Err((
                "pki.node_cert_days",
                format!("must be 1 to 365 days, got {days}"),
            ));
        }
        for name in self.pki.api_names.iter().flatten() {
            crate::pki::issue::check_dns_name(name)
                .map_err(|e| ("pki.api_names", e.to_string()))?;
        }
        if let Some(url) = &self.pki.public_url
            && !url.starts_with("https://")
        {
            return Err((
                "pki.public_url",
                format!("must be an https:// URL (nodes join over HTTPS only), got {url:?}"),
            ));
        }
        for m in &self.ad_hoc_commands {
            crate::ad_hoc_modules::check_name(m).map_err(|e| ("ad_hoc_commands", e))?;
        }
        let ttl_ok = self
            .submit_ttl
            .strip_suffix(['s', 'm', 'h'])
            .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()));
        if !ttl_ok {
            return Err((
                "submit_ttl",
                format!(
                    "must be a duration like 60s, 5m or 1h, got {:?}",
                    self.submit_ttl
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<CoordinatorConfig, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(&p, text).unwrap();
        CoordinatorConfig::load(&p)
    }

    #[test]
    fn defaults_and_overrides() {
        let c = parse("api_listen = \"127.0.0.1:9999\"\ndatabase = \"/x/db\"\n").unwrap();
        assert_eq!(c.api_listen.port(), 9999);
        assert_eq!(c.submit_ttl, "60s");
        assert!(c.api.auth, "API auth is on by default");
        let off = parse("[api]\nauth = false\n").unwrap();
        assert!(!off.api.auth);
    }

    #[test]
    fn bad_values_are_named() {
        let e = parse("databse = \"/x\"\n").unwrap_err().to_string();
        assert!(e.contains("databse"), "{e}");
        let e = parse("database = \"db\"\n").unwrap_err().to_string();
        assert!(e.contains("database: must be an absolute path"), "{e}");
        let e = parse("submit_ttl = \"soon\"\n").unwrap_err().to_string();
        assert!(e.contains("submit_ttl"), "{e}");
    }

    #[test]
    fn node_loss_defaults_and_a_stall_shorter_than_two_keepalives_is_refused() {
        let c = parse("").unwrap();
        assert_eq!(
            (
                c.node_loss.grace_secs,
                c.node_loss.keepalive_secs,
                c.node_loss.stall_secs
            ),
            (120.0, 30, 600.0)
        );
        let c =
            parse("[node_loss]\ngrace_secs = 10\nkeepalive_secs = 2\nstall_secs = 8\n").unwrap();
        assert_eq!(c.node_loss.grace_secs, 10.0);
        let e = parse("[node_loss]\nkeepalive_secs = 5\nstall_secs = 8\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("node_loss.stall_secs: must exceed twice"), "{e}");
        parse("[node_loss]\nkeepalive_secs = 0\nstall_secs = 1\n").unwrap();
    }

    #[test]
    fn ad_hoc_modules_default_to_awx_list_and_can_be_replaced() {
        let c = parse("").unwrap();
        assert!(c.ad_hoc_commands.iter().any(|m| m == "ping"));
        assert_eq!(
            c.ad_hoc_commands.len(),
            crate::ad_hoc_modules::DEFAULT_ALLOWED.len()
        );
        let c = parse("ad_hoc_commands = [\"ping\", \"ansible.builtin.debug\"]\n").unwrap();
        assert_eq!(c.ad_hoc_commands, ["ping", "ansible.builtin.debug"]);
        let c = parse("ad_hoc_commands = []\n").unwrap();
        assert!(c.ad_hoc_commands.is_empty());
        let e = parse("ad_hoc_commands = [\"ping; rm\"]\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("ad_hoc_commands"), "{e}");
    }
}
