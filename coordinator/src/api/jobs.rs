//! Jobs: create, list, detail, events, stdout, and a live event stream (SSE).
//!
//! Every kind of work (playbook jobs, ad hoc commands, inventory and project updates) is a job
//! row; `routes_for` gives each kind the same detail, events, stdout, artifacts, cancel and stream
//! endpoints under its own collection, and a row is only found under its own kind's collection.

use std::convert::Infallible;
use std::time::Duration;

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::Stream;
use futures::stream::{self, StreamExt};
use meshrun_shared::capacity;
use meshrun_shared::node_id::NodeId;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::job_fields::{self, RunFields};
use super::page::{PageQuery, Paged};
use super::{ApiError, AppState};
use crate::projects::ProjectError;
use crate::store::{EventRow, JOB_ORDER_FIELDS, Job, JobFilter, JobKind, JobStatus, NewJob};

/// `POST /api/v2/jobs/` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateJob {
    name: Option<String>,
    /// sha256 of an uploaded project archive (or give `project_id`).
    project: Option<String>,
    /// A stored project (`/api/v2/projects/`); a git project's stale revision is updated first.
    project_id: Option<i64>,
    playbook: String,
    /// Inventory text (INI or YAML); exactly one of this and `inventory_id`.
    inventory: Option<String>,
    /// A stored inventory, rendered into the job at create time.
    inventory_id: Option<i64>,
    #[serde(default)]
    extra_vars: Map<String, Value>,
    limit: Option<String>,
    forks: Option<i64>,
    verbosity: Option<i64>,
    execution_node: Option<String>,
    instance_group: Option<String>,
    /// Execution-environment image (default: the execution node's).
    execution_environment: Option<String>,
}

/// Checks the playbook path and, when the project's files are known, that it is one of them.
fn check_playbook(playbook: &str, files: Option<&[String]>) -> Result<(), ApiError> {
    let bad = playbook.is_empty()
        || playbook.starts_with('/')
        || playbook.split('/').any(|c| c == ".." || c.is_empty())
        || playbook.contains('\0');
    if bad {
        return Err(ApiError::bad_request(format!(
            "playbook {playbook:?} must be a relative path inside the project without '..'"
        )));
    }
    if let Some(files) = files
        && !files.iter().any(|f| f == playbook)
    {
        return Err(ApiError::bad_request(format!(
            "playbook {playbook:?} is not a file of the project archive"
        )));
    }
    Ok(())
}

fn validate(body: &CreateJob, files: Option<&[String]>) -> Result<Option<NodeId>, ApiError> {
    check_playbook(&body.playbook, files)?;
    RunFields {
        inventory: body.inventory.as_deref(),
        limit: body.limit.as_deref(),
        forks: body.forks,
        verbosity: body.verbosity,
        execution_node: body.execution_node.as_deref(),
        instance_group: body.instance_group.as_deref(),
        execution_environment: body.execution_environment.as_deref(),
    }
    .check()
}

/// The job as the API shows it (its `type` says which kind of work it is).
pub fn job_json(job: &Job) -> Value {
    let mut v = serde_json::to_value(job).unwrap_or_else(|_| json!({}));
    if let Some(obj) = v.as_object_mut() {
        obj.insert(
            "url".into(),
            json!(format!("/api/v2/{}/{}/", job.kind.collection(), job.id)),
        );
        obj.insert("elapsed".into(), json!(elapsed(job)));
        if let Some(args) = &job.module_args {
            obj.insert(
                "module_args".into(),
                json!(super::secrets::mask_key_values(args)),
            );
        }
        obj.insert(
            "failed".into(),
            json!(matches!(job.status, JobStatus::Failed | JobStatus::Error)),
        );
    }
    v
}

fn elapsed(job: &Job) -> f64 {
    let parse = |s: &Option<String>| {
        s.as_deref()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
    };
    match (parse(&job.started), parse(&job.finished)) {
        (Some(a), Some(b)) => (b - a).num_milliseconds() as f64 / 1000.0,
        (Some(a), None) => {
            (chrono::Utc::now().fixed_offset() - a).num_milliseconds() as f64 / 1000.0
        }
        _ => 0.0,
    }
}

/// `POST /api/v2/jobs/`.
pub async fn create(
    State(state): State<AppState>,
    body: Result<Json<CreateJob>, JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let Json(body) =
        body.map_err(|e| ApiError::bad_request(format!("invalid job: {}", e.body_text())))?;
    let source = project_source(&state, &body).await?;
    let node = validate(&body, source.files.as_deref())?;
    let inventory =
        super::inventories::job_inventory(&state, body.inventory.as_deref(), body.inventory_id)
            .await?;
    let host_count = inventory.host_count;
    let new = NewJob {
        name: body.name.clone().unwrap_or_else(|| body.playbook.clone()),
        playbook: body.playbook.clone(),
        project_sha256: source.sha256.clone(),
        project_id: body.project_id,
        scm_revision: source.revision.clone(),
        inventory: inventory.text,
        inventory_id: inventory.inventory_id,
        extra_vars: Value::Object(body.extra_vars.clone()).to_string(),
        limit: body.limit.clone(),
        forks: body.forks,
        verbosity: body.verbosity,
        requested_node: node.map(|n| n.to_string()),
        task_impact: capacity::task_impact(host_count, body.forks),
        instance_group: job_fields::existing_group(&state, body.instance_group.as_deref()).await?,
        host_count,
        execution_environment: body.execution_environment.clone(),
        ..NewJob::default()
    };
    // The update starts before the job exists, so the job never waits for nothing.
    let update = match source.update {
        Some(project) => Some(super::scm_projects::start_update(&state, &project).await?.0),
        None => None,
    };
    let mut job = state.store.create_job(&new).await?;
    if let Some(update) = update {
        let reason = format!("waiting for project update {}", update.id);
        state.store.set_pending_reason(job.id, &reason).await?;
        job.job_explanation = reason;
    }
    state.scheduler_wake.notify_one();
    Ok((StatusCode::CREATED, Json(job_json(&job))))
}

/// Where a new job's files come from.
struct ProjectSource {
    /// The archive (empty while a project update must run first).
    sha256: String,
    /// The archive's files, when it is known.
    files: Option<Vec<String>>,
    /// The git revision the archive holds.
    revision: Option<String>,
    /// The project to update before the job can be placed.
    update: Option<crate::store::Project>,
}

async fn project_source(state: &AppState, body: &CreateJob) -> Result<ProjectSource, ApiError> {
    let archive = |sha: &str| match state.projects.get(sha) {
        Ok(a) => Ok(a),
        Err(e @ (ProjectError::Unknown(_) | ProjectError::BadId(_))) => {
            Err(ApiError::bad_request(format!("project: {e}")))
        }
        Err(e) => Err(ApiError::internal(e)),
    };
    match (&body.project, body.project_id) {
        (Some(sha), None) => {
            let a = archive(sha)?;
            Ok(ProjectSource {
                sha256: a.sha256,
                files: Some(a.files),
                revision: None,
                update: None,
            })
        }
        (None, Some(id)) => {
            let project = state.store.project(id).await?.ok_or_else(|| {
                ApiError::bad_request(format!("project_id: no project with id {id}"))
            })?;
            if project.is_fresh(chrono::Utc::now()) {
                let a = archive(&project.archive_sha256)?;
                Ok(ProjectSource {
                    sha256: a.sha256,
                    files: Some(a.files),
                    revision: (!project.scm_revision.is_empty())
                        .then(|| project.scm_revision.clone()),
                    update: None,
                })
            } else {
                Ok(ProjectSource {
                    sha256: String::new(),
                    files: None,
                    revision: None,
                    update: Some(project),
                })
            }
        }
        _ => Err(ApiError::bad_request(
            "give exactly one of project (an uploaded archive's sha256) and project_id",
        )),
    }
}

/// `?status=&execution_node=&instance_group=&type=&order_by=` plus paging (`type` only on the
/// unified view).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    status: Option<String>,
    execution_node: Option<String>,
    instance_group: Option<String>,
    #[serde(rename = "type")]
    kind: Option<String>,
    order_by: Option<String>,
    page: Option<i64>,
    page_size: Option<i64>,
}

/// `GET /api/v2/jobs/` (newest first unless `order_by` says otherwise).
pub async fn list(
    State(state): State<AppState>,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<Paged<Value>>, ApiError> {
    list_kind(state, q, Some(JobKind::Job)).await
}

/// `GET /api/v2/unified_jobs/`: every kind of work together; `?type=` narrows it to one.
pub async fn unified_list(
    State(state): State<AppState>,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<Paged<Value>>, ApiError> {
    list_kind(state, q, None).await
}

/// The list of one kind's collection (`Some`) or of the unified view (`None`).
pub async fn list_kind(
    state: AppState,
    q: Result<Query<ListQuery>, QueryRejection>,
    only: Option<JobKind>,
) -> Result<Json<Paged<Value>>, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let status = q
        .status
        .as_deref()
        .map(str::parse::<JobStatus>)
        .transpose()
        .map_err(ApiError::bad_request)?;
    let kind = match (only, q.kind.as_deref()) {
        (Some(k), None) => Some(k),
        (Some(k), Some(_)) => {
            return Err(ApiError::bad_request(format!(
                "type filters only the unified view (/api/v2/unified_jobs/); /api/v2/{}/ lists {} rows only",
                k.collection(),
                k.as_str()
            )));
        }
        (None, t) => t
            .map(str::parse::<JobKind>)
            .transpose()
            .map_err(ApiError::bad_request)?,
    };
    let order_by = q.order_by.clone().unwrap_or_else(|| "-id".into());
    if !JOB_ORDER_FIELDS.contains(&order_by.trim_start_matches('-')) {
        return Err(ApiError::bad_request(format!(
            "order_by must be one of {} (a leading '-' sorts descending), got {order_by:?}",
            JOB_ORDER_FIELDS.join(", ")
        )));
    }
    let (limit, offset, page, size) = PageQuery {
        page: q.page,
        page_size: q.page_size,
    }
    .resolve()?;
    let filter = JobFilter {
        status,
        execution_node: q.execution_node.clone(),
        instance_group: q.instance_group.clone(),
        kind,
    };
    let rows = state
        .store
        .list_jobs(&filter, &order_by, limit, offset)
        .await?;
    let mut extra = String::new();
    for (k, v) in [
        ("status", &q.status),
        ("execution_node", &q.execution_node),
        ("instance_group", &q.instance_group),
        ("type", &q.kind),
        ("order_by", &q.order_by),
    ] {
        if let Some(v) = v {
            extra.push_str(&format!("&{k}={}", crate::url_query::encode_value(v)));
        }
    }
    let path = match only {
        Some(k) => format!("/api/v2/{}/", k.collection()),
        None => "/api/v2/unified_jobs/".to_string(),
    };
    let results = rows.results.iter().map(job_json).collect();
    Ok(Json(Paged::new(
        &path, &extra, rows.count, page, size, results,
    )))
}

/// Detail, events, stdout, artifacts and the live stream for one kind's collection.
pub fn routes_for(kind: JobKind) -> axum::Router<AppState> {
    use axum::routing::get;
    let base = format!("/api/v2/{}/{{id}}", kind.collection());
    let mut r = axum::Router::new()
        .route(
            &format!("{base}/"),
            get(move |s: State<AppState>, p: Path<i64>| detail(s, p, kind)),
        )
        .route(
            &format!("{base}/events/"),
            get(
                move |s: State<AppState>,
                      p: Path<i64>,
                      q: Result<Query<EventsQuery>, QueryRejection>| {
                    events(s, p, q, kind)
                },
            ),
        )
        .route(
            &format!("{base}/stdout/"),
            get(
                move |s: State<AppState>,
                      p: Path<i64>,
                      q: Result<Query<StdoutQuery>, QueryRejection>| {
                    stdout(s, p, q, kind)
                },
            ),
        )
        .route(
            &format!("{base}/cancel/"),
            get(move |s: State<AppState>, p: Path<i64>| super::cancel::can_cancel(s, p, kind))
                .post(move |s: State<AppState>, p: Path<i64>| super::cancel::cancel(s, p, kind)),
        )
        .route(
            &format!("{base}/artifacts/"),
            get(move |s: State<AppState>, p: Path<i64>| artifacts(s, p, kind)),
        )
        .route(
            &format!("{base}/events/stream/"),
            get(
                move |s: State<AppState>,
                      p: Path<i64>,
                      q: Result<Query<StreamQuery>, QueryRejection>| {
                    stream(s, p, q, kind)
                },
            ),
        );
    if kind == JobKind::Job {
        // AWX's name for a playbook job's events.
        r = r.route(
            &format!("{base}/job_events/"),
            get(
                move |s: State<AppState>,
                      p: Path<i64>,
                      q: Result<Query<EventsQuery>, QueryRejection>| {
                    events(s, p, q, kind)
                },
            ),
        );
    }
    r
}

/// The row `id` of `kind` (a row of another kind is not found here, as in AWX).
pub async fn load(state: &AppState, id: i64, kind: JobKind) -> Result<Job, ApiError> {
    state
        .store
        .job(id)
        .await?
        .filter(|j| j.kind == kind)
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "no {} with id {id}",
                kind.as_str().replace('_', " ")
            ))
        })
}

/// `GET /api/v2/<collection>/{id}/`.
pub async fn detail(
    State(state): State<AppState>,
    Path(id): Path<i64>,
    kind: JobKind,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(job_json(&load(&state, id, kind).await?)))
}

fn event_json(e: &EventRow) -> Value {
    let data: Value = serde_json::from_str(&e.data).unwrap_or(Value::Null);
    json!({
        "counter": e.counter,
        "uuid": e.uuid,
        "event": e.event,
        "stdout": e.stdout,
        "start_line": e.start_line,
        "end_line": e.end_line,
        "created": e.created,
        "event_data": data.get("event_data").cloned().unwrap_or(Value::Null),
    })
}

/// `?counter__gt=` plus paging.
#[derive(Debug, Deserialize)]
pub struct EventsQuery {
    #[serde(rename = "counter__gt")]
    counter_gt: Option<i64>,
    page: Option<i64>,
    page_size: Option<i64>,
}

/// `GET /api/v2/<collection>/{id}/events/` (and `job_events/` for jobs).
pub async fn events(
    State(state): State<AppState>,
    Path(id): Path<i64>,
    q: Result<Query<EventsQuery>, QueryRejection>,
    kind: JobKind,
) -> Result<Json<Paged<Value>>, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::bad_request(e.body_text()))?;
    load(&state, id, kind).await?;
    let (limit, offset, page, size) = PageQuery {
        page: q.page,
        page_size: q.page_size,
    }
    .resolve()?;
    let after = q.counter_gt.unwrap_or(0);
    let count = state.store.event_count(id).await?;
    let rows = state.store.events(id, after + offset, limit).await?;
    let path = format!("/api/v2/{}/{id}/events/", kind.collection());
    Ok(Json(Paged::new(
        &path,
        "",
        count,
        page,
        size,
        rows.iter().map(event_json).collect(),
    )))
}

/// `?format=txt|json`.
#[derive(Debug, Deserialize)]
pub struct StdoutQuery {
    format: Option<String>,
}

/// `GET /api/v2/<collection>/{id}/stdout/`.
pub async fn stdout(
    State(state): State<AppState>,
    Path(id): Path<i64>,
    q: Result<Query<StdoutQuery>, QueryRejection>,
    kind: JobKind,
) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::bad_request(e.body_text()))?;
    load(&state, id, kind).await?;
    let text = state.store.stdout(id).await?;
    match q.format.as_deref().unwrap_or("txt") {
        "txt" => Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response()),
        "json" => Ok(Json(json!({ "content": text })).into_response()),
        other => Err(ApiError::bad_request(format!(
            "format must be txt or json, got {other:?}"
        ))),
    }
}

/// `GET /api/v2/<collection>/{id}/artifacts/`: the job's artifacts dir as tar + zstd.
pub async fn artifacts(
    State(state): State<AppState>,
    Path(id): Path<i64>,
    kind: JobKind,
) -> Result<Response, ApiError> {
    load(&state, id, kind).await?;
    let Some(path) = state.runner.artifacts_path(id) else {
        return Err(ApiError::not_found(format!(
            "job {id} has no stored artifacts"
        )));
    };
    let bytes = tokio::fs::read(&path).await.map_err(ApiError::internal)?;
    Ok(([(header::CONTENT_TYPE, "application/zstd")], bytes).into_response())
}

/// `?after=` counter to resume from.
#[derive(Debug, Deserialize)]
pub struct StreamQuery {
    after: Option<i64>,
}

struct Follow {
    state: AppState,
    rx: tokio::sync::broadcast::Receiver<i64>,
    id: i64,
    after: i64,
    last_status: Option<(JobStatus, String)>,
    done: bool,
}

impl Follow {
    /// The next batch of SSE events, or `None` when the job has ended and all was sent.
    async fn next_batch(&mut self) -> Option<Vec<Event>> {
        if self.done {
            return None;
        }
        loop {
            let events = self
                .state
                .store
                .events(self.id, self.after, 500)
                .await
                .ok()?;
            let job = self.state.store.job(self.id).await.ok()??;
            let mut out = Vec::new();
            // A pending job's reason can change without its status changing; send both.
            let now = (job.status, job.job_explanation.clone());
            if self.last_status.as_ref() != Some(&now) {
                self.last_status = Some(now);
                out.push(status_event(&job));
            }
            for e in &events {
                self.after = e.counter;
                out.push(
                    Event::default()
                        .event("job_event")
                        .id(e.counter.to_string())
                        .data(event_json(e).to_string()),
                );
            }
            if events.is_empty() && job.status.is_final() {
                self.done = true;
                if out.is_empty() {
                    out.push(status_event(&job));
                }
            }
            if !out.is_empty() {
                return Some(out);
            }
            // Nothing new: wait for a change notice about this job, or re-check after a while.
            let _ = tokio::time::timeout(Duration::from_secs(1), async {
                loop {
                    match self.rx.recv().await {
                        Ok(changed) if changed == self.id => break,
                        Ok(_) => {}
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => break,
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                            std::future::pending::<()>().await
                        }
                    }
                }
            })
            .await;
        }
    }
}

fn status_event(job: &Job) -> Event {
    Event::default().event("status").data(
        json!({
            "status": job.status,
            "controller_node": job.controller_node,
            "execution_node": job.execution_node,
            "execution_route": job.execution_route,
            "job_explanation": job.job_explanation,
        })
        .to_string(),
    )
}

/// `GET /api/v2/<collection>/{id}/events/stream/`: every event after `after`, then live ones,
/// then the final status.
pub async fn stream(
    State(state): State<AppState>,
    Path(id): Path<i64>,
    q: Result<Query<StreamQuery>, QueryRejection>,
    kind: JobKind,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::bad_request(e.body_text()))?;
    load(&state, id, kind).await?;
    let follow = Follow {
        rx: state.bus.subscribe(),
        state,
        id,
        after: q.after.unwrap_or(0),
        last_status: None,
        done: false,
    };
    let events = stream::unfold(follow, |mut f| async move {
        let batch = f.next_batch().await?;
        Some((stream::iter(batch.into_iter().map(Ok)), f))
    })
    .flatten();
    Ok(Sse::new(events).keep_alive(KeepAlive::default()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn job_answers_show_no_extra_vars_inventory_or_secret_module_args() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::Store::open(&dir.path().join("db"))
            .await
            .unwrap();
        let job = store
            .create_job(&NewJob {
                kind: JobKind::AdHocCommand,
                name: "x".into(),
                inventory: "h1 ansible_password=inv-s3cret\n".into(),
                extra_vars: r#"{"db_password": "ev-s3cret"}"#.into(),
                module_args: Some("name=bob password=arg-s3cret".into()),
                ..NewJob::default()
            })
            .await
            .unwrap();
        let shown = job_json(&job).to_string();
        for secret in ["inv-s3cret", "ev-s3cret", "arg-s3cret"] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        assert!(shown.contains("name=bob password=$encrypted$"), "{shown}");
    }

    #[test]
    fn playbook_paths_are_checked() {
        let files = vec!["site.yml".to_string(), "plays/a.yml".to_string()];
        assert!(check_playbook("site.yml", Some(&files)).is_ok());
        assert!(check_playbook("plays/a.yml", Some(&files)).is_ok());
        for bad in [
            "",
            "/etc/passwd",
            "../site.yml",
            "plays//a.yml",
            "missing.yml",
        ] {
            assert!(check_playbook(bad, Some(&files)).is_err(), "{bad}");
        }
    }
}
