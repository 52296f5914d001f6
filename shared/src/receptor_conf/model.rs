//! The typed model of `receptor.conf`.
//!
//! Actions meshrun writes are typed; every other action receptor knows is kept as an
//! [`Entry::Other`] with its value as parsed, so a round trip keeps it. Optional fields are
//! `Option`s (or empty collections) meaning "not written: receptor's default applies", so a parsed
//! file renders back with the same fields it had.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use crate::node_id::NodeId;

/// A whole `receptor.conf`: its actions in file order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ReceptorConfig {
    /// The actions, in the order receptor reads them.
    pub entries: Vec<Entry>,
}

/// One action (list item) of `receptor.conf`.
#[derive(Debug, Clone, PartialEq)]
pub enum Entry {
    /// `node`: this node's id, data directory and firewall.
    Node(Node),
    /// `log-level`.
    LogLevel(LogLevel),
    /// `local-only`: a null backend, so a node with no listener and no peer keeps running.
    LocalOnly,
    /// `tcp-listener`.
    TcpListener(TcpListener),
    /// `tcp-peer`.
    TcpPeer(TcpPeer),
    /// `control-service`.
    ControlService(ControlService),
    /// `tls-server`.
    TlsServer(TlsServer),
    /// `tls-client`.
    TlsClient(TlsClient),
    /// `work-command`.
    WorkCommand(WorkCommand),
    /// `work-signing`.
    WorkSigning(WorkSigning),
    /// `work-verification`.
    WorkVerification(WorkVerification),
    /// Any other action receptor knows (`ws-peer`, `work-kubernetes`, `trace`, ...), kept as
    /// parsed. `value` is [`YamlValue::Null`] for an item written as a bare name (`- trace`).
    Other {
        /// The action name, lowercase as receptor requires.
        key: String,
        /// Its parameters.
        value: YamlValue,
    },
}

/// Action names, as written in the file.
pub mod action {
    /// `node`
    pub const NODE: &str = "node";
    /// `log-level`
    pub const LOG_LEVEL: &str = "log-level";
    /// `local-only`
    pub const LOCAL_ONLY: &str = "local-only";
    /// `tcp-listener`
    pub const TCP_LISTENER: &str = "tcp-listener";
    /// `tcp-peer`
    pub const TCP_PEER: &str = "tcp-peer";
    /// `control-service`
    pub const CONTROL_SERVICE: &str = "control-service";
    /// `tls-server`
    pub const TLS_SERVER: &str = "tls-server";
    /// `tls-client`
    pub const TLS_CLIENT: &str = "tls-client";
    /// `work-command`
    pub const WORK_COMMAND: &str = "work-command";
    /// `work-signing`
    pub const WORK_SIGNING: &str = "work-signing";
    /// `work-verification`
    pub const WORK_VERIFICATION: &str = "work-verification";

    /// Actions receptor accepts in a node's config that meshrun keeps as [`super::Entry::Other`].
    pub const OTHER: &[&str] = &[
        "trace",
        "udp-listener",
        "udp-peer",
        "ws-listener",
        "ws-peer",
        "command-service",
        "ip-router",
        "tcp-server",
        "tcp-client",
        "udp-server",
        "udp-client",
        "unix-socket-server",
        "unix-socket-client",
        "work-kubernetes",
        "work-python",
    ];

    /// Actions that make receptor do one thing and exit instead of running a node.
    pub const EXCLUSIVE: &[&str] = &[
        "version",
        "cert-init",
        "cert-makereq",
        "cert-signreq",
        "command-runner",
    ];

    /// Actions receptor allows at most once.
    pub const SINGLETONS: &[&str] = &[
        NODE,
        LOG_LEVEL,
        LOCAL_ONLY,
        WORK_SIGNING,
        WORK_VERIFICATION,
        "trace",
    ];
}

impl Entry {
    /// The action name this entry is written under.
    pub fn action(&self) -> &str {
        match self {
            Entry::Node(_) => action::NODE,
            Entry::LogLevel(_) => action::LOG_LEVEL,
            Entry::LocalOnly => action::LOCAL_ONLY,
            Entry::TcpListener(_) => action::TCP_LISTENER,
            Entry::TcpPeer(_) => action::TCP_PEER,
            Entry::ControlService(_) => action::CONTROL_SERVICE,
            Entry::TlsServer(_) => action::TLS_SERVER,
            Entry::TlsClient(_) => action::TLS_CLIENT,
            Entry::WorkCommand(_) => action::WORK_COMMAND,
            Entry::WorkSigning(_) => action::WORK_SIGNING,
            Entry::WorkVerification(_) => action::WORK_VERIFICATION,
            Entry::Other { key, .. } => key,
        }
    }
}

impl ReceptorConfig {
    /// The `node` entry, if any.
    pub fn node(&self) -> Option<&Node> {
        self.entries.iter().find_map(|e| match e {
            Entry::Node(n) => Some(n),
            _ => None,
        })
    }

    /// All `work-command` entries.
    pub fn work_commands(&self) -> impl Iterator<Item = &WorkCommand> {
        self.entries.iter().filter_map(|e| match e {
            Entry::WorkCommand(w) => Some(w),
            _ => None,
        })
    }
}

/// `node`. Without `id`, receptor uses the hostname; without `datadir`, `/tmp/receptor`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Node {
    /// `id` (the bare value).
    pub id: Option<NodeId>,
    /// `datadir`.
    pub datadir: Option<String>,
    /// `maxidleconnectiontimeout`: a Go duration, at least 21 s.
    pub maxidleconnectiontimeout: Option<String>,
    /// `firewallrules`, first match wins. Empty means none written.
    pub firewallrules: Vec<FirewallRule>,
}

/// One firewall rule. Unset matchers match anything; a value in `/.../` is a Go regexp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FirewallRule {
    /// What to do with matching traffic.
    pub action: FirewallAction,
    /// `fromnode`.
    pub fromnode: Option<String>,
    /// `tonode`.
    pub tonode: Option<String>,
    /// `fromservice`.
    pub fromservice: Option<String>,
    /// `toservice`.
    pub toservice: Option<String>,
}

/// A firewall rule's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FirewallAction {
    /// Let it through.
    Accept,
    /// Drop it and tell the sender it is unreachable.
    Reject,
    /// Drop it silently.
    Drop,
}

impl FirewallAction {
    /// The lowercase name written in the file.
    pub fn as_str(self) -> &'static str {
        match self {
            FirewallAction::Accept => "accept",
            FirewallAction::Reject => "reject",
            FirewallAction::Drop => "drop",
        }
    }

    /// Parses a name the way receptor does: case-insensitively.
    pub fn parse(s: &str) -> Option<Self> {
        [
            FirewallAction::Accept,
            FirewallAction::Reject,
            FirewallAction::Drop,
        ]
        .into_iter()
        .find(|a| a.as_str().eq_ignore_ascii_case(s))
    }
}

/// `log-level`: receptor's verbosity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum LogLevel {
    /// `error`, receptor's default.
    #[default]
    Error,
    /// `warning`.
    Warning,
    /// `info`.
    Info,
    /// `debug`.
    Debug,
}

impl LogLevel {
    /// The lowercase name written in the file.
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Error => "error",
            LogLevel::Warning => "warning",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
        }
    }
}

impl fmt::Display for LogLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A log level name that is not `error`, `warning`, `info` or `debug` (in any case).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown log level {0:?}: expected error, warning, info or debug")]
pub struct UnknownLogLevel(pub String);

impl FromStr for LogLevel {
    type Err = UnknownLogLevel;

    /// Case-insensitive, as receptor reads it.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [
            LogLevel::Error,
            LogLevel::Warning,
            LogLevel::Info,
            LogLevel::Debug,
        ]
        .into_iter()
        .find(|l| l.as_str().eq_ignore_ascii_case(s))
        .ok_or_else(|| UnknownLogLevel(s.chars().take(80).collect()))
    }
}

/// `tcp-listener`.
#[derive(Debug, Clone, PartialEq)]
pub struct TcpListener {
    /// `port` (the bare value).
    pub port: u16,
    /// `bindaddr`; receptor's default is `0.0.0.0`.
    pub bindaddr: Option<String>,
    /// `tls`: the name of a `tls-server`.
    pub tls: Option<String>,
    /// `cost`: positive; default 1.0. Both ends of a link must agree.
    pub cost: Option<f64>,
    /// `nodecost`: per-peer costs, each positive.
    pub nodecost: BTreeMap<String, f64>,
    /// `allowedpeers`; empty allows every peer.
    pub allowedpeers: Vec<String>,
}

/// `tcp-peer`.
#[derive(Debug, Clone, PartialEq)]
pub struct TcpPeer {
    /// `address`: `host:port` (the bare value).
    pub address: String,
    /// `redial`; receptor's default is true.
    pub redial: Option<bool>,
    /// `tls`: the name of a `tls-client`.
    pub tls: Option<String>,
    /// `cost`: positive; default 1.0.
    pub cost: Option<f64>,
    /// `allowedpeers`; empty allows every peer.
    pub allowedpeers: Vec<String>,
}

/// `control-service`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ControlService {
    /// `service`: the mesh service name; receptor's default is `control`.
    pub service: Option<String>,
    /// `filename`: the unix socket.
    pub filename: Option<String>,
    /// `permissions` of the socket file; receptor's default is 0o600.
    pub permissions: Option<u32>,
    /// `tls`: a `tls-server` name for the mesh side of the service.
    pub tls: Option<String>,
    /// `tcplisten`: `port` or `host:port` for a TCP control listener.
    pub tcplisten: Option<String>,
    /// `tcptls`: a `tls-server` name for the TCP listener.
    pub tcptls: Option<String>,
}

/// `tls-server`: a named TLS server configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsServer {
    /// `name`, referred to by listeners and services.
    pub name: String,
    /// `cert`: PEM file; must carry this node's id unless `skipreceptornamescheck`.
    pub cert: String,
    /// `key`: PEM file.
    pub key: String,
    /// `requireclientcert`.
    pub requireclientcert: Option<bool>,
    /// `clientcas`: CA bundle for client certs.
    pub clientcas: Option<String>,
    /// `pinnedclientcert`: hex fingerprints.
    pub pinnedclientcert: Vec<String>,
    /// `skipreceptornamescheck`.
    pub skipreceptornamescheck: Option<bool>,
    /// `mintls13`.
    pub mintls13: Option<bool>,
}

/// `tls-client`: a named TLS client configuration.
///
/// receptor 1.4.8 requires `cert` and `key`; later versions take both or neither.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsClient {
    /// `name`, referred to by peers.
    pub name: String,
    /// `cert`: PEM file.
    pub cert: Option<String>,
    /// `key`: PEM file.
    pub key: Option<String>,
    /// `rootcas`: CA bundle used instead of the system's.
    pub rootcas: Option<String>,
    /// `insecureskipverify`.
    pub insecureskipverify: Option<bool>,
    /// `pinnedservercert`: hex fingerprints.
    pub pinnedservercert: Vec<String>,
    /// `skipreceptornamescheck`.
    pub skipreceptornamescheck: Option<bool>,
    /// `mintls13`.
    pub mintls13: Option<bool>,
}

/// `work-command`: a work type run by an external command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkCommand {
    /// `worktype`.
    pub worktype: String,
    /// `command`.
    pub command: String,
    /// `params`: split like a shell would, without a shell.
    pub params: Option<String>,
    /// `allowruntimeparams`.
    pub allowruntimeparams: Option<bool>,
    /// `verifysignature`: needs a `work-verification` entry.
    pub verifysignature: Option<bool>,
}

/// `work-signing`: the key this node signs submitted work with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkSigning {
    /// `privatekey`: RSA PEM file (the bare value).
    pub privatekey: String,
    /// `tokenexpiration`: a Go duration. receptor 1.4.8 crashes at start-up without it.
    pub tokenexpiration: Option<String>,
}

/// `work-verification`: the key this node checks signed work with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkVerification {
    /// `publickey`: RSA PEM file (the bare value).
    pub publickey: String,
}

/// A YAML value as receptor's YAML library resolves it (YAML 1.1: plain `0660` is 432).
///
/// Floats compare by bits, except that all NaNs are equal (YAML has one `.nan`), so a parsed
/// config equals its own re-parse.
#[derive(Debug, Clone)]
pub enum YamlValue {
    /// `null`, `~` or nothing.
    Null,
    /// A boolean (`true`, `yes`, `on`, `y`, ... in YAML 1.1).
    Bool(bool),
    /// An integer. Parsing gives values from `i64::MIN` to `u64::MAX`, as go-yaml does; larger
    /// ones would be read back as floats.
    Int(i128),
    /// A float, including `.inf` and `.nan`.
    Float(f64),
    /// A string.
    String(String),
    /// A list.
    List(Vec<YamlValue>),
    /// A map with string keys, in file order.
    Map(Vec<(String, YamlValue)>),
}

impl PartialEq for YamlValue {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (YamlValue::Null, YamlValue::Null) => true,
            (YamlValue::Bool(a), YamlValue::Bool(b)) => a == b,
            (YamlValue::Int(a), YamlValue::Int(b)) => a == b,
            (YamlValue::Float(a), YamlValue::Float(b)) => {
                a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
            }
            (YamlValue::String(a), YamlValue::String(b)) => a == b,
            (YamlValue::List(a), YamlValue::List(b)) => a == b,
            (YamlValue::Map(a), YamlValue::Map(b)) => a == b,
            _ => false,
        }
    }
}

impl YamlValue {
    /// A short description for error messages: the type and, for scalars, the value.
    pub fn describe(&self) -> String {
        match self {
            YamlValue::Null => "null".to_string(),
            YamlValue::Bool(b) => format!("the boolean {b}"),
            YamlValue::Int(i) => format!("the integer {i}"),
            YamlValue::Float(f) => format!("the float {f}"),
            YamlValue::String(s) => {
                let shown: String = s.chars().take(80).collect();
                format!("the string {shown:?}")
            }
            YamlValue::List(_) => "a list".to_string(),
            YamlValue::Map(_) => "a map".to_string(),
        }
    }
}
