//! The `receptor.conf` meshrun writes for each node type.
//!
//! Entries come in a fixed order: node, log-level, control-service, tls-server, tls-client,
//! tcp-listener, tcp-peers, local-only, work-signing, work-verification, work-command. Choices:
//! - control and hybrid nodes reject mesh traffic to their own `control` service (nobody on the
//!   mesh may drive the node that runs the coordinator), and keep that service plain;
//! - other nodes, given TLS, serve `control` over TLS on the mesh, so the coordinator reaches it
//!   with a `tlsclient` and receptor checks the caller's node-id binding;
//! - mesh TLS always requires client certs from the mesh CA and TLS 1.3 (every end is receptor);
//! - a node with neither listener nor peer gets `local-only`, or receptor exits at once with
//!   "Nothing to do";
//! - `work-signing` always carries [`TOKEN_EXPIRATION`]: receptor 1.4.8 crashes at start-up
//!   without it, and a longer life than receptor's 5 minutes tolerates clock skew and queued
//!   remote submits.

use std::path::{Path, PathBuf};

use super::ConfError;
use super::model::{
    ControlService, Entry, FirewallAction, FirewallRule, LogLevel, Node, ReceptorConfig,
    TcpListener, TcpPeer, TlsClient, TlsServer, WorkCommand, WorkSigning, WorkVerification,
};
use crate::node_id::NodeId;
use crate::node_type::NodeType;

/// The mesh service name of the control service.
pub const CONTROL_SERVICE_NAME: &str = "control";
/// The name of the `tls-server` entry listeners and the control service use.
pub const TLS_SERVER_NAME: &str = "tls_server";
/// The name of the `tls-client` entry peers use.
pub const TLS_CLIENT_NAME: &str = "tls_client";
/// How long a work signature stays valid.
pub const TOKEN_EXPIRATION: &str = "10m";
/// The longest unix socket path, in bytes: `sun_path` holds 108 bytes including the final NUL.
pub const MAX_SOCKET_PATH_LEN: usize = 107;

/// Everything that decides one node's `receptor.conf`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeConfigSpec {
    /// The node's role.
    pub node_type: NodeType,
    /// The node id (also its hostname in meshrun).
    pub id: NodeId,
    /// receptor's data directory (absolute).
    pub data_dir: PathBuf,
    /// The control socket (absolute, at most [`MAX_SOCKET_PATH_LEN`] bytes).
    pub socket_path: PathBuf,
    /// The control socket's file mode, at most 0o777; 0o660 lets a service group use it.
    pub socket_permissions: u32,
    /// A TCP listener, if the node accepts links.
    pub listen: Option<ListenSpec>,
    /// Listeners this node dials, as `host:port` (`[v6addr]:port` for IPv6).
    pub peers: Vec<String>,
    /// The program receptor runs for work: the absolute path of `meshrun-agent`.
    pub worker_command: PathBuf,
    /// Its fixed arguments, usually `worker`.
    pub worker_params: String,
    /// `error`, `warning`, `info` or `debug`.
    pub log_level: String,
    /// Mesh TLS files; without them links are plain TCP.
    pub tls: Option<TlsFiles>,
    /// The RSA private key that signs work (control and hybrid nodes only).
    pub work_signing_key: Option<PathBuf>,
    /// The RSA public key that signed work is checked with; turns on `verifysignature`.
    pub work_verification_key: Option<PathBuf>,
}

/// Default file mode of the control socket.
pub const DEFAULT_SOCKET_PERMISSIONS: u32 = 0o660;

impl NodeConfigSpec {
    /// A spec with meshrun's defaults: socket mode [`DEFAULT_SOCKET_PERMISSIONS`], params
    /// `worker`, log level `info`, no listener, peers, TLS or keys.
    pub fn new(
        node_type: NodeType,
        id: NodeId,
        data_dir: impl Into<PathBuf>,
        socket_path: impl Into<PathBuf>,
        worker_command: impl Into<PathBuf>,
    ) -> Self {
        NodeConfigSpec {
            node_type,
            id,
            data_dir: data_dir.into(),
            socket_path: socket_path.into(),
            socket_permissions: DEFAULT_SOCKET_PERMISSIONS,
            listen: None,
            peers: Vec::new(),
            worker_command: worker_command.into(),
            worker_params: "worker".to_string(),
            log_level: LogLevel::Info.as_str().to_string(),
            tls: None,
            work_signing_key: None,
            work_verification_key: None,
        }
    }
}

/// A TCP listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenSpec {
    /// The port, not 0.
    pub port: u16,
    /// The address to bind; receptor's default is all IPv4 addresses. IPv6 needs brackets.
    pub bindaddr: Option<String>,
}

/// The mesh CA and this node's certificate and key (absolute paths).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// CA bundle that signs every node's cert.
    pub ca: PathBuf,
    /// This node's cert; must carry its node id (SAN otherName 1.3.6.1.4.1.2312.19.1).
    pub cert: PathBuf,
    /// This node's private key.
    pub key: PathBuf,
}

fn spec_err(field: &'static str, problem: impl Into<String>) -> ConfError {
    ConfError::Spec {
        field,
        problem: problem.into(),
    }
}

/// Builds the `receptor.conf` model for `spec`, after checking every field.
pub fn node_config(spec: &NodeConfigSpec) -> Result<ReceptorConfig, ConfError> {
    let log_level = spec
        .log_level
        .parse::<LogLevel>()
        .map_err(|e| spec_err("log_level", e.to_string()))?;
    let mut entries = vec![
        Entry::Node(node_entry(spec)?),
        Entry::LogLevel(log_level),
        Entry::ControlService(control_entry(spec)?),
    ];
    if let Some(tls) = &spec.tls {
        entries.extend(tls_entries(tls)?);
    }
    let backends = backend_entries(spec)?;
    if backends.is_empty() {
        entries.push(Entry::LocalOnly);
    }
    entries.extend(backends);
    entries.extend(work_entries(spec)?);
    Ok(ReceptorConfig { entries })
}

fn is_control(t: NodeType) -> bool {
    matches!(t, NodeType::Control | NodeType::Hybrid)
}

fn node_entry(spec: &NodeConfigSpec) -> Result<Node, ConfError> {
    let datadir = abs_path("data_dir", &spec.data_dir)?;
    let firewallrules = if is_control(spec.node_type) {
        vec![FirewallRule {
            action: FirewallAction::Reject,
            fromnode: None,
            tonode: Some(spec.id.to_string()),
            fromservice: None,
            toservice: Some(CONTROL_SERVICE_NAME.to_string()),
        }]
    } else {
        Vec::new()
    };
    Ok(Node {
        id: Some(spec.id.clone()),
        datadir: Some(datadir),
        maxidleconnectiontimeout: None,
        firewallrules,
    })
}

fn control_entry(spec: &NodeConfigSpec) -> Result<ControlService, ConfError> {
    let filename = abs_path("socket_path", &spec.socket_path)?;
    if filename.len() > MAX_SOCKET_PATH_LEN {
        return Err(spec_err(
            "socket_path",
            format!(
                "{filename:?} is {} bytes; a unix socket path may have at most {MAX_SOCKET_PATH_LEN}",
                filename.len()
            ),
        ));
    }
    if spec.socket_permissions > 0o777 {
        return Err(spec_err(
            "socket_permissions",
            format!(
                "{:#o} is not a permission mode (0 to 0o777)",
                spec.socket_permissions
            ),
        ));
    }
    let mesh_tls =
        (spec.tls.is_some() && !is_control(spec.node_type)).then(|| TLS_SERVER_NAME.to_string());
    Ok(ControlService {
        service: Some(CONTROL_SERVICE_NAME.to_string()),
        filename: Some(filename),
        permissions: Some(spec.socket_permissions),
        tls: mesh_tls,
        tcplisten: None,
        tcptls: None,
    })
}

fn tls_entries(tls: &TlsFiles) -> Result<[Entry; 2], ConfError> {
    let ca = abs_path("tls.ca", &tls.ca)?;
    let cert = abs_path("tls.cert", &tls.cert)?;
    let key = abs_path("tls.key", &tls.key)?;
    let server = TlsServer {
        name: TLS_SERVER_NAME.to_string(),
        cert: cert.clone(),
        key: key.clone(),
        requireclientcert: Some(true),
        clientcas: Some(ca.clone()),
        pinnedclientcert: Vec::new(),
        skipreceptornamescheck: None,
        mintls13: Some(true),
    };
    let client = TlsClient {
        name: TLS_CLIENT_NAME.to_string(),
        cert: Some(cert),
        key: Some(key),
        rootcas: Some(ca),
        insecureskipverify: None,
        pinnedservercert: Vec::new(),
        skipreceptornamescheck: None,
        mintls13: Some(true),
    };
    Ok([Entry::TlsServer(server), Entry::TlsClient(client)])
}

fn backend_entries(spec: &NodeConfigSpec) -> Result<Vec<Entry>, ConfError> {
    let mut entries = Vec::new();
    if let Some(listen) = &spec.listen {
        entries.push(Entry::TcpListener(listener_entry(spec, listen)?));
    }
    for (i, address) in spec.peers.iter().enumerate() {
        check_peer_address(address).map_err(|p| spec_err("peers", format!("peer {i}: {p}")))?;
        if spec.peers[..i].contains(address) {
            return Err(spec_err("peers", format!("{address:?} is listed twice")));
        }
        entries.push(Entry::TcpPeer(TcpPeer {
            address: address.clone(),
            redial: Some(true),
            tls: spec.tls.as_ref().map(|_| TLS_CLIENT_NAME.to_string()),
            cost: None,
            allowedpeers: Vec::new(),
        }));
    }
    Ok(entries)
}

fn listener_entry(spec: &NodeConfigSpec, listen: &ListenSpec) -> Result<TcpListener, ConfError> {
    if listen.port == 0 {
        return Err(spec_err(
            "listen.port",
            "port 0 would listen on a random port",
        ));
    }
    if let Some(addr) = &listen.bindaddr {
        check_bind_address(addr).map_err(|p| spec_err("listen.bindaddr", p))?;
    }
    Ok(TcpListener {
        port: listen.port,
        bindaddr: listen.bindaddr.clone(),
        tls: spec.tls.as_ref().map(|_| TLS_SERVER_NAME.to_string()),
        cost: None,
        nodecost: Default::default(),
        allowedpeers: Vec::new(),
    })
}

fn work_entries(spec: &NodeConfigSpec) -> Result<Vec<Entry>, ConfError> {
    let mut entries = Vec::new();
    if let Some(key) = &spec.work_signing_key {
        if !is_control(spec.node_type) {
            return Err(spec_err(
                "work_signing_key",
                format!(
                    "only control and hybrid nodes sign work, not {} nodes",
                    spec.node_type
                ),
            ));
        }
        entries.push(Entry::WorkSigning(WorkSigning {
            privatekey: abs_path("work_signing_key", key)?,
            tokenexpiration: Some(TOKEN_EXPIRATION.to_string()),
        }));
    }
    if let Some(key) = &spec.work_verification_key {
        entries.push(Entry::WorkVerification(WorkVerification {
            publickey: abs_path("work_verification_key", key)?,
        }));
    }
    if let Some(worktype) = spec.node_type.work_type() {
        entries.push(Entry::WorkCommand(WorkCommand {
            worktype: worktype.to_string(),
            command: abs_path("worker_command", &spec.worker_command)?,
            params: Some(spec.worker_params.clone()),
            allowruntimeparams: Some(true),
            verifysignature: Some(spec.work_verification_key.is_some()),
        }));
    }
    Ok(entries)
}

/// An absolute path as UTF-8 text (the config is YAML text).
fn abs_path(field: &'static str, path: &Path) -> Result<String, ConfError> {
    let text = path
        .to_str()
        .ok_or_else(|| spec_err(field, format!("{path:?} is not valid UTF-8")))?;
    if !path.is_absolute() {
        return Err(spec_err(field, format!("{text:?} is not an absolute path")));
    }
    if text.chars().any(char::is_control) {
        return Err(spec_err(
            field,
            format!("{text:?} contains control characters"),
        ));
    }
    Ok(text.to_string())
}

/// `host:port`, `[v6]:port`; a port from 1 to 65535 in decimal.
fn check_peer_address(address: &str) -> Result<(), String> {
    let shown: String = address.chars().take(80).collect();
    let (host, port) = address
        .rsplit_once(':')
        .ok_or_else(|| format!("{shown:?} is not host:port"))?;
    let port_ok = !port.is_empty()
        && port.len() <= 5
        && port.bytes().all(|b| b.is_ascii_digit())
        && port.parse::<u16>().is_ok_and(|p| p != 0);
    if !port_ok {
        return Err(format!("{shown:?} has no valid port (1-65535)"));
    }
    check_host(host).map_err(|p| format!("{shown:?}: {p}"))
}

fn check_host(host: &str) -> Result<(), String> {
    if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        let v6_ok = inner.contains(':')
            && inner
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.');
        return if v6_ok {
            Ok(())
        } else {
            Err(format!("[{inner}] is not an IPv6 address"))
        };
    }
    if host.is_empty() {
        return Err("the host is empty".to_string());
    }
    if host.len() > 253 {
        return Err("the host name is longer than 253 characters".to_string());
    }
    if host.contains(':') {
        return Err("an IPv6 address must be in brackets, like [::1]:27199".to_string());
    }
    if !host
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
    {
        return Err("the host may only have letters, digits, '.', '-' and '_'".to_string());
    }
    Ok(())
}

/// receptor joins the bind address and port with `:`, so IPv6 needs brackets.
fn check_bind_address(addr: &str) -> Result<(), String> {
    check_host(addr).map_err(|p| {
        let shown: String = addr.chars().take(80).collect();
        format!("{shown:?}: {p}")
    })
}
