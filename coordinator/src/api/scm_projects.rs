//! Projects: `GET|POST /api/v2/projects/`, `GET /api/v2/projects/{id}/`,
//! `POST /api/v2/projects/{id}/update/` (starts a project update, or answers with the one
//! already running) and `GET /api/v2/project_updates/`. A project is an uploaded archive or a
//! git repository (URL checked by `crate::scm_url`); jobs launched from a git project whose
//! stored revision is stale start an update through [`start_update`] and wait for it.

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::jobs::{ListQuery, job_json, list_kind};
use super::page::{PageQuery, Paged};
use super::{ApiError, AppState};
use crate::projects::ProjectError;
use crate::runner::project_update;
use crate::scm_url;
use crate::store::{Job, JobKind, NewJob, NewProject, Project, ScmType};

/// Longest project name.
const MAX_NAME: usize = 512;
/// Longest `update_cache_timeout` (a year).
const MAX_CACHE_TIMEOUT: i64 = 365 * 24 * 3600;
/// A project update's impact on the control node (as AWX).
const UPDATE_TASK_IMPACT: i64 = 1;

/// `POST /api/v2/projects/` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateProject {
    name: String,
    scm_type: String,
    /// git: the repository.
    scm_url: Option<String>,
    /// git: branch, tag or commit (default: the remote's HEAD).
    scm_branch: Option<String>,
    /// archive: the sha256 of an uploaded project archive.
    archive: Option<String>,
    /// git: seconds a stored revision stays fresh for jobs (default 0: update before each job).
    update_cache_timeout: Option<i64>,
}

/// The project as the API shows it.
pub fn project_json(p: &Project) -> Value {
    let mut v = serde_json::to_value(p).unwrap_or_else(|_| json!({}));
    if let Some(obj) = v.as_object_mut() {
        obj.insert("url".into(), json!(format!("/api/v2/projects/{}/", p.id)));
        obj.insert(
            "related".into(),
            json!({
                "update": format!("/api/v2/projects/{}/update/", p.id),
                "last_update": p.last_update_id.map(|u| format!("/api/v2/project_updates/{u}/")),
            }),
        );
    }
    v
}

fn check_new(state: &AppState, body: &CreateProject) -> Result<NewProject, ApiError> {
    let name = body.name.trim();
    if name.is_empty() || name.len() > MAX_NAME || name.chars().any(char::is_control) {
        return Err(ApiError::bad_request(
            "name must be a non-empty single line of at most 512 bytes",
        ));
    }
    let scm_type: ScmType = body.scm_type.parse().map_err(ApiError::bad_request)?;
    let timeout = body.update_cache_timeout.unwrap_or(0);
    if !(0..=MAX_CACHE_TIMEOUT).contains(&timeout) {
        return Err(ApiError::bad_request(format!(
            "update_cache_timeout must be between 0 and {MAX_CACHE_TIMEOUT} seconds"
        )));
    }
    let mut new = NewProject {
        name: name.to_string(),
        scm_type,
        scm_url: String::new(),
        scm_branch: String::new(),
        archive_sha256: String::new(),
        update_cache_timeout: timeout,
    };
    match scm_type {
        ScmType::Git => {
            if body.archive.is_some() {
                return Err(ApiError::bad_request(
                    "a git project takes scm_url, not archive",
                ));
            }
            let url = body
                .scm_url
                .as_deref()
                .ok_or_else(|| ApiError::bad_request("a git project needs scm_url"))?;
            let branch = body.scm_branch.clone().unwrap_or_default();
            scm_url::check_url(url, state.allow_file_scm_urls)
                .map_err(|e| ApiError::bad_request(e.to_string()))?;
            scm_url::check_branch(&branch).map_err(|e| ApiError::bad_request(e.to_string()))?;
            new.scm_url = url.to_string();
            new.scm_branch = branch;
        }
        ScmType::Archive => {
            if body.scm_url.is_some() || body.scm_branch.is_some() {
                return Err(ApiError::bad_request(
                    "an archive project takes archive, not scm_url or scm_branch",
                ));
            }
            let sha = body
                .archive
                .as_deref()
                .ok_or_else(|| ApiError::bad_request("an archive project needs archive"))?;
            match state.projects.get(sha) {
                Ok(a) => new.archive_sha256 = a.sha256,
                Err(e @ (ProjectError::Unknown(_) | ProjectError::BadId(_))) => {
                    return Err(ApiError::bad_request(format!("archive: {e}")));
                }
                Err(e) => return Err(ApiError::internal(e)),
            }
        }
    }
    Ok(new)
}

/// `POST /api/v2/projects/`.
pub async fn create(
    State(state): State<AppState>,
    body: Result<Json<CreateProject>, JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let Json(body) =
        body.map_err(|e| ApiError::bad_request(format!("invalid project: {}", e.body_text())))?;
    let new = check_new(&state, &body)?;
    match state.store.create_project(&new).await? {
        Some(p) => Ok((StatusCode::CREATED, Json(project_json(&p)))),
        None => Err(ApiError::bad_request(format!(
            "a project named {:?} already exists",
            new.name
        ))),
    }
}

/// `GET /api/v2/projects/` (by id).
pub async fn list(
    State(state): State<AppState>,
    q: Result<Query<PageQuery>, QueryRejection>,
) -> Result<Json<Paged<Value>>, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let (limit, offset, page, size) = q.resolve()?;
    let rows = state.store.list_projects(limit, offset).await?;
    let results = rows.results.iter().map(project_json).collect();
    Ok(Json(Paged::new(
        "/api/v2/projects/",
        "",
        rows.count,
        page,
        size,
        results,
    )))
}

/// A project or 404.
pub async fn load(state: &AppState, id: i64) -> Result<Project, ApiError> {
    state
        .store
        .project(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no project with id {id}")))
}

/// `GET /api/v2/projects/{id}/`.
pub async fn detail(
    State(state): State<AppState>,
    Path(id): Path<i64>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(project_json(&load(&state, id).await?)))
}

/// The git project's active update, or a new one. The bool says whether it was created.
pub async fn start_update(state: &AppState, project: &Project) -> Result<(Job, bool), ApiError> {
    if project.scm_type != ScmType::Git {
        return Err(ApiError::bad_request(format!(
            "project {} is an uploaded archive; only git projects are updated",
            project.id
        )));
    }
    let vars = json!({ "scm_url": project.scm_url, "scm_branch": project.scm_branch });
    let new = NewJob {
        kind: JobKind::ProjectUpdate,
        name: project.name.clone(),
        playbook: project_update::PLAYBOOK_NAME.to_string(),
        inventory: project_update::INVENTORY.to_string(),
        extra_vars: vars.to_string(),
        task_impact: UPDATE_TASK_IMPACT,
        instance_group: "default".into(),
        host_count: Some(1),
        project_id: Some(project.id),
        ..NewJob::default()
    };
    let started = state
        .store
        .start_project_update(project.id, &new)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no project with id {}", project.id)))?;
    if started.1 {
        tracing::info!(
            project_id = project.id,
            update = started.0.id,
            "project update created"
        );
        state.scheduler_wake.notify_one();
    }
    Ok(started)
}

/// `POST /api/v2/projects/{id}/update/`: 201 with a new update, 200 with the one already
/// pending or running.
pub async fn update(
    State(state): State<AppState>,
    Path(id): Path<i64>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let project = load(&state, id).await?;
    let (job, created) = start_update(&state, &project).await?;
    let code = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((code, Json(job_json(&job))))
}

/// `GET /api/v2/project_updates/`.
pub async fn list_updates(
    State(state): State<AppState>,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<Paged<Value>>, ApiError> {
    list_kind(state, q, Some(JobKind::ProjectUpdate)).await
}
