//! Stored inventories refreshed by inventory updates: `ansible-inventory` runs against a script
//! in a project on a real execution node (through the real receptor mesh and ansible-runner),
//! its JSON comes back in the artifacts and replaces the inventory's hosts; failed updates leave
//! the hosts alone; jobs name the inventory by id.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use meshrun_coordinator::inventories;
use meshrun_tests::api::{self, get, post};
use meshrun_tests::env;
use meshrun_tests::mesh::{Mesh, NodeSpec};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// Prints `web1` and `web2` (local connection) in group `web` with a group variable.
const GOOD_SCRIPT: &str = r#"#!/usr/bin/env python3
import json, sys
if "--host" in sys.argv:
    print("{}")
    sys.exit(0)
local = {"ansible_connection": "local",
         "ansible_python_interpreter": "{{ ansible_playbook_python }}"}
print(json.dumps({
    "web": {"hosts": ["web1", "web2"], "vars": {"greeting": "hello-from-group"}},
    "_meta": {"hostvars": {"web1": dict(local, role="primary"), "web2": local}},
}))
"#;

const FAILING_SCRIPT: &str = "#!/bin/sh\necho 'the cloud is down' >&2\nexit 1\n";

const GARBAGE_SCRIPT: &str = "#!/bin/sh\necho '{\"web\": {\"hosts\": [1, 2'\n";

/// Valid for ansible, refused by the import: a host name with a space.
const HOSTILE_SCRIPT: &str = r#"#!/bin/sh
echo '{"web": {"hosts": ["good", "bad host"]}, "_meta": {"hostvars": {}}}'
"#;

const PLAYBOOK: &str = "- hosts: web\n  gather_facts: false\n  tasks:\n    - ansible.builtin.debug:\n        msg: \"{{ inventory_hostname }} says {{ greeting }} as {{ role | default('secondary') }}\"\n";

fn write_exec(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// A project with the scripts and a playbook; returns its uploaded sha256.
fn project(mesh: &Mesh) -> String {
    let dir = mesh.dir().join("inventory-project");
    write_exec(&dir.join("inv/hosts.py"), GOOD_SCRIPT);
    write_exec(&dir.join("inv/fail.sh"), FAILING_SCRIPT);
    write_exec(&dir.join("inv/garbage.sh"), GARBAGE_SCRIPT);
    write_exec(&dir.join("inv/hostile.sh"), HOSTILE_SCRIPT);
    std::fs::write(dir.join("show.yml"), PLAYBOOK).unwrap();
    api::upload_project(mesh, &dir)
}

fn create_inventory(mesh: &Mesh, body: &Value) -> i64 {
    let (status, inv) = post(mesh, "/api/v2/inventories/", body);
    assert_eq!(status, StatusCode::CREATED, "{body:#}: {inv:#}");
    inv["id"].as_i64().unwrap()
}

/// Starts an update on `node` and waits for it to end.
fn run_update(mesh: &Mesh, inventory: i64, node: &str) -> Value {
    let (status, job) = post(
        mesh,
        &format!("/api/v2/inventories/{inventory}/update/"),
        &json!({ "execution_node": node }),
    );
    assert_eq!(status, StatusCode::CREATED, "{job:#}");
    assert_eq!(job["type"], "inventory_update");
    assert_eq!(job["task_impact"], 1);
    assert_eq!(job["inventory_id"], inventory);
    let id = job["id"].as_i64().unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (status, job) = get(mesh, &format!("/api/v2/inventory_updates/{id}/"));
        assert_eq!(status, StatusCode::OK, "{job:#}");
        if matches!(
            job["status"].as_str(),
            Some("successful" | "failed" | "error" | "canceled")
        ) {
            return job;
        }
        assert!(
            Instant::now() < deadline,
            "inventory update {id} never ended: {job:#}\n--- coordinator log\n{}",
            mesh.coordinator_log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn hosts(mesh: &Mesh, inventory: i64) -> Vec<(String, Value)> {
    let (status, page) = get(mesh, &format!("/api/v2/inventories/{inventory}/hosts/"));
    assert_eq!(status, StatusCode::OK, "{page:#}");
    page["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            let vars: Value = serde_json::from_str(h["variables"].as_str().unwrap()).unwrap();
            (h["name"].as_str().unwrap().to_string(), vars)
        })
        .collect()
}

fn host_names(mesh: &Mesh, inventory: i64) -> Vec<String> {
    hosts(mesh, inventory).into_iter().map(|(n, _)| n).collect()
}

fn update_stdout(mesh: &Mesh, id: &Value) -> String {
    meshrun_tests::api::get_text(
        mesh,
        &format!("/api/v2/inventory_updates/{id}/stdout/?format=txt"),
    )
    .1
}

/// The script's hosts arrive, then a job naming the inventory runs against them.
fn update_then_job(mesh: &Mesh, node: &str) {
    let sha = project(mesh);
    let inv = create_inventory(
        mesh,
        &json!({"name": "from-script", "source_project": sha, "source_path": "inv/hosts.py"}),
    );
    assert!(host_names(mesh, inv).is_empty());
    let update = run_update(mesh, inv, node);
    assert_eq!(
        update["status"],
        "successful",
        "{update:#}\n--- stdout\n{}\n--- coordinator log\n{}",
        update_stdout(mesh, &update["id"]),
        mesh.coordinator_log()
    );
    assert_eq!(update["execution_node"], node);
    let imported = hosts(mesh, inv);
    assert_eq!(
        imported.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
        ["web1", "web2"]
    );
    assert_eq!(imported[0].1["ansible_connection"], "local");
    assert_eq!(imported[0].1["role"], "primary");
    let (_, detail) = get(mesh, &format!("/api/v2/inventories/{inv}/"));
    assert_eq!(detail["total_hosts"], 2, "{detail:#}");
    assert_eq!(detail["total_groups"], 1, "{detail:#}");
    assert_eq!(detail["last_update_id"], update["id"], "{detail:#}");
    let (_, listed) = get(mesh, "/api/v2/inventory_updates/");
    assert_eq!(listed["count"], 1, "{listed:#}");
    assert_eq!(listed["results"][0]["id"], update["id"]);

    // A job naming the inventory: rendered at create time, two hosts counted.
    let job = api::submit_job(
        mesh,
        &json!({"project": sha, "playbook": "show.yml", "inventory_id": inv, "execution_node": node}),
    );
    let created = api::job(mesh, job);
    assert_eq!(created["inventory_id"], inv, "{created:#}");
    assert_eq!(created["host_count"], 2, "{created:#}");
    assert_eq!(
        created["task_impact"], 3,
        "min(2 hosts, 5 forks) + 1: {created:#}"
    );
    let done = api::wait_job_end(mesh, job);
    let stdout = api::job_stdout(mesh, job);
    assert_eq!(done["status"], "successful", "{done:#}\n{stdout}");
    assert!(
        stdout.contains("web1 says hello-from-group as primary"),
        "{stdout}"
    );
    assert!(
        stdout.contains("web2 says hello-from-group as secondary"),
        "{stdout}"
    );

    // An ad hoc command naming the inventory runs against its hosts too.
    let (code, adhoc) = post(
        mesh,
        "/api/v2/ad_hoc_commands/",
        &json!({"inventory_id": inv, "module_name": "ping", "execution_node": node}),
    );
    assert_eq!(code, StatusCode::CREATED, "{adhoc:#}");
    assert_eq!(adhoc["inventory_id"], inv, "{adhoc:#}");
    assert_eq!(adhoc["host_count"], 2, "{adhoc:#}");
    let path = format!("/api/v2/ad_hoc_commands/{}/", adhoc["id"]);
    let deadline = Instant::now() + Duration::from_secs(120);
    let done = loop {
        let (_, now) = get(mesh, &path);
        if matches!(
            now["status"].as_str(),
            Some("successful" | "failed" | "error" | "canceled")
        ) {
            break now;
        }
        assert!(
            Instant::now() < deadline,
            "ad hoc command never ended: {now:#}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let (_, out) = get(mesh, &format!("{path}stdout/?format=json"));
    let out = out["content"].as_str().unwrap_or_default().to_string();
    assert_eq!(done["status"], "successful", "{done:#}\n{out}");
    for host in ["web1", "web2"] {
        assert!(out.contains(&format!("{host} | SUCCESS")), "{out}");
    }
}

#[test]
fn an_update_imports_a_scripts_hosts_and_a_job_runs_against_them() {
    let mesh = Mesh::demo();
    update_then_job(&mesh, "exec2");
}

#[test]
fn an_update_runs_in_an_execution_environment_too() {
    env::ee_image();
    let mut mesh = Mesh::start(&[
        NodeSpec::new("control", "control").listening(),
        NodeSpec::new("invpod", "execution")
            .dialing("control")
            .in_podman(),
    ]);
    mesh.wait_routable("control", &["invpod"]);
    mesh.start_coordinator("control");
    mesh.wait_discovered(&["control", "invpod"]);
    update_then_job(&mesh, "invpod");
}

#[test]
fn failed_updates_leave_the_hosts_alone() {
    let mesh = Mesh::demo();
    let sha = project(&mesh);
    let initial = json!({"old": {"hosts": ["old1", "old2"], "vars": {"v": 1}}});
    for (name, source, want) in [
        ("failing", "inv/fail.sh", "failed"),
        ("garbage", "inv/garbage.sh", "failed"),
        ("hostile", "inv/hostile.sh", "error"),
    ] {
        let inv = create_inventory(
            &mesh,
            &json!({"name": name, "source_project": sha, "source_path": source, "content": initial}),
        );
        assert_eq!(host_names(&mesh, inv), ["old1", "old2"]);
        let update = run_update(&mesh, inv, "exec1");
        assert_eq!(
            update["status"],
            want,
            "{source}: {update:#}\n--- stdout\n{}",
            update_stdout(&mesh, &update["id"])
        );
        if want == "error" {
            let why = update["job_explanation"].as_str().unwrap_or_default();
            assert!(why.contains("bad host"), "{why}");
            assert!(why.contains("unchanged"), "{why}");
        }
        assert_eq!(host_names(&mesh, inv), ["old1", "old2"], "{source}");
        let (_, detail) = get(&mesh, &format!("/api/v2/inventories/{inv}/"));
        assert_eq!(detail["total_groups"], 1, "{detail:#}");
        assert!(detail["last_update_id"].is_null(), "{detail:#}");
    }
    // The failing script's stderr is in the update's output.
    let (_, listed) = get(&mesh, "/api/v2/inventory_updates/?order_by=id");
    let first = &listed["results"][0];
    assert!(
        update_stdout(&mesh, &first["id"]).contains("the cloud is down"),
        "{}",
        update_stdout(&mesh, &first["id"])
    );
}

#[test]
fn hostile_inventory_requests_are_refused() {
    let mesh = Mesh::demo();
    let sha = project(&mesh);
    let refused = |body: Value, why: &str| {
        let (status, answer) = post(&mesh, "/api/v2/inventories/", &body);
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body:#}: {answer:#}");
        let detail = answer["detail"].as_str().unwrap_or_default();
        assert!(detail.contains(why), "{body:#}: {detail}");
    };
    refused(
        json!({"name": "a", "source_project": sha, "source_path": "../etc/passwd"}),
        "without '..'",
    );
    refused(
        json!({"name": "a", "source_project": sha, "source_path": "/etc/passwd"}),
        "without '..'",
    );
    refused(
        json!({"name": "a", "source_project": sha, "source_path": "inv"}),
        "not a file",
    );
    refused(
        json!({"name": "a", "source_project": sha, "source_path": "nope.py"}),
        "not a file",
    );
    refused(
        json!({"name": "a", "source_project": "0".repeat(64), "source_path": "x"}),
        "no project archive",
    );
    refused(
        json!({"name": "a", "source_path": "inv/hosts.py"}),
        "give both or neither",
    );
    refused(json!({"name": "", "content": {}}), "name must be");
    refused(
        json!({"name": "a", "content": {"g": {"hosts": ["x y"]}}}),
        "invalid host name",
    );
    refused(json!({"name": "a", "content": [1]}), "top level");
    refused(json!({"name": "a", "surprise": 1}), "unknown field");

    let static_inv = create_inventory(
        &mesh,
        &json!({"name": "static", "variables": "{\"x\": 1}", "content": {"g": {"hosts": ["h1"]}}}),
    );
    refused(json!({"name": "static"}), "already exists");
    let (status, answer) = post(
        &mesh,
        &format!("/api/v2/inventories/{static_inv}/update/"),
        &json!({}),
    );
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer:#}");
    let (status, _) = post(&mesh, "/api/v2/inventories/999/update/", &json!({}));
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = get(&mesh, "/api/v2/inventories/999/hosts/");
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Jobs take exactly one of inventory text and inventory_id.
    for (body, why) in [
        (
            json!({"project": sha, "playbook": "show.yml"}),
            "exactly one",
        ),
        (
            json!({"project": sha, "playbook": "show.yml", "inventory": "localhost\n", "inventory_id": static_inv}),
            "exactly one",
        ),
        (
            json!({"project": sha, "playbook": "show.yml", "inventory_id": 999}),
            "no inventory 999",
        ),
    ] {
        let (status, answer) = post(&mesh, "/api/v2/jobs/", &body);
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body:#}: {answer:#}");
        assert!(
            answer["detail"].as_str().unwrap_or_default().contains(why),
            "{answer:#}"
        );
    }
    let (_, list) = get(&mesh, "/api/v2/inventories/");
    assert_eq!(list["count"], 1, "{list:#}");
    assert_eq!(list["results"][0]["total_hosts"], 1);
    assert_eq!(list["results"][0]["variables"], "{\"x\":1}");
}

#[test]
fn the_cli_creates_updates_and_lists_an_inventory() {
    let mesh = Mesh::demo();
    let dir = mesh.dir().join("cli-project");
    write_exec(&dir.join("inv/hosts.py"), GOOD_SCRIPT);
    std::fs::write(dir.join("show.yml"), PLAYBOOK).unwrap();
    let dir_text = dir.display().to_string();
    let out = mesh.meshrun(&[
        "inventory",
        "create",
        "cli-inv",
        "--project-dir",
        &dir_text,
        "--source",
        "inv/hosts.py",
    ]);
    assert!(out.status.success(), "{out:?}");
    let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let out = mesh.meshrun(&["inventory", "update", &id, "--follow", "--node", "exec1"]);
    assert!(
        out.status.success(),
        "{out:?}\n--- coordinator log\n{}",
        mesh.coordinator_log()
    );
    let out = mesh.meshrun(&["inventory", "hosts", &id]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("web1") && text.contains("web2"), "{text}");
    let out = mesh.meshrun(&["inventory", "list"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("cli-inv"),
        "{out:?}"
    );
    let out = mesh.meshrun(&[
        "job",
        "run",
        &dir_text,
        "show.yml",
        "--inventory-id",
        &id,
        "--node",
        "exec2",
        "--follow",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(stdout.contains("web2 says hello-from-group"), "{stdout}");
}

/// Stored content rendered for a job reads back as the same content with the real
/// `ansible-inventory` (no mesh needed).
#[test]
fn rendered_inventories_read_back_the_same_with_ansible_inventory() {
    let list = json!({
        "_meta": {"hostvars": {
            "web1": {"ansible_connection": "local", "nested": {"a": [1, 2, {"b": null}]}},
            "db.example.com": {"port": 5432},
            "fe80::1": {}
        }},
        "all": {"vars": {"env": "prod", "flag": true}},
        "ungrouped": {"hosts": ["lonely"]},
        "web": {"hosts": ["web1"], "vars": {"greeting": "hi"}, "children": ["canary"]},
        "canary": {"hosts": ["web1"]},
        "dc": {"children": ["web", "db"]},
        "db": {"hosts": ["db.example.com", "fe80::1"], "vars": {"tier": 2}},
        "empty": {}
    });
    let content = inventories::from_list_value(&list).unwrap();
    let rendered = inventories::render(&content);
    assert_eq!(rendered.host_count, 4);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("hosts");
    std::fs::write(&file, &rendered.text).unwrap();
    let out = std::process::Command::new(env::venv().join("bin/ansible-inventory"))
        .arg("-i")
        .arg(&file)
        .args(["--list", "--export"])
        .env("ANSIBLE_INVENTORY_UNPARSED_FAILED", "True")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}\n{}", rendered.text);
    let back = inventories::parse_list(&out.stdout).unwrap();
    assert_eq!(back.hosts, content.hosts);
    assert_eq!(back.variables, content.variables);
    // ansible lists only the groups it knows about; every stored group with members or vars is
    // there unchanged (an empty group has nothing to compare).
    for (name, g) in &content.groups {
        assert_eq!(
            back.groups.get(name).unwrap_or(&Default::default()),
            g,
            "{name}"
        );
    }
}
