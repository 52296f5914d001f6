//! Distance and partitions, through real receptor and ansible-runner: control (root
//! namespace, with the coordinator) ← hop ← exec, hop and exec each in a network namespace of
//! their own, every link through a proxy in the test process. With 300 ms added each way on
//! the exec → hop link, discovery, health checks and jobs still work and output is complete; a
//! job whose hop link is cut for 8 s completes with every event exactly once; a link cut for
//! a minute is node loss (the job ends `error` naming the node).
//!
//! Timing is reported on stderr (`--nocapture`), never asserted: the machine is loaded.

use std::time::{Duration, Instant};

use meshrun_tests::api;
use meshrun_tests::link_proxy::Cut;
use meshrun_tests::mesh::{Mesh, NodeSpec};
use meshrun_tests::wait::eventually;
use reqwest::StatusCode;
use serde_json::{Value, json};

const INVENTORY: &str = "localhost ansible_connection=local ansible_python_interpreter=\"{{ ansible_playbook_python }}\"\n";
const LATENCY: Duration = Duration::from_millis(300);
const SHORT_CUT: Duration = Duration::from_secs(8);
const LONG_CUT: Duration = Duration::from_secs(65);
const PATIENCE: Duration = Duration::from_secs(180);

/// `count` quick items, each printing its line.
fn quick_playbook(count: u32) -> String {
    format!(
        "- hosts: localhost\n  gather_facts: false\n  tasks:\n    - name: say lines\n      \
         ansible.builtin.debug:\n        msg: \"line {{{{ item }}}} from {{{{ lookup('ansible.builtin.env', 'MESHRUN_NODE_ID') }}}}\"\n      \
         loop: \"{{{{ range(1, {end}) | list }}}}\"\n",
        end = count + 1
    )
}

/// `count` items of one second each.
fn slow_playbook(count: u32) -> String {
    format!(
        "- hosts: localhost\n  gather_facts: false\n  tasks:\n    - name: tick\n      \
         ansible.builtin.command: sleep 1\n      loop: \"{{{{ range(1, {end}) | list }}}}\"\n",
        end = count + 1
    )
}

/// control (root namespace) ← hop ← exec, hop and exec namespaced; `delay` one way on
/// exec → hop from the start, so discovery and the first health check cross it.
fn far_mesh(coordinator_extra: &str, delay: Duration) -> Mesh {
    let mut mesh = Mesh::start(&[NodeSpec::new("control", "control").listening()]);
    mesh.add_node(
        &NodeSpec::new("hop", "hop")
            .in_netns()
            .listening()
            .dialing("control"),
    );
    mesh.add_node(&NodeSpec::new("exec", "execution").in_netns().dialing("hop"));
    mesh.link("exec", "hop").set_delay(delay);
    mesh.wait_routable("control", &["hop", "exec"]);
    mesh.start_coordinator_with("control", coordinator_extra);
    mesh.wait_discovered(&["control", "hop", "exec"]);
    mesh
}

/// Writes `playbooks` into a project under the mesh folder and uploads it.
fn project(mesh: &Mesh, playbooks: &[(&str, String)]) -> String {
    let dir = mesh.dir().join("project");
    std::fs::create_dir_all(&dir).expect("project dir");
    for (name, text) in playbooks {
        std::fs::write(dir.join(name), text).expect("playbook");
    }
    api::upload_project(mesh, &dir)
}

fn submit(mesh: &Mesh, sha: &str, playbook: &str) -> i64 {
    api::submit_job(
        mesh,
        &json!({
            "project": sha,
            "playbook": playbook,
            "inventory": INVENTORY,
            "execution_node": "exec",
        }),
    )
}

/// Every event of job `id`, in counter order.
fn events(mesh: &Mesh, id: i64) -> Vec<Value> {
    let page = mesh.get(&format!("/api/v2/jobs/{id}/job_events/?page_size=200"));
    assert!(page["next"].is_null(), "more than one page: {page:#}");
    page["results"].as_array().cloned().unwrap_or_default()
}

/// How many loop items have an event stored so far.
fn items_seen(mesh: &Mesh, id: i64) -> usize {
    events(mesh, id)
        .iter()
        .filter(|e| e["event"] == "runner_item_on_ok")
        .count()
}

/// Waits until job `id` has returned `n` loop items; a job that ends first, or a timeout, fails
/// the test with the job and the coordinator's log.
fn wait_items(mesh: &Mesh, id: i64, n: usize) {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if items_seen(mesh, id) >= n {
            return;
        }
        let job = api::job(mesh, id);
        let ended = matches!(
            job["status"].as_str(),
            Some("successful" | "failed" | "error" | "canceled")
        );
        assert!(
            !ended && Instant::now() < deadline,
            "job {id} did not return {n} items ({}):\n{job:#}\n--- coordinator log\n{}",
            if ended { "it ended" } else { "timed out" },
            mesh.coordinator_log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Job `id` ended `successful` on exec, with every event exactly once (counters 1..=n,
/// distinct uuids, one per loop item) and every item once in its stdout; nothing is left on
/// either end. Returns the job.
fn assert_complete(mesh: &Mesh, id: i64, items: u32) -> Value {
    let job = api::wait_job(mesh, id, "ended", PATIENCE, |j| {
        matches!(
            j["status"].as_str(),
            Some("successful" | "failed" | "error" | "canceled")
        )
    });
    let log = mesh.coordinator_log();
    assert_eq!(job["status"], "successful", "{job:#}\n{log}");
    assert_eq!(job["execution_node"], "exec", "{job:#}");
    assert_eq!(job["execution_route"], "control -> hop -> exec", "{job:#}");

    let events = events(mesh, id);
    let counters: Vec<i64> = events
        .iter()
        .filter_map(|e| e["counter"].as_i64())
        .collect();
    assert_eq!(
        counters,
        (1..=counters.len() as i64).collect::<Vec<_>>(),
        "every event exactly once, in order"
    );
    let mut uuids: Vec<&str> = events.iter().filter_map(|e| e["uuid"].as_str()).collect();
    uuids.sort_unstable();
    uuids.dedup();
    assert_eq!(uuids.len(), events.len(), "distinct event uuids");
    let per_item = events
        .iter()
        .filter(|e| e["event"] == "runner_item_on_ok")
        .count();
    assert_eq!(per_item, items as usize, "one event per loop item");
    assert!(events.iter().any(|e| e["event"] == "playbook_on_stats"));

    let stdout = api::job_stdout(mesh, id);
    for n in 1..=items {
        let marker = format!("(item={n})");
        assert_eq!(
            stdout.matches(&marker).count(),
            1,
            "{marker} once in stdout:\n{stdout}"
        );
    }
    assert!(stdout.contains("PLAY RECAP"), "{stdout}");
    assert_nothing_left(mesh);
    job
}

/// No unit on control or exec, and nothing but receptor running in exec's namespace.
fn assert_nothing_left(mesh: &Mesh) {
    eventually("units to be released on both ends", PATIENCE, || {
        (mesh.work_list("control").is_empty() && mesh.work_list("exec").is_empty()).then_some(())
    });
    let receptor = mesh.nodes["exec"]
        .receptor
        .as_ref()
        .map(|r| r.pid() as i32)
        .expect("exec's receptor");
    let ns = mesh.netns("exec").expect("exec is namespaced");
    eventually(
        "only receptor to run in exec's namespace",
        Duration::from_secs(30),
        || (ns.pids() == vec![receptor]).then_some(()),
    );
}

fn seconds(job: &Value) -> f64 {
    job["elapsed"].as_f64().unwrap_or(f64::NAN)
}

/// Asks for a health check of exec now and waits for it to succeed.
fn health_check_succeeds(mesh: &Mesh) -> Value {
    let before = api::instance(mesh, "exec").expect("exec registered");
    let id = before["id"].as_i64().expect("instance id");
    let asked = Instant::now();
    let (status, body) = api::post(
        mesh,
        &format!("/api/v2/instances/{id}/health_check/"),
        &json!({}),
    );
    assert!(
        status == StatusCode::OK || status == StatusCode::ACCEPTED,
        "{status}: {body:#}"
    );
    let after = eventually("a new health check of exec", PATIENCE, || {
        api::instance(mesh, "exec").filter(|i| {
            i["last_health_check"] != before["last_health_check"]
                && !i["last_health_check"].is_null()
        })
    });
    eprintln!(
        "health check of exec over the delayed link took {:.1} s",
        asked.elapsed().as_secs_f64()
    );
    assert_eq!(after["node_state"], "ready", "{after:#}");
    assert_eq!(after["errors"], "", "{after:#}");
    assert!(after["capacity"].as_i64() > Some(0), "{after:#}");
    after
}

#[test]
fn three_hundred_ms_each_way_still_works_and_loses_nothing() {
    const ITEMS: u32 = 15;
    let mesh = far_mesh("", LATENCY);
    // Discovery and the first health check crossed the delayed link.
    api::wait_ready(&mesh, "exec");
    health_check_succeeds(&mesh);

    let sha = project(&mesh, &[("quick.yml", quick_playbook(ITEMS))]);
    let far = submit(&mesh, &sha, "quick.yml");
    let far_job = assert_complete(&mesh, far, ITEMS);
    assert!(
        api::job_stdout(&mesh, far).contains(&format!("line {ITEMS} from exec")),
        "the last line came back"
    );

    mesh.link("exec", "hop").set_delay(Duration::ZERO);
    let near = submit(&mesh, &sha, "quick.yml");
    let near_job = assert_complete(&mesh, near, ITEMS);
    eprintln!(
        "job of {ITEMS} items: {:.2} s with {} ms each way on exec -> hop, {:.2} s without",
        seconds(&far_job),
        LATENCY.as_millis(),
        seconds(&near_job)
    );
}

/// Runs a slow job, cuts exec → hop (`how`) for `SHORT_CUT` mid-run, heals it and checks the
/// job completes with every event.
fn short_cut_mid_run(how: Cut) {
    const ITEMS: u32 = 24;
    let mesh = far_mesh("", Duration::ZERO);
    let sha = project(&mesh, &[("slow.yml", slow_playbook(ITEMS))]);
    let id = submit(&mesh, &sha, "slow.yml");
    wait_items(&mesh, id, 4);
    let link = mesh.link("exec", "hop");
    let connections = link.forwarded();
    let at_cut = items_seen(&mesh, id);
    link.cut(how);
    std::thread::sleep(SHORT_CUT);
    let at_heal = items_seen(&mesh, id);
    let job = api::job(&mesh, id);
    assert_eq!(
        job["status"], "running",
        "still running after the cut: {job:#}"
    );
    if how == Cut::Blackhole {
        // Nothing crossed the cut link (an item already past the proxy may still land).
        assert!(
            at_heal <= at_cut + 1,
            "items {at_cut} at the cut, {at_heal} at heal"
        );
    }
    link.heal();
    let healed = Instant::now();
    eventually("output to flow again after the heal", PATIENCE, || {
        (items_seen(&mesh, id) > at_heal).then_some(())
    });
    let recovered = healed.elapsed();
    let job = assert_complete(&mesh, id, ITEMS);
    eprintln!(
        "{how:?} cut of {} s at item {at_cut}: output flowed again {:.2} s after the heal; \
         job took {:.1} s; connections over the link {connections} before, {} after",
        SHORT_CUT.as_secs(),
        recovered.as_secs_f64(),
        seconds(&job),
        link.forwarded()
    );
}

#[test]
fn a_hop_link_blackholed_for_8_s_mid_run_loses_no_event() {
    short_cut_mid_run(Cut::Blackhole);
}

#[test]
fn a_hop_link_reset_and_refused_for_8_s_mid_run_loses_no_event() {
    short_cut_mid_run(Cut::Reset);
}

/// Makes a cut link count as node loss after `grace`: discovery marks the node unavailable and
/// the coordinator's node-loss handling ends its jobs `error` after the same grace.
fn set_node_loss_grace(coordinator_extra: &mut String, grace: Duration) {
    let secs = grace.as_secs_f64();
    coordinator_extra.push_str(&format!(
        "[discovery]\ngrace_secs = {secs}\n[node_loss]\ngrace_secs = {secs}\n"
    ));
}

#[test]
fn a_hop_link_cut_for_a_minute_is_node_loss() {
    let mut extra = String::new();
    set_node_loss_grace(&mut extra, Duration::from_secs(5));
    let mesh = far_mesh(&extra, Duration::ZERO);
    let sha = project(&mesh, &[("slow.yml", slow_playbook(150))]);
    let id = submit(&mesh, &sha, "slow.yml");
    wait_items(&mesh, id, 3);
    let link = mesh.link("exec", "hop");
    link.cut(Cut::Blackhole);
    let cut = Instant::now();
    let job = api::wait_job(&mesh, id, "ended", PATIENCE, |j| {
        matches!(
            j["status"].as_str(),
            Some("successful" | "failed" | "error" | "canceled")
        )
    });
    let to_error = cut.elapsed();
    assert_eq!(
        job["status"],
        "error",
        "{job:#}\n{}",
        mesh.coordinator_log()
    );
    let explanation = job["job_explanation"].as_str().unwrap_or_default();
    assert!(
        explanation.contains("exec"),
        "the explanation names the node: {job:#}"
    );
    if let Some(rest) = LONG_CUT.checked_sub(cut.elapsed()) {
        std::thread::sleep(rest);
    }
    link.heal();
    eprintln!(
        "hop link cut: job error after {:.1} s: {explanation}",
        to_error.as_secs_f64()
    );
    // Back: ready again, its unit force-released, nothing left running.
    eventually("exec to be ready again", PATIENCE, || {
        api::instance(&mesh, "exec").filter(|i| i["node_state"] == "ready")
    });
    assert_nothing_left(&mesh);
    let after = api::job(&mesh, id);
    assert_eq!(after["status"], "error", "stays error: {after:#}");
}
