//! `meshrun-agent run` with the real receptor: it writes an execution node's receptor.conf from
//! agent.toml, joins the mesh through a hop, brings a killed receptor back, applies a SIGHUP with
//! a reload (links only) or a restart (anything else), and stops without taking running jobs
//! down with it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use meshrun_shared::control_socket::{ControlClient, Status, SubmitRequest, UnitState, UnitStatus};
use meshrun_shared::receptor_conf::{Entry, ReceptorConfig};
use meshrun_shared::runner_stream::{RunnerKwargs, write_transmit_stream};
use meshrun_tests::env;
use meshrun_tests::mesh::{Mesh, NodeSpec, block_on, issue_cert};
use meshrun_tests::procs::descendants;
use meshrun_tests::wait::eventually;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::os::unix::fs::PermissionsExt;
use tempfile::TempDir;

const NODE: &str = "exec1";

/// An execution node run by `meshrun-agent run`: its agent.toml and the paths it names.
struct ExecNode {
    dir: TempDir,
    toml: PathBuf,
    conf: PathBuf,
    socket: PathBuf,
    data: PathBuf,
    pid_file: PathBuf,
}

impl ExecNode {
    fn new() -> ExecNode {
        let dir = tempfile::Builder::new()
            .prefix("meshrun-run.")
            .tempdir()
            .expect("temp dir");
        let p = dir.path().to_path_buf();
        ExecNode {
            toml: p.join("agent.toml"),
            conf: p.join("etc/receptor.conf"),
            socket: p.join("run/receptor.sock"),
            data: p.join("lib/receptor"),
            pid_file: p.join("state/receptor.pid"),
            dir,
        }
    }

    /// Writes agent.toml: dial the given loopback ports over mutual TLS with a certificate from
    /// the mesh's CA (issued on first use), log at `log_level`.
    fn configure(&self, mesh: &Mesh, peer_ports: &[u16], log_level: &str) {
        let tls = self.dir.path().join("tls");
        let (ca, cert, key) = if tls.join(format!("{NODE}.key")).exists() {
            (
                tls.join("ca.crt"),
                tls.join(format!("{NODE}.crt")),
                tls.join(format!("{NODE}.key")),
            )
        } else {
            issue_cert(
                &mesh.ca_config(),
                NODE,
                &[std::net::Ipv4Addr::LOCALHOST.into()],
                &["localhost"],
                &tls,
            )
        };
        let peers: Vec<String> = peer_ports
            .iter()
            .map(|p| format!("\"127.0.0.1:{p}\""))
            .collect();
        let d = self.dir.path().display();
        let text = format!(
            "node_id = \"{NODE}\"\nlog_file = \"{d}/log/agent.log\"\nstate_dir = \"{d}/state\"\n\n\
             [worker]\nmode = \"host\"\nansible_runner = \"{runner}\"\n\n\
             [node]\nnode_type = \"execution\"\npeers = [{peers}]\nlog_level = \"{log_level}\"\n\
             tls_ca = \"{ca}\"\ntls_cert = \"{cert}\"\ntls_key = \"{key}\"\n\n\
             [receptor]\nbinary = \"{receptor}\"\nconfig = \"{conf}\"\ndata_dir = \"{data}\"\n\
             socket = \"{socket}\"\n",
            runner = env::ansible_runner().display(),
            peers = peers.join(", "),
            receptor = env::receptor().display(),
            conf = self.conf.display(),
            data = self.data.display(),
            socket = self.socket.display(),
            ca = ca.display(),
            cert = cert.display(),
            key = key.display(),
        );
        std::fs::write(&self.toml, text).expect("agent.toml");
    }

    /// The PID `run` recorded for its receptor, if that process is alive.
    fn receptor_pid(&self) -> Option<i32> {
        std::fs::read_to_string(&self.pid_file)
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .filter(|p| alive(*p))
    }

    fn status(&self) -> Option<Status> {
        block_on(async {
            let mut c = ControlClient::connect_unix(&self.socket).await?;
            c.status().await
        })
        .ok()
    }

    fn work_status(&self, unit: &str) -> UnitStatus {
        block_on(async {
            let mut c = ControlClient::connect_unix(&self.socket).await?;
            c.work_status(unit).await
        })
        .unwrap_or_else(|e| panic!("work status {unit}: {e}"))
    }

    /// Waits until this node's (possibly new) receptor answers and has a live link to every
    /// one of `peers`.
    fn wait_linked(&self, peers: &[&str]) -> Status {
        eventually(
            &format!("{NODE} to answer and route to {peers:?}"),
            Duration::from_secs(30),
            || {
                self.status().filter(|s| {
                    s.node_id == NODE && peers.iter().all(|p| s.routing_table.contains_key(*p))
                })
            },
        )
    }
}

/// `meshrun-agent --config <agent.toml> run`, stopped (and its receptor with it) when dropped.
struct AgentRun {
    child: Child,
    log: PathBuf,
    pid_file: PathBuf,
}

impl AgentRun {
    fn start(node: &ExecNode) -> AgentRun {
        let log = node.dir.path().join(format!(
            "run-{}.log",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default()
        ));
        let out = std::fs::File::create(&log).expect("run log");
        let child = Command::new(env::bin("meshrun-agent"))
            .arg("--config")
            .arg(&node.toml)
            .arg("run")
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("run log"))
            .stderr(out)
            .spawn()
            .expect("start meshrun-agent run");
        AgentRun {
            child,
            log,
            pid_file: node.pid_file.clone(),
        }
    }

    fn signal(&self, signal: Signal) {
        kill(Pid::from_raw(self.child.id() as i32), signal).expect("signal meshrun-agent run");
    }

    fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    fn wait_exit(&mut self, patience: Duration) -> ExitStatus {
        eventually("meshrun-agent run to exit", patience, || {
            self.child.try_wait().expect("wait")
        })
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for AgentRun {
    fn drop(&mut self) {
        if self.running() {
            // run gives receptor 10 s after SIGTERM.
            self.signal(Signal::SIGTERM);
            for _ in 0..150 {
                if !self.running() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        // A receptor a killed run could not stop: only the one it recorded, if still receptor.
        if let Some(pid) = std::fs::read_to_string(&self.pid_file)
            .ok()
            .and_then(|t| t.trim().parse::<i32>().ok())
            && cmdline(pid)
                .first()
                .is_some_and(|a| a.ends_with("receptor"))
        {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
}

/// Processes a test must not leave behind, each known by PID and start time, so a reused PID
/// is never signalled. Killed, with their descendants, when dropped.
#[derive(Default)]
struct Leftovers(Vec<(i32, u64)>);

impl Leftovers {
    fn record(&mut self, pid: i32) {
        if let Some(t) = start_time(pid) {
            self.0.push((pid, t));
        }
    }
}

impl Drop for Leftovers {
    fn drop(&mut self) {
        let live: Vec<i32> = self
            .0
            .iter()
            .filter(|(pid, t)| start_time(*pid) == Some(*t))
            .map(|(pid, _)| *pid)
            .collect();
        // Whatever the recorded processes started since, too (the job's whole tree).
        let mut doomed: Vec<i32> = live.iter().flat_map(|p| descendants(*p)).collect();
        doomed.extend(live);
        for pid in doomed {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
}

/// Fields of /proc/<pid>/stat after the command name (field 3, the state, comes first).
fn stat_fields(pid: i32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    Some(rest.split_whitespace().map(str::to_string).collect())
}

/// Alive and not a zombie.
fn alive(pid: i32) -> bool {
    stat_fields(pid).is_some_and(|f| f.first().is_some_and(|s| s != "Z" && s != "X"))
}

fn start_time(pid: i32) -> Option<u64> {
    stat_fields(pid)?.get(19)?.parse().ok()
}

fn cmdline(pid: i32) -> Vec<String> {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .unwrap_or_default()
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect()
}

fn port(mesh: &Mesh, node: &str) -> u16 {
    mesh.nodes[node].port.expect("listens")
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

#[test]
fn run_joins_the_mesh_and_brings_a_killed_receptor_back() {
    let mesh = Mesh::start(&[NodeSpec::new("hop1", "hop").listening()]);
    let node = ExecNode::new();
    node.configure(&mesh, &[port(&mesh, "hop1")], "info");
    let mut run = AgentRun::start(&node);

    mesh.wait_routable("hop1", &[NODE]);
    eventually(
        "hop1 to learn that exec1 offers ansible-runner",
        Duration::from_secs(90),
        || {
            mesh.status("hop1")
                .advertised_work_command(NODE, "ansible-runner")
                .map(|_| ())
        },
    );

    // The file run wrote: the renderer's entries, pointing the worker at this agent.toml.
    assert_eq!(mode(&node.conf), 0o644);
    assert_eq!(mode(&node.data), 0o700);
    let conf = ReceptorConfig::parse(&std::fs::read_to_string(&node.conf).unwrap()).unwrap();
    let wc = conf.work_commands().next().expect("a work-command");
    assert_eq!(wc.worktype, "ansible-runner");
    assert_eq!(
        Path::new(&wc.command),
        std::fs::canonicalize(env::bin("meshrun-agent")).unwrap()
    );
    assert_eq!(
        wc.params.as_deref(),
        Some(format!("--config {} worker", node.toml.display()).as_str())
    );

    let first = node.receptor_pid().expect("run recorded its receptor");
    assert_eq!(
        cmdline(first),
        [
            env::receptor().display().to_string(),
            "-c".to_string(),
            node.conf.display().to_string()
        ],
        "receptor runs by absolute path with -c"
    );

    kill(Pid::from_raw(first), Signal::SIGKILL).unwrap();
    let second = eventually(
        "run to start a new receptor",
        Duration::from_secs(30),
        || node.receptor_pid().filter(|p| *p != first),
    );
    assert!(!alive(first));
    node.wait_linked(&["hop1"]);
    assert_eq!(node.receptor_pid(), Some(second));
    assert!(run.running(), "run itself kept going:\n{}", run.log());
}

#[test]
fn sighup_reloads_for_new_peers_and_restarts_for_other_changes() {
    let mesh = Mesh::start(&[
        NodeSpec::new("hop1", "hop").listening(),
        NodeSpec::new("hop2", "hop").listening(),
    ]);
    let node = ExecNode::new();
    node.configure(&mesh, &[port(&mesh, "hop1")], "info");
    let mut run = AgentRun::start(&node);
    node.wait_linked(&["hop1"]);
    let before = node.receptor_pid().expect("receptor PID");
    // hop1 and hop2 are not linked, so only exec1 dialling hop2 can connect them.
    assert!(!node.status().unwrap().routing_table.contains_key("hop2"));

    // A second peer: a reload, so the same receptor process gets the new link.
    node.configure(&mesh, &[port(&mesh, "hop1"), port(&mesh, "hop2")], "info");
    run.signal(Signal::SIGHUP);
    let linked = node.wait_linked(&["hop1", "hop2"]);
    assert!(
        linked.connections.iter().any(|c| c.node_id == "hop2"),
        "a direct link to hop2: {:?}",
        linked.connections
    );
    mesh.wait_routable("hop2", &[NODE]);
    assert_eq!(node.receptor_pid(), Some(before), "reloaded, not restarted");
    let conf = std::fs::read_to_string(&node.conf).unwrap();
    assert!(
        conf.contains(&format!("127.0.0.1:{}", port(&mesh, "hop2"))),
        "{conf}"
    );

    // A new log level is not reloadable: a new receptor process.
    node.configure(&mesh, &[port(&mesh, "hop1"), port(&mesh, "hop2")], "debug");
    run.signal(Signal::SIGHUP);
    let after = eventually("run to restart receptor", Duration::from_secs(30), || {
        node.receptor_pid().filter(|p| *p != before)
    });
    assert!(!alive(before));
    node.wait_linked(&["hop1", "hop2"]);
    let conf = ReceptorConfig::parse(&std::fs::read_to_string(&node.conf).unwrap()).unwrap();
    assert!(
        conf.entries
            .iter()
            .any(|e| matches!(e, Entry::LogLevel(l) if l.as_str() == "debug"))
    );

    // The same settings again: receptor is left alone.
    run.signal(Signal::SIGHUP);
    eventually("run to handle the SIGHUP", Duration::from_secs(10), || {
        run.log().contains("left alone").then_some(())
    });
    assert_eq!(node.receptor_pid(), Some(after));
    assert!(run.running(), "{}", run.log());
}

/// A private data dir whose playbook sleeps for `seconds`.
fn sleeping_job(root: &Path, seconds: u32) -> Vec<u8> {
    let pdd = root.join("pdd");
    std::fs::create_dir_all(pdd.join("project")).unwrap();
    std::fs::create_dir_all(pdd.join("inventory")).unwrap();
    std::fs::write(
        pdd.join("inventory/hosts"),
        "localhost ansible_connection=local ansible_python_interpreter=\"{{ ansible_playbook_python }}\"\n",
    )
    .unwrap();
    std::fs::write(
        pdd.join("project/slow.yml"),
        format!(
            "- hosts: all\n  gather_facts: false\n  tasks:\n    - name: long sleep\n      ansible.builtin.command: sleep {seconds}\n"
        ),
    )
    .unwrap();
    let kwargs = RunnerKwargs {
        playbook: Some("slow.yml".into()),
        ..RunnerKwargs::new("itest-run")
    }
    .to_map();
    let mut stream = Vec::new();
    write_transmit_stream(&mut stream, &kwargs, Some(&pdd), None).expect("transmit stream");
    stream
}

#[test]
fn a_running_job_outlives_the_agents_stop_and_finishes_under_the_next_run() {
    let mesh = Mesh::start(&[NodeSpec::new("hop1", "hop").listening()]);
    let node = ExecNode::new();
    node.configure(&mesh, &[port(&mesh, "hop1")], "info");
    let mut run = AgentRun::start(&node);
    node.wait_linked(&["hop1"]);

    let payload = sleeping_job(node.dir.path(), 15);
    let mut request = SubmitRequest::new(NODE, "ansible-runner");
    request.params = Some("--delete".into());
    let unit = block_on(async {
        let client = ControlClient::connect_unix(&node.socket).await?;
        let mut session = client.work_submit(&request).await?;
        session.write_all(&payload).await?;
        session.finish().await
    })
    .expect("work submit")
    .unit_id;

    let stdout = node.data.join(NODE).join(&unit).join("stdout");
    eventually("the sleep task to start", Duration::from_secs(90), || {
        std::fs::read_to_string(&stdout)
            .unwrap_or_default()
            .contains("TASK [long sleep]")
            .then_some(())
    });
    let st = node.work_status(&unit);
    assert_eq!(st.state, UnitState::Running, "{st:?}");
    let runner = st.extra_data["Pid"]
        .as_i64()
        .and_then(|p| i32::try_from(p).ok())
        .unwrap_or_else(|| panic!("no runner PID in {st:?}"));
    let mut leftovers = Leftovers::default();
    leftovers.record(runner);
    // The task banner comes before the module runs; wait for the sleep itself.
    let sleep = eventually(
        "the job's sleep to run under the runner",
        Duration::from_secs(60),
        || {
            descendants(runner).into_iter().find(|p| {
                cmdline(*p)
                    .first()
                    .is_some_and(|a| Path::new(a).file_name() == Some("sleep".as_ref()))
            })
        },
    );
    leftovers.record(sleep);
    let receptor = node.receptor_pid().expect("receptor PID");

    run.signal(Signal::SIGTERM);
    let status = run.wait_exit(Duration::from_secs(30));
    assert!(status.success(), "{status:?}\n{}", run.log());
    assert!(!alive(receptor), "receptor stopped");
    assert!(alive(runner), "the unit's runner lives on");
    assert!(alive(sleep), "the job's own process lives on");

    // The next run's receptor picks the unit up again and sees it through.
    let _next = AgentRun::start(&node);
    node.wait_linked(&["hop1"]);
    let done = eventually("the unit to finish", Duration::from_secs(120), || {
        Some(node.work_status(&unit)).filter(|s| s.state.is_final())
    });
    assert_eq!(done.state, UnitState::Succeeded, "{done:?}");
    let output = std::fs::read_to_string(&stdout).unwrap();
    assert!(output.contains("\"status\": \"successful\""), "{output}");
}
