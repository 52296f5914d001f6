//! `meshrun instances`: the mesh's nodes as a table; `meshrun instances health-check NODE`,
//! which asks for a check and prints its result once the health loop has finished it; and
//! `meshrun instances remove NODE` (see `remove_node`).

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use chrono::{DateTime, Utc};
use clap::{Args, Subcommand};
use serde_json::{Value, json};

use super::client::Client;

/// How often a pending health check is polled.
const POLL: Duration = Duration::from_millis(500);

/// `meshrun instances`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct InstancesArgs {
    #[command(subcommand)]
    command: Option<InstancesCommand>,
    /// Print the instances as JSON (the API's objects).
    #[arg(long)]
    json: bool,
}

/// `meshrun instances` subcommands.
#[derive(Debug, Subcommand)]
pub enum InstancesCommand {
    /// Check a node's health now and print the result when the check has finished.
    HealthCheck {
        /// The node: its hostname (receptor node id) or its instance id.
        node: String,
        /// Give up waiting for the result after this many seconds.
        #[arg(long, default_value_t = 60)]
        timeout: u64,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove a node: no new jobs go there, running ones may finish until the deadline (then
    /// they are canceled), its work units are released and its instance deleted. Discovery
    /// does not register it again; it may join again with a new join token.
    Remove {
        /// The node: its hostname (receptor node id) or its instance id.
        node: String,
        /// Seconds running jobs get to finish before they are canceled.
        #[arg(long, default_value_t = 600)]
        deadline: u64,
        /// Wait until the instance is gone and print what the removal did.
        #[arg(long)]
        wait: bool,
    },
}

/// Runs `meshrun instances ...`.
pub async fn run(url: &str, args: InstancesArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(url);
    match args.command {
        None => {
            let all = list_all(&client).await?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&Value::Array(all))?);
            } else {
                print!("{}", render_table(&all, Utc::now()));
            }
            Ok(ExitCode::SUCCESS)
        }
        Some(InstancesCommand::HealthCheck {
            node,
            timeout,
            json,
        }) => health_check(&client, &node, Duration::from_secs(timeout), json).await,
        Some(InstancesCommand::Remove {
            node,
            deadline,
            wait,
        }) => super::remove_node::remove(&client, &node, deadline, wait).await,
    }
}

/// Every instance, by hostname (all pages).
pub async fn list_all(client: &Client) -> anyhow::Result<Vec<Value>> {
    let mut out = Vec::new();
    let mut next = Some("/api/v2/instances/?order_by=hostname&page_size=200".to_string());
    while let Some(path) = next {
        let page = client.get(&path).await?;
        let results = page
            .get("results")
            .and_then(Value::as_array)
            .ok_or_else(|| anyhow!("GET {path}: the answer has no results list"))?;
        out.extend(results.iter().cloned());
        next = page.get("next").and_then(Value::as_str).map(str::to_string);
    }
    Ok(out)
}

fn text<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

fn int(v: &Value, key: &str) -> i64 {
    v.get(key).and_then(Value::as_i64).unwrap_or(0)
}

/// A number the API may render as a decimal string (AWX's decimals).
fn decimal(v: &Value, key: &str) -> f64 {
    match v.get(key) {
        Some(Value::Number(n)) => n.as_f64().unwrap_or(0.0),
        Some(Value::String(s)) => s.parse().unwrap_or(0.0),
        _ => 0.0,
    }
}

/// `[######----] 143/220`: the share of capacity still free, then free/total.
pub fn capacity_bar(remaining: i64, total: i64) -> String {
    const WIDTH: i64 = 10;
    let remaining = remaining.clamp(0, total.max(0));
    let filled = if total <= 0 {
        0
    } else {
        let f = remaining * WIDTH / total;
        if remaining > 0 { f.max(1) } else { f }
    };
    let filled = usize::try_from(filled).unwrap_or(0);
    let empty = usize::try_from(WIDTH).unwrap_or(0) - filled;
    format!(
        "[{}{}] {remaining}/{}",
        "#".repeat(filled),
        "-".repeat(empty),
        total.max(0)
    )
}

/// Bytes as people read them (`16.0 GiB`, `512 MiB`).
pub fn human_bytes(bytes: i64) -> String {
    const MIB: f64 = (1u64 << 20) as f64;
    const GIB: f64 = (1u64 << 30) as f64;
    let b = bytes.max(0) as f64;
    if b >= GIB {
        format!("{:.1} GiB", b / GIB)
    } else {
        format!("{:.0} MiB", b / MIB)
    }
}

/// `12s ago`, `5m ago`, `3h ago`, `2d ago`.
pub fn age(then: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let s = (now - then).num_seconds().max(0);
    match s {
        0..60 => format!("{s}s ago"),
        60..3600 => format!("{}m ago", s / 60),
        3600..86400 => format!("{}h ago", s / 3600),
        _ => format!("{}d ago", s / 86400),
    }
}

fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// The first line of `errors`, cut to `max` characters.
fn short(errors: &str, max: usize) -> String {
    let first = errors.lines().next().unwrap_or("");
    let more = errors.lines().nth(1).is_some();
    if first.chars().count() > max {
        let cut: String = first.chars().take(max.saturating_sub(1)).collect();
        format!("{cut}…")
    } else if more {
        format!("{first} (+)")
    } else {
        first.to_string()
    }
}

/// One table row of an instance (an API object).
fn row(i: &Value, now: DateTime<Utc>) -> Vec<String> {
    let node_type = text(i, "node_type");
    let hop = node_type == "hop";
    let mut state = text(i, "node_state").to_string();
    if i.get("enabled") == Some(&Value::Bool(false)) {
        state.push_str(" (disabled)");
    }
    let capacity = int(i, "capacity");
    let cap = if hop {
        "-".to_string()
    } else {
        capacity_bar(capacity - int(i, "consumed_capacity"), capacity)
    };
    let cpu = decimal(i, "cpu");
    let cpu = if cpu > 0.0 {
        format!("{cpu}")
    } else {
        "-".to_string()
    };
    let mem = int(i, "memory");
    let mem = if mem > 0 {
        human_bytes(mem)
    } else {
        "-".to_string()
    };
    let version = match text(i, "version") {
        "" => "-".to_string(),
        v => v.to_string(),
    };
    let checked = if hop {
        "-".to_string()
    } else if i.get("health_check_pending") == Some(&Value::Bool(true)) {
        "pending".to_string()
    } else {
        match parse_time(text(i, "last_health_check")) {
            Some(t) => age(t, now),
            None => "never".to_string(),
        }
    };
    vec![
        text(i, "hostname").to_string(),
        node_type.to_string(),
        state,
        cap,
        cpu,
        mem,
        version,
        checked,
        short(text(i, "errors"), 40),
    ]
}

/// The instances as an aligned table, one row per instance in the given order.
pub fn render_table(instances: &[Value], now: DateTime<Utc>) -> String {
    let head = [
        "HOSTNAME", "TYPE", "STATE", "CAPACITY", "CPU", "MEMORY", "VERSION", "CHECKED", "ERRORS",
    ];
    let mut rows: Vec<Vec<String>> = vec![head.iter().map(|h| h.to_string()).collect()];
    rows.extend(instances.iter().map(|i| row(i, now)));
    let mut widths = vec![0usize; head.len()];
    for r in &rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for r in &rows {
        let mut line = String::new();
        for (n, (cell, w)) in r.iter().zip(&widths).enumerate() {
            if n > 0 {
                line.push_str("  ");
            }
            line.push_str(cell);
            line.extend(std::iter::repeat_n(' ', w - cell.chars().count()));
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    if instances.is_empty() {
        out.push_str("(no instances registered yet)\n");
    }
    out
}

/// The instance named by `node`: a hostname first, else an instance id.
pub async fn resolve(client: &Client, node: &str) -> anyhow::Result<Value> {
    let page = client
        .get(&format!(
            "/api/v2/instances/?hostname={}",
            crate::url_query::encode_value(node)
        ))
        .await?;
    if let Some(found) = page
        .get("results")
        .and_then(Value::as_array)
        .and_then(|r| r.first())
    {
        return Ok(found.clone());
    }
    if let Ok(id) = node.parse::<i64>() {
        return client
            .get(&format!("/api/v2/instances/{id}/"))
            .await
            .with_context(|| format!("no instance has hostname or id {node:?}"));
    }
    bail!("no instance has hostname {node:?} (see `meshrun instances`)")
}

/// POSTs the request; returns when the check that will answer it started (ours, or one already
/// pending that we wait for instead).
async fn request_check(client: &Client, id: i64, hostname: &str) -> anyhow::Result<String> {
    let path = format!("/api/v2/instances/{id}/health_check/");
    let resp = client
        .http()
        .post(client.url(&path))
        .json(&json!({}))
        .send()
        .await
        .with_context(|| format!("cannot reach the coordinator at {}", client.url("")))?;
    let status = resp.status();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    let started = body
        .get("health_check_started")
        .and_then(Value::as_str)
        .map(str::to_string);
    match (status.as_u16(), started) {
        (202, Some(s)) => Ok(s),
        (409, Some(s)) => {
            eprintln!("a health check of {hostname} is already pending; waiting for it");
            Ok(s)
        }
        _ => bail!(
            "POST {path}: {}: {}{}",
            status,
            body.get("detail")
                .and_then(Value::as_str)
                .unwrap_or("unexpected answer"),
            super::client::auth_hint(status)
        ),
    }
}

async fn health_check(
    client: &Client,
    node: &str,
    timeout: Duration,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let inst = resolve(client, node).await?;
    let id = int(&inst, "id");
    let hostname = text(&inst, "hostname").to_string();
    let started_text = request_check(client, id, &hostname).await?;
    let started = parse_time(&started_text)
        .ok_or_else(|| anyhow!("the coordinator answered a bad time {started_text:?}"))?;
    let path = format!("/api/v2/instances/{id}/health_check/");
    let deadline = Instant::now() + timeout;
    let result = loop {
        let hc = client.get(&path).await?;
        let done = parse_time(text(&hc, "last_health_check")).is_some_and(|t| t >= started);
        if done {
            break hc;
        }
        if Instant::now() >= deadline {
            bail!(
                "the health check of {hostname} (requested at {started_text}) has not finished \
                 within {} s; is the coordinator's health-check loop running? See `meshrun instances`",
                timeout.as_secs()
            );
        }
        tokio::time::sleep(POLL).await;
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&result)?);
    } else {
        print!("{}", render_health(&result));
    }
    Ok(if text(&result, "errors").is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// A finished health check for people.
pub fn render_health(hc: &Value) -> String {
    let errors = text(hc, "errors");
    let verdict = if errors.is_empty() {
        "healthy"
    } else {
        "unhealthy"
    };
    let mut out = format!("{}: {verdict}\n", text(hc, "hostname"));
    let took = hc
        .get("history")
        .and_then(Value::as_array)
        .and_then(|h| h.first())
        .map(|h| format!(" (took {:.1} s)", int(h, "duration_ms") as f64 / 1000.0))
        .unwrap_or_default();
    let mut line = |k: &str, v: String| out.push_str(&format!("  {k:<9} {v}\n"));
    line(
        "checked",
        format!("{}{took}", text(hc, "last_health_check")),
    );
    line("state", text(hc, "node_state").to_string());
    line("version", text(hc, "version").to_string());
    line("cpu", format!("{}", decimal(hc, "cpu")));
    line("memory", human_bytes(int(hc, "memory")));
    line(
        "capacity",
        format!(
            "{} (cpu {}, memory {})",
            int(hc, "capacity"),
            int(hc, "cpu_capacity"),
            int(hc, "mem_capacity")
        ),
    );
    if !errors.is_empty() {
        out.push_str("  errors:\n");
        for e in errors.lines() {
            out.push_str(&format!("    {e}\n"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capacity_bars() {
        assert_eq!(capacity_bar(220, 220), "[##########] 220/220");
        assert_eq!(capacity_bar(143, 220), "[######----] 143/220");
        assert_eq!(capacity_bar(0, 220), "[----------] 0/220");
        assert_eq!(
            capacity_bar(1, 220),
            "[#---------] 1/220",
            "a little room still shows"
        );
        assert_eq!(
            capacity_bar(219, 220),
            "[#########-] 219/220",
            "full only when nothing is used"
        );
        assert_eq!(capacity_bar(-5, 10), "[----------] 0/10", "overcommitted");
        assert_eq!(capacity_bar(0, 0), "[----------] 0/0");
    }

    #[test]
    fn sizes_and_ages() {
        assert_eq!(human_bytes(16 << 30), "16.0 GiB");
        assert_eq!(human_bytes(512 << 20), "512 MiB");
        let now = parse_time("2025-01-02T00:00:00Z").unwrap();
        let ago = |s: i64| age(now - chrono::TimeDelta::seconds(s), now);
        assert_eq!(ago(5), "5s ago");
        assert_eq!(ago(125), "2m ago");
        assert_eq!(ago(7200), "2h ago");
        assert_eq!(ago(200_000), "2d ago");
        assert_eq!(ago(-30), "0s ago", "clock skew is not negative");
    }

    #[test]
    fn table_rows_say_what_matters() {
        let now = parse_time("2025-01-01T00:01:00Z").unwrap();
        let instances = [
            json!({"hostname": "exec1", "node_type": "execution", "node_state": "ready",
                   "enabled": true, "capacity": 220, "consumed_capacity": 77, "cpu": "8.0",
                   "memory": 17179869184i64, "version": "ansible-runner-2.4.1",
                   "last_health_check": "2025-01-01T00:00:30Z", "health_check_pending": false,
                   "errors": ""}),
            json!({"hostname": "exec2", "node_type": "execution", "node_state": "unavailable",
                   "enabled": false, "capacity": 0, "consumed_capacity": 0, "cpu": "0.0",
                   "memory": 0, "version": "", "last_health_check": null,
                   "health_check_pending": true,
                   "errors": "podman is not usable: runc missing and a very long tail\nsecond"}),
            json!({"hostname": "hop", "node_type": "hop", "node_state": "ready",
                   "enabled": true, "capacity": 0, "cpu": "0.0", "memory": 0}),
        ];
        let t = render_table(&instances, now);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 4, "{t}");
        assert!(lines[0].starts_with("HOSTNAME"));
        assert!(lines[1].contains("[######----] 143/220"), "{t}");
        assert!(lines[1].contains("16.0 GiB") && lines[1].contains("30s ago"));
        assert!(lines[1].contains(" 8 "), "{t}");
        assert!(lines[2].contains("unavailable (disabled)") && lines[2].contains("pending"));
        assert!(lines[2].contains("podman is not usable") && lines[2].contains('…'));
        assert!(!lines[2].contains("second"));
        let hop_cells: Vec<&str> = lines[3].split_whitespace().collect();
        assert_eq!(hop_cells, ["hop", "hop", "ready", "-", "-", "-", "-", "-"]);
        let col = lines[0].find("CAPACITY").unwrap();
        assert_eq!(&lines[1][col..col + 1], "[", "columns are aligned");
        assert!(render_table(&[], now).contains("no instances"));
    }

    #[test]
    fn health_results_for_people() {
        let ok = json!({"hostname": "exec1", "errors": "", "version": "ansible-runner-2.4.1",
                        "cpu": "8.0", "memory": 17179869184i64, "capacity": 143,
                        "cpu_capacity": 32, "mem_capacity": 143, "node_state": "ready",
                        "last_health_check": "2025-01-01T00:00:00Z",
                        "history": [{"duration_ms": 1300}]});
        let t = render_health(&ok);
        assert!(t.starts_with("exec1: healthy\n"), "{t}");
        assert!(t.contains("capacity  143 (cpu 32, memory 143)"), "{t}");
        assert!(t.contains("(took 1.3 s)"), "{t}");
        let bad = json!({"hostname": "exec2", "errors": "no podman\nno image"});
        let t = render_health(&bad);
        assert!(t.starts_with("exec2: unhealthy\n"));
        assert!(t.contains("    no podman\n    no image\n"), "{t}");
    }
}
