//! Runs a job in a podman container of its execution-environment image:
//! `podman run --rm -i --init --pull=<policy> --name/--label <node+unit> ... <image>
//! ansible-runner worker --private-data-dir=/runner --delete`. The first line of the stream
//! (kwargs) is rewritten; the rest passes through to the container untouched.

use std::process::{ExitCode, ExitStatus, Stdio};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

use super::container_policy::{self, ContainerPlan};
use super::fail_before_start;
use super::job_kwargs::{self, JobRequest};
use super::params::RunParams;
use super::supervise::{Canceller, supervise};
use super::unit::UnitIdentity;
use crate::settings::{AgentSettings, PodmanSettings};

/// The private data dir inside the container: AWX writes `/runner` paths into env and args.
const INNER_PRIVATE_DATA_DIR: &str = "/runner";
/// Label keys on every job container.
pub const LABEL_NODE: &str = "io.meshrun.node";
/// The receptor unit id.
pub const LABEL_UNIT: &str = "io.meshrun.unit";
/// The receptor unit's directory, so leftovers can be checked against its status file.
pub const LABEL_UNIT_DIR: &str = "io.meshrun.unit-dir";

/// A `podman` command with the node's containers.conf.
pub fn podman(settings: &PodmanSettings) -> Command {
    let mut cmd = Command::new(&settings.executable);
    if let Some(conf) = &settings.containers_conf {
        cmd.env("CONTAINERS_CONF", conf);
    }
    cmd
}

/// The container name of a unit.
pub fn container_name(node: &str, unit: &str) -> String {
    format!("meshrun-{node}-{unit}")
}

/// Runs one job in podman.
pub async fn run_job(
    settings: &AgentSettings,
    unit: &UnitIdentity,
    params: &RunParams,
) -> ExitCode {
    let mut input = BufReader::with_capacity(64 * 1024, tokio::io::stdin());
    let first = match read_first_line(&mut input, settings.worker.max_line_bytes).await {
        Ok(line) => line,
        Err(e) => return fail_before_start(&format!("meshrun-agent cannot read the job: {e}")),
    };
    let request = match job_kwargs::rewrite(&first, settings.podman.default_image.as_deref()) {
        Ok(r) => r,
        Err(e) => return fail_before_start(&format!("meshrun-agent refused the job: {e}")),
    };
    if request.had_auth_data {
        tracing::info!(
            "the job carries registry credentials; they are not used (images are never pulled with them)"
        );
    }
    let plan = match container_policy::plan(&request.options, &request.mounts, &settings.podman) {
        Ok(p) => p,
        Err(e) => return fail_before_start(&format!("meshrun-agent refused the job: {e}")),
    };
    for note in &plan.notes {
        tracing::info!("{note}");
    }
    let node = unit
        .node_id
        .as_ref()
        .map(|n| n.to_string())
        .unwrap_or_else(|| "unknown".into());
    let name = container_name(&node, &unit.unit_id);
    let mut cmd = podman(&settings.podman);
    cmd.args(run_args(
        settings, unit, &node, &name, &request, &plan, params,
    ))
    .stdin(Stdio::piped())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .kill_on_drop(true);
    tracing::info!(container = %name, image = %request.image, network = %plan.network, "starting the job container");
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            return fail_before_start(&format!(
                "meshrun-agent cannot start {}: {e}",
                settings.podman.executable.display()
            ));
        }
    };
    let Some(mut to_container) = child.stdin.take() else {
        return fail_before_start("meshrun-agent lost the container's stdin");
    };
    let kwargs_line = request.kwargs_line.clone();
    tokio::spawn(async move {
        let fed = async {
            to_container.write_all(&kwargs_line).await?;
            tokio::io::copy_buf(&mut input, &mut to_container).await?;
            to_container.shutdown().await
        };
        if let Err(e) = fed.await {
            tracing::warn!(error = %e, "could not pass the whole job stream to the container");
        }
    });
    let mut canceller = PodmanCancel {
        settings: settings.podman.clone(),
        name,
    };
    supervise(child, settings.worker.max_line_bytes, &mut canceller).await
}

/// Reads the first line (bounded), newline included.
async fn read_first_line(
    input: &mut BufReader<tokio::io::Stdin>,
    max: usize,
) -> std::io::Result<Vec<u8>> {
    let mut line = Vec::new();
    let limit = u64::try_from(max).unwrap_or(u64::MAX);
    let n = (&mut *input)
        .take(limit)
        .read_until(b'\n', &mut line)
        .await?;
    if n == 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "the stream is empty",
        ));
    }
    if line.last() != Some(&b'\n') {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("the kwargs line is longer than {max} bytes or has no end"),
        ));
    }
    Ok(line)
}

fn run_args(
    settings: &AgentSettings,
    unit: &UnitIdentity,
    node: &str,
    name: &str,
    request: &JobRequest,
    plan: &ContainerPlan,
    params: &RunParams,
) -> Vec<String> {
    let mut args: Vec<String> = [
        "run",
        "--rm",
        "--interactive",
        "--init",
        "--log-driver=none",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.push(format!("--pull={}", plan.pull));
    args.push(format!("--name={name}"));
    args.push(format!("--label={LABEL_NODE}={node}"));
    args.push(format!("--label={LABEL_UNIT}={}", unit.unit_id));
    if let Some(dir) = &unit.unit_dir {
        args.push(format!("--label={LABEL_UNIT_DIR}={}", dir.display()));
    }
    args.push(format!("--network={}", plan.network));
    let limits = &settings.limits;
    if let Some(m) = limits.memory {
        args.push(format!("--memory={}", m.0));
    }
    if let Some(c) = limits.cpus {
        args.push(format!("--cpus={c}"));
    }
    if let Some(p) = limits.pids {
        args.push(format!("--pids-limit={p}"));
    }
    args.push(format!("--env=MESHRUN_NODE_ID={node}"));
    args.push(format!("--env=MESHRUN_UNIT_ID={}", unit.unit_id));
    args.extend(plan.flags.iter().cloned());
    for m in &plan.mounts {
        args.push(format!("--volume={m}"));
    }
    args.push(request.image.clone());
    args.extend([
        "ansible-runner".to_string(),
        "worker".to_string(),
        format!("--private-data-dir={INNER_PRIVATE_DATA_DIR}"),
        "--delete".to_string(),
    ]);
    if let Some(k) = params.keepalive_seconds {
        args.push(format!("--keepalive-seconds={k}"));
    }
    args
}

/// Cancels by `podman stop -t N` (ansible-runner reports `canceled`), then `podman kill`.
struct PodmanCancel {
    settings: PodmanSettings,
    name: String,
}

impl PodmanCancel {
    fn spawn(&self, args: &[&str]) {
        let mut cmd = podman(&self.settings);
        cmd.args(args)
            .arg(&self.name)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        match cmd.spawn() {
            Ok(mut c) => {
                tokio::spawn(async move {
                    let _ = c.wait().await;
                });
            }
            Err(e) => tracing::error!(error = %e, "cannot run podman to stop the job"),
        }
    }
}

impl Canceller for PodmanCancel {
    fn cancel(&mut self, _child: &Child) {
        let timeout = self.settings.stop_timeout_secs.to_string();
        self.spawn(&["stop", "--time", &timeout]);
    }

    fn force(&mut self, child: &mut Child) {
        self.spawn(&["kill"]);
        let _ = child.start_kill();
    }

    fn grace(&self) -> Duration {
        Duration::from_secs(self.settings.stop_timeout_secs + 2)
    }

    fn explain(&self, status: &ExitStatus) -> Option<String> {
        // podman run's own exit codes (podman-run(1)); the container's stderr is the traceback.
        let why = match status.code()? {
            125 => "podman could not run the job's container",
            126 => "the job's container could not invoke ansible-runner",
            127 => "the job's container has no ansible-runner",
            137 => "the job's container was killed",
            _ => return None,
        };
        Some(format!("{why} (podman exit code {})", status.code()?))
    }
}
