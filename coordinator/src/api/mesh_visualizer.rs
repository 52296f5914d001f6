//! `GET /api/v2/mesh_visualizer/`: every instance and every link the control node knows, in
//! AWX's shape (`{"nodes": [...], "links": [...]}`), for drawing the topology.

use axum::Json;
use axum::extract::State;
use meshrun_shared::node_type::NodeType;
use serde::Serialize;

use super::{ApiError, AppState};
use crate::store::{Link, NodeState};

/// One node of the picture.
#[derive(Debug, Serialize)]
pub struct MeshNode {
    id: i64,
    hostname: String,
    node_type: NodeType,
    node_state: NodeState,
    enabled: bool,
}

/// The topology.
#[derive(Debug, Serialize)]
pub struct Mesh {
    nodes: Vec<MeshNode>,
    /// `source` and `target` are hostnames; `link_state` is `established`, `adding` or
    /// `removing`; `cost` is receptor's.
    links: Vec<Link>,
}

/// `GET /api/v2/mesh_visualizer/`.
pub async fn mesh_visualizer(State(state): State<AppState>) -> Result<Json<Mesh>, ApiError> {
    let instances = state.store.all_instances().await?;
    let links = state.store.links().await?;
    let nodes = instances
        .into_iter()
        .map(|i| MeshNode {
            id: i.id,
            hostname: i.hostname,
            node_type: i.node_type,
            node_state: i.node_state,
            enabled: i.enabled,
        })
        .collect();
    Ok(Json(Mesh { nodes, links }))
}
