//! Job rows, their status machine, and their events.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use meshrun_shared::capacity;
use meshrun_shared::node_type::NodeType;
use serde::Serialize;
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use super::{Store, StoreError, now};

/// A job's status, as AWX names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    /// Stored, not yet placed.
    Pending,
    /// Placed on a controller and an execution node.
    Waiting,
    /// Being submitted to receptor (crash-safe submit protocol).
    Submitting,
    /// The work unit exists and output is being read.
    Running,
    /// The playbook succeeded.
    Successful,
    /// The playbook failed (or timed out, or was canceled without the cancel flag).
    Failed,
    /// The job could not run or its output could not be read.
    Error,
    /// Canceled on request.
    Canceled,
}

impl JobStatus {
    /// Every status.
    pub const ALL: [JobStatus; 8] = [
        JobStatus::Pending,
        JobStatus::Waiting,
        JobStatus::Submitting,
        JobStatus::Running,
        JobStatus::Successful,
        JobStatus::Failed,
        JobStatus::Error,
        JobStatus::Canceled,
    ];

    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Pending => "pending",
            JobStatus::Waiting => "waiting",
            JobStatus::Submitting => "submitting",
            JobStatus::Running => "running",
            JobStatus::Successful => "successful",
            JobStatus::Failed => "failed",
            JobStatus::Error => "error",
            JobStatus::Canceled => "canceled",
        }
    }

    /// Whether the job has ended.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            JobStatus::Successful | JobStatus::Failed | JobStatus::Error | JobStatus::Canceled
        )
    }

    /// The statuses a job is still active in.
    pub const ACTIVE: [JobStatus; 4] = [
        JobStatus::Pending,
        JobStatus::Waiting,
        JobStatus::Submitting,
        JobStatus::Running,
    ];
}

impl fmt::Display for JobStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for JobStatus {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        JobStatus::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| format!("unknown job status {s:?}"))
    }
}

/// What kind of work a job row is (AWX's unified job types).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum JobKind {
    /// A playbook run.
    #[default]
    Job,
    /// An ad hoc command (one module against a host pattern).
    AdHocCommand,
    /// `ansible-inventory` against an inventory source, refreshing a stored inventory.
    InventoryUpdate,
    /// A checkout of a project's SCM revision, run on a control node as `local` work.
    ProjectUpdate,
}

impl JobKind {
    /// Every kind.
    pub const ALL: [JobKind; 4] = [
        JobKind::Job,
        JobKind::AdHocCommand,
        JobKind::InventoryUpdate,
        JobKind::ProjectUpdate,
    ];

    /// The stored and API name.
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::Job => "job",
            JobKind::AdHocCommand => "ad_hoc_command",
            JobKind::InventoryUpdate => "inventory_update",
            JobKind::ProjectUpdate => "project_update",
        }
    }

    /// The API collection its rows live under (`/api/v2/<collection>/<id>/`).
    pub fn collection(self) -> &'static str {
        match self {
            JobKind::Job => "jobs",
            JobKind::AdHocCommand => "ad_hoc_commands",
            JobKind::InventoryUpdate => "inventory_updates",
            JobKind::ProjectUpdate => "project_updates",
        }
    }

    /// Whether it is control-plane work: it runs on a control node itself, as `local` work.
    pub fn is_control_work(self) -> bool {
        self == JobKind::ProjectUpdate
    }
}

impl fmt::Display for JobKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for JobKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        JobKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown job type {s:?} (one of: {})",
                    JobKind::ALL.map(JobKind::as_str).join(", ")
                )
            })
    }
}

/// What a caller gives to create a job (fields a kind does not use stay at their default).
#[derive(Debug, Clone, Default)]
pub struct NewJob {
    /// The kind of work.
    pub kind: JobKind,
    /// A display name.
    pub name: String,
    /// Playbook path relative to the project.
    pub playbook: String,
    /// sha256 of the stored project archive.
    pub project_sha256: String,
    /// Inventory text (INI or YAML).
    pub inventory: String,
    /// Extra vars as a JSON object text.
    pub extra_vars: String,
    /// `--limit`.
    pub limit: Option<String>,
    /// `--forks`.
    pub forks: Option<i64>,
    /// Verbosity 0-5.
    pub verbosity: Option<i64>,
    /// The execution node the caller asked for.
    pub requested_node: Option<String>,
    /// Its impact on the execution node (hosts and forks, as AWX).
    pub task_impact: i64,
    /// Its instance group.
    pub instance_group: String,
    /// Hosts in its inventory, when they could be counted.
    pub host_count: Option<i64>,
    /// The execution-environment image (else the node's default).
    pub execution_environment: Option<String>,
    /// Ad hoc: the module.
    pub module_name: Option<String>,
    /// Ad hoc: the module's arguments.
    pub module_args: Option<String>,
    /// Ad hoc: run with `--become`.
    pub become_enabled: bool,
    /// The stored inventory used (or refreshed, for an inventory update).
    pub inventory_id: Option<i64>,
    /// Inventory update: the source path inside the project.
    pub inventory_source: Option<String>,
    /// The stored project used (or refreshed, for a project update).
    pub project_id: Option<i64>,
    /// The SCM revision the work ran (or, for a project update, checked out).
    pub scm_revision: Option<String>,
}

/// A stored job.
#[derive(Debug, Clone, Serialize)]
pub struct Job {
    /// Integer id, as AWX.
    pub id: i64,
    /// The kind of work.
    #[serde(rename = "type")]
    pub kind: JobKind,
    /// Display name.
    pub name: String,
    /// Status.
    pub status: JobStatus,
    /// Whether a cancel was requested.
    pub cancel_flag: bool,
    /// Playbook path relative to the project.
    pub playbook: String,
    /// sha256 of the project archive.
    pub project_sha256: String,
    /// Inventory text.
    #[serde(skip)]
    pub inventory: String,
    /// Extra vars (JSON object text).
    #[serde(skip)]
    pub extra_vars: String,
    /// `--limit`.
    pub limit: Option<String>,
    /// `--forks`.
    pub forks: Option<i64>,
    /// Verbosity.
    pub verbosity: Option<i64>,
    /// The node the caller asked for.
    pub requested_node: Option<String>,
    /// Its impact on the execution node.
    pub task_impact: i64,
    /// Its instance group.
    pub instance_group: String,
    /// Hosts in its inventory, when they could be counted.
    pub host_count: Option<i64>,
    /// The execution-environment image (else the node's default).
    pub execution_environment: Option<String>,
    /// The node that controls the job (its receptor submitted the unit).
    pub controller_node: Option<String>,
    /// The node the job ran on.
    pub execution_node: Option<String>,
    /// The mesh path from controller to execution node, as seen at submit time.
    pub execution_route: Option<String>,
    /// receptor's work unit id on the controller.
    pub work_unit_id: Option<String>,
    /// Bytes of unit output already parsed and stored.
    pub result_offset: i64,
    /// Why the job ended as it did, for people.
    pub job_explanation: String,
    /// Detail for failures (worker output tail, receptor detail).
    pub result_traceback: String,
    /// The playbook's return code, when known.
    pub rc: Option<i64>,
    /// When the job was created (RFC 3339).
    pub created: String,
    /// When the unit started running.
    pub started: Option<String>,
    /// When the job ended.
    pub finished: Option<String>,
    /// Ad hoc: the module.
    pub module_name: Option<String>,
    /// Ad hoc: the module's arguments.
    pub module_args: Option<String>,
    /// Ad hoc: run with `--become`.
    pub become_enabled: bool,
    /// The stored inventory used (or refreshed).
    pub inventory_id: Option<i64>,
    /// Inventory update: the source path inside the project.
    pub inventory_source: Option<String>,
    /// The stored project used (or refreshed).
    pub project_id: Option<i64>,
    /// The SCM revision the work ran (or checked out).
    pub scm_revision: Option<String>,
}

/// One event as stored.
#[derive(Debug, Clone, Serialize)]
pub struct EventRow {
    /// The runner's event counter (1-based, unique per job).
    pub counter: i64,
    /// The event's uuid.
    pub uuid: String,
    /// The event type (`runner_on_ok`, ...).
    pub event: String,
    /// First stdout line of the event.
    pub start_line: i64,
    /// Line after the last stdout line of the event.
    pub end_line: i64,
    /// The event's stdout text.
    pub stdout: String,
    /// When the event was created on the worker.
    pub created: Option<String>,
    /// The whole event as JSON text.
    #[serde(skip)]
    pub data: String,
}

/// A page of results.
#[derive(Debug, Clone, Serialize)]
pub struct Page<T> {
    /// Total rows matching.
    pub count: i64,
    /// The rows of this page.
    pub results: Vec<T>,
}

/// Filters for listing jobs.
#[derive(Debug, Clone, Default)]
pub struct JobFilter {
    /// Only this status.
    pub status: Option<JobStatus>,
    /// Only jobs on this execution node.
    pub execution_node: Option<String>,
    /// Only jobs of this instance group.
    pub instance_group: Option<String>,
    /// Only this kind (`None`: every kind, the unified view).
    pub kind: Option<JobKind>,
}

/// Columns `order_by` may name for jobs (a leading `-` sorts descending).
pub const JOB_ORDER_FIELDS: [&str; 7] = [
    "id",
    "created",
    "started",
    "finished",
    "status",
    "execution_node",
    "name",
];

/// Events per INSERT statement.
const EVENT_INSERT_CHUNK: usize = 500;

/// Fields a status change may set along with the status.
#[derive(Debug, Clone, Default)]
pub struct StatusChange<'a> {
    /// Set controller_node.
    pub controller_node: Option<&'a str>,
    /// Set execution_node.
    pub execution_node: Option<&'a str>,
    /// Set execution_route.
    pub execution_route: Option<&'a str>,
    /// Set job_explanation.
    pub job_explanation: Option<&'a str>,
    /// Set result_traceback.
    pub result_traceback: Option<&'a str>,
    /// Set rc.
    pub rc: Option<i64>,
    /// Stamp `started` with now.
    pub stamp_started: bool,
}

pub(super) fn job_from_row(row: &SqliteRow) -> Result<Job, StoreError> {
    let status: String = row.try_get("status")?;
    let status = status.parse().map_err(|_| StoreError::Invalid {
        what: "job status",
        value: status.clone(),
    })?;
    let kind: String = row.try_get("kind")?;
    let kind = kind.parse().map_err(|_| StoreError::Invalid {
        what: "job type",
        value: kind.clone(),
    })?;
    Ok(Job {
        id: row.try_get("id")?,
        kind,
        name: row.try_get("name")?,
        status,
        cancel_flag: row.try_get("cancel_flag")?,
        playbook: row.try_get("playbook")?,
        project_sha256: row.try_get("project_sha256")?,
        inventory: row.try_get("inventory")?,
        extra_vars: row.try_get("extra_vars")?,
        limit: row.try_get("limit_hosts")?,
        forks: row.try_get("forks")?,
        verbosity: row.try_get("verbosity")?,
        requested_node: row.try_get("requested_node")?,
        task_impact: row.try_get("task_impact")?,
        instance_group: row.try_get("instance_group")?,
        host_count: row.try_get("host_count")?,
        execution_environment: row.try_get("execution_environment")?,
        controller_node: row.try_get("controller_node")?,
        execution_node: row.try_get("execution_node")?,
        execution_route: row.try_get("execution_route")?,
        work_unit_id: row.try_get("work_unit_id")?,
        result_offset: row.try_get("result_offset")?,
        job_explanation: row.try_get("job_explanation")?,
        result_traceback: row.try_get("result_traceback")?,
        rc: row.try_get("rc")?,
        created: row.try_get("created")?,
        started: row.try_get("started")?,
        finished: row.try_get("finished")?,
        module_name: row.try_get("module_name")?,
        module_args: row.try_get("module_args")?,
        become_enabled: row.try_get("become_enabled")?,
        inventory_id: row.try_get("inventory_id")?,
        inventory_source: row.try_get("inventory_source")?,
        project_id: row.try_get("project_id")?,
        scm_revision: row.try_get("scm_revision")?,
    })
}

impl Store {
    /// Stores a new `pending` job.
    pub async fn create_job(&self, new: &NewJob) -> Result<Job, StoreError> {
        insert_job(&self.pool, new).await
    }

    /// One job.
    pub async fn job(&self, id: i64) -> Result<Option<Job>, StoreError> {
        let row = sqlx::query("SELECT * FROM jobs WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(job_from_row).transpose()
    }

    /// A page of jobs, newest first, optionally only those with `status`.
    pub async fn list_jobs(
        &self,
        filter: &JobFilter,
        order_by: &str,
        limit: i64,
        offset: i64,
    ) -> Result<Page<Job>, StoreError> {
        let (field, dir) = match order_by.strip_prefix('-') {
            Some(f) => (f, "DESC"),
            None => (order_by, "ASC"),
        };
        let field = JOB_ORDER_FIELDS
            .iter()
            .find(|f| **f == field)
            .copied()
            .unwrap_or("id");
        let status = filter.status.map(JobStatus::as_str);
        let kind = filter.kind.map(JobKind::as_str);
        let where_sql = "($1 IS NULL OR status = $1) AND ($2 IS NULL OR execution_node = $2) \
                         AND ($3 IS NULL OR instance_group = $3) AND ($4 IS NULL OR kind = $4)";
        let count: i64 =
            sqlx::query_scalar(&format!("SELECT COUNT(*) FROM jobs WHERE {where_sql}"))
                .bind(status)
                .bind(&filter.execution_node)
                .bind(&filter.instance_group)
                .bind(kind)
                .fetch_one(&self.pool)
                .await?;
        let rows = sqlx::query(&format!(
            "SELECT * FROM jobs WHERE {where_sql} ORDER BY {field} {dir}, id {dir} LIMIT $5 OFFSET $6"
        ))
        .bind(status)
        .bind(&filter.execution_node)
        .bind(&filter.instance_group)
        .bind(kind)
        .bind(limit)
        .bind(offset)
        .fetch_all(&self.pool)
        .await?;
        let results = rows.iter().map(job_from_row).collect::<Result<_, _>>()?;
        Ok(Page { count, results })
    }

    /// Jobs in any of `statuses`, oldest first.
    pub async fn jobs_in(&self, statuses: &[JobStatus]) -> Result<Vec<Job>, StoreError> {
        let names: Vec<&str> = statuses.iter().map(|s| s.as_str()).collect();
        let list = serde_json::to_string(&names).unwrap_or_else(|_| "[]".into());
        let rows = sqlx::query(
            "SELECT * FROM jobs WHERE status IN (SELECT value FROM json_each($1)) ORDER BY id",
        )
        .bind(list)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(job_from_row).collect()
    }

    /// Moves a job from one of `from` to `to`, setting the given fields. Returns false (and
    /// changes nothing) when the job is not in one of `from`. Final statuses stamp `finished`.
    pub async fn transition(
        &self,
        id: i64,
        from: &[JobStatus],
        to: JobStatus,
        change: &StatusChange<'_>,
    ) -> Result<bool, StoreError> {
        let names: Vec<&str> = from.iter().map(|s| s.as_str()).collect();
        let from_list = serde_json::to_string(&names).unwrap_or_else(|_| "[]".into());
        let stamp = now();
        let done = sqlx::query(
            "UPDATE jobs SET status = $1, \
               controller_node = COALESCE($2, controller_node), \
               execution_node = COALESCE($3, execution_node), \
               execution_route = COALESCE($4, execution_route), \
               job_explanation = COALESCE($5, job_explanation), \
               result_traceback = COALESCE($6, result_traceback), \
               rc = COALESCE($7, rc), \
               started = CASE WHEN $8 THEN COALESCE(started, $9) ELSE started END, \
               finished = CASE WHEN $10 THEN $9 ELSE finished END \
             WHERE id = $11 AND status IN (SELECT value FROM json_each($12))",
        )
        .bind(to.as_str())
        .bind(change.controller_node)
        .bind(change.execution_node)
        .bind(change.execution_route)
        .bind(change.job_explanation)
        .bind(change.result_traceback)
        .bind(change.rc)
        .bind(change.stamp_started)
        .bind(&stamp)
        .bind(to.is_final())
        .bind(id)
        .bind(from_list)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Records receptor's unit id for a job that is being submitted.
    pub async fn set_work_unit(&self, id: i64, unit_id: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE jobs SET work_unit_id = $1 WHERE id = $2")
            .bind(unit_id)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Stores events (each at most once per counter) and the output offset they were parsed up
    /// to, in one transaction.
    pub async fn record_events(
        &self,
        id: i64,
        events: &[EventRow],
        offset: u64,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        // One multi-row statement per chunk: a round trip per event would cap ingestion well
        // below what SQLite can take (9 parameters a row stays under SQLite's 32,766 limit).
        for chunk in events.chunks(EVENT_INSERT_CHUNK) {
            let mut insert = sqlx::QueryBuilder::new(
                "INSERT INTO job_events (job_id, counter, uuid, event, start_line, end_line, stdout, created, data) ",
            );
            insert.push_values(chunk, |mut row, e| {
                row.push_bind(id)
                    .push_bind(e.counter)
                    .push_bind(&e.uuid)
                    .push_bind(&e.event)
                    .push_bind(e.start_line)
                    .push_bind(e.end_line)
                    .push_bind(&e.stdout)
                    .push_bind(&e.created)
                    .push_bind(&e.data);
            });
            insert.push(" ON CONFLICT (job_id, counter) DO NOTHING");
            insert.build().execute(&mut *tx).await?;
        }
        sqlx::query("UPDATE jobs SET result_offset = $1 WHERE id = $2")
            .bind(i64::try_from(offset).unwrap_or(i64::MAX))
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Events of a job with counter greater than `after`, in counter order.
    pub async fn events(
        &self,
        id: i64,
        after: i64,
        limit: i64,
    ) -> Result<Vec<EventRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT counter, uuid, event, start_line, end_line, stdout, created, data \
             FROM job_events WHERE job_id = $1 AND counter > $2 ORDER BY counter LIMIT $3",
        )
        .bind(id)
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(EventRow {
                    counter: r.try_get("counter")?,
                    uuid: r.try_get("uuid")?,
                    event: r.try_get("event")?,
                    start_line: r.try_get("start_line")?,
                    end_line: r.try_get("end_line")?,
                    stdout: r.try_get("stdout")?,
                    created: r.try_get("created")?,
                    data: r.try_get("data")?,
                })
            })
            .collect()
    }

    /// The counter and type of the job's newest stored event, if any.
    pub async fn last_event(&self, id: i64) -> Result<Option<(i64, String)>, StoreError> {
        let row = sqlx::query(
            "SELECT counter, event FROM job_events WHERE job_id = $1 ORDER BY counter DESC LIMIT 1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| Ok((r.try_get("counter")?, r.try_get("event")?)))
            .transpose()
    }

    /// Number of events stored for a job.
    pub async fn event_count(&self, id: i64) -> Result<i64, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT COUNT(*) FROM job_events WHERE job_id = $1")
                .bind(id)
                .fetch_one(&self.pool)
                .await?,
        )
    }

    /// The job's stdout: its events' text in counter order, one event per line.
    pub async fn stdout(&self, id: i64) -> Result<String, StoreError> {
        let parts: Vec<String> = sqlx::query_scalar(
            "SELECT stdout FROM job_events WHERE job_id = $1 AND stdout != '' ORDER BY counter",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        let mut out = parts.join("\n");
        if !out.is_empty() {
            out.push('\n');
        }
        Ok(out)
    }
}

/// Inserts a new `pending` job through `ex` (the pool or a transaction).
pub(super) async fn insert_job<'e, E: sqlx::SqliteExecutor<'e>>(
    ex: E,
    new: &NewJob,
) -> Result<Job, StoreError> {
    let row = sqlx::query(
            "INSERT INTO jobs (name, status, playbook, project_sha256, inventory, extra_vars, \
             limit_hosts, forks, verbosity, requested_node, created, task_impact, instance_group, host_count, execution_environment, \
             kind, module_name, module_args, become_enabled, inventory_id, inventory_source, project_id, scm_revision) \
             VALUES ($1, 'pending', $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, \
             $15, $16, $17, $18, $19, $20, $21, $22) RETURNING *",
        )
        .bind(&new.name)
        .bind(&new.playbook)
        .bind(&new.project_sha256)
        .bind(&new.inventory)
        .bind(&new.extra_vars)
        .bind(&new.limit)
        .bind(new.forks)
        .bind(new.verbosity)
        .bind(&new.requested_node)
        .bind(now())
        .bind(new.task_impact)
        .bind(&new.instance_group)
        .bind(new.host_count)
        .bind(&new.execution_environment)
        .bind(new.kind.as_str())
        .bind(&new.module_name)
        .bind(&new.module_args)
        .bind(new.become_enabled)
        .bind(new.inventory_id)
        .bind(&new.inventory_source)
        .bind(new.project_id)
        .bind(&new.scm_revision)
        .fetch_one(ex)
        .await?;
    job_from_row(&row)
}

/// What the jobs table says about one node.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NodeLoad {
    /// Active jobs executing on it (waiting, submitting, running).
    pub running: i64,
    /// Every job that executed (or is placed to execute) on it.
    pub total: i64,
    /// Sum of the task impact of its active jobs.
    pub execution_impact: i64,
    /// Active jobs it controls.
    pub controlled: i64,
}

impl NodeLoad {
    /// AWX's consumed capacity: execution impact on nodes that run jobs, plus the controller's
    /// share on nodes that control them.
    pub fn consumed(&self, node_type: NodeType) -> i64 {
        let exec = if node_type.runs_user_jobs() {
            self.execution_impact
        } else {
            0
        };
        let control = if matches!(node_type, NodeType::Control | NodeType::Hybrid) {
            self.controlled * capacity::CONTROL_TASK_IMPACT
        } else {
            0
        };
        exec + control
    }
}

impl Store {
    /// Job figures per node name (active = waiting, submitting, running).
    pub async fn node_loads(&self) -> Result<HashMap<String, NodeLoad>, StoreError> {
        let mut load: HashMap<String, NodeLoad> = HashMap::new();
        let totals = sqlx::query(
            "SELECT execution_node, COUNT(*) AS total FROM jobs \
             WHERE execution_node IS NOT NULL GROUP BY execution_node",
        )
        .fetch_all(&self.pool)
        .await?;
        for row in totals {
            let host: String = row.try_get("execution_node")?;
            load.entry(host).or_default().total = row.try_get("total")?;
        }
        let active = sqlx::query(
            "SELECT execution_node, controller_node, task_impact FROM jobs \
             WHERE status IN ('waiting', 'submitting', 'running')",
        )
        .fetch_all(&self.pool)
        .await?;
        for row in active {
            let exec: Option<String> = row.try_get("execution_node")?;
            let ctrl: Option<String> = row.try_get("controller_node")?;
            let impact: i64 = row.try_get("task_impact")?;
            if let Some(host) = exec {
                let l = load.entry(host).or_default();
                l.running += 1;
                l.execution_impact += impact;
            }
            if let Some(host) = ctrl {
                load.entry(host).or_default().controlled += 1;
            }
        }
        Ok(load)
    }
}

impl Store {
    /// Records why a pending job is not placed (only while it is still pending).
    pub async fn set_pending_reason(&self, id: i64, reason: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE jobs SET job_explanation = $1 WHERE id = $2 AND status = 'pending'")
            .bind(reason)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(counter: i64) -> EventRow {
        EventRow {
            counter,
            uuid: format!("u{counter}"),
            event: "runner_on_ok".into(),
            start_line: counter,
            end_line: counter + 1,
            stdout: format!("line {counter}"),
            created: None,
            data: "{}".into(),
        }
    }

    #[tokio::test]
    async fn events_are_stored_once_each_with_their_offset() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("t.db")).await.unwrap();
        let job = s
            .create_job(&NewJob {
                name: "j".into(),
                playbook: "p.yml".into(),
                project_sha256: "0".repeat(64),
                inventory: "localhost\n".into(),
                extra_vars: "{}".into(),
                limit: None,
                forks: None,
                verbosity: None,
                requested_node: None,
                task_impact: 2,
                instance_group: "default".into(),
                host_count: Some(1),
                ..NewJob::default()
            })
            .await
            .unwrap();
        // More than one INSERT chunk, a duplicate inside the batch, then the batch again (a
        // resumed read re-parses the same bytes).
        let mut batch: Vec<EventRow> = (1..=1200).map(event).collect();
        batch.push(event(7));
        s.record_events(job.id, &batch, 1000).await.unwrap();
        s.record_events(job.id, &batch, 2000).await.unwrap();
        assert_eq!(s.event_count(job.id).await.unwrap(), 1200);
        assert_eq!(s.job(job.id).await.unwrap().unwrap().result_offset, 2000);
        let tail = s.events(job.id, 1198, 10).await.unwrap();
        assert_eq!(
            tail.iter().map(|e| e.counter).collect::<Vec<_>>(),
            [1199, 1200]
        );
    }
}
