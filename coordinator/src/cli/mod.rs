//! The `meshrun` command line: jobs through the coordinator's API, and the offline
//! `transmit`/`process` pair that stands in for `ansible-runner transmit|process`.

mod client;
mod codec;
mod job;
mod sse;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Exit code for a usage error.
pub const EXIT_USAGE: u8 = 64;

/// meshrun: run Ansible across a Receptor mesh.
#[derive(Debug, Parser)]
#[command(name = "meshrun", version, about)]
pub struct Cli {
    /// The coordinator's API.
    #[arg(
        long,
        env = "MESHRUN_URL",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    pub url: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Jobs: run one, show one, print its output.
    #[command(subcommand)]
    Job(job::JobCommand),
    /// Write the controller→worker stream for a private data dir to stdout
    /// (like `ansible-runner transmit`).
    Transmit(codec::TransmitArgs),
    /// Read a worker's output stream on stdin and write `<dir>/artifacts/`
    /// (like `ansible-runner process`).
    Process(codec::ProcessArgs),
}

/// Runs the CLI.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Transmit(args) => codec::transmit(&args),
        Command::Process(args) => codec::process(&args),
        Command::Job(cmd) => match tokio::runtime::Runtime::new() {
            Ok(rt) => rt.block_on(job::run(&cli.url, cmd)),
            Err(e) => Err(anyhow::anyhow!("cannot start the runtime: {e}")),
        },
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("meshrun: {e:#}");
            ExitCode::FAILURE
        }
    }
}
