//! A small client of the coordinator's API: JSON in, JSON out, `{"detail"}` errors surfaced.

use anyhow::{Context, anyhow};
use reqwest::{Response, StatusCode};
use serde_json::Value;

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
            http: reqwest::Client::new(),
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
            "{what}: {} {}: {detail}",
            status.as_u16(),
            status.canonical_reason().unwrap_or("")
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
