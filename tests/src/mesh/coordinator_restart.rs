//! Killing and restarting the coordinator of a [`Mesh`] whose control node's receptor the
//! harness runs (not [`managed_control`](super::managed_control)): SIGKILL, then a new process
//! with the same config, database and API port — optionally with extra environment, such as a
//! test failpoint (`MESHRUN_FAILPOINT`), for that process only.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use nix::sys::signal::Signal;

use super::Mesh;
use crate::env;
use crate::procs::Proc;

impl Mesh {
    /// SIGKILLs the coordinator and waits for it to be gone.
    pub fn kill_coordinator(&mut self) {
        self.stop_coordinator(Signal::SIGKILL);
    }

    /// Waits (up to `patience`) for a coordinator that is expected to crash (a failpoint) to
    /// exit, and forgets it.
    pub fn wait_coordinator_exit(&mut self, patience: Duration) -> std::process::ExitStatus {
        let mut c = self.coordinator.take().expect("coordinator not started");
        self.api = None;
        c.wait_exit(patience)
    }

    /// Starts the coordinator again after [`Mesh::kill_coordinator`] and waits for its API.
    pub fn restart_coordinator(&mut self) {
        self.restart_coordinator_env(&[]);
    }

    /// [`Mesh::restart_coordinator`] with `vars` added to the new process's environment.
    pub fn restart_coordinator_env(&mut self, vars: &[(&str, &str)]) {
        assert!(
            self.coordinator.is_none(),
            "the coordinator is still running"
        );
        let node = self
            .coordinator_node
            .clone()
            .expect("coordinator started before");
        let dir = self.nodes[&node].dir.clone();
        let config = dir.join("coordinator.toml");
        let text = std::fs::read_to_string(&config).expect("coordinator.toml");
        let port = text
            .lines()
            .find_map(|l| l.strip_prefix("api_listen = \"127.0.0.1:"))
            .and_then(|rest| rest.trim_end_matches('"').parse::<u16>().ok())
            .expect("api_listen in coordinator.toml");
        // Keep the earlier process's log: coordinator.log is always the current one.
        let log = dir.join("coordinator.log");
        let starts = restarts(&dir).len() + 1;
        let _ = std::fs::rename(&log, dir.join(format!("coordinator.log.{starts}")));
        let mut cmd = Command::new(env::bin("meshrun-coordinator"));
        cmd.arg("serve").arg("--config").arg(&config);
        for (k, v) in vars {
            cmd.env(k, v);
        }
        self.coordinator = Some(Proc::spawn("meshrun-coordinator", &mut cmd, &log));
        let api = format!("https://127.0.0.1:{port}");
        let ca = crate::api::wait_for_api(
            "the restarted coordinator's API",
            &api,
            &config,
            Duration::from_secs(60),
            || {},
        );
        self.ca_cert = Some(ca);
        self.api = Some(api);
    }

    /// The logs of every coordinator process of this mesh, oldest first.
    pub fn coordinator_logs(&self) -> String {
        let Some(node) = self.coordinator_node.as_ref() else {
            return String::new();
        };
        let dir = self.nodes[node].dir.clone();
        let mut out = String::new();
        for p in restarts(&dir)
            .into_iter()
            .chain(std::iter::once(dir.join("coordinator.log")))
        {
            out.push_str(&format!("--- {}\n", p.display()));
            out.push_str(&std::fs::read_to_string(&p).unwrap_or_default());
        }
        out
    }
}

/// The logs of earlier coordinator processes in `dir`, oldest first.
fn restarts(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut logs: Vec<(u32, PathBuf)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let n = name.strip_prefix("coordinator.log.")?.parse().ok()?;
            Some((n, e.path()))
        })
        .collect();
    logs.sort();
    logs.into_iter().map(|(_, p)| p).collect()
}
