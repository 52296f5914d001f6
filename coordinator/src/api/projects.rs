//! `POST /api/v2/project_archives/`: upload a project (tar + zstd), checked and stored by digest.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;

use super::{ApiError, AppState};
use crate::projects::{ProjectError, StoredArchive};

/// Stores the body as a project archive.
pub async fn upload(
    State(state): State<AppState>,
    body: Bytes,
) -> Result<(StatusCode, Json<StoredArchive>), ApiError> {
    if body.is_empty() {
        return Err(ApiError::bad_request(
            "project archive refused: the body is empty",
        ));
    }
    let projects = state.projects.clone();
    let stored = tokio::task::spawn_blocking(move || projects.put(&body))
        .await
        .map_err(ApiError::internal)?;
    match stored {
        Ok(s) => Ok((StatusCode::CREATED, Json(s))),
        Err(e @ (ProjectError::Refused(_) | ProjectError::Empty)) => {
            Err(ApiError::bad_request(e.to_string()))
        }
        Err(e) => Err(ApiError::internal(e)),
    }
}
