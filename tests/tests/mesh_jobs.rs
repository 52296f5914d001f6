//! Jobs through a real 4-node receptor mesh (control ← hop ← exec1, exec2), submitted by the
//! real coordinator and run by meshrun-agent with the real ansible-runner.

use std::time::Duration;

use meshrun_tests::env;
use meshrun_tests::mesh::Mesh;
use meshrun_tests::wait::eventually;
use serde_json::Value;

fn demo_project() -> String {
    env::repo_root()
        .join("packaging/demo/project")
        .display()
        .to_string()
}

fn demo_inventory() -> String {
    env::repo_root()
        .join("packaging/demo/inventory.ini")
        .display()
        .to_string()
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

/// `meshrun job run <project> <playbook> -i <demo inventory> --node <node> [--follow]`.
fn job_run(
    mesh: &Mesh,
    project: &str,
    playbook: &str,
    node: &str,
    follow: bool,
) -> std::process::Output {
    let inventory = demo_inventory();
    let mut args = vec![
        "job", "run", project, playbook, "-i", &inventory, "--node", node,
    ];
    if follow {
        args.push("--follow");
    }
    mesh.meshrun(&args)
}

fn all_events(mesh: &Mesh, id: i64) -> Vec<Value> {
    let page = mesh.get(&format!("/api/v2/jobs/{id}/job_events/?page_size=200"));
    page["results"].as_array().cloned().unwrap_or_default()
}

#[test]
fn a_job_runs_through_the_hop_and_reports_where_it_ran() {
    let mesh = Mesh::demo();
    let out = job_run(&mesh, &demo_project(), "hello.yml", "exec2", true);
    assert!(out.status.success(), "{}", describe(&mesh, &out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    // The playbook prints MESHRUN_NODE_ID from inside the job.
    assert!(
        stdout.contains("hello from execution node exec2"),
        "{}",
        describe(&mesh, &out)
    );

    let job = mesh.get("/api/v2/jobs/1/");
    assert_eq!(job["status"], "successful", "{job:#}");
    assert_eq!(job["controller_node"], "control");
    assert_eq!(job["execution_node"], "exec2");
    assert_eq!(job["execution_route"], "control -> hop -> exec2");
    assert_eq!(job["rc"], 0);
    assert!(job["work_unit_id"].as_str().is_some_and(|u| !u.is_empty()));

    let events = all_events(&mesh, 1);
    let counters: Vec<i64> = events
        .iter()
        .filter_map(|e| e["counter"].as_i64())
        .collect();
    assert!(counters.len() >= 8, "too few events: {counters:?}");
    assert_eq!(
        counters,
        (1..=counters.len() as i64).collect::<Vec<_>>(),
        "every event exactly once, in order"
    );
    assert!(events.iter().any(|e| e["event"] == "playbook_on_stats"));

    let (_, text) = meshrun_tests::api::get_text(&mesh, "/api/v2/jobs/1/stdout/?format=txt");
    assert!(text.contains("hello from execution node exec2"), "{text}");

    // The artifacts are kept as tar + zstd: the worker's rc, status and stdout.
    let archive = meshrun_tests::api::client(&mesh)
        .get(format!("{}/api/v2/jobs/1/artifacts/", mesh.api()))
        .send()
        .and_then(|r| r.error_for_status())
        .and_then(|r| r.bytes())
        .expect("artifacts");
    let unpacked = mesh.dir().join("artifacts-1");
    meshrun_coordinator::project_archive::unpack(
        &archive[..],
        &unpacked,
        &meshrun_coordinator::project_archive::UnpackLimits::default(),
    )
    .expect("artifacts unpack");
    assert_eq!(
        std::fs::read_to_string(unpacked.join("rc")).unwrap().trim(),
        "0"
    );
    assert_eq!(
        std::fs::read_to_string(unpacked.join("status"))
            .unwrap()
            .trim(),
        "successful"
    );

    // The unit is released on both ends.
    eventually("units to be released", Duration::from_secs(20), || {
        (mesh.work_list("control").is_empty() && mesh.work_list("exec2").is_empty()).then_some(())
    });
}

#[test]
fn a_failing_playbook_ends_failed_with_its_output() {
    let mesh = Mesh::demo();
    let project = mesh.dir().join("failing-project");
    std::fs::create_dir_all(&project).unwrap();
    std::fs::write(
        project.join("fail.yml"),
        "- hosts: all\n  gather_facts: false\n  tasks:\n    - name: this fails\n      ansible.builtin.command: /bin/false\n",
    )
    .unwrap();
    let out = job_run(
        &mesh,
        &project.display().to_string(),
        "fail.yml",
        "exec1",
        true,
    );
    assert_eq!(out.status.code(), Some(1), "{}", describe(&mesh, &out));
    let job = mesh.get("/api/v2/jobs/1/");
    assert_eq!(job["status"], "failed", "{job:#}");
    assert_eq!(job["execution_node"], "exec1");
    assert_eq!(job["rc"], 2);
    let events = all_events(&mesh, 1);
    assert!(
        events.iter().any(|e| e["event"] == "runner_on_failed"),
        "the failed task's event came back: {events:#?}"
    );
}

#[test]
fn a_job_for_a_node_not_in_the_mesh_stays_pending_and_says_why() {
    let mesh = Mesh::demo();
    let out = job_run(&mesh, &demo_project(), "hello.yml", "exec9", false);
    assert!(out.status.success(), "{}", describe(&mesh, &out));
    let job = eventually("the scheduler to explain", Duration::from_secs(20), || {
        let job = mesh.get("/api/v2/jobs/1/");
        job["job_explanation"]
            .as_str()
            .is_some_and(|e| e.contains("requested node exec9"))
            .then_some(job)
    });
    assert_eq!(job["status"], "pending", "{job:#}");
    assert!(
        job["job_explanation"]
            .as_str()
            .unwrap()
            .contains("is not a ready, enabled execution or hybrid node"),
        "{job:#}"
    );
    // Nothing was submitted anywhere.
    assert!(job["work_unit_id"].is_null(), "{job:#}");
    assert!(mesh.work_list("control").is_empty());
}

#[test]
fn bad_job_requests_are_refused_with_a_message() {
    let mesh = Mesh::demo();
    let bad_node = job_run(&mesh, &demo_project(), "hello.yml", "bad node", false);
    assert!(!bad_node.status.success());
    let err = String::from_utf8_lossy(&bad_node.stderr);
    assert!(
        err.contains("400") && err.contains("execution_node"),
        "{err}"
    );
    let missing = job_run(&mesh, &demo_project(), "nope.yml", "exec1", false);
    let err = String::from_utf8_lossy(&missing.stderr);
    assert!(
        err.contains("\"nope.yml\" is not a file of the project archive"),
        "{err}"
    );
    let jobs = mesh.get("/api/v2/jobs/");
    assert_eq!(jobs["count"], 0, "refused jobs are not stored: {jobs:#}");
}
