//! `meshrun-coordinator`: parse the command line, set up tracing, load the config, serve; and
//! the offline `admin` commands that work on the store directly (the service need not run).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use meshrun_coordinator::config::{CoordinatorConfig, DEFAULT_CONFIG_PATH};
use meshrun_coordinator::store::{Store, TokenRole};
use tokio_util::sync::CancellationToken;

/// meshrun control-plane service.
#[derive(Debug, Parser)]
#[command(name = "meshrun-coordinator", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the service.
    Serve {
        /// Config file.
        #[arg(long, default_value = DEFAULT_CONFIG_PATH)]
        config: PathBuf,
    },
    /// Administration on the store itself (the service need not run).
    #[command(subcommand)]
    Admin(AdminCommand),
}

#[derive(Debug, Subcommand)]
enum AdminCommand {
    /// API bearer tokens.
    #[command(subcommand)]
    Token(TokenCommand),
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Make a token and print it once on stdout (only its hash is stored).
    Create {
        /// Config file.
        #[arg(long, default_value = DEFAULT_CONFIG_PATH)]
        config: PathBuf,
        /// admin (everything) or read-only (GET and HEAD).
        #[arg(long, default_value = "admin", value_parser = parse_role)]
        role: TokenRole,
        /// A label shown by `list` and in the coordinator's log.
        #[arg(long, default_value = "")]
        name: String,
        /// Free text.
        #[arg(long, default_value = "")]
        description: String,
    },
    /// The tokens (never their secrets).
    List {
        /// Config file.
        #[arg(long, default_value = DEFAULT_CONFIG_PATH)]
        config: PathBuf,
    },
    /// Refuse a token from now on.
    Revoke {
        /// Config file.
        #[arg(long, default_value = DEFAULT_CONFIG_PATH)]
        config: PathBuf,
        /// The token's id (see `list`).
        id: i64,
    },
}

fn parse_role(s: &str) -> Result<TokenRole, String> {
    s.parse()
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("MESHRUN_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let config = match cli.command {
        Command::Serve { config } => config,
        Command::Admin(AdminCommand::Token(cmd)) => return admin_token(cmd),
    };
    let config = match CoordinatorConfig::load(&config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("meshrun-coordinator: {e}");
            return ExitCode::from(64);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("meshrun-coordinator: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let shutdown = CancellationToken::new();
    let result = runtime.block_on(async {
        let stop = shutdown.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("shutting down");
            stop.cancel();
        });
        meshrun_coordinator::server::run(config, shutdown).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("meshrun-coordinator: {e}");
            ExitCode::FAILURE
        }
    }
}

fn admin_token(cmd: TokenCommand) -> ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("meshrun-coordinator: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(admin_token_async(cmd)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("meshrun-coordinator: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn open_store(config: &std::path::Path) -> anyhow::Result<Store> {
    let config = CoordinatorConfig::load(config)?;
    if let Some(parent) = config.database.parent() {
        std::fs::create_dir_all(parent)?;
    }
    Ok(Store::open(&config.database).await?)
}

async fn admin_token_async(cmd: TokenCommand) -> anyhow::Result<()> {
    match cmd {
        TokenCommand::Create {
            config,
            role,
            name,
            description,
        } => {
            let store = open_store(&config).await?;
            let (made, secret) = store.create_api_token(role, &name, &description).await?;
            store.close().await;
            eprintln!(
                "token {} ({}, role {}) made; it is shown only now:",
                made.id, made.name, made.role
            );
            println!("{secret}");
        }
        TokenCommand::List { config } => {
            let store = open_store(&config).await?;
            let tokens = store.list_api_tokens().await?;
            store.close().await;
            println!(
                "{:<5} {:<10} {:<8} {:<20} {:<28} LAST USED",
                "ID", "ROLE", "REVOKED", "NAME", "CREATED"
            );
            for t in tokens {
                println!(
                    "{:<5} {:<10} {:<8} {:<20} {:<28} {}",
                    t.id,
                    t.role,
                    if t.revoked { "yes" } else { "no" },
                    t.name,
                    t.created,
                    t.last_used.as_deref().unwrap_or("never")
                );
            }
        }
        TokenCommand::Revoke { config, id } => {
            let store = open_store(&config).await?;
            let done = store.revoke_api_token(id).await?;
            store.close().await;
            if !done {
                anyhow::bail!("no token with id {id}");
            }
            eprintln!("token {id} revoked");
        }
    }
    Ok(())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) {
        (Ok(mut int), Ok(mut term)) => {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
        }
        _ => std::future::pending().await,
    }
}
