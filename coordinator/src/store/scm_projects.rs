//! Project rows: an uploaded archive or a git repository, the revision last stored for it, and
//! the project update that refreshes it. (Named apart from `crate::projects`, which stores the
//! archives themselves.)

use std::fmt;
use std::str::FromStr;

use serde::Serialize;
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use super::jobs::{insert_job, job_from_row};
use super::{Job, JobStatus, NewJob, Page, Store, StoreError, now};

/// Where a project's files come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ScmType {
    /// A git repository, checked out by project updates.
    Git,
    /// An uploaded archive (no updates).
    Archive,
}

impl ScmType {
    /// The stored and API name.
    pub fn as_str(self) -> &'static str {
        match self {
            ScmType::Git => "git",
            ScmType::Archive => "archive",
        }
    }
}

impl fmt::Display for ScmType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ScmType {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "git" => Ok(ScmType::Git),
            "archive" => Ok(ScmType::Archive),
            _ => Err(format!("unknown scm_type {s:?} (one of: git, archive)")),
        }
    }
}

/// What a caller gives to create a project.
#[derive(Debug, Clone)]
pub struct NewProject {
    /// Unique name.
    pub name: String,
    /// git or archive.
    pub scm_type: ScmType,
    /// git: the repository URL.
    pub scm_url: String,
    /// git: branch, tag or commit (empty: the remote's HEAD).
    pub scm_branch: String,
    /// archive: the stored archive's sha256.
    pub archive_sha256: String,
    /// Seconds a stored revision stays fresh for jobs.
    pub update_cache_timeout: i64,
}

/// A stored project.
#[derive(Debug, Clone, Serialize)]
pub struct Project {
    /// Integer id.
    pub id: i64,
    /// Unique name.
    pub name: String,
    /// git or archive.
    pub scm_type: ScmType,
    /// git: the repository URL.
    pub scm_url: String,
    /// git: branch, tag or commit (empty: the remote's HEAD).
    pub scm_branch: String,
    /// sha256 of the stored archive of the current revision (empty before the first update).
    pub archive_sha256: String,
    /// The commit that archive holds (empty for archive projects and before the first update).
    pub scm_revision: String,
    /// The latest project update started for it.
    pub last_update_id: Option<i64>,
    /// When a project update last stored a revision (RFC 3339).
    pub last_updated: Option<String>,
    /// Seconds a stored revision stays fresh for jobs; 0 updates before every job.
    pub update_cache_timeout: i64,
    /// Created (RFC 3339).
    pub created: String,
    /// Last changed (RFC 3339).
    pub modified: String,
}

impl Project {
    /// Whether a job may use the stored revision as it is at `now`: always for an archive
    /// project; for a git project only if an update stored a revision less than
    /// `update_cache_timeout` seconds ago.
    pub fn is_fresh(&self, now: chrono::DateTime<chrono::Utc>) -> bool {
        if self.scm_type == ScmType::Archive {
            return true;
        }
        if self.archive_sha256.is_empty() {
            return false;
        }
        let Some(last) = self
            .last_updated
            .as_deref()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        else {
            return false;
        };
        (now - last.with_timezone(&chrono::Utc)).num_seconds() < self.update_cache_timeout
    }
}

fn project_from_row(row: &SqliteRow) -> Result<Project, StoreError> {
    let scm_type: String = row.try_get("scm_type")?;
    let scm_type = scm_type.parse().map_err(|_| StoreError::Invalid {
        what: "project scm_type",
        value: scm_type.clone(),
    })?;
    Ok(Project {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        scm_type,
        scm_url: row.try_get("scm_url")?,
        scm_branch: row.try_get("scm_branch")?,
        archive_sha256: row.try_get("archive_sha256")?,
        scm_revision: row.try_get("scm_revision")?,
        last_update_id: row.try_get("last_update_id")?,
        last_updated: row.try_get("last_updated")?,
        update_cache_timeout: row.try_get("update_cache_timeout")?,
        created: row.try_get("created")?,
        modified: row.try_get("modified")?,
    })
}

/// How often starting an update retries when another one raced it.
const START_UPDATE_TRIES: usize = 5;

impl Store {
    /// Stores a new project; `None` when the name is taken.
    pub async fn create_project(&self, new: &NewProject) -> Result<Option<Project>, StoreError> {
        let stamp = now();
        let row = sqlx::query(
            "INSERT INTO projects (name, scm_type, scm_url, scm_branch, archive_sha256, \
             update_cache_timeout, created, modified, last_updated) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $7, CASE WHEN $5 = '' THEN NULL ELSE $7 END) \
             ON CONFLICT (name) DO NOTHING RETURNING *",
        )
        .bind(&new.name)
        .bind(new.scm_type.as_str())
        .bind(&new.scm_url)
        .bind(&new.scm_branch)
        .bind(&new.archive_sha256)
        .bind(new.update_cache_timeout)
        .bind(&stamp)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(project_from_row).transpose()
    }

    /// One project.
    pub async fn project(&self, id: i64) -> Result<Option<Project>, StoreError> {
        let row = sqlx::query("SELECT * FROM projects WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(project_from_row).transpose()
    }

    /// A page of projects by id.
    pub async fn list_projects(
        &self,
        limit: i64,
        offset: i64,
    ) -> Result<Page<Project>, StoreError> {
        let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM projects")
            .fetch_one(&self.pool)
            .await?;
        let rows = sqlx::query("SELECT * FROM projects ORDER BY id LIMIT $1 OFFSET $2")
            .bind(limit)
            .bind(offset)
            .fetch_all(&self.pool)
            .await?;
        let results = rows
            .iter()
            .map(project_from_row)
            .collect::<Result<_, _>>()?;
        Ok(Page { count, results })
    }

    /// The project's active update if it has one, else a new `pending` one made from `new`
    /// (recorded as the project's `last_update_id`). The bool says whether it was created.
    /// `None` when the project does not exist.
    pub async fn start_project_update(
        &self,
        project_id: i64,
        new: &NewJob,
    ) -> Result<Option<(Job, bool)>, StoreError> {
        for _ in 0..START_UPDATE_TRIES {
            let mut tx = self.pool.begin().await?;
            let last: Option<Option<i64>> =
                sqlx::query_scalar("SELECT last_update_id FROM projects WHERE id = $1")
                    .bind(project_id)
                    .fetch_optional(&mut *tx)
                    .await?;
            let Some(last) = last else {
                return Ok(None);
            };
            if let Some(last) = last {
                let row = sqlx::query("SELECT * FROM jobs WHERE id = $1")
                    .bind(last)
                    .fetch_optional(&mut *tx)
                    .await?;
                if let Some(job) = row.as_ref().map(job_from_row).transpose()?
                    && !job.status.is_final()
                {
                    tx.commit().await?;
                    return Ok(Some((job, false)));
                }
            }
            let job = insert_job(&mut *tx, new).await?;
            // Conditional on the id read above: a concurrent start makes this a no-op, and the
            // loop then finds that one's update.
            let moved = sqlx::query(
                "UPDATE projects SET last_update_id = $1, modified = $2 \
                 WHERE id = $3 AND last_update_id IS $4",
            )
            .bind(job.id)
            .bind(now())
            .bind(project_id)
            .bind(last)
            .execute(&mut *tx)
            .await?;
            if moved.rows_affected() == 1 {
                tx.commit().await?;
                return Ok(Some((job, true)));
            }
            tx.rollback().await?;
        }
        Err(StoreError::Invalid {
            what: "project update start (too many concurrent starts)",
            value: project_id.to_string(),
        })
    }

    /// Records what a successful project update stored: the project's archive, revision and
    /// update time, and the update's own `scm_revision`, together.
    pub async fn record_project_revision(
        &self,
        project_id: i64,
        update_id: i64,
        archive_sha256: &str,
        scm_revision: &str,
    ) -> Result<(), StoreError> {
        let stamp = now();
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "UPDATE projects SET archive_sha256 = $1, scm_revision = $2, last_updated = $3, \
             modified = $3 WHERE id = $4",
        )
        .bind(archive_sha256)
        .bind(scm_revision)
        .bind(&stamp)
        .bind(project_id)
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE jobs SET scm_revision = $1 WHERE id = $2")
            .bind(scm_revision)
            .bind(update_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Gives a pending job that waited for its project the archive and revision it will run.
    /// Returns false (changing nothing) unless the job is still pending without an archive.
    pub async fn fill_job_project(
        &self,
        job_id: i64,
        archive_sha256: &str,
        scm_revision: Option<&str>,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE jobs SET project_sha256 = $1, scm_revision = $2, job_explanation = '' \
             WHERE id = $3 AND status = $4 AND project_sha256 = ''",
        )
        .bind(archive_sha256)
        .bind(scm_revision)
        .bind(job_id)
        .bind(JobStatus::Pending.as_str())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::JobKind;

    fn git(name: &str) -> NewProject {
        NewProject {
            name: name.into(),
            scm_type: ScmType::Git,
            scm_url: "https://example.com/r.git".into(),
            scm_branch: String::new(),
            archive_sha256: String::new(),
            update_cache_timeout: 60,
        }
    }

    #[tokio::test]
    async fn an_active_update_is_reused_and_a_revision_makes_the_project_fresh() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("t.db")).await.unwrap();
        let p = s.create_project(&git("p")).await.unwrap().unwrap();
        assert!(s.create_project(&git("p")).await.unwrap().is_none());
        assert!(!p.is_fresh(chrono::Utc::now()));
        let new = NewJob {
            kind: JobKind::ProjectUpdate,
            project_id: Some(p.id),
            extra_vars: "{}".into(),
            ..NewJob::default()
        };
        let (u1, created) = s.start_project_update(p.id, &new).await.unwrap().unwrap();
        assert!(created);
        let (u2, created) = s.start_project_update(p.id, &new).await.unwrap().unwrap();
        assert!(!created);
        assert_eq!(u1.id, u2.id);
        assert!(s.start_project_update(999, &new).await.unwrap().is_none());
        s.record_project_revision(p.id, u1.id, &"a".repeat(64), &"b".repeat(40))
            .await
            .unwrap();
        let p = s.project(p.id).await.unwrap().unwrap();
        assert_eq!(p.last_update_id, Some(u1.id));
        assert_eq!(p.scm_revision, "b".repeat(40));
        assert!(p.is_fresh(chrono::Utc::now()));
        assert!(!p.is_fresh(chrono::Utc::now() + chrono::Duration::seconds(61)));
        let u = s.job(u1.id).await.unwrap().unwrap();
        assert_eq!(u.scm_revision.as_deref(), Some("b".repeat(40).as_str()));
    }
}
