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
    /// The name of the `tls-client` entry to use for nodes whose control service is TLS.
    #[serde(default)]
    pub tls_client: Option<String>,
    /// Largest project archive accepted, in bytes.
    #[serde(default = "default_max_upload_bytes")]
    pub max_upload_bytes: usize,
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
}
