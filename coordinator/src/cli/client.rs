//! A small client of the coordinator's API: JSON in, JSON out, `{"detail"}` errors surfaced;
//! every request carries the bearer token given by `--token` / `MESHRUN_TOKEN`.

use std::sync::OnceLock;

use anyhow::{Context, anyhow};
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue};
use reqwest::{Response, StatusCode};
use serde_json::Value;

/// The token of this process's requests, set once by `main` from `--token` / `MESHRUN_TOKEN`.
static TOKEN: OnceLock<Option<String>> = OnceLock::new();

/// The mesh CA certificate (PEM) the API's certificate must chain to, set once by `main` from
/// `--ca-cert` / `MESHRUN_CA_CERT` (or the coordinator's default PKI directory).
static CA_PEM: OnceLock<Option<Vec<u8>>> = OnceLock::new();

/// Where a coordinator installed with the default data directory keeps its CA certificate.
pub const DEFAULT_CA_CERT: &str = "/var/lib/meshrun/coordinator/pki/ca.crt";

/// Sets the CA certificate every `Client` made afterwards trusts: `path` if given (it must be
/// readable), else the default file if it exists.
pub fn set_ca_cert(path: Option<&std::path::Path>) -> anyhow::Result<()> {
    let pem = match path {
        Some(p) => Some(
            std::fs::read(p)
                .with_context(|| format!("cannot read the CA certificate {}", p.display()))?,
        ),
        None => std::fs::read(DEFAULT_CA_CERT).ok(),
    };
    if let Some(pem) = &pem {
        reqwest::Certificate::from_pem(pem).with_context(|| {
            format!(
                "{} is not a PEM certificate",
                path.map_or(DEFAULT_CA_CERT.into(), |p| p.display().to_string())
            )
        })?;
    }
    let _ = CA_PEM.set(pem);
    Ok(())
}

/// A reqwest client builder that trusts only the mesh CA (when one is set).
pub fn http_builder() -> reqwest::ClientBuilder {
    let mut builder = reqwest::Client::builder().use_rustls_tls();
    if let Some(Some(pem)) = CA_PEM.get()
        && let Ok(cert) = reqwest::Certificate::from_pem(pem)
    {
        builder = builder.add_root_certificate(cert);
    }
    builder
}

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
            http: http_builder()
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
        let mut chain = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            chain.push_str(": ");
            chain.push_str(&s.to_string());
            source = s.source();
        }
        let hint = if chain.contains("certificate") || chain.contains("UnknownIssuer") {
            "\nhint: the API's certificate comes from the mesh CA; set MESHRUN_CA_CERT (or \
             --ca-cert) to the coordinator's <data_dir>/pki/ca.crt"
        } else {
            ""
        };
        anyhow!(
            "cannot reach the coordinator at {} (set MESHRUN_URL or --url): {chain}{hint}",
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

    /// DELETE, answering the JSON body (a 2xx without a body answers null).
    pub async fn delete(&self, path: &str) -> anyhow::Result<Value> {
        let resp = self
            .http
            .delete(self.url(path))
            .send()
            .await
            .map_err(|e| self.unreachable(e))?;
        self.answer(&format!("DELETE {path}"), resp).await
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
