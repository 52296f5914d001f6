//! API authentication against the real coordinator: every route but ping needs a bearer token
//! made by `meshrun-coordinator admin token create`; read-only tokens may only read; revoked,
//! forged and malformed tokens are refused with a detail that says which; the `meshrun` CLI
//! sends `MESHRUN_TOKEN` (or `--token`) and explains a refusal; secrets in inventory variables
//! are masked in answers; no token text reaches the coordinator's log.

use std::path::PathBuf;
use std::process::{Command, Output};

use meshrun_tests::api;
use meshrun_tests::env;
use meshrun_tests::mesh::{Mesh, NodeSpec, create_api_token};
use reqwest::StatusCode;
use reqwest::blocking::RequestBuilder;
use serde_json::{Value, json};

fn one_node_mesh() -> Mesh {
    let mut mesh = Mesh::start(&[NodeSpec::new("control", "control").listening()]);
    mesh.start_coordinator("control");
    mesh
}

fn config(mesh: &Mesh) -> PathBuf {
    mesh.dir().join("control/coordinator.toml")
}

fn send(req: RequestBuilder) -> (StatusCode, Option<String>, Value) {
    let r = req.send().expect("request");
    let status = r.status();
    let www = r
        .headers()
        .get(reqwest::header::WWW_AUTHENTICATE)
        .map(|v| v.to_str().unwrap_or("").to_string());
    (status, www, r.json().unwrap_or(Value::Null))
}

fn detail(body: &Value) -> &str {
    body["detail"].as_str().unwrap_or("")
}

fn admin(args: &[&str], mesh: &Mesh) -> Output {
    Command::new(env::bin("meshrun-coordinator"))
        .arg("admin")
        .arg("token")
        .args(args)
        .arg("--config")
        .arg(config(mesh))
        .output()
        .expect("meshrun-coordinator admin token")
}

fn meshrun(mesh: &Mesh, token: Option<&str>, args: &[&str]) -> Output {
    let mut cmd = Command::new(env::bin("meshrun"));
    cmd.args(args)
        .env("MESHRUN_URL", mesh.api())
        .env("MESHRUN_CA_CERT", mesh.ca_cert())
        .env_remove("MESHRUN_TOKEN");
    if let Some(t) = token {
        cmd.env("MESHRUN_TOKEN", t);
    }
    cmd.output().expect("meshrun")
}

#[test]
fn tokens_roles_and_refusals_over_http_and_the_cli() {
    let mesh = one_node_mesh();
    let base = mesh.api().to_string();
    let url = |p: &str| format!("{base}{p}");
    let anon = api::builder().build().expect("client");

    // Ping is open; everything else needs a token.
    let (s, _, _) = send(anon.get(url("/api/v2/ping/")));
    assert_eq!(s, StatusCode::OK);
    let (s, www, body) = send(anon.get(url("/api/v2/jobs/")));
    assert_eq!(s, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(www.as_deref(), Some("Bearer"));
    assert!(detail(&body).contains("authentication required"), "{body}");
    let (s, _, _) = send(anon.get(url("/metrics")));
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    let (s, _, body) = send(
        anon.get(url("/api/v2/jobs/"))
            .header("Authorization", "Token x"),
    );
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(detail(&body).contains("malformed Authorization"), "{body}");
    let (s, _, body) = send(api::client_with("mrt_short").get(url("/api/v2/jobs/")));
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(detail(&body).contains("malformed token"), "{body}");
    let forged = format!("mrt_{}", "x".repeat(43));
    let (s, _, body) = send(api::client_with(&forged).get(url("/api/v2/jobs/")));
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(detail(&body).contains("unknown token"), "{body}");

    // The admin token of the harness reads and writes.
    let (s, body) = api::post(
        &mesh,
        "/api/v2/inventories/",
        &json!({
            "name": "secrets",
            "variables": {"ansible_become_password": "becomes3cret", "region": "eu"},
            "content": {
                "_meta": {"hostvars": {"h1": {"ansible_password": "hunter2", "ansible_host": "10.0.0.1"}}},
                "all": {"children": ["ungrouped"]},
                "ungrouped": {"hosts": ["h1"]}
            }
        }),
    );
    assert_eq!(s, StatusCode::CREATED, "{body}");
    let inv = body["id"].as_i64().expect("inventory id");

    // Secrets in variables are masked in answers.
    let (s, text) = api::get_text(&mesh, &format!("/api/v2/inventories/{inv}/"));
    assert_eq!(s, StatusCode::OK);
    assert!(!text.contains("becomes3cret"), "{text}");
    assert!(
        text.contains("$encrypted$") && text.contains("eu"),
        "{text}"
    );
    let (s, text) = api::get_text(&mesh, &format!("/api/v2/inventories/{inv}/hosts/"));
    assert_eq!(s, StatusCode::OK);
    assert!(!text.contains("hunter2"), "{text}");
    assert!(text.contains("10.0.0.1"), "{text}");

    // A read-only token reads (metrics too) but may not change anything.
    let ro = create_api_token(&config(&mesh), "read-only");
    let ro_client = api::client_with(&ro);
    let (s, _, body) = send(ro_client.get(url("/api/v2/inventories/")));
    assert_eq!(s, StatusCode::OK, "{body}");
    let (s, _, _) = send(ro_client.get(url("/metrics")));
    assert_eq!(s, StatusCode::OK);
    let (s, _, body) = send(
        ro_client
            .post(url("/api/v2/inventories/"))
            .json(&json!({"name": "nope"})),
    );
    assert_eq!(s, StatusCode::FORBIDDEN, "{body}");
    assert!(detail(&body).contains("read-only"), "{body}");

    // A revoked token is refused as such.
    let gone = create_api_token(&config(&mesh), "admin");
    let (s, _, _) = send(api::client_with(&gone).get(url("/api/v2/jobs/")));
    assert_eq!(s, StatusCode::OK);
    let list = admin(&["list"], &mesh);
    let listing = String::from_utf8_lossy(&list.stdout).to_string();
    assert!(list.status.success(), "{listing}");
    for secret in [mesh.token(), ro.as_str(), gone.as_str()] {
        assert!(
            !listing.contains(&secret[4..]),
            "list shows a secret:\n{listing}"
        );
    }
    let last_id = listing
        .lines()
        .filter_map(|l| l.split_whitespace().next()?.parse::<i64>().ok())
        .max()
        .expect("token ids in the list");
    let revoke = admin(&["revoke", &last_id.to_string()], &mesh);
    assert!(
        revoke.status.success(),
        "{}",
        String::from_utf8_lossy(&revoke.stderr)
    );
    let (s, _, body) = send(api::client_with(&gone).get(url("/api/v2/jobs/")));
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(detail(&body).contains("revoked"), "{body}");
    let listing = String::from_utf8_lossy(&admin(&["list"], &mesh).stdout).to_string();
    assert!(
        listing
            .lines()
            .any(|l| l.starts_with(&format!("{last_id} ")) && l.contains(" yes ")),
        "{listing}"
    );

    // The CLI: refused without a token (with a hint), works with MESHRUN_TOKEN or --token; a
    // read-only token cannot create.
    let out = meshrun(&mesh, None, &["inventory", "list"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("401") && err.contains("MESHRUN_TOKEN"),
        "{err}"
    );
    let out = meshrun(&mesh, Some(mesh.token()), &["inventory", "list"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("secrets"));
    let out = meshrun(&mesh, None, &["--token", &ro, "inventory", "list"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = meshrun(&mesh, Some(&ro), &["instances", "health-check", "control"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("403") && err.contains("admin token"), "{err}");

    // No token text in the coordinator's log.
    let log = mesh.coordinator_log();
    for secret in [mesh.token(), ro.as_str(), gone.as_str(), forged.as_str()] {
        assert!(!log.contains(&secret[4..]), "a token reached the log");
    }
}
