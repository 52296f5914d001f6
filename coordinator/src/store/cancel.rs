//! Cancel requests: setting a job's cancel flag, and ending a job that was never submitted at
//! once. Both are conditional updates on the job's status, so a cancel can never race the
//! scheduler or the runner into submitting a canceled job: the runner's `waiting` →
//! `submitting` step only moves a job that is still `waiting`.

use super::{Job, Store, StoreError, now};

/// What a cancel request did.
#[derive(Debug, Clone)]
pub enum CancelRequest {
    /// The job was `pending` or `waiting`: it is `canceled` now and no unit was ever submitted.
    EndedBeforeSubmit(Job),
    /// The job is `submitting` or `running`: its flag is set and its unit must be canceled.
    Flagged(Job),
    /// The job had already ended; nothing changed.
    AlreadyEnded(Job),
}

/// How often a request re-reads a job that moved on between two of its statements.
const ATTEMPTS: usize = 5;

impl Store {
    /// Sets job `id`'s cancel flag; a job not submitted yet ends `canceled` in the same
    /// statement, with `explanation`. `None`: no such job.
    pub async fn request_cancel(
        &self,
        id: i64,
        explanation: &str,
    ) -> Result<Option<CancelRequest>, StoreError> {
        for _ in 0..ATTEMPTS {
            let ended = sqlx::query(
                "UPDATE jobs SET cancel_flag = 1, status = 'canceled', finished = $1, \
                 job_explanation = $2 WHERE id = $3 AND status IN ('pending', 'waiting')",
            )
            .bind(now())
            .bind(explanation)
            .bind(id)
            .execute(&self.pool)
            .await?;
            if ended.rows_affected() == 1 {
                return Ok(self.job(id).await?.map(CancelRequest::EndedBeforeSubmit));
            }
            let flagged = sqlx::query(
                "UPDATE jobs SET cancel_flag = 1 \
                 WHERE id = $1 AND status IN ('submitting', 'running')",
            )
            .bind(id)
            .execute(&self.pool)
            .await?;
            let Some(job) = self.job(id).await? else {
                return Ok(None);
            };
            if flagged.rows_affected() == 1 {
                return Ok(Some(CancelRequest::Flagged(job)));
            }
            if job.status.is_final() {
                return Ok(Some(CancelRequest::AlreadyEnded(job)));
            }
            // The job changed status between the two statements (e.g. it was placed again):
            // try again from the start.
        }
        // Still moving: flag it whatever active status it is in; the runner sees the flag.
        sqlx::query(
            "UPDATE jobs SET cancel_flag = 1 WHERE id = $1 \
             AND status IN ('pending', 'waiting', 'submitting', 'running')",
        )
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(self.job(id).await?.map(|job| {
            if job.status.is_final() {
                CancelRequest::AlreadyEnded(job)
            } else {
                CancelRequest::Flagged(job)
            }
        }))
    }

    /// Whether a cancel was requested for job `id` (false for an unknown job).
    pub async fn cancel_requested(&self, id: i64) -> Result<bool, StoreError> {
        let flag: Option<bool> = sqlx::query_scalar("SELECT cancel_flag FROM jobs WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(flag.unwrap_or(false))
    }

    /// The job whose recorded work unit is `unit`, if any.
    pub async fn job_by_work_unit(&self, unit: &str) -> Result<Option<Job>, StoreError> {
        let row =
            sqlx::query("SELECT * FROM jobs WHERE work_unit_id = $1 ORDER BY id DESC LIMIT 1")
                .bind(unit)
                .fetch_optional(&self.pool)
                .await?;
        row.as_ref().map(super::jobs::job_from_row).transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{JobStatus, NewJob, StatusChange};

    async fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("t.db")).await.unwrap();
        (dir, s)
    }

    async fn job(s: &Store) -> Job {
        s.create_job(&NewJob {
            name: "j".into(),
            playbook: "p.yml".into(),
            project_sha256: "0".repeat(64),
            inventory: "localhost\n".into(),
            extra_vars: "{}".into(),
            instance_group: "default".into(),
            ..NewJob::default()
        })
        .await
        .unwrap()
    }

    #[tokio::test]
    async fn a_waiting_job_ends_at_once_and_can_no_longer_be_submitted() {
        let (_d, s) = store().await;
        let j = job(&s).await;
        assert!(
            s.transition(
                j.id,
                &[JobStatus::Pending],
                JobStatus::Waiting,
                &StatusChange::default()
            )
            .await
            .unwrap()
        );
        let r = s.request_cancel(j.id, "canceled early").await.unwrap();
        let Some(CancelRequest::EndedBeforeSubmit(ended)) = r else {
            panic!("{r:?}");
        };
        assert_eq!(ended.status, JobStatus::Canceled);
        assert!(ended.cancel_flag && ended.finished.is_some());
        assert_eq!(ended.job_explanation, "canceled early");
        // The runner's step to `submitting` no longer applies.
        assert!(
            !s.transition(
                j.id,
                &[JobStatus::Waiting],
                JobStatus::Submitting,
                &StatusChange::default()
            )
            .await
            .unwrap()
        );
        let again = s.request_cancel(j.id, "x").await.unwrap();
        assert!(
            matches!(again, Some(CancelRequest::AlreadyEnded(_))),
            "{again:?}"
        );
    }

    #[tokio::test]
    async fn a_running_job_is_flagged_and_keeps_running_until_its_unit_ends() {
        let (_d, s) = store().await;
        let j = job(&s).await;
        for (from, to) in [
            (JobStatus::Pending, JobStatus::Waiting),
            (JobStatus::Waiting, JobStatus::Submitting),
            (JobStatus::Submitting, JobStatus::Running),
        ] {
            assert!(
                s.transition(j.id, &[from], to, &StatusChange::default())
                    .await
                    .unwrap()
            );
        }
        s.set_work_unit(j.id, "Unit1").await.unwrap();
        assert!(!s.cancel_requested(j.id).await.unwrap());
        let r = s.request_cancel(j.id, "x").await.unwrap();
        let Some(CancelRequest::Flagged(flagged)) = r else {
            panic!("{r:?}");
        };
        assert_eq!(flagged.status, JobStatus::Running);
        assert_eq!(flagged.work_unit_id.as_deref(), Some("Unit1"));
        assert!(s.cancel_requested(j.id).await.unwrap());
        assert_eq!(
            s.job_by_work_unit("Unit1").await.unwrap().map(|j| j.id),
            Some(j.id)
        );
        assert!(s.job_by_work_unit("Other").await.unwrap().is_none());
        assert!(s.request_cancel(9999, "x").await.unwrap().is_none());
    }
}
