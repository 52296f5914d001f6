//! `meshrun-agent config`: prints receptor.conf for this node, rendered by the shared renderer.
//! [`node_spec`] turns a node's settings into the renderer's input for `config` and `run` alike.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use meshrun_shared::node_id::NodeId;
use meshrun_shared::node_type::NodeType;
use meshrun_shared::receptor_conf::{
    DEFAULT_SOCKET_PERMISSIONS, ListenSpec, NodeConfigSpec, TlsFiles, node_config,
};

use crate::settings::NodeSettings;

/// Arguments of `meshrun-agent config`.
#[derive(Debug, Args)]
pub struct ConfigArgs {
    /// control, hybrid, execution or hop.
    #[arg(long)]
    pub node_type: NodeType,
    /// The node id (receptor node id = instance hostname).
    #[arg(long)]
    pub id: NodeId,
    /// Listen for nodes that dial in on this TCP port.
    #[arg(long)]
    pub listen: Option<u16>,
    /// Address to bind the listener to (default: all addresses).
    #[arg(long, requires = "listen")]
    pub bind: Option<String>,
    /// Dial this listener (HOST:PORT); repeatable.
    #[arg(long = "peer")]
    pub peers: Vec<String>,
    /// receptor's data directory (work units live there).
    #[arg(long, default_value = "/var/lib/receptor")]
    pub data_dir: PathBuf,
    /// receptor's control socket.
    #[arg(long, default_value = "/var/run/receptor/receptor.sock")]
    pub socket: PathBuf,
    /// receptor's log level: error, warning, info or debug.
    #[arg(long, default_value = "info")]
    pub log_level: String,
    /// The work-command receptor runs (default: this meshrun-agent executable).
    #[arg(long)]
    pub worker_command: Option<PathBuf>,
    /// The agent config file the work-command should use.
    #[arg(long)]
    pub agent_config: Option<PathBuf>,
    /// Mesh CA certificate (enables TLS together with --tls-cert and --tls-key).
    #[arg(long, requires_all = ["tls_cert", "tls_key"])]
    pub tls_ca: Option<PathBuf>,
    /// This node's certificate.
    #[arg(long, requires = "tls_ca")]
    pub tls_cert: Option<PathBuf>,
    /// This node's private key.
    #[arg(long, requires = "tls_ca")]
    pub tls_key: Option<PathBuf>,
    /// Public key that work must be signed for (enables verifysignature).
    #[arg(long)]
    pub work_verification_key: Option<PathBuf>,
    /// Private key this node signs work with (control and hybrid nodes).
    #[arg(long)]
    pub work_signing_key: Option<PathBuf>,
}

/// Renders the config text for `args`.
pub fn run(args: &ConfigArgs) -> anyhow::Result<String> {
    let worker_command = match &args.worker_command {
        Some(p) => p.clone(),
        None => std::env::current_exe().context("cannot find this executable's path")?,
    };
    let node = NodeSettings {
        node_type: args.node_type,
        listen: args.listen,
        bind: args.bind.clone(),
        peers: args.peers.clone(),
        log_level: args.log_level.clone(),
        tls_ca: args.tls_ca.clone(),
        tls_cert: args.tls_cert.clone(),
        tls_key: args.tls_key.clone(),
        work_verification_key: args.work_verification_key.clone(),
        work_signing_key: args.work_signing_key.clone(),
    };
    let spec = node_spec(
        args.id.clone(),
        &node,
        SpecPaths {
            data_dir: args.data_dir.clone(),
            socket: args.socket.clone(),
            worker_command,
            agent_config: args.agent_config.clone(),
        },
    )?;
    Ok(node_config(&spec)?.render())
}

/// The paths a node's receptor.conf points at, besides those in [`NodeSettings`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecPaths {
    /// receptor's data directory.
    pub data_dir: PathBuf,
    /// receptor's control socket.
    pub socket: PathBuf,
    /// The work-command (this meshrun-agent executable).
    pub worker_command: PathBuf,
    /// The agent config the work-command is given with `--config`; none means its default.
    pub agent_config: Option<PathBuf>,
}

/// Why [`node_spec`] refused the settings.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// Some but not all of the three TLS files are set.
    #[error("node.tls_ca, node.tls_cert and node.tls_key must be given together (given: {given})")]
    PartialTls {
        /// The ones that are set.
        given: String,
    },
}

/// Builds the renderer's input from a node's settings: the one place `config` and `run` agree
/// on what a node's receptor.conf contains.
pub fn node_spec(
    id: NodeId,
    node: &NodeSettings,
    paths: SpecPaths,
) -> Result<NodeConfigSpec, SpecError> {
    let worker_params = match &paths.agent_config {
        Some(cfg) => format!("--config {} worker", shell_quote(&cfg.to_string_lossy())),
        None => "worker".to_string(),
    };
    let tls = match (&node.tls_ca, &node.tls_cert, &node.tls_key) {
        (Some(ca), Some(cert), Some(key)) => Some(TlsFiles {
            ca: ca.clone(),
            cert: cert.clone(),
            key: key.clone(),
        }),
        (None, None, None) => None,
        (ca, cert, key) => {
            let given: Vec<&str> = [("tls_ca", ca), ("tls_cert", cert), ("tls_key", key)]
                .into_iter()
                .filter(|(_, v)| v.is_some())
                .map(|(n, _)| n)
                .collect();
            return Err(SpecError::PartialTls {
                given: given.join(", "),
            });
        }
    };
    Ok(NodeConfigSpec {
        node_type: node.node_type,
        id,
        data_dir: paths.data_dir,
        socket_path: paths.socket,
        socket_permissions: DEFAULT_SOCKET_PERMISSIONS,
        listen: node.listen.map(|port| ListenSpec {
            port,
            bindaddr: node.bind.clone(),
        }),
        peers: node.peers.clone(),
        worker_command: paths.worker_command,
        worker_params,
        log_level: node.log_level.clone(),
        tls,
        work_signing_key: node.work_signing_key.clone(),
        work_verification_key: node.work_verification_key.clone(),
    })
}

/// Quotes a value for receptor's shlex split of work-command params.
fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+=:,@".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_keeps_plain_paths_and_quotes_the_rest() {
        assert_eq!(
            shell_quote("/etc/meshrun/agent.toml"),
            "/etc/meshrun/agent.toml"
        );
        assert_eq!(shell_quote("/a b/it's"), r"'/a b/it'\''s'");
        assert_eq!(shell_quote(""), "''");
    }
}
