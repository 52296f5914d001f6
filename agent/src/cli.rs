//! The command line of `meshrun-agent` and the mapping of failures to exit codes.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::config_cmd::{self, ConfigArgs};
use crate::settings::AgentSettings;
use crate::{join, logging, run, worker};

/// Exit code for a usage or configuration error (sysexits' EX_USAGE).
pub const EXIT_USAGE: u8 = 64;

/// meshrun node agent.
#[derive(Debug, Parser)]
#[command(name = "meshrun-agent", version, about)]
pub struct Cli {
    /// The agent's config file (default /etc/meshrun/agent.toml, optional there).
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print receptor.conf for a node of the given type.
    Config(Box<ConfigArgs>),
    /// Join the mesh with a join token: make a key, get a certificate, write agent.toml.
    Join(Box<join::JoinArgs>),
    /// Write receptor.conf from the agent config and run receptor (the node's service).
    Run,
    /// The receptor work-command: run one unit's job (reads the stream on stdin).
    Worker(WorkerArgs),
}

/// `worker` takes ansible-runner's worker arguments verbatim; the worker itself checks them,
/// so that even a bad one is reported inside the unit's output stream.
#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// ansible-runner worker arguments (`--private-data-dir=DIR --delete`, `--worker-info`, ...).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<String>,
}

/// Runs the agent; the binary's `main` is only this.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // Worker mode must never write to stderr; clap only fails before we know the mode
            // when the command line itself is broken, which is an operator's error at set-up.
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(EXIT_USAGE)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    match cli.command {
        Command::Config(args) => {
            logging::init_stderr();
            match config_cmd::run(&args) {
                Ok(text) => {
                    print!("{text}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("meshrun-agent config: {e:#}");
                    ExitCode::from(EXIT_USAGE)
                }
            }
        }
        Command::Join(args) => join::main(&args),
        Command::Run => run::main(cli.config.as_deref()),
        Command::Worker(args) => {
            let settings = AgentSettings::load(cli.config.as_deref());
            worker::main(settings, args.args)
        }
    }
}
