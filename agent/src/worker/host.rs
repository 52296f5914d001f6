//! Runs `ansible-runner worker` directly on the host (no container), streaming its stdout
//! through a [`StreamGuard`] and its stderr into the agent's log.

use std::collections::VecDeque;
use std::os::unix::fs::DirBuilderExt;
use std::path::PathBuf;
use std::process::{ExitCode, ExitStatus, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use tokio::signal::unix::{SignalKind, signal};

use super::params::RunParams;
use super::stream_guard::{Ending, StreamGuard};
use super::unit::UnitIdentity;
use super::{EXIT_AGENT_ERROR, fail_before_start};
use crate::settings::AgentSettings;

/// How much of the worker's stderr is kept for an error ending.
const STDERR_TAIL_BYTES: usize = 4096;
/// After forwarding a cancel, how long the worker gets before it is killed (receptor kills
/// the agent 10 s after its SIGINT).
const CANCEL_GRACE: Duration = Duration::from_secs(7);

/// `--worker-info`: for now the host's ansible-runner answers.
pub async fn worker_info(settings: &AgentSettings) -> ExitCode {
    let runner = &settings.worker.ansible_runner;
    let out = Command::new(runner)
        .args(["worker", "--worker-info"])
        .stdin(Stdio::null())
        .output()
        .await;
    match out {
        Ok(out) => {
            if !out.stderr.is_empty() {
                tracing::warn!(stderr = %String::from_utf8_lossy(&out.stderr), "worker-info stderr");
            }
            let mut stdout = tokio::io::stdout();
            let _ = stdout.write_all(&out.stdout).await;
            let _ = stdout.flush().await;
            exit_code(out.status)
        }
        Err(e) => {
            let msg = format!("errors: [\"cannot run {}: {e}\"]", runner.display());
            let mut stdout = tokio::io::stdout();
            let _ = stdout.write_all(format!("{{{msg}}}\n").as_bytes()).await;
            ExitCode::from(EXIT_AGENT_ERROR)
        }
    }
}

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
    let child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            return fail_before_start(&format!(
                "meshrun-agent cannot start {}: {e}",
                settings.worker.ansible_runner.display()
            ));
        }
    };
    supervise(child, settings.worker.max_line_bytes).await
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

async fn supervise(mut child: Child, max_line: usize) -> ExitCode {
    let (Some(mut stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
        return fail_before_start("meshrun-agent lost the worker's pipes");
    };
    let stderr_task = tokio::spawn(collect_stderr(stderr));
    let (Ok(mut sigint), Ok(mut sigterm)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return fail_before_start("meshrun-agent cannot install its signal handlers");
    };
    let mut out = tokio::io::stdout();
    let mut guard = StreamGuard::new(max_line);
    let mut buf = vec![0u8; 64 * 1024];
    let mut forward = Vec::with_capacity(64 * 1024);
    let mut canceled = false;
    let mut kill_deadline: Option<tokio::time::Instant> = None;
    let mut guard_error = None;
    loop {
        let deadline = kill_deadline;
        tokio::select! {
            n = stdout.read(&mut buf) => match n {
                Ok(0) => break,
                Ok(n) => {
                    forward.clear();
                    if let Err(e) = guard.push(&buf[..n], &mut forward) {
                        tracing::error!(error = %e, "stopping the worker");
                        guard_error = Some(e.to_string());
                        let _ = child.start_kill();
                        break;
                    }
                    if out.write_all(&forward).await.is_err() || out.flush().await.is_err() {
                        tracing::error!("cannot write the unit's output; stopping the worker");
                        let _ = child.start_kill();
                        break;
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot read the worker's output");
                    break;
                }
            },
            _ = sigint.recv() => canceled = forward_cancel(&child, &mut kill_deadline),
            _ = sigterm.recv() => canceled = forward_cancel(&child, &mut kill_deadline),
            _ = sleep_until(deadline) => {
                tracing::warn!("worker ignored the cancel; killing it");
                let _ = child.start_kill();
                kill_deadline = None;
            }
        }
    }
    let status = child.wait().await;
    let stderr_tail = stderr_task.await.unwrap_or_default();
    let ending = if canceled {
        Ending::Canceled
    } else {
        let how = match &status {
            Ok(s) => describe(*s),
            Err(e) => format!("could not be waited for ({e})"),
        };
        let explanation = match guard_error {
            Some(e) => format!("{e}; the job was stopped"),
            None => format!("ansible-runner worker {how} without ending its output stream"),
        };
        Ending::Error {
            explanation,
            traceback: stderr_tail,
        }
    };
    let tail = guard.finish(ending);
    let agent_ended_it = !tail.is_empty();
    if agent_ended_it {
        let _ = out.write_all(&tail).await;
        let _ = out.flush().await;
    }
    tracing::info!(
        ?status,
        agent_ended_it,
        dropped_lines = guard.dropped_lines(),
        "worker finished"
    );
    match status {
        Ok(s) if !agent_ended_it => exit_code(s),
        _ => ExitCode::from(EXIT_AGENT_ERROR),
    }
}

/// Passes receptor's cancel on to the worker (ansible-runner reports `canceled` on SIGINT).
fn forward_cancel(child: &Child, kill_deadline: &mut Option<tokio::time::Instant>) -> bool {
    if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
        let _ = kill(Pid::from_raw(pid), Signal::SIGINT);
    }
    if kill_deadline.is_none() {
        *kill_deadline = Some(tokio::time::Instant::now() + CANCEL_GRACE);
    }
    tracing::info!("cancel forwarded to the worker");
    true
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// Logs the worker's stderr line by line and returns its last few KiB.
async fn collect_stderr(stderr: tokio::process::ChildStderr) -> String {
    let mut lines = BufReader::new(stderr).lines();
    let mut tail: VecDeque<String> = VecDeque::new();
    let mut tail_len = 0;
    while let Ok(Some(line)) = lines.next_line().await {
        tracing::warn!(target: "worker_stderr", "{line}");
        tail_len += line.len() + 1;
        tail.push_back(line);
        while tail_len > STDERR_TAIL_BYTES && tail.len() > 1 {
            if let Some(old) = tail.pop_front() {
                tail_len -= old.len() + 1;
            }
        }
    }
    tail.into_iter().collect::<Vec<_>>().join("\n")
}

fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with code {code}"),
        (None, Some(sig)) => format!("was killed by signal {sig}"),
        _ => "ended".to_string(),
    }
}

fn exit_code(status: ExitStatus) -> ExitCode {
    match status.code() {
        Some(c) => ExitCode::from(u8::try_from(c).unwrap_or(EXIT_AGENT_ERROR)),
        None => ExitCode::from(EXIT_AGENT_ERROR),
    }
}
