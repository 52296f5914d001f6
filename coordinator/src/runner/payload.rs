//! Builds a job's controller→worker stream: a private data dir (project, inventory, extra vars)
//! streamed as ansible-runner's `transmit` would, into a file the submit then sends.
//!
//! Each kind of work differs only in its kwargs and in whether it carries a project: a playbook
//! job and an inventory update (whose source lives in the project) do, an ad hoc command does not.
//! A project update carries only the embedded checkout playbook (see `project_update`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use meshrun_shared::runner_stream::{RunnerKwargs, write_transmit_stream};
use serde_json::{Map, Value};

use super::project_update;
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
    /// The stored row lacks a field its kind needs (a corrupt or foreign row).
    #[error("the {kind} has no {field}")]
    Missing {
        /// The kind of work.
        kind: JobKind,
        /// The missing field.
        field: &'static str,
    },
}

/// The file an inventory update's `ansible-inventory` writes in the worker's artifacts dir.
pub const INVENTORY_OUTPUT: &str = "output.json";

/// The kwargs `ansible-runner worker` receives for a job (extra vars travel in `env/`);
/// `project_cache` is where project updates check out.
pub fn kwargs(job: &Job, project_cache: &Path) -> Result<RunnerKwargs, PayloadError> {
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
        // As AWX: `ansible-inventory --list --export` against the source file in the project,
        // its output written into the worker's artifacts dir so it comes back in the artifacts
        // zip. The worker prefixes `inventory` with its private data dir; the command runs in
        // `<pdd>/project` (`/runner/project` in a container), so the output path is relative.
        JobKind::InventoryUpdate => {
            let source = job
                .inventory_source
                .clone()
                .ok_or_else(|| missing("inventory_source"))?;
            RunnerKwargs {
                binary: Some("ansible-inventory".into()),
                inventory: Some(format!("project/{source}")),
                cmdline: Some(format!(
                    "--list --export --output ../artifacts/{}/{INVENTORY_OUTPUT}",
                    base.ident
                )),
                // A source that cannot be parsed fails the run instead of yielding an empty
                // inventory that would replace the stored hosts.
                envvars: Some(BTreeMap::from([(
                    "ANSIBLE_INVENTORY_UNPARSED_FAILED".to_string(),
                    "True".to_string(),
                )])),
                forks: None,
                ..base
            }
        }
        JobKind::ProjectUpdate => {
            let project = job.project_id.ok_or_else(|| missing("project_id"))?;
            let dir = project_update::project_dir(project_cache, project);
            RunnerKwargs {
                playbook: Some(project_update::PLAYBOOK_NAME.to_string()),
                container_volume_mounts: Some(project_update::mounts(&stored_vars(job)?, &dir)),
                ..base
            }
        }
    })
}

/// Whether the kind's private data dir carries the project.
fn carries_project(kind: JobKind) -> bool {
    matches!(kind, JobKind::Job | JobKind::InventoryUpdate)
}

fn stored_vars(job: &Job) -> Result<Map<String, Value>, PayloadError> {
    serde_json::from_str(&job.extra_vars).map_err(|e| PayloadError::ExtraVars(e.to_string()))
}

/// Writes `<job_dir>/transmit.stream` and returns its path. Blocking.
pub fn build(
    projects: &ProjectStore,
    project_cache: &Path,
    job: &Job,
    job_dir: &Path,
) -> Result<PathBuf, PayloadError> {
    if job_dir.exists() {
        std::fs::remove_dir_all(job_dir)?;
    }
    let pdd = job_dir.join("pdd");
    std::fs::create_dir_all(pdd.join("inventory"))?;
    std::fs::create_dir_all(pdd.join("env"))?;
    if carries_project(job.kind) {
        projects.extract(&job.project_sha256, &pdd.join("project"))?;
    }
    let mut extra = stored_vars(job)?;
    if job.kind == JobKind::ProjectUpdate {
        let project = job.project_id.ok_or(PayloadError::Missing {
            kind: job.kind,
            field: "project_id",
        })?;
        let dir = project_update::project_dir(project_cache, project);
        project_update::prepare(&dir)?;
        std::fs::create_dir_all(pdd.join("project"))?;
        std::fs::write(
            pdd.join("project").join(project_update::PLAYBOOK_NAME),
            project_update::PLAYBOOK,
        )?;
        extra = project_update::extra_vars(extra, &dir);
    }
    std::fs::write(pdd.join("inventory").join("hosts"), &job.inventory)?;
    if !extra.is_empty() {
        std::fs::write(
            pdd.join("env").join("extravars"),
            serde_json::to_vec(&extra).map_err(|e| PayloadError::ExtraVars(e.to_string()))?,
        )?;
    }
    let stream_path = job_dir.join("transmit.stream");
    let file = std::io::BufWriter::new(std::fs::File::create(&stream_path)?);
    write_transmit_stream(
        file,
        &kwargs(job, project_cache)?.to_map(),
        Some(&pdd),
        None,
    )
    .map_err(|e| PayloadError::Encode(e.to_string()))?;
    std::fs::remove_dir_all(&pdd)?;
    Ok(stream_path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::JobStatus;

    fn job(kind: JobKind) -> Job {
        Job {
            id: 42,
            kind,
            name: "n".into(),
            status: JobStatus::Waiting,
            cancel_flag: false,
            playbook: String::new(),
            project_sha256: "0".repeat(64),
            inventory: String::new(),
            extra_vars: "{}".into(),
            limit: None,
            forks: Some(9),
            verbosity: Some(1),
            requested_node: None,
            task_impact: 1,
            instance_group: "default".into(),
            host_count: None,
            execution_environment: None,
            controller_node: None,
            execution_node: None,
            execution_route: None,
            work_unit_id: None,
            result_offset: 0,
            job_explanation: String::new(),
            result_traceback: String::new(),
            rc: None,
            created: String::new(),
            started: None,
            finished: None,
            module_name: None,
            module_args: None,
            become_enabled: false,
            inventory_id: Some(3),
            inventory_source: Some("inv/hosts.py".into()),
            project_id: None,
            scm_revision: None,
        }
    }

    #[test]
    fn an_inventory_update_runs_ansible_inventory_into_its_artifacts() {
        let kw = kwargs(&job(JobKind::InventoryUpdate), Path::new("/cache"))
            .unwrap()
            .to_map();
        assert_eq!(kw["binary"], "ansible-inventory");
        assert_eq!(kw["inventory"], "project/inv/hosts.py");
        assert_eq!(
            kw["cmdline"],
            "--list --export --output ../artifacts/42/output.json"
        );
        assert_eq!(kw["envvars"]["ANSIBLE_INVENTORY_UNPARSED_FAILED"], "True");
        // ansible-inventory has no --forks.
        assert!(kw.get("forks").is_none(), "{kw:?}");
        let mut no_source = job(JobKind::InventoryUpdate);
        no_source.inventory_source = None;
        assert!(matches!(
            kwargs(&no_source, Path::new("/cache")),
            Err(PayloadError::Missing {
                field: "inventory_source",
                ..
            })
        ));
    }
}
