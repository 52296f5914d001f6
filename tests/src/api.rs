//! Calls to the coordinator's REST API as a test makes them: JSON in and out with the status
//! code kept (so refusals can be checked), project uploads, jobs, instances and instance
//! groups. Works for every coordinator the harness starts, the managed control node's included,
//! because it never reads the store.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use reqwest::blocking::Client;
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue};
use serde_json::{Value, json};

use crate::mesh::Mesh;
use crate::wait::eventually;

fn answer(what: &str, r: reqwest::Result<reqwest::blocking::Response>) -> (StatusCode, Value) {
    let r = r.unwrap_or_else(|e| panic!("{what}: {e}"));
    let status = r.status();
    let text = r.text().unwrap_or_else(|e| panic!("{what}: body: {e}"));
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, body)
}

/// The mesh CAs of every coordinator this test process started. Each API certificate is checked
/// against its own CA; trusting all of them lets one client serve every mesh of the process.
static TRUSTED_CAS: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

/// Trusts the CA certificate (PEM) in `ca_file` from now on.
pub fn trust_ca(ca_file: &Path) {
    let pem = std::fs::read(ca_file).unwrap_or_else(|e| panic!("{}: {e}", ca_file.display()));
    let mut cas = TRUSTED_CAS.lock().unwrap_or_else(|e| e.into_inner());
    if !cas.contains(&pem) {
        cas.push(pem);
    }
}

/// A client builder that trusts the CAs passed to [`trust_ca`] and nothing else.
pub fn builder() -> reqwest::blocking::ClientBuilder {
    let mut b = Client::builder().use_rustls_tls();
    for pem in TRUSTED_CAS.lock().unwrap_or_else(|e| e.into_inner()).iter() {
        b = b.add_root_certificate(reqwest::Certificate::from_pem(pem).expect("a CA certificate"));
    }
    b
}

/// The mesh CA certificate of the coordinator configured by `config` (`ca.crt` in its PKI
/// folder, `<data_dir>/pki` unless `[pki] dir` says otherwise).
pub fn ca_cert_of(config: &Path) -> PathBuf {
    meshrun_coordinator::config::CoordinatorConfig::load(config)
        .unwrap_or_else(|e| panic!("{}: {e}", config.display()))
        .pki_dir()
        .join("ca.crt")
}

/// Waits until the coordinator configured by `config` answers `/api/v2/ping/` over HTTPS at
/// `api`, trusting its CA once the first start has made it; `check` runs on every try (it may
/// panic to give up early). Returns the CA file.
pub fn wait_for_api(
    what: &str,
    api: &str,
    config: &Path,
    patience: Duration,
    mut check: impl FnMut(),
) -> PathBuf {
    let ca = ca_cert_of(config);
    eventually(what, patience, || {
        check();
        if !ca.exists() {
            return None;
        }
        trust_ca(&ca);
        builder()
            .build()
            .ok()?
            .get(format!("{api}/api/v2/ping/"))
            .send()
            .ok()
            .filter(|r| r.status().is_success())
    });
    ca
}

/// An HTTP client that sends `token` as its bearer token on every request.
pub fn client_with(token: &str) -> Client {
    let mut headers = HeaderMap::new();
    let mut value =
        HeaderValue::from_str(&format!("Bearer {token}")).expect("a token is header-safe");
    value.set_sensitive(true);
    headers.insert(AUTHORIZATION, value);
    builder()
        .default_headers(headers)
        .timeout(None)
        .build()
        .expect("http client")
}

/// An HTTP client that sends the mesh's admin token on every request.
pub fn client(mesh: &Mesh) -> Client {
    client_with(mesh.token())
}

/// `GET path` as text, with its status.
pub fn get_text(mesh: &Mesh, path: &str) -> (StatusCode, String) {
    let r = client(mesh)
        .get(format!("{}{path}", mesh.api()))
        .send()
        .unwrap_or_else(|e| panic!("GET {path}: {e}"));
    let status = r.status();
    (
        status,
        r.text().unwrap_or_else(|e| panic!("GET {path}: body: {e}")),
    )
}

/// `DELETE path` as text, with its status.
pub fn delete(mesh: &Mesh, path: &str) -> (StatusCode, String) {
    let r = client(mesh)
        .delete(format!("{}{path}", mesh.api()))
        .send()
        .unwrap_or_else(|e| panic!("DELETE {path}: {e}"));
    let status = r.status();
    (status, r.text().unwrap_or_default())
}

/// `GET path`, with its status.
pub fn get(mesh: &Mesh, path: &str) -> (StatusCode, Value) {
    answer(
        &format!("GET {path}"),
        client(mesh).get(format!("{}{path}", mesh.api())).send(),
    )
}

/// `POST path` with a JSON body.
pub fn post(mesh: &Mesh, path: &str, body: &Value) -> (StatusCode, Value) {
    answer(
        &format!("POST {path}"),
        client(mesh)
            .post(format!("{}{path}", mesh.api()))
            .json(body)
            .send(),
    )
}

/// `PATCH path` with a JSON body.
pub fn patch(mesh: &Mesh, path: &str, body: &Value) -> (StatusCode, Value) {
    answer(
        &format!("PATCH {path}"),
        client(mesh)
            .patch(format!("{}{path}", mesh.api()))
            .json(body)
            .send(),
    )
}

/// `POST /api/v2/project_archives/` with raw bytes.
pub fn upload_archive(mesh: &Mesh, bytes: Vec<u8>) -> (StatusCode, Value) {
    answer(
        "POST /api/v2/project_archives/",
        client(mesh)
            .post(format!("{}/api/v2/project_archives/", mesh.api()))
            .header(reqwest::header::CONTENT_TYPE, "application/zstd")
            .body(bytes)
            .send(),
    )
}

/// Packs `dir` as the CLI does, uploads it, and returns its sha256.
pub fn upload_project(mesh: &Mesh, dir: &Path) -> String {
    let bytes = meshrun_coordinator::project_archive::pack(
        dir,
        Vec::new(),
        meshrun_coordinator::project_archive::DEFAULT_LEVEL,
    )
    .unwrap_or_else(|e| panic!("packing {}: {e}", dir.display()));
    let (status, body) = upload_archive(mesh, bytes);
    assert_eq!(
        status,
        StatusCode::CREATED,
        "upload of {}: {body:#}",
        dir.display()
    );
    body["sha256"]
        .as_str()
        .unwrap_or_else(|| panic!("no sha256 in {body:#}"))
        .to_string()
}

/// `POST /api/v2/jobs/` with `body`; returns the new job's id.
pub fn submit_job(mesh: &Mesh, body: &Value) -> i64 {
    let (status, job) = post(mesh, "/api/v2/jobs/", body);
    assert_eq!(status, StatusCode::CREATED, "job {body:#}: {job:#}");
    job["id"]
        .as_i64()
        .unwrap_or_else(|| panic!("no id in {job:#}"))
}

/// The job as the API shows it.
pub fn job(mesh: &Mesh, id: i64) -> Value {
    let (status, job) = get(mesh, &format!("/api/v2/jobs/{id}/"));
    assert_eq!(status, StatusCode::OK, "job {id}: {job:#}");
    job
}

/// Waits until job `id` satisfies `done` (up to `patience`), and returns it.
pub fn wait_job(
    mesh: &Mesh,
    id: i64,
    what: &str,
    patience: Duration,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + patience;
    loop {
        let last = job(mesh, id);
        if done(&last) {
            return last;
        }
        assert!(
            Instant::now() < deadline,
            "job {id} never {what} within {patience:?}; last seen:\n{last:#}\n--- coordinator log\n{}",
            mesh.coordinator_log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits until job `id` has ended (successful, failed, error or canceled) and returns it.
pub fn wait_job_end(mesh: &Mesh, id: i64) -> Value {
    wait_job(mesh, id, "ended", Duration::from_secs(120), |j| {
        matches!(
            j["status"].as_str(),
            Some("successful" | "failed" | "error" | "canceled")
        )
    })
}

/// The job's plain-text output.
pub fn job_stdout(mesh: &Mesh, id: i64) -> String {
    let (status, text) = get_text(mesh, &format!("/api/v2/jobs/{id}/stdout/?format=txt"));
    assert_eq!(status, StatusCode::OK, "stdout of job {id}: {text}");
    text
}

/// The instance `hostname` as the API shows it, if it is registered.
pub fn instance(mesh: &Mesh, hostname: &str) -> Option<Value> {
    let (status, page) = get(mesh, &format!("/api/v2/instances/?hostname={hostname}"));
    assert_eq!(status, StatusCode::OK, "instances: {page:#}");
    page["results"]
        .as_array()
        .and_then(|r| r.iter().find(|i| i["hostname"] == hostname).cloned())
}

/// Waits until `hostname` is `ready` with a capacity above 0 and returns it.
pub fn wait_ready(mesh: &Mesh, hostname: &str) -> Value {
    eventually(
        &format!("{hostname} to be ready with capacity"),
        // A node's first service advertisement may leave before its TLS link is up; receptor
        // sends the next one 60 s later, and only then does the coordinator see its work type.
        Duration::from_secs(150),
        || {
            instance(mesh, hostname)
                .filter(|i| i["node_state"] == "ready" && i["capacity"].as_i64() > Some(0))
        },
    )
}

/// PATCHes instance `hostname` with `body` and returns the changed instance.
pub fn patch_instance(mesh: &Mesh, hostname: &str, body: &Value) -> Value {
    let id = instance(mesh, hostname)
        .and_then(|i| i["id"].as_i64())
        .unwrap_or_else(|| panic!("{hostname} is not registered"));
    let (status, changed) = patch(mesh, &format!("/api/v2/instances/{id}/"), body);
    assert_eq!(
        status,
        StatusCode::OK,
        "PATCH {hostname} {body}: {changed:#}"
    );
    changed
}

/// Creates instance group `name` with the two limits (0: unlimited); returns its id.
pub fn create_group(mesh: &Mesh, name: &str, max_concurrent_jobs: i64, max_forks: i64) -> i64 {
    let body = json!({
        "name": name,
        "max_concurrent_jobs": max_concurrent_jobs,
        "max_forks": max_forks,
    });
    let (status, group) = post(mesh, "/api/v2/instance_groups/", &body);
    assert_eq!(
        status,
        StatusCode::CREATED,
        "POST /api/v2/instance_groups/ {body}: {group:#}"
    );
    group["id"]
        .as_i64()
        .unwrap_or_else(|| panic!("no id in {group:#}"))
}

/// Adds (`member`) or removes instance `hostname` to or from group `group_id`, AWX style.
pub fn set_group_member(mesh: &Mesh, group_id: i64, hostname: &str, member: bool) {
    let id = instance(mesh, hostname)
        .and_then(|i| i["id"].as_i64())
        .unwrap_or_else(|| panic!("{hostname} is not registered"));
    let body = if member {
        json!({ "id": id })
    } else {
        json!({ "id": id, "disassociate": true })
    };
    let path = format!("/api/v2/instance_groups/{group_id}/instances/");
    let (status, answer) = post(mesh, &path, &body);
    assert!(
        status.is_success(),
        "POST {path} {body}: {status} {answer:#}"
    );
}
