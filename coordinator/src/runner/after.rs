//! What the coordinator does with a unit that succeeded, by kind of work, before the job is
//! marked successful: playbook jobs and ad hoc commands need nothing more; an inventory update
//! imports the inventory its artifacts hold; a project update stores the revision it checked out.
//! A failure here ends the job as `error` and changes nothing stored.

use std::io::Read;
use std::path::Path;

use crate::inventories::{self, MAX_LIST_BYTES};
use crate::store::{Job, JobKind};

use super::JobRunner;
use super::payload::INVENTORY_OUTPUT;

/// Applies a successful unit's result. `Err` holds the explanation the job ends with.
pub(super) async fn on_success(
    runner: &JobRunner,
    job: &Job,
    job_dir: &Path,
) -> Result<(), String> {
    match job.kind {
        JobKind::Job | JobKind::AdHocCommand => Ok(()),
        JobKind::InventoryUpdate => import_inventory(runner, job, job_dir).await,
        JobKind::ProjectUpdate => {
            super::project_update::store_revision(
                &runner.inner.store,
                &runner.inner.projects,
                &runner.inner.project_cache,
                job,
            )
            .await
        }
    }
}

/// Reads `ansible-inventory`'s output from the artifacts and replaces the inventory's content
/// with it in one transaction.
async fn import_inventory(runner: &JobRunner, job: &Job, job_dir: &Path) -> Result<(), String> {
    let Some(inventory_id) = job.inventory_id else {
        return Err("the inventory update names no inventory".into());
    };
    let path = job_dir.join("artifacts").join(INVENTORY_OUTPUT);
    let content = tokio::task::spawn_blocking(move || read_output(&path))
        .await
        .map_err(|e| format!("reading the inventory output failed: {e}"))??;
    let hosts = content.hosts.len();
    let replaced = runner
        .inner
        .store
        .replace_inventory_content(inventory_id, &content, Some(job.id))
        .await
        .map_err(|e| format!("cannot store the updated inventory: {e}"))?;
    if !replaced {
        return Err(format!(
            "inventory {inventory_id} no longer exists; nothing was imported"
        ));
    }
    tracing::info!(
        job_id = job.id,
        inventory_id,
        hosts,
        "inventory replaced by its update"
    );
    Ok(())
}

/// The output file's content, checked: a regular file of at most [`MAX_LIST_BYTES`] in the
/// `--list` shape.
fn read_output(path: &Path) -> Result<inventories::InventoryContent, String> {
    let meta = std::fs::symlink_metadata(path).map_err(|e| {
        format!(
            "ansible-inventory left no {INVENTORY_OUTPUT} in the job's artifacts ({e}); the \
             inventory is unchanged"
        )
    })?;
    if !meta.is_file() {
        return Err(format!(
            "{INVENTORY_OUTPUT} in the job's artifacts is not a regular file; the inventory is unchanged"
        ));
    }
    let file =
        std::fs::File::open(path).map_err(|e| format!("cannot open {INVENTORY_OUTPUT}: {e}"))?;
    let mut bytes = Vec::new();
    file.take(MAX_LIST_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read {INVENTORY_OUTPUT}: {e}"))?;
    inventories::parse_list(&bytes).map_err(|e| {
        format!("the inventory update's output was refused: {e}; the inventory is unchanged")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_must_be_a_regular_file_in_the_list_shape() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(INVENTORY_OUTPUT);
        assert!(read_output(&p).unwrap_err().contains("left no output.json"));
        std::fs::write(&p, b"{\"g\": {\"hosts\": [\"a\"]}}").unwrap();
        assert_eq!(read_output(&p).unwrap().hosts.len(), 1);
        std::fs::write(&p, b"{\"g\": {\"hosts\": \"a\"}}").unwrap();
        assert!(read_output(&p).unwrap_err().contains("refused"));
        std::fs::remove_file(&p).unwrap();
        std::fs::write(dir.path().join("real"), b"{}").unwrap();
        std::os::unix::fs::symlink(dir.path().join("real"), &p).unwrap();
        assert!(read_output(&p).unwrap_err().contains("not a regular file"));
    }
}
