//! `meshrun instances remove NODE [--deadline SECS] [--wait]`: asks the coordinator to remove a
//! node (`DELETE /api/v2/instances/{id}/`), says what that means, and with `--wait` follows the
//! removal until the instance is gone, then prints what it did (from the node's tombstone,
//! `GET /api/v2/removed_nodes/`).

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::Value;

use super::client::Client;

/// How often `--wait` looks.
const POLL: Duration = Duration::from_secs(1);
/// How long `--wait` waits past the deadline (cancels and releases take a little while; a
/// node that cannot be told gets its units force-released after 20 s).
const PATIENCE_PAST_DEADLINE: Duration = Duration::from_secs(300);

fn text<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

fn int(v: &Value, key: &str) -> i64 {
    v.get(key).and_then(Value::as_i64).unwrap_or(0)
}

fn plural(n: i64, one: &str) -> String {
    if n == 1 {
        format!("{n} {one}")
    } else {
        format!("{n} {one}s")
    }
}

/// What the DELETE answer means, for people.
pub fn render_started(answer: &Value) -> String {
    let host = text(answer, "hostname");
    let dep = answer.get("deprovision").unwrap_or(&Value::Null);
    let running = int(answer, "jobs_running");
    let mut out = format!(
        "{host}: {} and disabled: no new job is placed on it\n",
        text(answer, "node_state")
    );
    if running > 0 {
        out.push_str(&format!(
            "  {} running there may finish until {}; those still running then are canceled\n",
            plural(running, "job"),
            text(dep, "deadline")
        ));
    } else {
        out.push_str("  no job runs there\n");
    }
    out.push_str(
        "  then its work units are released and the instance is removed (discovery will not \
         register it again)\n",
    );
    out
}

/// What a finished removal did, from its tombstone.
pub fn render_removed(tombstone: &Value) -> String {
    let host = text(tombstone, "hostname");
    let canceled = int(tombstone, "jobs_canceled");
    let failed = int(tombstone, "pending_failed");
    let mut out = format!("{host} removed at {}:\n", text(tombstone, "removed_at"));
    out.push_str("  drained: no new job was placed on it\n");
    out.push_str(&format!(
        "  {} canceled at the deadline\n",
        plural(canceled, "job")
    ));
    if failed > 0 {
        out.push_str(&format!(
            "  {} pinned to it ended with an error (never run)\n",
            plural(failed, "pending job")
        ));
    }
    out.push_str(&format!(
        "  {} released\n",
        plural(int(tombstone, "units_released"), "work unit")
    ));
    out.push_str("  instance deleted; tombstone written (discovery will not register it again)\n");
    out.push_str(
        "note: its certificate stays valid until it expires (it is no longer renewed); stop its \
         agent to cut it off now (README: \"Removing a node\")\n",
    );
    out
}

async fn tombstone(client: &Client, host: &str) -> anyhow::Result<Option<Value>> {
    let page = client
        .get(&format!(
            "/api/v2/removed_nodes/?hostname={}",
            crate::url_query::encode_value(host)
        ))
        .await?;
    Ok(page
        .get("results")
        .and_then(Value::as_array)
        .and_then(|r| r.first())
        .cloned())
}

/// The instance of `host` if it is still registered.
async fn registered(client: &Client, host: &str) -> anyhow::Result<Option<Value>> {
    let page = client
        .get(&format!(
            "/api/v2/instances/?hostname={}",
            crate::url_query::encode_value(host)
        ))
        .await?;
    Ok(page
        .get("results")
        .and_then(Value::as_array)
        .and_then(|r| r.first())
        .cloned())
}

/// Runs `meshrun instances remove`.
pub async fn remove(
    client: &Client,
    node: &str,
    deadline_secs: u64,
    wait: bool,
) -> anyhow::Result<ExitCode> {
    let inst = match super::instances::resolve(client, node).await {
        Ok(inst) => inst,
        Err(e) => {
            if let Some(t) = tombstone(client, node).await? {
                println!(
                    "{node} was already removed at {}; nothing to do",
                    text(&t, "removed_at")
                );
                return Ok(ExitCode::SUCCESS);
            }
            return Err(e);
        }
    };
    let id = int(&inst, "id");
    let host = text(&inst, "hostname").to_string();
    let answer = client
        .delete(&format!("/api/v2/instances/{id}/?deadline={deadline_secs}"))
        .await
        .with_context(|| format!("cannot remove {host}"))?;
    print!("{}", render_started(&answer));
    if !wait {
        println!("follow it with `meshrun instances` (or run this again with --wait)");
        return Ok(ExitCode::SUCCESS);
    }
    let deadline = answer
        .get("deprovision")
        .map(|d| text(d, "deadline"))
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&chrono::Utc));
    let until_deadline = deadline
        .and_then(|d| (d - chrono::Utc::now()).to_std().ok())
        .unwrap_or_default();
    let give_up = Instant::now() + until_deadline + PATIENCE_PAST_DEADLINE;
    let mut last_running = int(&answer, "jobs_running");
    loop {
        match registered(client, &host).await? {
            None => break,
            Some(now) => {
                let running = int(&now, "jobs_running");
                if running != last_running {
                    println!("  {} still running there", plural(running, "job"));
                    last_running = running;
                }
            }
        }
        if Instant::now() >= give_up {
            bail!(
                "{host} is still being removed {} s after its deadline; see the coordinator's log",
                PATIENCE_PAST_DEADLINE.as_secs()
            );
        }
        tokio::time::sleep(POLL).await;
    }
    match tombstone(client, &host).await? {
        Some(t) => print!("{}", render_removed(&t)),
        None => println!("{host} removed"),
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_start_of_a_removal_says_what_happens_next() {
        let t = render_started(&json!({
            "hostname": "exec1", "node_state": "deprovisioning", "jobs_running": 2,
            "deprovision": {"deadline": "2030-01-01T00:10:00.000000Z"}
        }));
        assert!(t.starts_with("exec1: deprovisioning and disabled"), "{t}");
        assert!(t.contains("2 jobs running there may finish until 2030-01-01T00:10:00"));
        let idle = render_started(&json!({"hostname": "exec1", "node_state": "deprovisioning"}));
        assert!(idle.contains("no job runs there"), "{idle}");
    }

    #[test]
    fn a_finished_removal_counts_what_it_did() {
        let t = render_removed(&json!({
            "hostname": "exec1", "removed_at": "2030-01-01T00:10:03Z", "jobs_canceled": 1,
            "pending_failed": 0, "units_released": 2
        }));
        assert!(t.contains("exec1 removed at 2030-01-01T00:10:03Z"), "{t}");
        assert!(t.contains("drained"));
        assert!(t.contains("1 job canceled at the deadline"), "{t}");
        assert!(!t.contains("pending job"), "{t}");
        assert!(t.contains("2 work units released"), "{t}");
        assert!(t.contains("instance deleted"));
        assert!(t.contains("certificate stays valid"));
    }
}
