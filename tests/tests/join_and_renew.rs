//! Self-registration on a real mesh: a coordinator runs the control node's receptor with mutual
//! TLS; a hop (listening) and an execution node (dialling the hop) join with tokens made through
//! the API (`meshrun-agent join --no-start`, then `meshrun-agent run`), become routable from the
//! control node over mTLS and run a job. Every kind of bad join is refused with a message that
//! says which, storing nothing; a second join with the same key is idempotent; with two-minute
//! certificates the agent renews before expiry and the node stays routable; a node whose
//! instance was removed is refused renewal.

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use meshrun_coordinator::store::Store;
use meshrun_shared::join::{JOIN_PATH, JoinRequest, JoinToken};
use meshrun_tests::env;
use meshrun_tests::mesh::Mesh;
use meshrun_tests::mesh::managed_control::{ManagedOptions, read_or_note};
use meshrun_tests::wait::eventually;
use serde_json::{Value, json};

const CERT_SECS: u64 = 120;

fn text(out: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Instances, every node certificate and every token's uses left: what a refused join must not
/// change.
fn snapshot(mesh: &Mesh) -> Value {
    mesh.read_store(async |s: &Store| {
        let mut certs = Vec::new();
        for i in s.all_instances().await? {
            certs.push(json!([
                i.hostname,
                s.node_certs_of(&i.hostname).await?.len()
            ]));
        }
        let tokens: Vec<Value> = s
            .list_join_tokens()
            .await?
            .into_iter()
            .map(|t| json!([t.id, t.uses_left]))
            .collect();
        Ok(json!({"instances": certs, "tokens": tokens}))
    })
}

fn csr(key: &rcgen::KeyPair) -> String {
    rcgen::CertificateParams::default()
        .serialize_request(key)
        .unwrap()
        .pem()
        .unwrap()
}

fn post_join(mesh: &Mesh, body: &Value) -> (u16, String) {
    let client = meshrun_tests::api::builder().build().unwrap();
    let resp = client
        .post(format!("{}{JOIN_PATH}", mesh.api()))
        .json(body)
        .send()
        .expect("POST join");
    (resp.status().as_u16(), resp.text().unwrap_or_default())
}

fn request(token: &str, id: &str, csr_pem: &str) -> Value {
    serde_json::to_value(JoinRequest {
        token: token.to_string(),
        node_id: id.to_string(),
        node_type: None,
        csr_pem: csr_pem.to_string(),
        dns_names: Vec::new(),
        ip_addresses: Vec::new(),
        advertise: None,
        peer: None,
        agent_version: None,
    })
    .unwrap()
}

fn run_demo_job(mesh: &Mesh, node: &str) -> Output {
    let project = env::repo_root().join("packaging/demo/project");
    let inventory = env::repo_root().join("packaging/demo/inventory.ini");
    mesh.meshrun(&[
        "job",
        "run",
        &project.display().to_string(),
        "hello.yml",
        "-i",
        &inventory.display().to_string(),
        "--node",
        node,
        "--follow",
    ])
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

#[test]
fn nodes_join_with_tokens_link_over_mtls_run_jobs_and_renew_their_certificates() {
    let mut mesh = Mesh::start(&[]);
    let control = mesh.start_managed_control_with(
        "control",
        "control",
        ManagedOptions {
            mesh_tls: true,
            coordinator_extra: format!("[pki]\nnode_cert_secs = {CERT_SECS}\n"),
            ..ManagedOptions::default()
        },
    );
    let conf = read(&control.receptor_conf);
    assert!(
        conf.contains("requireclientcert: true") && conf.contains("tls: tls_server"),
        "the control node's listener requires client certs:\n{conf}"
    );

    // --- the hop listens, the execution node dials the hop.
    let hop_port = meshrun_tests::mesh::free_port();
    let advertise = format!("127.0.0.1:{hop_port}");
    let renew_fast = "[join]\nrenew_check_secs = 3\n";
    let hop_token = mesh.join_token_for("hop");
    let out = mesh.join_node(
        "hop",
        &hop_token,
        &[
            "--node-type",
            "hop",
            "--listen",
            &hop_port.to_string(),
            "--advertise",
            &advertise,
        ],
        renew_fast,
    );
    assert!(out.status.success(), "hop join: {}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("joined the mesh as hop"), "{stdout}");
    assert!(
        stdout.contains("meshrun-agent --config"),
        "--no-start says how to start: {stdout}"
    );
    let hop = mesh.joined_files("hop");
    let mode = |p: &Path| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    };
    assert_eq!(mode(&hop.key), 0o600);
    assert_eq!(mode(&hop.dir.join("tls")), 0o700);
    assert!(!hop.receptor_conf.exists(), "--no-start starts nothing");
    mesh.start_joined("hop", Some(hop_port));

    let exec_token = mesh.join_token(&json!({"node_type": "execution", "ttl": "10m"}));
    let out = mesh.join_node("exec1", &exec_token, &["--peer", &advertise], renew_fast);
    assert!(out.status.success(), "exec1 join: {}", text(&out));
    mesh.start_joined("exec1", None);
    let exec = mesh.joined_files("exec1");

    // Under load a dialer that found the listener not yet up backs off before redialling.
    eventually(
        "control to route to hop and exec1 over mTLS",
        Duration::from_secs(120),
        || {
            let st = mesh.status("control");
            (st.routing_table.contains_key("hop") && st.routing_table.contains_key("exec1"))
                .then_some(())
        },
    );
    let exec_conf = read(&exec.receptor_conf);
    for needle in [
        "tls-client",
        "rootcas",
        "tls: tls_client",
        "verifysignature: true",
    ] {
        assert!(
            exec_conf.contains(needle),
            "{needle} in exec1's receptor.conf:\n{exec_conf}"
        );
    }
    let hop_row = mesh.instance("hop").expect("hop registered by its join");
    assert_eq!(hop_row.registered_by, "join");
    assert_eq!(hop_row.node_type.as_str(), "hop");
    assert_eq!(
        hop_row.listener_address.as_deref(),
        Some(advertise.as_str())
    );

    // --- a job runs on the joined execution node (signed work, TLS control service).
    meshrun_tests::api::wait_ready(&mesh, "exec1");
    let out = run_demo_job(&mesh, "exec1");
    assert!(
        out.status.success(),
        "job on exec1: {}\n--- coordinator log\n{}",
        text(&out),
        mesh.coordinator_log()
    );

    // --- refusals: each says which, and stores nothing.
    let key = rcgen::KeyPair::generate().unwrap();
    let good_csr = csr(&key);
    let fresh = mesh.join_token_for("execution");
    let mut forged = JoinToken::decode(&fresh).unwrap();
    forged.secret = "A".repeat(43);
    let expired = mesh.join_token(&json!({"node_type": "execution", "ttl": 1}));
    let revoked = mesh.join_token_for("execution");
    let revoked_id = mesh
        .read_store(async |s: &Store| s.list_join_tokens().await)
        .last()
        .unwrap()
        .id;
    let (status, _) =
        meshrun_tests::api::delete(&mesh, &format!("/api/v2/join_tokens/{revoked_id}/"));
    assert_eq!(status.as_u16(), 204);
    std::thread::sleep(Duration::from_millis(1500));
    let before = snapshot(&mesh);
    let mut wrong_type = request(&fresh, "exec9", &good_csr);
    wrong_type["node_type"] = json!("hop");
    let cases: Vec<(&str, Value, u16, &str)> = vec![
        (
            "not a token",
            request("mrt_abc", "exec9", &good_csr),
            400,
            "not a join token",
        ),
        (
            "forged",
            request(&forged.encode(), "exec9", &good_csr),
            403,
            "unknown join token",
        ),
        (
            "replayed single-use",
            request(&exec_token, "exec9", &good_csr),
            403,
            "used up",
        ),
        (
            "expired",
            request(&expired, "exec9", &good_csr),
            403,
            "expired",
        ),
        (
            "revoked",
            request(&revoked, "exec9", &good_csr),
            403,
            "revoked",
        ),
        ("wrong type", wrong_type, 403, "wrong node type"),
        (
            "bad id",
            request(&fresh, "local host", &good_csr),
            400,
            "bad node id",
        ),
        (
            "bad id localhost",
            request(&fresh, "localhost", &good_csr),
            400,
            "bad node id",
        ),
        (
            "taken id",
            request(&fresh, "exec1", &good_csr),
            409,
            "taken by another key",
        ),
        (
            "garbage CSR",
            request(
                &fresh,
                "exec9",
                "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n",
            ),
            400,
            "bad CSR",
        ),
        (
            "bad names",
            {
                let mut r = request(&fresh, "exec9", &good_csr);
                r["dns_names"] = json!(["bad name!"]);
                r
            },
            400,
            "bad names",
        ),
        ("not JSON", json!("hello"), 400, "not valid"),
    ];
    for (what, body, code, needle) in cases {
        let (status, answer) = post_join(&mesh, &body);
        assert_eq!(status, code, "{what}: {answer}");
        assert!(
            answer.contains(needle),
            "{what}: {answer:?} should say {needle:?}"
        );
        assert_eq!(snapshot(&mesh), before, "{what} stored something");
    }
    // Renewal without a client certificate is refused.
    let (status, answer) = {
        let client = meshrun_tests::api::builder().build().unwrap();
        let r = client
            .post(format!(
                "{}{}",
                mesh.api(),
                meshrun_shared::join::RENEW_PATH
            ))
            .json(&json!({"csr_pem": good_csr}))
            .send()
            .unwrap();
        (r.status().as_u16(), r.text().unwrap_or_default())
    };
    assert_eq!(status, 401, "{answer}");
    assert!(answer.contains("client certificate"), "{answer}");
    // The fresh token, unused by all of that, still works (and shows nothing was consumed).
    let (status, answer) = post_join(&mesh, &request(&fresh, "exec9", &good_csr));
    assert_eq!(status, 201, "{answer}");

    // --- idempotent re-join: same id and key, even with the used token.
    let toml_before = read(&exec.agent_toml);
    let key_before = read(&exec.key);
    let out = mesh.join_node("exec1", &exec_token, &["--peer", &advertise], renew_fast);
    assert!(out.status.success(), "re-join: {}", text(&out));
    assert_eq!(read(&exec.agent_toml), toml_before);
    assert_eq!(read(&exec.key), key_before);

    // --- renewal: 2-minute certs are renewed after two thirds of their life.
    let cert_before = read(&exec.cert);
    eventually(
        "exec1 to renew its certificate",
        Duration::from_secs(CERT_SECS + 30),
        || (read(&exec.cert) != cert_before).then_some(()),
    );
    assert_ne!(read(&exec.key), key_before, "renewal makes a new key");
    let kinds: Vec<String> = mesh
        .read_store(async |s: &Store| s.node_certs_of("exec1").await)
        .into_iter()
        .map(|c| c.kind)
        .collect();
    assert!(kinds.contains(&"renew".to_string()), "{kinds:?}");
    eventually(
        "exec1 routable again after its receptor restarted",
        Duration::from_secs(60),
        || {
            mesh.status("control")
                .routing_table
                .contains_key("exec1")
                .then_some(())
        },
    );
    let metrics = meshrun_tests::api::get_text(&mesh, "/metrics").1;
    assert!(
        metrics.contains("meshrun_mesh_cert_earliest_expiry_timestamp_seconds"),
        "{metrics}"
    );

    // --- a removed node is refused renewal and keeps its current certificate.
    let removed = mesh.meshrun(&["instances", "remove", "hop", "--deadline", "5", "--wait"]);
    assert!(removed.status.success(), "{}", text(&removed));
    let target = meshrun_agent::run::renew::RenewTarget {
        url: mesh.api().to_string(),
        ca: hop.ca.clone(),
        cert: hop.cert.clone(),
        key: hop.key.clone(),
        every: Duration::from_secs(1),
    };
    let hop_cert = read(&hop.cert);
    let err = meshrun_tests::mesh::block_on(meshrun_agent::run::renew::renew_once(&target))
        .expect_err("renewal of a removed node");
    assert!(
        err.to_string().contains("no longer registered"),
        "{err}\n--- hop run log\n{}",
        read_or_note(&hop.run_log)
    );
    assert_eq!(
        read(&hop.cert),
        hop_cert,
        "a refusal keeps the current certificate"
    );
}
