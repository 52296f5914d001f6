//! `meshrun-coordinator`: parse the command line, set up tracing, load the config, serve; and
//! the offline `admin` commands that work on the store and the mesh CA directly (the service
//! need not run).

use std::process::ExitCode;

use clap::Parser;
use meshrun_coordinator::config::CoordinatorConfig;
use meshrun_coordinator::pki::{self, admin::CertIssueRequest};
use meshrun_coordinator::service_cli::{AdminCommand, CertCommand, Cli, Command, TokenCommand};
use meshrun_coordinator::store::Store;
use tokio_util::sync::CancellationToken;

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
        Command::Admin(AdminCommand::Cert(cmd)) => return admin_cert(cmd),
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

fn admin_cert(cmd: CertCommand) -> ExitCode {
    let CertCommand::Issue {
        config,
        node_id,
        dns,
        ip,
        days,
        out,
    } = cmd;
    let result = CoordinatorConfig::load(&config)
        .map_err(anyhow::Error::from)
        .and_then(|config| {
            let req = CertIssueRequest {
                node_id,
                dns_names: dns,
                ip_addresses: ip,
                days,
                out_dir: out,
            };
            Ok(pki::admin::issue(&config, &req)?)
        });
    match result {
        Ok(done) => {
            if done.ca_created {
                eprintln!("created the mesh CA (fingerprint {})", done.ca_fingerprint);
            }
            eprintln!(
                "issued certificate {} (expires {}); wrote {}, {} and {}",
                done.issued.serial,
                done.issued.not_after.to_rfc3339(),
                done.ca_cert.display(),
                done.cert.display(),
                done.key.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("meshrun-coordinator: {e:#}");
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
