//! Mesh TLS and signed work, proven with the real receptor (v1.4.8) on meshes whose nodes are
//! configured by `meshrun-agent config` with certificates from `meshrun-coordinator admin cert
//! issue`. What receptor enforces, as these tests observe it:
//!
//! - A link (tcp-peer to tcp-listener) is TLS with client certificates from the mesh CA: a node
//!   without TLS, or with a certificate from another CA, never links, so it is never routable.
//! - A link checks the certificate chain (and the listener's DNS name or IP), **not** the node
//!   id: a node holding a valid mesh certificate for X that runs as Y links and is routable as
//!   Y. What binds ids is TLS on the mesh services: the coordinator's submits carry a
//!   `tlsclient`, so receptor requires the target's certificate to name the target (the
//!   impostor gets no unit), and a TLS `control` service requires the caller's certificate to
//!   name the caller (the impostor reaches no execution node's control service). The control
//!   node's own `control` service is closed to the mesh by a firewall rule.
//! - Signed work: an unsigned submit over the mesh to a node that verifies is refused, a signed
//!   one runs; the coordinator signs exactly for nodes that advertise `Secure`.

use std::time::{Duration, Instant};

use meshrun_shared::control_socket::{ControlClient, SubmitRequest, UnitState, UnitStatus};
use meshrun_tests::env;
use meshrun_tests::mesh::{Mesh, NodeSpec, NodeTls, TLS_CLIENT_NAME, block_on};
use meshrun_tests::wait::eventually;

/// How long a node that should not link is watched.
const WATCH: Duration = Duration::from_secs(20);

fn log(mesh: &Mesh, node: &str) -> String {
    std::fs::read_to_string(mesh.nodes[node].dir.join("receptor.log")).unwrap_or_default()
}

/// Submits `--worker-info` work of type ansible-runner to `target` through `via`'s control
/// socket (no payload, the given ttl). Returns the unit id on `via`, or receptor's refusal.
fn submit(
    mesh: &Mesh,
    via: &str,
    target: &str,
    tls: bool,
    sign: bool,
    ttl: &str,
) -> Result<String, String> {
    block_on(async {
        let c = ControlClient::connect_unix(&mesh.nodes[via].socket).await?;
        let mut req = SubmitRequest::new(target, "ansible-runner");
        req.params = Some("--worker-info".into());
        req.ttl = Some(ttl.into());
        req.tlsclient = tls.then(|| TLS_CLIENT_NAME.to_string());
        req.signwork = sign;
        c.work_submit(&req).await?.finish().await
    })
    .map(|r| r.unit_id)
    .map_err(|e| e.to_string())
}

/// Waits until the unit is final and returns its status.
fn final_status(mesh: &Mesh, via: &str, unit: &str) -> UnitStatus {
    eventually(
        &format!("unit {unit} on {via} to end"),
        Duration::from_secs(60),
        || {
            let st = mesh.unit_status(via, unit);
            st.state.is_final().then_some(st)
        },
    )
}

/// Submits as [`submit`] and expects the unit to fail with a detail containing `why`.
fn submit_fails(mesh: &Mesh, via: &str, target: &str, tls: bool, ttl: &str, why: &str) {
    let unit = submit(mesh, via, target, tls, false, ttl)
        .unwrap_or_else(|e| panic!("{via} -> {target}: the submit itself was refused: {e}"));
    let st = final_status(mesh, via, &unit);
    assert_eq!(st.state, UnitState::Failed, "{via} -> {target}: {st:?}");
    assert!(
        st.detail.contains(why),
        "{via} -> {target} (tls {tls}): {:?} does not say {why:?}",
        st.detail
    );
}

/// Force-releases every unit of `node`'s receptor.
fn release_all(mesh: &Mesh, node: &str) {
    for unit in mesh.work_list(node).into_keys() {
        block_on(async {
            let mut c = ControlClient::connect_unix(&mesh.nodes[node].socket).await?;
            c.work_force_release(&unit).await
        })
        .unwrap_or_else(|e| panic!("force-release {unit} on {node}: {e}"));
    }
}

/// Asserts that neither `a` nor `b` ever routes to the other in [`WATCH`].
fn never_routable(mesh: &Mesh, a: &str, b: &str) {
    let end = Instant::now() + WATCH;
    while Instant::now() < end {
        for (from, to) in [(a, b), (b, a)] {
            let st = mesh.status(from);
            assert!(
                !st.routing_table.contains_key(to),
                "{to} became routable from {from}: {:?}\n--- {from} log\n{}",
                st.routing_table,
                log(mesh, from)
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn nodes_without_a_mesh_certificate_never_link() {
    let mut mesh = Mesh::start(&[NodeSpec::new("control", "control").listening()]);
    mesh.add_node(&NodeSpec::new("exec1", "execution").dialing("control"));
    mesh.add_node(
        &NodeSpec::new("plain", "execution")
            .dialing("control")
            .with_tls(NodeTls::Off),
    );
    mesh.add_node(
        &NodeSpec::new("foreign", "execution")
            .dialing("control")
            .with_tls(NodeTls::ForeignCa),
    );
    // The node with a mesh certificate links: listener and harness are sound.
    mesh.wait_routable("control", &["exec1"]);
    never_routable(&mesh, "control", "plain");
    never_routable(&mesh, "control", "foreign");
    // receptor logs, on the listener: for the plain dialer "Backend receiving error tls: first
    // record does not look like a TLS handshake" (the dialer: "Backend connection exited (will
    // retry)"); for the foreign certificate "Backend receiving error tls: client didn't provide
    // a certificate": Go's TLS client sends only a certificate from a CA the listener asks for,
    // so the foreign one is not even sent. Both dialers retry forever.
    let control = log(&mesh, "control");
    for line in [
        "first record does not look like a TLS handshake",
        "client didn't provide a certificate",
    ] {
        assert!(
            control.contains(line),
            "{line:?} not in control's log:\n{control}"
        );
    }
    for node in ["plain", "foreign"] {
        let text = log(&mesh, node);
        assert!(text.contains("(will retry)"), "{node}'s log:\n{text}");
    }
}

#[test]
fn a_valid_certificate_for_another_id_gets_no_work_and_submits_nothing() {
    let mut mesh = Mesh::start(&[NodeSpec::new("control", "control")
        .listening()
        .signing_work()]);
    mesh.add_node(
        &NodeSpec::new("exec1", "execution")
            .dialing("control")
            .verifying_work(),
    );
    // exec2 holds a valid mesh certificate, but for "spare"; exec3 one for "spare3", and it
    // serves its control service in plain text, hoping the coordinator follows its
    // advertisement down to plain.
    mesh.add_node(
        &NodeSpec::new("exec2", "execution")
            .dialing("control")
            .verifying_work()
            .with_tls(NodeTls::CertFor("spare".into())),
    );
    mesh.add_node(
        &NodeSpec::new("exec3", "execution")
            .dialing("control")
            .with_tls(NodeTls::CertFor("spare3".into()))
            .edit_conf("    tls: tls_server\n- tls-server:", "- tls-server:"),
    );
    // Links do not bind node ids: both impostors link and are routable under their claims.
    mesh.wait_routable("control", &["exec1", "exec2", "exec3"]);
    mesh.start_coordinator("control");

    // The coordinator's health checks (submits with its tlsclient) never reach them.
    for (node, why) in [
        (
            "exec2",
            "x509: certificate is valid for Receptor node ID spare, not exec2",
        ),
        ("exec3", "x509: certificate signed by unknown authority"),
    ] {
        let check = eventually(
            &format!("the coordinator to health-check {node}"),
            Duration::from_secs(150),
            || mesh.health_checks(node).into_iter().next(),
        );
        assert!(!check.ok, "{node}: {check:?}");
        assert!(
            check
                .errors
                .contains("TLS error connecting to remote service")
                && check.errors.contains(why),
            "{node}: {:?} does not say {why:?}",
            check.errors
        );
    }
    mesh.wait_discovered(&["control", "exec1"]);
    // A job asked for on exec2 is never sent there.
    let project = env::repo_root().join("packaging/demo/project");
    let inventory = env::repo_root().join("packaging/demo/inventory.ini");
    let out = mesh.meshrun(&[
        "job",
        "run",
        &project.display().to_string(),
        "hello.yml",
        "-i",
        &inventory.display().to_string(),
        "--node",
        "exec2",
    ]);
    assert!(out.status.success(), "{out:?}");
    std::thread::sleep(Duration::from_secs(5));
    let job = mesh.get("/api/v2/jobs/1/");
    assert_eq!(job["status"], "pending", "{job:#}");
    assert!(job["work_unit_id"].is_null(), "{job:#}");
    for node in ["exec2", "exec3"] {
        assert!(mesh.work_list(node).is_empty(), "{node} got work");
    }

    // The impostor cannot submit to an execution node: with its tlsclient exec1 finds the
    // wrong id in its client certificate, without one its own receptor refuses to talk plain
    // to a TLS service (and exec1 would still want a signature it cannot make) ...
    submit_fails(&mesh, "exec2", "exec1", true, "20s", "tls: bad certificate");
    let exec1 = log(&mesh, "exec1");
    assert!(
        exec1.contains("RVF ReceptorNameError: expected exec2 but found spare"),
        "exec1's log:\n{exec1}"
    );
    submit_fails(
        &mesh,
        "exec2",
        "exec1",
        false,
        "20s",
        "insecure connection to secure service",
    );
    assert!(mesh.work_list("exec1").is_empty(), "exec1 got work");
    // ... nor use the control node's control service: its firewall rule answers every packet
    // with "unreachable" until the ttl ends the unit.
    submit_fails(&mesh, "exec2", "control", false, "8s", "Work unit expired");
    let exec2 = log(&mesh, "exec2");
    assert!(
        exec2.contains("Received unreachable message from control"),
        "exec2's log:\n{exec2}"
    );
}

#[test]
fn work_over_the_mesh_is_signed_exactly_where_it_is_verified() {
    let mut mesh = Mesh::start(&[NodeSpec::new("control", "control")
        .listening()
        .signing_work()]);
    mesh.add_node(&NodeSpec::new("exec1", "execution").dialing("control"));
    mesh.add_node(
        &NodeSpec::new("exec2", "execution")
            .dialing("control")
            .verifying_work(),
    );
    mesh.wait_routable("control", &["exec1", "exec2"]);
    for (node, secure) in [("exec1", false), ("exec2", true)] {
        eventually(
            &format!("control to learn whether {node} verifies"),
            // Service advertisements go out at start and then every 60 s.
            Duration::from_secs(90),
            || {
                mesh.status("control")
                    .advertised_work_command(node, "ansible-runner")
                    .map(|w| assert_eq!(w.secure, secure, "{node}"))
            },
        );
    }
    // From the control node's socket over the mesh (TLS to the target's control service):
    // unsigned work for exec2 is refused by exec2, signed work runs.
    let refused = submit(&mesh, "control", "exec2", true, false, "20s").unwrap_err();
    assert!(
        refused.contains("could not verify signature: signature is empty"),
        "{refused}"
    );
    let unit = submit(&mesh, "control", "exec2", true, true, "20s").unwrap();
    let st = final_status(&mesh, "control", &unit);
    assert_eq!(st.state, UnitState::Succeeded, "{st:?}");
    let info = mesh.output("control", &unit, Duration::from_secs(10));
    meshrun_shared::worker_info::parse(&String::from_utf8_lossy(&info))
        .unwrap_or_else(|e| panic!("exec2's worker info: {e}"));
    // exec1 does not verify: it refuses a signature and runs unsigned work.
    let refused = submit(&mesh, "control", "exec1", true, true, "20s").unwrap_err();
    assert!(
        refused.contains("work type did not expect a signature"),
        "{refused}"
    );
    let unit = submit(&mesh, "control", "exec1", true, false, "20s").unwrap();
    assert_eq!(
        final_status(&mesh, "control", &unit).state,
        UnitState::Succeeded
    );
    release_all(&mesh, "control");

    // The coordinator signs exactly for exec2: both health checks succeed, and each node would
    // have refused the other kind of submit.
    mesh.start_coordinator("control");
    mesh.wait_discovered(&["control", "exec1", "exec2"]);
    for node in ["exec1", "exec2"] {
        let check = mesh
            .health_checks(node)
            .into_iter()
            .next()
            .expect("a health check");
        assert!(check.ok, "{node}: {check:?}\n{}", mesh.coordinator_log());
        let inst = mesh.instance(node).expect("registered");
        assert_eq!(inst.secure_work, node == "exec2", "{node}");
        assert!(inst.control_tls, "{node}");
    }
}
