//! `bench-jobs [RUNS] [--skip-mesh] [--skip-codec]`: the job path's costs against the real
//! alternatives, on this machine, in one run.
//!
//! 1. Scheduler: `placement::place` over 1,000 nodes and 10,000 pending jobs (decisions/s).
//!    AWX's best published task-manager figure is 142 jobs/s; it is cited, not run here.
//! 2. Stream codec: `meshrun transmit` vs `ansible-runner transmit` on a generated 50 MB,
//!    5,000-file private data dir, and `meshrun process` vs `ansible-runner process` on a
//!    generated 100,000-event worker stream (wall time and peak RSS from `/usr/bin/time -v`).
//!    Both sides deflate at level 6 (Python's zipfile default; the zip crate's default).
//! 3. Event ingestion: `Store::record_events` in batches of 200 into a temp SQLite database.
//! 4. Dispatch: on a real control ← exec mesh (exec in host mode) with the coordinator, time
//!    from `POST /api/v2/jobs/` until the exec node's `work list` shows the unit running, vs a
//!    bare `work submit` of an equivalent transmit stream through the control node's socket.
//!
//! Build first: `cargo build --release -p meshrun-coordinator -p meshrun-agent -p
//! meshrun-tests`, then `cargo run --release -p meshrun-tests --bin bench-jobs`.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{BufWriter, Cursor, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use meshrun_coordinator::scheduler::placement::{Decision, GroupView, JobView, NodeView, place};
use meshrun_coordinator::store::{EventRow, NewJob, Store};
use meshrun_shared::control_socket::UnitState;
use meshrun_shared::node_type::NodeType;
use meshrun_shared::runner_stream::archive::zip_dir;
use meshrun_shared::runner_stream::{
    RunnerKwargs, write_eof, write_json_line, write_transmit_stream, write_zip_frame,
};
use meshrun_tests::env;
use meshrun_tests::mesh::{Mesh, NodeSpec};
use meshrun_tests::wait::eventually;
use serde_json::{Value, json};

const AWX_JOBS_PER_SEC: f64 = 142.0;

/// A deterministic xorshift generator (no dependency needed for filler data).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    if s.is_empty() {
        return f64::NAN;
    }
    let n = s.len();
    if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

fn list(v: &[f64], unit: &str) -> String {
    v.iter()
        .map(|x| format!("{x:.3}{unit}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// One line of the final table.
struct Figure {
    what: String,
    value: String,
    goal: String,
    met: Option<bool>,
}

fn figure(what: &str, value: String, goal: &str, met: Option<bool>) -> Figure {
    Figure {
        what: what.into(),
        value,
        goal: goal.into(),
        met,
    }
}

// ---------------------------------------------------------------------------------------------
// 1. Scheduler
// ---------------------------------------------------------------------------------------------

fn scheduler_snapshot() -> (Vec<NodeView>, Vec<GroupView>, Vec<JobView>) {
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    let mut nodes = Vec::new();
    for i in 0..3 {
        nodes.push(NodeView {
            hostname: format!("control-{i}"),
            node_type: NodeType::Control,
            capacity: 4000,
            consumed: 0,
            jobs: 0,
        });
    }
    for i in 0..7 {
        nodes.push(NodeView {
            hostname: format!("hybrid-{i}"),
            node_type: NodeType::Hybrid,
            capacity: 100 + 50 * (i as i64 % 3),
            consumed: 0,
            jobs: 0,
        });
    }
    for i in 0..990 {
        // Mixed capacities (as from 2-32 CPUs / 4-128 GiB), some busy, a few not ready.
        let capacity = if i % 97 == 0 {
            0
        } else {
            [20, 40, 60, 120, 240][rng.below(5) as usize]
        };
        let jobs = rng.below(3) as i64;
        nodes.push(NodeView {
            hostname: format!("exec-{i:04}"),
            node_type: NodeType::Execution,
            capacity,
            consumed: jobs * 3,
            jobs,
        });
    }
    let members = |pred: &dyn Fn(usize) -> bool| -> Vec<String> {
        nodes
            .iter()
            .enumerate()
            .filter(|(i, n)| n.node_type != NodeType::Control && pred(*i))
            .map(|(_, n)| n.hostname.clone())
            .collect()
    };
    let groups = vec![
        GroupView {
            name: "default".into(),
            members: members(&|_| true),
            max_concurrent_jobs: 0,
            max_forks: 0,
            jobs: 0,
            forks: 0,
        },
        GroupView {
            name: "east".into(),
            members: members(&|i| i % 2 == 0),
            max_concurrent_jobs: 2000,
            max_forks: 0,
            jobs: 0,
            forks: 0,
        },
        GroupView {
            name: "west".into(),
            members: members(&|i| i % 2 == 1 && i < 500),
            max_concurrent_jobs: 0,
            max_forks: 20000,
            jobs: 0,
            forks: 0,
        },
    ];
    let jobs = (0..10_000)
        .map(|id| {
            let hosts = 1 + rng.below(10) as i64;
            let forks = 5;
            let group = ["default", "default", "east", "west"][rng.below(4) as usize];
            JobView {
                id,
                // AWX: min(hosts, forks) + 1.
                task_impact: hosts.min(forks) + 1,
                forks,
                group: group.into(),
                control_only: id % 100 == 7,
                only_node: (id % 100 == 13).then(|| format!("exec-{:04}", rng.below(990))),
            }
        })
        .collect();
    (nodes, groups, jobs)
}

fn bench_scheduler(runs: usize, figures: &mut Vec<Figure>) {
    let (nodes, groups, jobs) = scheduler_snapshot();
    let mut rates = Vec::new();
    let mut placed = 0;
    for _ in 0..runs.max(5) {
        let t = Instant::now();
        let out = place(&nodes, &groups, &jobs);
        let secs = t.elapsed().as_secs_f64();
        placed = out
            .iter()
            .filter(|d| matches!(d, Decision::Placed { .. }))
            .count();
        std::hint::black_box(&out);
        rates.push(jobs.len() as f64 / secs);
    }
    let m = median(&rates);
    println!(
        "scheduler: 1000 nodes, 10000 jobs -> {placed} placed, {} pending; decisions/s per run: {}",
        jobs.len() - placed,
        rates
            .iter()
            .map(|r| format!("{r:.0}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    figures.push(figure(
        "scheduler: decisions/s, 1,000 nodes x 10,000 pending jobs (median)",
        format!(
            "{m:.0}/s ({placed} placed, {} pending; {:.0}x AWX's 142/s)",
            jobs.len() - placed,
            m / AWX_JOBS_PER_SEC
        ),
        ">= 10,000/s",
        Some(m >= 10_000.0),
    ));
}

// ---------------------------------------------------------------------------------------------
// 2. Stream codec
// ---------------------------------------------------------------------------------------------

/// A timed child run: wall seconds and peak RSS (KiB) from `/usr/bin/time -v`.
struct Measured {
    wall: f64,
    rss_kib: u64,
}

fn time_v(program: &Path, args: &[&str], stdin: Option<&Path>, stdout: &Path) -> Measured {
    let report = stdout.with_extension("time");
    let mut cmd = Command::new("/usr/bin/time");
    cmd.arg("-v")
        .arg("-o")
        .arg(&report)
        .arg(program)
        .args(args)
        .stdout(File::create(stdout).expect("stdout file"))
        .stderr(Stdio::piped());
    if let Some(input) = stdin {
        cmd.stdin(File::open(input).expect("stdin file"));
    }
    let t = Instant::now();
    let out = cmd.output().expect("/usr/bin/time");
    let wall = t.elapsed().as_secs_f64();
    assert!(
        out.status.success(),
        "{} {args:?} failed: {}",
        program.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&report).expect("time report");
    let rss_kib = text
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("Maximum resident set size (kbytes): ")
        })
        .and_then(|v| v.trim().parse().ok())
        .expect("max RSS in the time report");
    Measured { wall, rss_kib }
}

/// 5,000 files, about 50 MB: mostly YAML-like text (compressible), a fifth random bytes.
fn make_project(pdd: &Path) -> u64 {
    let mut rng = Rng(0x00c0_ffee_0000_0005);
    let words = [
        "name:",
        "hosts:",
        "tasks:",
        "ansible.builtin.copy",
        "dest:",
        "src:",
        "when:",
        "loop:",
        "register:",
        "vars:",
        "- ",
        "{{",
        "}}",
        "item",
        "result",
        "changed_when:",
        "true",
        "false",
        "notify:",
        "restart",
        "service",
        "template",
        "/etc/app/config.yml",
        "mode:",
        "'0644'",
        "owner:",
        "root",
        "become:",
        "yes",
    ];
    let project = pdd.join("project");
    std::fs::create_dir_all(pdd.join("inventory")).expect("inventory dir");
    std::fs::write(
        pdd.join("inventory/hosts"),
        "localhost ansible_connection=local\n",
    )
    .expect("inventory");
    std::fs::create_dir_all(&project).expect("project dir");
    std::fs::write(
        project.join("p.yml"),
        "- hosts: all\n  gather_facts: false\n  tasks:\n    - ansible.builtin.debug: msg=hi\n",
    )
    .expect("playbook");
    let mut total = 0u64;
    for i in 0..4999u64 {
        let dir = project.join(format!("roles/role{:03}/files", i / 50));
        std::fs::create_dir_all(&dir).expect("role dir");
        let size = 2_000 + rng.below(18_000) as usize;
        let mut data = Vec::with_capacity(size + 32);
        if i % 5 == 4 {
            while data.len() < size {
                data.extend_from_slice(&rng.next().to_le_bytes());
            }
            data.truncate(size);
        } else {
            while data.len() < size {
                data.extend_from_slice(words[rng.below(words.len() as u64) as usize].as_bytes());
                data.push(if rng.below(8) == 0 { b'\n' } else { b' ' });
            }
        }
        total += data.len() as u64;
        std::fs::write(dir.join(format!("f{i:04}.txt")), &data).expect("project file");
    }
    total
}

fn event(counter: u64, ident: &str, line: &mut u64, task: u64) -> Value {
    let kind =
        ["playbook_on_task_start", "runner_on_start", "runner_on_ok"][(counter % 3) as usize];
    let task_uuid = format!("02fc0000-0001-e584-97ba-{task:012x}");
    let uuid = format!("{:08x}-963b-4859-bc9f-{counter:012x}", counter as u32);
    let mut data = json!({
        "playbook": "play.yml",
        "playbook_uuid": "92f3e9ac-4988-4801-86ca-4ac0dfc624df",
        "play": "localhost",
        "play_uuid": "02fc0000-0001-e584-97ba-000000000002",
        "play_pattern": "localhost",
        "task": format!("step {task}"),
        "task_uuid": task_uuid,
        "task_action": "debug",
        "resolved_action": "ansible.builtin.debug",
        "task_args": "",
        "task_path": "/runner/project/play.yml:5",
        "uuid": uuid,
    });
    let stdout = match kind {
        "playbook_on_task_start" => {
            data["name"] = json!(format!("step {task}"));
            data["is_conditional"] = json!(false);
            format!("\r\nTASK [step {task}] {}", "*".repeat(63))
        }
        "runner_on_start" => {
            data["host"] = json!("localhost");
            String::new()
        }
        _ => {
            data["host"] = json!("localhost");
            data["remote_addr"] = json!("localhost");
            data["res"] = json!({"msg": format!("hello number {counter}"), "_ansible_verbose_always": true, "_ansible_no_log": false, "changed": false});
            data["start"] = json!("2026-11-27T19:37:42.836465+00:00");
            data["end"] = json!("2026-11-27T19:37:42.861200+00:00");
            data["duration"] = json!(0.024735);
            data["event_loop"] = Value::Null;
            format!("ok: [localhost] => {{\r\n    \"msg\": \"hello number {counter}\"\r\n}}")
        }
    };
    let lines = stdout.matches('\n').count() as u64 + u64::from(!stdout.is_empty());
    let start = *line;
    *line += lines;
    json!({
        "uuid": uuid,
        "counter": counter,
        "stdout": stdout,
        "start_line": start,
        "end_line": *line,
        "runner_ident": ident,
        "event": kind,
        "pid": 4538,
        "created": "2026-11-27T19:37:42.835756+00:00",
        "parent_uuid": task_uuid,
        "event_data": data,
    })
}

/// A worker stream: starting, running, `events` events, successful, artifacts zip, eof.
fn make_worker_stream(path: &Path, events: u64, scratch: &Path) -> u64 {
    let ident = "a8e970b22dc047529c587eeb119af1b8";
    let mut out = BufWriter::new(File::create(path).expect("stream file"));
    let env: serde_json::Map<String, Value> = (0..30)
        .map(|i| (format!("VAR_{i}"), json!(format!("value-{i}"))))
        .collect();
    let mut n = 0;
    n += write_json_line(
        &mut out,
        &json!({"status": "starting", "runner_ident": ident,
                "command": ["ansible-playbook", "-i", "/runner/inventory", "play.yml"],
                "env": env, "cwd": "/runner/project"}),
    )
    .expect("write");
    n += write_json_line(
        &mut out,
        &json!({"status": "running", "runner_ident": ident}),
    )
    .expect("write");
    let mut line = 0;
    let mut stdout_text = String::new();
    for c in 1..=events {
        let e = event(c, ident, &mut line, c / 3 + 4);
        if c % 1000 == 0 {
            stdout_text.push_str(e["stdout"].as_str().unwrap_or(""));
            stdout_text.push('\n');
        }
        n += write_json_line(&mut out, &e).expect("write");
    }
    n += write_json_line(
        &mut out,
        &json!({"status": "successful", "runner_ident": ident}),
    )
    .expect("write");
    let art = scratch.join("artifacts-src");
    std::fs::create_dir_all(&art).expect("artifacts src");
    std::fs::write(art.join("rc"), "0").expect("rc");
    std::fs::write(art.join("status"), "successful").expect("status");
    std::fs::write(art.join("stdout"), &stdout_text).expect("stdout");
    std::fs::write(art.join("stderr"), "").expect("stderr");
    std::fs::write(
        art.join("command"),
        r#"{"command": ["ansible-playbook", "play.yml"], "cwd": "/runner/project", "env": {}}"#,
    )
    .expect("command");
    let mut zip = zip_dir(&art, Cursor::new(Vec::new()), None).expect("artifacts zip");
    n += write_zip_frame(&mut out, &mut zip).expect("zip frame");
    n += write_eof(&mut out).expect("eof");
    out.flush().expect("flush");
    n
}

fn mib(b: u64) -> f64 {
    b as f64 / (1024.0 * 1024.0)
}

fn bench_codec(runs: usize, figures: &mut Vec<Figure>) {
    let meshrun = env::bin("meshrun");
    let runner = env::ansible_runner();
    let tmp = tempfile::Builder::new()
        .prefix("bench-jobs.")
        .tempdir()
        .expect("temp dir");
    let pdd = tmp.path().join("pdd");
    let t = Instant::now();
    let raw = make_project(&pdd);
    println!(
        "codec: generated a 5,000-file project of {:.1} MiB in {:.1} s",
        mib(raw),
        t.elapsed().as_secs_f64()
    );
    let pdd_s = pdd.display().to_string();
    let (mut m_wall, mut m_rss, mut p_wall, mut p_rss) = (vec![], vec![], vec![], vec![]);
    let (mut m_size, mut p_size) = (0, 0);
    for _ in 0..runs {
        let out = tmp.path().join("m.out");
        let m = time_v(&meshrun, &["transmit", &pdd_s, "-p", "p.yml"], None, &out);
        m_size = std::fs::metadata(&out).expect("out").len();
        m_wall.push(m.wall);
        m_rss.push(m.rss_kib as f64 / 1024.0);
        let out = tmp.path().join("p.out");
        let p = time_v(&runner, &["transmit", &pdd_s, "-p", "p.yml"], None, &out);
        p_size = std::fs::metadata(&out).expect("out").len();
        p_wall.push(p.wall);
        p_rss.push(p.rss_kib as f64 / 1024.0);
    }
    println!(
        "transmit meshrun wall: {}; RSS MiB: {}",
        list(&m_wall, "s"),
        list(&m_rss, "")
    );
    println!(
        "transmit ansible-runner wall: {}; RSS MiB: {}",
        list(&p_wall, "s"),
        list(&p_rss, "")
    );
    println!(
        "transmit output: meshrun {m_size} B ({:.2} MiB), ansible-runner {p_size} B ({:.2} MiB)",
        mib(m_size),
        mib(p_size)
    );
    let speed = median(&p_wall) / median(&m_wall);
    let rss = median(&m_rss) / median(&p_rss);
    figures.push(figure(
        "transmit 50 MB/5,000 files: wall, meshrun vs ansible-runner (median)",
        format!(
            "{:.3} s vs {:.3} s = {speed:.1}x faster",
            median(&m_wall),
            median(&p_wall)
        ),
        ">= 10x",
        Some(speed >= 10.0),
    ));
    figures.push(figure(
        "transmit: peak RSS, meshrun vs ansible-runner (median)",
        format!(
            "{:.1} MiB vs {:.1} MiB = {rss:.2}",
            median(&m_rss),
            median(&p_rss)
        ),
        "<= 0.20",
        Some(rss <= 0.20),
    ));
    figures.push(figure(
        "transmit: output size, meshrun vs ansible-runner (both deflate level 6)",
        format!(
            "{:.2} MiB vs {:.2} MiB ({:+.2}%)",
            mib(m_size),
            mib(p_size),
            (m_size as f64 / p_size as f64 - 1.0) * 100.0
        ),
        "-",
        None,
    ));
    std::fs::remove_dir_all(&pdd).expect("remove project");

    let stream = tmp.path().join("worker.stream");
    let events = 100_000;
    let bytes = make_worker_stream(&stream, events, tmp.path());
    println!(
        "process: generated a {events}-event worker stream of {:.1} MiB",
        mib(bytes)
    );
    let (mut m_wall, mut m_rss, mut p_wall, mut p_rss) = (vec![], vec![], vec![], vec![]);
    for i in 0..runs {
        let dir = tmp.path().join(format!("m-proc{i}"));
        std::fs::create_dir_all(&dir).expect("dir");
        let out = tmp.path().join("m-proc.out");
        let m = time_v(
            &meshrun,
            &["process", &dir.display().to_string()],
            Some(&stream),
            &out,
        );
        let written = std::fs::read_dir(dir.join("artifacts/job_events"))
            .map(|d| d.count())
            .unwrap_or(0);
        assert_eq!(
            written, events as usize,
            "meshrun process wrote every event"
        );
        std::fs::remove_dir_all(&dir).expect("remove");
        m_wall.push(m.wall);
        m_rss.push(m.rss_kib as f64 / 1024.0);
        let dir = tmp.path().join(format!("p-proc{i}"));
        std::fs::create_dir_all(&dir).expect("dir");
        let out = tmp.path().join("p-proc.out");
        let p = time_v(
            &runner,
            &["process", &dir.display().to_string()],
            Some(&stream),
            &out,
        );
        std::fs::remove_dir_all(&dir).expect("remove");
        p_wall.push(p.wall);
        p_rss.push(p.rss_kib as f64 / 1024.0);
    }
    println!(
        "process meshrun wall: {}; RSS MiB: {}",
        list(&m_wall, "s"),
        list(&m_rss, "")
    );
    println!(
        "process ansible-runner wall: {}; RSS MiB: {}",
        list(&p_wall, "s"),
        list(&p_rss, "")
    );
    let speed = median(&p_wall) / median(&m_wall);
    let rss = median(&m_rss) / median(&p_rss);
    figures.push(figure(
        "process 100k events: wall, meshrun vs ansible-runner (median)",
        format!(
            "{:.2} s vs {:.2} s = {speed:.1}x faster ({:.0} vs {:.0} events/s)",
            median(&m_wall),
            median(&p_wall),
            events as f64 / median(&m_wall),
            events as f64 / median(&p_wall)
        ),
        ">= 10x",
        Some(speed >= 10.0),
    ));
    figures.push(figure(
        "process: peak RSS, meshrun vs ansible-runner (median)",
        format!(
            "{:.1} MiB vs {:.1} MiB = {rss:.2}",
            median(&m_rss),
            median(&p_rss)
        ),
        "<= 0.20",
        Some(rss <= 0.20),
    ));
}

// ---------------------------------------------------------------------------------------------
// 3. Event ingestion
// ---------------------------------------------------------------------------------------------

fn bench_ingest(runs: usize, figures: &mut Vec<Figure>) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let ident = "a8e970b22dc047529c587eeb119af1b8";
    let per_run = 50_000u64;
    let mut line = 0;
    let rows: Vec<EventRow> = (1..=per_run)
        .map(|c| {
            let e = event(c, ident, &mut line, c / 3 + 4);
            EventRow {
                counter: c as i64,
                uuid: e["uuid"].as_str().unwrap_or_default().into(),
                event: e["event"].as_str().unwrap_or_default().into(),
                start_line: e["start_line"].as_i64().unwrap_or(0),
                end_line: e["end_line"].as_i64().unwrap_or(0),
                stdout: e["stdout"].as_str().unwrap_or_default().into(),
                created: e["created"].as_str().map(String::from),
                data: e.to_string(),
            }
        })
        .collect();
    let mut rates = Vec::new();
    rt.block_on(async {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(&dir.path().join("bench.db"))
            .await
            .expect("store");
        for _ in 0..runs.max(3) {
            let job = store
                .create_job(&NewJob {
                    name: "bench".into(),
                    playbook: "play.yml".into(),
                    project_sha256: "0".repeat(64),
                    inventory: "localhost\n".into(),
                    extra_vars: "{}".into(),
                    limit: None,
                    forks: None,
                    verbosity: None,
                    requested_node: None,
                    task_impact: 2,
                    instance_group: "default".into(),
                    host_count: Some(1),
                    ..NewJob::default()
                })
                .await
                .expect("job");
            let t = Instant::now();
            let mut offset = 0u64;
            for batch in rows.chunks(200) {
                offset += batch.iter().map(|r| r.data.len() as u64 + 1).sum::<u64>();
                store
                    .record_events(job.id, batch, offset)
                    .await
                    .expect("record events");
            }
            rates.push(per_run as f64 / t.elapsed().as_secs_f64());
            assert_eq!(
                store.event_count(job.id).await.expect("count"),
                per_run as i64
            );
        }
        store.close().await;
    });
    println!(
        "ingest: {per_run} events/run in batches of 200; events/s per run: {}",
        rates
            .iter()
            .map(|r| format!("{r:.0}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let m = median(&rates);
    figures.push(figure(
        "event ingestion: Store::record_events, batches of 200 (median)",
        format!("{m:.0} events/s"),
        ">= 50,000/s",
        Some(m >= 50_000.0),
    ));
}

// ---------------------------------------------------------------------------------------------
// 4. Dispatch overhead
// ---------------------------------------------------------------------------------------------

/// Polls `node`'s `work list` every 5 ms (the harness's `eventually` polls every 100 ms, too
/// coarse here) until a unit not in `before` is running (or already past it).
fn until_new_unit_runs(mesh: &Mesh, node: &str, before: &BTreeSet<String>) -> Instant {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if mesh
            .work_list(node)
            .iter()
            .any(|(id, st)| !before.contains(id) && st.state != UnitState::Pending)
        {
            return Instant::now();
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    panic!("no new unit ran on {node} within 60 s");
}

fn bench_dispatch(runs: usize, figures: &mut Vec<Figure>) {
    let mut mesh = Mesh::start(&[
        NodeSpec::new("control", "control").listening(),
        NodeSpec::new("exec", "execution").dialing("control"),
    ]);
    mesh.wait_routable("control", &["exec"]);
    mesh.start_coordinator("control");
    mesh.wait_discovered(&["control", "exec"]);
    let project = env::repo_root().join("packaging/demo/project");
    let inventory = std::fs::read_to_string(env::repo_root().join("packaging/demo/inventory.ini"))
        .expect("demo inventory");
    let archive = meshrun_coordinator::project_archive::pack(
        &project,
        Vec::new(),
        meshrun_coordinator::project_archive::DEFAULT_LEVEL,
    )
    .expect("pack project");
    let http = reqwest::blocking::Client::new();
    let stored: Value = http
        .post(format!("{}/api/v2/project_archives/", mesh.api()))
        .header("content-type", "application/zstd")
        .body(archive)
        .send()
        .and_then(|r| r.error_for_status())
        .and_then(|r| r.json())
        .expect("upload project");
    let sha = stored["sha256"].as_str().expect("sha256").to_string();

    // The bare side's payload: the same private data dir the coordinator would build.
    let pdd = mesh.dir().join("bare-pdd");
    std::fs::create_dir_all(pdd.join("inventory")).expect("pdd");
    std::fs::create_dir_all(pdd.join("project")).expect("pdd");
    std::fs::copy(project.join("hello.yml"), pdd.join("project/hello.yml")).expect("playbook");
    std::fs::write(pdd.join("inventory/hosts"), &inventory).expect("inventory");
    let mut payload = Vec::new();
    let kwargs = RunnerKwargs {
        playbook: Some("hello.yml".into()),
        ..RunnerKwargs::new("bare")
    }
    .to_map();
    write_transmit_stream(&mut payload, &kwargs, Some(&pdd), None).expect("payload");

    let settle = |mesh: &Mesh| {
        eventually(
            "exec's units to be released",
            Duration::from_secs(60),
            || mesh.work_list("exec").is_empty().then_some(()),
        );
    };
    let (mut coord, mut bare) = (Vec::new(), Vec::new());
    for i in 0..runs {
        // Coordinator: POST, scheduler, payload build, submit.
        let before: BTreeSet<String> = mesh.work_list("exec").into_keys().collect();
        let t0 = Instant::now();
        let job: Value = http
            .post(format!("{}/api/v2/jobs/", mesh.api()))
            .json(
                &json!({"project": sha, "playbook": "hello.yml", "inventory": inventory,
                          "extra_vars": {}, "execution_node": "exec"}),
            )
            .send()
            .and_then(|r| r.error_for_status())
            .and_then(|r| r.json())
            .expect("POST job");
        let running = until_new_unit_runs(&mesh, "exec", &before);
        coord.push((running - t0).as_secs_f64() * 1000.0);
        let id = job["id"].as_i64().expect("job id");
        eventually("the job to end", Duration::from_secs(120), || {
            let j: Value = http
                .get(format!("{}/api/v2/jobs/{id}/", mesh.api()))
                .send()
                .and_then(|r| r.json())
                .ok()?;
            matches!(
                j["status"].as_str(),
                Some("successful" | "failed" | "error" | "canceled")
            )
            .then_some(())
        });
        settle(&mesh);

        // Bare: the same kind of stream straight into control's socket.
        let before: BTreeSet<String> = mesh.work_list("exec").into_keys().collect();
        let t0 = Instant::now();
        let unit = mesh.submit(
            "control",
            "exec",
            "ansible-runner",
            &format!("--private-data-dir=/tmp/meshrun_bench_{i} --delete"),
            &payload,
        );
        let running = until_new_unit_runs(&mesh, "exec", &before);
        bare.push((running - t0).as_secs_f64() * 1000.0);
        eventually("the bare unit to end", Duration::from_secs(120), || {
            mesh.unit_status("control", &unit)
                .state
                .is_final()
                .then_some(())
        });
        mesh.release("control", &unit);
        settle(&mesh);
    }
    println!("dispatch via coordinator (ms): {}", list(&coord, ""));
    println!("dispatch bare submit (ms): {}", list(&bare, ""));
    let ratio = median(&coord) / median(&bare);
    figures.push(figure(
        "dispatch: POST /api/v2/jobs/ -> unit running on exec, vs bare submit (median)",
        format!(
            "{:.1} ms vs {:.1} ms = {ratio:.2}x",
            median(&coord),
            median(&bare)
        ),
        "<= 1.2x",
        Some(ratio <= 1.2),
    ));
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runs = args
        .iter()
        .find_map(|a| a.parse::<usize>().ok())
        .unwrap_or(5);
    let skip = |what: &str| args.iter().any(|a| a == what);
    let mut figures = Vec::new();
    bench_scheduler(runs, &mut figures);
    bench_ingest(runs, &mut figures);
    if !skip("--skip-codec") {
        bench_codec(runs.min(5), &mut figures);
    }
    if !skip("--skip-mesh") {
        bench_dispatch(runs, &mut figures);
    }
    println!("\n| measure | figure | goal | met |\n|---|---|---|---|");
    for f in &figures {
        let met = match f.met {
            Some(true) => "yes",
            Some(false) => "NO",
            None => "-",
        };
        println!("| {} | {} | {} | {met} |", f.what, f.value, f.goal);
    }
}
