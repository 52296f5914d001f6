//! A control node whose receptor the coordinator runs (`[control_node]` in coordinator.toml):
//! the harness writes the coordinator's config and the agent.toml its `local` work uses, and
//! starts meshrun-coordinator only. The node joins [`Mesh::nodes`] without a receptor process
//! of the harness's own, so the other nodes can dial it and [`Mesh::status`] reads it.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::Duration;

use meshrun_shared::control_socket::ControlClient;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::{Mesh, Node, agent_config, block_on, free_port};
use crate::env;
use crate::procs::Proc;

/// The files of a control node run by the coordinator, all under its folder.
#[derive(Debug, Clone)]
pub struct ControlFiles {
    /// The node id.
    pub name: String,
    /// `control` or `hybrid`.
    pub node_type: String,
    /// Its folder.
    pub dir: PathBuf,
    /// The coordinator's config.
    pub coordinator_toml: PathBuf,
    /// The receptor.conf the coordinator writes.
    pub receptor_conf: PathBuf,
    /// receptor's data dir.
    pub receptor_data: PathBuf,
    /// The control socket.
    pub socket: PathBuf,
    /// The work-signing key (in a folder that does not exist before the first start).
    pub signing_key: PathBuf,
    /// Its public half.
    pub verification_key: PathBuf,
    /// The agent.toml `local` work runs with.
    pub agent_toml: PathBuf,
    /// The coordinator's record of its receptor's PID.
    pub receptor_pid_file: PathBuf,
    /// receptor's output.
    pub receptor_log: PathBuf,
    /// The listener port other nodes dial.
    pub port: u16,
    /// The coordinator's API port.
    pub api_port: u16,
    /// What else the two configs say.
    pub options: ManagedOptions,
}

/// Choices for a managed control node beyond its name and type.
#[derive(Debug, Clone)]
pub struct ManagedOptions {
    /// Run `local` work in podman (the EE image) instead of on the host.
    pub podman: bool,
    /// Appended to agent.toml (after its `[podman]` table in podman mode).
    pub agent_extra: String,
    /// Appended to coordinator.toml (after its `[control_node]` table; start with a table).
    pub coordinator_extra: String,
    /// Mutual TLS on the control node's listener (`control_node.mesh_tls`, the product
    /// default): nodes link with certificates from the coordinator's CA (issued by the harness,
    /// or by joining, [`Mesh::join_node`]). On by default.
    pub mesh_tls: bool,
}

impl Default for ManagedOptions {
    fn default() -> Self {
        ManagedOptions {
            podman: false,
            agent_extra: String::new(),
            coordinator_extra: String::new(),
            mesh_tls: true,
        }
    }
}

impl ControlFiles {
    fn new(name: &str, node_type: &str, dir: PathBuf, options: ManagedOptions) -> Self {
        ControlFiles {
            options,
            name: name.to_string(),
            node_type: node_type.to_string(),
            coordinator_toml: dir.join("coordinator.toml"),
            receptor_conf: dir.join("etc/receptor.conf"),
            receptor_data: dir.join("receptor-data"),
            socket: dir.join("run/receptor.sock"),
            signing_key: dir.join("keys/work.key"),
            verification_key: dir.join("work.pub"),
            agent_toml: dir.join("agent.toml"),
            receptor_pid_file: dir.join("coordinator/receptor.pid"),
            receptor_log: dir.join("coordinator/receptor.log"),
            port: free_port(),
            api_port: free_port(),
            dir,
        }
    }

    fn write_configs(&self) {
        std::fs::create_dir_all(&self.dir).expect("control node dir");
        let d = self.dir.display();
        let text = format!(
            "api_listen = \"127.0.0.1:{api}\"\ndatabase = \"{d}/meshrun.db\"\n\
             data_dir = \"{d}/coordinator\"\nreceptor_socket = \"{socket}\"\n\n\
             [control_node]\nnode_id = \"{name}\"\nnode_type = \"{node_type}\"\n\
             receptor = \"{receptor}\"\nreceptor_config = \"{conf}\"\ndata_dir = \"{data}\"\n\
             listen_port = {port}\nlisten_bind = \"127.0.0.1\"\nagent = \"{agent}\"\n\
             agent_config = \"{agent_toml}\"\nwork_signing_key = \"{key}\"\n\
             work_verification_key = \"{public}\"\nmesh_tls = {mesh_tls}\n",
            api = self.api_port,
            socket = self.socket.display(),
            name = self.name,
            node_type = self.node_type,
            receptor = env::receptor().display(),
            conf = self.receptor_conf.display(),
            data = self.receptor_data.display(),
            port = self.port,
            agent = env::bin("meshrun-agent").display(),
            agent_toml = self.agent_toml.display(),
            key = self.signing_key.display(),
            public = self.verification_key.display(),
            mesh_tls = self.options.mesh_tls,
        );
        let text = format!("{text}\n{}", self.options.coordinator_extra);
        std::fs::write(&self.coordinator_toml, text).expect("coordinator.toml");
        std::fs::write(
            &self.agent_toml,
            agent_config(
                &self.name,
                &self.dir,
                self.options.podman,
                &self.options.agent_extra,
            ),
        )
        .expect("agent.toml");
    }

    /// The command line the coordinator starts receptor with.
    pub fn receptor_cmdline(&self) -> Vec<String> {
        vec![
            env::receptor().display().to_string(),
            "-c".to_string(),
            self.receptor_conf.display().to_string(),
        ]
    }

    /// The PID the coordinator recorded for its receptor, if that process is alive and runs
    /// receptor with this node's config.
    pub fn receptor_pid(&self) -> Option<i32> {
        let pid = std::fs::read_to_string(&self.receptor_pid_file)
            .ok()?
            .trim()
            .parse()
            .ok()?;
        (alive(pid) && cmdline(pid) == self.receptor_cmdline()).then_some(pid)
    }

    /// Whether the control socket greets as this node.
    pub fn answers(&self) -> bool {
        block_on(ControlClient::connect_unix(&self.socket)).is_ok_and(|c| c.node_id() == self.name)
    }

    /// A receptor a killed coordinator left behind (only the recorded one, if it is ours).
    pub(super) fn kill_leftover_receptor(&self) {
        if let Some(pid) = self.receptor_pid() {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
}

/// Alive and not a zombie.
pub fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            let (_, rest) = s.rsplit_once(')')?;
            rest.split_whitespace()
                .next()
                .map(|st| st != "Z" && st != "X")
        })
        .unwrap_or(false)
}

/// A process's arguments.
pub fn cmdline(pid: i32) -> Vec<String> {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .unwrap_or_default()
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect()
}

impl Mesh {
    /// Starts meshrun-coordinator with a `[control_node]` section for node `name` (`control` or
    /// `hybrid`), so that the coordinator renders and supervises the node's receptor, and waits
    /// for its API. A second call for the same node (after [`Mesh::stop_coordinator`]) keeps its
    /// folder, ports, keys and receptor data.
    pub fn start_managed_control(&mut self, name: &str, node_type: &str) -> ControlFiles {
        self.start_managed_control_with(name, node_type, ManagedOptions::default())
    }

    /// [`Mesh::start_managed_control`] with `options` (used by a first start only).
    pub fn start_managed_control_with(
        &mut self,
        name: &str,
        node_type: &str,
        options: ManagedOptions,
    ) -> ControlFiles {
        assert!(
            self.coordinator.is_none(),
            "a coordinator is already running"
        );
        let files = match self.managed.iter().find(|f| f.name == name) {
            Some(f) => f.clone(),
            None => {
                let f = ControlFiles::new(name, node_type, self.dir.path().join(name), options);
                f.write_configs();
                self.managed.push(f.clone());
                f
            }
        };
        self.nodes.entry(name.to_string()).or_insert_with(|| Node {
            name: name.to_string(),
            dir: files.dir.clone(),
            socket: files.socket.clone(),
            port: Some(files.port),
            receptor: None,
            conf: files.receptor_conf.clone(),
            starts: 0,
            cgroup: None,
            tls: if files.options.mesh_tls {
                super::NodeTls::Mesh
            } else {
                super::NodeTls::Off
            },
        });
        self.token = Some(super::create_api_token(&files.coordinator_toml, "admin"));
        self.database = Some(files.dir.join("meshrun.db"));
        let mut cmd = Command::new(env::bin("meshrun-coordinator"));
        cmd.arg("serve")
            .arg("--config")
            .arg(&files.coordinator_toml);
        self.coordinator = Some(Proc::spawn(
            "meshrun-coordinator",
            &mut cmd,
            &files.dir.join("coordinator.log"),
        ));
        let api = format!("https://127.0.0.1:{}", files.api_port);
        // A first start generates the signing key, which takes seconds in a debug build.
        let ca = crate::api::wait_for_api(
            "the coordinator's API",
            &api,
            &files.coordinator_toml,
            Duration::from_secs(90),
            || self.assert_coordinator_runs(),
        );
        self.ca_cert = Some(ca);
        self.api = Some(api);
        files
    }

    /// Sends `signal` to the coordinator and waits for it to exit (up to 30 s).
    pub fn stop_coordinator(&mut self, signal: Signal) -> ExitStatus {
        let mut c = self.coordinator.take().expect("coordinator not started");
        c.signal(signal);
        self.api = None;
        c.wait_exit(Duration::from_secs(30))
    }

    /// The coordinator's PID.
    pub fn coordinator_pid(&self) -> u32 {
        self.coordinator
            .as_ref()
            .expect("coordinator not started")
            .pid()
    }

    fn assert_coordinator_runs(&mut self) {
        let exited = self.coordinator.as_mut().is_some_and(|c| !c.is_running());
        assert!(
            !exited,
            "meshrun-coordinator exited:\n{}",
            self.coordinator_log()
        );
    }
}

/// The text of `path`, or a note that it is missing.
pub fn read_or_note(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| format!("({}: {e})", path.display()))
}
