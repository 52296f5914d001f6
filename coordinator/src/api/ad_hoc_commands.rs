//! Ad hoc commands: one module with its arguments against a host pattern of an inventory, with
//! no project (`ansible <pattern> -m <module> -a <args>`). Created and listed here; detail,
//! events, stdout and the live stream are the shared per-kind routes of `jobs::routes_for`.
//!
//! Only the modules of the `ad_hoc_commands` setting may run, and, as AWX, extra vars may not
//! set `ansible_*` variables (connection, become or interpreter settings belong to the inventory).

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use meshrun_shared::capacity;
use meshrun_shared::node_id::NodeId;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::job_fields::{self, RunFields};
use super::jobs::{self, ListQuery};
use super::page::Paged;
use super::{ApiError, AppState};
use crate::ad_hoc_modules::{self, AllowedModules};
use crate::store::{JobKind, NewJob};

/// Largest module argument text accepted.
pub const MAX_MODULE_ARGS_BYTES: usize = 64 << 10;

/// The host pattern when the body names none.
const DEFAULT_PATTERN: &str = "all";

/// `POST /api/v2/ad_hoc_commands/` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateAdHocCommand {
    name: Option<String>,
    /// Inventory text (INI or YAML); or
    inventory: Option<String>,
    /// a stored inventory.
    inventory_id: Option<i64>,
    /// The host pattern to run against (default `all`).
    limit: Option<String>,
    module_name: String,
    module_args: Option<String>,
    forks: Option<i64>,
    verbosity: Option<i64>,
    #[serde(default)]
    become_enabled: bool,
    #[serde(default)]
    extra_vars: Map<String, Value>,
    /// Execution-environment image (default: the execution node's).
    execution_environment: Option<String>,
    instance_group: Option<String>,
    execution_node: Option<String>,
}

impl CreateAdHocCommand {
    fn run_fields(&self) -> RunFields<'_> {
        RunFields {
            inventory: self.inventory.as_deref(),
            limit: self.limit.as_deref(),
            forks: self.forks,
            verbosity: self.verbosity,
            execution_node: self.execution_node.as_deref(),
            instance_group: self.instance_group.as_deref(),
            execution_environment: self.execution_environment.as_deref(),
        }
    }
}

fn check_module(module: &str, allowed: &AllowedModules) -> Result<(), ApiError> {
    ad_hoc_modules::check_name(module)
        .map_err(|e| ApiError::bad_request(format!("module_name: {e}")))?;
    if !allowed.allows(module) {
        return Err(ApiError::bad_request(format!(
            "module {module:?} is not allowed for ad hoc commands; allowed modules: {}",
            allowed.describe()
        )));
    }
    Ok(())
}

fn check_module_args(module: &str, args: Option<&str>) -> Result<(), ApiError> {
    let args = args.unwrap_or("");
    if args.len() > MAX_MODULE_ARGS_BYTES {
        return Err(ApiError::bad_request(format!(
            "module_args is {} bytes; at most {MAX_MODULE_ARGS_BYTES} are accepted",
            args.len()
        )));
    }
    if args.contains('\0') {
        return Err(ApiError::bad_request(
            "module_args must not contain NUL bytes",
        ));
    }
    // These two run nothing without a command line; ansible would only fail later.
    let short = module.strip_prefix("ansible.builtin.").unwrap_or(module);
    if matches!(short, "command" | "shell") && args.trim().is_empty() {
        return Err(ApiError::bad_request(format!(
            "module {module:?} needs module_args (the command to run)"
        )));
    }
    Ok(())
}

fn check_extra_vars(vars: &Map<String, Value>) -> Result<(), ApiError> {
    let mut reserved: Vec<&str> = vars
        .keys()
        .map(String::as_str)
        .filter(|k| k.starts_with("ansible_"))
        .collect();
    if reserved.is_empty() {
        return Ok(());
    }
    reserved.sort_unstable();
    Err(ApiError::bad_request(format!(
        "extra_vars may not set ansible_* variables in an ad hoc command (set them in the inventory): {}",
        reserved.join(", ")
    )))
}

/// Checks the body; returns the requested execution node, parsed.
fn validate(
    body: &CreateAdHocCommand,
    allowed: &AllowedModules,
) -> Result<Option<NodeId>, ApiError> {
    check_module(&body.module_name, allowed)?;
    check_module_args(&body.module_name, body.module_args.as_deref())?;
    check_extra_vars(&body.extra_vars)?;
    body.run_fields().check()
}

/// `POST /api/v2/ad_hoc_commands/`.
pub async fn create(
    State(state): State<AppState>,
    body: Result<Json<CreateAdHocCommand>, JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let Json(body) = body
        .map_err(|e| ApiError::bad_request(format!("invalid ad hoc command: {}", e.body_text())))?;
    let node = validate(&body, &state.ad_hoc_modules)?;
    let instance_group = job_fields::existing_group(&state, body.instance_group.as_deref()).await?;
    let inventory =
        super::inventories::job_inventory(&state, body.inventory.as_deref(), body.inventory_id)
            .await?;
    let host_count = inventory.host_count;
    let new = NewJob {
        kind: JobKind::AdHocCommand,
        name: body
            .name
            .clone()
            .unwrap_or_else(|| body.module_name.clone()),
        inventory: inventory.text,
        inventory_id: inventory.inventory_id,
        extra_vars: Value::Object(body.extra_vars.clone()).to_string(),
        limit: Some(
            body.limit
                .clone()
                .unwrap_or_else(|| DEFAULT_PATTERN.to_string()),
        ),
        forks: body.forks,
        verbosity: body.verbosity,
        requested_node: node.map(|n| n.to_string()),
        task_impact: capacity::task_impact(host_count, body.forks),
        instance_group,
        host_count,
        execution_environment: body.execution_environment.clone(),
        module_name: Some(body.module_name.clone()),
        module_args: body.module_args.clone().filter(|a| !a.is_empty()),
        become_enabled: body.become_enabled,
        ..NewJob::default()
    };
    let job = state.store.create_job(&new).await?;
    tracing::info!(
        id = job.id,
        module = %body.module_name,
        "ad hoc command created"
    );
    state.scheduler_wake.notify_one();
    Ok((StatusCode::CREATED, Json(jobs::job_json(&job))))
}

/// `GET /api/v2/ad_hoc_commands/` (newest first unless `order_by` says otherwise).
pub async fn list(
    State(state): State<AppState>,
    q: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Json<Paged<Value>>, ApiError> {
    jobs::list_kind(state, q, Some(JobKind::AdHocCommand)).await
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn body(v: Value) -> CreateAdHocCommand {
        serde_json::from_value(v).expect("a body")
    }

    fn base() -> Value {
        json!({
            "inventory": "localhost ansible_connection=local\n",
            "module_name": "ping",
        })
    }

    fn with(more: Value) -> CreateAdHocCommand {
        let mut v = base();
        if let (Some(b), Some(m)) = (v.as_object_mut(), more.as_object()) {
            b.extend(m.clone());
        }
        body(v)
    }

    fn refused(b: &CreateAdHocCommand, words: &str) {
        let e = validate(b, &AllowedModules::default()).expect_err("must be refused");
        let text = e.detail();
        assert!(text.contains(words), "{text} should say {words:?}");
    }

    #[test]
    fn a_good_body_passes() {
        let b = with(json!({
            "limit": "web:!db",
            "module_args": "echo hi",
            "module_name": "ansible.builtin.command",
            "become_enabled": true,
            "forks": 3,
            "verbosity": 2,
            "extra_vars": {"greeting": "hi"},
            "execution_node": "exec1",
        }));
        let node = validate(&b, &AllowedModules::default()).unwrap();
        assert_eq!(node.map(|n| n.to_string()).as_deref(), Some("exec1"));
        assert!(validate(&with(json!({})), &AllowedModules::default()).is_ok());
    }

    #[test]
    fn missing_or_unknown_fields_do_not_parse() {
        let no_module = json!({ "inventory": "localhost\n" });
        assert!(serde_json::from_value::<CreateAdHocCommand>(no_module).is_err());
        let mut extra = base();
        extra["playbook"] = json!("site.yml");
        assert!(serde_json::from_value::<CreateAdHocCommand>(extra).is_err());
        let mut wrong_type = base();
        wrong_type["extra_vars"] = json!(["a"]);
        assert!(serde_json::from_value::<CreateAdHocCommand>(wrong_type).is_err());
    }

    #[test]
    fn a_module_off_the_list_is_refused_naming_it_and_the_allowed_ones() {
        for m in ["raw", "script", "ansible.builtin.raw", "copy"] {
            let b = with(json!({ "module_name": m, "module_args": "x" }));
            refused(&b, &format!("module {m:?} is not allowed"));
            refused(&b, "allowed modules: command, shell, yum");
        }
        refused(&with(json!({ "module_name": "" })), "module_name");
        refused(&with(json!({ "module_name": "ping -a x" })), "module_name");
        let only_setup = AllowedModules::new(&["setup".into()]);
        let e = validate(&with(json!({})), &only_setup).expect_err("ping is off the list");
        assert!(e.detail().contains("allowed modules: setup"), "{e:?}");
    }

    #[test]
    fn module_args_are_checked() {
        refused(
            &with(json!({ "module_name": "command", "module_args": "echo a\u{0}b" })),
            "NUL",
        );
        let huge = "x".repeat(MAX_MODULE_ARGS_BYTES + 1);
        refused(
            &with(json!({ "module_name": "shell", "module_args": huge })),
            "at most",
        );
        for m in ["command", "shell", "ansible.builtin.shell"] {
            refused(&with(json!({ "module_name": m })), "needs module_args");
            refused(
                &with(json!({ "module_name": m, "module_args": "  " })),
                "needs module_args",
            );
        }
    }

    #[test]
    fn ansible_variables_in_extra_vars_are_refused() {
        refused(
            &with(
                json!({ "extra_vars": {"ansible_connection": "local", "ok": 1, "ansible_user": "x"} }),
            ),
            "ansible_connection, ansible_user",
        );
    }

    #[test]
    fn the_shared_run_fields_are_checked_too() {
        refused(
            &with(json!({ "inventory": "" })),
            "inventory must not be empty",
        );
        refused(&with(json!({ "limit": "" })), "limit");
        refused(&with(json!({ "forks": 0 })), "forks");
        refused(&with(json!({ "verbosity": 9 })), "verbosity");
        refused(
            &with(json!({ "execution_environment": "--privileged" })),
            "execution_environment",
        );
    }
}
