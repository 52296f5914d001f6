//! A coordinator that dies at any moment of a job — SIGKILLed mid-run, or crashed by a test
//! failpoint right after receptor named the unit or half-way through the payload — is restarted
//! and reconciles the job with the control node's `work list` by its tag: the job completes,
//! every event is stored exactly once, and the playbook runs exactly once. A receptor restarted
//! on the execution node mid-run does not lose the job either.
//!
//! Real receptor (control ← exec1) and ansible-runner on the host. `SOAK_RUNS=N` repeats each
//! scenario N times and prints the events lost and duplicated in total (`make soak`).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use meshrun_coordinator::store::EventRow;
use meshrun_shared::control_socket::UnitStatus;
use meshrun_tests::api;
use meshrun_tests::mesh::{Mesh, NodeSpec};
use meshrun_tests::wait::eventually;
use serde_json::{Value, json};

const INVENTORY: &str = "localhost ansible_connection=local ansible_python_interpreter=\"{{ ansible_playbook_python }}\"\n";

/// Items of the slow loop: one `runner_item_on_ok` event (and one stdout line) each.
const ITEMS: i64 = 90;

/// `n` items of `sleep tick`, then one line appended to `marker` (so a second run shows).
const PLAYBOOK: &str = r#"- hosts: all
  gather_facts: false
  tasks:
    - name: tick
      ansible.builtin.command: "sleep {{ tick }}"
      loop: "{{ range(0, n | int) | list }}"
    - name: record the run
      ansible.builtin.shell: "echo ran >> {{ marker }}"
"#;

fn mesh() -> Mesh {
    let mut mesh = Mesh::start(&[
        NodeSpec::new("control", "control").listening(),
        NodeSpec::new("exec1", "execution").dialing("control"),
    ]);
    mesh.wait_routable("control", &["exec1"]);
    mesh.start_coordinator("control");
    mesh.wait_discovered(&["control", "exec1"]);
    api::wait_ready(&mesh, "exec1");
    mesh
}

fn upload(mesh: &Mesh) -> String {
    let dir = mesh.dir().join("project");
    std::fs::create_dir_all(&dir).expect("project dir");
    std::fs::write(dir.join("slow.yml"), PLAYBOOK).expect("playbook");
    api::upload_project(mesh, &dir)
}

/// A job of `n` items of `tick` seconds on exec1 whose run is recorded in `marker`.
fn submit(mesh: &Mesh, sha: &str, n: i64, tick: f64, marker: &Path) -> i64 {
    api::submit_job(
        mesh,
        &json!({
            "project": sha,
            "playbook": "slow.yml",
            "inventory": INVENTORY,
            "execution_node": "exec1",
            "extra_vars": { "n": n, "tick": tick, "marker": marker.display().to_string() },
        }),
    )
}

fn stored_events(mesh: &Mesh, id: i64) -> Vec<EventRow> {
    mesh.read_store(async |s| s.events(id, 0, 100_000).await)
}

fn event_count(mesh: &Mesh, id: i64) -> usize {
    mesh.read_store(async |s| s.event_count(id).await) as usize
}

fn stored_job(mesh: &Mesh, id: i64) -> meshrun_coordinator::store::Job {
    mesh.read_store(async |s| s.job(id).await)
        .unwrap_or_else(|| panic!("job {id} is not stored"))
}

fn wait_end(mesh: &Mesh, id: i64) -> Value {
    api::wait_job(mesh, id, "ended", Duration::from_secs(600), |j| {
        matches!(
            j["status"].as_str(),
            Some("successful" | "failed" | "error" | "canceled")
        )
    })
}

/// The units of `node`'s `work list` that belong to job `id` (by tag or private data dir).
fn job_units(mesh: &Mesh, node: &str, id: i64) -> BTreeMap<String, UnitStatus> {
    mesh.work_list(node)
        .into_iter()
        .filter(|(_, u)| meshrun_coordinator::runner::reconcile::names_job(u, id))
        .collect()
}

/// exec1's units that run job `id` (named for it, or the remote end of a control unit named
/// for it), and exec1's units no control unit accounts for (leftovers).
fn exec_units(mesh: &Mesh, id: i64) -> (usize, usize) {
    let control = mesh.work_list("control");
    let remote_end = |u: &UnitStatus| {
        u.extra_data
            .get("RemoteUnitID")
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    let of_job: Vec<String> = control
        .values()
        .filter(|u| meshrun_coordinator::runner::reconcile::names_job(u, id))
        .filter_map(remote_end)
        .collect();
    let known: Vec<String> = control.values().filter_map(remote_end).collect();
    let exec = mesh.work_list("exec1");
    let for_job = exec
        .iter()
        .filter(|(uid, u)| {
            of_job.contains(uid) || meshrun_coordinator::runner::reconcile::names_job(u, id)
        })
        .count();
    let orphans = exec.keys().filter(|uid| !known.contains(uid)).count();
    (for_job, orphans)
}

fn marker_lines(marker: &Path) -> usize {
    std::fs::read_to_string(marker)
        .map(|t| t.lines().count())
        .unwrap_or(0)
}

/// Events lost and duplicated: counters must be exactly 1..=N ending with the stats event, and
/// each loop item must appear exactly once in stdout.
#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    lost: usize,
    duplicated: usize,
}

impl Tally {
    fn add(&mut self, other: Tally) {
        self.lost += other.lost;
        self.duplicated += other.duplicated;
    }

    fn report(&self, scenario: &str) {
        eprintln!(
            "SOAK {scenario}: runs {}, events lost {} duplicated {}",
            soak_runs(),
            self.lost,
            self.duplicated
        );
    }
}

fn tally(events: &[EventRow], stdout: &str, items: i64) -> Tally {
    let mut t = Tally::default();
    let max = events.iter().map(|e| e.counter).max().unwrap_or(0);
    let mut seen = std::collections::BTreeSet::new();
    for e in events {
        if !seen.insert(e.counter) {
            t.duplicated += 1;
        }
    }
    t.lost += (1..=max).filter(|c| !seen.contains(c)).count();
    if events
        .iter()
        .find(|e| e.counter == max)
        .map(|e| e.event.as_str())
        != Some("playbook_on_stats")
    {
        // The end of the stream is missing.
        t.lost += 1;
    }
    for k in 0..items {
        match stdout.matches(&format!("(item={k})")).count() {
            0 => t.lost += 1,
            1 => {}
            more => t.duplicated += more - 1,
        }
    }
    t
}

fn soak_runs() -> usize {
    std::env::var("SOAK_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
        .max(1)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

fn describe(mesh: &Mesh, id: i64) -> String {
    format!(
        "job {id}: {:#}\n--- coordinator logs\n{}",
        api::job(mesh, id),
        mesh.coordinator_logs()
    )
}

/// Checks a finished job: successful, every event once, every item once, one run.
fn check_complete(mesh: &Mesh, id: i64, items: i64, marker: &Path) -> Tally {
    let done = wait_end(mesh, id);
    assert_eq!(done["status"], "successful", "{}", describe(mesh, id));
    let events = stored_events(mesh, id);
    let stdout = api::job_stdout(mesh, id);
    let t = tally(&events, &stdout, items);
    assert_eq!(
        (t.lost, t.duplicated),
        (0, 0),
        "events lost/duplicated; stdout:\n{stdout}\n{}",
        describe(mesh, id)
    );
    assert!(stdout.contains("PLAY RECAP"), "{stdout}");
    assert_eq!(marker_lines(marker), 1, "the playbook ran once");
    // Nothing of the job is left on either end.
    eventually(
        "the job's units to be released",
        Duration::from_secs(60),
        || {
            (job_units(mesh, "control", id).is_empty() && exec_units(mesh, id) == (0, 0))
                .then_some(())
        },
    );
    t
}

#[test]
fn a_job_survives_three_coordinator_kills_with_every_event_once() {
    let runs = soak_runs();
    let mut mesh = mesh();
    let sha = upload(&mesh);
    let mut total = Tally::default();
    let mut resumes = Vec::new();
    for run in 0..runs {
        let marker = mesh.dir().join(format!("ran-restart-{run}"));
        let id = submit(&mesh, &sha, ITEMS, 0.1, &marker);
        for kill in 0..3 {
            // Kill while output flows: a few more events than at the last restart.
            let floor = event_count(&mesh, id) + 5;
            eventually(
                &format!("job {id} to emit events before kill {kill}"),
                Duration::from_secs(300),
                || (event_count(&mesh, id) >= floor).then_some(()),
            );
            let before = event_count(&mesh, id);
            mesh.kill_coordinator();
            std::thread::sleep(Duration::from_millis(500));
            mesh.restart_coordinator();
            let restarted = Instant::now();
            let end = stored_job(&mesh, id).status.is_final();
            if !end {
                eventually(
                    &format!("job {id}'s output to flow after restart {kill}"),
                    Duration::from_secs(300),
                    || {
                        (event_count(&mesh, id) > before || stored_job(&mesh, id).status.is_final())
                            .then_some(())
                    },
                );
                resumes.push(restarted.elapsed());
            }
        }
        let t = check_complete(&mesh, id, ITEMS, &marker);
        total.add(t);
        eprintln!(
            "restart run {}/{runs}: {} events, lost {} duplicated {}",
            run + 1,
            event_count(&mesh, id),
            t.lost,
            t.duplicated
        );
    }
    eprintln!(
        "SOAK coordinator restarts: runs {runs}, restarts {}, events lost {} duplicated {}; \
         restart to output flowing: median {:?} (n = {})",
        runs * 3,
        total.lost,
        total.duplicated,
        median(resumes.clone()),
        resumes.len()
    );
}

/// Arms `failpoint` in a restarted coordinator, submits a job that crashes it, and returns
/// the job id and the units it left in the control node's `work list`.
fn crash_at(mesh: &mut Mesh, sha: &str, failpoint: &str, marker: &Path) -> (i64, Vec<String>) {
    mesh.kill_coordinator();
    mesh.restart_coordinator_env(&[("MESHRUN_FAILPOINT", failpoint)]);
    let id = submit(mesh, sha, 20, 0.1, marker);
    let status = mesh.wait_coordinator_exit(Duration::from_secs(120));
    assert!(
        !status.success(),
        "the failpoint must crash the coordinator"
    );
    let job = stored_job(mesh, id);
    assert_eq!(
        job.status.as_str(),
        "submitting",
        "{job:?}\n{}",
        mesh.coordinator_logs()
    );
    let units: Vec<String> = job_units(mesh, "control", id).into_keys().collect();
    (id, units)
}

#[test]
fn a_unit_created_but_not_recorded_is_found_by_its_tag_not_duplicated() {
    let mut mesh = mesh();
    let sha = upload(&mesh);
    let mut total = Tally::default();
    for run in 0..soak_runs() {
        let marker = mesh.dir().join(format!("ran-after-submit-{run}"));
        let (id, units) = crash_at(&mut mesh, &sha, "abort_after_submit", &marker);
        assert_eq!(units.len(), 1, "one unit named before the crash: {units:?}");
        assert_eq!(stored_job(&mesh, id).work_unit_id, None, "not recorded yet");
        mesh.restart_coordinator();
        // While the job runs: one unit for it on the control node and one on exec1.
        eventually(
            &format!("job {id} to run on exactly one unit"),
            Duration::from_secs(300),
            || {
                let job = stored_job(&mesh, id);
                let control = job_units(&mesh, "control", id);
                // One unit on exec1 runs the job; none is left over (the released one gone).
                (job.status.as_str() == "running"
                    && control.len() == 1
                    && exec_units(&mesh, id) == (1, 0))
                    .then_some(())
            },
        );
        total.add(check_complete(&mesh, id, 20, &marker));
    }
    total.report("abort_after_submit");
}

#[test]
fn a_payload_cut_half_way_is_released_and_the_job_runs_once() {
    let mut mesh = mesh();
    let sha = upload(&mesh);
    let mut total = Tally::default();
    for run in 0..soak_runs() {
        let marker = mesh.dir().join(format!("ran-mid-payload-{run}"));
        let (id, units) = crash_at(&mut mesh, &sha, "abort_mid_payload", &marker);
        assert_eq!(units.len(), 1, "one unit got half a payload: {units:?}");
        let cut = units[0].clone();
        // receptor started the unit with the half it got; the worker refuses it, runs nothing.
        let out = mesh.output("control", &cut, Duration::from_secs(120));
        let text = String::from_utf8_lossy(&out);
        assert!(
            text.contains("\"status\": \"error\"") && !text.contains("\"counter\""),
            "the half payload must be refused before anything runs: {text}"
        );
        mesh.restart_coordinator();
        total.add(check_complete(&mesh, id, 20, &marker));
        let job = stored_job(&mesh, id);
        assert_ne!(job.work_unit_id.as_deref(), Some(cut.as_str()));
        assert!(
            !mesh.work_list("control").contains_key(&cut),
            "the cut unit is released"
        );
    }
    total.report("abort_mid_payload");
}

#[test]
fn a_receptor_restart_on_the_execution_node_loses_nothing() {
    let mut mesh = mesh();
    let sha = upload(&mesh);
    let mut total = Tally::default();
    for run in 0..soak_runs() {
        let marker = mesh.dir().join(format!("ran-exec-restart-{run}"));
        let id = submit(&mesh, &sha, 60, 0.1, &marker);
        eventually(
            &format!("job {id} to emit events"),
            Duration::from_secs(300),
            || (event_count(&mesh, id) >= 10).then_some(()),
        );
        let runners = worker_pids(&mesh, id);
        mesh.stop_node("exec1");
        // The job's processes outlive their receptor.
        assert!(
            runners.iter().any(|p| alive(*p)),
            "the job's worker died with receptor: {runners:?}"
        );
        std::thread::sleep(Duration::from_secs(2));
        mesh.restart_node("exec1");
        total.add(check_complete(&mesh, id, 60, &marker));
    }
    total.report("exec receptor restart");
}

#[test]
fn a_unit_released_while_the_coordinator_was_down_ends_its_job_as_error() {
    let mut mesh = mesh();
    let sha = upload(&mesh);
    let marker = mesh.dir().join("ran-released");
    let id = submit(&mesh, &sha, 60, 0.1, &marker);
    eventually(
        &format!("job {id} to emit events"),
        Duration::from_secs(300),
        || (event_count(&mesh, id) >= 5).then_some(()),
    );
    mesh.kill_coordinator();
    let unit = stored_job(&mesh, id)
        .work_unit_id
        .expect("a running job has its unit recorded");
    mesh.release("control", &unit);
    eventually("the unit to be gone", Duration::from_secs(60), || {
        (!mesh.work_list("control").contains_key(&unit)).then_some(())
    });
    mesh.restart_coordinator();
    let done = wait_end(&mesh, id);
    assert_eq!(done["status"], "error", "{}", describe(&mesh, id));
    let explanation = done["job_explanation"].as_str().unwrap_or_default();
    assert!(
        explanation.contains(&unit) && explanation.contains("no longer known"),
        "{explanation}"
    );
    eventually(
        "nothing of the job left on exec1",
        Duration::from_secs(60),
        || (exec_units(&mesh, id) == (0, 0)).then_some(()),
    );
}

/// The PIDs of the processes running job `id` on exec1 (its worker command and descendants).
fn worker_pids(mesh: &Mesh, id: i64) -> Vec<i32> {
    let units = eventually("the job's unit on exec1", Duration::from_secs(60), || {
        let u = job_units(mesh, "exec1", id);
        (!u.is_empty()).then_some(u)
    });
    units
        .values()
        .filter_map(|u| u.extra_data.get("Pid").and_then(Value::as_i64))
        .map(|p| p as i32)
        .collect()
}

fn alive(pid: i32) -> bool {
    meshrun_tests::mesh::managed_control::alive(pid)
}
