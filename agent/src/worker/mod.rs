//! The work-command: `meshrun-agent worker [ansible-runner worker args]`.
//!
//! receptor runs it once per unit with the unit's payload on stdin and both stdout and stderr
//! going into the unit's output file. So the agent writes the job stream (and only it) to
//! stdout, nothing at all to stderr, and always ends the stream well-formed: every failure of
//! its own, or of the worker, becomes an `error` status followed by `{"eof": true}`.

mod host;
pub mod params;
pub mod stream_guard;
pub mod unit;

use std::io::Write;
use std::process::ExitCode;

use crate::logging;
use crate::settings::{AgentSettings, SettingsError};
use params::WorkerRequest;
use stream_guard::{Ending, StreamGuard};
use unit::UnitIdentity;

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
        WorkerRequest::WorkerInfo => runtime.block_on(host::worker_info(&settings)),
        WorkerRequest::Run(run) => runtime.block_on(host::run_job(&settings, &unit, &run)),
        WorkerRequest::Cleanup(_) => fail_before_start(
            "meshrun-agent does not offer `worker cleanup` yet: leftover cleanup is not implemented",
        ),
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
