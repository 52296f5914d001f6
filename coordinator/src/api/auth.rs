//! Bearer-token authentication of the API: every route but the open ones (`OPEN_ROUTES`) needs
//! `Authorization: Bearer <token>`; read-only tokens may only GET and HEAD. Tokens are looked up
//! by their sha256 and never logged; the log names the token by its name and role.

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::store::{Store, TokenRole, token_hash, well_formed};

/// Routes answered without a token: (method, exact path).
pub const OPEN_ROUTES: &[(Method, &str)] = &[
    (Method::GET, "/api/v2/ping/"),
    (Method::HEAD, "/api/v2/ping/"),
    // Nodes joining the mesh prove themselves with a join token, not an API token.
    (Method::POST, "/api/v2/join/"),
    // The CA certificate is public; the joining node checks it against its token's fingerprint.
    (Method::GET, "/api/v2/join/ca/"),
    // Renewal is authenticated by the node's current certificate (mutual TLS).
    (Method::POST, "/api/v2/join/renew/"),
];

/// The API token a request was authenticated with (its name), for handlers that record who
/// did something. Absent when auth is off or the route is open.
#[derive(Debug, Clone)]
pub struct Caller(pub String);

/// What the auth layer needs.
#[derive(Debug, Clone)]
pub struct ApiAuth {
    /// Where tokens live.
    pub store: Store,
    /// False only when `[api] auth = false`: every request passes.
    pub enabled: bool,
}

/// Wraps every route of `router` in the token check.
pub fn require_tokens(router: Router, auth: ApiAuth) -> Router {
    router.layer(middleware::from_fn_with_state(auth, check))
}

fn is_open(method: &Method, path: &str) -> bool {
    OPEN_ROUTES.iter().any(|(m, p)| m == method && *p == path)
}

fn refuse(status: StatusCode, detail: &str) -> Response {
    let mut resp = (status, axum::Json(json!({ "detail": detail }))).into_response();
    if status == StatusCode::UNAUTHORIZED {
        resp.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    resp
}

fn unauthorized(detail: &str) -> Response {
    refuse(StatusCode::UNAUTHORIZED, detail)
}

async fn check(State(auth): State<ApiAuth>, request: Request, next: Next) -> Response {
    if !auth.enabled || is_open(request.method(), request.uri().path()) {
        return next.run(request).await;
    }
    let Some(value) = request.headers().get(header::AUTHORIZATION) else {
        return unauthorized(
            "authentication required: send 'Authorization: Bearer <token>' \
             (make one with 'meshrun-coordinator admin token create')",
        );
    };
    // The scheme is case-insensitive (RFC 9110).
    let Some(token) = value
        .to_str()
        .ok()
        .and_then(|v| v.trim().split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
    else {
        return unauthorized("malformed Authorization header: expected 'Bearer <token>'");
    };
    if !well_formed(token) {
        return unauthorized("malformed token: meshrun tokens look like 'mrt_' and 43 characters");
    }
    let found = match auth.store.api_token_by_hash(&token_hash(token)).await {
        Ok(found) => found,
        Err(e) => {
            tracing::error!(error = %e, "cannot look up an API token");
            return refuse(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal error; see the coordinator's log",
            );
        }
    };
    let Some(found) = found else {
        tracing::info!(method = %request.method(), path = request.uri().path(), "API request with an unknown token refused");
        return unauthorized("unknown token");
    };
    if found.revoked {
        tracing::info!(token = %found.name, id = found.id, "API request with a revoked token refused");
        return unauthorized("token revoked");
    }
    let method = request.method();
    if found.role == TokenRole::ReadOnly && method != Method::GET && method != Method::HEAD {
        tracing::info!(token = %found.name, role = %found.role, method = %method, path = request.uri().path(), "read-only token may not change anything");
        return refuse(
            StatusCode::FORBIDDEN,
            &format!(
                "token {:?} is read-only: {method} is not allowed",
                found.name
            ),
        );
    }
    tracing::debug!(token = %found.name, role = %found.role, method = %method, path = request.uri().path(), "API request authenticated");
    if let Err(e) = auth.store.touch_api_token(found.id).await {
        tracing::warn!(error = %e, token = %found.name, "cannot record a token's last use");
    }
    let mut request = request;
    request.extensions_mut().insert(Caller(found.name.clone()));
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::routing::get;
    use tower::ServiceExt;

    async fn app() -> (Router, Store, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db")).await.unwrap();
        let router = Router::new()
            .route("/api/v2/ping/", get(|| async { "pong" }))
            .route(
                "/api/v2/jobs/",
                get(|| async { "list" }).post(|| async { "made" }),
            )
            .route("/metrics", get(|| async { "m 1" }));
        let app = require_tokens(
            router,
            ApiAuth {
                store: store.clone(),
                enabled: true,
            },
        );
        (app, store, dir)
    }

    async fn call(app: &Router, method: &str, path: &str, auth: Option<&str>) -> (u16, String) {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(a) = auth {
            req = req.header(header::AUTHORIZATION, a);
        }
        let resp = app
            .clone()
            .oneshot(req.body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = resp.status().as_u16();
        if status == 401 {
            assert_eq!(resp.headers()[header::WWW_AUTHENTICATE], "Bearer");
        }
        let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn tokens_and_roles_are_enforced() {
        let (app, store, _dir) = app().await;
        let (_, admin) = store
            .create_api_token(TokenRole::Admin, "adm", "")
            .await
            .unwrap();
        let (ro_row, ro) = store
            .create_api_token(TokenRole::ReadOnly, "ro", "")
            .await
            .unwrap();
        let (gone_row, gone) = store
            .create_api_token(TokenRole::Admin, "gone", "")
            .await
            .unwrap();
        store.revoke_api_token(gone_row.id).await.unwrap();
        let bearer = |t: &str| format!("Bearer {t}");

        assert_eq!(
            call(&app, "GET", "/api/v2/ping/", None).await,
            (200, "pong".into())
        );
        let (s, b) = call(&app, "GET", "/api/v2/jobs/", None).await;
        assert_eq!(s, 401);
        assert!(b.contains("authentication required"), "{b}");
        let (s, b) = call(&app, "GET", "/api/v2/jobs/", Some("Basic abc")).await;
        assert_eq!(s, 401);
        assert!(b.contains("malformed Authorization"), "{b}");
        let (s, b) = call(&app, "GET", "/api/v2/jobs/", Some("Bearer nope")).await;
        assert_eq!(s, 401);
        assert!(b.contains("malformed token"), "{b}");
        let forged = format!("mrt_{}", "A".repeat(43));
        let (s, b) = call(&app, "GET", "/api/v2/jobs/", Some(&bearer(&forged))).await;
        assert_eq!((s, b.contains("unknown token")), (401, true), "{b}");
        let (s, b) = call(&app, "GET", "/api/v2/jobs/", Some(&bearer(&gone))).await;
        assert_eq!((s, b.contains("token revoked")), (401, true), "{b}");
        let (s, b) = call(&app, "POST", "/api/v2/jobs/", Some(&bearer(&ro))).await;
        assert_eq!((s, b.contains("read-only")), (403, true), "{b}");
        assert_eq!(
            call(&app, "GET", "/api/v2/jobs/", Some(&bearer(&ro))).await,
            (200, "list".into())
        );
        assert_eq!(
            call(&app, "GET", "/api/v2/jobs/", Some(&format!("bearer {ro}"))).await,
            (200, "list".into()),
            "the scheme is case-insensitive"
        );
        assert_eq!(
            call(&app, "GET", "/metrics", Some(&bearer(&ro))).await,
            (200, "m 1".into())
        );
        assert_eq!(call(&app, "GET", "/metrics", None).await.0, 401);
        assert_eq!(
            call(&app, "POST", "/api/v2/jobs/", Some(&bearer(&admin))).await,
            (200, "made".into())
        );
        let listed = store.list_api_tokens().await.unwrap();
        let ro_now = listed.iter().find(|t| t.id == ro_row.id).unwrap();
        assert!(ro_now.last_used.is_some());
    }

    #[tokio::test]
    async fn disabled_auth_lets_everything_through() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db")).await.unwrap();
        let router = Router::new().route("/api/v2/jobs/", get(|| async { "list" }));
        let app = require_tokens(
            router,
            ApiAuth {
                store,
                enabled: false,
            },
        );
        assert_eq!(call(&app, "GET", "/api/v2/jobs/", None).await.0, 200);
    }
}
