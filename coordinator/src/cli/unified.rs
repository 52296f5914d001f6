//! `meshrun jobs`: every kind of work (playbook jobs, ad hoc commands, inventory and project
//! updates) in one table, newest first; `meshrun jobs cancel ID` cancels one of any kind.

use std::process::ExitCode;

use clap::{Args, Subcommand};

use super::client::Client;

/// `meshrun jobs` options.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct JobsArgs {
    #[command(subcommand)]
    action: Option<JobsAction>,
    /// Only this status.
    #[arg(long)]
    status: Option<String>,
    /// Only this type: job, ad_hoc_command, inventory_update or project_update.
    #[arg(long = "type")]
    kind: Option<String>,
    /// How many to show.
    #[arg(long, default_value_t = 20)]
    limit: u32,
    /// Print the API's page as JSON.
    #[arg(long)]
    json: bool,
}

/// What `meshrun jobs` does besides listing.
#[derive(Debug, Subcommand)]
enum JobsAction {
    /// Cancel a job of any kind, found by its id.
    Cancel {
        /// Job id.
        id: i64,
        /// Wait until the job has ended (up to this many seconds); exit 0 only if `canceled`.
        #[arg(long, value_name = "SECS", num_args = 0..=1, default_missing_value = "60")]
        wait: Option<u64>,
    },
}

/// Lists unified jobs (or cancels one).
pub async fn run(url: &str, args: JobsArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(url);
    if let Some(JobsAction::Cancel { id, wait }) = args.action {
        let collection = super::cancel::collection_of(&client, id).await?;
        let wait = wait.map(std::time::Duration::from_secs);
        return super::cancel::cancel(&client, collection, id, wait).await;
    }
    let mut path = format!(
        "/api/v2/unified_jobs/?page_size={}",
        args.limit.clamp(1, 200)
    );
    for (k, v) in [("status", &args.status), ("type", &args.kind)] {
        if let Some(v) = v {
            path.push_str(&format!("&{k}={}", crate::url_query::encode_value(v)));
        }
    }
    let page = client.get(&path).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&page)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{:>6}  {:<16}  {:<10}  {:<24}  {:<12}  {:<12}  {:>8}",
        "id", "type", "status", "name", "controller", "node", "elapsed"
    );
    for j in page["results"].as_array().into_iter().flatten() {
        let s = |k: &str| j[k].as_str().unwrap_or("-").to_string();
        println!(
            "{:>6}  {:<16}  {:<10}  {:<24}  {:<12}  {:<12}  {:>7.1}s",
            j["id"],
            s("type"),
            s("status"),
            s("name").chars().take(24).collect::<String>(),
            s("controller_node"),
            s("execution_node"),
            j["elapsed"].as_f64().unwrap_or(0.0),
        );
    }
    Ok(ExitCode::SUCCESS)
}
