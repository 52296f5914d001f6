//! Jobs that wait for their project: a job launched from a git project whose stored revision
//! was stale has no archive yet (`project_sha256` empty) and waits for the project's update.
//! Each cycle looks at that update: still active → the job stays pending and is not placed;
//! successful → the job gets the archive and revision it will run (and is placed if its
//! playbook is in that revision); ended otherwise → the job ends as `error` naming the update.

use crate::runner::JobRunner;
use crate::store::{Job, JobKind, JobStatus, Store, StoreError};

/// Whether the job still needs its project's archive.
pub fn waits_for_project(job: &Job) -> bool {
    job.kind == JobKind::Job && job.project_id.is_some() && job.project_sha256.is_empty()
}

/// What to do with a waiting job.
enum Wait {
    /// Keep it pending with this reason.
    Pending(String),
    /// It may be placed now (archive filled in).
    Ready(Box<Job>),
    /// End it as `error`.
    Fail(String),
}

/// The pending jobs that may be placed now: those that wait for no project, and those whose
/// project update succeeded (filled in here). The others are left pending or ended.
pub async fn resolve(
    store: &Store,
    runner: &JobRunner,
    pending: Vec<Job>,
) -> Result<Vec<Job>, StoreError> {
    let mut placeable = Vec::with_capacity(pending.len());
    for job in pending {
        if !waits_for_project(&job) {
            placeable.push(job);
            continue;
        }
        match decide(store, runner, &job).await? {
            Wait::Ready(job) => placeable.push(*job),
            Wait::Pending(reason) => {
                if job.job_explanation != reason {
                    store.set_pending_reason(job.id, &reason).await?;
                }
            }
            Wait::Fail(explanation) => runner.fail_pending(&job, explanation).await,
        }
    }
    Ok(placeable)
}

async fn decide(store: &Store, runner: &JobRunner, job: &Job) -> Result<Wait, StoreError> {
    let Some(project_id) = job.project_id else {
        return Ok(Wait::Fail("the job names no project".into()));
    };
    let Some(project) = store.project(project_id).await? else {
        return Ok(Wait::Fail(format!("project {project_id} no longer exists")));
    };
    let Some(update_id) = project.last_update_id else {
        return Ok(Wait::Fail(format!(
            "project {project_id} has no project update to wait for"
        )));
    };
    let Some(update) = store.job(update_id).await? else {
        return Ok(Wait::Fail(format!("project update {update_id} vanished")));
    };
    match update.status {
        s if !s.is_final() => Ok(Wait::Pending(format!(
            "waiting for project update {update_id}"
        ))),
        JobStatus::Successful => {
            if project.archive_sha256.is_empty() {
                return Ok(Wait::Fail(format!(
                    "project update {update_id} stored no revision of project {project_id}"
                )));
            }
            let files = match runner.projects().get(&project.archive_sha256) {
                Ok(a) => a.files,
                Err(e) => return Ok(Wait::Fail(format!("project {project_id}: {e}"))),
            };
            if !files.contains(&job.playbook) {
                return Ok(Wait::Fail(format!(
                    "playbook {:?} is not in revision {} of project {project_id}",
                    job.playbook, project.scm_revision
                )));
            }
            let revision =
                (!project.scm_revision.is_empty()).then_some(project.scm_revision.as_str());
            if !store
                .fill_job_project(job.id, &project.archive_sha256, revision)
                .await?
            {
                // Changed meanwhile (canceled, say): the next cycle sees it as it is.
                return Ok(Wait::Pending(String::new()));
            }
            match store.job(job.id).await? {
                Some(j) if j.status == JobStatus::Pending => Ok(Wait::Ready(Box::new(j))),
                _ => Ok(Wait::Pending(String::new())),
            }
        }
        other => Ok(Wait::Fail(format!(
            "project update {update_id} ended {other}: {}",
            if update.job_explanation.is_empty() {
                "see its output"
            } else {
                &update.job_explanation
            }
        ))),
    }
}
