//! The command line of `meshrun-coordinator` (the service and its offline `admin` commands).
//! It lives in the library so that packaging can render man pages and shell completions from
//! the same definitions the binary parses.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::DEFAULT_CONFIG_PATH;
use crate::store::TokenRole;

/// meshrun control-plane service.
#[derive(Debug, Parser)]
#[command(name = "meshrun-coordinator", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
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

/// `admin` subcommands.
#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// API bearer tokens.
    #[command(subcommand)]
    Token(TokenCommand),
}

/// `admin token` subcommands.
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
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
