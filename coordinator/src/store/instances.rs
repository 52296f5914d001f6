//! Instances (mesh nodes), their links and health-check history.
//!
//! Several loops write one instance (discovery, health checks, the API). Each write is a
//! read-modify-write that only lands if the row's `revision` is unchanged, retried on conflict,
//! so no loop ever overwrites another's change. Capacity is derived state: it is recomputed from
//! the instance's own fields on every write, in [`Instance::derive_capacity`], and nowhere else.

use std::fmt;
use std::str::FromStr;

use meshrun_shared::capacity;
use meshrun_shared::node_type::NodeType;
use serde::Serialize;
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use super::{Page, Store, StoreError, now};

/// AWX's instance states that meshrun uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeState {
    /// Registered, not yet health-checked.
    Installed,
    /// Healthy and reachable.
    Ready,
    /// Unreachable past the grace period, or its health check failed.
    Unavailable,
    /// Being removed.
    Deprovisioning,
}

impl NodeState {
    /// Every state.
    pub const ALL: [NodeState; 4] = [
        NodeState::Installed,
        NodeState::Ready,
        NodeState::Unavailable,
        NodeState::Deprovisioning,
    ];

    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            NodeState::Installed => "installed",
            NodeState::Ready => "ready",
            NodeState::Unavailable => "unavailable",
            NodeState::Deprovisioning => "deprovisioning",
        }
    }
}

impl fmt::Display for NodeState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for NodeState {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        NodeState::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| format!("unknown node state {s:?}: expected installed, ready, unavailable or deprovisioning"))
    }
}

/// A stored instance (AWX field names).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Instance {
    /// Integer id.
    pub id: i64,
    /// The receptor node id.
    pub hostname: String,
    /// The node's self-reported uuid.
    pub uuid: Option<String>,
    /// Its role.
    pub node_type: NodeType,
    /// Its state.
    pub node_state: NodeState,
    /// Whether it may take jobs.
    pub enabled: bool,
    /// CPUs (from the last health check).
    pub cpu: f64,
    /// Memory bytes (from the last health check).
    pub memory: i64,
    /// Derived.
    pub cpu_capacity: i64,
    /// Derived.
    pub mem_capacity: i64,
    /// Derived.
    pub capacity: i64,
    /// 0.0 to 1.0.
    pub capacity_adjustment: f64,
    /// `ansible-runner-<version>`.
    pub version: String,
    /// The node's kernel boot id.
    pub boot_id: Option<String>,
    /// Newline-joined problems; empty when healthy.
    pub errors: String,
    /// When it was last routable.
    pub last_seen: Option<String>,
    /// Since when it has not been routable (None while routable).
    pub unroutable_since: Option<String>,
    /// When the last health check finished.
    pub last_health_check: Option<String>,
    /// When the current or last health check started.
    pub health_check_started: Option<String>,
    /// Where other nodes dial it, if it listens.
    pub listener_address: Option<String>,
    /// `discovery`, `join` or `config`.
    pub registered_by: String,
    /// It advertises its work type with `Secure: true` (submits must be signed).
    pub secure_work: bool,
    /// Its control service is TLS (submits need a tlsclient).
    pub control_tls: bool,
    /// Write counter for optimistic concurrency.
    #[serde(skip)]
    pub revision: i64,
    /// Created (RFC 3339).
    pub created: String,
    /// Last changed (RFC 3339).
    pub modified: String,
}

impl Instance {
    /// Recomputes the capacity fields from the instance's own state (AWX's rules; only `ready`
    /// nodes have capacity).
    pub fn derive_capacity(&mut self) {
        let c = capacity::instance_capacity(
            self.node_type,
            self.enabled,
            self.cpu,
            u64::try_from(self.memory).unwrap_or(0),
            self.capacity_adjustment,
        );
        let ready = self.node_state == NodeState::Ready;
        let measured = self.cpu > 0.0 && self.node_type != NodeType::Hop;
        self.cpu_capacity = if measured { c.cpu_capacity } else { 0 };
        self.mem_capacity = if measured { c.mem_capacity } else { 0 };
        self.capacity = if ready && measured { c.capacity } else { 0 };
    }
}

/// A new instance.
#[derive(Debug, Clone)]
pub struct NewInstance {
    /// The receptor node id.
    pub hostname: String,
    /// Its role.
    pub node_type: NodeType,
    /// `discovery`, `join` or `config`.
    pub registered_by: String,
    /// Where it listens, if known.
    pub listener_address: Option<String>,
}

/// Filters for listing instances.
#[derive(Debug, Clone, Default)]
pub struct InstanceFilter {
    /// Only this node type.
    pub node_type: Option<NodeType>,
    /// Only this state.
    pub node_state: Option<NodeState>,
}

/// A mesh link as the control node sees it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Link {
    /// One end.
    pub source: String,
    /// The other end.
    pub target: String,
    /// `established` (seen in the mesh) or `adding`/`removing`.
    pub link_state: String,
    /// receptor's link cost.
    pub cost: f64,
}

/// One health check's result.
#[derive(Debug, Clone, Serialize)]
pub struct HealthCheckRecord {
    /// When it started.
    pub started: String,
    /// When it finished.
    pub finished: String,
    /// How long it took.
    pub duration_ms: i64,
    /// Whether the node was healthy.
    pub ok: bool,
    /// CPUs reported.
    pub cpu: Option<f64>,
    /// Memory reported.
    pub memory: Option<i64>,
    /// Version reported.
    pub version: Option<String>,
    /// Boot id reported.
    pub boot_id: Option<String>,
    /// Problems.
    pub errors: String,
}

/// How many times a conflicting write is retried.
const MAX_RETRIES: usize = 20;

fn instance_from_row(row: &SqliteRow) -> Result<Instance, StoreError> {
    let invalid = |what: &'static str, value: String| StoreError::Invalid { what, value };
    let node_type: String = row.try_get("node_type")?;
    let node_state: String = row.try_get("node_state")?;
    Ok(Instance {
        id: row.try_get("id")?,
        hostname: row.try_get("hostname")?,
        uuid: row.try_get("uuid")?,
        node_type: node_type
            .parse()
            .map_err(|_| invalid("node type", node_type.clone()))?,
        node_state: node_state
            .parse()
            .map_err(|_| invalid("node state", node_state.clone()))?,
        enabled: row.try_get("enabled")?,
        cpu: row.try_get("cpu")?,
        memory: row.try_get("memory")?,
        cpu_capacity: row.try_get("cpu_capacity")?,
        mem_capacity: row.try_get("mem_capacity")?,
        capacity: row.try_get("capacity")?,
        capacity_adjustment: row.try_get("capacity_adjustment")?,
        version: row.try_get("version")?,
        boot_id: row.try_get("boot_id")?,
        errors: row.try_get("errors")?,
        last_seen: row.try_get("last_seen")?,
        unroutable_since: row.try_get("unroutable_since")?,
        last_health_check: row.try_get("last_health_check")?,
        health_check_started: row.try_get("health_check_started")?,
        listener_address: row.try_get("listener_address")?,
        registered_by: row.try_get("registered_by")?,
        secure_work: row.try_get("secure_work")?,
        control_tls: row.try_get("control_tls")?,
        revision: row.try_get("revision")?,
        created: row.try_get("created")?,
        modified: row.try_get("modified")?,
    })
}

/// Columns `order_by` may name (a leading `-` sorts descending).
pub const INSTANCE_ORDER_FIELDS: [&str; 8] = [
    "id",
    "hostname",
    "node_type",
    "node_state",
    "capacity",
    "cpu",
    "memory",
    "last_seen",
];

/// Inserts `new` as an `installed` instance (a node that runs user-space jobs also joins the
/// `default` group), inside the caller's transaction. Returns its id, or `None` when the
/// hostname is already registered (nothing is changed then).
pub(super) async fn insert_instance(
    conn: &mut sqlx::SqliteConnection,
    new: &NewInstance,
) -> Result<Option<i64>, StoreError> {
    let stamp = now();
    let id: Option<i64> = sqlx::query_scalar(
        "INSERT INTO instances (hostname, node_type, node_state, registered_by, listener_address, created, modified) \
         VALUES ($1, $2, 'installed', $3, $4, $5, $5) ON CONFLICT (hostname) DO NOTHING RETURNING id",
    )
    .bind(&new.hostname)
    .bind(new.node_type.as_str())
    .bind(&new.registered_by)
    .bind(&new.listener_address)
    .bind(&stamp)
    .fetch_optional(&mut *conn)
    .await?;
    if let Some(id) = id
        && new.node_type.runs_user_jobs()
    {
        sqlx::query(
            "INSERT INTO instance_group_members (group_id, instance_id) \
             SELECT id, $1 FROM instance_groups WHERE name = 'default' ON CONFLICT DO NOTHING",
        )
        .bind(id)
        .execute(&mut *conn)
        .await?;
    }
    Ok(id)
}

impl Store {
    /// Registers an instance; an existing hostname is returned unchanged.
    pub async fn create_instance(&self, new: &NewInstance) -> Result<Instance, StoreError> {
        let mut tx = self.pool.begin().await?;
        insert_instance(&mut tx, new).await?;
        tx.commit().await?;
        self.instance_by_hostname(&new.hostname)
            .await?
            .ok_or_else(|| StoreError::Invalid {
                what: "instance just created",
                value: new.hostname.clone(),
            })
    }

    /// One instance by id.
    pub async fn instance(&self, id: i64) -> Result<Option<Instance>, StoreError> {
        let row = sqlx::query("SELECT * FROM instances WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(instance_from_row).transpose()
    }

    /// One instance by hostname.
    pub async fn instance_by_hostname(
        &self,
        hostname: &str,
    ) -> Result<Option<Instance>, StoreError> {
        let row = sqlx::query("SELECT * FROM instances WHERE hostname = $1")
            .bind(hostname)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(instance_from_row).transpose()
    }

    /// Row count, revision sum, newest id and newest change of the instances table: cheap to
    /// read, and different whenever any writer changed an instance (discovery's cache check).
    pub async fn instances_fingerprint(
        &self,
    ) -> Result<(i64, i64, i64, Option<String>), StoreError> {
        Ok(sqlx::query_as(
            "SELECT COUNT(*), COALESCE(SUM(revision), 0), COALESCE(MAX(id), 0), MAX(modified) \
             FROM instances",
        )
        .fetch_one(&self.pool)
        .await?)
    }

    /// Every instance, by id.
    pub async fn all_instances(&self) -> Result<Vec<Instance>, StoreError> {
        let rows = sqlx::query("SELECT * FROM instances ORDER BY id")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(instance_from_row).collect()
    }

    /// A page of instances. `order_by` must be one of [`INSTANCE_ORDER_FIELDS`], optionally
    /// prefixed with `-` (checked by the caller; anything else sorts by id).
    pub async fn list_instances(
        &self,
        filter: &InstanceFilter,
        order_by: &str,
        limit: i64,
        offset: i64,
    ) -> Result<Page<Instance>, StoreError> {
        let (field, dir) = match order_by.strip_prefix('-') {
            Some(f) => (f, "DESC"),
            None => (order_by, "ASC"),
        };
        let field = INSTANCE_ORDER_FIELDS
            .iter()
            .find(|f| **f == field)
            .copied()
            .unwrap_or("id");
        let node_type = filter.node_type.map(|t| t.as_str());
        let node_state = filter.node_state.map(|s| s.as_str());
        let filter_sql = "($1 IS NULL OR node_type = $1) AND ($2 IS NULL OR node_state = $2)";
        let count: i64 = sqlx::query_scalar(&format!(
            "SELECT COUNT(*) FROM instances WHERE {filter_sql}"
        ))
        .bind(node_type)
        .bind(node_state)
        .fetch_one(&self.pool)
        .await?;
        let rows = sqlx::query(&format!(
            "SELECT * FROM instances WHERE {filter_sql} ORDER BY {field} {dir}, id LIMIT $3 OFFSET $4"
        ))
        .bind(node_type)
        .bind(node_state)
        .bind(limit)
        .bind(offset)
        .fetch_all(&self.pool)
        .await?;
        let results = rows
            .iter()
            .map(instance_from_row)
            .collect::<Result<_, _>>()?;
        Ok(Page { count, results })
    }

    /// Changes an instance with `change`, then re-derives its capacity. The write only lands if
    /// nobody changed the row meanwhile; otherwise `change` runs again on the fresh row.
    /// Returns the instance as stored, or None if it does not exist.
    pub async fn update_instance<F>(
        &self,
        id: i64,
        mut change: F,
    ) -> Result<Option<Instance>, StoreError>
    where
        F: FnMut(&mut Instance),
    {
        for _ in 0..MAX_RETRIES {
            let Some(current) = self.instance(id).await? else {
                return Ok(None);
            };
            let mut next = current.clone();
            change(&mut next);
            next.derive_capacity();
            if next == current {
                return Ok(Some(current));
            }
            next.modified = now();
            let done = sqlx::query(
                "UPDATE instances SET uuid = $1, node_type = $2, node_state = $3, enabled = $4, cpu = $5, \
                 memory = $6, cpu_capacity = $7, mem_capacity = $8, capacity = $9, capacity_adjustment = $10, \
                 version = $11, boot_id = $12, errors = $13, last_seen = $14, unroutable_since = $15, \
                 last_health_check = $16, health_check_started = $17, listener_address = $18, \
                 secure_work = $19, control_tls = $20, modified = $21, revision = revision + 1 \
                 WHERE id = $22 AND revision = $23",
            )
            .bind(&next.uuid)
            .bind(next.node_type.as_str())
            .bind(next.node_state.as_str())
            .bind(next.enabled)
            .bind(next.cpu)
            .bind(next.memory)
            .bind(next.cpu_capacity)
            .bind(next.mem_capacity)
            .bind(next.capacity)
            .bind(next.capacity_adjustment)
            .bind(&next.version)
            .bind(&next.boot_id)
            .bind(&next.errors)
            .bind(&next.last_seen)
            .bind(&next.unroutable_since)
            .bind(&next.last_health_check)
            .bind(&next.health_check_started)
            .bind(&next.listener_address)
            .bind(next.secure_work)
            .bind(next.control_tls)
            .bind(&next.modified)
            .bind(id)
            .bind(current.revision)
            .execute(&self.pool)
            .await?;
            if done.rows_affected() == 1 {
                next.revision = current.revision + 1;
                return Ok(Some(next));
            }
        }
        Err(StoreError::Invalid {
            what: "instance write (too many conflicting writers)",
            value: id.to_string(),
        })
    }

    /// Appends a health check to an instance's history (the last 100 are kept).
    pub async fn record_health_check(
        &self,
        instance_id: i64,
        rec: &HealthCheckRecord,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO health_checks (instance_id, started, finished, duration_ms, ok, cpu, memory, version, boot_id, errors) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(instance_id)
        .bind(&rec.started)
        .bind(&rec.finished)
        .bind(rec.duration_ms)
        .bind(rec.ok)
        .bind(rec.cpu)
        .bind(rec.memory)
        .bind(&rec.version)
        .bind(&rec.boot_id)
        .bind(&rec.errors)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "DELETE FROM health_checks WHERE instance_id = $1 AND id NOT IN \
             (SELECT id FROM health_checks WHERE instance_id = $1 ORDER BY id DESC LIMIT 100)",
        )
        .bind(instance_id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The newest health checks of an instance, newest first.
    pub async fn health_checks(
        &self,
        instance_id: i64,
        limit: i64,
    ) -> Result<Vec<HealthCheckRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM health_checks WHERE instance_id = $1 ORDER BY id DESC LIMIT $2",
        )
        .bind(instance_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(HealthCheckRecord {
                    started: r.try_get("started")?,
                    finished: r.try_get("finished")?,
                    duration_ms: r.try_get("duration_ms")?,
                    ok: r.try_get("ok")?,
                    cpu: r.try_get("cpu")?,
                    memory: r.try_get("memory")?,
                    version: r.try_get("version")?,
                    boot_id: r.try_get("boot_id")?,
                    errors: r.try_get("errors")?,
                })
            })
            .collect()
    }

    /// Replaces the stored links with `links` (all `established`), in one transaction.
    pub async fn replace_links(&self, links: &[(String, String, f64)]) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM instance_links")
            .execute(&mut *tx)
            .await?;
        for (source, target, cost) in links {
            sqlx::query(
                "INSERT INTO instance_links (source, target, link_state, cost) VALUES ($1, $2, 'established', $3) \
                 ON CONFLICT (source, target) DO UPDATE SET cost = excluded.cost",
            )
            .bind(source)
            .bind(target)
            .bind(cost)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Every stored link.
    pub async fn links(&self) -> Result<Vec<Link>, StoreError> {
        let rows = sqlx::query("SELECT * FROM instance_links ORDER BY source, target")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(Link {
                    source: r.try_get("source")?,
                    target: r.try_get("target")?,
                    link_state: r.try_get("link_state")?,
                    cost: r.try_get("cost")?,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("t.db")).await.unwrap();
        (dir, store)
    }

    fn new(host: &str, t: NodeType) -> NewInstance {
        NewInstance {
            hostname: host.into(),
            node_type: t,
            registered_by: "discovery".into(),
            listener_address: None,
        }
    }

    #[tokio::test]
    async fn create_is_idempotent_and_capacity_is_derived() {
        let (_d, s) = store().await;
        let a = s
            .create_instance(&new("exec1", NodeType::Execution))
            .await
            .unwrap();
        let again = s
            .create_instance(&new("exec1", NodeType::Hop))
            .await
            .unwrap();
        assert_eq!(a.id, again.id);
        assert_eq!(
            again.node_type,
            NodeType::Execution,
            "an existing instance is not changed"
        );
        assert_eq!(a.node_state, NodeState::Installed);
        let ready = s
            .update_instance(a.id, |i| {
                i.cpu = 8.0;
                i.memory = 16 << 30;
                i.node_state = NodeState::Ready;
            })
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            (ready.cpu_capacity, ready.mem_capacity, ready.capacity),
            (32, 143, 143)
        );
        let off = s
            .update_instance(a.id, |i| i.enabled = false)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(off.capacity, 0);
        let gone = s
            .update_instance(a.id, |i| {
                i.enabled = true;
                i.node_state = NodeState::Unavailable;
            })
            .await
            .unwrap()
            .unwrap();
        assert_eq!(gone.capacity, 0);
        assert!(s.update_instance(999, |_| {}).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn concurrent_writers_lose_nothing() {
        let (_d, s) = store().await;
        let a = s
            .create_instance(&new("exec1", NodeType::Execution))
            .await
            .unwrap();
        let mut tasks = Vec::new();
        for i in 0..10 {
            let s = s.clone();
            tasks.push(tokio::spawn(async move {
                s.update_instance(a.id, |inst| {
                    if i % 2 == 0 {
                        inst.errors.push_str(&format!("e{i};"));
                    } else {
                        inst.version.push_str(&format!("v{i};"));
                    }
                })
                .await
                .unwrap();
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let done = s.instance(a.id).await.unwrap().unwrap();
        for i in 0..10 {
            let field = if i % 2 == 0 {
                &done.errors
            } else {
                &done.version
            };
            let tag = if i % 2 == 0 {
                format!("e{i};")
            } else {
                format!("v{i};")
            };
            assert!(field.contains(&tag), "write {i} was lost: {done:?}");
        }
        assert_eq!(done.revision, 10);
    }

    #[tokio::test]
    async fn listing_filters_orders_and_links_replace() {
        let (_d, s) = store().await;
        for (h, t) in [
            ("hop", NodeType::Hop),
            ("exec2", NodeType::Execution),
            ("exec1", NodeType::Execution),
        ] {
            s.create_instance(&new(h, t)).await.unwrap();
        }
        let execs = s
            .list_instances(
                &InstanceFilter {
                    node_type: Some(NodeType::Execution),
                    ..Default::default()
                },
                "-hostname",
                10,
                0,
            )
            .await
            .unwrap();
        assert_eq!(execs.count, 2);
        assert_eq!(
            execs
                .results
                .iter()
                .map(|i| i.hostname.as_str())
                .collect::<Vec<_>>(),
            ["exec2", "exec1"]
        );
        s.replace_links(&[("control".into(), "hop".into(), 1.0)])
            .await
            .unwrap();
        s.replace_links(&[("hop".into(), "exec1".into(), 2.0)])
            .await
            .unwrap();
        let links = s.links().await.unwrap();
        assert_eq!(links.len(), 1);
        assert_eq!((links[0].source.as_str(), links[0].cost), ("hop", 2.0));
    }
}
