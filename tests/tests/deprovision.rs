//! Removing a node (`meshrun instances remove`) on a real mesh (real receptor and
//! ansible-runner, host mode):
//! - a job running on the node past the removal deadline ends `canceled` with an explanation
//!   naming the removal, and its unit is released on both ends; while the node drains, a job
//!   pinned to it ends `error` unrun and an unpinned one runs on the other node; the instance
//!   row is then gone, and discovery does not register the node again although its receptor
//!   still runs and stays routable; removing again (CLI, `--wait`) says it is done; the control
//!   node cannot be removed;
//! - a read-only token cannot remove a node (403);
//! - a job that finishes before the deadline ends `successful`, and the removal (CLI `--wait`)
//!   completes right after it with nothing canceled;
//! - a removal survives a coordinator killed before the deadline and started after it: the job
//!   still running is canceled naming the removal, and the node is removed.
//!
//! Times (request to removal) are printed; the only time checked is that the second removal
//! ended before its 120 s deadline.

use std::time::{Duration, Instant};

use meshrun_tests::api;
use meshrun_tests::mesh::{Mesh, NodeSpec, create_api_token};
use meshrun_tests::wait::eventually;
use reqwest::StatusCode;
use serde_json::{Value, json};

const INVENTORY: &str = "localhost ansible_connection=local ansible_python_interpreter=\"{{ ansible_playbook_python }}\"\n";

/// Prints where it runs, then sleeps `nap` seconds.
const SLEEPY: &str = "- hosts: all\n  gather_facts: false\n  tasks:\n\
    \x20   - ansible.builtin.debug:\n        msg: \"started on {{ lookup('ansible.builtin.env', 'MESHRUN_NODE_ID') }}\"\n\
    \x20   - name: nap\n      ansible.builtin.command: \"sleep {{ nap }}\"\n";

const PATIENCE: Duration = Duration::from_secs(180);

/// control (listening, coordinator) ← `execs` (host mode), all discovered and ready.
fn mesh(execs: &[&str]) -> Mesh {
    let mut specs = vec![NodeSpec::new("control", "control").listening()];
    specs.extend(
        execs
            .iter()
            .map(|e| NodeSpec::new(e, "execution").dialing("control")),
    );
    let mut mesh = Mesh::start(&specs);
    mesh.wait_routable("control", execs);
    mesh.start_coordinator_with("control", "[discovery]\nperiod_secs = 1\n");
    let mut all = vec!["control"];
    all.extend(execs);
    mesh.wait_discovered(&all);
    for e in execs {
        api::wait_ready(&mesh, e);
    }
    mesh
}

fn upload(mesh: &Mesh) -> String {
    let project = mesh.dir().join("project");
    std::fs::create_dir_all(&project).unwrap();
    std::fs::write(project.join("sleepy.yml"), SLEEPY).unwrap();
    api::upload_project(mesh, &project)
}

fn sleepy_job(mesh: &Mesh, sha: &str, nap: u32, node: Option<&str>) -> i64 {
    let mut body = json!({
        "project": sha, "playbook": "sleepy.yml", "inventory": INVENTORY,
        "extra_vars": {"nap": nap},
    });
    if let Some(node) = node {
        body["execution_node"] = json!(node);
    }
    api::submit_job(mesh, &body)
}

/// `DELETE path`, with its status.
fn delete(mesh: &Mesh, path: &str) -> (StatusCode, Value) {
    let r = api::client(mesh)
        .delete(format!("{}{path}", mesh.api()))
        .send()
        .unwrap_or_else(|e| panic!("DELETE {path}: {e}"));
    let status = r.status();
    (status, r.json().unwrap_or(Value::Null))
}

/// Waits until job `id` runs on `node` with its unit started there; returns (controller
/// unit, unit on the node).
fn wait_running(mesh: &Mesh, id: i64, node: &str) -> (String, String) {
    let job = api::wait_job(mesh, id, "running", PATIENCE, |j| {
        j["status"] == "running" && j["work_unit_id"].is_string()
    });
    assert_eq!(job["execution_node"], node, "{job:#}");
    let unit = job["work_unit_id"].as_str().unwrap_or_default().to_string();
    let remote = eventually(&format!("unit {unit}'s id on {node}"), PATIENCE, || {
        mesh.unit_status("control", &unit).extra_data["RemoteUnitID"]
            .as_str()
            .filter(|u| !u.is_empty())
            .map(str::to_string)
    });
    (unit, remote)
}

fn assert_released(mesh: &Mesh, node: &str, unit: &str, remote: &str) {
    eventually(
        &format!("unit {unit} released on control and {remote} on {node}"),
        Duration::from_secs(60),
        || {
            (!mesh.work_list("control").contains_key(unit)
                && !mesh.work_list(node).contains_key(remote))
            .then_some(())
        },
    );
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
fn a_job_still_running_at_the_deadline_is_canceled_and_the_node_is_gone_for_good() {
    let (x, y) = ("deprov-x", "deprov-y");
    let mesh = mesh(&[x, y]);
    let sha = upload(&mesh);

    // The control node itself cannot be removed.
    let control = api::instance(&mesh, "control").expect("control registered");
    let (status, refused) = delete(
        &mesh,
        &format!("/api/v2/instances/{}/", control["id"].as_i64().unwrap_or(0)),
    );
    assert_eq!(status, StatusCode::CONFLICT, "{refused:#}");
    assert!(
        refused["detail"]
            .as_str()
            .is_some_and(|d| d.contains("control node") && d.contains("cannot be removed")),
        "{refused:#}"
    );

    let long = sleepy_job(&mesh, &sha, 300, Some(x));
    let (unit, remote) = wait_running(&mesh, long, x);

    let inst = api::instance(&mesh, x).expect("x registered");
    let id = inst["id"].as_i64().expect("id");
    let t0 = Instant::now();
    let (status, answer) = delete(&mesh, &format!("/api/v2/instances/{id}/?deadline=12"));
    assert_eq!(status, StatusCode::ACCEPTED, "{answer:#}");
    assert_eq!(answer["node_state"], "deprovisioning", "{answer:#}");
    assert_eq!(answer["enabled"], false, "{answer:#}");
    assert_eq!(answer["capacity"], 0, "{answer:#}");
    assert!(answer["deprovision"]["deadline"].is_string(), "{answer:#}");
    let (status, bad) = delete(&mesh, &format!("/api/v2/instances/{id}/?deadline=soon"));
    assert_eq!(status, StatusCode::BAD_REQUEST, "{bad:#}");

    // Draining: a job pinned to x never runs; an unpinned one runs on y.
    let pinned = sleepy_job(&mesh, &sha, 1, Some(x));
    let unpinned = sleepy_job(&mesh, &sha, 1, None);
    let pinned_job = api::wait_job_end(&mesh, pinned);
    assert_eq!(pinned_job["status"], "error", "{pinned_job:#}");
    assert!(
        pinned_job["job_explanation"]
            .as_str()
            .is_some_and(|e| e.contains(x) && e.contains("being removed")),
        "{pinned_job:#}"
    );
    assert!(pinned_job["work_unit_id"].is_null(), "{pinned_job:#}");
    let unpinned_job = api::wait_job_end(&mesh, unpinned);
    assert_eq!(unpinned_job["status"], "successful", "{unpinned_job:#}");
    assert_eq!(unpinned_job["execution_node"], y, "{unpinned_job:#}");
    // Still before the deadline: the long job runs on, x is still registered.
    let still = api::job(&mesh, long);
    if t0.elapsed() < Duration::from_secs(10) {
        assert_eq!(still["status"], "running", "{still:#}");
        assert_eq!(
            api::instance(&mesh, x).map(|i| i["node_state"].clone()),
            Some(json!("deprovisioning"))
        );
    }

    // The deadline passes: canceled, naming the removal.
    let ended = api::wait_job(&mesh, long, "ended", PATIENCE, |j| {
        matches!(
            j["status"].as_str(),
            Some("successful" | "failed" | "error" | "canceled")
        )
    });
    eprintln!(
        "removal request -> job canceled: {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    assert_eq!(
        ended["status"],
        "canceled",
        "{ended:#}\n{}",
        mesh.coordinator_log()
    );
    let why = ended["job_explanation"].as_str().unwrap_or_default();
    assert!(
        why.contains(x) && why.contains("being removed") && why.contains("deadline"),
        "{ended:#}"
    );
    assert!(api::job_stdout(&mesh, long).contains("started on"));
    assert_released(&mesh, x, &unit, &remote);

    // The row goes; the jobs keep the node's name.
    eventually(&format!("{x} to be removed"), PATIENCE, || {
        api::instance(&mesh, x).is_none().then_some(())
    });
    eprintln!(
        "removal request -> instance deleted: {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    assert_eq!(api::job(&mesh, long)["execution_node"], x);
    let (status, _) = api::get(&mesh, &format!("/api/v2/instances/{id}/"));
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, removed) = api::get(&mesh, &format!("/api/v2/removed_nodes/?hostname={x}"));
    assert_eq!(removed["count"], 1, "{removed:#}");
    assert_eq!(removed["results"][0]["jobs_canceled"], 1, "{removed:#}");
    assert_eq!(removed["results"][0]["pending_failed"], 1, "{removed:#}");

    // x's receptor still runs and stays routable, but discovery does not take it back.
    std::thread::sleep(Duration::from_secs(6));
    assert!(
        mesh.status("control").routing_table.contains_key(x),
        "x is still in the mesh"
    );
    assert!(api::instance(&mesh, x).is_none(), "x was registered again");
    assert!(
        !mesh
            .work_list("control")
            .values()
            .any(|u| u.remote_node() == Some(x)),
        "no unit of x is left on control"
    );
    let log = mesh.coordinator_log();
    let notes = log
        .lines()
        .filter(|l| l.contains("not registering it again") && l.contains(x))
        .count();
    assert_eq!(notes, 1, "logged once:\n{log}");

    // Removing again is fine and says so.
    let out = mesh.meshrun(&["instances", "remove", x, "--wait"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("already removed"),
        "{}",
        describe(&mesh, &out)
    );
    let out = mesh.meshrun(&["instances", "remove", "control"]);
    assert!(
        !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("cannot be removed"),
        "{}",
        describe(&mesh, &out)
    );
}

#[test]
fn a_job_that_finishes_before_the_deadline_ends_successful() {
    let x = "deprov-done";
    let mesh = mesh(&[x]);
    let sha = upload(&mesh);
    let job = sleepy_job(&mesh, &sha, 8, Some(x));
    let (unit, remote) = wait_running(&mesh, job, x);

    // Removal is for admins.
    let read_only = create_api_token(
        &mesh.nodes["control"].dir.join("coordinator.toml"),
        "read-only",
    );
    let id = api::instance(&mesh, x).expect("registered")["id"].clone();
    let refused = api::client_with(&read_only)
        .delete(format!("{}/api/v2/instances/{id}/", mesh.api()))
        .send()
        .expect("DELETE");
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        api::instance(&mesh, x).map(|i| i["node_state"].clone()),
        Some(json!("ready"))
    );

    let t0 = Instant::now();
    let out = mesh.meshrun(&["instances", "remove", x, "--deadline", "120", "--wait"]);
    let took = t0.elapsed();
    eprintln!(
        "meshrun instances remove --wait: {:.1} s",
        took.as_secs_f64()
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", describe(&mesh, &out));
    assert!(
        stdout.contains("deprovisioning and disabled")
            && stdout.contains(&format!("{x} removed at"))
            && stdout.contains("0 jobs canceled")
            && stdout.contains("instance deleted"),
        "{}",
        describe(&mesh, &out)
    );
    assert!(
        took < Duration::from_secs(120),
        "the removal ends when the job does, not at the deadline"
    );
    let ended = api::job(&mesh, job);
    assert_eq!(ended["status"], "successful", "{ended:#}");
    assert_eq!(ended["execution_node"], x);
    assert_released(&mesh, x, &unit, &remote);
    assert!(api::instance(&mesh, x).is_none());
}

#[test]
fn a_removal_carries_on_after_a_coordinator_restart() {
    let x = "deprov-restart";
    let mut mesh = mesh(&[x]);
    let sha = upload(&mesh);
    let job = sleepy_job(&mesh, &sha, 300, Some(x));
    let (unit, remote) = wait_running(&mesh, job, x);
    let out = mesh.meshrun(&["instances", "remove", x, "--deadline", "8"]);
    assert!(
        out.status.success()
            && String::from_utf8_lossy(&out.stdout).contains("1 job running there may finish"),
        "{}",
        describe(&mesh, &out)
    );
    // Down across the deadline: only the store remembers the removal.
    mesh.kill_coordinator();
    std::thread::sleep(Duration::from_secs(10));
    assert_eq!(
        mesh.read_store(async |s| s.deprovisions().await).len(),
        1,
        "the removal is stored"
    );
    mesh.restart_coordinator();
    let ended = api::wait_job(&mesh, job, "ended", PATIENCE, |j| {
        matches!(
            j["status"].as_str(),
            Some("successful" | "failed" | "error" | "canceled")
        )
    });
    assert_eq!(
        ended["status"],
        "canceled",
        "{ended:#}\n{}",
        mesh.coordinator_logs()
    );
    assert!(
        ended["job_explanation"]
            .as_str()
            .is_some_and(|e| e.contains(x) && e.contains("being removed")),
        "{ended:#}"
    );
    assert_released(&mesh, x, &unit, &remote);
    eventually(&format!("{x} to be removed"), PATIENCE, || {
        api::instance(&mesh, x).is_none().then_some(())
    });
}
