//! Watches a running worker: forwards its stdout through a [`StreamGuard`], logs its stderr,
//! turns receptor's cancel (SIGINT, or SIGTERM) into the mode's way of stopping the job, and
//! ends the stream well-formed whatever happens.

use std::collections::VecDeque;
use std::process::{ExitCode, ExitStatus};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::Child;
use tokio::signal::unix::{SignalKind, signal};

use super::stream_guard::{Ending, StreamGuard};
use super::{EXIT_AGENT_ERROR, fail_before_start};

/// How much of the worker's stderr is kept for an error ending.
const STDERR_TAIL_BYTES: usize = 4096;

/// How a mode stops a canceled job.
pub trait Canceller {
    /// Asks the job to stop (ansible-runner then reports `canceled`).
    fn cancel(&mut self, child: &Child);
    /// The job ignored `cancel` for too long: stop it by force.
    fn force(&mut self, child: &mut Child);
    /// How long `cancel` may take before `force`; well inside receptor's 10 s.
    fn grace(&self) -> Duration;
    /// What a failed exit means in this mode, when it says more than the exit code.
    fn explain(&self, _status: &ExitStatus) -> Option<String> {
        None
    }
    /// Called once the worker has exited: a canceled job's leftovers are stopped here.
    fn after_exit(&mut self, _canceled: bool) {}
}

/// Runs `child` to its end and returns the unit's exit code.
pub async fn supervise(
    mut child: Child,
    max_line: usize,
    canceller: &mut dyn Canceller,
) -> ExitCode {
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
    let mut force_at: Option<tokio::time::Instant> = None;
    let mut guard_error = None;
    loop {
        let deadline = force_at;
        tokio::select! {
            n = stdout.read(&mut buf) => match n {
                Ok(0) => break,
                Ok(n) => {
                    forward.clear();
                    if let Err(e) = guard.push(&buf[..n], &mut forward) {
                        tracing::error!(error = %e, "stopping the worker");
                        guard_error = Some(e.to_string());
                        canceller.force(&mut child);
                        break;
                    }
                    if out.write_all(&forward).await.is_err() || out.flush().await.is_err() {
                        tracing::error!("cannot write the unit's output; stopping the worker");
                        canceller.force(&mut child);
                        break;
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot read the worker's output");
                    break;
                }
            },
            _ = sigint.recv() => cancel(&mut canceled, &mut force_at, canceller, &child),
            _ = sigterm.recv() => cancel(&mut canceled, &mut force_at, canceller, &child),
            _ = sleep_until(deadline) => {
                tracing::warn!("the worker did not stop after the cancel; forcing it");
                canceller.force(&mut child);
                force_at = None;
            }
        }
    }
    let status = child.wait().await;
    canceller.after_exit(canceled);
    let stderr_tail = stderr_task.await.unwrap_or_default();
    let ending = if canceled {
        Ending::Canceled
    } else {
        let how = match &status {
            Ok(s) => describe(*s),
            Err(e) => format!("could not be waited for ({e})"),
        };
        let explained = status.as_ref().ok().and_then(|s| canceller.explain(s));
        let explanation = match (guard_error, explained) {
            (Some(e), _) => format!("{e}; the job was stopped"),
            (None, Some(why)) => why,
            (None, None) => format!("the worker {how} without ending its output stream"),
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
        peak_rss_kib = peak_rss_kib(),
        "worker finished"
    );
    match status {
        Ok(s) if !agent_ended_it => exit_code(s),
        _ => ExitCode::from(EXIT_AGENT_ERROR),
    }
}

fn cancel(
    canceled: &mut bool,
    force_at: &mut Option<tokio::time::Instant>,
    canceller: &mut dyn Canceller,
    child: &Child,
) {
    if !*canceled {
        tracing::info!("cancel received; stopping the job");
        canceller.cancel(child);
        *force_at = Some(tokio::time::Instant::now() + canceller.grace());
    }
    *canceled = true;
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

/// This process's peak resident set size (VmHWM), for the log and the overhead benchmark.
fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with code {code}"),
        (None, Some(sig)) => format!("was killed by signal {sig}"),
        _ => "ended".to_string(),
    }
}

/// The unit's exit code for a worker that ended with `status`.
pub fn exit_code(status: ExitStatus) -> ExitCode {
    match status.code() {
        Some(c) => ExitCode::from(u8::try_from(c).unwrap_or(EXIT_AGENT_ERROR)),
        None => ExitCode::from(EXIT_AGENT_ERROR),
    }
}
