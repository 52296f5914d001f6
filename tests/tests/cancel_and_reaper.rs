//! Cancel and the reaper on a real mesh (real receptor, ansible-runner, podman):
//! - a playbook canceled mid-run (podman mode, through the API and through `meshrun job
//!   cancel --wait`) ends `canceled`, and leaves no unit on either end, no container and no
//!   process of the job;
//! - a pending job is canceled at once and never submitted; an ad hoc command (host mode) is
//!   canceled through `meshrun jobs cancel`; a job that ended cannot be canceled (405);
//! - the reaper releases units of ended jobs, units tagged with unknown jobs and ended
//!   health-check units, never a unit of an active job, and leaves foreign units alone.
//!
//! Each run prints `cancel->canceled` figures (time from the cancel request to the job's
//! final status); the tests never assert on timing.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use meshrun_shared::control_socket::{ControlClient, SubmitRequest};
use meshrun_tests::mesh::{Mesh, NodeSpec, block_on};
use meshrun_tests::wait::eventually;
use meshrun_tests::{api, env, procs};
use reqwest::StatusCode;
use serde_json::{Value, json};

const INVENTORY: &str = "localhost ansible_connection=local ansible_python_interpreter=\"{{ ansible_playbook_python }}\"\n";

const SLEEPY: &str = "- hosts: all\n  gather_facts: false\n  tasks:\n\
    \x20   - ansible.builtin.debug: {msg: started}\n\
    \x20   - name: long sleep\n      ansible.builtin.command: sleep 120\n";

/// The coordinator's settings for these tests: a reaper pass every 2 s (it runs next to the
/// jobs, and must never touch theirs).
const COORDINATOR: &str = "[reaper]\ninterval_secs = 2\n";

/// control (listens, runs the coordinator) ← `exec` (podman or host mode), discovered and
/// ready.
fn mesh(exec: &str, podman: bool) -> Mesh {
    let mut spec = NodeSpec::new(exec, "execution").dialing("control");
    if podman {
        env::ee_image();
        spec = spec.in_podman();
    }
    let mut mesh = Mesh::start(&[NodeSpec::new("control", "control").listening(), spec]);
    mesh.wait_routable("control", &[exec]);
    mesh.start_coordinator_with("control", COORDINATOR);
    mesh.wait_discovered(&["control", exec]);
    api::wait_ready(&mesh, exec);
    mesh
}

fn upload_sleepy(mesh: &Mesh) -> String {
    let project = mesh.dir().join("project");
    std::fs::create_dir_all(&project).unwrap();
    std::fs::write(project.join("sleepy.yml"), SLEEPY).unwrap();
    api::upload_project(mesh, &project)
}

/// Containers (any state) carrying `label`.
fn containers(label: &str) -> Vec<String> {
    let out = Command::new("podman")
        .env("CONTAINERS_CONF", env::containers_conf())
        .args([
            "ps",
            "--all",
            "--format={{.ID}}",
            &format!("--filter=label={label}"),
        ])
        .output()
        .expect("podman ps");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

/// A job of any kind as the API shows it under `collection`.
fn row(mesh: &Mesh, collection: &str, id: i64) -> Value {
    let (status, v) = api::get(mesh, &format!("/api/v2/{collection}/{id}/"));
    assert_eq!(status, StatusCode::OK, "{collection} {id}: {v:#}");
    v
}

fn is_final(v: &Value) -> bool {
    matches!(
        v["status"].as_str(),
        Some("successful" | "failed" | "error" | "canceled")
    )
}

/// Waits until the job runs and its unit on the execution node has started a process whose
/// command line contains `marker`; returns (controller unit, execution-node unit).
fn wait_running(mesh: &Mesh, collection: &str, id: i64, marker: &str) -> (String, String) {
    let job = eventually(
        &format!("{collection} {id} to run"),
        Duration::from_secs(120),
        || {
            let v = row(mesh, collection, id);
            assert!(
                !is_final(&v),
                "{collection} {id} ended before the cancel: {v:#}\n{}",
                mesh.coordinator_log()
            );
            (v["status"] == "running").then_some(v)
        },
    );
    let unit = job["work_unit_id"].as_str().expect("unit id").to_string();
    let remote = eventually(
        &format!("unit {unit}'s id on the execution node"),
        Duration::from_secs(60),
        || {
            mesh.unit_status("control", &unit).extra_data["RemoteUnitID"]
                .as_str()
                .filter(|u| !u.is_empty())
                .map(str::to_string)
        },
    );
    eventually(
        &format!("a process of unit {remote} running {marker:?}"),
        Duration::from_secs(120),
        || {
            procs::with_env("MESHRUN_UNIT_ID", &remote)
                .iter()
                .any(|(_, cmd)| cmd.contains(marker))
                .then_some(())
        },
    );
    (unit, remote)
}

/// Asserts that nothing of the job is left: no unit on the controller or the execution node,
/// no container labelled with the unit, no process of the unit.
fn assert_nothing_left(mesh: &Mesh, exec: &str, unit: &str, remote: &str) {
    eventually(
        &format!("unit {unit} to be released on control and {remote} on {exec}"),
        Duration::from_secs(30),
        || {
            (!mesh.work_list("control").contains_key(unit)
                && !mesh.work_list(exec).contains_key(remote))
            .then_some(())
        },
    );
    let label = format!("io.meshrun.unit={remote}");
    eventually(
        &format!("no container labelled {label}"),
        Duration::from_secs(30),
        || containers(&label).is_empty().then_some(()),
    );
    eventually(
        &format!("no process of unit {remote}"),
        Duration::from_secs(30),
        || {
            let left = procs::with_env("MESHRUN_UNIT_ID", remote);
            left.is_empty().then_some(()).or_else(|| {
                eprintln!("still running for {remote}: {left:?}");
                None
            })
        },
    );
}

/// Waits for the job to end and returns it with the time since `t0`.
fn wait_end(mesh: &Mesh, collection: &str, id: i64, t0: Instant) -> (Value, Duration) {
    let v = eventually(
        &format!("{collection} {id} to end after the cancel"),
        Duration::from_secs(90),
        || Some(row(mesh, collection, id)).filter(is_final),
    );
    (v, t0.elapsed())
}

fn describe(mesh: &Mesh, out: &std::process::Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}\n--- coordinator log\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        mesh.coordinator_log()
    )
}

#[test]
fn a_playbook_canceled_mid_run_in_podman_ends_canceled_and_leaves_nothing() {
    let exec = "cancel-pod";
    let mesh = mesh(exec, true);
    let sha = upload_sleepy(&mesh);
    let body = json!({
        "project": sha, "playbook": "sleepy.yml", "inventory": INVENTORY, "execution_node": exec,
    });

    // Through the API.
    let id = api::submit_job(&mesh, &body);
    let (unit, remote) = wait_running(&mesh, "jobs", id, "sleep 120");
    assert!(
        !containers(&format!("io.meshrun.unit={remote}")).is_empty(),
        "the job runs in a container"
    );
    let (status, can) = api::get(&mesh, &format!("/api/v2/jobs/{id}/cancel/"));
    assert_eq!(
        (status, &can),
        (StatusCode::OK, &json!({"can_cancel": true}))
    );
    let t0 = Instant::now();
    let (status, accepted) = api::post(&mesh, &format!("/api/v2/jobs/{id}/cancel/"), &json!({}));
    assert_eq!(status, StatusCode::ACCEPTED, "{accepted:#}");
    assert_eq!(accepted["cancel_flag"], true, "{accepted:#}");
    let (job, took) = wait_end(&mesh, "jobs", id, t0);
    eprintln!("cancel->canceled podman api: {:.2} s", took.as_secs_f64());
    assert_eq!(
        job["status"],
        "canceled",
        "{job:#}\n{}",
        mesh.coordinator_log()
    );
    assert!(job["finished"].is_string(), "{job:#}");
    assert!(
        api::job_stdout(&mesh, id).contains("started"),
        "the output before the cancel is kept"
    );
    assert_nothing_left(&mesh, exec, &unit, &remote);

    // An ended job cannot be canceled.
    let (status, can) = api::get(&mesh, &format!("/api/v2/jobs/{id}/cancel/"));
    assert_eq!(
        (status, &can),
        (StatusCode::OK, &json!({"can_cancel": false}))
    );
    let (status, refused) = api::post(&mesh, &format!("/api/v2/jobs/{id}/cancel/"), &json!({}));
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{refused:#}");
    assert!(
        refused["detail"]
            .as_str()
            .is_some_and(|d| d.contains("already ended (canceled)")),
        "{refused:#}"
    );

    // Through the CLI, waiting for the end.
    let id = api::submit_job(&mesh, &body);
    let (unit, remote) = wait_running(&mesh, "jobs", id, "sleep 120");
    let t0 = Instant::now();
    let out = mesh.meshrun(&["job", "cancel", &id.to_string(), "--wait", "90"]);
    let took = t0.elapsed();
    eprintln!("cancel->canceled podman cli: {:.2} s", took.as_secs_f64());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains(&format!("job {id} ended canceled")),
        "{}",
        describe(&mesh, &out)
    );
    assert_eq!(api::job(&mesh, id)["status"], "canceled");
    assert_nothing_left(&mesh, exec, &unit, &remote);
}

#[test]
fn a_pending_job_an_ad_hoc_command_and_an_ended_job() {
    let exec = "cancel-host";
    let mesh = mesh(exec, false);
    let sha = upload_sleepy(&mesh);

    // Pending (its group has no member): canceled at once, never submitted.
    api::create_group(&mesh, "nobody", 0, 0);
    let pending = api::submit_job(
        &mesh,
        &json!({"project": sha, "playbook": "sleepy.yml", "inventory": INVENTORY, "instance_group": "nobody"}),
    );
    api::wait_job(
        &mesh,
        pending,
        "explained as pending",
        Duration::from_secs(30),
        |j| {
            j["status"] == "pending" && j["job_explanation"].as_str().is_some_and(|e| !e.is_empty())
        },
    );
    let t0 = Instant::now();
    let (status, answer) = api::post(
        &mesh,
        &format!("/api/v2/jobs/{pending}/cancel/"),
        &json!({}),
    );
    eprintln!(
        "cancel->canceled pending: {:.3} s",
        t0.elapsed().as_secs_f64()
    );
    assert_eq!(status, StatusCode::ACCEPTED, "{answer:#}");
    assert_eq!(
        answer["status"], "canceled",
        "ended in the request: {answer:#}"
    );
    // Let the scheduler run a few cycles: the job stays canceled and is never submitted.
    std::thread::sleep(Duration::from_secs(6));
    let job = api::job(&mesh, pending);
    assert_eq!(job["status"], "canceled", "{job:#}");
    assert!(
        job["work_unit_id"].is_null() && job["started"].is_null(),
        "{job:#}"
    );
    assert!(
        !mesh
            .work_list("control")
            .values()
            .any(|u| u.remote_param("meshrun_job") == Some(&pending.to_string())),
        "no unit was submitted for job {pending}"
    );

    // An ad hoc command (host mode), through `meshrun jobs cancel`.
    let (status, created) = api::post(
        &mesh,
        "/api/v2/ad_hoc_commands/",
        &json!({
            "inventory": INVENTORY, "module_name": "command", "module_args": "sleep 121",
            "execution_node": exec,
        }),
    );
    assert_eq!(status, StatusCode::CREATED, "{created:#}");
    let adhoc = created["id"].as_i64().expect("id");
    let (unit, remote) = wait_running(&mesh, "ad_hoc_commands", adhoc, "sleep 121");
    let t0 = Instant::now();
    let out = mesh.meshrun(&["jobs", "cancel", &adhoc.to_string(), "--wait", "90"]);
    eprintln!(
        "cancel->canceled ad hoc host cli: {:.2} s",
        t0.elapsed().as_secs_f64()
    );
    assert!(
        out.status.success()
            && String::from_utf8_lossy(&out.stdout)
                .contains(&format!("ad hoc command {adhoc} ended canceled")),
        "{}",
        describe(&mesh, &out)
    );
    assert_nothing_left(&mesh, exec, &unit, &remote);

    // Ended jobs are refused, under their own collection only.
    let (status, refused) = api::post(
        &mesh,
        &format!("/api/v2/ad_hoc_commands/{adhoc}/cancel/"),
        &json!({}),
    );
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{refused:#}");
    let (status, _) = api::get(&mesh, &format!("/api/v2/jobs/{adhoc}/cancel/"));
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "an ad hoc command is not a job"
    );
    let out = mesh.meshrun(&["job", "cancel", &pending.to_string()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("405") && stderr.contains("already ended"),
        "{}",
        describe(&mesh, &out)
    );
}

/// Submits a unit of `worktype` to `node` through the control node's socket with the extra
/// keys `extra`, and returns its id there.
fn submit_tagged(
    mesh: &Mesh,
    node: &str,
    params: &str,
    extra: &[(&str, String)],
    payload: &[u8],
) -> String {
    block_on(async {
        let c = ControlClient::connect_unix(&mesh.nodes["control"].socket).await?;
        let mut req = SubmitRequest::new(node, "ansible-runner");
        req.params = Some(params.to_string());
        req.tlsclient = mesh.tls_client_for("control", node);
        req.ttl = Some("60s".into());
        req.extra = extra
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect::<BTreeMap<_, _>>();
        let mut session = c.work_submit(&req).await?;
        session.write_all(payload).await?;
        session.finish().await
    })
    .unwrap_or_else(|e| panic!("submit to {node}: {e}"))
    .unit_id
}

/// The unit's id on its execution node, once it was started there.
fn remote_id(mesh: &Mesh, unit: &str) -> String {
    eventually(
        &format!("unit {unit} to start remotely"),
        Duration::from_secs(60),
        || {
            mesh.unit_status("control", unit).extra_data["RemoteUnitID"]
                .as_str()
                .filter(|u| !u.is_empty())
                .map(str::to_string)
        },
    )
}

/// `name{labels} value` from the coordinator's /metrics.
fn metric(mesh: &Mesh, series: &str) -> f64 {
    let (_, text) = meshrun_tests::api::get_text(mesh, "/metrics");
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {series} in\n{text}"))
}

#[test]
fn the_reaper_releases_units_no_active_job_needs_and_leaves_foreign_ones() {
    let exec = "reap-exec";
    let mut mesh = Mesh::start(&[
        NodeSpec::new("control", "control").listening(),
        NodeSpec::new(exec, "execution").dialing("control"),
    ]);
    mesh.wait_routable("control", &[exec]);
    // Ended health-check units are left to their check for the check timeout.
    mesh.start_coordinator_with(
        "control",
        "[discovery]\nhealth_check_timeout_secs = 8\n\n[reaper]\ninterval_secs = 2\n",
    );
    mesh.wait_discovered(&["control", exec]);
    let sha = upload_sleepy(&mesh);
    api::create_group(&mesh, "nobody", 0, 0);
    let job_body = json!({"project": sha, "playbook": "sleepy.yml", "inventory": INVENTORY, "instance_group": "nobody"});
    let ended = api::submit_job(&mesh, &job_body);
    let (status, _) = api::post(&mesh, &format!("/api/v2/jobs/{ended}/cancel/"), &json!({}));
    assert_eq!(status, StatusCode::ACCEPTED);
    let active = api::submit_job(&mesh, &job_body);

    // Units as a crashed coordinator, another coordinator or a person may have left them.
    let job_params = |id: i64| format!("--private-data-dir=/tmp/meshrun_{id}_deadbeef --delete");
    let of_ended = submit_tagged(
        &mesh,
        exec,
        &job_params(ended),
        &[("meshrun_job", ended.to_string())],
        b"",
    );
    let of_unknown = submit_tagged(
        &mesh,
        exec,
        &job_params(999_999),
        &[("meshrun_job", "999999".into())],
        b"",
    );
    let check = submit_tagged(
        &mesh,
        exec,
        "--worker-info",
        &[("meshrun_health_check", exec.to_string())],
        b"",
    );
    let of_active = submit_tagged(
        &mesh,
        exec,
        &job_params(active),
        &[("meshrun_job", active.to_string())],
        b"",
    );
    let foreign = submit_tagged(&mesh, exec, "--worker-info", &[], b"");
    let remote: BTreeMap<&str, String> = [&of_ended, &of_unknown, &check, &of_active, &foreign]
        .into_iter()
        .map(|u| (u.as_str(), remote_id(&mesh, u)))
        .collect();

    let t0 = Instant::now();
    eventually(
        "the reaper to release the units of the ended job, the unknown job and the check",
        Duration::from_secs(90),
        || {
            let list = mesh.work_list("control");
            (![&of_ended, &of_unknown, &check]
                .iter()
                .any(|u| list.contains_key(*u)))
            .then_some(())
        },
    );
    eprintln!(
        "reaper released the three units within {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    // Several more passes: the active job's unit and the foreign one stay.
    std::thread::sleep(Duration::from_secs(8));
    let list = mesh.work_list("control");
    assert!(
        list.contains_key(&of_active),
        "unit of active job {active} kept"
    );
    assert!(list.contains_key(&foreign), "foreign unit kept");
    eventually(
        "the released units to be gone from the execution node too",
        Duration::from_secs(30),
        || {
            let on_exec = mesh.work_list(exec);
            (![&of_ended, &of_unknown, &check]
                .iter()
                .any(|u| on_exec.contains_key(&remote[u.as_str()])))
            .then_some(())
        },
    );

    // Once its job has ended, the unit goes too.
    let (status, _) = api::post(&mesh, &format!("/api/v2/jobs/{active}/cancel/"), &json!({}));
    assert_eq!(status, StatusCode::ACCEPTED);
    eventually(
        "the reaper to release the unit of the job that just ended",
        Duration::from_secs(30),
        || (!mesh.work_list("control").contains_key(&of_active)).then_some(()),
    );
    assert!(mesh.work_list("control").contains_key(&foreign));

    let log = mesh.coordinator_log();
    let foreign_notes = log
        .lines()
        .filter(|l| l.contains(foreign.as_str()) && l.contains("not submitted by meshrun"))
        .count();
    assert_eq!(foreign_notes, 1, "the foreign unit is logged once:\n{log}");
    assert!(
        metric(
            &mesh,
            "meshrun_reaper_released_units_total{reason=\"ended_job\"}"
        ) >= 2.0
    );
    assert!(
        metric(
            &mesh,
            "meshrun_reaper_released_units_total{reason=\"unknown_job\"}"
        ) >= 1.0
    );
    assert!(
        metric(
            &mesh,
            "meshrun_reaper_released_units_total{reason=\"health_check\"}"
        ) >= 1.0
    );

    mesh.release("control", &foreign);
}
