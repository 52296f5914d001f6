//! The instances API, the mesh visualizer, `/metrics` and the `meshrun instances` / `meshrun
//! mesh` commands, against a real coordinator on the demo mesh.
//!
//! Instances are seeded straight into the coordinator's database (a second SQLite connection;
//! WAL allows it) under hostnames that are not in the mesh (`ghost-*`), so that a discovery or
//! health loop working on the real nodes leaves them alone; assertions look only at those names,
//! never at the total number of instances.

use std::time::Duration;

use meshrun_coordinator::store::{
    JobStatus, NewInstance, NewJob, NodeState, StatusChange, Store, now,
};
use meshrun_shared::node_type::NodeType;
use meshrun_tests::mesh::Mesh;
use meshrun_tests::wait::eventually;
use reqwest::StatusCode;
use serde_json::{Value, json};

const GIB: i64 = 1 << 30;

/// The coordinator's database, opened on a runtime that lives as long as the test.
struct Db {
    rt: tokio::runtime::Runtime,
    store: Store,
}

impl Db {
    fn open(mesh: &Mesh) -> Db {
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        let path = mesh.dir().join("control/meshrun.db");
        let store = rt
            .block_on(Store::open(&path))
            .unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
        Db { rt, store }
    }

    /// Registers `hostname` and applies `change`; returns its id.
    fn seed(
        &self,
        hostname: &str,
        node_type: NodeType,
        change: impl FnMut(&mut meshrun_coordinator::store::Instance),
    ) -> i64 {
        self.rt.block_on(async {
            let i = self
                .store
                .create_instance(&NewInstance {
                    hostname: hostname.into(),
                    node_type,
                    registered_by: "test".into(),
                    listener_address: None,
                })
                .await
                .expect("create instance");
            self.store
                .update_instance(i.id, change)
                .await
                .expect("update instance")
                .expect("instance exists")
                .id
        })
    }
}

/// ghost-hop (hop, ready), ghost-1 (8 CPUs, 16 GiB, ready), ghost-2 (unavailable, errors),
/// ghost-3 (installed, unlinked); links control — ghost-hop — ghost-1, ghost-2 and a cycle
/// ghost-1 — ghost-2. Returns ghost-1's, ghost-2's and ghost-hop's ids.
fn seed_ghosts(db: &Db) -> (i64, i64, i64) {
    let hop = db.seed("ghost-hop", NodeType::Hop, |i| {
        i.node_state = NodeState::Ready;
    });
    let one = db.seed("ghost-1", NodeType::Execution, |i| {
        i.node_state = NodeState::Ready;
        i.cpu = 8.0;
        i.memory = 16 * GIB;
        i.version = "ansible-runner-2.4.1".into();
        i.last_health_check = Some(now());
        i.listener_address = Some("127.0.0.1:27199".into());
    });
    let two = db.seed("ghost-2", NodeType::Execution, |i| {
        i.node_state = NodeState::Unavailable;
        i.errors = "podman is not usable: runc missing".into();
    });
    db.seed("ghost-3", NodeType::Execution, |_| {});
    let links = [
        ("control", "ghost-hop"),
        ("ghost-hop", "ghost-1"),
        ("ghost-hop", "ghost-2"),
        ("ghost-1", "ghost-2"),
    ]
    .map(|(a, b)| (a.to_string(), b.to_string(), 1.0));
    db.rt
        .block_on(db.store.replace_links(&links))
        .expect("links");
    (one, two, hop)
}

fn get(mesh: &Mesh, path: &str) -> (StatusCode, Value) {
    let r = meshrun_tests::api::client(mesh)
        .get(format!("{}{path}", mesh.api()))
        .send()
        .unwrap_or_else(|e| panic!("GET {path}: {e}"));
    let status = r.status();
    (status, r.json().unwrap_or(Value::Null))
}

fn patch(mesh: &Mesh, id: i64, body: &Value) -> (StatusCode, Value) {
    let r = meshrun_tests::api::client(mesh)
        .patch(format!("{}/api/v2/instances/{id}/", mesh.api()))
        .json(body)
        .send()
        .unwrap_or_else(|e| panic!("PATCH {id}: {e}"));
    let status = r.status();
    (status, r.json().unwrap_or(Value::Null))
}

fn post_health_check(mesh: &Mesh, id: i64) -> (StatusCode, Value) {
    let r = meshrun_tests::api::client(mesh)
        .post(format!(
            "{}/api/v2/instances/{id}/health_check/",
            mesh.api()
        ))
        .json(&json!({}))
        .send()
        .unwrap_or_else(|e| panic!("POST health_check {id}: {e}"));
    let status = r.status();
    (status, r.json().unwrap_or(Value::Null))
}

/// The ghost hostnames of a page, in order.
fn ghosts(page: &Value) -> Vec<String> {
    page["results"]
        .as_array()
        .unwrap_or_else(|| panic!("not a page: {page:#}"))
        .iter()
        .filter_map(|i| i["hostname"].as_str())
        .filter(|h| h.starts_with("ghost-"))
        .map(str::to_string)
        .collect()
}

fn detail_400(mesh: &Mesh, path: &str) -> String {
    let (status, body) = get(mesh, path);
    assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {body:#}");
    body["detail"].as_str().unwrap_or_default().to_string()
}

#[test]
fn instances_list_filter_order_page_and_patch() {
    let mesh = Mesh::demo();
    let db = Db::open(&mesh);
    let (one, two, _hop) = seed_ghosts(&db);
    let all = "/api/v2/instances/?page_size=200";

    let (status, execs) = get(&mesh, &format!("{all}&node_type=execution"));
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ghosts(&execs), ["ghost-1", "ghost-2", "ghost-3"]);
    assert!(
        execs["results"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["node_type"] == "execution")
    );
    let (_, down) = get(&mesh, &format!("{all}&node_state=unavailable"));
    assert_eq!(ghosts(&down), ["ghost-2"]);
    let (_, hops) = get(&mesh, &format!("{all}&node_type=hop&node_state=ready"));
    assert_eq!(ghosts(&hops), ["ghost-hop"]);

    let (_, desc) = get(&mesh, &format!("{all}&order_by=-hostname"));
    assert_eq!(
        ghosts(&desc),
        ["ghost-hop", "ghost-3", "ghost-2", "ghost-1"]
    );
    let (_, by_capacity) = get(&mesh, &format!("{all}&order_by=-capacity"));
    assert_eq!(ghosts(&by_capacity)[0], "ghost-1", "{by_capacity:#}");
    assert!(detail_400(&mesh, "/api/v2/instances/?order_by=name").contains("order_by"));
    assert!(detail_400(&mesh, "/api/v2/instances/?node_type=robot").contains("node_type"));
    assert!(detail_400(&mesh, "/api/v2/instances/?node_state=asleep").contains("node_state"));
    assert!(detail_400(&mesh, "/api/v2/instances/?colour=red").contains("colour"));
    assert!(detail_400(&mesh, "/api/v2/instances/?page_size=0").contains("page_size"));

    // The AWX envelope, with filters and ordering kept in the page links.
    let (_, first) = get(
        &mesh,
        "/api/v2/instances/?node_type=execution&order_by=hostname&page_size=1",
    );
    assert!(first["count"].as_i64().unwrap() >= 3, "{first:#}");
    assert_eq!(first["results"].as_array().unwrap().len(), 1);
    assert_eq!(first["previous"], Value::Null);
    let next = first["next"].as_str().expect("a next page");
    assert!(
        next.starts_with("/api/v2/instances/?page=2&page_size=1")
            && next.contains("node_type=execution")
            && next.contains("order_by=hostname"),
        "{next}"
    );
    let (_, second) = get(&mesh, next);
    assert_eq!(second["results"].as_array().unwrap().len(), 1);
    assert!(second["previous"].as_str().is_some());
    assert_ne!(first["results"][0]["id"], second["results"][0]["id"]);
    let (_, by_name) = get(&mesh, "/api/v2/instances/?hostname=ghost-2");
    assert_eq!(by_name["count"], 1);
    assert_eq!(by_name["results"][0]["id"], two);

    // Detail, AWX field names and shapes.
    let (status, g1) = get(&mesh, &format!("/api/v2/instances/{one}/"));
    assert_eq!(status, StatusCode::OK);
    for (field, want) in [
        ("id", json!(one)),
        ("hostname", json!("ghost-1")),
        ("type", json!("instance")),
        ("url", json!(format!("/api/v2/instances/{one}/"))),
        ("node_type", json!("execution")),
        ("node_state", json!("ready")),
        ("enabled", json!(true)),
        ("cpu", json!("8.0")),
        ("memory", json!(16 * GIB)),
        ("cpu_capacity", json!(32)),
        ("mem_capacity", json!(143)),
        ("capacity", json!(143)),
        ("capacity_adjustment", json!("1.00")),
        ("consumed_capacity", json!(0)),
        ("percent_capacity_remaining", json!(100.0)),
        ("jobs_running", json!(0)),
        ("jobs_total", json!(0)),
        ("health_check_pending", json!(false)),
        ("listener_port", json!(27199)),
        ("registered_by", json!("test")),
        ("version", json!("ansible-runner-2.4.1")),
        ("errors", json!("")),
    ] {
        assert_eq!(g1[field], want, "{field} in {g1:#}");
    }
    for field in [
        "uuid",
        "created",
        "modified",
        "last_seen",
        "health_check_started",
        "last_health_check",
        "boot_id",
    ] {
        assert!(g1.get(field).is_some(), "{field} missing from {g1:#}");
    }

    // Jobs on ghost-1: one finished, one waiting with 3 forks (impact 4).
    let job = |forks| NewJob {
        name: "seeded".into(),
        playbook: "site.yml".into(),
        project_sha256: "0".repeat(64),
        inventory: "localhost\n".into(),
        extra_vars: "{}".into(),
        limit: None,
        forks: Some(forks),
        verbosity: None,
        requested_node: Some("ghost-1".into()),
        task_impact: meshrun_shared::capacity::task_impact(None, Some(forks)),
        instance_group: "default".into(),
        host_count: None,
        ..NewJob::default()
    };
    let on_ghost = StatusChange {
        execution_node: Some("ghost-1"),
        ..Default::default()
    };
    let waiting = db.rt.block_on(async {
        let done = db.store.create_job(&job(5)).await.unwrap();
        let waiting = db.store.create_job(&job(3)).await.unwrap();
        for (j, to) in [
            (&done, JobStatus::Successful),
            (&waiting, JobStatus::Waiting),
        ] {
            assert!(
                db.store
                    .transition(j.id, &[JobStatus::Pending], to, &on_ghost)
                    .await
                    .unwrap()
            );
        }
        waiting.id
    });
    let (_, g1) = get(&mesh, &format!("/api/v2/instances/{one}/"));
    assert_eq!(
        (
            &g1["jobs_total"],
            &g1["jobs_running"],
            &g1["consumed_capacity"]
        ),
        (&json!(2), &json!(1), &json!(4)),
        "{g1:#}"
    );
    assert_eq!(g1["percent_capacity_remaining"], json!(97.2));
    db.rt.block_on(async {
        db.store
            .transition(
                waiting,
                &[JobStatus::Waiting],
                JobStatus::Canceled,
                &StatusChange::default(),
            )
            .await
            .unwrap();
    });

    let (status, missing) = get(&mesh, "/api/v2/instances/999999/");
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(missing["detail"].as_str().unwrap().contains("999999"));
    assert_eq!(
        get(&mesh, "/api/v2/instances/ghost-1/").0,
        StatusCode::NOT_FOUND
    );

    // PATCH: the two settings, capacity re-derived.
    let (status, off) = patch(&mesh, one, &json!({"enabled": false}));
    assert_eq!(status, StatusCode::OK, "{off:#}");
    assert_eq!(
        (&off["enabled"], &off["capacity"]),
        (&json!(false), &json!(0))
    );
    let (status, half) = patch(
        &mesh,
        one,
        &json!({"enabled": true, "capacity_adjustment": 0.5}),
    );
    assert_eq!(status, StatusCode::OK, "{half:#}");
    let cap = half["capacity"].as_i64().unwrap();
    assert!(
        32 < cap && cap < 143,
        "between cpu and mem capacity: {half:#}"
    );
    assert_eq!(cap, 87, "AWX's worked example");
    assert_eq!(half["capacity_adjustment"], "0.50");
    let (status, quarter) = patch(&mesh, one, &json!({"capacity_adjustment": "0.25"}));
    assert_eq!(status, StatusCode::OK, "{quarter:#}");
    assert_eq!(quarter["capacity_adjustment"], "0.25");
    assert_eq!(quarter["capacity"], 59);
    for (body, field) in [
        (json!({"capacity_adjustment": "1.5"}), "capacity_adjustment"),
        (json!({"capacity_adjustment": -1}), "capacity_adjustment"),
        (json!({"capacity_adjustment": "x"}), "capacity_adjustment"),
        (json!({"enabled": "no"}), "enabled"),
        (json!({"hostname": "renamed"}), "hostname"),
        (json!({"enabled": true, "colour": "red"}), "colour"),
    ] {
        let (status, answer) = patch(&mesh, one, &body);
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {answer:#}");
        let detail = answer["detail"].as_str().unwrap_or_default();
        assert!(detail.contains(field), "{body}: {detail}");
    }
    let (status, _) = patch(&mesh, 999_999, &json!({"enabled": true}));
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, after) = get(&mesh, &format!("/api/v2/instances/{one}/"));
    assert_eq!(
        (
            &after["capacity_adjustment"],
            &after["enabled"],
            &after["capacity"]
        ),
        (&json!("0.25"), &json!(true), &json!(59)),
        "rejected changes change nothing"
    );
}

#[test]
fn health_check_requests_are_pending_until_answered() {
    let mesh = Mesh::demo();
    let db = Db::open(&mesh);
    let (one, _two, hop) = seed_ghosts(&db);
    let hc_path = format!("/api/v2/instances/{one}/health_check/");

    let (status, before) = get(&mesh, &hc_path);
    assert_eq!(status, StatusCode::OK);
    for field in [
        "uuid",
        "hostname",
        "version",
        "last_health_check",
        "errors",
        "cpu",
        "memory",
        "cpu_capacity",
        "mem_capacity",
        "capacity",
        "history",
    ] {
        assert!(before.get(field).is_some(), "{field} missing: {before:#}");
    }
    assert_eq!(before["health_check_pending"], false);

    let (status, refused) = post_health_check(&mesh, hop);
    assert_eq!(status, StatusCode::BAD_REQUEST, "{refused:#}");
    assert!(refused["detail"].as_str().unwrap().contains("hop"));
    assert_eq!(post_health_check(&mesh, 999_999).0, StatusCode::NOT_FOUND);

    // The real health loop answers: the CLI asks for a check of exec1 (by hostname) and waits.
    let exec1 = mesh.instance("exec1").expect("exec1 discovered");
    let exec1_hc = format!("/api/v2/instances/{}/health_check/", exec1.id);
    let (_, before) = get(&mesh, &exec1_hc);
    let history_before = before["history"].as_array().map_or(0, Vec::len);
    let out = mesh.meshrun(&["instances", "health-check", "exec1", "--timeout", "120"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "stdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.starts_with("exec1: healthy\n"), "{stdout}");
    assert!(stdout.contains("ansible-runner-"), "{stdout}");
    let (_, after) = get(&mesh, &exec1_hc);
    assert_eq!(after["health_check_pending"], false, "{after:#}");
    assert!(
        after["history"].as_array().map_or(0, Vec::len) > history_before,
        "the check was recorded: {after:#}"
    );
    assert!(after["last_health_check"].as_str() > before["last_health_check"].as_str());

    // A second request while one is pending is refused.
    let (first, _) = post_health_check(&mesh, exec1.id);
    assert_eq!(first, StatusCode::ACCEPTED);
    let (second, again) = post_health_check(&mesh, exec1.id);
    assert_eq!(second, StatusCode::CONFLICT, "{again:#}");
    assert!(
        again["detail"]
            .as_str()
            .unwrap()
            .contains("already pending")
    );
    eventually(
        "the requested check to finish",
        Duration::from_secs(60),
        || {
            let (_, hc) = get(&mesh, &exec1_hc);
            (hc["health_check_pending"] == false).then_some(())
        },
    );

    // A hostname that is nobody's.
    let out = mesh.meshrun(&["instances", "health-check", "ghost-none"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("ghost-none"));
}

#[test]
fn mesh_metrics_and_the_cli_show_the_seeded_nodes() {
    let mesh = Mesh::demo();
    let db = Db::open(&mesh);
    let (one, _two, _hop) = seed_ghosts(&db);

    let (status, vis) = get(&mesh, "/api/v2/mesh_visualizer/");
    assert_eq!(status, StatusCode::OK);
    let node = vis["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["hostname"] == "ghost-1")
        .cloned()
        .unwrap_or_else(|| panic!("ghost-1 missing: {vis:#}"));
    assert_eq!(
        node,
        json!({"id": one, "hostname": "ghost-1", "node_type": "execution",
               "node_state": "ready", "enabled": true})
    );
    assert!(
        vis["links"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["source"] == "ghost-hop"
                && l["target"] == "ghost-1"
                && l["link_state"] == "established"),
        "{vis:#}"
    );

    let r = meshrun_tests::api::client(&mesh)
        .get(format!("{}/metrics", mesh.api()))
        .send()
        .expect("metrics");
    assert_eq!(r.status(), StatusCode::OK);
    let ctype = r.headers()[reqwest::header::CONTENT_TYPE]
        .to_str()
        .unwrap()
        .to_string();
    assert!(ctype.starts_with("text/plain; version=0.0.4"), "{ctype}");
    let text = r.text().unwrap();
    for line in [
        "# TYPE meshrun_instances gauge",
        "meshrun_instance_capacity{hostname=\"ghost-1\",node_type=\"execution\"} 143",
        "meshrun_instance_capacity{hostname=\"ghost-2\",node_type=\"execution\"} 0",
        "meshrun_coordinator_info{node_id=\"control\"",
        "# TYPE meshrun_capacity_total gauge",
        "# TYPE meshrun_health_check_seconds summary",
        "meshrun_health_check_seconds_count ",
        "meshrun_discovery_cycle_seconds_sum ",
        "meshrun_discovery_failures_total ",
        "meshrun_health_check_failures_total ",
    ] {
        assert!(text.contains(line), "{line:?} missing from\n{text}");
    }
    let count = |t: &str, s: &str| -> i64 {
        let key = format!("meshrun_instances{{node_type=\"{t}\",node_state=\"{s}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&key))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{key} missing from\n{text}"))
    };
    assert!(count("execution", "ready") >= 1);
    assert!(count("execution", "unavailable") >= 1);
    assert!(count("execution", "installed") >= 1);
    assert!(count("hop", "ready") >= 1);

    // `meshrun instances`: a row per instance, by hostname.
    let out = mesh.meshrun(&["instances"]);
    let table = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{table}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let row = |h: &str| {
        table
            .lines()
            .position(|l| l.split_whitespace().next() == Some(h))
            .unwrap_or_else(|| panic!("no row for {h}:\n{table}"))
    };
    assert!(row("ghost-1") < row("ghost-2") && row("ghost-2") < row("ghost-3"));
    assert!(row("ghost-3") < row("ghost-hop"));
    let g1 = table.lines().nth(row("ghost-1")).unwrap();
    for cell in [
        "execution",
        "ready",
        "[##########] 143/143",
        "16.0 GiB",
        "ansible-runner-2.4.1",
        "s ago",
    ] {
        assert!(g1.contains(cell), "{cell:?} missing from {g1:?}");
    }
    let g2 = table.lines().nth(row("ghost-2")).unwrap();
    assert!(g2.contains("unavailable") && g2.contains("podman is not usable"));
    let g3 = table.lines().nth(row("ghost-3")).unwrap();
    assert!(g3.contains("installed") && g3.contains("never"), "{g3}");
    let out = mesh.meshrun(&["instances", "--json"]);
    let listed: Value = serde_json::from_slice(&out.stdout).expect("JSON list");
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["hostname"] == "ghost-1" && i["capacity"] == 143)
    );

    // `meshrun mesh`: the tree from the control node.
    let out = mesh.meshrun(&["mesh"]);
    let tree = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{tree}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(tree.starts_with("control ("), "{tree}");
    let line = |needle: &str| {
        tree.lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("{needle:?} missing from\n{tree}"))
    };
    let depth = |l: &str| l.chars().take_while(|c| !c.is_alphanumeric()).count();
    let hop_line = line("── ghost-hop (hop, ready)");
    let one_line = line("── ghost-1 (execution, ready, capacity 143)");
    let two_line = line("── ghost-2 (execution, unavailable)");
    assert!(depth(one_line) > depth(hop_line), "{tree}");
    assert_eq!(depth(one_line), depth(two_line), "{tree}");
    let (_, rest) = tree
        .split_once("\nunlinked (not reachable from control):\n")
        .unwrap_or_else(|| panic!("no unlinked section:\n{tree}"));
    assert!(rest.contains("  ghost-3 (execution, installed)"), "{tree}");
    assert!(tree.contains("other links:\n") && tree.contains("  ghost-1 — ghost-2\n"));
}
