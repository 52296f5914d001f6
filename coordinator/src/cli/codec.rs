//! `meshrun transmit` and `meshrun process`: drop-ins for `ansible-runner transmit|process`.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Args;
use meshrun_shared::runner_stream::archive::ExtractLimits;
use meshrun_shared::runner_stream::decode::{DecoderLimits, Frame};
use meshrun_shared::runner_stream::{RunnerKwargs, process_stream, write_transmit_stream};
use serde_json::Value;

/// `meshrun transmit`.
#[derive(Debug, Args)]
pub struct TransmitArgs {
    /// The private data dir (project/, inventory/, env/).
    pub private_data_dir: PathBuf,
    /// The playbook, relative to `<dir>/project`.
    #[arg(short = 'p', long)]
    pub playbook: String,
    /// Inventory path, relative to the private data dir.
    #[arg(short = 'i', long)]
    pub inventory: Option<String>,
    /// The run's ident (default: a new uuid).
    #[arg(long)]
    pub ident: Option<String>,
    /// Limit the hosts.
    #[arg(long)]
    pub limit: Option<String>,
    /// Forks.
    #[arg(long)]
    pub forks: Option<u32>,
    /// Verbosity (-v, -vv, ...).
    #[arg(short = 'v', action = clap::ArgAction::Count)]
    pub verbose: u8,
}

/// `meshrun process`.
#[derive(Debug, Args)]
pub struct ProcessArgs {
    /// Where `artifacts/` is written.
    pub dir: PathBuf,
}

/// Writes the stream to stdout.
pub fn transmit(args: &TransmitArgs) -> anyhow::Result<ExitCode> {
    if !args
        .private_data_dir
        .join("project")
        .join(&args.playbook)
        .is_file()
    {
        bail!(
            "playbook {} not found in {}",
            args.playbook,
            args.private_data_dir.join("project").display()
        );
    }
    let ident = args
        .ident
        .clone()
        .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
    let kwargs = RunnerKwargs {
        playbook: Some(args.playbook.clone()),
        inventory: args.inventory.clone(),
        limit: args.limit.clone(),
        forks: args.forks,
        verbosity: (args.verbose > 0).then_some(args.verbose),
        ..RunnerKwargs::new(ident)
    }
    .to_map();
    let stdout = std::io::stdout().lock();
    let mut out = std::io::BufWriter::new(stdout);
    write_transmit_stream(&mut out, &kwargs, Some(&args.private_data_dir), None)
        .context("cannot write the transmit stream")?;
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// Reads a worker stream on stdin, replays its stdout and writes the artifacts.
pub fn process(args: &ProcessArgs) -> anyhow::Result<ExitCode> {
    let artifacts = args.dir.join("artifacts");
    let stdin = std::io::stdin().lock();
    // Block-buffered, as Python's print to a pipe or file is: stdout itself flushes every line.
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, std::io::stdout().lock());
    let outcome = process_stream(
        stdin,
        &artifacts,
        &DecoderLimits::default(),
        &ExtractLimits::default(),
        |frame: &Frame| {
            if let Frame::Event(e) = frame
                && let Some(text) = e.get("stdout").and_then(Value::as_str)
                && !text.is_empty()
            {
                let _ = writeln!(out, "{text}");
            }
        },
    )
    .context("the worker stream is not valid")?;
    out.flush()?;
    eprintln!(
        "status: {}, rc: {}, events: {}",
        outcome.status.as_deref().unwrap_or("-"),
        outcome
            .rc
            .map(|r| r.to_string())
            .unwrap_or_else(|| "-".into()),
        outcome.events
    );
    Ok(ExitCode::SUCCESS)
}
