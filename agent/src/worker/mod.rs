//! The work-command: `meshrun-agent worker [ansible-runner worker args]`.
//!
//! receptor runs it once per unit with the unit's payload on stdin and both stdout and stderr
//! going into the unit's output file. So the agent writes the job stream (and only it) to
//! stdout, nothing at all to stderr, and always ends the stream well-formed: every failure of
//! its own, or of the worker, becomes an `error` status followed by `{"eof": true}`.

mod cleanup;
mod container_policy;
mod host;
mod job_kwargs;
mod leftovers;
mod orphans;
pub mod params;
mod podman;
pub mod stream_guard;
mod supervise;
pub mod unit;

use std::io::Write;
use std::process::ExitCode;

use crate::logging;
use crate::settings::{AgentSettings, SettingsError, WorkerMode};
use params::WorkerRequest;
use stream_guard::{Ending, StreamGuard};
use unit::UnitIdentity;

/// How long a finished job waits for its background sweep of leftovers.
const SWEEP_WAIT: std::time::Duration = std::time::Duration::from_secs(5);
/// Exit code when the agent itself had to end the stream with an error.
const EXIT_AGENT_ERROR: u8 = 1;

/// Runs worker mode and returns the unit's exit code.
pub fn main(settings: Result<AgentSettings, SettingsError>, args: Vec<String>) -> ExitCode {
    let settings = match settings {
        Ok(s) => s,
        Err(e) => return fail_before_start(&format!("meshrun-agent cannot start: {e}")),
    };
    logging::init_file(&settings.log_file);
    let request = match params::parse(&args) {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "refused worker parameters");
            return fail_before_start(&format!("meshrun-agent refused the job: {e}"));
        }
    };
    let unit = UnitIdentity::current(settings.node_id.clone());
    tracing::info!(unit = %unit.unit_id, node = ?unit.node_id.as_ref().map(|n| n.as_str()), ?request, "worker starting");
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            return fail_before_start(&format!("meshrun-agent cannot start its runtime: {e}"));
        }
    };
    match request {
        WorkerRequest::WorkerInfo => {
            // Same exit code as ansible-runner: 0, with any problems listed in `errors`.
            let text = crate::capacity::worker_info(&settings);
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(text.as_bytes());
            let _ = out.flush();
            ExitCode::SUCCESS
        }
        WorkerRequest::Run(run) => runtime.block_on(async {
            let sweep = spawn_sweep(&settings, &unit);
            let code = match settings.worker.mode {
                WorkerMode::Host => host::run_job(&settings, &unit, &run).await,
                WorkerMode::Podman => podman::run_job(&settings, &unit, &run).await,
            };
            if let Some(task) = sweep {
                let _ = tokio::time::timeout(SWEEP_WAIT, task).await;
            }
            code
        }),
        WorkerRequest::Cleanup(args) => runtime.block_on(cleanup_command(&settings, &args)),
    }
}

/// Cleans up after finished units of this node while this unit's job runs.
fn spawn_sweep(
    settings: &AgentSettings,
    unit: &UnitIdentity,
) -> Option<tokio::task::JoinHandle<()>> {
    let own = unit.unit_dir.clone()?;
    let node = unit.node_id.as_ref()?.to_string();
    let settings = settings.clone();
    Some(tokio::spawn(async move {
        if let Some(node_dir) = own.parent() {
            leftovers::sweep(&settings, &node, node_dir, &own).await;
        }
    }))
}

/// `worker cleanup ...`: plain text out, like ansible-runner's; a refusal exits 1 with its reason.
async fn cleanup_command(settings: &AgentSettings, args: &[String]) -> ExitCode {
    let result = match cleanup::parse(args) {
        Ok(parsed) => cleanup::run(settings, &parsed).await,
        Err(e) => Err(e),
    };
    let mut out = std::io::stdout().lock();
    match result {
        Ok(report) => {
            let _ = out.write_all(report.as_bytes());
            ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::warn!(error = %e, "refused a cleanup");
            let _ = writeln!(out, "meshrun-agent refused the cleanup: {e}");
            ExitCode::from(EXIT_AGENT_ERROR)
        }
    }
}

/// Ends an empty stream with an error status and eof.
fn fail_before_start(explanation: &str) -> ExitCode {
    let mut guard = StreamGuard::new(0);
    let ending = guard.finish(Ending::Error {
        explanation: explanation.to_string(),
        traceback: String::new(),
    });
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(&ending);
    let _ = out.flush();
    ExitCode::from(EXIT_AGENT_ERROR)
}
