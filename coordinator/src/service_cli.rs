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
    /// Node certificates from the mesh CA (for hand-configured nodes).
    #[command(subcommand)]
    Cert(CertCommand),
}

/// `admin cert` subcommands.
#[derive(Debug, Subcommand)]
pub enum CertCommand {
    /// Issue a certificate and key for a node: writes DIR/ca.crt, DIR/<id>.crt and DIR/<id>.key
    /// (0600). The mesh CA is created as on a first start when it does not exist yet.
    Issue {
        /// Config file (names the PKI directory).
        #[arg(long, default_value = DEFAULT_CONFIG_PATH)]
        config: PathBuf,
        /// The node id the certificate is bound to.
        #[arg(long)]
        node_id: String,
        /// A DNS name the node is dialled at; repeatable.
        #[arg(long = "dns")]
        dns: Vec<String>,
        /// An IP address the node is dialled at; repeatable.
        #[arg(long = "ip")]
        ip: Vec<std::net::IpAddr>,
        /// Days of validity (default: the config's pki.node_cert_days, else 7).
        #[arg(long)]
        days: Option<u32>,
        /// Folder for the files (made when missing).
        #[arg(long)]
        out: PathBuf,
    },
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
