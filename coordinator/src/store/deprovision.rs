//! Deprovisioning state: the nodes being removed (`deprovisions`: deadline and what was done so
//! far) and the tombstones of removed nodes (`removed_nodes`).
//!
//! A removal starts with [`Store::begin_deprovision`] (the instance becomes `deprovisioning` and
//! disabled, so the scheduler places nothing more on it) and ends with
//! [`Store::finish_deprovision`], which deletes the instance row and writes its tombstone in one
//! transaction: there is no moment in which discovery could see the still-running node with
//! neither a row nor a tombstone and register it again. Jobs keep their `execution_node` text,
//! so their history outlives the instance.
//!
//! A tombstone stays until it is lifted ([`Store::clear_removed`], or the join flow in its own
//! transaction, `record_join`): that happens when the
//! node joins again with a fresh join token (a deliberate act of an admin), and nothing else
//! does.

use std::collections::HashSet;

use serde::Serialize;
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use super::{Instance, Job, NodeState, Store, StoreError, now};

/// A removal in progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Deprovision {
    /// The node being removed.
    pub hostname: String,
    /// Its instance id.
    pub instance_id: i64,
    /// Its node type.
    pub node_type: String,
    /// When the removal was first asked for (RFC 3339).
    pub requested_at: String,
    /// When jobs still running on it are canceled (RFC 3339).
    pub deadline: String,
    /// Pending jobs pinned to it that were ended `error`.
    pub pending_failed: i64,
    /// Jobs canceled because they still ran at the deadline.
    pub jobs_canceled: i64,
    /// Work units released by the removal (units the job runner released itself not counted).
    pub units_released: i64,
}

/// The tombstone of a removed node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RemovedNode {
    /// The node id.
    pub hostname: String,
    /// The type it had.
    pub node_type: String,
    /// When its removal was asked for.
    pub requested_at: String,
    /// When its instance row was deleted.
    pub removed_at: String,
    /// As in [`Deprovision`].
    pub pending_failed: i64,
    /// As in [`Deprovision`].
    pub jobs_canceled: i64,
    /// As in [`Deprovision`].
    pub units_released: i64,
}

/// A figure of a removal in progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeprovisionCount {
    /// Pending jobs pinned to the node, ended `error`.
    PendingFailed,
    /// Jobs canceled at the deadline.
    JobsCanceled,
    /// Work units released.
    UnitsReleased,
}

impl DeprovisionCount {
    fn column(self) -> &'static str {
        match self {
            DeprovisionCount::PendingFailed => "pending_failed",
            DeprovisionCount::JobsCanceled => "jobs_canceled",
            DeprovisionCount::UnitsReleased => "units_released",
        }
    }
}

fn deprovision_from_row(row: &SqliteRow) -> Result<Deprovision, StoreError> {
    Ok(Deprovision {
        hostname: row.try_get("hostname")?,
        instance_id: row.try_get("instance_id")?,
        node_type: row.try_get("node_type")?,
        requested_at: row.try_get("requested_at")?,
        deadline: row.try_get("deadline")?,
        pending_failed: row.try_get("pending_failed")?,
        jobs_canceled: row.try_get("jobs_canceled")?,
        units_released: row.try_get("units_released")?,
    })
}

fn removed_from_row(row: &SqliteRow) -> Result<RemovedNode, StoreError> {
    Ok(RemovedNode {
        hostname: row.try_get("hostname")?,
        node_type: row.try_get("node_type")?,
        requested_at: row.try_get("requested_at")?,
        removed_at: row.try_get("removed_at")?,
        pending_failed: row.try_get("pending_failed")?,
        jobs_canceled: row.try_get("jobs_canceled")?,
        units_released: row.try_get("units_released")?,
    })
}

impl Store {
    /// Starts removing instance `id`: it becomes `deprovisioning` and disabled, and its running
    /// jobs get until `deadline` (RFC 3339 as [`now`] writes it). Asking again keeps the
    /// earlier of the two deadlines. `None`: no such instance.
    pub async fn begin_deprovision(
        &self,
        id: i64,
        deadline: &str,
    ) -> Result<Option<(Instance, Deprovision)>, StoreError> {
        let Some(inst) = self
            .update_instance(id, |i| {
                i.node_state = NodeState::Deprovisioning;
                i.enabled = false;
            })
            .await?
        else {
            return Ok(None);
        };
        sqlx::query(
            "INSERT INTO deprovisions (hostname, instance_id, node_type, requested_at, deadline) \
             VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (hostname) DO UPDATE SET deadline = MIN(deadline, excluded.deadline)",
        )
        .bind(&inst.hostname)
        .bind(inst.id)
        .bind(inst.node_type.as_str())
        .bind(now())
        .bind(deadline)
        .execute(&self.pool)
        .await?;
        let dep = self
            .deprovision(&inst.hostname)
            .await?
            .ok_or_else(|| StoreError::Invalid {
                what: "removal just recorded",
                value: inst.hostname.clone(),
            })?;
        Ok(Some((inst, dep)))
    }

    /// The removal of `hostname` in progress, if any.
    pub async fn deprovision(&self, hostname: &str) -> Result<Option<Deprovision>, StoreError> {
        let row = sqlx::query("SELECT * FROM deprovisions WHERE hostname = $1")
            .bind(hostname)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(deprovision_from_row).transpose()
    }

    /// Every removal in progress, oldest request first.
    pub async fn deprovisions(&self) -> Result<Vec<Deprovision>, StoreError> {
        let rows = sqlx::query("SELECT * FROM deprovisions ORDER BY requested_at, hostname")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(deprovision_from_row).collect()
    }

    /// Adds `n` to one figure of `hostname`'s removal.
    pub async fn count_deprovision(
        &self,
        hostname: &str,
        what: DeprovisionCount,
        n: i64,
    ) -> Result<(), StoreError> {
        let column = what.column();
        sqlx::query(&format!(
            "UPDATE deprovisions SET {column} = {column} + $1 WHERE hostname = $2"
        ))
        .bind(n)
        .bind(hostname)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Ends `hostname`'s removal: deletes its instance row (its group memberships and health
    /// history go with it; jobs keep their `execution_node` text) and writes its tombstone, in
    /// one transaction. `None`: no removal of that node was in progress.
    pub async fn finish_deprovision(
        &self,
        hostname: &str,
    ) -> Result<Option<RemovedNode>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query("SELECT * FROM deprovisions WHERE hostname = $1")
            .bind(hostname)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(dep) = row.as_ref().map(deprovision_from_row).transpose()? else {
            return Ok(None);
        };
        let removed = RemovedNode {
            hostname: dep.hostname.clone(),
            node_type: dep.node_type.clone(),
            requested_at: dep.requested_at.clone(),
            removed_at: now(),
            pending_failed: dep.pending_failed,
            jobs_canceled: dep.jobs_canceled,
            units_released: dep.units_released,
        };
        sqlx::query(
            "INSERT INTO removed_nodes (hostname, node_type, requested_at, removed_at, \
             pending_failed, jobs_canceled, units_released) VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (hostname) DO UPDATE SET node_type = excluded.node_type, \
             requested_at = excluded.requested_at, removed_at = excluded.removed_at, \
             pending_failed = excluded.pending_failed, jobs_canceled = excluded.jobs_canceled, \
             units_released = excluded.units_released",
        )
        .bind(&removed.hostname)
        .bind(&removed.node_type)
        .bind(&removed.requested_at)
        .bind(&removed.removed_at)
        .bind(removed.pending_failed)
        .bind(removed.jobs_canceled)
        .bind(removed.units_released)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM deprovisions WHERE hostname = $1")
            .bind(hostname)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM instances WHERE hostname = $1")
            .bind(hostname)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Some(removed))
    }

    /// Every tombstone, newest removal first.
    pub async fn removed_nodes(&self) -> Result<Vec<RemovedNode>, StoreError> {
        let rows = sqlx::query("SELECT * FROM removed_nodes ORDER BY removed_at DESC, hostname")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(removed_from_row).collect()
    }

    /// The tombstone of `hostname`, if it was removed.
    pub async fn removed_node(&self, hostname: &str) -> Result<Option<RemovedNode>, StoreError> {
        let row = sqlx::query("SELECT * FROM removed_nodes WHERE hostname = $1")
            .bind(hostname)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(removed_from_row).transpose()
    }

    /// The hostnames of every removed node (discovery skips them).
    pub async fn removed_hostnames(&self) -> Result<HashSet<String>, StoreError> {
        let names: Vec<String> = sqlx::query_scalar("SELECT hostname FROM removed_nodes")
            .fetch_all(&self.pool)
            .await?;
        Ok(names.into_iter().collect())
    }

    /// Lifts `hostname`'s tombstone, so the node may be registered again. For the join flow:
    /// call it when the node joins with a fresh join token (an admin's deliberate act), before
    /// recording the instance. Returns whether there was a tombstone.
    pub async fn clear_removed(&self, hostname: &str) -> Result<bool, StoreError> {
        let mut conn = self.pool.acquire().await?;
        lift_tombstone(&mut conn, hostname).await
    }

    /// Pending jobs pinned to `hostname` (`execution_node` asked for at submit).
    pub async fn pending_jobs_pinned_to(&self, hostname: &str) -> Result<Vec<Job>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM jobs WHERE status = 'pending' AND requested_node = $1 ORDER BY id",
        )
        .bind(hostname)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(super::jobs::job_from_row).collect()
    }

    /// Jobs placed on `hostname` that have not ended (`waiting`, `submitting`, `running`).
    pub async fn active_jobs_on(&self, hostname: &str) -> Result<Vec<Job>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM jobs WHERE status IN ('waiting', 'submitting', 'running') \
             AND execution_node = $1 ORDER BY id",
        )
        .bind(hostname)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(super::jobs::job_from_row).collect()
    }

    /// Records why a cancel is requested for job `id` (it becomes the job's explanation when
    /// the cancel ends it). Only a job that has not ended is changed; returns whether it was.
    pub async fn set_cancel_reason(&self, id: i64, reason: &str) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE jobs SET cancel_reason = $1 WHERE id = $2 \
             AND status IN ('pending', 'waiting', 'submitting', 'running')",
        )
        .bind(reason)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Why a cancel was requested for job `id`, when the requester said so.
    pub async fn cancel_reason(&self, id: i64) -> Result<Option<String>, StoreError> {
        let reason: Option<Option<String>> =
            sqlx::query_scalar("SELECT cancel_reason FROM jobs WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
        Ok(reason.flatten().filter(|r| !r.is_empty()))
    }
}

/// Deletes `hostname`'s tombstone on `conn` (a transaction's, for the join flow); returns
/// whether there was one.
pub(super) async fn lift_tombstone(
    conn: &mut sqlx::SqliteConnection,
    hostname: &str,
) -> Result<bool, StoreError> {
    let done = sqlx::query("DELETE FROM removed_nodes WHERE hostname = $1")
        .bind(hostname)
        .execute(&mut *conn)
        .await?;
    Ok(done.rows_affected() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{JobStatus, NewInstance, NewJob, StatusChange};
    use meshrun_shared::node_type::NodeType;

    async fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("t.db")).await.unwrap();
        (dir, s)
    }

    async fn instance(s: &Store, host: &str) -> Instance {
        let i = s
            .create_instance(&NewInstance {
                hostname: host.into(),
                node_type: NodeType::Execution,
                registered_by: "discovery".into(),
                listener_address: None,
            })
            .await
            .unwrap();
        s.update_instance(i.id, |i| {
            i.node_state = NodeState::Ready;
            i.cpu = 4.0;
            i.memory = 8 << 30;
        })
        .await
        .unwrap()
        .unwrap()
    }

    async fn job(s: &Store, requested: Option<&str>) -> Job {
        s.create_job(&NewJob {
            name: "j".into(),
            playbook: "p.yml".into(),
            project_sha256: "0".repeat(64),
            inventory: "localhost\n".into(),
            extra_vars: "{}".into(),
            instance_group: "default".into(),
            requested_node: requested.map(str::to_string),
            ..NewJob::default()
        })
        .await
        .unwrap()
    }

    #[tokio::test]
    async fn a_removal_drains_keeps_the_earlier_deadline_and_ends_with_a_tombstone() {
        let (_d, s) = store().await;
        let x = instance(&s, "exec-x").await;
        assert!(x.capacity > 0);
        let (inst, dep) = s
            .begin_deprovision(x.id, "2030-01-01T00:10:00.000000Z")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(inst.node_state, NodeState::Deprovisioning);
        assert!(!inst.enabled);
        assert_eq!(inst.capacity, 0, "a draining node has no capacity");
        assert_eq!(dep.deadline, "2030-01-01T00:10:00.000000Z");
        // Asking again: the earlier deadline wins, a later one changes nothing.
        let (_, again) = s
            .begin_deprovision(x.id, "2030-01-01T00:05:00.000000Z")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(again.deadline, "2030-01-01T00:05:00.000000Z");
        assert_eq!(again.requested_at, dep.requested_at);
        let (_, later) = s
            .begin_deprovision(x.id, "2030-01-01T01:00:00.000000Z")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(later.deadline, "2030-01-01T00:05:00.000000Z");
        assert!(s.begin_deprovision(999, "x").await.unwrap().is_none());
        assert_eq!(s.deprovisions().await.unwrap().len(), 1);

        s.count_deprovision("exec-x", DeprovisionCount::JobsCanceled, 2)
            .await
            .unwrap();
        s.count_deprovision("exec-x", DeprovisionCount::UnitsReleased, 3)
            .await
            .unwrap();

        // History survives: a job that ran there keeps the node's name.
        let j = job(&s, None).await;
        s.transition(
            j.id,
            &[JobStatus::Pending],
            JobStatus::Successful,
            &StatusChange {
                execution_node: Some("exec-x"),
                ..StatusChange::default()
            },
        )
        .await
        .unwrap();

        let removed = s.finish_deprovision("exec-x").await.unwrap().unwrap();
        assert_eq!((removed.jobs_canceled, removed.units_released), (2, 3));
        assert!(s.instance(x.id).await.unwrap().is_none());
        assert!(s.deprovisions().await.unwrap().is_empty());
        assert!(s.removed_hostnames().await.unwrap().contains("exec-x"));
        assert_eq!(
            s.job(j.id)
                .await
                .unwrap()
                .unwrap()
                .execution_node
                .as_deref(),
            Some("exec-x")
        );
        // Finishing twice is harmless.
        assert!(s.finish_deprovision("exec-x").await.unwrap().is_none());
        assert_eq!(
            s.removed_node("exec-x").await.unwrap().unwrap().removed_at,
            removed.removed_at
        );

        // The join flow lifts the tombstone.
        assert!(s.clear_removed("exec-x").await.unwrap());
        assert!(!s.clear_removed("exec-x").await.unwrap());
        assert!(s.removed_nodes().await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn jobs_bound_to_a_node_and_cancel_reasons() {
        let (_d, s) = store().await;
        instance(&s, "exec-x").await;
        let pinned = job(&s, Some("exec-x")).await;
        let elsewhere = job(&s, Some("exec-y")).await;
        let free = job(&s, None).await;
        let placed = job(&s, None).await;
        s.transition(
            placed.id,
            &[JobStatus::Pending],
            JobStatus::Waiting,
            &StatusChange {
                execution_node: Some("exec-x"),
                ..StatusChange::default()
            },
        )
        .await
        .unwrap();
        let ids = |jobs: Vec<Job>| jobs.into_iter().map(|j| j.id).collect::<Vec<_>>();
        assert_eq!(
            ids(s.pending_jobs_pinned_to("exec-x").await.unwrap()),
            [pinned.id]
        );
        assert_eq!(ids(s.active_jobs_on("exec-x").await.unwrap()), [placed.id]);
        let _ = (elsewhere, free);

        assert_eq!(s.cancel_reason(placed.id).await.unwrap(), None);
        assert!(s.set_cancel_reason(placed.id, "removed").await.unwrap());
        assert_eq!(
            s.cancel_reason(placed.id).await.unwrap().as_deref(),
            Some("removed")
        );
        s.transition(
            placed.id,
            &[JobStatus::Waiting],
            JobStatus::Canceled,
            &StatusChange::default(),
        )
        .await
        .unwrap();
        assert!(
            !s.set_cancel_reason(placed.id, "later").await.unwrap(),
            "an ended job keeps its reason"
        );
        assert!(s.active_jobs_on("exec-x").await.unwrap().is_empty());
    }
}
