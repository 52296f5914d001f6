//! A small client of the coordinator's API: JSON in, JSON out, `{"detail"}` errors surfaced;
//! every request carries the bearer token given by `--token` / `MESHRUN_TOKEN`.

use std::sync::OnceLock;

use anyhow::{Context, anyhow};
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue};
use reqwest::{Response, StatusCode};
use serde_json::Value;

/// The token of this process's requests, set once by `main` from `--token` / `MESHRUN_TOKEN`.
static TOKEN: OnceLock<Option<String>> = OnceLock::new();

/// Sets the bearer token every `Client` made afterwards sends.
pub fn set_token(token: Option<String>) {
    let _ = TOKEN.set(token.filter(|t| !t.trim().is_empty()));
}

/// What to tell a person after a 401 or 403 (empty for other statuses).
pub fn auth_hint(status: StatusCode) -> &'static str {
    match status {
        StatusCode::UNAUTHORIZED => {
            "\nhint: set MESHRUN_TOKEN (or --token) to a token made with \
             'meshrun-coordinator admin token create'"
        }
        StatusCode::FORBIDDEN => "\nhint: this needs an admin token; yours may only read",
        _ => "",
    }
}

fn auth_headers() -> HeaderMap {
    let mut headers = HeaderMap::new();
    if let Some(Some(token)) = TOKEN.get()
        && let Ok(mut value) = HeaderValue::from_str(&format!("Bearer {}", token.trim()))
    {
        value.set_sensitive(true);
        headers.insert(AUTHORIZATION, value);
    }
    headers
}

/// API client.
#[derive(Debug, Clone)]
pub struct Client {
    base: String,
    http: reqwest::Client,
}

impl Client {
    /// A client of the API at `base` (e.g. `http://127.0.0.1:8080`).
    pub fn new(base: &str) -> Self {
        Client {
            base: base.trim_end_matches('/').to_string(),
            http: reqwest::Client::builder()
                .default_headers(auth_headers())
                .build()
                .unwrap_or_default(),
        }
    }

    /// Full URL of an API path.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The underlying HTTP client.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    async fn answer(&self, what: &str, resp: Response) -> anyhow::Result<Value> {
        let status = resp.status();
        let body = resp
            .text()
            .await
            .with_context(|| format!("{what}: cannot read the answer"))?;
        let json: Value = serde_json::from_str(&body).unwrap_or(Value::String(body.clone()));
        if status.is_success() {
            return Ok(json);
        }
        let detail = json
            .get("detail")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or(body);
        Err(anyhow!(
            "{what}: {} {}: {detail}{}",
            status.as_u16(),
            status.canonical_reason().unwrap_or(""),
            auth_hint(status)
        ))
    }

    fn unreachable(&self, e: reqwest::Error) -> anyhow::Error {
        anyhow!(
            "cannot reach the coordinator at {} (set MESHRUN_URL or --url): {e}",
            self.base
        )
    }

    /// GET a JSON document.
    pub async fn get(&self, path: &str) -> anyhow::Result<Value> {
        let resp = self
            .http
            .get(self.url(path))
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        self.answer(&format!("GET {path}"), resp).await
    }

    /// GET a text document.
    pub async fn get_text(&self, path: &str) -> anyhow::Result<String> {
        let resp = self
            .http
            .get(self.url(path))
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        if resp.status() == StatusCode::OK {
            return Ok(resp.text().await?);
        }
        Err(self
            .answer(&format!("GET {path}"), resp)
            .await
            .err()
            .unwrap_or_else(|| anyhow!("GET {path} failed")))
    }

    /// POST a JSON body.
    pub async fn post_json(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        let resp = self
            .http
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        self.answer(&format!("POST {path}"), resp).await
    }

    /// POST raw bytes.
    pub async fn post_bytes(
        &self,
        path: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> anyhow::Result<Value> {
        let resp = self
            .http
            .post(self.url(path))
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(body)
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        self.answer(&format!("POST {path}"), resp).await
    }
}
