//! `meshrun adhoc <pattern> -i <inventory> -m <module> [-a <args>]`: run one module against a
//! host pattern through the coordinator (an ad hoc command) and, with `--follow`, watch it live
//! and exit with its result as `meshrun job run --follow` does.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, anyhow};
use clap::Args;
use serde_json::{Value, json};

use super::client::Client;
use super::follow::{exit_for, follow, print_summary};
use super::job::parse_extra_vars;

/// `meshrun adhoc` options.
#[derive(Debug, Args)]
pub struct AdHocArgs {
    /// The hosts to run against (an Ansible host pattern such as `all`, `web:!db`).
    pub pattern: String,
    /// Inventory file (INI or YAML).
    #[arg(short = 'i', long)]
    pub inventory: PathBuf,
    /// The module to run (it must be in the coordinator's `ad_hoc_commands` list).
    #[arg(short = 'm', long = "module-name")]
    pub module: String,
    /// The module's arguments.
    #[arg(short = 'a', long = "args")]
    pub args: Option<String>,
    /// Run the module with privilege escalation (`--become`).
    #[arg(short = 'b', long)]
    pub r#become: bool,
    /// Extra vars: KEY=VALUE, a JSON object, or @FILE with a JSON object; repeatable.
    #[arg(short = 'e', long = "extra-vars")]
    pub extra_vars: Vec<String>,
    /// Forks.
    #[arg(short = 'f', long)]
    pub forks: Option<i64>,
    /// Verbosity (-v, -vv, ...).
    #[arg(short = 'v', action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Run in this instance group (default: `default`).
    #[arg(long)]
    pub group: Option<String>,
    /// Execution-environment image (default: the execution node's).
    #[arg(long)]
    pub ee: Option<String>,
    /// Run on this execution node (default: the scheduler picks one in the group).
    #[arg(long)]
    pub node: Option<String>,
    /// A display name (default: the module).
    #[arg(long)]
    pub name: Option<String>,
    /// Follow the command's output live and exit with its result.
    #[arg(long)]
    pub follow: bool,
}

/// The `POST /api/v2/ad_hoc_commands/` body for `args` with `inventory` text.
fn body(args: &AdHocArgs, inventory: String) -> anyhow::Result<Value> {
    let mut body = json!({
        "inventory": inventory,
        "limit": args.pattern,
        "module_name": args.module,
        "extra_vars": parse_extra_vars(&args.extra_vars)?,
    });
    let optional = [
        ("module_args", args.args.clone().map(Value::from)),
        ("forks", args.forks.map(Value::from)),
        ("verbosity", (args.verbose > 0).then(|| json!(args.verbose))),
        ("instance_group", args.group.clone().map(Value::from)),
        ("execution_environment", args.ee.clone().map(Value::from)),
        ("execution_node", args.node.clone().map(Value::from)),
        ("name", args.name.clone().map(Value::from)),
        ("become_enabled", args.r#become.then_some(Value::Bool(true))),
    ];
    for (key, value) in optional {
        if let Some(v) = value {
            body[key] = v;
        }
    }
    Ok(body)
}

/// Creates the ad hoc command and, with `--follow`, follows it to the end.
pub async fn run(url: &str, args: AdHocArgs) -> anyhow::Result<ExitCode> {
    let t0 = Instant::now();
    let client = Client::new(url);
    let inventory = std::fs::read_to_string(&args.inventory)
        .with_context(|| format!("cannot read inventory {}", args.inventory.display()))?;
    let created = client
        .post_json("/api/v2/ad_hoc_commands/", &body(&args, inventory)?)
        .await?;
    let id = created
        .get("id")
        .and_then(Value::as_i64)
        .ok_or_else(|| anyhow!("the coordinator did not return the ad hoc command's id"))?;
    eprintln!(
        "ad hoc command {id} created ({})",
        created["status"].as_str().unwrap_or("?")
    );
    if !args.follow {
        println!("{id}");
        return Ok(ExitCode::SUCCESS);
    }
    let first_event = follow(&client, "ad_hoc_commands", id, t0).await?;
    let done = client
        .get(&format!("/api/v2/ad_hoc_commands/{id}/"))
        .await?;
    print_summary(&done, first_event);
    Ok(exit_for(&done))
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        args: AdHocArgs,
    }

    fn parse(argv: &[&str]) -> AdHocArgs {
        Cli::try_parse_from(std::iter::once("adhoc").chain(argv.iter().copied()))
            .expect("arguments parse")
            .args
    }

    #[test]
    fn the_body_carries_what_was_given_and_nothing_else() {
        let a = parse(&["all", "-i", "inv.ini", "-m", "ping"]);
        let b = body(&a, "localhost\n".into()).unwrap();
        assert_eq!(
            b,
            json!({
                "inventory": "localhost\n",
                "limit": "all",
                "module_name": "ping",
                "extra_vars": {},
            })
        );
        let a = parse(&[
            "web:!db", "-i", "inv.ini", "-m", "command", "-a", "echo hi", "--become", "-e", "x=1",
            "--forks", "3", "-vv", "--group", "g", "--ee", "img:1", "--node", "exec1",
        ]);
        let b = body(&a, "h\n".into()).unwrap();
        assert_eq!(b["limit"], "web:!db");
        assert_eq!(b["module_args"], "echo hi");
        assert_eq!(b["become_enabled"], true);
        assert_eq!(b["extra_vars"], json!({"x": "1"}));
        assert_eq!(b["forks"], 3);
        assert_eq!(b["verbosity"], 2);
        assert_eq!(b["instance_group"], "g");
        assert_eq!(b["execution_environment"], "img:1");
        assert_eq!(b["execution_node"], "exec1");
    }

    #[test]
    fn a_module_and_an_inventory_are_required() {
        let missing_module = Cli::try_parse_from(["adhoc", "all", "-i", "inv.ini"]);
        assert!(missing_module.is_err());
        let missing_inventory = Cli::try_parse_from(["adhoc", "all", "-m", "ping"]);
        assert!(missing_inventory.is_err());
    }
}
