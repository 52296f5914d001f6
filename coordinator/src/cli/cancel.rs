//! `meshrun job cancel ID` and `meshrun jobs cancel ID` (any kind of job, found by id): request
//! the cancel, and with `--wait` wait until the job has ended.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::bail;
use serde_json::{Value, json};

use super::client::Client;
use crate::store::JobKind;

/// How often `--wait` reads the job.
const WAIT_POLL: Duration = Duration::from_millis(250);

/// Cancels job `id` of the API collection `collection` (`jobs`, `ad_hoc_commands`, ...).
/// Exit code: 0 once the cancel is accepted (with `wait`: once the job ended `canceled`).
pub async fn cancel(
    client: &Client,
    collection: &str,
    id: i64,
    wait: Option<Duration>,
) -> anyhow::Result<ExitCode> {
    let path = format!("/api/v2/{collection}/{id}/");
    let started = Instant::now();
    let job = client
        .post_json(&format!("{path}cancel/"), &json!({}))
        .await?;
    let kind = job["type"].as_str().unwrap_or("job").replace('_', " ");
    println!(
        "cancel requested for {kind} {id} (status: {})",
        job["status"].as_str().unwrap_or("?")
    );
    let Some(patience) = wait else {
        return Ok(ExitCode::SUCCESS);
    };
    let job = loop {
        let job = client.get(&path).await?;
        if is_final(&job) {
            break job;
        }
        if started.elapsed() >= patience {
            bail!(
                "{kind} {id} is still {} after {} s",
                job["status"].as_str().unwrap_or("?"),
                patience.as_secs()
            );
        }
        tokio::time::sleep(WAIT_POLL).await;
    };
    let status = job["status"].as_str().unwrap_or("?");
    println!(
        "{kind} {id} ended {status} after {:.1} s{}",
        started.elapsed().as_secs_f64(),
        match job["job_explanation"].as_str() {
            Some(e) if !e.is_empty() => format!(": {e}"),
            _ => String::new(),
        }
    );
    Ok(if status == "canceled" {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn is_final(job: &Value) -> bool {
    matches!(
        job["status"].as_str(),
        Some("successful" | "failed" | "error" | "canceled")
    )
}

/// The collection job `id` lives in, whatever its kind (ids are shared by every kind).
pub async fn collection_of(client: &Client, id: i64) -> anyhow::Result<&'static str> {
    for kind in JobKind::ALL {
        let url = client.url(&format!("/api/v2/{}/{id}/", kind.collection()));
        let resp = client.http().get(&url).send().await.map_err(|e| {
            anyhow::anyhow!("cannot reach the coordinator at {url} (set MESHRUN_URL or --url): {e}")
        })?;
        if resp.status().is_success() {
            return Ok(kind.collection());
        }
        if matches!(resp.status().as_u16(), 401 | 403) {
            let status = resp.status();
            let body: serde_json::Value = resp.json().await.unwrap_or_default();
            let detail = body.get("detail").and_then(|d| d.as_str()).unwrap_or("");
            bail!(
                "GET {url}: {status}: {detail}{}",
                super::client::auth_hint(status)
            );
        }
    }
    bail!("no job of any kind with id {id}")
}
