//! `GET /api/v2/ping/`: is the coordinator up, and which control node is it.

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use super::AppState;

/// Answers with the version and node id.
pub async fn ping(State(state): State<AppState>) -> Json<Value> {
    Json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "node_id": state.node_id,
        "time": chrono::Utc::now().to_rfc3339(),
    }))
}
