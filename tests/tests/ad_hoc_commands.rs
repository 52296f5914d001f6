//! Ad hoc commands on a real mesh (real receptor, real ansible-runner in host mode): `ping` and
//! `command` run once per host the pattern selects, with their events and output stored and
//! listed as `ad_hoc_command` in the unified view only; `meshrun adhoc --follow` exits with the
//! command's result; a module off the allow-list and bad bodies are refused with 400 and leave
//! nothing stored.

use std::path::PathBuf;
use std::time::Duration;

use meshrun_tests::api;
use meshrun_tests::mesh::{Mesh, NodeSpec};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// Two hosts in `targets` (both the execution node itself, through the local connection), and
/// one outside the pattern the tests use, which must never be contacted.
const INVENTORY: &str = "\
[targets]
localhost ansible_connection=local ansible_python_interpreter=\"{{ ansible_playbook_python }}\"
second ansible_connection=local ansible_python_interpreter=\"{{ ansible_playbook_python }}\"

[others]
elsewhere ansible_connection=local ansible_python_interpreter=\"{{ ansible_playbook_python }}\"
";

/// control (listens, runs the coordinator) ← exec1, discovered and ready.
fn mesh() -> Mesh {
    let mut mesh = Mesh::start(&[NodeSpec::new("control", "control").listening()]);
    mesh.add_node(&NodeSpec::new("exec1", "execution").dialing("control"));
    mesh.wait_routable("control", &["exec1"]);
    mesh.start_coordinator("control");
    mesh.wait_discovered(&["control", "exec1"]);
    api::wait_ready(&mesh, "exec1");
    mesh
}

fn inventory_file(mesh: &Mesh) -> PathBuf {
    let p = mesh.dir().join("adhoc-inventory.ini");
    std::fs::write(&p, INVENTORY).expect("inventory file");
    p
}

fn ad_hoc(mesh: &Mesh, id: i64) -> Value {
    let (status, v) = api::get(mesh, &format!("/api/v2/ad_hoc_commands/{id}/"));
    assert_eq!(status, StatusCode::OK, "ad hoc command {id}: {v:#}");
    v
}

fn wait_end(mesh: &Mesh, id: i64) -> Value {
    meshrun_tests::wait::eventually(
        &format!("ad hoc command {id} to end"),
        Duration::from_secs(120),
        || {
            let v = ad_hoc(mesh, id);
            matches!(
                v["status"].as_str(),
                Some("successful" | "failed" | "error" | "canceled")
            )
            .then_some(v)
        },
    )
}

/// `text` without ANSI colour sequences (ansible colours its ad hoc output) and with `\n` line
/// ends (the runner's events carry `\r\n`).
fn plain(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            // ESC [ params final-byte
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else if c != '\r' {
            out.push(c);
        }
    }
    out
}

/// The stored output, without colours.
fn stdout(mesh: &Mesh, id: i64) -> String {
    let text = meshrun_tests::api::client(mesh)
        .get(format!(
            "{}/api/v2/ad_hoc_commands/{id}/stdout/?format=txt",
            mesh.api()
        ))
        .send()
        .and_then(|r| r.error_for_status())
        .and_then(|r| r.text())
        .unwrap_or_else(|e| panic!("stdout of ad hoc command {id}: {e}"));
    plain(&text)
}

fn events(mesh: &Mesh, id: i64) -> Vec<Value> {
    let (status, page) = api::get(
        mesh,
        &format!("/api/v2/ad_hoc_commands/{id}/events/?page_size=200"),
    );
    assert_eq!(status, StatusCode::OK, "events of {id}: {page:#}");
    page["results"].as_array().cloned().unwrap_or_default()
}

/// The hosts of `event` events, sorted.
fn hosts_of(events: &[Value], event: &str) -> Vec<String> {
    let mut hosts: Vec<String> = events
        .iter()
        .filter(|e| e["event"] == event)
        .filter_map(|e| e["event_data"]["host"].as_str().map(str::to_string))
        .collect();
    hosts.sort();
    hosts
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

fn ids(page: &Value) -> Vec<(i64, String)> {
    page["results"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|j| {
            (
                j["id"].as_i64().unwrap_or(-1),
                j["type"].as_str().unwrap_or("?").to_string(),
            )
        })
        .collect()
}

#[test]
fn ping_and_command_run_on_each_host_of_the_pattern() {
    let mesh = mesh();

    // ping, through the API.
    let (status, created) = api::post(
        &mesh,
        "/api/v2/ad_hoc_commands/",
        &json!({
            "inventory": INVENTORY,
            "limit": "targets",
            "module_name": "ping",
            "forks": 2,
        }),
    );
    assert_eq!(status, StatusCode::CREATED, "{created:#}");
    assert_eq!(created["type"], "ad_hoc_command", "{created:#}");
    assert_eq!(created["module_name"], "ping");
    assert_eq!(created["name"], "ping");
    // Three hosts in the inventory, two forks: min(3, 2) + 1, as AWX.
    assert_eq!(created["host_count"], 3, "{created:#}");
    assert_eq!(created["task_impact"], 3, "{created:#}");
    let ping = created["id"].as_i64().expect("id");
    let done = wait_end(&mesh, ping);
    assert_eq!(
        done["status"],
        "successful",
        "{done:#}\n--- coordinator log\n{}",
        mesh.coordinator_log()
    );
    assert_eq!(done["execution_node"], "exec1");
    assert_eq!(done["controller_node"], "control");
    assert_eq!(done["rc"], 0);
    let ev = events(&mesh, ping);
    assert_eq!(
        hosts_of(&ev, "runner_on_ok"),
        ["localhost", "second"],
        "{ev:#?}"
    );
    assert!(hosts_of(&ev, "runner_on_failed").is_empty(), "{ev:#?}");
    let text = stdout(&mesh, ping);
    for host in ["localhost", "second"] {
        assert!(
            text.contains(&format!("{host} | SUCCESS")),
            "{host} missing:\n{text}"
        );
    }
    assert_eq!(text.matches("\"pong\"").count(), 2, "{text}");
    assert!(!text.contains("elsewhere"), "outside the pattern:\n{text}");

    // command, through the CLI, followed live.
    let inventory = inventory_file(&mesh);
    let inv = inventory.display().to_string();
    let out = mesh.meshrun(&[
        "adhoc",
        "targets",
        "-i",
        &inv,
        "-m",
        "command",
        "-a",
        "echo hello-adhoc",
        "--follow",
    ]);
    assert!(out.status.success(), "{}", describe(&mesh, &out));
    let live = plain(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(
        live.matches("hello-adhoc").count(),
        2,
        "{}",
        describe(&mesh, &out)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("ad hoc command") && stderr.contains("successful"),
        "{}",
        describe(&mesh, &out)
    );
    let page = mesh.get("/api/v2/ad_hoc_commands/?order_by=-id");
    let command = page["results"][0]["id"].as_i64().expect("the command's id");
    let done = ad_hoc(&mesh, command);
    assert_eq!(done["status"], "successful", "{done:#}");
    assert_eq!(done["module_args"], "echo hello-adhoc");
    assert_eq!(done["limit"], "targets");
    let ev = events(&mesh, command);
    assert_eq!(
        hosts_of(&ev, "runner_on_ok"),
        ["localhost", "second"],
        "{ev:#?}"
    );
    for e in ev.iter().filter(|e| e["event"] == "runner_on_ok") {
        assert_eq!(e["event_data"]["res"]["stdout"], "hello-adhoc", "{e:#}");
    }
    let text = stdout(&mesh, command);
    for host in ["localhost", "second"] {
        assert!(
            text.contains(&format!("{host} | CHANGED | rc=0 >>\nhello-adhoc")),
            "{host} missing:\n{text}"
        );
    }
    assert!(!text.contains("elsewhere"), "outside the pattern:\n{text}");

    // A command that fails: the CLI exits 1 and the row is failed.
    let out = mesh.meshrun(&[
        "adhoc", "targets", "-i", &inv, "-m", "command", "-a", "false", "--follow",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&mesh, &out));
    let page = mesh.get("/api/v2/ad_hoc_commands/?order_by=-id");
    let failing = page["results"][0]["id"].as_i64().expect("the failing id");
    let done = ad_hoc(&mesh, failing);
    assert_eq!(done["status"], "failed", "{done:#}");
    assert_eq!(
        hosts_of(&events(&mesh, failing), "runner_on_failed").len(),
        2
    );

    // Listed under its own kind and in the unified view, never as a playbook job.
    let own = mesh.get("/api/v2/ad_hoc_commands/");
    assert_eq!(own["count"], 3, "{own:#}");
    let unified = mesh.get("/api/v2/unified_jobs/");
    let mut listed = ids(&unified);
    listed.sort();
    let mut want: Vec<(i64, String)> = [ping, command, failing]
        .into_iter()
        .map(|id| (id, "ad_hoc_command".to_string()))
        .collect();
    want.sort();
    assert_eq!(listed, want, "{unified:#}");
    let typed = mesh.get("/api/v2/unified_jobs/?type=ad_hoc_command");
    assert_eq!(typed["count"], 3, "{typed:#}");
    let jobs = mesh.get("/api/v2/jobs/");
    assert_eq!(jobs["count"], 0, "{jobs:#}");
    let (status, _) = api::get(&mesh, &format!("/api/v2/jobs/{ping}/"));
    assert_eq!(status, StatusCode::NOT_FOUND);

    // `meshrun jobs` shows them.
    let out = mesh.meshrun(&["jobs", "--type", "ad_hoc_command"]);
    assert!(out.status.success(), "{}", describe(&mesh, &out));
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("ad_hoc_command"), "{table}");
}

#[test]
fn refused_modules_and_bad_bodies_store_nothing() {
    let mut mesh = Mesh::start(&[NodeSpec::new("control", "control")]);
    // A list of the config replaces the default one.
    mesh.start_coordinator_with("control", "ad_hoc_commands = [\"ping\", \"command\"]\n");
    let good = json!({ "inventory": INVENTORY, "module_name": "ping" });
    let with = |more: Value| {
        let mut b = good.clone();
        if let (Some(b), Some(m)) = (b.as_object_mut(), more.as_object()) {
            b.extend(m.clone());
        }
        b
    };
    let cases: Vec<(&str, Value, Vec<&str>)> = vec![
        (
            "raw",
            with(json!({ "module_name": "raw", "module_args": "id" })),
            vec![
                "module \"raw\" is not allowed",
                "allowed modules: ping, command",
            ],
        ),
        (
            "script",
            with(json!({ "module_name": "ansible.builtin.script", "module_args": "x.sh" })),
            vec!["\"ansible.builtin.script\" is not allowed", "ping, command"],
        ),
        (
            "shell, in AWX's list but not in this config's",
            with(json!({ "module_name": "shell", "module_args": "id" })),
            vec!["module \"shell\" is not allowed"],
        ),
        (
            "no module_name",
            json!({ "inventory": INVENTORY }),
            vec!["module_name"],
        ),
        (
            "NUL in module_args",
            with(json!({ "module_name": "command", "module_args": "echo a\u{0}b" })),
            vec!["NUL"],
        ),
        (
            "command without args",
            with(json!({ "module_name": "command" })),
            vec!["needs module_args"],
        ),
        (
            "an unknown field",
            with(json!({ "playbook": "site.yml" })),
            vec!["playbook"],
        ),
        (
            "ansible_* extra vars",
            with(json!({ "extra_vars": {"ansible_connection": "ssh"} })),
            vec!["ansible_connection"],
        ),
        (
            "an empty inventory",
            with(json!({ "inventory": " " })),
            vec!["inventory must not be empty"],
        ),
        (
            "a group that does not exist",
            with(json!({ "instance_group": "nope" })),
            vec!["instance_group \"nope\" does not exist"],
        ),
    ];
    for (what, body, wanted) in cases {
        let (status, answer) = api::post(&mesh, "/api/v2/ad_hoc_commands/", &body);
        assert_eq!(status, StatusCode::BAD_REQUEST, "{what}: {answer:#}");
        let detail = answer["detail"].as_str().unwrap_or_default();
        for w in wanted {
            assert!(detail.contains(w), "{what}: {detail:?} should say {w:?}");
        }
        let unified = mesh.get("/api/v2/unified_jobs/");
        assert_eq!(unified["count"], 0, "{what} stored something: {unified:#}");
    }

    // The CLI shows the refusal and fails.
    let inventory = inventory_file(&mesh);
    let out = mesh.meshrun(&[
        "adhoc",
        "all",
        "-i",
        &inventory.display().to_string(),
        "-m",
        "raw",
        "-a",
        "id",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", describe(&mesh, &out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("400") && err.contains("module \"raw\" is not allowed"),
        "{err}"
    );
    assert_eq!(mesh.get("/api/v2/unified_jobs/")["count"], 0);

    // An allowed module is accepted (it stays pending: this mesh has no execution node).
    let (status, created) = api::post(&mesh, "/api/v2/ad_hoc_commands/", &good);
    assert_eq!(status, StatusCode::CREATED, "{created:#}");
    assert_eq!(created["limit"], "all", "{created:#}");
    assert_eq!(created["status"], "pending", "{created:#}");
}
