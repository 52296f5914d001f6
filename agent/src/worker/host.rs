//! Runs `ansible-runner worker` directly on the host (no container), streaming its stdout
//! through a [`StreamGuard`] and its stderr into the agent's log.

use std::os::unix::fs::DirBuilderExt;
use std::path::PathBuf;
use std::process::{ExitCode, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::process::{Child, Command};

use super::fail_before_start;
use super::params::RunParams;
use super::supervise::{Canceller, supervise};
use super::unit::UnitIdentity;
use crate::settings::AgentSettings;

/// After forwarding a cancel, how long the worker gets before it is killed (receptor kills
/// the agent 10 s after its SIGINT).
const CANCEL_GRACE: Duration = Duration::from_secs(7);

/// Runs one job.
pub async fn run_job(
    settings: &AgentSettings,
    unit: &UnitIdentity,
    params: &RunParams,
) -> ExitCode {
    if let Some(dir) = &params.requested_private_data_dir {
        tracing::info!(requested = %dir.display(), "ignoring the controller's private data dir; the agent picks its own");
    }
    let pdd = match private_data_dir(settings, unit) {
        Ok(p) => p,
        Err(e) => return fail_before_start(&e),
    };
    let mut cmd = Command::new(&settings.worker.ansible_runner);
    cmd.arg("worker")
        .arg(format!("--private-data-dir={}", pdd.display()))
        .arg("--delete");
    if let Some(secs) = params.keepalive_seconds {
        cmd.arg(format!("--keepalive-seconds={secs}"));
    }
    if let Some(node) = &unit.node_id {
        cmd.env("MESHRUN_NODE_ID", node.as_str());
    }
    // ansible-runner finds ansible-playbook on PATH: put the runner's own directory (a venv's
    // bin/, say) first, so the two always come from the same installation.
    if let Some(dir) = settings.worker.ansible_runner.parent() {
        let path = std::env::var_os("PATH").unwrap_or_default();
        let mut dirs = vec![dir.to_path_buf()];
        dirs.extend(std::env::split_paths(&path));
        if let Ok(joined) = std::env::join_paths(dirs) {
            cmd.env("PATH", joined);
        }
    }
    cmd.env("MESHRUN_UNIT_ID", &unit.unit_id)
        .stdin(Stdio::inherit())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    // ansible runs in its own session: only as its subreaper can a cancel find it again.
    super::orphans::become_subreaper();
    let child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            return fail_before_start(&format!(
                "meshrun-agent cannot start {}: {e}",
                settings.worker.ansible_runner.display()
            ));
        }
    };
    supervise(child, settings.worker.max_line_bytes, &mut SignalCancel).await
}

/// Host mode cancels by passing SIGINT on (ansible-runner reports `canceled`), then kills; once
/// the runner has exited, what it left running is stopped too.
struct SignalCancel;

impl Canceller for SignalCancel {
    fn cancel(&mut self, child: &Child) {
        if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGINT);
        }
    }

    fn force(&mut self, child: &mut Child) {
        let _ = child.start_kill();
    }

    fn grace(&self) -> Duration {
        CANCEL_GRACE
    }

    fn after_exit(&mut self, canceled: bool) {
        if canceled {
            super::orphans::stop_all();
        }
    }
}

/// The unit's private data dir, below the agent's state dir (0700).
fn private_data_dir(settings: &AgentSettings, unit: &UnitIdentity) -> Result<PathBuf, String> {
    let units = settings.state_dir.join("units");
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&units)
        .map_err(|e| format!("meshrun-agent cannot create {}: {e}", units.display()))?;
    Ok(units.join(&unit.unit_id))
}
