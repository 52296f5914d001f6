//! `meshrun project ...`: git projects and their updates through the coordinator's API.

use std::process::ExitCode;
use std::time::Instant;

use anyhow::anyhow;
use clap::Subcommand;
use serde_json::{Value, json};

use super::client::Client;
use super::follow::{exit_for, follow, print_summary};

/// `meshrun project` subcommands.
#[derive(Debug, Subcommand)]
pub enum ProjectCommand {
    /// Store a git project.
    Create {
        /// Its unique name.
        name: String,
        /// The repository (https://, ssh://, user@host:path, or file:// where allowed).
        #[arg(long)]
        git: String,
        /// Branch, tag or commit (default: the remote's HEAD).
        #[arg(long)]
        branch: Option<String>,
        /// Seconds a stored revision stays fresh for jobs (default 0: update before each job).
        #[arg(long)]
        cache_timeout: Option<i64>,
    },
    /// List projects.
    List {
        /// Print the API's JSON.
        #[arg(long)]
        json: bool,
    },
    /// Start a project update (or show the one already running).
    Update {
        /// Project id.
        id: i64,
        /// Follow the update's output and exit with its result.
        #[arg(long)]
        follow: bool,
    },
}

/// Runs a project subcommand.
pub async fn run(url: &str, cmd: ProjectCommand) -> anyhow::Result<ExitCode> {
    let client = Client::new(url);
    match cmd {
        ProjectCommand::Create {
            name,
            git,
            branch,
            cache_timeout,
        } => {
            let mut body = json!({ "name": name, "scm_type": "git", "scm_url": git });
            if let Some(b) = branch {
                body["scm_branch"] = json!(b);
            }
            if let Some(t) = cache_timeout {
                body["update_cache_timeout"] = json!(t);
            }
            let p = client.post_json("/api/v2/projects/", &body).await?;
            println!("{}", p["id"]);
            Ok(ExitCode::SUCCESS)
        }
        ProjectCommand::List { json } => {
            let page = client.get("/api/v2/projects/?page_size=200").await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&page)?);
                return Ok(ExitCode::SUCCESS);
            }
            println!(
                "{:>5}  {:<20}  {:<7}  {:<12}  {:<40}  url",
                "id", "name", "type", "revision", "last updated"
            );
            for p in page["results"].as_array().into_iter().flatten() {
                let s = |k: &str| p[k].as_str().unwrap_or("").to_string();
                let revision: String = s("scm_revision").chars().take(12).collect();
                println!(
                    "{:>5}  {:<20}  {:<7}  {:<12}  {:<40}  {}",
                    p["id"],
                    s("name").chars().take(20).collect::<String>(),
                    s("scm_type"),
                    if revision.is_empty() {
                        "-".into()
                    } else {
                        revision
                    },
                    p["last_updated"].as_str().unwrap_or("never"),
                    s("scm_url"),
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        ProjectCommand::Update { id, follow: live } => {
            let t0 = Instant::now();
            let update = client
                .post_json(&format!("/api/v2/projects/{id}/update/"), &json!({}))
                .await?;
            let uid = update
                .get("id")
                .and_then(Value::as_i64)
                .ok_or_else(|| anyhow!("the coordinator did not return the update's id"))?;
            eprintln!(
                "project update {uid} ({})",
                update["status"].as_str().unwrap_or("?")
            );
            if !live {
                println!("{uid}");
                return Ok(ExitCode::SUCCESS);
            }
            let first = follow(&client, "project_updates", uid, t0).await?;
            let job = client
                .get(&format!("/api/v2/project_updates/{uid}/"))
                .await?;
            print_summary(&job, first);
            Ok(exit_for(&job))
        }
    }
}
