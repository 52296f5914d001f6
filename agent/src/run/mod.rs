//! `meshrun-agent run`: the node's long-running service. It writes the node's receptor.conf from
//! agent.toml (keeping an operator's own entries), runs receptor and keeps it running, and on
//! SIGHUP applies a changed agent.toml with a `reload` when only links changed, else a restart.
//! SIGTERM or SIGINT stop receptor (its PID only: running jobs live on) and end `run` with 0.
//!
//! # Layout
//! - [`plan`]: agent.toml → the agent's receptor.conf entries and receptor's paths.
//! - [`conf_file`]: which entries the agent owns, the merge, the atomic write.
//! - [`change`]: nothing, reload or restart, for a config change.
//! - [`control`]: the `reload` command over the control socket.
//! - [`renew`]: renewing the node's certificate before it expires.
//! - [`supervisor`]: the receptor process, its restarts and its stop.

pub mod change;
pub mod conf_file;
pub mod control;
pub mod plan;
pub mod renew;
pub mod supervisor;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;

use crate::cli::EXIT_USAGE;
use crate::logging;
use crate::settings::DEFAULT_CONFIG_PATH;
use plan::RunPlan;
use supervisor::{Control, StartError, Supervisor};

/// Exit code when `run` fails after its configuration was accepted.
pub const EXIT_FAILURE: u8 = 1;

/// Why `run` ended with an error.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// agent.toml cannot drive `run`.
    #[error(transparent)]
    Plan(Box<plan::PlanError>),
    /// receptor could not be started the first time.
    #[error(transparent)]
    Start(Box<StartError>),
    /// The process's own set-up failed.
    #[error("{what}: {source}")]
    Setup {
        /// What was being set up.
        what: &'static str,
        /// The I/O error.
        source: std::io::Error,
    },
}

impl From<plan::PlanError> for RunError {
    fn from(e: plan::PlanError) -> Self {
        RunError::Plan(Box::new(e))
    }
}

impl From<StartError> for RunError {
    fn from(e: StartError) -> Self {
        RunError::Start(Box::new(e))
    }
}

impl RunError {
    /// 64 for what the operator must fix in a config file, 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        use conf_file::ConfFileError::{Conflict, Unparseable};
        match self {
            RunError::Plan(_) => EXIT_USAGE,
            RunError::Start(e) => match e.as_ref() {
                StartError::Conf(Unparseable { .. } | Conflict { .. }) => EXIT_USAGE,
                _ => EXIT_FAILURE,
            },
            RunError::Setup { .. } => EXIT_FAILURE,
        }
    }
}

/// Runs `meshrun-agent run` with the agent config at `config` (default
/// [`DEFAULT_CONFIG_PATH`]) until SIGTERM or SIGINT.
pub fn main(config: Option<&Path>) -> ExitCode {
    logging::init_stderr();
    match run_until_signalled(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("meshrun-agent run: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

fn run_until_signalled(config: Option<&Path>) -> Result<(), RunError> {
    let agent_config = std::path::absolute(config.unwrap_or(Path::new(DEFAULT_CONFIG_PATH)))
        .map_err(|source| RunError::Setup {
            what: "cannot make the agent config path absolute",
            source,
        })?;
    let worker_command = this_executable()?;
    let plan = RunPlan::load(&agent_config, &worker_command)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|source| RunError::Setup {
            what: "cannot start the async runtime",
            source,
        })?;
    runtime.block_on(async move {
        let (control_tx, control) = forward_signals()?;
        tokio::spawn(renew::renew_loop(agent_config.clone(), control_tx));
        let reload_from = agent_config.clone();
        let supervisor = Supervisor::new(plan, move || {
            RunPlan::load(&reload_from, &worker_command).map_err(|e| e.to_string())
        });
        tracing::info!(config = %agent_config.display(), "meshrun-agent run started");
        supervisor.run(control).await?;
        tracing::info!("meshrun-agent run stopped");
        Ok(())
    })
}

/// The meshrun-agent executable receptor runs for work, fixed at start: after a package
/// upgrade replaced the file, `/proc/self/exe` names the old, deleted one.
fn this_executable() -> Result<PathBuf, RunError> {
    let exe = std::env::current_exe().map_err(|source| RunError::Setup {
        what: "cannot find this executable's path",
        source,
    })?;
    let text = exe.to_string_lossy();
    Ok(match text.strip_suffix(" (deleted)") {
        Some(path) => PathBuf::from(path),
        None => exe,
    })
}

/// SIGHUP becomes [`Control::Reconfigure`]; SIGTERM and SIGINT become [`Control::Stop`].
/// The handlers are installed before receptor starts, so no signal is missed.
fn forward_signals() -> Result<(mpsc::Sender<Control>, mpsc::Receiver<Control>), RunError> {
    let setup = |source| RunError::Setup {
        what: "cannot install signal handlers",
        source,
    };
    let mut hup = signal(SignalKind::hangup()).map_err(setup)?;
    let mut term = signal(SignalKind::terminate()).map_err(setup)?;
    let mut int = signal(SignalKind::interrupt()).map_err(setup)?;
    let (tx, rx) = mpsc::channel(16);
    let ours = tx.clone();
    tokio::spawn(async move {
        loop {
            let request = tokio::select! {
                _ = hup.recv() => Control::Reconfigure,
                _ = term.recv() => Control::Stop,
                _ = int.recv() => Control::Stop,
            };
            tracing::info!(?request, "signal received");
            if tx.send(request).await.is_err() {
                return;
            }
        }
    });
    Ok((ours, rx))
}
