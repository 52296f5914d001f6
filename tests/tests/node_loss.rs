//! Jobs whose node dies, reboots or goes silent, through real receptor and ansible-runner (host
//! mode): each execution node runs in a cgroup of its own, so "killing the node" kills its
//! receptor, the command runners receptor detached, the agent and ansible-runner — killing
//! receptor alone would leave the job running.
//!
//! - A node killed mid-run: after the node-loss grace its job ends `error` naming the node and
//!   the last event stored; a job held back by its group's limit runs on the other node; when
//!   the node is started again its leftover units are released on both ends.
//! - A node "rebooted" (killed, boot id file changed, started again) within the grace: the
//!   job ends `error` saying the node rebooted.
//! - A worker stopped with SIGSTOP: keepalives stop, the output stops growing while the node
//!   stays routable, and the job ends `error` as stalled. Before that, the same job sits
//!   silently at a gate for longer than the stall allowance and keeps running, because the
//!   worker's keepalive lines keep its output growing.
//!
//! Times are printed (death to `error`), never asserted.

use std::time::{Duration, Instant};

use meshrun_tests::api;
use meshrun_tests::mesh::{Mesh, NodeSpec};
use meshrun_tests::wait::eventually;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::{Value, json};

const INVENTORY: &str = "localhost ansible_connection=local ansible_python_interpreter=\"{{ ansible_playbook_python }}\"\n";

/// Says where it is, then waits (silently) for the gate file.
const GATED: &str = "- hosts: localhost\n  gather_facts: false\n  tasks:\n    - ansible.builtin.debug:\n        msg: \"at the gate on {{ lookup('ansible.builtin.env', 'MESHRUN_NODE_ID') }}\"\n    - ansible.builtin.wait_for:\n        path: \"{{ gate }}\"\n        timeout: 300\n    - ansible.builtin.debug:\n        msg: \"through the gate\"\n";

const HELLO: &str = "- hosts: localhost\n  gather_facts: false\n  tasks:\n    - ansible.builtin.debug:\n        msg: \"ran on {{ lookup('ansible.builtin.env', 'MESHRUN_NODE_ID') }}\"\n";

/// Generous: the machine is shared with parallel builds.
const PATIENCE: Duration = Duration::from_secs(180);

fn coordinator_config(grace: u32, keepalive: u32, stall: u32) -> String {
    format!(
        "[discovery]\ngrace_secs = 3\n\n[node_loss]\ngrace_secs = {grace}\nkeepalive_secs = {keepalive}\n\
         stall_secs = {stall}\nperiod_secs = 1\n"
    )
}

/// control (listening) with a coordinator, plus the execution nodes `execs`, each in its own
/// cgroup, dialing control.
fn mesh(config: &str, execs: &[NodeSpec]) -> Mesh {
    let mut mesh = Mesh::start(&[NodeSpec::new("control", "control").listening()]);
    mesh.start_coordinator_with("control", config);
    for spec in execs {
        mesh.add_node(&spec.clone().dialing("control").in_own_cgroup());
    }
    for spec in execs {
        api::wait_ready(&mesh, &spec.name);
    }
    let names: Vec<&str> = execs.iter().map(|s| s.name.as_str()).collect();
    let mut all = vec!["control"];
    all.extend(&names);
    mesh.wait_discovered(&all);
    mesh
}

fn project(mesh: &Mesh) -> String {
    let dir = mesh.dir().join("project");
    std::fs::create_dir_all(&dir).expect("project dir");
    std::fs::write(dir.join("gated.yml"), GATED).expect("gated.yml");
    std::fs::write(dir.join("hello.yml"), HELLO).expect("hello.yml");
    api::upload_project(mesh, &dir)
}

fn gated_job(mesh: &Mesh, sha: &str, more: Value) -> i64 {
    let gate = mesh.dir().join("gate-never-opened");
    let mut body = json!({
        "project": sha, "playbook": "gated.yml", "inventory": INVENTORY,
        "extra_vars": { "gate": gate.display().to_string() },
    });
    if let (Some(b), Some(m)) = (body.as_object_mut(), more.as_object()) {
        b.extend(m.clone());
    }
    api::submit_job(mesh, &body)
}

/// Waits until job `id` runs on `node` and has printed that it waits at the gate.
fn wait_at_gate(mesh: &Mesh, id: i64, node: &str) {
    api::wait_job(mesh, id, "running", PATIENCE, |j| j["status"] == "running");
    eventually(
        &format!("job {id} to reach the gate on {node}"),
        PATIENCE,
        || {
            api::job_stdout(mesh, id)
                .contains(&format!("at the gate on {node}"))
                .then_some(())
        },
    );
}

fn events(mesh: &Mesh, id: i64) -> Vec<Value> {
    let page = mesh.get(&format!("/api/v2/jobs/{id}/job_events/?page_size=200"));
    page["results"].as_array().cloned().unwrap_or_default()
}

/// Checks the stored events are 1..=n exactly once and returns the last `(counter, event)`.
fn last_event(mesh: &Mesh, id: i64) -> (i64, String) {
    let evs = events(mesh, id);
    let counters: Vec<i64> = evs.iter().filter_map(|e| e["counter"].as_i64()).collect();
    assert_eq!(
        counters,
        (1..=counters.len() as i64).collect::<Vec<_>>(),
        "every event exactly once"
    );
    let last = evs.last().expect("some events");
    (
        last["counter"].as_i64().unwrap_or(0),
        last["event"].as_str().unwrap_or("").to_string(),
    )
}

fn wait_error(mesh: &Mesh, id: i64) -> Value {
    let job = api::wait_job(mesh, id, "ended", PATIENCE, |j| {
        matches!(
            j["status"].as_str(),
            Some("successful" | "failed" | "error" | "canceled")
        )
    });
    assert_eq!(
        job["status"],
        "error",
        "{job:#}\n{}",
        mesh.coordinator_log()
    );
    job
}

/// Waits until neither end lists a unit any more.
fn wait_no_units(mesh: &Mesh, node: &str) -> Duration {
    let t = Instant::now();
    eventually(
        &format!("control and {node} to list no units"),
        PATIENCE,
        || (mesh.work_list("control").is_empty() && mesh.work_list(node).is_empty()).then_some(()),
    );
    t.elapsed()
}

/// The command lines of `node`'s processes that belong to a job (ansible-runner, ansible-playbook).
fn job_processes(mesh: &Mesh, node: &str) -> Vec<(i32, String)> {
    mesh.node_pids(node)
        .into_iter()
        .filter_map(|p| {
            let cmd = std::fs::read(format!("/proc/{p}/cmdline")).ok()?;
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            cmd.contains("ansible").then_some((p, cmd))
        })
        .collect()
}

fn release_lines(mesh: &Mesh) -> String {
    mesh.coordinator_log()
        .lines()
        .filter(|l| l.contains("release") && l.contains("unit"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn a_killed_node_ends_its_job_as_error_and_its_units_go_once_it_is_back() {
    const GRACE: u32 = 10;
    let mut mesh = mesh(
        &coordinator_config(GRACE, 5, 120),
        &[
            NodeSpec::new("nlk-exec1", "execution"),
            NodeSpec::new("nlk-exec2", "execution"),
        ],
    );
    let sha = project(&mesh);
    let group = api::create_group(&mesh, "lossy", 1, 0);
    api::set_group_member(&mesh, group, "nlk-exec1", true);
    api::set_group_member(&mesh, group, "nlk-exec2", true);

    let doomed = gated_job(
        &mesh,
        &sha,
        json!({"execution_node": "nlk-exec1", "instance_group": "lossy"}),
    );
    wait_at_gate(&mesh, doomed, "nlk-exec1");
    let held = api::submit_job(
        &mesh,
        &json!({"project": sha, "playbook": "hello.yml", "inventory": INVENTORY, "instance_group": "lossy"}),
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        api::job(&mesh, held)["status"],
        "pending",
        "held back by the group's limit"
    );
    let unit = api::job(&mesh, doomed)["work_unit_id"]
        .as_str()
        .expect("unit")
        .to_string();
    assert!(!job_processes(&mesh, "nlk-exec1").is_empty(), "a job runs");

    let killed = mesh.kill_node("nlk-exec1");
    let death = Instant::now();
    assert!(
        mesh.node_pids("nlk-exec1").is_empty(),
        "nothing of the node is left"
    );
    let job = wait_error(&mesh, doomed);
    let to_error = death.elapsed();
    let explanation = job["job_explanation"].as_str().unwrap_or("");
    let (counter, event) = last_event(&mesh, doomed);
    assert!(
        explanation.starts_with("Instance nlk-exec1 was lost: not routable since"),
        "{explanation}"
    );
    assert!(
        explanation.ends_with(&format!("the last event received was #{counter} ({event})")),
        "{explanation}"
    );

    // The held job is placed on the node that is still there.
    let ran = api::wait_job(&mesh, held, "ended", PATIENCE, |j| {
        j["status"] == "successful" || j["status"] == "error" || j["status"] == "failed"
    });
    assert_eq!(ran["status"], "successful", "{ran:#}");
    assert_eq!(ran["execution_node"], "nlk-exec2", "{ran:#}");
    assert!(api::job_stdout(&mesh, held).contains("ran on nlk-exec2"));

    // The dead node's unit stays on the controller until the node is back.
    assert!(
        mesh.work_list("control").contains_key(&unit),
        "unit {unit} kept while its node is away: {:?}",
        mesh.work_list("control")
    );
    mesh.restart_node("nlk-exec1");
    let back = Instant::now();
    let cleaned = wait_no_units(&mesh, "nlk-exec1");
    assert!(
        job_processes(&mesh, "nlk-exec1").is_empty(),
        "{:?}",
        job_processes(&mesh, "nlk-exec1")
    );
    // The job stays as node loss ended it.
    assert_eq!(api::job(&mesh, doomed)["job_explanation"], explanation);
    eprintln!(
        "FIGURE node killed ({} processes): job error after {:.1} s (grace {GRACE} s); units gone {:.1} s after restart ({:.1} s after back)\n{}",
        killed.processes,
        to_error.as_secs_f64(),
        back.elapsed().as_secs_f64(),
        cleaned.as_secs_f64(),
        release_lines(&mesh)
    );
}

#[test]
fn a_node_that_rebooted_within_the_grace_ends_its_job_as_error() {
    let boot_dir = tempfile::tempdir().expect("temp dir");
    let boot_file = boot_dir.path().join("boot_id");
    let first = "0b7e1c52-7d5a-4c33-9c1e-2d7f6f0a0001";
    let second = "0b7e1c52-7d5a-4c33-9c1e-2d7f6f0a0002";
    std::fs::write(&boot_file, format!("{first}\n")).expect("boot id");
    let mut mesh = mesh(
        &coordinator_config(120, 5, 120),
        &[NodeSpec::new("nlr-exec", "execution").agent_toml(&format!(
            "[capacity]\nboot_id_file = \"{}\"\n",
            boot_file.display()
        ))],
    );
    assert_eq!(
        mesh.instance("nlr-exec").and_then(|i| i.boot_id).as_deref(),
        Some(first)
    );
    let sha = project(&mesh);
    let id = gated_job(&mesh, &sha, json!({"execution_node": "nlr-exec"}));
    wait_at_gate(&mesh, id, "nlr-exec");

    mesh.kill_node("nlr-exec");
    let death = Instant::now();
    // A reboot takes longer than a discovery period: the coordinator sees the node leave (a
    // restart quicker than that is caught only as a stall, once keepalives stop).
    eventually("nlr-exec to be seen unroutable", PATIENCE, || {
        mesh.instance("nlr-exec").and_then(|i| i.unroutable_since)
    });
    std::fs::write(&boot_file, format!("{second}\n")).expect("new boot id");
    mesh.restart_node("nlr-exec");
    let job = wait_error(&mesh, id);
    let to_error = death.elapsed();
    let explanation = job["job_explanation"].as_str().unwrap_or("");
    let (counter, event) = last_event(&mesh, id);
    assert_eq!(
        explanation,
        format!(
            "Instance nlr-exec rebooted (boot id changed from {first} to {second}) while the job \
             was running; the last event received was #{counter} ({event})"
        ),
        "{}",
        mesh.coordinator_log()
    );
    let cleaned = wait_no_units(&mesh, "nlr-exec");
    assert!(job_processes(&mesh, "nlr-exec").is_empty());
    eprintln!(
        "FIGURE node rebooted: job error {:.1} s after the kill (grace 120 s, not reached); units gone {:.1} s later\n{}",
        to_error.as_secs_f64(),
        cleaned.as_secs_f64(),
        release_lines(&mesh)
    );
}

#[test]
fn a_worker_that_stops_writing_is_stalled_while_a_quiet_one_with_keepalives_is_not() {
    const KEEPALIVE: u32 = 2;
    const STALL: u32 = 8;
    let mesh = mesh(
        &coordinator_config(120, KEEPALIVE, STALL),
        &[NodeSpec::new("nls-exec", "execution")],
    );
    let sha = project(&mesh);
    let id = gated_job(&mesh, &sha, json!({"execution_node": "nls-exec"}));
    wait_at_gate(&mesh, id, "nls-exec");

    // Silent at the gate for twice the allowance: keepalives keep it alive.
    std::thread::sleep(Duration::from_secs(u64::from(STALL) * 2));
    let job = api::job(&mesh, id);
    assert_eq!(job["status"], "running", "{job:#}");

    let stopped = job_processes(&mesh, "nls-exec");
    assert!(!stopped.is_empty(), "the worker runs");
    for (pid, _) in &stopped {
        let _ = kill(Pid::from_raw(*pid), Signal::SIGSTOP);
    }
    let frozen = Instant::now();
    let job = wait_error(&mesh, id);
    let to_error = frozen.elapsed();
    for (pid, _) in &stopped {
        let _ = kill(Pid::from_raw(*pid), Signal::SIGCONT);
    }
    let explanation = job["job_explanation"].as_str().unwrap_or("");
    let (counter, event) = last_event(&mesh, id);
    assert!(
        explanation.starts_with("The job stalled on instance nls-exec: no output for"),
        "{explanation}"
    );
    assert!(
        explanation.ends_with(&format!(
            "although the worker sends a keepalive line every {KEEPALIVE} s; the last event received was #{counter} ({event})"
        )),
        "{explanation}"
    );
    // The coordinator had receptor cancel the unit. The agent stops ansible-runner, but an
    // ansible-playbook that was stopped meanwhile can outlive it (killing the worker's whole
    // process tree on cancel belongs to cancel handling): what is left is reported, then
    // killed here, and nothing may survive that.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !job_processes(&mesh, "nls-exec").is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    let left = job_processes(&mesh, "nls-exec");
    for (pid, _) in &left {
        let _ = kill(Pid::from_raw(*pid), Signal::SIGKILL);
    }
    eventually("no job process on nls-exec", PATIENCE, || {
        job_processes(&mesh, "nls-exec").is_empty().then_some(())
    });
    let cleaned = wait_no_units(&mesh, "nls-exec");
    eprintln!(
        "FIGURE stalled: job error {:.1} s after SIGSTOP (allowance {STALL} s, keepalive {KEEPALIVE} s); \
         units gone {:.1} s later; left after the cancel (killed by the test): {left:?}",
        to_error.as_secs_f64(),
        cleaned.as_secs_f64()
    );
}
