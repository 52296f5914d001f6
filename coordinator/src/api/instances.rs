//! Instances (mesh nodes): list, detail, PATCH of the two settings people may change, the
//! on-demand health check, and removal (DELETE, carried out by `deprovision`).
//!
//! Field names and shapes follow AWX's instance serializer, including its decimal fields
//! (`capacity_adjustment`, `cpu`) rendered as decimal strings. Every write goes through
//! [`Store::update_instance`], so capacity is re-derived and concurrent loops lose nothing. The
//! job figures (`jobs_running`, `jobs_total`, `consumed_capacity`) are read from the jobs table
//! at request time.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use meshrun_shared::node_type::NodeType;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::page::{PageQuery, Paged};
use super::{ApiError, AppState};
use crate::store::{
    HealthCheckRecord, INSTANCE_ORDER_FIELDS, Instance, InstanceFilter, NodeLoad, NodeState, Page,
    Store, StoreError,
};

/// A health check asked for longer ago than this and still unfinished is considered lost (the
/// health loop restarted, the node vanished), so a new request may replace it.
pub const HEALTH_CHECK_PATIENCE: chrono::TimeDelta = chrono::TimeDelta::seconds(120);

/// How many past health checks the health_check view shows.
const HEALTH_HISTORY: i64 = 10;

/// Fields a PATCH may set.
const PATCHABLE: &str = "enabled and capacity_adjustment";

fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// AWX's rule: a check is pending while it started after the last one finished.
pub fn health_check_pending(i: &Instance) -> bool {
    let Some(started) = i.health_check_started.as_deref().and_then(parse_time) else {
        return false;
    };
    match i.last_health_check.as_deref().and_then(parse_time) {
        Some(last) => started > last,
        None => true,
    }
}

/// The port of a `host:port` listener address (`tcp://`, brackets and paths tolerated).
pub fn listener_port(address: &str) -> Option<u16> {
    let rest = address.split_once("://").map_or(address, |(_, r)| r);
    let authority = rest.split('/').next().unwrap_or(rest);
    let (_, port) = authority.rsplit_once(':')?;
    port.parse().ok()
}

/// An instance as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct InstanceView {
    id: i64,
    hostname: String,
    #[serde(rename = "type")]
    kind: &'static str,
    url: String,
    related: BTreeMap<&'static str, String>,
    uuid: Option<String>,
    created: String,
    modified: String,
    last_seen: Option<String>,
    health_check_started: Option<String>,
    health_check_pending: bool,
    last_health_check: Option<String>,
    errors: String,
    /// A decimal string with two places, as AWX renders it.
    capacity_adjustment: String,
    version: String,
    capacity: i64,
    consumed_capacity: i64,
    percent_capacity_remaining: f64,
    jobs_running: i64,
    jobs_total: i64,
    /// A decimal string with one place, as AWX renders it.
    cpu: String,
    memory: i64,
    cpu_capacity: i64,
    mem_capacity: i64,
    enabled: bool,
    node_type: NodeType,
    node_state: NodeState,
    listener_port: Option<u16>,
    listener_address: Option<String>,
    unroutable_since: Option<String>,
    boot_id: Option<String>,
    registered_by: String,
}

/// `capacity` left after `consumed`, in percent with two decimals (0 without capacity).
pub fn percent_remaining(capacity: i64, consumed: i64) -> f64 {
    if capacity <= 0 {
        return 0.0;
    }
    let remaining = (capacity - consumed).max(0) as f64;
    (remaining * 10_000.0 / capacity as f64).round() / 100.0
}

impl InstanceView {
    /// Builds the view of `i` given the jobs table's figures for it.
    pub fn new(i: &Instance, load: NodeLoad) -> Self {
        let url = format!("/api/v2/instances/{}/", i.id);
        let mut related = BTreeMap::new();
        if i.node_type.runs_user_jobs() {
            related.insert("health_check", format!("{url}health_check/"));
        }
        let consumed = load.consumed(i.node_type);
        InstanceView {
            id: i.id,
            hostname: i.hostname.clone(),
            kind: "instance",
            url,
            related,
            uuid: i.uuid.clone(),
            created: i.created.clone(),
            modified: i.modified.clone(),
            last_seen: i.last_seen.clone(),
            health_check_started: i.health_check_started.clone(),
            health_check_pending: health_check_pending(i),
            last_health_check: i.last_health_check.clone(),
            errors: i.errors.clone(),
            capacity_adjustment: format!("{:.2}", i.capacity_adjustment),
            version: i.version.clone(),
            capacity: i.capacity,
            consumed_capacity: consumed,
            percent_capacity_remaining: percent_remaining(i.capacity, consumed),
            jobs_running: load.running,
            jobs_total: load.total,
            cpu: format!("{:.1}", i.cpu),
            memory: i.memory,
            cpu_capacity: i.cpu_capacity,
            mem_capacity: i.mem_capacity,
            enabled: i.enabled,
            node_type: i.node_type,
            node_state: i.node_state,
            listener_port: i.listener_address.as_deref().and_then(listener_port),
            listener_address: i.listener_address.clone(),
            unroutable_since: i.unroutable_since.clone(),
            boot_id: i.boot_id.clone(),
            registered_by: i.registered_by.clone(),
        }
    }
}

/// `GET /api/v2/instances/` query: filters, ordering and paging.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    node_type: Option<String>,
    node_state: Option<String>,
    hostname: Option<String>,
    order_by: Option<String>,
    page: Option<i64>,
    page_size: Option<i64>,
}

/// Checks `order_by` against [`INSTANCE_ORDER_FIELDS`] (`-` prefix for descending).
pub fn check_order_by(order_by: &str) -> Result<(), ApiError> {
    let field = order_by.strip_prefix('-').unwrap_or(order_by);
    if INSTANCE_ORDER_FIELDS.contains(&field) {
        return Ok(());
    }
    Err(ApiError::bad_request(format!(
        "order_by must be one of {} (prefix - to sort descending), got {order_by:?}",
        INSTANCE_ORDER_FIELDS.join(", ")
    )))
}

async fn page_of(
    store: &Store,
    filter: &InstanceFilter,
    hostname: Option<&str>,
    order_by: &str,
    limit: i64,
    offset: i64,
) -> Result<Page<Instance>, StoreError> {
    let Some(host) = hostname else {
        return store.list_instances(filter, order_by, limit, offset).await;
    };
    let found = store.instance_by_hostname(host).await?.filter(|i| {
        filter.node_type.is_none_or(|t| t == i.node_type)
            && filter.node_state.is_none_or(|s| s == i.node_state)
    });
    let count = i64::from(found.is_some());
    let results = found.into_iter().filter(|_| offset == 0).collect();
    Ok(Page { count, results })
}

/// `GET /api/v2/instances/`.
pub async fn list(
    State(state): State<AppState>,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<Paged<InstanceView>>, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let filter = InstanceFilter {
        node_type: q
            .node_type
            .as_deref()
            .map(str::parse::<NodeType>)
            .transpose()
            .map_err(|e| ApiError::bad_request(format!("node_type: {e}")))?,
        node_state: q
            .node_state
            .as_deref()
            .map(str::parse::<NodeState>)
            .transpose()
            .map_err(|e| ApiError::bad_request(format!("node_state: {e}")))?,
    };
    let order_by = q.order_by.as_deref().unwrap_or("hostname");
    check_order_by(order_by)?;
    let (limit, offset, page, size) = PageQuery {
        page: q.page,
        page_size: q.page_size,
    }
    .resolve()?;
    let rows = page_of(
        &state.store,
        &filter,
        q.hostname.as_deref(),
        order_by,
        limit,
        offset,
    )
    .await?;
    let load = state.store.node_loads().await?;
    let mut extra = String::new();
    for (key, value) in [
        ("node_type", q.node_type.as_deref()),
        ("node_state", q.node_state.as_deref()),
        ("hostname", q.hostname.as_deref()),
        ("order_by", q.order_by.as_deref()),
    ] {
        if let Some(v) = value {
            extra.push_str(&format!("&{key}={}", crate::url_query::encode_value(v)));
        }
    }
    let results = rows
        .results
        .iter()
        .map(|i| InstanceView::new(i, load.get(&i.hostname).copied().unwrap_or_default()))
        .collect();
    Ok(Json(Paged::new(
        "/api/v2/instances/",
        &extra,
        rows.count,
        page,
        size,
        results,
    )))
}

fn instance_id(id: Result<Path<i64>, PathRejection>) -> Result<i64, ApiError> {
    id.map(|Path(id)| id)
        .map_err(|_| ApiError::not_found("no such instance: instance ids are integers"))
}

async fn load_instance(state: &AppState, id: i64) -> Result<Instance, ApiError> {
    state
        .store
        .instance(id)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no instance with id {id}")))
}

async fn view(state: &AppState, i: &Instance) -> Result<InstanceView, ApiError> {
    let load = state.store.node_loads().await?;
    Ok(InstanceView::new(
        i,
        load.get(&i.hostname).copied().unwrap_or_default(),
    ))
}

/// `GET /api/v2/instances/{id}/`.
pub async fn detail(
    State(state): State<AppState>,
    id: Result<Path<i64>, PathRejection>,
) -> Result<Json<InstanceView>, ApiError> {
    let i = load_instance(&state, instance_id(id)?).await?;
    Ok(Json(view(&state, &i).await?))
}

/// A checked PATCH body.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct InstancePatch {
    /// New `enabled`.
    pub enabled: Option<bool>,
    /// New `capacity_adjustment` (0 to 1, two decimals).
    pub capacity_adjustment: Option<f64>,
}

/// `capacity_adjustment` from a JSON number or a decimal string, as AWX accepts both.
fn parse_adjustment(v: &Value) -> Result<f64, String> {
    let bad = || {
        format!(
            "capacity_adjustment must be a number from 0 to 1 (a decimal string is accepted too), got {v}"
        )
    };
    let x = match v {
        Value::Number(n) => n.as_f64().ok_or_else(bad)?,
        Value::String(s) => s.trim().parse::<f64>().map_err(|_| bad())?,
        _ => return Err(bad()),
    };
    if !x.is_finite() || !(0.0..=1.0).contains(&x) {
        return Err(bad());
    }
    let rounded = (x * 100.0).round() / 100.0;
    if (rounded - x).abs() > 1e-9 {
        return Err(format!(
            "capacity_adjustment has at most 2 decimal places, got {v}"
        ));
    }
    Ok(rounded)
}

/// Checks a PATCH body: an object with only `enabled` (a boolean) and `capacity_adjustment`.
/// The error names the offending field.
pub fn parse_patch(body: &Value) -> Result<InstancePatch, String> {
    let Value::Object(fields) = body else {
        return Err(format!(
            "the body must be a JSON object with {PATCHABLE}, got {body}"
        ));
    };
    let mut patch = InstancePatch::default();
    for (name, value) in fields {
        match name.as_str() {
            "enabled" => {
                let b = value
                    .as_bool()
                    .ok_or_else(|| format!("enabled must be true or false, got {value}"))?;
                patch.enabled = Some(b);
            }
            "capacity_adjustment" => patch.capacity_adjustment = Some(parse_adjustment(value)?),
            other => {
                return Err(format!(
                    "field {other:?} cannot be changed: only {PATCHABLE} can"
                ));
            }
        }
    }
    Ok(patch)
}

/// `PATCH /api/v2/instances/{id}/`: `enabled` and `capacity_adjustment`; answers the instance
/// with its capacity re-derived.
pub async fn patch(
    State(state): State<AppState>,
    id: Result<Path<i64>, PathRejection>,
    body: Result<Json<Value>, JsonRejection>,
) -> Result<Json<InstanceView>, ApiError> {
    let id = instance_id(id)?;
    let Json(body) = body.map_err(|e| {
        ApiError::bad_request(format!("invalid instance change: {}", e.body_text()))
    })?;
    let change = parse_patch(&body).map_err(ApiError::bad_request)?;
    if change.enabled == Some(true) {
        let i = load_instance(&state, id).await?;
        if i.node_state == NodeState::Deprovisioning {
            return Err(ApiError::conflict(format!(
                "{} is being removed (deprovisioning); it cannot be enabled again",
                i.hostname
            )));
        }
    }
    let updated = state
        .store
        .update_instance(id, |i| {
            if let Some(e) = change.enabled {
                i.enabled = e;
            }
            if let Some(a) = change.capacity_adjustment {
                i.capacity_adjustment = a;
            }
        })
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no instance with id {id}")))?;
    tracing::info!(
        instance = %updated.hostname,
        enabled = updated.enabled,
        capacity_adjustment = updated.capacity_adjustment,
        capacity = updated.capacity,
        "instance changed through the API"
    );
    Ok(Json(view(&state, &updated).await?))
}

/// `GET /api/v2/instances/{id}/health_check/` answer.
#[derive(Debug, Serialize)]
pub struct HealthCheckView {
    uuid: Option<String>,
    hostname: String,
    version: String,
    last_health_check: Option<String>,
    health_check_started: Option<String>,
    health_check_pending: bool,
    errors: String,
    cpu: String,
    memory: i64,
    cpu_capacity: i64,
    mem_capacity: i64,
    capacity: i64,
    node_type: NodeType,
    node_state: NodeState,
    /// The newest checks first.
    history: Vec<HealthCheckRecord>,
}

/// `GET /api/v2/instances/{id}/health_check/`: the last check's figures and recent history.
pub async fn health_check(
    State(state): State<AppState>,
    id: Result<Path<i64>, PathRejection>,
) -> Result<Json<HealthCheckView>, ApiError> {
    let i = load_instance(&state, instance_id(id)?).await?;
    let history = state.store.health_checks(i.id, HEALTH_HISTORY).await?;
    Ok(Json(HealthCheckView {
        health_check_pending: health_check_pending(&i),
        uuid: i.uuid,
        hostname: i.hostname,
        version: i.version,
        last_health_check: i.last_health_check,
        health_check_started: i.health_check_started,
        errors: i.errors,
        cpu: format!("{:.1}", i.cpu),
        memory: i.memory,
        cpu_capacity: i.cpu_capacity,
        mem_capacity: i.mem_capacity,
        capacity: i.capacity,
        node_type: i.node_type,
        node_state: i.node_state,
        history,
    }))
}

/// Whether a pending check of `i` is recent enough that a new request must wait for it.
fn pending_recently(i: &Instance, now: DateTime<Utc>) -> bool {
    health_check_pending(i)
        && i.health_check_started
            .as_deref()
            .and_then(parse_time)
            .is_some_and(|s| now - s < HEALTH_CHECK_PATIENCE)
}

/// `POST /api/v2/instances/{id}/health_check/`: asks the health loop to check the node now.
///
/// Only execution and hybrid nodes are checked (they are the ones with capacity to measure);
/// others get 400. A check requested less than [`HEALTH_CHECK_PATIENCE`] ago and not finished
/// gets 409 naming when it started (wait for it instead); an older unfinished one is replaced.
pub async fn start_health_check(
    State(state): State<AppState>,
    id: Result<Path<i64>, PathRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let id = instance_id(id)?;
    let i = load_instance(&state, id).await?;
    if !i.node_type.runs_user_jobs() {
        return Err(ApiError::bad_request(format!(
            "health checks are only for execution and hybrid nodes; {} is a {} node",
            i.hostname, i.node_type
        )));
    }
    let started = crate::store::now();
    let at = parse_time(&started).unwrap_or_else(Utc::now);
    let mut already: Option<String> = None;
    let updated = state
        .store
        .update_instance(id, |i| {
            already = None;
            if pending_recently(i, at) {
                already = i.health_check_started.clone();
            } else {
                i.health_check_started = Some(started.clone());
            }
        })
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no instance with id {id}")))?;
    if let Some(since) = already {
        // 409 is not among ApiError's kinds; the body has the same `{"detail"}` shape.
        return Ok((
            StatusCode::CONFLICT,
            Json(json!({
                "detail": format!(
                    "a health check of {} is already pending (requested at {since}); wait for it",
                    updated.hostname
                ),
                "health_check_started": since,
            })),
        ));
    }
    state.health_wakeup.notify_one();
    tracing::info!(instance = %updated.hostname, "health check requested through the API");
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({
            "msg": format!("health check of {} requested", updated.hostname),
            "hostname": updated.hostname,
            "health_check_started": updated.health_check_started,
        })),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patch_accepts_the_two_settings() {
        let p = parse_patch(&json!({"enabled": false, "capacity_adjustment": 0.5})).unwrap();
        assert_eq!(
            p,
            InstancePatch {
                enabled: Some(false),
                capacity_adjustment: Some(0.5)
            }
        );
        let p = parse_patch(&json!({"capacity_adjustment": "0.25"})).unwrap();
        assert_eq!(p.capacity_adjustment, Some(0.25));
        assert_eq!(p.enabled, None);
        assert_eq!(parse_patch(&json!({})).unwrap(), InstancePatch::default());
        for edge in [json!(0), json!(1), json!("1.00"), json!(" 0 ")] {
            assert!(
                parse_patch(&json!({ "capacity_adjustment": edge })).is_ok(),
                "{edge}"
            );
        }
    }

    #[test]
    fn patch_errors_name_the_field() {
        let cases = [
            (json!({"capacity_adjustment": "1.5"}), "capacity_adjustment"),
            (json!({"capacity_adjustment": 1.5}), "capacity_adjustment"),
            (json!({"capacity_adjustment": -1}), "capacity_adjustment"),
            (json!({"capacity_adjustment": "x"}), "capacity_adjustment"),
            (json!({"capacity_adjustment": "NaN"}), "capacity_adjustment"),
            (json!({"capacity_adjustment": null}), "capacity_adjustment"),
            (json!({"capacity_adjustment": 0.333}), "capacity_adjustment"),
            (json!({"enabled": "yes"}), "enabled"),
            (json!({"enabled": 1}), "enabled"),
            (json!({"hostname": "other"}), "\"hostname\""),
            (json!({"enabled": true, "colour": "red"}), "\"colour\""),
        ];
        for (body, field) in cases {
            let e = parse_patch(&body).unwrap_err();
            assert!(e.contains(field), "{body}: {e}");
        }
        assert!(parse_patch(&json!([1])).unwrap_err().contains("object"));
    }

    #[test]
    fn listener_ports() {
        assert_eq!(listener_port("127.0.0.1:27199"), Some(27199));
        assert_eq!(listener_port("[::1]:8443"), Some(8443));
        assert_eq!(listener_port("wss://hop.example:443/mesh"), Some(443));
        assert_eq!(listener_port("hop.example"), None);
        assert_eq!(listener_port("hop:notaport"), None);
    }

    #[test]
    fn order_by_is_checked() {
        assert!(check_order_by("hostname").is_ok());
        assert!(check_order_by("-capacity").is_ok());
        assert!(check_order_by("name").is_err());
        assert!(check_order_by("--id").is_err());
        assert!(check_order_by("id; DROP TABLE jobs").is_err());
    }

    #[test]
    fn consumed_capacity_follows_the_node_type() {
        let l = NodeLoad {
            running: 2,
            total: 5,
            execution_impact: 12,
            controlled: 3,
        };
        assert_eq!(l.consumed(NodeType::Execution), 12);
        assert_eq!(l.consumed(NodeType::Control), 3);
        assert_eq!(l.consumed(NodeType::Hybrid), 15);
        assert_eq!(l.consumed(NodeType::Hop), 0);
        assert_eq!(percent_remaining(143, 12), 91.61);
        assert_eq!(percent_remaining(0, 0), 0.0);
        assert_eq!(percent_remaining(10, 30), 0.0);
    }

    fn inst(started: Option<&str>, last: Option<&str>) -> Instance {
        Instance {
            id: 1,
            hostname: "exec1".into(),
            uuid: None,
            node_type: NodeType::Execution,
            node_state: NodeState::Ready,
            enabled: true,
            cpu: 0.0,
            memory: 0,
            cpu_capacity: 0,
            mem_capacity: 0,
            capacity: 0,
            capacity_adjustment: 1.0,
            version: String::new(),
            boot_id: None,
            errors: String::new(),
            last_seen: None,
            unroutable_since: None,
            last_health_check: last.map(str::to_string),
            health_check_started: started.map(str::to_string),
            listener_address: None,
            registered_by: "discovery".into(),
            secure_work: false,
            control_tls: false,
            revision: 0,
            created: String::new(),
            modified: String::new(),
        }
    }

    #[test]
    fn pending_means_started_after_the_last_check() {
        let t1 = "2025-01-01T00:00:00.000000Z";
        let t2 = "2025-01-01T00:00:05.000000Z";
        assert!(!health_check_pending(&inst(None, None)));
        assert!(health_check_pending(&inst(Some(t1), None)));
        assert!(health_check_pending(&inst(Some(t2), Some(t1))));
        assert!(!health_check_pending(&inst(Some(t1), Some(t2))));
        let soon = parse_time(t2).unwrap();
        let later = soon + HEALTH_CHECK_PATIENCE;
        assert!(pending_recently(&inst(Some(t1), None), soon));
        assert!(
            !pending_recently(&inst(Some(t1), None), later),
            "a lost check may be replaced"
        );
    }

    #[test]
    fn the_view_renders_awx_decimals() {
        let mut i = inst(None, None);
        i.cpu = 8.0;
        i.capacity_adjustment = 0.5;
        i.listener_address = Some("127.0.0.1:27199".into());
        let v = serde_json::to_value(InstanceView::new(&i, NodeLoad::default())).unwrap();
        assert_eq!(v["cpu"], "8.0");
        assert_eq!(v["capacity_adjustment"], "0.50");
        assert_eq!(v["type"], "instance");
        assert_eq!(v["listener_port"], 27199);
        assert_eq!(
            v["related"]["health_check"],
            "/api/v2/instances/1/health_check/"
        );
    }
}

/// Default seconds running jobs get to finish when a node is removed.
pub const DEFAULT_REMOVE_DEADLINE_SECS: u64 = 600;
/// The longest deadline a removal may give (a week).
pub const MAX_REMOVE_DEADLINE_SECS: u64 = 7 * 24 * 3600;

/// `DELETE /api/v2/instances/{id}/` query.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoveQuery {
    deadline: Option<String>,
}

/// Checks `?deadline=`: whole seconds from 0 to [`MAX_REMOVE_DEADLINE_SECS`].
pub fn parse_deadline(raw: Option<&str>) -> Result<u64, String> {
    let Some(raw) = raw else {
        return Ok(DEFAULT_REMOVE_DEADLINE_SECS);
    };
    match raw.trim().parse::<u64>() {
        Ok(secs) if secs <= MAX_REMOVE_DEADLINE_SECS => Ok(secs),
        _ => Err(format!(
            "deadline must be whole seconds from 0 to {MAX_REMOVE_DEADLINE_SECS}, got {raw:?}"
        )),
    }
}

/// `DELETE /api/v2/instances/{id}/?deadline=SECS` (default 600): starts removing the node and
/// answers 202 with the instance, now `deprovisioning` and disabled, plus the removal's
/// `deadline`. The deprovision loop does the rest (drain, cancel at the deadline, release the
/// units, delete the row). Asking again is harmless (the earlier deadline stays). The control
/// node the coordinator runs on cannot be removed (409).
pub async fn remove(
    State(state): State<AppState>,
    id: Result<Path<i64>, PathRejection>,
    q: Result<Query<RemoveQuery>, QueryRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let id = instance_id(id)?;
    let Query(q) = q.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let secs = parse_deadline(q.deadline.as_deref()).map_err(ApiError::bad_request)?;
    let i = load_instance(&state, id).await?;
    if i.hostname == state.node_id {
        return Err(ApiError::conflict(format!(
            "{} is the control node this coordinator runs on; it cannot be removed (stop the \
             coordinator there instead)",
            i.hostname
        )));
    }
    let secs = i64::try_from(secs).unwrap_or(i64::MAX);
    let deadline = (Utc::now() + chrono::TimeDelta::seconds(secs))
        .to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let (inst, dep) = state
        .store
        .begin_deprovision(id, &deadline)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no instance with id {id}")))?;
    tracing::info!(instance = %inst.hostname, deadline = %dep.deadline, "node removal requested through the API");
    let mut body = serde_json::to_value(view(&state, &inst).await?).map_err(ApiError::internal)?;
    if let Value::Object(fields) = &mut body {
        fields.insert(
            "deprovision".into(),
            serde_json::to_value(&dep).map_err(ApiError::internal)?,
        );
    }
    Ok((StatusCode::ACCEPTED, Json(body)))
}

/// `GET /api/v2/removed_nodes/` query.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemovedQuery {
    hostname: Option<String>,
}

/// `GET /api/v2/removed_nodes/[?hostname=]`: tombstones of removed nodes, newest first, with
/// what their removal did (`{count, results}`; there are few).
pub async fn removed_nodes(
    State(state): State<AppState>,
    q: Result<Query<RemovedQuery>, QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(q) = q.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let results = match q.hostname.as_deref() {
        Some(h) => state.store.removed_node(h).await?.into_iter().collect(),
        None => state.store.removed_nodes().await?,
    };
    Ok(Json(json!({ "count": results.len(), "results": results })))
}
