//! `meshrun-agent config`: prints receptor.conf for this node, rendered by the shared renderer.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use meshrun_shared::node_id::NodeId;
use meshrun_shared::node_type::NodeType;
use meshrun_shared::receptor_conf::{ListenSpec, NodeConfigSpec, TlsFiles, node_config};

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
    let worker_params = match &args.agent_config {
        Some(cfg) => format!("--config {} worker", shell_quote(&cfg.to_string_lossy())),
        None => "worker".to_string(),
    };
    let tls = match (&args.tls_ca, &args.tls_cert, &args.tls_key) {
        (Some(ca), Some(cert), Some(key)) => Some(TlsFiles {
            ca: ca.clone(),
            cert: cert.clone(),
            key: key.clone(),
        }),
        _ => None,
    };
    let spec = NodeConfigSpec {
        node_type: args.node_type,
        id: args.id.clone(),
        data_dir: args.data_dir.clone(),
        socket_path: args.socket.clone(),
        socket_permissions: 0o660,
        listen: args.listen.map(|port| ListenSpec {
            port,
            bindaddr: args.bind.clone(),
        }),
        peers: args.peers.clone(),
        worker_command,
        worker_params,
        log_level: args.log_level.clone(),
        tls,
        work_signing_key: args.work_signing_key.clone(),
        work_verification_key: args.work_verification_key.clone(),
    };
    Ok(node_config(&spec)?.render())
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
