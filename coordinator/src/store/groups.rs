//! Instance groups: names, limits, members, and the jobs they are running.

use serde::Serialize;
use sqlx::Row;

use super::{Store, StoreError, now};

/// An instance group with its members and current load.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InstanceGroup {
    /// Integer id.
    pub id: i64,
    /// Unique name.
    pub name: String,
    /// 0 means unlimited.
    pub max_concurrent_jobs: i64,
    /// 0 means unlimited.
    pub max_forks: i64,
    /// Member hostnames, sorted.
    pub instances: Vec<String>,
    /// Active jobs of this group (waiting, submitting, running).
    pub jobs_running: i64,
    /// Forks of those jobs (5 for a job that gave none, as AWX).
    pub forks_running: i64,
    /// Created (RFC 3339).
    pub created: String,
}

/// A group's settable fields.
#[derive(Debug, Clone, Default)]
pub struct GroupChange {
    /// New limit on concurrent jobs.
    pub max_concurrent_jobs: Option<i64>,
    /// New limit on forks.
    pub max_forks: Option<i64>,
}

impl Store {
    /// Every group with members and load, by name.
    pub async fn instance_groups(&self) -> Result<Vec<InstanceGroup>, StoreError> {
        let rows = sqlx::query(
            "SELECT g.id, g.name, g.max_concurrent_jobs, g.max_forks, g.created, \
               (SELECT COUNT(*) FROM jobs j WHERE j.instance_group = g.name \
                  AND j.status IN ('waiting', 'submitting', 'running')) AS jobs_running, \
               (SELECT COALESCE(SUM(COALESCE(NULLIF(j.forks, 0), 5)), 0) FROM jobs j WHERE j.instance_group = g.name \
                  AND j.status IN ('waiting', 'submitting', 'running')) AS forks_running \
             FROM instance_groups g ORDER BY g.name",
        )
        .fetch_all(&self.pool)
        .await?;
        let members = sqlx::query(
            "SELECT m.group_id, i.hostname FROM instance_group_members m \
             JOIN instances i ON i.id = m.instance_id ORDER BY i.hostname",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut groups = Vec::with_capacity(rows.len());
        for r in rows {
            let id: i64 = r.try_get("id")?;
            let mut instances = Vec::new();
            for m in &members {
                if m.try_get::<i64, _>("group_id")? == id {
                    instances.push(m.try_get("hostname")?);
                }
            }
            groups.push(InstanceGroup {
                id,
                name: r.try_get("name")?,
                max_concurrent_jobs: r.try_get("max_concurrent_jobs")?,
                max_forks: r.try_get("max_forks")?,
                instances,
                jobs_running: r.try_get("jobs_running")?,
                forks_running: r.try_get("forks_running")?,
                created: r.try_get("created")?,
            });
        }
        Ok(groups)
    }

    /// One group by id.
    pub async fn instance_group(&self, id: i64) -> Result<Option<InstanceGroup>, StoreError> {
        Ok(self
            .instance_groups()
            .await?
            .into_iter()
            .find(|g| g.id == id))
    }

    /// Creates a group; None when the name is taken.
    pub async fn create_instance_group(
        &self,
        name: &str,
        change: &GroupChange,
    ) -> Result<Option<InstanceGroup>, StoreError> {
        let done = sqlx::query(
            "INSERT INTO instance_groups (name, max_concurrent_jobs, max_forks, created) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(change.max_concurrent_jobs.unwrap_or(0))
        .bind(change.max_forks.unwrap_or(0))
        .bind(now())
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Ok(None);
        }
        Ok(self
            .instance_groups()
            .await?
            .into_iter()
            .find(|g| g.name == name))
    }

    /// Changes a group's limits; false when it does not exist.
    pub async fn update_instance_group(
        &self,
        id: i64,
        change: &GroupChange,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE instance_groups SET max_concurrent_jobs = COALESCE($1, max_concurrent_jobs), \
             max_forks = COALESCE($2, max_forks) WHERE id = $3",
        )
        .bind(change.max_concurrent_jobs)
        .bind(change.max_forks)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Adds (`member = true`) or removes an instance from a group.
    pub async fn set_group_member(
        &self,
        group_id: i64,
        instance_id: i64,
        member: bool,
    ) -> Result<(), StoreError> {
        let sql = if member {
            "INSERT INTO instance_group_members (group_id, instance_id) VALUES ($1, $2) ON CONFLICT DO NOTHING"
        } else {
            "DELETE FROM instance_group_members WHERE group_id = $1 AND instance_id = $2"
        };
        sqlx::query(sql)
            .bind(group_id)
            .bind(instance_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::NewInstance;
    use meshrun_shared::node_type::NodeType;

    #[tokio::test]
    async fn default_group_limits_and_membership() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("t.db")).await.unwrap();
        let e = s
            .create_instance(&NewInstance {
                hostname: "exec1".into(),
                node_type: NodeType::Execution,
                registered_by: "discovery".into(),
                listener_address: None,
            })
            .await
            .unwrap();
        let groups = s.instance_groups().await.unwrap();
        assert_eq!(groups.len(), 1);
        assert_eq!(groups[0].name, "default");
        assert_eq!(
            groups[0].instances,
            ["exec1"],
            "execution nodes join the default group"
        );
        let g = s
            .create_instance_group(
                "fast",
                &GroupChange {
                    max_concurrent_jobs: Some(2),
                    max_forks: None,
                },
            )
            .await
            .unwrap()
            .unwrap();
        assert!(
            s.create_instance_group("fast", &GroupChange::default())
                .await
                .unwrap()
                .is_none()
        );
        s.set_group_member(g.id, e.id, true).await.unwrap();
        assert!(
            s.update_instance_group(
                g.id,
                &GroupChange {
                    max_concurrent_jobs: None,
                    max_forks: Some(10)
                }
            )
            .await
            .unwrap()
        );
        let fast = s.instance_group(g.id).await.unwrap().unwrap();
        assert_eq!(
            (
                fast.max_concurrent_jobs,
                fast.max_forks,
                fast.instances.len()
            ),
            (2, 10, 1)
        );
        s.set_group_member(g.id, e.id, false).await.unwrap();
        assert!(
            s.instance_group(g.id)
                .await
                .unwrap()
                .unwrap()
                .instances
                .is_empty()
        );
    }
}
