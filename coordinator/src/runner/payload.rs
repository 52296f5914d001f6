//! Builds a job's controller→worker stream: a private data dir (project, inventory, extra vars)
//! streamed as ansible-runner's `transmit` would, into a file the submit then sends.
//!
//! Each kind of work differs only in its kwargs and in whether it carries a project: a playbook
//! job and an inventory update (whose source lives in the project) do, an ad hoc command does not.

use std::path::{Path, PathBuf};

use meshrun_shared::runner_stream::{RunnerKwargs, write_transmit_stream};
use serde_json::{Map, Value};

use crate::projects::ProjectStore;
use crate::store::{Job, JobKind};

/// Why the payload could not be built.
#[derive(Debug, thiserror::Error)]
pub enum PayloadError {
    /// The project could not be unpacked.
    #[error(transparent)]
    Project(#[from] crate::projects::ProjectError),
    /// Writing the private data dir or the stream failed.
    #[error("cannot write the job payload: {0}")]
    Io(#[from] std::io::Error),
    /// The encoder failed.
    #[error("cannot encode the job payload: {0}")]
    Encode(String),
    /// Stored extra vars are not a JSON object.
    #[error("extra vars are not a JSON object: {0}")]
    ExtraVars(String),
    /// This kind of work cannot be run yet.
    #[error("running a {0} is not implemented")]
    Unsupported(JobKind),
    /// The stored row lacks a field its kind needs (a corrupt or foreign row).
    #[error("the {kind} has no {field}")]
    Missing {
        /// The kind of work.
        kind: JobKind,
        /// The missing field.
        field: &'static str,
    },
}

/// The kwargs `ansible-runner worker` receives for a job (extra vars travel in `env/`).
pub fn kwargs(job: &Job) -> Result<RunnerKwargs, PayloadError> {
    let base = RunnerKwargs {
        forks: job.forks.and_then(|f| u32::try_from(f).ok()),
        verbosity: job.verbosity.and_then(|v| u8::try_from(v).ok()),
        container_image: job.execution_environment.clone(),
        ..RunnerKwargs::new(job.id.to_string())
    };
    let missing = |field| PayloadError::Missing {
        kind: job.kind,
        field,
    };
    Ok(match job.kind {
        JobKind::Job => RunnerKwargs {
            playbook: Some(job.playbook.clone()),
            limit: job.limit.clone(),
            ..base
        },
        // As AWX: the ad hoc "limit" is the host pattern `ansible` runs against.
        JobKind::AdHocCommand => RunnerKwargs {
            module: Some(
                job.module_name
                    .clone()
                    .ok_or_else(|| missing("module_name"))?,
            ),
            module_args: job.module_args.clone().filter(|a| !a.is_empty()),
            host_pattern: Some(job.limit.clone().unwrap_or_else(|| "all".into())),
            cmdline: job.become_enabled.then(|| "--become".to_string()),
            ..base
        },
        JobKind::InventoryUpdate | JobKind::ProjectUpdate => {
            return Err(PayloadError::Unsupported(job.kind));
        }
    })
}

/// Whether the kind's private data dir carries the project.
fn carries_project(kind: JobKind) -> bool {
    matches!(kind, JobKind::Job | JobKind::InventoryUpdate)
}

/// Writes `<job_dir>/transmit.stream` and returns its path. Blocking.
pub fn build(projects: &ProjectStore, job: &Job, job_dir: &Path) -> Result<PathBuf, PayloadError> {
    if job_dir.exists() {
        std::fs::remove_dir_all(job_dir)?;
    }
    let pdd = job_dir.join("pdd");
    std::fs::create_dir_all(pdd.join("inventory"))?;
    std::fs::create_dir_all(pdd.join("env"))?;
    if carries_project(job.kind) {
        projects.extract(&job.project_sha256, &pdd.join("project"))?;
    }
    std::fs::write(pdd.join("inventory").join("hosts"), &job.inventory)?;
    let extra: Map<String, Value> = serde_json::from_str(&job.extra_vars)
        .map_err(|e| PayloadError::ExtraVars(e.to_string()))?;
    if !extra.is_empty() {
        std::fs::write(
            pdd.join("env").join("extravars"),
            serde_json::to_vec(&extra).map_err(|e| PayloadError::ExtraVars(e.to_string()))?,
        )?;
    }
    let stream_path = job_dir.join("transmit.stream");
    let file = std::io::BufWriter::new(std::fs::File::create(&stream_path)?);
    write_transmit_stream(file, &kwargs(job)?.to_map(), Some(&pdd), None)
        .map_err(|e| PayloadError::Encode(e.to_string()))?;
    std::fs::remove_dir_all(&pdd)?;
    Ok(stream_path)
}
