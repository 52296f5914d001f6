//! `meshrun-agent join`: self-registration of a node with a join token.
//!
//! The node makes its key pair locally (the private key never leaves it), fetches the mesh CA
//! over TLS *without* trusting anything and accepts it only if its SHA-256 equals the token's
//! fingerprint, then sends its CSR and node facts to the coordinator over HTTPS trusting only
//! that CA. It writes the CA, its certificate, its key (0600), the work-verification key and
//! agent.toml atomically (directories 0700) and, unless `--no-start`, starts the agent. Running
//! it again with the same id and key is idempotent: the coordinator recognises the key and only
//! refreshes the certificate.
//!
//! - [`pki`]: key, CSR, PEM and certificate-validity helpers (also used by renewal).
//! - [`files`]: the files a join writes and the agent.toml update.

pub mod files;
pub mod pki;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, anyhow, bail};
use clap::Args;
use meshrun_shared::join::{CA_PATH, JOIN_PATH, JoinRequest, JoinResponse, JoinToken};
use meshrun_shared::node_id::NodeId;
use meshrun_shared::node_type::NodeType;

use crate::cli::EXIT_USAGE;

/// Arguments of `meshrun-agent join`.
#[derive(Debug, Args)]
pub struct JoinArgs {
    /// The coordinator's API URL (default: the one in the token).
    #[arg(long)]
    pub coordinator: Option<String>,
    /// The join token (`meshrun token create`).
    #[arg(long, env = "MESHRUN_JOIN_TOKEN", hide_env_values = true)]
    pub token: String,
    /// This node's id (default: agent.toml's node_id, else the host name).
    #[arg(long)]
    pub id: Option<NodeId>,
    /// The node type expected (refused if the token was made for another).
    #[arg(long)]
    pub node_type: Option<NodeType>,
    /// A listener to dial (HOST:PORT) instead of the one the coordinator names.
    #[arg(long)]
    pub peer: Option<String>,
    /// Listen for nodes that dial in on this port.
    #[arg(long, requires = "advertise")]
    pub listen: Option<u16>,
    /// HOST:PORT other nodes dial to reach this node's listener (put in its certificate).
    #[arg(long, requires = "listen")]
    pub advertise: Option<String>,
    /// The address the listener binds to (default: all addresses).
    #[arg(long, requires = "listen")]
    pub bind: Option<std::net::IpAddr>,
    /// Where agent.toml and the TLS files go.
    #[arg(long, default_value = "/etc/meshrun")]
    pub config_dir: PathBuf,
    /// Write everything, start nothing.
    #[arg(long)]
    pub no_start: bool,
}

/// Runs `join`, printing what happened; usage errors exit 64, others 1.
pub fn main(args: &JoinArgs) -> ExitCode {
    crate::logging::init_stderr();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("meshrun-agent join: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(join(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("meshrun-agent join: {e:#}");
            let usage = e
                .downcast_ref::<meshrun_shared::join::JoinTokenError>()
                .is_some();
            ExitCode::from(if usage { EXIT_USAGE } else { 1 })
        }
    }
}

async fn join(args: &JoinArgs) -> anyhow::Result<()> {
    let token = JoinToken::decode(&args.token)?;
    let url = args
        .coordinator
        .clone()
        .unwrap_or_else(|| token.url.clone())
        .trim_end_matches('/')
        .to_string();
    if !url.starts_with("https://") {
        bail!("--coordinator {url:?} is not an https:// URL");
    }
    let paths = files::JoinPaths::new(&args.config_dir);
    let existing = files::existing_settings(&paths.agent_toml)?;
    let node_id = match (&args.id, existing.as_ref().and_then(files::node_id_of)) {
        (Some(id), Some(old)) if id.as_str() != old => bail!(
            "{} already belongs to node {old:?}; join as {old:?} or use another --config-dir",
            paths.agent_toml.display()
        ),
        (Some(id), _) => id.clone(),
        (None, Some(old)) => NodeId::new(old.as_str())
            .map_err(|e| anyhow!("node_id in {}: {e}", paths.agent_toml.display()))?,
        (None, None) => {
            let host = sysinfo::System::host_name().unwrap_or_default();
            NodeId::new(host.as_str()).map_err(|e| {
                anyhow!("the host name {host:?} cannot be the node id ({e}); pass --id")
            })?
        }
    };
    let ca_pem = fetch_pinned_ca(&url, &token.ca_fingerprint).await?;
    let (key_pem, new_key) = match pki::existing_key_pem(&paths.key)? {
        Some(k) => (k, false),
        None => (pki::new_key_pem()?, true),
    };
    let request = JoinRequest {
        token: args.token.trim().to_string(),
        node_id: node_id.to_string(),
        node_type: args.node_type,
        csr_pem: pki::csr_pem(&key_pem, node_id.as_str())?,
        dns_names: Vec::new(),
        ip_addresses: Vec::new(),
        advertise: args.advertise.clone(),
        peer: args.peer.clone(),
        agent_version: Some(env!("CARGO_PKG_VERSION").to_string()),
    };
    let answer = post_join(&url, &ca_pem, &request).await?;
    if answer.node_id != node_id.as_str() {
        bail!(
            "the coordinator answered for node {:?}, not {node_id}",
            answer.node_id
        );
    }
    let bind = args.bind.map(|a| a.to_string());
    files::write_all(
        &paths,
        &files::Written {
            url: &url,
            key_pem: new_key.then_some(key_pem.as_str()),
            answer: &answer,
            listen: args.listen,
            bind: bind.as_deref(),
        },
        existing,
    )?;
    println!(
        "joined the mesh as {} ({}); certificate valid until {}; dialling {}",
        answer.node_id,
        answer.node_type,
        answer.not_after,
        if answer.peers.is_empty() {
            "nothing".to_string()
        } else {
            answer.peers.join(", ")
        }
    );
    println!("wrote {}", paths.agent_toml.display());
    if args.no_start {
        println!(
            "not started (--no-start); start it with: meshrun-agent --config {} run",
            paths.agent_toml.display()
        );
        return Ok(());
    }
    start(&paths.agent_toml)
}

fn start(agent_toml: &Path) -> anyhow::Result<()> {
    if Path::new("/run/systemd/system").exists() {
        let status = std::process::Command::new("systemctl")
            .args(["enable", "--now", "meshrun-agent"])
            .status()
            .context("cannot run systemctl")?;
        if !status.success() {
            bail!("`systemctl enable --now meshrun-agent` failed: {status}");
        }
        println!("started: systemctl enable --now meshrun-agent");
    } else {
        println!(
            "systemd is not running here; start the agent with: meshrun-agent --config {} run",
            agent_toml.display()
        );
    }
    Ok(())
}

fn error_chain(e: &reqwest::Error) -> String {
    let mut chain = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        chain.push_str(": ");
        chain.push_str(&s.to_string());
        source = s.source();
    }
    chain
}

/// Fetches the CA certificate without verifying the server, and accepts it only if its DER's
/// SHA-256 is `fingerprint`.
pub async fn fetch_pinned_ca(url: &str, fingerprint: &str) -> anyhow::Result<String> {
    let client = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .context("cannot build an HTTP client")?;
    let resp = client
        .get(format!("{url}{CA_PATH}"))
        .send()
        .await
        .map_err(|e| anyhow!("cannot reach the coordinator at {url}: {}", error_chain(&e)))?;
    if !resp.status().is_success() {
        bail!(
            "the coordinator at {url} did not hand out its CA: {}",
            resp.status()
        );
    }
    let pem = resp
        .text()
        .await
        .context("cannot read the CA certificate")?;
    let der = pki::first_cert_der(&pem)
        .ok_or_else(|| anyhow!("the coordinator at {url} sent no PEM CA certificate"))?;
    let got = pki::fingerprint(&der);
    if got != fingerprint {
        bail!(
            "refusing to join: the CA at {url} has fingerprint {got}, but the join token pins \
             {fingerprint} (another coordinator, or someone in between)"
        );
    }
    Ok(pem)
}

/// An HTTP client that trusts only `ca_pem`, optionally presenting `identity_pem` (cert + key).
pub fn pinned_client(ca_pem: &str, identity_pem: Option<&str>) -> anyhow::Result<reqwest::Client> {
    let ca = reqwest::Certificate::from_pem(ca_pem.as_bytes()).context("the CA certificate")?;
    let mut b = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(ca)
        .timeout(std::time::Duration::from_secs(60));
    if let Some(id) = identity_pem {
        b = b.identity(
            reqwest::Identity::from_pem(id.as_bytes()).context("the node's certificate and key")?,
        );
    }
    b.build().context("cannot build an HTTP client")
}

/// The `detail` of an error answer, or its body.
pub async fn refusal(resp: reqwest::Response) -> String {
    let status = resp.status();
    let body = resp.text().await.unwrap_or_default();
    let detail = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.get("detail").and_then(|d| d.as_str()).map(str::to_string))
        .unwrap_or(body);
    format!("{} {}", status.as_u16(), detail)
}

async fn post_join(url: &str, ca_pem: &str, req: &JoinRequest) -> anyhow::Result<JoinResponse> {
    let client = pinned_client(ca_pem, None)?;
    let resp = client
        .post(format!("{url}{JOIN_PATH}"))
        .json(req)
        .send()
        .await
        .map_err(|e| anyhow!("cannot send the join request to {url}: {}", error_chain(&e)))?;
    if !resp.status().is_success() {
        bail!("the coordinator refused the join: {}", refusal(resp).await);
    }
    resp.json()
        .await
        .context("the coordinator's join answer is not valid")
}
