//! A project update's pieces on the coordinator's side: the playbook it runs (embedded), the
//! cache folder it checks out into (`<data_dir>/project_cache/<project id>/`: `checkout/` and
//! the `revision` file the playbook writes), the mounts its container needs, and storing the
//! checkout as a content-addressed archive once the unit succeeded.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::projects::ProjectStore;
use crate::scm_url;
use crate::store::{Job, Store};

/// The playbook, as placed in the update's private data dir.
pub const PLAYBOOK_NAME: &str = "project_update.yml";
/// Its text.
pub const PLAYBOOK: &str = include_str!("project_update.yml");
/// The update's inventory: only the control node itself.
pub const INVENTORY: &str = "localhost ansible_connection=local ansible_python_interpreter=\"{{ ansible_playbook_python }}\"\n";
/// The extra var naming the cache folder.
pub const DIR_VAR: &str = "meshrun_project_dir";

/// A project's cache folder below `cache_root`.
pub fn project_dir(cache_root: &Path, project_id: i64) -> PathBuf {
    cache_root.join(project_id.to_string())
}

/// The extra vars the playbook gets: the update's own (`scm_url`, `scm_branch`) plus the
/// cache folder.
pub fn extra_vars(mut vars: Map<String, Value>, dir: &Path) -> Map<String, Value> {
    vars.insert(DIR_VAR.into(), Value::from(dir.display().to_string()));
    vars
}

/// Mounts for podman mode, at the same paths as on the host so the playbook's paths hold in
/// both modes: the cache folder read-write and, for a `file://` URL, the repository read-only.
pub fn mounts(vars: &Map<String, Value>, dir: &Path) -> Vec<String> {
    let mut mounts = vec![format!("{0}:{0}:rw", dir.display())];
    let url = vars.get("scm_url").and_then(Value::as_str).unwrap_or("");
    if let Ok(scm_url::ScmUrl {
        local_path: Some(repo),
        ..
    }) = scm_url::check_url(url, true)
    {
        mounts.push(format!("{0}:{0}:ro", repo.display()));
    }
    mounts
}

/// Prepares the cache folder: created if missing, an earlier update's `revision` removed so
/// that only this run's can be read afterwards. Blocking.
pub fn prepare(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    match std::fs::remove_file(dir.join("revision")) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// A commit id as git prints it (sha1 or sha256, lowercase hex).
fn is_commit(s: &str) -> bool {
    (s.len() == 40 || s.len() == 64) && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Stores the checkout the update made as an archive and records it as the project's revision
/// (with the update's `scm_revision`). `Err` explains why nothing was recorded.
pub async fn store_revision(
    store: &Store,
    projects: &ProjectStore,
    cache_root: &Path,
    job: &Job,
) -> Result<(), String> {
    let project_id = job
        .project_id
        .ok_or("the project update names no project")?;
    let dir = project_dir(cache_root, project_id);
    let revision = std::fs::read_to_string(dir.join("revision"))
        .map_err(|e| format!("the project update wrote no revision file: {e}"))?;
    let revision = revision.trim().to_string();
    if !is_commit(&revision) {
        return Err(format!(
            "the project update recorded {revision:?}, which is not a commit id"
        ));
    }
    let checkout = dir.join("checkout");
    let projects = projects.clone();
    let stored = tokio::task::spawn_blocking(move || -> Result<_, String> {
        let bytes = crate::project_archive::pack_without(
            &checkout,
            Vec::new(),
            crate::project_archive::DEFAULT_LEVEL,
            &[".git"],
        )
        .map_err(|e| format!("cannot pack the checkout: {e}"))?;
        projects
            .put(&bytes)
            .map_err(|e| format!("cannot store the checkout as an archive: {e}"))
    })
    .await
    .map_err(|e| format!("packing task failed: {e}"))??;
    store
        .record_project_revision(project_id, job.id, &stored.sha256, &revision)
        .await
        .map_err(|e| format!("cannot record the project's revision: {e}"))?;
    tracing::info!(project_id, update = job.id, %revision, archive = %stored.sha256, "project revision stored");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_repository_is_mounted_read_only_next_to_the_cache() {
        let mut vars = Map::new();
        vars.insert("scm_url".into(), Value::from("file:///srv/git/r.git"));
        let dir = Path::new("/var/lib/meshrun/project_cache/3");
        assert_eq!(
            mounts(&vars, dir),
            [
                "/var/lib/meshrun/project_cache/3:/var/lib/meshrun/project_cache/3:rw",
                "/srv/git/r.git:/srv/git/r.git:ro"
            ]
        );
        vars.insert("scm_url".into(), Value::from("https://h/r.git"));
        assert_eq!(mounts(&vars, dir).len(), 1);
        assert_eq!(
            extra_vars(vars, dir)[DIR_VAR],
            "/var/lib/meshrun/project_cache/3"
        );
    }

    #[test]
    fn only_commit_ids_are_revisions() {
        assert!(is_commit(&"a".repeat(40)));
        assert!(!is_commit("main"));
        assert!(!is_commit(&"A".repeat(40)));
    }
}
