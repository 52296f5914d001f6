//! One health check through the control node's receptor: submit `--worker-info` to the node's
//! work type (`ansible-runner`, or `local` on the control node itself), wait for the unit to
//! complete within the timeout, read its stdout, always release the unit, and parse the answer.
//! Hop nodes run nothing: their check is whether they are routable.
//!
//! A remote node is pinged before the submit. A node that just (re)joined is in the control
//! node's routing table before it has a route back, and a remote submit made then stalls in
//! receptor's growing connect retries for several seconds after the route appears; a ping
//! round trip tells the moment the node can answer.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use meshrun_shared::control_socket::{
    ControlClient, ControlError, ControlOptions, PingReply, ReleaseOutcome, SubmitRequest,
    UnitState, UnitStatus,
};
use meshrun_shared::node_type::{NodeType, WORK_TYPE_LOCAL};
use meshrun_shared::worker_info::{self, WorkerInfo};
use tokio::io::AsyncReadExt;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::mesh;
use crate::store::Instance;

/// The extra submit key that tags a remote health-check unit with the node it checks (shown by
/// `work list`, so a reaper can tell these units from jobs).
pub const HEALTH_TAG_KEY: &str = "meshrun_health_check";

/// How often `work status` is asked while the unit runs.
const STATUS_POLL: Duration = Duration::from_millis(200);
/// The most stdout kept: a worker-info answer is one line.
const MAX_STDOUT: usize = 256 * 1024;
/// How much of a bad answer is quoted in the node's errors.
const TAIL_CHARS: usize = 500;
/// How long the release may take after the check ended.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(10);
/// A new ping is sent this often until one is answered (receptor waits 10 s for each reply,
/// so they overlap rather than wait for one another).
const PING_EVERY: Duration = Duration::from_millis(500);

/// How checks are made.
#[derive(Debug, Clone)]
pub struct CheckSettings {
    /// The control node's receptor socket.
    pub socket: PathBuf,
    /// The control node's id (its own checks go through `local`, without ttl).
    pub control_node: String,
    /// The longest a check may take; also the `ttl` of remote submits.
    pub timeout: Duration,
    /// The `tls-client` name for nodes whose control service is TLS.
    pub tls_client: Option<String>,
}

/// What a check found.
#[derive(Debug, Clone, PartialEq)]
pub enum CheckOutcome {
    /// The node answered `--worker-info` (its own `errors` may be non-empty).
    Reported(WorkerInfo),
    /// A hop node is routable: nothing else to check.
    HopRoutable,
    /// The node is not routable now, so nothing was submitted. Whether that makes it
    /// unavailable is discovery's call (after the grace period), not the check's.
    Unroutable(String),
    /// No usable answer; the text names the node and the cause.
    Failed(String),
    /// Shutdown interrupted the check; nothing should be recorded.
    Interrupted,
}

/// What to check, copied from the instance when the check starts.
#[derive(Debug, Clone)]
pub struct Target {
    /// The node id.
    pub hostname: String,
    /// Its type (hops are not submitted to).
    pub node_type: NodeType,
    /// Sign the submit.
    pub secure_work: bool,
    /// Its control service is TLS.
    pub control_tls: bool,
}

impl From<&Instance> for Target {
    fn from(i: &Instance) -> Self {
        Target {
            hostname: i.hostname.clone(),
            node_type: i.node_type,
            secure_work: i.secure_work,
            control_tls: i.control_tls,
        }
    }
}

/// Why a step of the check failed, kept apart from the unit's own failure.
enum Stop {
    Failed(String),
    Unroutable(String),
    Interrupted,
}

/// Checks `target` once.
pub async fn check(
    settings: &CheckSettings,
    target: &Target,
    shutdown: &CancellationToken,
) -> CheckOutcome {
    let deadline = Instant::now() + settings.timeout;
    let mut unit: Option<String> = None;
    let result = tokio::select! {
        r = run(settings, target, deadline, shutdown, &mut unit) => r,
        _ = shutdown.cancelled() => Err(Stop::Interrupted),
    };
    if let Some(unit) = unit {
        release(settings, &target.hostname, &unit).await;
    }
    match result {
        Ok(outcome) => outcome,
        Err(Stop::Failed(msg)) => CheckOutcome::Failed(msg),
        Err(Stop::Unroutable(msg)) => CheckOutcome::Unroutable(msg),
        Err(Stop::Interrupted) => CheckOutcome::Interrupted,
    }
}

fn options(limit: Duration) -> ControlOptions {
    let limit = limit.max(Duration::from_secs(1));
    ControlOptions {
        connect_timeout: limit,
        reply_timeout: limit,
        ..ControlOptions::default()
    }
}

async fn connect(settings: &CheckSettings, deadline: Instant) -> Result<ControlClient, Stop> {
    let left = deadline.saturating_duration_since(Instant::now());
    ControlClient::connect_unix_with(&settings.socket, options(left))
        .await
        .map_err(|e| {
            Stop::Failed(format!(
                "cannot reach the control node's receptor at {}: {e}",
                settings.socket.display()
            ))
        })
}

/// The check up to a parsed answer; sets `unit` as soon as receptor names one, so the caller
/// releases it whatever happens after.
async fn run(
    settings: &CheckSettings,
    target: &Target,
    deadline: Instant,
    shutdown: &CancellationToken,
    unit: &mut Option<String>,
) -> Result<CheckOutcome, Stop> {
    let node = target.hostname.as_str();
    let control = settings.control_node.as_str();
    let mut client = connect(settings, deadline).await?;
    let status = client
        .status()
        .await
        .map_err(|e| Stop::Failed(format!("cannot read the mesh status to check {node}: {e}")))?;
    if !mesh::is_routable(&status, node) {
        return Err(Stop::Unroutable(format!(
            "health check of {node} not run: {node} is not routable from {control}"
        )));
    }
    let local = node == control;
    let work_type = if local {
        Some(WORK_TYPE_LOCAL)
    } else {
        target.node_type.work_type()
    };
    let Some(work_type) = work_type else {
        return Ok(CheckOutcome::HopRoutable);
    };
    // With a tls_client every remote check uses it (see the runner): no downgrade to plain.
    let tlsclient = match (
        !local && (target.control_tls || settings.tls_client.is_some()),
        &settings.tls_client,
    ) {
        (true, Some(name)) => Some(name.clone()),
        (true, None) => {
            return Err(Stop::Failed(format!(
                "health check of {node} not run: its control service is TLS but the coordinator \
                 has no tls_client configured"
            )));
        }
        (false, _) => None,
    };
    if !local {
        wait_for_answer(settings, node, deadline, shutdown).await?;
    }
    let request = SubmitRequest {
        node: node.to_string(),
        worktype: work_type.to_string(),
        params: Some("--worker-info".to_string()),
        tlsclient,
        ttl: (!local).then(|| format!("{}s", settings.timeout.as_secs_f64().ceil() as u64)),
        signwork: target.secure_work,
        extra: if local {
            BTreeMap::new()
        } else {
            BTreeMap::from([(HEALTH_TAG_KEY.to_string(), node.to_string())])
        },
    };
    let session = client.work_submit(&request).await.map_err(|e| {
        Stop::Failed(format!(
            "health check of {node}: receptor refused the {work_type} submit: {e}"
        ))
    })?;
    *unit = Some(session.unit_id.clone());
    let unit_id = session.unit_id.clone();
    session.finish().await.map_err(|e| {
        Stop::Failed(format!(
            "health check of {node}: receptor did not start unit {unit_id}: {e}"
        ))
    })?;
    let done = wait_complete(settings, node, &unit_id, deadline, shutdown).await?;
    let stdout = read_stdout(settings, node, &unit_id, deadline).await?;
    if done.state == UnitState::Failed {
        return Err(Stop::Failed(format!(
            "health check of {node}: receptor reports unit {unit_id} Failed: {}{}",
            if done.detail.is_empty() {
                "(no detail)"
            } else {
                &done.detail
            },
            describe_tail(&stdout)
        )));
    }
    match worker_info::parse(&stdout) {
        Ok(info) => Ok(CheckOutcome::Reported(info)),
        Err(e) => Err(Stop::Failed(format!(
            "health check of {node}: unusable answer: {e}{}",
            describe_tail(&stdout)
        ))),
    }
}

/// Pings `node` until one ping is answered or the deadline passes.
async fn wait_for_answer(
    settings: &CheckSettings,
    node: &str,
    deadline: Instant,
    shutdown: &CancellationToken,
) -> Result<(), Stop> {
    let mut pings = tokio::task::JoinSet::new();
    let mut every = tokio::time::interval(PING_EVERY);
    let mut last_error = String::from("no reply yet");
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return Err(Stop::Interrupted),
            _ = tokio::time::sleep_until(deadline) => {
                return Err(Stop::Failed(format!(
                    "health check of {node} not run: {node} is routable from {} but answered no \
                     ping within {} s (last: {last_error})",
                    settings.control_node,
                    settings.timeout.as_secs_f64()
                )));
            }
            _ = every.tick() => {
                let (socket, node) = (settings.socket.clone(), node.to_string());
                pings.spawn(async move { ping_once(&socket, &node).await });
            }
            Some(done) = pings.join_next() => match done {
                Ok(Ok(())) => return Ok(()),
                Ok(Err(e)) => last_error = e,
                Err(e) => last_error = format!("ping task failed: {e}"),
            }
        }
    }
}

async fn ping_once(socket: &std::path::Path, node: &str) -> Result<(), String> {
    // receptor answers a ping within its own 10 s limit.
    let options = ControlOptions {
        connect_timeout: Duration::from_secs(5),
        reply_timeout: Duration::from_secs(15),
        ..ControlOptions::default()
    };
    let mut client = ControlClient::connect_unix_with(socket, options)
        .await
        .map_err(|e| e.to_string())?;
    match client.ping(node).await {
        Ok(PingReply::Reached { .. }) => Ok(()),
        Ok(PingReply::Failed { error }) => Err(error),
        Err(e) => Err(e.to_string()),
    }
}

/// Polls `work status` until the unit is Succeeded or Failed.
async fn wait_complete(
    settings: &CheckSettings,
    node: &str,
    unit: &str,
    deadline: Instant,
    shutdown: &CancellationToken,
) -> Result<UnitStatus, Stop> {
    let mut client = connect(settings, deadline).await?;
    loop {
        let st = client.work_status(unit).await.map_err(|e| {
            Stop::Failed(format!(
                "health check of {node}: cannot read the status of unit {unit}: {e}"
            ))
        })?;
        if st.state.is_complete() {
            return Ok(st);
        }
        if st.state == UnitState::Canceled {
            return Err(Stop::Failed(format!(
                "health check of {node}: unit {unit} was canceled ({})",
                st.detail
            )));
        }
        if Instant::now() >= deadline {
            return Err(Stop::Failed(format!(
                "health check of {node} timed out after {} s: unit {unit} is still {} ({})",
                settings.timeout.as_secs_f64(),
                st.state_name,
                st.detail
            )));
        }
        tokio::select! {
            _ = shutdown.cancelled() => return Err(Stop::Interrupted),
            _ = tokio::time::sleep(STATUS_POLL) => {}
        }
    }
}

/// The unit's stdout from byte 0; the stream ends by itself once the unit is complete.
async fn read_stdout(
    settings: &CheckSettings,
    node: &str,
    unit: &str,
    deadline: Instant,
) -> Result<String, Stop> {
    // The unit is complete already: give the read a moment even if the deadline just passed.
    let limit = deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_secs(2));
    let failed = |e: &dyn std::fmt::Display| {
        Stop::Failed(format!(
            "health check of {node}: cannot read the output of unit {unit}: {e}"
        ))
    };
    let read = async {
        let client = ControlClient::connect_unix_with(&settings.socket, options(limit))
            .await
            .map_err(|e| failed(&e))?;
        let mut stream = client.work_results(unit, 0).await.map_err(|e| failed(&e))?;
        let mut out = Vec::new();
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = stream.read(&mut buf).await.map_err(|e| failed(&e))?;
            if n == 0 {
                break;
            }
            if out.len() < MAX_STDOUT {
                out.extend_from_slice(&buf[..n.min(MAX_STDOUT - out.len())]);
            }
        }
        Ok(String::from_utf8_lossy(&out).into_owned())
    };
    tokio::time::timeout(limit, read)
        .await
        .unwrap_or_else(|_| Err(failed(&format!("no end of output within {limit:?}"))))
}

/// `; output ends with: "..."`, or nothing for empty output.
fn describe_tail(stdout: &str) -> String {
    let trimmed = stdout.trim();
    if trimmed.is_empty() {
        return String::new();
    }
    let count = trimmed.chars().count();
    let tail: String = trimmed
        .chars()
        .skip(count.saturating_sub(TAIL_CHARS))
        .collect();
    format!("; output ends with: {tail:?}")
}

/// Releases `unit`; force-releases it when a plain release fails or is left pending (a
/// health-check unit is never worth keeping).
async fn release(settings: &CheckSettings, node: &str, unit: &str) {
    let attempt = async {
        let mut client =
            ControlClient::connect_unix_with(&settings.socket, options(RELEASE_TIMEOUT)).await?;
        match client.work_release(unit).await {
            Ok(ReleaseOutcome::Released) => return Ok::<(), ControlError>(()),
            Ok(ReleaseOutcome::Pending) => {
                tracing::debug!(node, unit, "release pending; force-releasing");
            }
            Err(e) => tracing::debug!(node, unit, error = %e, "release failed; force-releasing"),
        }
        let mut client =
            ControlClient::connect_unix_with(&settings.socket, options(RELEASE_TIMEOUT)).await?;
        client.work_force_release(unit).await.map(|_| ())
    };
    match tokio::time::timeout(RELEASE_TIMEOUT * 2, attempt).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(node, unit, error = %e, "cannot release health-check unit"),
        Err(_) => tracing::warn!(node, unit, "releasing the health-check unit timed out"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tails_are_quoted_and_cut() {
        assert_eq!(describe_tail("  \n"), "");
        assert_eq!(
            describe_tail("Traceback\nboom\n"),
            "; output ends with: \"Traceback\\nboom\""
        );
        let long = "x".repeat(2000) + "END";
        let t = describe_tail(&long);
        assert!(t.ends_with("END\"") && t.len() < 600, "{t}");
    }
}
