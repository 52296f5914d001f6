//! `meshrun job ...`: run a playbook through the coordinator and follow it live.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use clap::{Args, Subcommand};
use serde_json::{Map, Value, json};

use super::client::Client;
use super::follow::{exit_for, follow, print_summary};

/// `meshrun job` subcommands.
#[derive(Debug, Subcommand)]
pub enum JobCommand {
    /// Run a playbook from a project directory (`run DIR PLAYBOOK`) or from a stored project
    /// (`run --project-id N PLAYBOOK`).
    Run(Box<RunArgs>),
    /// Show a job.
    Show {
        /// Job id.
        id: i64,
        /// Print the job as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print a job's output.
    Stdout {
        /// Job id.
        id: i64,
    },
    /// Cancel a job (a pending one ends at once; a running one once its unit has stopped).
    Cancel {
        /// Job id.
        id: i64,
        /// Wait until the job has ended (up to this many seconds); exit 0 only if `canceled`.
        #[arg(long, value_name = "SECS", num_args = 0..=1, default_missing_value = "60")]
        wait: Option<u64>,
    },
    /// Follow a job's live output until it ends.
    Follow {
        /// Job id.
        id: i64,
    },
    /// List jobs, newest first.
    List {
        /// Only jobs with this status.
        #[arg(long)]
        status: Option<String>,
        /// How many.
        #[arg(long, default_value_t = 25)]
        limit: u32,
        /// Print the API's JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `meshrun job run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The project directory (uploaded as an archive); left out with --project-id.
    #[arg(value_name = "PROJECT_DIR")]
    pub project_dir: Option<PathBuf>,
    /// The playbook, relative to the project.
    #[arg(value_name = "PLAYBOOK")]
    pub playbook: Option<String>,
    /// Run from this stored project (`meshrun project list`); a git project's stale revision
    /// is updated first.
    #[arg(long)]
    pub project_id: Option<i64>,
    /// Inventory file (INI or YAML).
    #[arg(
        short = 'i',
        long,
        required_unless_present = "inventory_id",
        conflicts_with = "inventory_id"
    )]
    pub inventory: Option<PathBuf>,
    /// A stored inventory (`meshrun inventory list`) instead of a file.
    #[arg(long)]
    pub inventory_id: Option<i64>,
    /// Run on this execution node (default: the scheduler picks one in the group).
    #[arg(long)]
    pub node: Option<String>,
    /// Run in this instance group (default: `default`).
    #[arg(long)]
    pub group: Option<String>,
    /// Execution-environment image (default: the execution node's).
    #[arg(long)]
    pub ee: Option<String>,
    /// Extra vars: KEY=VALUE, a JSON object, or @FILE with a JSON object; repeatable.
    #[arg(short = 'e', long = "extra-vars")]
    pub extra_vars: Vec<String>,
    /// Limit the hosts.
    #[arg(long)]
    pub limit: Option<String>,
    /// Forks.
    #[arg(long)]
    pub forks: Option<i64>,
    /// Verbosity (-v, -vv, ...).
    #[arg(short = 'v', action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Follow the job's output live and exit with its result.
    #[arg(long)]
    pub follow: bool,
}

/// Runs a job subcommand.
pub async fn run(url: &str, cmd: JobCommand) -> anyhow::Result<ExitCode> {
    let client = Client::new(url);
    match cmd {
        JobCommand::Run(args) => run_job(&client, &args).await,
        JobCommand::Show { id, json } => {
            let job = client.get(&format!("/api/v2/jobs/{id}/")).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&job)?);
            } else {
                print_summary(&job, None);
            }
            Ok(exit_for(&job))
        }
        JobCommand::Stdout { id } => {
            print!(
                "{}",
                client
                    .get_text(&format!("/api/v2/jobs/{id}/stdout/?format=txt"))
                    .await?
            );
            Ok(ExitCode::SUCCESS)
        }
        JobCommand::List {
            status,
            limit,
            json,
        } => {
            let mut path = format!("/api/v2/jobs/?page_size={}", limit.clamp(1, 200));
            if let Some(s) = status {
                path.push_str(&format!("&status={s}"));
            }
            let page = client.get(&path).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&page)?);
                return Ok(ExitCode::SUCCESS);
            }
            println!(
                "{:>6}  {:<10}  {:<24}  {:<12}  {:<12}  {:>8}  explanation",
                "id", "status", "name", "node", "group", "elapsed"
            );
            for j in page["results"].as_array().into_iter().flatten() {
                let s = |k: &str| j[k].as_str().unwrap_or("-").to_string();
                let mut explanation = s("job_explanation");
                explanation.truncate(60);
                println!(
                    "{:>6}  {:<10}  {:<24}  {:<12}  {:<12}  {:>7.1}s  {}",
                    j["id"],
                    s("status"),
                    s("name").chars().take(24).collect::<String>(),
                    s("execution_node"),
                    s("instance_group"),
                    j["elapsed"].as_f64().unwrap_or(0.0),
                    explanation
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        JobCommand::Cancel { id, wait } => {
            super::cancel::cancel(&client, "jobs", id, wait.map(Duration::from_secs)).await
        }
        JobCommand::Follow { id } => {
            let first = follow(&client, "jobs", id, Instant::now()).await?;
            let job = client.get(&format!("/api/v2/jobs/{id}/")).await?;
            print_summary(&job, first);
            Ok(exit_for(&job))
        }
    }
}

/// Extra vars given as `KEY=VALUE`, a JSON object, or `@FILE`, merged in order.
pub(super) fn parse_extra_vars(items: &[String]) -> anyhow::Result<Map<String, Value>> {
    let mut vars = Map::new();
    for item in items {
        let parsed: Value = if let Some(file) = item.strip_prefix('@') {
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("cannot read extra vars file {file}"))?;
            serde_json::from_str(&text)
                .with_context(|| format!("extra vars file {file} is not JSON"))?
        } else if item.trim_start().starts_with('{') {
            serde_json::from_str(item)
                .with_context(|| format!("extra vars {item:?} are not a JSON object"))?
        } else if let Some((k, v)) = item.split_once('=') {
            json!({ k: v })
        } else {
            bail!("extra vars {item:?}: expected KEY=VALUE, a JSON object or @FILE");
        };
        match parsed {
            Value::Object(m) => vars.extend(m),
            _ => bail!("extra vars {item:?} must be a JSON object"),
        }
    }
    Ok(vars)
}

fn pack_project(dir: &Path) -> anyhow::Result<Vec<u8>> {
    if !dir.is_dir() {
        bail!("project directory {} does not exist", dir.display());
    }
    crate::project_archive::pack(dir, Vec::new(), crate::project_archive::DEFAULT_LEVEL)
        .with_context(|| format!("cannot pack project directory {}", dir.display()))
}

/// Packs and uploads a project directory; returns the stored archive's sha256.
pub(super) async fn upload_project(client: &Client, dir: &Path) -> anyhow::Result<String> {
    let dir = dir.to_path_buf();
    let archive = tokio::task::spawn_blocking(move || pack_project(&dir)).await??;
    let stored = client
        .post_bytes("/api/v2/project_archives/", "application/zstd", archive)
        .await?;
    stored
        .get("sha256")
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| anyhow!("the coordinator did not return the archive's sha256"))
}

/// Where the job's project comes from.
#[derive(Debug, PartialEq)]
enum Source {
    /// A directory to upload.
    Dir(PathBuf),
    /// A stored project.
    Stored(i64),
}

/// The project and playbook of `run`: `DIR PLAYBOOK`, or `--project-id N PLAYBOOK` (clap then
/// puts the playbook in the first positional).
fn source_and_playbook(args: &RunArgs) -> anyhow::Result<(Source, String)> {
    match (args.project_id, &args.project_dir, &args.playbook) {
        (None, Some(dir), Some(playbook)) => Ok((Source::Dir(dir.clone()), playbook.clone())),
        (Some(id), Some(playbook), None) => {
            Ok((Source::Stored(id), playbook.to_string_lossy().into_owned()))
        }
        (Some(_), _, _) => bail!("with --project-id give only the playbook"),
        _ => bail!("give a project directory and a playbook, or --project-id N and a playbook"),
    }
}

async fn run_job(client: &Client, args: &RunArgs) -> anyhow::Result<ExitCode> {
    let t0 = Instant::now();
    let (source, playbook) = source_and_playbook(args)?;
    let extra_vars = parse_extra_vars(&args.extra_vars)?;
    let mut body = json!({
        "playbook": playbook,
        "extra_vars": extra_vars,
    });
    match source {
        Source::Stored(id) => body["project_id"] = json!(id),
        Source::Dir(dir) => body["project"] = json!(upload_project(client, &dir).await?),
    }
    match (&args.inventory, args.inventory_id) {
        (Some(file), _) => {
            let inventory = std::fs::read_to_string(file)
                .with_context(|| format!("cannot read inventory {}", file.display()))?;
            body["inventory"] = json!(inventory);
        }
        (None, Some(id)) => body["inventory_id"] = json!(id),
        (None, None) => bail!("give an inventory file (-i) or --inventory-id"),
    }
    if let Some(n) = &args.node {
        body["execution_node"] = json!(n);
    }
    if let Some(g) = &args.group {
        body["instance_group"] = json!(g);
    }
    if let Some(image) = &args.ee {
        body["execution_environment"] = json!(image);
    }
    if let Some(l) = &args.limit {
        body["limit"] = json!(l);
    }
    if let Some(f) = args.forks {
        body["forks"] = json!(f);
    }
    if args.verbose > 0 {
        body["verbosity"] = json!(args.verbose);
    }
    let job = client.post_json("/api/v2/jobs/", &body).await?;
    let id = job
        .get("id")
        .and_then(Value::as_i64)
        .ok_or_else(|| anyhow!("the coordinator did not return the job's id"))?;
    eprintln!(
        "job {id} created ({})",
        job["status"].as_str().unwrap_or("?")
    );
    if !args.follow {
        println!("{id}");
        return Ok(ExitCode::SUCCESS);
    }
    let first_event = follow(client, "jobs", id, t0).await?;
    let job = client.get(&format!("/api/v2/jobs/{id}/")).await?;
    print_summary(&job, first_event);
    Ok(exit_for(&job))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extra_vars_forms() {
        let v = parse_extra_vars(&["a=1".into(), "{\"b\": [2]}".into()]).unwrap();
        assert_eq!(Value::Object(v), json!({"a": "1", "b": [2]}));
        assert!(parse_extra_vars(&["[1]".into()]).is_err());
        assert!(parse_extra_vars(&["novalue".into()]).is_err());
        assert!(parse_extra_vars(&["@/nonexistent.json".into()]).is_err());
    }

    #[test]
    fn a_run_names_a_directory_or_a_stored_project() {
        use clap::Parser;
        #[derive(Parser)]
        struct T {
            #[command(subcommand)]
            cmd: JobCommand,
        }
        let parse = |argv: &[&str]| match T::try_parse_from(argv).unwrap().cmd {
            JobCommand::Run(a) => source_and_playbook(&a),
            _ => panic!("not run"),
        };
        assert_eq!(
            parse(&["t", "run", "proj", "site.yml", "-i", "hosts"]).unwrap(),
            (Source::Dir("proj".into()), "site.yml".into())
        );
        assert_eq!(
            parse(&["t", "run", "--project-id", "4", "site.yml", "-i", "hosts"]).unwrap(),
            (Source::Stored(4), "site.yml".into())
        );
        assert!(parse(&["t", "run", "--project-id", "4", "d", "site.yml", "-i", "h"]).is_err());
        assert!(parse(&["t", "run", "site.yml", "-i", "hosts"]).is_err());
    }
}
