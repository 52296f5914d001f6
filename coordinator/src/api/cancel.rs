//! `/api/v2/<collection>/{id}/cancel/` for every kind of job, as AWX: `GET` says whether the job
//! can still be canceled (`{"can_cancel": bool}`); `POST` requests the cancel and answers 202,
//! or 405 with the reason when the job already ended. A job not submitted yet is `canceled` at
//! once; a running one ends `canceled` when its unit has stopped.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde_json::{Value, json};

use super::jobs::{job_json, load};
use super::{ApiError, AppState};
use crate::runner::cancel::Canceled;
use crate::store::JobKind;

/// `GET /api/v2/<collection>/{id}/cancel/`.
pub async fn can_cancel(
    State(state): State<AppState>,
    Path(id): Path<i64>,
    kind: JobKind,
) -> Result<Json<Value>, ApiError> {
    let job = load(&state, id, kind).await?;
    Ok(Json(json!({ "can_cancel": !job.status.is_final() })))
}

/// `POST /api/v2/<collection>/{id}/cancel/`.
pub async fn cancel(
    State(state): State<AppState>,
    Path(id): Path<i64>,
    kind: JobKind,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    // Only a row of this collection's kind may be canceled through it.
    load(&state, id, kind).await?;
    match state.runner.cancel(id).await? {
        Canceled::Ended(job) | Canceled::Requested(job) => {
            Ok((StatusCode::ACCEPTED, Json(job_json(&job))))
        }
        Canceled::AlreadyEnded(job) => Err(ApiError::method_not_allowed(format!(
            "{} {id} cannot be canceled: it already ended ({})",
            kind.as_str().replace('_', " "),
            job.status
        ))),
        Canceled::NotFound => Err(ApiError::not_found(format!(
            "no {} with id {id}",
            kind.as_str().replace('_', " ")
        ))),
    }
}
