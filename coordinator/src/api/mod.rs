//! The HTTP API, AWX-shaped: JSON under `/api/v2/`, pages of `{count, next, previous, results}`,
//! errors as `{"detail": "..."}` with 400/404/409/500; plus Prometheus text at `/metrics`.
//! Every route but `/api/v2/ping/` needs a bearer token (see `auth`).

mod ad_hoc_commands;
pub mod auth;
mod cancel;
mod error;
mod instance_groups;
mod instances;
mod inventories;
mod job_fields;
mod jobs;
mod join;
mod join_tokens;
mod mesh_visualizer;
mod metrics;
mod page;
mod ping;
mod projects;
mod scm_projects;
pub mod secrets;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, post};

pub use error::ApiError;
pub use join::split_host_port;

use crate::events_bus::EventsBus;
use crate::projects::ProjectStore;
use crate::runner::JobRunner;
use crate::store::{JobKind, Store};

/// Shared state of every handler.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The store.
    pub store: Store,
    /// Project archives.
    pub projects: ProjectStore,
    /// Runs jobs.
    pub runner: JobRunner,
    /// Change notices for live followers.
    pub bus: EventsBus,
    /// This control node's id.
    pub node_id: String,
    /// Counters for `/metrics`.
    pub metrics: std::sync::Arc<crate::metrics::Metrics>,
    /// Wakes the scheduler (a job was created).
    pub scheduler_wake: std::sync::Arc<tokio::sync::Notify>,
    /// Wakes the health-check loop (an on-demand check was requested).
    pub health_wakeup: std::sync::Arc<tokio::sync::Notify>,
    /// Modules ad hoc commands may run.
    pub ad_hoc_modules: std::sync::Arc<crate::ad_hoc_modules::AllowedModules>,
    /// Whether git projects may name `file://` repositories (`[projects] allow_file_urls`).
    pub allow_file_scm_urls: bool,
    /// Whether requests need a bearer token (`[api] auth`).
    pub api_auth: bool,
    /// The mesh CA and certificate settings.
    pub pki: std::sync::Arc<crate::pki::PkiContext>,
}

/// The API's routes.
pub fn router(state: AppState, max_upload_bytes: usize) -> Router {
    let auth = auth::ApiAuth {
        store: state.store.clone(),
        enabled: state.api_auth,
    };
    let routes = Router::new()
        .route("/api/v2/ping/", get(ping::ping))
        .route(
            "/api/v2/project_archives/",
            post(projects::upload).layer(DefaultBodyLimit::max(max_upload_bytes)),
        )
        .route("/api/v2/jobs/", get(jobs::list).post(jobs::create))
        .route("/api/v2/unified_jobs/", get(jobs::unified_list))
        .route(
            "/api/v2/inventories/",
            get(inventories::list).post(inventories::create),
        )
        .route("/api/v2/inventories/{id}/", get(inventories::detail))
        .route("/api/v2/inventories/{id}/hosts/", get(inventories::hosts))
        .route(
            "/api/v2/inventories/{id}/update/",
            post(inventories::update),
        )
        .route("/api/v2/inventory_updates/", get(inventories::list_updates))
        .route(
            "/api/v2/ad_hoc_commands/",
            get(ad_hoc_commands::list).post(ad_hoc_commands::create),
        )
        .route(
            "/api/v2/projects/",
            get(scm_projects::list).post(scm_projects::create),
        )
        .route("/api/v2/projects/{id}/", get(scm_projects::detail))
        .route("/api/v2/projects/{id}/update/", post(scm_projects::update))
        .route("/api/v2/project_updates/", get(scm_projects::list_updates))
        .merge(jobs::routes_for(JobKind::Job))
        .merge(jobs::routes_for(JobKind::AdHocCommand))
        .merge(jobs::routes_for(JobKind::InventoryUpdate))
        .merge(jobs::routes_for(JobKind::ProjectUpdate))
        .route(
            "/api/v2/instance_groups/",
            get(instance_groups::list).post(instance_groups::create),
        )
        .route(
            "/api/v2/instance_groups/{id}/",
            get(instance_groups::detail).patch(instance_groups::patch),
        )
        .route(
            "/api/v2/instance_groups/{id}/instances/",
            post(instance_groups::members),
        )
        .route("/api/v2/instances/", get(instances::list))
        .route("/api/v2/removed_nodes/", get(instances::removed_nodes))
        .route(
            "/api/v2/instances/{id}/",
            get(instances::detail)
                .patch(instances::patch)
                .delete(instances::remove),
        )
        .route(
            "/api/v2/instances/{id}/health_check/",
            get(instances::health_check).post(instances::start_health_check),
        )
        .route(
            "/api/v2/mesh_visualizer/",
            get(mesh_visualizer::mesh_visualizer),
        )
        .route(
            meshrun_shared::join::JOIN_PATH,
            post(join::join).layer(DefaultBodyLimit::max(
                meshrun_shared::join::limits::MAX_BODY,
            )),
        )
        .route(meshrun_shared::join::CA_PATH, get(join::ca))
        .route(
            meshrun_shared::join::RENEW_PATH,
            post(join::renew).layer(DefaultBodyLimit::max(
                meshrun_shared::join::limits::MAX_BODY,
            )),
        )
        .route(
            "/api/v2/join_tokens/",
            get(join_tokens::list).post(join_tokens::create),
        )
        .route("/api/v2/join_tokens/{id}/", delete(join_tokens::revoke))
        .route("/metrics", get(metrics::metrics))
        .with_state(state);
    auth::require_tokens(routes, auth)
}
