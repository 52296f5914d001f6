//! What the coordinator does with a unit that succeeded, by kind of work, before the job is
//! marked successful: playbook jobs and ad hoc commands need nothing more; an inventory update
//! imports the inventory its artifacts hold; a project update stores the revision it checked out.
//! A failure here ends the job as `error` and changes nothing stored.

use std::path::Path;

use crate::store::{Job, JobKind};

use super::JobRunner;

/// Applies a successful unit's result. `Err` holds the explanation the job ends with.
pub(super) async fn on_success(
    _runner: &JobRunner,
    job: &Job,
    _job_dir: &Path,
) -> Result<(), String> {
    match job.kind {
        JobKind::Job | JobKind::AdHocCommand => Ok(()),
        JobKind::InventoryUpdate | JobKind::ProjectUpdate => Err(format!(
            "applying the result of a {} is not implemented",
            job.kind
        )),
    }
}
