//! Killing a whole node: its receptor, the command runners receptor detached (they outlive
//! receptor), the agent and ansible-runner they started, and its labelled podman containers.
//!
//! Each node started with [`crate::mesh::NodeSpec::in_own_cgroup`] gets a cgroup of its own
//! (cgroup v1 `pids` hierarchy, else the cgroup v2 tree), and its receptor joins it before it
//! execs (a `sh` wrapper writes its own pid to `cgroup.procs`), so every process it ever
//! starts is in that cgroup. [`NodeCgroup::kill_all`] SIGKILLs every pid listed until the list
//! stays empty. Containers are not in it (podman moves them into cgroups of their own) and are
//! removed by their `io.meshrun.node` label, so tests that use podman give their nodes names no
//! other test uses. Dropping a [`NodeCgroup`] kills what is left in it, removes the node's
//! containers and the directory: exactly what the test created.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// The podman label the agent puts on every job container (agent/src/worker/podman.rs).
pub const NODE_LABEL: &str = "io.meshrun.node";

/// One node's cgroup.
#[derive(Debug)]
pub struct NodeCgroup {
    dir: PathBuf,
    node: String,
}

fn cgroup_root() -> PathBuf {
    let v1 = Path::new("/sys/fs/cgroup/pids");
    if v1.join("cgroup.procs").is_file() {
        v1.to_path_buf()
    } else {
        PathBuf::from("/sys/fs/cgroup")
    }
}

impl NodeCgroup {
    /// Creates a fresh cgroup for node `name` (the name gets a random suffix).
    pub fn create(name: &str) -> NodeCgroup {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let dir = cgroup_root().join(format!(
            "meshrun-test-{name}-{}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir(&dir)
            .unwrap_or_else(|e| panic!("cannot create cgroup {}: {e}", dir.display()));
        NodeCgroup {
            dir,
            node: name.to_string(),
        }
    }

    /// Its directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `program args...` wrapped so that it joins this cgroup before it execs.
    pub fn command(&self, program: &Path) -> Command {
        let mut cmd = Command::new("/bin/sh");
        self.join_then(&mut cmd, program);
        cmd
    }

    /// Appends to `cmd` (a `/bin/sh` invocation, possibly behind a wrapper such as `nsenter`)
    /// the arguments that make the shell join this cgroup and then exec `program`.
    pub fn join_then(&self, cmd: &mut Command, program: &Path) {
        cmd.arg("-c")
            .arg("echo $$ > \"$0\" && exec \"$@\"")
            .arg(self.dir.join("cgroup.procs"))
            .arg(program);
    }

    /// The pids in the cgroup now.
    pub fn pids(&self) -> Vec<i32> {
        std::fs::read_to_string(self.dir.join("cgroup.procs"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }

    /// SIGKILLs every process in the cgroup until none is left (new ones forked meanwhile
    /// are caught by the next round). Returns how many pids were signalled.
    pub fn kill_all(&self) -> usize {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut killed = std::collections::HashSet::new();
        loop {
            let pids = self.pids();
            if pids.is_empty() {
                return killed.len();
            }
            for pid in pids {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
                killed.insert(pid);
            }
            assert!(
                Instant::now() < deadline,
                "processes of {} survive SIGKILL: {:?}",
                self.dir.display(),
                self.pids()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for NodeCgroup {
    fn drop(&mut self) {
        if self.dir.is_dir() {
            self.kill_all();
            remove_node_containers(&self.node);
            // The kernel refuses while exiting tasks are still accounted; retry briefly.
            for _ in 0..100 {
                if std::fs::remove_dir(&self.dir).is_ok() || !self.dir.exists() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            eprintln!("cannot remove cgroup {}", self.dir.display());
        }
    }
}

fn podman() -> Command {
    let mut c = Command::new("podman");
    c.env("CONTAINERS_CONF", crate::env::containers_conf());
    c
}

/// Ids of the containers (running or not) labelled as node `node`'s.
pub fn node_containers(node: &str) -> Vec<String> {
    let out = podman()
        .args(["ps", "--all", "--quiet", "--no-trunc"])
        .arg(format!("--filter=label={NODE_LABEL}={node}"))
        .output();
    match out {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout)
            .lines()
            .map(|l| l.trim().to_string())
            .filter(|l| !l.is_empty())
            .collect(),
        _ => Vec::new(),
    }
}

/// Removes (`podman rm -f`) node `node`'s labelled containers; returns how many.
pub fn remove_node_containers(node: &str) -> usize {
    let ids = node_containers(node);
    if !ids.is_empty() {
        let _ = podman()
            .args(["rm", "--force", "--time=0"])
            .args(&ids)
            .output();
    }
    ids.len()
}

/// What [`Mesh::kill_node`] killed.
///
/// [`Mesh::kill_node`]: crate::mesh::Mesh::kill_node
#[derive(Debug, Clone, Copy)]
pub struct Killed {
    /// Processes SIGKILLed.
    pub processes: usize,
    /// Containers removed.
    pub containers: usize,
}

impl crate::mesh::Mesh {
    /// Kills node `node` as a power cut would: every process in its cgroup (receptor, detached
    /// command runners, agent, ansible-runner, ansible-playbook), then its labelled containers.
    /// The folder, config and receptor data stay, for [`Mesh::restart_node`].
    ///
    /// [`Mesh::restart_node`]: crate::mesh::Mesh::restart_node
    pub fn kill_node(&mut self, node: &str) -> Killed {
        let n = self.nodes.get_mut(node).expect("known node");
        let cgroup = n
            .cgroup
            .as_ref()
            .unwrap_or_else(|| panic!("{node} was not started in its own cgroup"));
        let processes = cgroup.kill_all();
        let containers = remove_node_containers(node);
        if let Some(r) = n.receptor.as_mut() {
            // Reaps the zombie; it is dead already.
            r.stop(Duration::from_secs(1));
        }
        Killed {
            processes,
            containers,
        }
    }

    /// The pids in `node`'s cgroup now (empty for a node without one).
    pub fn node_pids(&self, node: &str) -> Vec<i32> {
        self.nodes[node]
            .cgroup
            .as_ref()
            .map(NodeCgroup::pids)
            .unwrap_or_default()
    }
}
