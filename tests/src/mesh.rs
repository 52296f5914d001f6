//! Real receptor meshes on loopback, configured by `meshrun-agent config`, with an optional
//! coordinator on the control node — or a coordinator that runs the control node's receptor
//! itself ([`managed_control`]). Nodes may be added, stopped and restarted while the mesh
//! runs, and the coordinator's store can be read directly (SQLite WAL allows a second reader).
//!
//! A node may be placed in its own network namespace ([`NodeSpec::in_netns`]): its receptor
//! (and so its agent and jobs) runs there, listening on the namespace's veth address, and every
//! link to or from it goes through a [`LinkProxy`] in the test process, which a test can delay
//! or cut ([`Mesh::link`]). A namespaced node dials its proxies at `127.0.0.1` inside its
//! namespace, so every link is checked against the same certificate names.
//!
//! Mesh TLS is on for every node by default ([`NodeTls::Mesh`]): each gets a certificate for its
//! id from the mesh CA through `meshrun-coordinator admin cert issue` (the CA is the one the
//! mesh's coordinator uses; it lives in `<mesh dir>/pki`), and the coordinator's submits use the
//! control node's `tls-client`. When the coordinator runs the control node ([`managed_control`])
//! the CA is the one it made on its first start, and its listener takes mutual TLS too (unless
//! the test turns `mesh_tls` off; nodes then default to no TLS). Work signing is
//! opt-in: [`NodeSpec::signing_work`] and [`NodeSpec::verifying_work`] share one key pair.

pub mod coordinator_restart;
pub mod joined;
pub mod managed_control;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use meshrun_coordinator::store::{HealthCheckRecord, Instance, Link, Store};
use meshrun_shared::control_socket::{
    ControlClient, ControlError, Status, SubmitRequest, UnitStatus,
};
use serde_json::Value;
use tempfile::TempDir;

use crate::env;
use crate::link_proxy::LinkProxy;
use crate::netns::NetNs;
use crate::procs::Proc;
use crate::wait::eventually;

/// A free TCP port on loopback (bound then released; fine for tests).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// One node to start.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    /// Node id.
    pub name: String,
    /// control, hybrid, execution or hop.
    pub node_type: String,
    /// Whether it listens for nodes that dial in.
    pub listen: bool,
    /// Names of nodes it dials (they must listen and come earlier).
    pub peers: Vec<String>,
    /// Run jobs in podman with the EE image (else on the host with the venv's ansible-runner).
    pub podman: bool,
    /// Extra TOML appended to the node's agent.toml (e.g. a `[capacity]` section).
    pub agent_extra: String,
    /// Extra arguments for `meshrun-agent config` (e.g. `--work-verification-key PATH`).
    pub config_args: Vec<String>,
    /// Runs in its own network namespace, its links through proxies.
    pub netns: bool,
    /// Start its receptor (and so everything it runs) in a cgroup of its own, so that
    /// [`Mesh::kill_node`] can kill the whole node.
    pub cgroup: bool,
    /// Its part in mesh TLS; `None`: the mesh's default (see the module doc).
    pub tls: Option<NodeTls>,
    /// It signs work with the mesh's work-signing key (control and hybrid nodes).
    pub sign_work: bool,
    /// Its work-command verifies signatures with the mesh's work-verification key.
    pub verify_work: bool,
    /// Text replacements made in its rendered receptor.conf, in order (each must match).
    pub conf_edits: Vec<(String, String)>,
}

/// How a node takes part in mesh TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeTls {
    /// No TLS at all: plain links, plain control service.
    Off,
    /// A certificate for its own id from the mesh CA.
    Mesh,
    /// A certificate for its own id from another CA; it trusts the mesh CA (whose certificate
    /// is no secret), so only its own certificate can make a link fail.
    ForeignCa,
    /// A valid mesh certificate for another node id. Its receptor.conf is edited the way an
    /// impostor would edit it (`skipreceptornamescheck`), or receptor refuses to start with a
    /// certificate that does not name it.
    CertFor(String),
}

impl NodeSpec {
    /// A node of `node_type`.
    pub fn new(name: &str, node_type: &str) -> Self {
        NodeSpec {
            name: name.into(),
            node_type: node_type.into(),
            listen: false,
            peers: Vec::new(),
            podman: false,
            agent_extra: String::new(),
            config_args: Vec::new(),
            netns: false,
            cgroup: false,
            tls: None,
            sign_work: false,
            verify_work: false,
            conf_edits: Vec::new(),
        }
    }

    /// Replaces `from` by `to` in its rendered receptor.conf (as a hostile operator would).
    pub fn edit_conf(mut self, from: &str, to: &str) -> Self {
        self.conf_edits.push((from.into(), to.into()));
        self
    }

    /// Its part in mesh TLS (default: [`NodeTls::Mesh`]).
    pub fn with_tls(mut self, tls: NodeTls) -> Self {
        self.tls = Some(tls);
        self
    }

    /// It signs work with the mesh's key pair (`--work-signing-key`).
    pub fn signing_work(mut self) -> Self {
        self.sign_work = true;
        self
    }

    /// Its work-command verifies signed work (`--work-verification-key`).
    pub fn verifying_work(mut self) -> Self {
        self.verify_work = true;
        self
    }

    /// It runs in a network namespace of its own, reached through a veth pair; its links go
    /// through [`LinkProxy`]s the test controls.
    pub fn in_netns(mut self) -> Self {
        self.netns = true;
        self
    }

    /// Its processes live in a cgroup of their own (see [`crate::node_kill`]).
    pub fn in_own_cgroup(mut self) -> Self {
        self.cgroup = true;
        self
    }

    /// Passes `args` to `meshrun-agent config` too.
    pub fn config_args(mut self, args: &[&str]) -> Self {
        self.config_args.extend(args.iter().map(|a| a.to_string()));
        self
    }

    /// Its jobs run in podman containers of the EE image.
    pub fn in_podman(mut self) -> Self {
        self.podman = true;
        self
    }

    /// Appends TOML to its agent.toml.
    pub fn agent_toml(mut self, extra: &str) -> Self {
        self.agent_extra.push_str(extra);
        self
    }

    /// It listens.
    pub fn listening(mut self) -> Self {
        self.listen = true;
        self
    }

    /// It dials `peer`.
    pub fn dialing(mut self, peer: &str) -> Self {
        self.peers.push(peer.into());
        self
    }
}

/// The text of an agent.toml for node `name` keeping its state in `dir`.
pub fn agent_config(name: &str, dir: &Path, podman: bool, extra: &str) -> String {
    let mut text = format!(
        "node_id = \"{name}\"\nlog_file = \"{d}/agent.log\"\nstate_dir = \"{d}/agent-state\"\n\n",
        d = dir.display()
    );
    if podman {
        text.push_str(&format!(
            "[worker]\nmode = \"podman\"\nansible_runner = \"{runner}\"\n\n\
             [podman]\ndefault_image = \"{image}\"\ncontainers_conf = \"{conf}\"\n",
            runner = env::ansible_runner().display(),
            image = env::ee_image(),
            conf = env::containers_conf().display(),
        ));
    } else {
        text.push_str(&format!(
            "[worker]\nmode = \"host\"\nansible_runner = \"{}\"\n",
            env::ansible_runner().display()
        ));
    }
    text.push_str(extra);
    text
}

/// A running node.
#[derive(Debug)]
pub struct Node {
    /// Its id.
    pub name: String,
    /// Its folder (configs, logs, receptor data).
    pub dir: PathBuf,
    /// Its control socket.
    pub socket: PathBuf,
    /// Its listener port, if any.
    pub port: Option<u16>,
    /// Its receptor process; `None` when the coordinator runs it ([`managed_control`]).
    pub receptor: Option<Proc>,
    /// Its receptor.conf.
    pub conf: PathBuf,
    /// How many times its receptor was started.
    pub starts: u32,
    /// Its cgroup, when it has one (dropped after the receptor: kills what is left).
    pub cgroup: Option<crate::node_kill::NodeCgroup>,
    /// Its part in mesh TLS.
    pub tls: NodeTls,
}

impl Node {
    /// The command that starts its receptor: inside its network namespace and its cgroup, when
    /// it has them.
    fn receptor_command(&self, netns: Option<&NetNs>) -> Command {
        let receptor = env::receptor();
        let mut cmd = match (netns, &self.cgroup) {
            (Some(ns), Some(cg)) => {
                let mut cmd = ns.command(Path::new("/bin/sh"));
                cg.join_then(&mut cmd, &receptor);
                cmd
            }
            (Some(ns), None) => ns.command(&receptor),
            (None, Some(cg)) => cg.command(&receptor),
            (None, None) => Command::new(receptor),
        };
        cmd.arg("-c").arg(&self.conf);
        cmd
    }
}

/// Makes an API token of `role` (`admin` or `read-only`) in the store of the coordinator
/// configured by `config` with `meshrun-coordinator admin token create`; returns its text.
pub fn create_api_token(config: &Path, role: &str) -> String {
    let out = Command::new(env::bin("meshrun-coordinator"))
        .args([
            "admin", "token", "create", "--name", "harness", "--role", role,
        ])
        .arg("--config")
        .arg(config)
        .output()
        .expect("meshrun-coordinator admin token create");
    assert!(
        out.status.success(),
        "admin token create: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(token.starts_with("mrt_"), "not a token: {token:?}");
    token
}

/// A mesh of nodes and maybe a coordinator; everything stops when it is dropped.
pub struct Mesh {
    /// Nodes by name.
    pub nodes: BTreeMap<String, Node>,
    coordinator: Option<Proc>,
    api: Option<String>,
    /// The admin API token made for the coordinator before it started.
    token: Option<String>,
    /// The coordinator's mesh CA certificate.
    ca_cert: Option<PathBuf>,
    managed: Vec<managed_control::ControlFiles>,
    database: Option<PathBuf>,
    coordinator_node: Option<String>,
    /// Proxies of links that involve a namespaced node, by (dialer, listener).
    links: BTreeMap<(String, String), LinkProxy>,
    /// Namespaces by node; dropped after the nodes are stopped.
    namespaces: BTreeMap<String, NetNs>,
    dir: TempDir,
}

/// The `tls-client` name `meshrun-agent config` renders (the coordinator's `tls_client`).
pub const TLS_CLIENT_NAME: &str = meshrun_shared::receptor_conf::TLS_CLIENT_NAME;

/// Runs `meshrun-coordinator admin cert issue` against the coordinator config `config`;
/// returns `(ca.crt, <id>.crt, <id>.key)` in `out`.
pub fn issue_cert(
    config: &Path,
    node_id: &str,
    ips: &[IpAddr],
    dns: &[&str],
    out: &Path,
) -> (PathBuf, PathBuf, PathBuf) {
    let mut cmd = Command::new(env::bin("meshrun-coordinator"));
    cmd.args([
        "admin",
        "cert",
        "issue",
        "--node-id",
        node_id,
        "--days",
        "1",
    ])
    .arg("--config")
    .arg(config)
    .arg("--out")
    .arg(out);
    for ip in ips {
        cmd.args(["--ip", &ip.to_string()]);
    }
    for name in dns {
        cmd.args(["--dns", name]);
    }
    let res = cmd.output().expect("meshrun-coordinator admin cert issue");
    assert!(
        res.status.success(),
        "admin cert issue for {node_id}: {}",
        String::from_utf8_lossy(&res.stderr)
    );
    (
        out.join("ca.crt"),
        out.join(format!("{node_id}.crt")),
        out.join(format!("{node_id}.key")),
    )
}

/// A coordinator config that only names a CA (data under `dir`, CA in `pki`), for issuing.
fn ca_only_config(dir: &Path, pki: &Path) -> PathBuf {
    std::fs::create_dir_all(dir).expect("CA config dir");
    let config = dir.join("coordinator.toml");
    if !config.exists() {
        std::fs::write(
            &config,
            format!(
                "database = \"{d}/meshrun.db\"\ndata_dir = \"{d}/data\"\n\n[pki]\ndir = \"{p}\"\n",
                d = dir.display(),
                p = pki.display()
            ),
        )
        .expect("CA coordinator.toml");
    }
    config
}

/// Adds `skipreceptornamescheck: true` to the tls-server and tls-client entries of a rendered
/// receptor.conf.
fn skip_receptor_names_check(conf: &str) -> String {
    let mut out = String::new();
    for line in conf.lines() {
        out.push_str(line);
        out.push('\n');
        let trimmed = line.trim_start();
        if trimmed.starts_with("name: ")
            && (line.contains("tls_server") || line.contains("tls_client"))
        {
            let indent = &line[..line.len() - trimmed.len()];
            out.push_str(&format!("{indent}skipreceptornamescheck: true\n"));
        }
    }
    assert!(
        out.matches("skipreceptornamescheck").count() == 2,
        "no tls-server/tls-client names in {conf}"
    );
    out
}

impl Mesh {
    /// The demo topology: control (listens) ← hop (listens, dials control) ← exec1, exec2.
    /// The coordinator runs on the control node.
    pub fn demo() -> Mesh {
        let mut mesh = Mesh::start(&[
            NodeSpec::new("control", "control").listening(),
            NodeSpec::new("hop", "hop").listening().dialing("control"),
            NodeSpec::new("exec1", "execution").dialing("hop"),
            NodeSpec::new("exec2", "execution").dialing("hop"),
        ]);
        mesh.wait_routable("control", &["hop", "exec1", "exec2"]);
        mesh.start_coordinator("control");
        mesh.wait_discovered(&["control", "hop", "exec1", "exec2"]);
        mesh
    }

    /// Waits until the coordinator has registered and health-checked `nodes` and released its
    /// health-check units, so a test starts from a settled mesh (no check units in `work
    /// list`).
    pub fn wait_discovered(&self, nodes: &[&str]) {
        let control = self.coordinator_node.clone().expect("coordinator started");
        eventually(
            &format!("the coordinator to discover and check {nodes:?}"),
            // receptor sends service advertisements when a service starts and then every 60 s
            // only, and not when a link comes up: a node whose first advertisement left before
            // its (TLS) link was up is seen up to 60 s later.
            Duration::from_secs(120),
            || {
                let instances = self.instances();
                let checked = nodes.iter().all(|n| {
                    instances.iter().any(|i| {
                        i.hostname == *n
                            && (i.last_health_check.is_some()
                                || i.node_type == meshrun_shared::node_type::NodeType::Hop)
                            && i.health_check_started <= i.last_health_check
                    })
                });
                (checked && self.work_list(&control).is_empty()).then_some(())
            },
        );
    }

    /// Starts receptors for `specs`, in order.
    pub fn start(specs: &[NodeSpec]) -> Mesh {
        let dir = tempfile::Builder::new()
            .prefix("meshrun-it.")
            .tempdir()
            .expect("temp dir");
        let mut mesh = Mesh {
            nodes: BTreeMap::new(),
            coordinator: None,
            api: None,
            token: None,
            ca_cert: None,
            managed: Vec::new(),
            database: None,
            coordinator_node: None,
            links: BTreeMap::new(),
            namespaces: BTreeMap::new(),
            dir,
        };
        for spec in specs {
            mesh.start_node(spec);
        }
        mesh
    }

    /// The mesh's folder.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Starts one more node (its peers must be running and listen).
    pub fn add(&mut self, spec: &NodeSpec) {
        self.start_node(spec);
    }

    /// Starts one more node (its peers must be running already) and waits for its socket.
    pub fn add_node(&mut self, spec: &NodeSpec) {
        assert!(
            !self.nodes.contains_key(&spec.name),
            "node {} exists already",
            spec.name
        );
        self.start_node(spec);
    }

    /// Stops `node`'s receptor (SIGTERM, then SIGKILL) and keeps its folder and config.
    pub fn stop_node(&mut self, node: &str) {
        let n = self.nodes.get_mut(node).expect("known node");
        if let Some(r) = n.receptor.as_mut() {
            r.stop(Duration::from_secs(5));
        }
    }

    /// Starts `node`'s receptor again with the same config and data, after [`stop_node`].
    ///
    /// [`stop_node`]: Mesh::stop_node
    pub fn restart_node(&mut self, node: &str) {
        let n = self.nodes.get_mut(node).expect("known node");
        assert!(
            !n.receptor.as_mut().is_some_and(|r| r.is_running()),
            "{node} is still running"
        );
        n.starts += 1;
        n.receptor = Some(Proc::spawn(
            &format!("receptor {node}"),
            &mut n.receptor_command(self.namespaces.get(node)),
            &n.dir.join(format!("receptor.{}.log", n.starts)),
        ));
        let socket = n.socket.clone();
        eventually(
            &format!("{node}'s control socket after a restart"),
            Duration::from_secs(15),
            || block_on(ControlClient::connect_unix(&socket)).ok(),
        );
    }

    fn start_node(&mut self, spec: &NodeSpec) {
        let dir = self.dir.path().join(&spec.name);
        std::fs::create_dir_all(&dir).expect("node dir");
        let agent_toml = dir.join("agent.toml");
        std::fs::write(
            &agent_toml,
            agent_config(&spec.name, &dir, spec.podman, &spec.agent_extra),
        )
        .expect("agent.toml");
        let socket = dir.join("receptor.sock");
        let agent = env::bin("meshrun-agent");
        let mut cmd = Command::new(&agent);
        cmd.args(["config", "--node-type", &spec.node_type, "--id", &spec.name])
            .arg("--data-dir")
            .arg(dir.join("receptor-data"))
            .arg("--socket")
            .arg(&socket)
            .arg("--worker-command")
            .arg(&agent)
            .arg("--agent-config")
            .arg(&agent_toml);
        if spec.netns {
            self.namespaces
                .insert(spec.name.clone(), NetNs::create(&spec.name));
        }
        let port = spec.listen.then(free_port);
        if let Some(p) = port {
            let bind = self.address_of(&spec.name).to_string();
            cmd.args(["--listen", &p.to_string(), "--bind", &bind]);
        }
        for peer in &spec.peers {
            let addr = self.peer_address(&spec.name, peer);
            cmd.args(["--peer", &addr.to_string()]);
        }
        // A managed control node without mesh TLS takes plain links only.
        let plain_control = self.managed.iter().any(|m| !m.options.mesh_tls);
        let tls = spec.tls.clone().unwrap_or(if plain_control {
            NodeTls::Off
        } else {
            NodeTls::Mesh
        });
        if let Some((ca, cert, key)) = self.node_cert(&spec.name, &tls) {
            cmd.arg("--tls-ca").arg(ca);
            cmd.arg("--tls-cert").arg(cert);
            cmd.arg("--tls-key").arg(key);
        }
        if spec.sign_work || spec.verify_work {
            let (private, public) = self.work_keys();
            if spec.sign_work {
                cmd.arg("--work-signing-key").arg(private);
            }
            if spec.verify_work {
                cmd.arg("--work-verification-key").arg(public);
            }
        }
        cmd.args(&spec.config_args);
        let out = cmd.output().expect("meshrun-agent config");
        assert!(
            out.status.success(),
            "meshrun-agent config failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let conf = dir.join("receptor.conf");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let mut text = match &tls {
            NodeTls::CertFor(_) => skip_receptor_names_check(&text),
            _ => text,
        };
        for (from, to) in &spec.conf_edits {
            assert!(text.contains(from.as_str()), "{from:?} not in {text}");
            text = text.replacen(from.as_str(), to, 1);
        }
        std::fs::write(&conf, text).expect("receptor.conf");
        let mut node = Node {
            name: spec.name.clone(),
            dir,
            socket: socket.clone(),
            port,
            receptor: None,
            conf,
            starts: 1,
            cgroup: spec
                .cgroup
                .then(|| crate::node_kill::NodeCgroup::create(&spec.name)),
            tls,
        };
        node.receptor = Some(Proc::spawn(
            &format!("receptor {}", spec.name),
            &mut node.receptor_command(self.namespaces.get(&spec.name)),
            &node.dir.join("receptor.log"),
        ));
        eventually(
            &format!("{}'s control socket", spec.name),
            Duration::from_secs(15),
            || block_on(ControlClient::connect_unix(&socket)).ok(),
        );
        self.nodes.insert(spec.name.clone(), node);
    }

    /// The coordinator config whose CA issues the mesh's certificates (the coordinator's own
    /// config names the same CA folder).
    pub fn ca_config(&self) -> PathBuf {
        ca_only_config(&self.dir.path().join("ca"), &self.pki_dir())
    }

    /// Where the mesh CA lives: the coordinator's own PKI folder when the coordinator runs the
    /// control node (it made the CA on its first start), else `<mesh dir>/pki`.
    pub fn pki_dir(&self) -> PathBuf {
        match self.managed.first() {
            Some(m) => m.dir.join("coordinator/pki"),
            None => self.dir.path().join("pki"),
        }
    }

    /// The certificate files `node` runs with for `tls`, issued now (none for [`NodeTls::Off`]).
    fn node_cert(&self, node: &str, tls: &NodeTls) -> Option<(PathBuf, PathBuf, PathBuf)> {
        let mut ips = vec![IpAddr::V4(Ipv4Addr::LOCALHOST)];
        if let Some(ns) = self.namespaces.get(node) {
            ips.push(IpAddr::V4(ns.ns_addr));
        }
        let out = self.dir.path().join(node).join("tls");
        let (config, id) = match tls {
            NodeTls::Off => return None,
            NodeTls::Mesh => (self.ca_config(), node),
            NodeTls::ForeignCa => {
                let foreign = self.dir.path().join("foreign-ca");
                (ca_only_config(&foreign, &foreign.join("pki")), node)
            }
            NodeTls::CertFor(other) => (self.ca_config(), other.as_str()),
        };
        let files = issue_cert(&config, id, &ips, &["localhost"], &out);
        if *tls == NodeTls::ForeignCa {
            let (mesh_ca, _) = meshrun_coordinator::pki::MeshCa::load_or_create(&self.pki_dir())
                .expect("the mesh CA");
            std::fs::write(&files.0, mesh_ca.cert_pem()).expect("mesh CA certificate");
        }
        Some(files)
    }

    /// The mesh's work-signing key pair `(private, public)`, made on first use.
    pub fn work_keys(&self) -> (PathBuf, PathBuf) {
        let dir = self.dir.path().join("work-keys");
        let (private, public) = (dir.join("work.key"), dir.join("work.pub"));
        meshrun_coordinator::control_node::signing_key::ensure_key_pair(&private, &public)
            .expect("the mesh's work-signing key pair");
        (private, public)
    }

    /// The address `node` listens on: its namespace's, else loopback.
    fn address_of(&self, node: &str) -> IpAddr {
        match self.namespaces.get(node) {
            Some(ns) => IpAddr::V4(ns.ns_addr),
            None => IpAddr::V4(Ipv4Addr::LOCALHOST),
        }
    }

    /// What `dialer` dials to reach `peer`: the listener itself between two root-namespace
    /// nodes, else a new [`LinkProxy`] on the dialer's loopback (inside its namespace for a
    /// namespaced node) forwarding to the listener.
    fn peer_address(&mut self, dialer: &str, peer: &str) -> SocketAddr {
        let port = self.nodes[peer].port.expect("peers must listen");
        let target = SocketAddr::new(self.address_of(peer), port);
        if !self.namespaces.contains_key(dialer) && !self.namespaces.contains_key(peer) {
            return target;
        }
        let proxy = match self.namespaces.get(dialer) {
            Some(ns) => LinkProxy::start_on(ns.bind_loopback(), target),
            None => LinkProxy::start(IpAddr::V4(Ipv4Addr::LOCALHOST), target),
        };
        let addr = proxy.addr();
        self.links
            .insert((dialer.to_string(), peer.to_string()), proxy);
        addr
    }

    /// The proxy of the link `dialer` → `listener` (one of them must be namespaced).
    pub fn link(&self, dialer: &str, listener: &str) -> &LinkProxy {
        self.links
            .get(&(dialer.to_string(), listener.to_string()))
            .unwrap_or_else(|| panic!("no proxied link {dialer} -> {listener}"))
    }

    /// The network namespace of `node`, if it has one.
    pub fn netns(&self, node: &str) -> Option<&NetNs> {
        self.namespaces.get(node)
    }

    /// Starts meshrun-coordinator on `node` and waits for its API.
    pub fn start_coordinator(&mut self, node: &str) {
        self.start_coordinator_with(node, "");
    }

    /// Starts meshrun-coordinator on `node` with `extra` appended to its config (e.g.
    /// `"[discovery]\ngrace_secs = 3\n"`) and waits for its API.
    pub fn start_coordinator_with(&mut self, node: &str, extra: &str) {
        let socket = self.nodes[node].socket.clone();
        self.start_coordinator_through(node, &socket, extra);
    }

    /// Starts meshrun-coordinator on `node` talking to receptor through `socket` (e.g. a
    /// pass-through a benchmark watches) instead of the node's own control socket.
    pub fn start_coordinator_through(&mut self, node: &str, socket: &Path, extra: &str) {
        let dir = self.nodes[node].dir.clone();
        let port = free_port();
        let config = dir.join("coordinator.toml");
        let tls_client = match self.nodes[node].tls {
            NodeTls::Off => String::new(),
            _ => format!("tls_client = \"{TLS_CLIENT_NAME}\"\n"),
        };
        std::fs::write(
            &config,
            format!(
                "api_listen = \"127.0.0.1:{port}\"\ndatabase = \"{d}/meshrun.db\"\n\
                 data_dir = \"{d}/coordinator\"\nreceptor_socket = \"{s}\"\n{tls_client}{extra}\n\
                 [pki]\ndir = \"{pki}\"\n",
                d = dir.display(),
                s = socket.display(),
                pki = self.pki_dir().display(),
            ),
        )
        .expect("coordinator.toml");
        self.database = Some(dir.join("meshrun.db"));
        self.coordinator_node = Some(node.to_string());
        self.token = Some(create_api_token(&config, "admin"));
        let mut cmd = Command::new(env::bin("meshrun-coordinator"));
        cmd.arg("serve").arg("--config").arg(&config);
        self.coordinator = Some(Proc::spawn(
            "meshrun-coordinator",
            &mut cmd,
            &dir.join("coordinator.log"),
        ));
        let api = format!("https://127.0.0.1:{port}");
        let ca = crate::api::wait_for_api(
            "the coordinator's API",
            &api,
            &config,
            Duration::from_secs(30),
            || {},
        );
        self.ca_cert = Some(ca);
        self.api = Some(api);
    }

    /// The coordinator's API base URL.
    pub fn api(&self) -> &str {
        self.api.as_deref().expect("coordinator not started")
    }

    /// The mesh CA certificate of the coordinator (made on its first start).
    pub fn ca_cert(&self) -> &Path {
        self.ca_cert.as_deref().expect("coordinator not started")
    }

    /// The admin API token of the coordinator (made before it started).
    pub fn token(&self) -> &str {
        self.token.as_deref().expect("coordinator not started")
    }

    /// GET a JSON document from the API.
    pub fn get(&self, path: &str) -> Value {
        crate::api::client(self)
            .get(format!("{}{path}", self.api()))
            .send()
            .and_then(|r| r.json())
            .unwrap_or_else(|e| panic!("GET {path}: {e}"))
    }

    /// Runs the `meshrun` CLI against this mesh's coordinator.
    pub fn meshrun(&self, args: &[&str]) -> Output {
        Command::new(env::bin("meshrun"))
            .args(args)
            .env("MESHRUN_URL", self.api())
            .env("MESHRUN_TOKEN", self.token())
            .env("MESHRUN_CA_CERT", self.ca_cert())
            .output()
            .expect("meshrun")
    }

    /// `status` of `node`'s receptor.
    pub fn status(&self, node: &str) -> Status {
        block_on(async {
            let mut c = ControlClient::connect_unix(&self.nodes[node].socket).await?;
            c.status().await
        })
        .unwrap_or_else(|e| panic!("status of {node}: {e}"))
    }

    /// `work list` of `node`'s receptor.
    pub fn work_list(&self, node: &str) -> BTreeMap<String, UnitStatus> {
        block_on(async {
            let mut c = ControlClient::connect_unix(&self.nodes[node].socket).await?;
            c.work_list().await
        })
        .unwrap_or_else(|e| panic!("work list of {node}: {e}"))
    }

    /// Submits `payload` as work of `worktype` on `node`, through `via`'s control socket
    /// (a remote submit gets a 30 s ttl). Returns the unit id on `via`.
    pub fn submit(
        &self,
        via: &str,
        node: &str,
        worktype: &str,
        params: &str,
        payload: &[u8],
    ) -> String {
        block_on(async {
            let c = ControlClient::connect_unix(&self.nodes[via].socket).await?;
            let mut req = SubmitRequest::new(node, worktype);
            req.params = Some(params.to_string());
            req.tlsclient = self.tls_client_for(via, node);
            if via != node {
                req.ttl = Some("30s".into());
            }
            let mut session = c.work_submit(&req).await?;
            session.write_all(payload).await?;
            session.finish().await
        })
        .unwrap_or_else(|e| panic!("submit to {node} via {via}: {e}"))
        .unit_id
    }

    /// The `tlsclient` a submit from `via` to `node` needs: none to itself or from a node
    /// without TLS, else the rendered `tls-client` (every TLS node serves `control` over TLS).
    pub fn tls_client_for(&self, via: &str, node: &str) -> Option<String> {
        (via != node && self.nodes[via].tls != NodeTls::Off).then(|| TLS_CLIENT_NAME.to_string())
    }

    /// `work status` of a unit.
    pub fn unit_status(&self, via: &str, unit: &str) -> UnitStatus {
        block_on(async {
            let mut c = ControlClient::connect_unix(&self.nodes[via].socket).await?;
            c.work_status(unit).await
        })
        .unwrap_or_else(|e| panic!("work status {unit} on {via}: {e}"))
    }

    /// `work cancel`, then waits for the unit to be final.
    pub fn cancel(&self, via: &str, unit: &str) {
        block_on(async {
            let mut c = ControlClient::connect_unix(&self.nodes[via].socket).await?;
            c.work_cancel(unit).await
        })
        .unwrap_or_else(|e| panic!("work cancel {unit} on {via}: {e}"));
    }

    /// `work release`.
    pub fn release(&self, via: &str, unit: &str) {
        let _ = block_on(async {
            let mut c = ControlClient::connect_unix(&self.nodes[via].socket).await?;
            c.work_release(unit).await
        });
    }

    /// The unit's whole output once it is final (read by byte count: receptor's results stream
    /// never ends for a canceled unit).
    pub fn output(&self, via: &str, unit: &str, patience: Duration) -> Vec<u8> {
        let status = eventually(&format!("unit {unit} to end"), patience, || {
            let st = self.unit_status(via, unit);
            st.state.is_final().then_some(st)
        });
        let want = status.stdout_size as usize;
        let mut out = Vec::with_capacity(want);
        if want > 0 {
            block_on(async {
                use tokio::io::AsyncReadExt;
                let c = ControlClient::connect_unix(&self.nodes[via].socket).await?;
                let mut r = c.work_results(unit, 0).await?;
                let mut buf = vec![0u8; 64 * 1024];
                while out.len() < want {
                    let n = r.read(&mut buf).await.map_err(|e| ControlError::Io {
                        during: "reading results".into(),
                        source: e,
                    })?;
                    if n == 0 {
                        break;
                    }
                    out.extend_from_slice(&buf[..n]);
                }
                Ok::<(), ControlError>(())
            })
            .unwrap_or_else(|e| panic!("work results {unit} on {via}: {e}"));
        }
        out
    }

    /// Waits until `from` has a route to every one of `nodes`.
    pub fn wait_routable(&self, from: &str, nodes: &[&str]) {
        eventually(
            &format!("{from} to route to {nodes:?}"),
            Duration::from_secs(30),
            || {
                let st = self.status(from);
                nodes
                    .iter()
                    .all(|n| st.routing_table.contains_key(*n))
                    .then_some(())
            },
        );
    }

    /// Reads the coordinator's store with `read` (opened and closed around the call).
    pub fn read_store<T>(
        &self,
        read: impl AsyncFnOnce(&Store) -> Result<T, meshrun_coordinator::store::StoreError>,
    ) -> T {
        let path = self.database.clone().expect("coordinator not started");
        block_on(async {
            let store = Store::open(&path).await?;
            let out = read(&store).await;
            store.close().await;
            out
        })
        .unwrap_or_else(|e| panic!("reading the coordinator's store {}: {e}", path.display()))
    }

    /// Every instance the coordinator stores.
    pub fn instances(&self) -> Vec<Instance> {
        self.read_store(async |s| s.all_instances().await)
    }

    /// The stored instance `hostname`, if any.
    pub fn instance(&self, hostname: &str) -> Option<Instance> {
        self.read_store(async |s| s.instance_by_hostname(hostname).await)
    }

    /// The stored links.
    pub fn links(&self) -> Vec<Link> {
        self.read_store(async |s| s.links().await)
    }

    /// The newest health checks of `hostname`, newest first.
    pub fn health_checks(&self, hostname: &str) -> Vec<HealthCheckRecord> {
        self.read_store(async |s| match s.instance_by_hostname(hostname).await? {
            Some(i) => s.health_checks(i.id, 1000).await,
            None => Ok(Vec::new()),
        })
    }

    /// What `meshrun-agent worker --worker-info` says on `node` (same agent.toml as receptor
    /// gives it), parsed as the coordinator parses it.
    pub fn worker_info(&self, node: &str) -> meshrun_shared::worker_info::WorkerInfo {
        let out = Command::new(env::bin("meshrun-agent"))
            .arg("--config")
            .arg(self.nodes[node].dir.join("agent.toml"))
            .args(["worker", "--worker-info"])
            .output()
            .expect("meshrun-agent worker --worker-info");
        assert!(out.status.success(), "worker-info on {node}: {out:?}");
        meshrun_shared::worker_info::parse(&String::from_utf8_lossy(&out.stdout))
            .unwrap_or_else(|e| panic!("worker-info on {node}: {e}"))
    }

    /// The coordinator's log so far (for failure messages).
    pub fn coordinator_log(&self) -> String {
        self.nodes
            .values()
            .map(|n| n.dir.join("coordinator.log"))
            .filter_map(|p| std::fs::read_to_string(p).ok())
            .collect()
    }
}

impl Drop for Mesh {
    fn drop(&mut self) {
        if let Some(mut c) = self.coordinator.take() {
            // A coordinator running a control node's receptor gives it 10 s to stop.
            let grace = if self.managed.is_empty() { 5 } else { 15 };
            c.stop(Duration::from_secs(grace));
        }
        for files in &self.managed {
            files.kill_leftover_receptor();
        }
        // Nodes are stopped in reverse order of start by dropping them.
        while let Some((_, node)) = self.nodes.pop_last() {
            if let Some(mut receptor) = node.receptor {
                receptor.stop(Duration::from_secs(5));
            }
        }
        // Then the links, then the namespaces (which take whatever is left inside with them).
        self.links.clear();
        self.namespaces.clear();
        if std::env::var_os("MESHRUN_KEEP_TEST_DIRS").is_some() {
            let kept = std::mem::replace(&mut self.dir, tempfile::tempdir().expect("temp dir"));
            eprintln!("kept test dir {}", kept.keep().display());
        }
    }
}

/// Runs a future on a fresh current-thread runtime (the harness itself is synchronous).
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(f)
}
