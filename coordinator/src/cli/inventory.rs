//! `meshrun inventory ...`: stored inventories: list, create (from a source in a project
//! directory, or from `ansible-inventory --list` JSON), show hosts, and run an inventory update.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, anyhow, bail};
use clap::{Args, Subcommand};
use serde_json::{Value, json};

use super::client::Client;
use super::follow::{exit_for, follow, print_summary};
use super::job::upload_project;

/// `meshrun inventory` subcommands.
#[derive(Debug, Subcommand)]
pub enum InventoryCommand {
    /// List inventories.
    List {
        /// Print the API's JSON.
        #[arg(long)]
        json: bool,
    },
    /// Create an inventory.
    Create(CreateArgs),
    /// List an inventory's hosts with their variables.
    Hosts {
        /// Inventory id.
        id: i64,
        /// Print the API's JSON.
        #[arg(long)]
        json: bool,
    },
    /// Refresh an inventory from its source (an inventory update on an execution node).
    Update(UpdateArgs),
}

/// `meshrun inventory create`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Unique name.
    pub name: String,
    /// The project directory holding the source (uploaded as an archive).
    #[arg(long, requires = "source")]
    pub project_dir: Option<PathBuf>,
    /// The source inside the project: an executable inventory script or a plugin file.
    #[arg(long, requires = "project_dir")]
    pub source: Option<String>,
    /// Initial content: a file of `ansible-inventory --list` JSON.
    #[arg(long)]
    pub content: Option<PathBuf>,
    /// Description.
    #[arg(long, default_value = "")]
    pub description: String,
}

/// `meshrun inventory update`.
#[derive(Debug, Args)]
pub struct UpdateArgs {
    /// Inventory id.
    pub id: i64,
    /// Run on this execution node (default: the scheduler picks one in the group).
    #[arg(long)]
    pub node: Option<String>,
    /// Run in this instance group (default: `default`).
    #[arg(long)]
    pub group: Option<String>,
    /// Execution-environment image (default: the execution node's).
    #[arg(long)]
    pub ee: Option<String>,
    /// Follow the update live and exit with its result.
    #[arg(long)]
    pub follow: bool,
}

/// Runs an inventory subcommand.
pub async fn run(url: &str, cmd: InventoryCommand) -> anyhow::Result<ExitCode> {
    let client = Client::new(url);
    match cmd {
        InventoryCommand::List { json } => {
            let page = client.get("/api/v2/inventories/?page_size=200").await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&page)?);
                return Ok(ExitCode::SUCCESS);
            }
            println!(
                "{:>5}  {:<24}  {:>6}  {:>6}  {:>11}  source",
                "id", "name", "hosts", "groups", "last update"
            );
            for inv in page["results"].as_array().into_iter().flatten() {
                let source = match inv["source_path"].as_str() {
                    Some(p) => format!(
                        "{p} in {}",
                        inv["source_project"]
                            .as_str()
                            .map(|s| &s[..s.len().min(12)])
                            .unwrap_or("?")
                    ),
                    None => "-".into(),
                };
                println!(
                    "{:>5}  {:<24}  {:>6}  {:>6}  {:>11}  {source}",
                    inv["id"],
                    inv["name"]
                        .as_str()
                        .unwrap_or("-")
                        .chars()
                        .take(24)
                        .collect::<String>(),
                    inv["total_hosts"],
                    inv["total_groups"],
                    inv["last_update_id"]
                        .as_i64()
                        .map_or("-".into(), |u| u.to_string()),
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        InventoryCommand::Create(args) => create(&client, &args).await,
        InventoryCommand::Hosts { id, json } => {
            let mut page_no = 1;
            let mut all = Vec::new();
            loop {
                let page = client
                    .get(&format!(
                        "/api/v2/inventories/{id}/hosts/?page={page_no}&page_size=200"
                    ))
                    .await?;
                all.extend(page["results"].as_array().cloned().unwrap_or_default());
                if page["next"].is_null() {
                    break;
                }
                page_no += 1;
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&all)?);
            } else {
                for h in &all {
                    println!(
                        "{}  {}",
                        h["name"].as_str().unwrap_or("-"),
                        h["variables"].as_str().unwrap_or("{}")
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        InventoryCommand::Update(args) => update(&client, &args).await,
    }
}

async fn create(client: &Client, args: &CreateArgs) -> anyhow::Result<ExitCode> {
    let mut body = json!({ "name": args.name, "description": args.description });
    if let (Some(dir), Some(source)) = (&args.project_dir, &args.source) {
        if !dir.join(source).is_file() {
            bail!("{source} is not a file in {}", dir.display());
        }
        body["source_project"] = json!(upload_project(client, dir).await?);
        body["source_path"] = json!(source);
    }
    if let Some(file) = &args.content {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read {}", file.display()))?;
        let content: Value = serde_json::from_str(&text)
            .with_context(|| format!("{} is not JSON", file.display()))?;
        body["content"] = content;
    }
    let inv = client.post_json("/api/v2/inventories/", &body).await?;
    let id = inv["id"]
        .as_i64()
        .ok_or_else(|| anyhow!("the coordinator did not return the inventory's id"))?;
    eprintln!(
        "inventory {id} created ({} hosts)",
        inv["total_hosts"].as_i64().unwrap_or(0)
    );
    println!("{id}");
    Ok(ExitCode::SUCCESS)
}

async fn update(client: &Client, args: &UpdateArgs) -> anyhow::Result<ExitCode> {
    let t0 = Instant::now();
    let mut body = json!({});
    if let Some(n) = &args.node {
        body["execution_node"] = json!(n);
    }
    if let Some(g) = &args.group {
        body["instance_group"] = json!(g);
    }
    if let Some(image) = &args.ee {
        body["execution_environment"] = json!(image);
    }
    let job = client
        .post_json(&format!("/api/v2/inventories/{}/update/", args.id), &body)
        .await?;
    let id = job["id"]
        .as_i64()
        .ok_or_else(|| anyhow!("the coordinator did not return the update's id"))?;
    eprintln!(
        "inventory update {id} created ({})",
        job["status"].as_str().unwrap_or("?")
    );
    if !args.follow {
        println!("{id}");
        return Ok(ExitCode::SUCCESS);
    }
    let first_event = follow(client, "inventory_updates", id, t0).await?;
    let job = client
        .get(&format!("/api/v2/inventory_updates/{id}/"))
        .await?;
    print_summary(&job, first_event);
    if job["status"] == "successful" {
        let inv = client
            .get(&format!("/api/v2/inventories/{}/", args.id))
            .await?;
        eprintln!(
            "  inventory {}: {} hosts, {} groups",
            args.id, inv["total_hosts"], inv["total_groups"]
        );
    }
    Ok(exit_for(&job))
}
