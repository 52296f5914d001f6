//! The `meshrun` command line: jobs, ad hoc commands, instances and the mesh through the
//! coordinator's API, and the offline `transmit`/`process` pair that stands in for
//! `ansible-runner transmit|process`.

mod adhoc;
mod cancel;
mod client;
mod codec;
mod follow;
mod instances;
mod inventory;
mod job;
mod mesh;
mod project;
mod remove_node;
pub mod sse;
mod token;
mod unified;

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
        default_value = "https://127.0.0.1:8080",
        global = true
    )]
    pub url: String,
    /// The API bearer token (make one with `meshrun-coordinator admin token create`).
    #[arg(long, env = "MESHRUN_TOKEN", global = true, hide_env_values = true)]
    pub token: Option<String>,
    /// The mesh CA certificate the API's HTTPS certificate is checked against (the coordinator's
    /// `<data_dir>/pki/ca.crt`; default: /var/lib/meshrun/coordinator/pki/ca.crt if present).
    #[arg(long, env = "MESHRUN_CA_CERT", global = true)]
    pub ca_cert: Option<std::path::PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Jobs: run one, show one, print its output.
    #[command(subcommand)]
    Job(job::JobCommand),
    /// Stored inventories: list, create, hosts, update from their source.
    #[command(subcommand)]
    Inventory(inventory::InventoryCommand),
    /// Run one module against a host pattern (an ad hoc command), e.g.
    /// `meshrun adhoc all -i hosts.ini -m ping`.
    Adhoc(adhoc::AdHocArgs),
    /// Git projects: create, list, update.
    #[command(subcommand)]
    Project(project::ProjectCommand),
    /// Every kind of job (playbook jobs, ad hoc commands, inventory and project updates).
    Jobs(unified::JobsArgs),
    /// The mesh's nodes as a table; `instances health-check NODE` checks one now.
    Instances(instances::InstancesArgs),
    /// The mesh as a tree from the coordinator's control node.
    Mesh(mesh::MeshArgs),
    /// Join tokens for new nodes: create (prints only the token), list, revoke.
    #[command(subcommand)]
    Token(token::TokenCommand),
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
    client::set_token(cli.token.clone());
    if let Err(e) = client::set_ca_cert(cli.ca_cert.as_deref()) {
        eprintln!("error: {e:#}");
        return ExitCode::from(EXIT_USAGE);
    }
    let result = match cli.command {
        Command::Transmit(args) => codec::transmit(&args),
        Command::Process(args) => codec::process(&args),
        Command::Job(cmd) => block_on(job::run(&cli.url, cmd)),
        Command::Inventory(cmd) => block_on(inventory::run(&cli.url, cmd)),
        Command::Adhoc(args) => block_on(adhoc::run(&cli.url, args)),
        Command::Project(cmd) => block_on(project::run(&cli.url, cmd)),
        Command::Jobs(args) => block_on(unified::run(&cli.url, args)),
        Command::Instances(args) => block_on(instances::run(&cli.url, args)),
        Command::Mesh(args) => block_on(mesh::run(&cli.url, args)),
        Command::Token(cmd) => block_on(token::run(&cli.url, cmd)),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("meshrun: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn block_on<F: std::future::Future<Output = anyhow::Result<ExitCode>>>(
    f: F,
) -> anyhow::Result<ExitCode> {
    match tokio::runtime::Runtime::new() {
        Ok(rt) => rt.block_on(f),
        Err(e) => Err(anyhow::anyhow!("cannot start the runtime: {e}")),
    }
}
