//! Inventories: create, list, detail, hosts, and `update/` (an inventory update: a user-space job
//! running `ansible-inventory` against the inventory's source on an execution node); plus
//! [`job_inventory`], which turns a job request's `inventory` text or `inventory_id` into the
//! inventory text the job carries.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use meshrun_shared::node_id::NodeId;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::jobs::{ListQuery, job_json, list_kind};
use super::page::{PageQuery, Paged};
use super::{ApiError, AppState};
use crate::inventories::{self, InventoryContent};
use crate::inventory_hosts;
use crate::projects::ProjectError;
use crate::store::{Inventory, JobKind, NewInventory, NewJob};

/// Longest inventory name.
const MAX_NAME_LEN: usize = 128;
/// Longest description.
const MAX_DESCRIPTION_LEN: usize = 4096;
/// Longest source path.
const MAX_SOURCE_PATH_LEN: usize = 1024;
/// Largest inventory text a job may send.
/// What an inventory update costs its execution node (AWX: 1, it runs no forks).
const UPDATE_TASK_IMPACT: i64 = 1;

/// `POST /api/v2/inventories/` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateInventory {
    name: String,
    #[serde(default)]
    description: String,
    /// The `all` group's variables: an object, or JSON object text (as AWX shows them).
    variables: Option<Value>,
    /// Initial content in the `ansible-inventory --list` shape.
    content: Option<Value>,
    /// sha256 of an uploaded project archive holding the source.
    source_project: Option<String>,
    /// The source (a script or an inventory-plugin file) inside that archive.
    source_path: Option<String>,
}

/// `POST /api/v2/inventories/{id}/update/` body (every field optional).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateInventory {
    execution_node: Option<String>,
    instance_group: Option<String>,
    execution_environment: Option<String>,
}

fn inventory_json(inv: &Inventory) -> Value {
    let mut v = serde_json::to_value(inv).unwrap_or_else(|_| json!({}));
    if let Some(obj) = v.as_object_mut() {
        let base = format!("/api/v2/inventories/{}/", inv.id);
        obj.insert(
            "related".into(),
            json!({
                "hosts": format!("{base}hosts/"),
                "update": format!("{base}update/"),
                "last_update": inv.last_update_id.map(|u| format!("/api/v2/inventory_updates/{u}/")),
            }),
        );
        obj.insert("url".into(), json!(base));
        obj.insert(
            "variables".into(),
            json!(super::secrets::mask_json_text(&inv.variables)),
        );
        obj.insert(
            "has_inventory_sources".into(),
            json!(inv.source_path.is_some()),
        );
    }
    v
}

fn check_name(name: &str) -> Result<(), ApiError> {
    if name.trim().is_empty() || name.len() > MAX_NAME_LEN || name.chars().any(char::is_control) {
        return Err(ApiError::bad_request(format!(
            "name must be 1 to {MAX_NAME_LEN} bytes of printable text"
        )));
    }
    Ok(())
}

/// Checks a source path: relative, inside the project, and a file of the archive.
fn check_source_path(path: &str, files: &[String]) -> Result<(), ApiError> {
    let bad = path.is_empty()
        || path.len() > MAX_SOURCE_PATH_LEN
        || path.starts_with('/')
        || path
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..")
        || path.chars().any(char::is_control);
    if bad {
        return Err(ApiError::bad_request(format!(
            "source_path {:?} must be a relative path inside the project without '..'",
            path.chars().take(120).collect::<String>()
        )));
    }
    if !files.iter().any(|f| f == path) {
        return Err(ApiError::bad_request(format!(
            "source_path {path:?} is not a file of the project archive"
        )));
    }
    Ok(())
}

fn variables(value: Option<&Value>) -> Result<Option<Map<String, Value>>, ApiError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(m)) => Ok(Some(m.clone())),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(Some(Map::new())),
        Some(Value::String(s)) => match serde_json::from_str::<Value>(s) {
            Ok(Value::Object(m)) => Ok(Some(m)),
            _ => Err(ApiError::bad_request(
                "variables must be a JSON object (or its text)",
            )),
        },
        Some(_) => Err(ApiError::bad_request(
            "variables must be a JSON object (or its text)",
        )),
    }
}

/// The stored project archive `sha`'s file list (400 when unknown).
fn archive_files(state: &AppState, sha: &str) -> Result<Vec<String>, ApiError> {
    match state.projects.get(sha) {
        Ok(a) => Ok(a.files),
        Err(e @ (ProjectError::Unknown(_) | ProjectError::BadId(_))) => {
            Err(ApiError::bad_request(format!("source_project: {e}")))
        }
        Err(e) => Err(ApiError::internal(e)),
    }
}

/// `POST /api/v2/inventories/`.
pub async fn create(
    State(state): State<AppState>,
    body: Result<Json<CreateInventory>, JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let Json(body) =
        body.map_err(|e| ApiError::bad_request(format!("invalid inventory: {}", e.body_text())))?;
    check_name(&body.name)?;
    if body.description.len() > MAX_DESCRIPTION_LEN || body.description.contains('\0') {
        return Err(ApiError::bad_request(format!(
            "description must be at most {MAX_DESCRIPTION_LEN} bytes"
        )));
    }
    match (&body.source_project, &body.source_path) {
        (Some(sha), Some(path)) => check_source_path(path, &archive_files(&state, sha)?)?,
        (None, None) => {}
        _ => {
            return Err(ApiError::bad_request(
                "source_project and source_path go together: give both or neither",
            ));
        }
    }
    let mut content = match &body.content {
        Some(v) => inventories::from_list_value(v)
            .map_err(|e| ApiError::bad_request(format!("content: {e}")))?,
        None => InventoryContent::default(),
    };
    if let Some(vars) = variables(body.variables.as_ref())? {
        if !content.variables.is_empty() {
            return Err(ApiError::bad_request(
                "give the inventory's variables either as variables or as content's all.vars, not both",
            ));
        }
        content.variables = vars;
    }
    let new = NewInventory {
        name: body.name.clone(),
        description: body.description.clone(),
        source_project: body.source_project.clone(),
        source_path: body.source_path.clone(),
    };
    match state.store.create_inventory(&new, &content).await? {
        Some(inv) => Ok((StatusCode::CREATED, Json(inventory_json(&inv)))),
        None => Err(ApiError::bad_request(format!(
            "an inventory named {:?} already exists",
            body.name
        ))),
    }
}

/// `GET /api/v2/inventories/`.
pub async fn list(
    State(state): State<AppState>,
    q: Result<Query<PageQuery>, QueryRejection>,
) -> Result<Json<Paged<Value>>, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let (limit, offset, page, size) = q.resolve()?;
    let rows = state.store.inventories(limit, offset).await?;
    let results = rows.results.iter().map(inventory_json).collect();
    Ok(Json(Paged::new(
        "/api/v2/inventories/",
        "",
        rows.count,
        page,
        size,
        results,
    )))
}

async fn find(state: &AppState, id: i64) -> Result<Inventory, ApiError> {
    state
        .store
        .inventory(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no inventory {id}")))
}

/// `GET /api/v2/inventories/{id}/`.
pub async fn detail(
    State(state): State<AppState>,
    Path(id): Path<i64>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(inventory_json(&find(&state, id).await?)))
}

/// `GET /api/v2/inventories/{id}/hosts/`.
pub async fn hosts(
    State(state): State<AppState>,
    Path(id): Path<i64>,
    q: Result<Query<PageQuery>, QueryRejection>,
) -> Result<Json<Paged<Value>>, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::bad_request(e.body_text()))?;
    find(&state, id).await?;
    let (limit, offset, page, size) = q.resolve()?;
    let rows = state.store.inventory_hosts(id, limit, offset).await?;
    let results = rows
        .results
        .iter()
        .map(|h| {
            let mut v = serde_json::to_value(h).unwrap_or_else(|_| json!({}));
            if let Some(obj) = v.as_object_mut() {
                obj.insert(
                    "variables".into(),
                    json!(super::secrets::mask_json_text(&h.variables)),
                );
            }
            v
        })
        .collect();
    Ok(Json(Paged::new(
        &format!("/api/v2/inventories/{id}/hosts/"),
        "",
        rows.count,
        page,
        size,
        results,
    )))
}

fn check_placement(body: &UpdateInventory) -> Result<Option<NodeId>, ApiError> {
    let node = body
        .execution_node
        .clone()
        .map(NodeId::new)
        .transpose()
        .map_err(|e| ApiError::bad_request(format!("execution_node: {e}")))?;
    if let Some(image) = &body.execution_environment
        && (image.is_empty()
            || image.len() > 512
            || image.starts_with('-')
            || !image
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "./:@_-".contains(c)))
    {
        return Err(ApiError::bad_request(format!(
            "execution_environment {image:?} is not a valid image reference"
        )));
    }
    Ok(node)
}

/// `POST /api/v2/inventories/{id}/update/`: creates an inventory update (201).
pub async fn update(
    State(state): State<AppState>,
    Path(id): Path<i64>,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    // The body is optional: nothing (or only whitespace) means every default.
    let body: UpdateInventory = if body.iter().all(u8::is_ascii_whitespace) {
        UpdateInventory::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad_request(format!("invalid inventory update: {e}")))?
    };
    let node = check_placement(&body)?;
    let inv = find(&state, id).await?;
    let (Some(sha), Some(source)) = (&inv.source_project, &inv.source_path) else {
        return Err(ApiError::bad_request(format!(
            "inventory {id} has no source to update from"
        )));
    };
    // The archive must still be there (and still hold the source).
    check_source_path(source, &archive_files(&state, sha)?)?;
    if let Some(active) = state.store.active_inventory_update(id).await? {
        return Err(ApiError::conflict(format!(
            "inventory {id} is already being updated by inventory update {active}"
        )));
    }
    let group = body.instance_group.unwrap_or_else(|| "default".into());
    if !state
        .store
        .instance_groups()
        .await?
        .iter()
        .any(|g| g.name == group)
    {
        return Err(ApiError::bad_request(format!(
            "instance_group {group:?} does not exist"
        )));
    }
    let new = NewJob {
        kind: JobKind::InventoryUpdate,
        name: format!("{} - {source}", inv.name),
        project_sha256: sha.clone(),
        extra_vars: "{}".into(),
        requested_node: node.map(|n| n.to_string()),
        task_impact: UPDATE_TASK_IMPACT,
        instance_group: group,
        execution_environment: body.execution_environment,
        inventory_id: Some(id),
        inventory_source: Some(source.clone()),
        ..NewJob::default()
    };
    let job = state.store.create_job(&new).await?;
    state.scheduler_wake.notify_one();
    Ok((StatusCode::CREATED, Json(job_json(&job))))
}

/// `GET /api/v2/inventory_updates/`.
pub async fn list_updates(
    State(state): State<AppState>,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<Paged<Value>>, ApiError> {
    list_kind(state, q, Some(JobKind::InventoryUpdate)).await
}

/// The inventory a job carries.
#[derive(Debug, Clone, PartialEq)]
pub struct JobInventory {
    /// Inventory text for the job's `inventory/hosts`.
    pub text: String,
    /// Hosts in it, when they can be counted.
    pub host_count: Option<i64>,
    /// The stored inventory it came from.
    pub inventory_id: Option<i64>,
}

/// A job request's inventory: exactly one of `inventory` (INI or YAML text) and `inventory_id`
/// (a stored inventory, rendered now, so later changes do not affect the job). 400 otherwise.
pub async fn job_inventory(
    state: &AppState,
    text: Option<&str>,
    inventory_id: Option<i64>,
) -> Result<JobInventory, ApiError> {
    match (text, inventory_id) {
        (Some(text), None) => {
            super::job_fields::check_inventory_text(text)?;
            Ok(JobInventory {
                text: text.to_string(),
                host_count: inventory_hosts::count_hosts(text),
                inventory_id: None,
            })
        }
        (None, Some(id)) => {
            let content =
                state.store.inventory_content(id).await?.ok_or_else(|| {
                    ApiError::bad_request(format!("inventory_id: no inventory {id}"))
                })?;
            let rendered = inventories::render(&content);
            Ok(JobInventory {
                text: rendered.text,
                host_count: Some(rendered.host_count),
                inventory_id: Some(id),
            })
        }
        _ => Err(ApiError::bad_request(
            "give exactly one of inventory (inventory text) and inventory_id (a stored inventory)",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_paths_must_be_plain_files_of_the_archive() {
        let files = vec!["inv/script.py".to_string(), "gcp.yml".to_string()];
        check_source_path("inv/script.py", &files).unwrap();
        check_source_path("gcp.yml", &files).unwrap();
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "inv/../gcp.yml",
            "./gcp.yml",
            "inv//script.py",
            "inv/",
            "a\nb",
            "missing.yml",
            "inv",
        ] {
            assert!(check_source_path(bad, &files).is_err(), "{bad:?}");
        }
        let long = "a/".repeat(600) + "b";
        assert!(check_source_path(&long, std::slice::from_ref(&long)).is_err());
    }

    #[test]
    fn names_and_variables_are_checked() {
        check_name("prod web").unwrap();
        for bad in ["", "   ", "a\nb", &"n".repeat(129)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            variables(Some(&json!("{\"a\": 1}"))).unwrap().unwrap()["a"],
            1
        );
        assert!(variables(Some(&json!({"a": 1}))).unwrap().is_some());
        assert!(variables(Some(&json!("[1]"))).is_err());
        assert!(variables(Some(&json!(3))).is_err());
        assert!(variables(None).unwrap().is_none());
    }
}
