//! `/api/v2/join_tokens/`: making (admin), listing and revoking join tokens. A token's text is
//! answered once, when it is made; the store keeps only its sha256.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};
use base64::Engine as _;
use chrono::Utc;
use meshrun_shared::join::JoinToken;
use meshrun_shared::node_type::NodeType;
use serde::Deserialize;
use serde_json::{Value, json};

use super::auth::Caller;
use super::{ApiError, AppState};
use crate::store::{JoinTokenRow, NewJoinToken, token_hash};

/// Default token lifetime.
pub const DEFAULT_TTL_SECS: i64 = 3600;
/// Longest token lifetime.
pub const MAX_TTL_SECS: i64 = 7 * 86_400;
/// Most joins one token may allow.
pub const MAX_USES: i64 = 1000;

/// The body of `POST /api/v2/join_tokens/`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateJoinToken {
    /// `execution` or `hop`.
    pub node_type: String,
    /// Lifetime: seconds, or a number with `s`, `m`, `h` or `d` (default 1h, at most 7d).
    #[serde(default)]
    pub ttl: Option<Value>,
    /// Joins allowed (default 1).
    #[serde(default)]
    pub uses: Option<i64>,
    /// A label.
    #[serde(default)]
    pub name: Option<String>,
}

/// Parses a lifetime: `90`, `"90"`, `"90s"`, `"15m"`, `"1h"`, `"2d"`.
pub fn parse_ttl(v: &Value) -> Result<i64, String> {
    let bad = || format!("ttl {v} is not a lifetime (seconds, or a number with s, m, h or d)");
    let secs = match v {
        Value::Number(n) => n.as_i64().ok_or_else(bad)?,
        Value::String(s) => {
            let s = s.trim();
            let (num, unit) = match s.char_indices().last() {
                Some((i, c)) if c.is_ascii_alphabetic() => (&s[..i], c),
                _ => (s, 's'),
            };
            let n: i64 = num.trim().parse().map_err(|_| bad())?;
            let mult = match unit {
                's' => 1,
                'm' => 60,
                'h' => 3600,
                'd' => 86_400,
                _ => return Err(bad()),
            };
            n.checked_mul(mult).ok_or_else(bad)?
        }
        _ => return Err(bad()),
    };
    if secs <= 0 || secs > MAX_TTL_SECS {
        return Err(format!(
            "ttl must be between 1 second and {} days, got {secs} s",
            MAX_TTL_SECS / 86_400
        ));
    }
    Ok(secs)
}

fn shown(row: &JoinTokenRow) -> Value {
    let mut v = serde_json::to_value(row).unwrap_or(Value::Null);
    let expired = row.expired_at(Utc::now());
    if let Some(o) = v.as_object_mut() {
        o.insert("expired".into(), json!(expired));
        o.insert(
            "usable".into(),
            json!(!expired && !row.revoked && row.uses_left > 0),
        );
    }
    v
}

/// `POST /api/v2/join_tokens/`: answers the token text once, in `token`.
pub async fn create(
    State(state): State<AppState>,
    caller: Option<Extension<Caller>>,
    Json(body): Json<CreateJoinToken>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let node_type = match body.node_type.parse::<NodeType>() {
        Ok(t @ (NodeType::Execution | NodeType::Hop)) => t,
        _ => {
            return Err(ApiError::bad_request(format!(
                "node_type must be execution or hop, got {:?} (control and hybrid nodes run a coordinator and do not join)",
                body.node_type
            )));
        }
    };
    let ttl = match &body.ttl {
        Some(v) => parse_ttl(v).map_err(ApiError::bad_request)?,
        None => DEFAULT_TTL_SECS,
    };
    let uses = body.uses.unwrap_or(1);
    if !(1..=MAX_USES).contains(&uses) {
        return Err(ApiError::bad_request(format!(
            "uses must be between 1 and {MAX_USES}, got {uses}"
        )));
    }
    let mut secret = [0u8; 32];
    getrandom::getrandom(&mut secret).map_err(ApiError::internal)?;
    let token = JoinToken {
        url: state.pki.public_url.clone(),
        ca_fingerprint: state.pki.ca.fingerprint().to_string(),
        secret: base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret),
    };
    let text = token.encode();
    let created_by = caller.map(|Extension(Caller(n))| n).unwrap_or_default();
    let row = state
        .store
        .create_join_token(&NewJoinToken {
            token_sha256: token_hash(&text),
            node_type,
            expires_at: Utc::now() + chrono::Duration::seconds(ttl),
            uses,
            name: body.name.unwrap_or_default(),
            created_by,
        })
        .await?;
    tracing::info!(id = row.id, node_type = %node_type, uses, expires_at = %row.expires_at, by = %row.created_by, "join token created");
    let mut answer = shown(&row);
    if let Some(o) = answer.as_object_mut() {
        o.insert("token".into(), json!(text));
    }
    Ok((StatusCode::CREATED, Json(answer)))
}

/// `GET /api/v2/join_tokens/`: every token, without secrets.
pub async fn list(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let rows = state.store.list_join_tokens().await?;
    let results: Vec<Value> = rows.iter().map(shown).collect();
    Ok(Json(json!({
        "count": results.len(),
        "next": null,
        "previous": null,
        "results": results,
    })))
}

/// `DELETE /api/v2/join_tokens/{id}/`: revokes a token.
pub async fn revoke(
    State(state): State<AppState>,
    Path(id): Path<i64>,
) -> Result<StatusCode, ApiError> {
    if state.store.revoke_join_token(id).await? {
        tracing::info!(id, "join token revoked");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(format!("no join token {id}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifetimes_parse_and_are_bounded() {
        assert_eq!(parse_ttl(&json!(90)), Ok(90));
        assert_eq!(parse_ttl(&json!("15m")), Ok(900));
        assert_eq!(parse_ttl(&json!("1h")), Ok(3600));
        assert_eq!(parse_ttl(&json!("7d")), Ok(7 * 86_400));
        assert!(parse_ttl(&json!("8d")).unwrap_err().contains("7 days"));
        assert!(parse_ttl(&json!("0")).is_err());
        assert!(parse_ttl(&json!("1w")).is_err());
        assert!(parse_ttl(&json!("h")).is_err());
        assert!(parse_ttl(&json!(true)).is_err());
    }
}
