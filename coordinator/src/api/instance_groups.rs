//! Instance groups: list, create, change limits, and add or remove members (AWX's association
//! style: `POST .../instances/ {"id": N}` adds, `{"id": N, "disassociate": true}` removes).

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::page::{PageQuery, Paged};
use super::{ApiError, AppState};
use crate::store::{GroupChange, InstanceGroup};

fn group_json(g: &InstanceGroup) -> Value {
    json!({
        "id": g.id,
        "type": "instance_group",
        "url": format!("/api/v2/instance_groups/{}/", g.id),
        "name": g.name,
        "max_concurrent_jobs": g.max_concurrent_jobs,
        "max_forks": g.max_forks,
        "instances": g.instances.len(),
        "instance_hostnames": g.instances,
        "jobs_running": g.jobs_running,
        "forks_running": g.forks_running,
        "created": g.created,
    })
}

fn check_limit(field: &'static str, v: Option<i64>) -> Result<(), ApiError> {
    match v {
        Some(n) if n < 0 => Err(ApiError::bad_request(format!(
            "{field} must be 0 (unlimited) or more, got {n}"
        ))),
        _ => Ok(()),
    }
}

/// `?page=&page_size=`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    page: Option<i64>,
    page_size: Option<i64>,
}

/// `GET /api/v2/instance_groups/`.
pub async fn list(
    State(state): State<AppState>,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<Paged<Value>>, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let (limit, offset, page, size) = PageQuery {
        page: q.page,
        page_size: q.page_size,
    }
    .resolve()?;
    let groups = state.store.instance_groups().await?;
    let count = groups.len() as i64;
    let results = groups
        .iter()
        .skip(offset as usize)
        .take(limit as usize)
        .map(group_json)
        .collect();
    Ok(Json(Paged::new(
        "/api/v2/instance_groups/",
        "",
        count,
        page,
        size,
        results,
    )))
}

/// `POST /api/v2/instance_groups/` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateGroup {
    name: String,
    max_concurrent_jobs: Option<i64>,
    max_forks: Option<i64>,
}

/// `POST /api/v2/instance_groups/`.
pub async fn create(
    State(state): State<AppState>,
    body: Result<Json<CreateGroup>, JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let Json(body) = body
        .map_err(|e| ApiError::bad_request(format!("invalid instance group: {}", e.body_text())))?;
    let name_ok = !body.name.is_empty()
        && body.name.len() <= 128
        && body
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
    if !name_ok {
        return Err(ApiError::bad_request(format!(
            "name {:?} must be 1-128 characters of letters, digits, '.', '_' and '-'",
            body.name
        )));
    }
    check_limit("max_concurrent_jobs", body.max_concurrent_jobs)?;
    check_limit("max_forks", body.max_forks)?;
    let change = GroupChange {
        max_concurrent_jobs: body.max_concurrent_jobs,
        max_forks: body.max_forks,
    };
    match state
        .store
        .create_instance_group(&body.name, &change)
        .await?
    {
        Some(g) => Ok((StatusCode::CREATED, Json(group_json(&g)))),
        None => Err(ApiError::bad_request(format!(
            "an instance group named {:?} exists already",
            body.name
        ))),
    }
}

async fn load(state: &AppState, id: &str) -> Result<InstanceGroup, ApiError> {
    let missing = || ApiError::not_found(format!("no instance group with id {id}"));
    let id: i64 = id.parse().map_err(|_| missing())?;
    state.store.instance_group(id).await?.ok_or_else(missing)
}

/// `GET /api/v2/instance_groups/{id}/`.
pub async fn detail(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(group_json(&load(&state, &id).await?)))
}

/// `PATCH /api/v2/instance_groups/{id}/` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatchGroup {
    max_concurrent_jobs: Option<i64>,
    max_forks: Option<i64>,
}

/// `PATCH /api/v2/instance_groups/{id}/`.
pub async fn patch(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Result<Json<PatchGroup>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let g = load(&state, &id).await?;
    let Json(body) = body.map_err(|e| {
        ApiError::bad_request(format!(
            "invalid change: {} (only max_concurrent_jobs and max_forks can be changed)",
            e.body_text()
        ))
    })?;
    check_limit("max_concurrent_jobs", body.max_concurrent_jobs)?;
    check_limit("max_forks", body.max_forks)?;
    state
        .store
        .update_instance_group(
            g.id,
            &GroupChange {
                max_concurrent_jobs: body.max_concurrent_jobs,
                max_forks: body.max_forks,
            },
        )
        .await?;
    state.scheduler_wake.notify_one();
    Ok(Json(group_json(&load(&state, &id).await?)))
}

/// `POST /api/v2/instance_groups/{id}/instances/` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Membership {
    id: i64,
    #[serde(default)]
    disassociate: bool,
}

/// `POST /api/v2/instance_groups/{id}/instances/`: adds or removes a member.
pub async fn members(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Result<Json<Membership>, JsonRejection>,
) -> Result<StatusCode, ApiError> {
    let g = load(&state, &id).await?;
    let Json(body) = body.map_err(|e| {
        ApiError::bad_request(format!("invalid membership change: {}", e.body_text()))
    })?;
    let instance = state
        .store
        .instance(body.id)
        .await?
        .ok_or_else(|| ApiError::bad_request(format!("no instance with id {}", body.id)))?;
    if !body.disassociate && !instance.node_type.runs_user_jobs() {
        return Err(ApiError::bad_request(format!(
            "{} is a {} node; only execution and hybrid nodes run jobs for a group",
            instance.hostname, instance.node_type
        )));
    }
    state
        .store
        .set_group_member(g.id, instance.id, !body.disassociate)
        .await?;
    state.scheduler_wake.notify_one();
    Ok(StatusCode::NO_CONTENT)
}
