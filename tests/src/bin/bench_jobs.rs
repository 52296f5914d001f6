//! `bench-jobs [RUNS] [--skip-mesh] [--skip-codec]`: the job path's costs against the real
//! alternatives, on this machine, in one run.
//!
//! 1. Scheduler: `placement::place` over 1,000 nodes and 10,000 pending jobs (decisions/s).
//!    AWX's best published task-manager figure is 142 jobs/s; it is cited, not run here.
//! 2. Stream codec: `meshrun transmit` vs `ansible-runner transmit` on a generated 50 MB,
//!    5,000-file private data dir, and `meshrun process` vs `ansible-runner process` on a
//!    generated 100,000-event worker stream (wall time and peak RSS from `/usr/bin/time -v`).
//!    Both sides deflate at level 6 (Python's zipfile default; the zip crate's default);
//!    meshrun deflates on every available core (zlib-rs), ansible-runner on one (zlib). Both
//!    `process` runs spend most of their time in the kernel creating one file per event.
//! 3. Event ingestion: `Store::record_events` in batches of 200 into a temp SQLite database.
//! 4. Dispatch: on a real control ← exec mesh (exec in host mode) with the coordinator, time
//!    from `POST /api/v2/jobs/` until the exec node's `work list` shows the unit running, vs a
//!    bare `work submit` of an equivalent transmit stream through the control node's socket.
//! 5. Event lag: a job emitting an event every ~0.1 s, read at once through the coordinator's
//!    live stream (`GET /api/v2/jobs/{id}/events/stream/`) and by a bare `receptorctl work
//!    results` of the same unit; per event, the time the SSE copy arrived after receptorctl's
//!    (one monotonic clock, both read in threads here). Each `work results` reader re-checks
//!    on its own 250 ms timer inside receptor, so the coordinator's own share is measured from
//!    a pass-through on its receptor socket that notes when receptor hands each event over;
//!    the goal (<= 100 ms added at p99) is judged on that. `receptorctl` is
//!    `MESHRUN_RECEPTORCTL` or the venv's.
//!
//! Build first: `cargo build --release -p meshrun-coordinator -p meshrun-agent -p
//! meshrun-tests`, then `cargo run --release -p meshrun-tests --bin bench-jobs`.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{BufWriter, Cursor, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
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
    let sha = meshrun_tests::api::upload_project(&mesh, &project);
    let http = meshrun_tests::api::client(&mesh);

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

// ---------------------------------------------------------------------------------------------
// 5. Event lag
// ---------------------------------------------------------------------------------------------

/// The bare baseline's reader: `MESHRUN_RECEPTORCTL`, else the venv's `receptorctl`
/// (`make venv` pins it to receptor's version).
fn receptorctl() -> std::path::PathBuf {
    let p = std::env::var_os("MESHRUN_RECEPTORCTL")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| env::venv().join("bin/receptorctl"));
    assert!(
        p.is_file(),
        "receptorctl not found at {}: run `make venv` or set MESHRUN_RECEPTORCTL",
        p.display()
    );
    p
}

/// A playbook that emits an event about every 0.1 s for some 12 s: a loop of `debug` items
/// (each item is its own `runner_item_on_ok`) with a pause between items, after a 2 s pause
/// that lets both readers connect before the measured events.
const LAG_PLAYBOOK: &str = "\
- hosts: all
  gather_facts: false
  tasks:
    - name: Let the readers connect
      ansible.builtin.pause:
        seconds: 2
    - name: Tick
      ansible.builtin.debug:
        msg: \"tick {{ item }}\"
      loop: \"{{ range(120) | list }}\"
      loop_control:
        pause: 0.1
";

/// When each event (by counter) reached a reader, on the bench's one monotonic clock.
type Arrivals = std::collections::BTreeMap<i64, Instant>;

/// Nearest-rank percentile of an unsorted sample.
fn percentile(v: &[f64], p: f64) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    if s.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * s.len() as f64).ceil() as usize;
    s[rank.clamp(1, s.len()) - 1]
}

/// Reads the coordinator's live stream of job `id` until it ends; records each `job_event`
/// by counter (a counter sent twice is a failure: the stream must be exactly once).
fn read_sse(
    api: String,
    token: String,
    id: i64,
) -> (Arrivals, std::collections::BTreeMap<i64, String>) {
    use std::io::Read;
    let client = meshrun_tests::api::client_with(&token);
    let mut resp = client
        .get(format!("{api}/api/v2/jobs/{id}/events/stream/"))
        .send()
        .and_then(|r| r.error_for_status())
        .expect("open the job's event stream");
    let mut parser = meshrun_coordinator::cli::sse::Parser::default();
    let (mut seen, mut created) = (Arrivals::new(), std::collections::BTreeMap::new());
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = resp.read(&mut buf).expect("read the event stream");
        let now = Instant::now();
        if n == 0 {
            break;
        }
        for m in parser.push(&buf[..n]) {
            if m.event != "job_event" {
                continue;
            }
            let e: Value = serde_json::from_str(&m.data).expect("job_event data is JSON");
            let counter = e["counter"].as_i64().expect("job_event counter");
            assert!(
                seen.insert(counter, now).is_none(),
                "the live stream sent event {counter} twice"
            );
            if let Some(c) = e["created"].as_str() {
                created.insert(counter, c.to_string());
            }
        }
    }
    (seen, created)
}

/// Reads `receptorctl work results` of a unit line by line (ansible-runner worker lines: one
/// JSON object each; events carry `counter`) until it exits.
fn read_receptorctl(stdout: std::process::ChildStdout) -> Arrivals {
    use std::io::BufRead;
    let mut seen = Arrivals::new();
    let mut r = std::io::BufReader::with_capacity(64 * 1024, stdout);
    let mut line = Vec::new();
    loop {
        line.clear();
        match r.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let now = Instant::now();
        if let Ok(Value::Object(m)) = serde_json::from_slice::<Value>(&line)
            && let Some(c) = m.get("counter").and_then(Value::as_i64)
        {
            seen.entry(c).or_insert(now);
        }
    }
    seen
}

/// `<unit>/stdout` under `root` (receptor's data dir of a node), looked up to a few levels.
fn find_unit_stdout(root: &Path, unit: &str, depth: u32) -> Option<std::path::PathBuf> {
    let candidate = root.join(unit).join("stdout");
    if candidate.is_file() {
        return Some(candidate);
    }
    if depth == 0 {
        return None;
    }
    std::fs::read_dir(root)
        .ok()?
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .find_map(|e| find_unit_stdout(&e.path(), unit, depth - 1))
}

/// Watches the control node's copy of the unit's stdout (the file both `work results`
/// readers are served from) every millisecond until `stop`; records when each event's line
/// landed in it.
fn watch_stdout_file(path: std::path::PathBuf, stop: Arc<AtomicBool>) -> Arrivals {
    use std::io::{Read, Seek, SeekFrom};
    let mut seen = Arrivals::new();
    let (mut offset, mut partial) = (0u64, Vec::new());
    let mut buf = vec![0u8; 64 * 1024];
    while !stop.load(Ordering::Relaxed) {
        let Ok(mut f) = File::open(&path) else {
            std::thread::sleep(Duration::from_millis(1));
            continue;
        };
        if f.seek(SeekFrom::Start(offset)).is_err() {
            break;
        }
        loop {
            let n = match f.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let now = Instant::now();
            offset += n as u64;
            counters_in(&mut partial, &buf[..n], now, &mut seen);
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    seen
}

/// Counters found in the JSON lines of `bytes`, appended to `partial` (a line may span reads).
fn counters_in(partial: &mut Vec<u8>, bytes: &[u8], now: Instant, seen: &mut Arrivals) {
    partial.extend_from_slice(bytes);
    while let Some(i) = partial.iter().position(|&b| b == b'\n') {
        let line: Vec<u8> = partial.drain(..=i).collect();
        if let Ok(Value::Object(m)) = serde_json::from_slice::<Value>(&line)
            && let Some(c) = m.get("counter").and_then(Value::as_i64)
        {
            seen.entry(c).or_insert(now);
        }
    }
}

/// A pass-through Unix socket at `listen` in front of receptor's control socket `upstream`:
/// the coordinator talks to receptor through it, and it records when each event line of a
/// results stream was handed to the coordinator. Its threads end with the bench process.
fn start_tap(listen: &Path, upstream: std::path::PathBuf, seen: Arc<Mutex<Arrivals>>) {
    use std::io::Read;
    use std::os::unix::net::{UnixListener, UnixStream};
    let listener = UnixListener::bind(listen).expect("bind the tap socket");
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(client) = client else { continue };
            let Ok(server) = UnixStream::connect(&upstream) else {
                continue;
            };
            let (Ok(mut c_in), Ok(mut s_out)) = (client.try_clone(), server.try_clone()) else {
                continue;
            };
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut c_in, &mut s_out);
                let _ = s_out.shutdown(std::net::Shutdown::Write);
            });
            let seen = seen.clone();
            let (mut server, mut client) = (server, client);
            std::thread::spawn(move || {
                let (mut buf, mut partial) = (vec![0u8; 64 * 1024], Vec::new());
                loop {
                    let n = match server.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    let now = Instant::now();
                    if client.write_all(&buf[..n]).is_err() {
                        break;
                    }
                    let mut seen = seen.lock().expect("tap arrivals");
                    counters_in(&mut partial, &buf[..n], now, &mut seen);
                }
                let _ = client.shutdown(std::net::Shutdown::Both);
                let _ = server.shutdown(std::net::Shutdown::Both);
            });
        }
    });
}

/// Per-event lags of one job (ms).
#[derive(Default)]
struct Lags {
    /// SSE arrival - receptorctl arrival.
    added: Vec<f64>,
    /// SSE arrival - receptor handing the line to the coordinator: the coordinator's own lag.
    coordinator: Vec<f64>,
    /// From the line landing in the control node's stdout file to receptor handing it to the
    /// coordinator / to receptorctl / to SSE.
    tap_from_file: Vec<f64>,
    bare_from_file: Vec<f64>,
    sse_from_file: Vec<f64>,
    /// From the event's `created` to receptorctl / to SSE.
    bare_abs: Vec<f64>,
    sse_abs: Vec<f64>,
}

fn bench_event_lag(runs: usize, figures: &mut Vec<Figure>) {
    let receptorctl = receptorctl();
    let mut mesh = Mesh::start(&[
        NodeSpec::new("control", "control").listening(),
        NodeSpec::new("exec", "execution").dialing("control"),
    ]);
    mesh.wait_routable("control", &["exec"]);
    let tapped = Arc::new(Mutex::new(Arrivals::new()));
    let tap = mesh.dir().join("tap.sock");
    start_tap(&tap, mesh.nodes["control"].socket.clone(), tapped.clone());
    mesh.start_coordinator_through("control", &tap, "");
    mesh.wait_discovered(&["control", "exec"]);
    let project = mesh.dir().join("lag-project");
    std::fs::create_dir_all(&project).expect("project dir");
    std::fs::write(project.join("lag.yml"), LAG_PLAYBOOK).expect("playbook");
    let sha = meshrun_tests::api::upload_project(&mesh, &project);
    let http = meshrun_tests::api::client(&mesh);
    let socket = mesh.nodes["control"].socket.clone();
    // One clock: arrivals are `Instant`s; `created` (the worker's wall clock, same host) is
    // put on that clock through one anchor taken here.
    let (anchor_i, anchor_w) = (Instant::now(), chrono::Utc::now());
    let on_clock = |created: &str| -> Option<Instant> {
        let c = chrono::DateTime::parse_from_rfc3339(created).ok()?;
        let ahead = (c.with_timezone(&chrono::Utc) - anchor_w).to_std().ok()?;
        Some(anchor_i + ahead)
    };

    let mut per_run: Vec<Lags> = Vec::new();
    for _ in 0..runs {
        tapped.lock().expect("tap arrivals").clear();
        let job: Value = http
            .post(format!("{}/api/v2/jobs/", mesh.api()))
            .json(&json!({"project": sha, "playbook": "lag.yml",
                          "inventory": "localhost ansible_connection=local\n",
                          "extra_vars": {}, "execution_node": "exec"}))
            .send()
            .and_then(|r| r.error_for_status())
            .and_then(|r| r.json())
            .expect("POST job");
        let id = job["id"].as_i64().expect("job id");
        let api = mesh.api().to_string();
        let token = mesh.token().to_string();
        let sse = std::thread::spawn(move || read_sse(api, token, id));
        let unit = eventually("the job's work unit", Duration::from_secs(60), || {
            mesh.read_store(async |s| s.job(id).await)
                .and_then(|j| j.work_unit_id)
        });
        let stdout_file = eventually(
            "the control node's copy of the unit's stdout",
            Duration::from_secs(30),
            || find_unit_stdout(&mesh.nodes["control"].dir, &unit, 4),
        );
        let stop = Arc::new(AtomicBool::new(false));
        let watcher = {
            let stop = stop.clone();
            std::thread::spawn(move || watch_stdout_file(stdout_file, stop))
        };
        let mut child = Command::new(&receptorctl)
            .arg("--socket")
            .arg(&socket)
            .args(["work", "results", &unit])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start receptorctl");
        // Only events created after receptorctl had a second to start and connect count.
        let counted_from = Instant::now() + Duration::from_secs(1);
        let stdout = child.stdout.take().expect("receptorctl stdout");
        let bare = std::thread::spawn(move || read_receptorctl(stdout));
        let (sse_seen, created) = sse.join().expect("SSE reader");
        // The live stream ended, so the job is final; receptorctl ends with the unit.
        let deadline = Instant::now() + Duration::from_secs(30);
        while child.try_wait().expect("receptorctl wait").is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        let bare_seen = bare.join().expect("receptorctl reader");
        stop.store(true, Ordering::Relaxed);
        let file_seen = watcher.join().expect("stdout file watcher");
        let tap_seen = std::mem::take(&mut *tapped.lock().expect("tap arrivals"));
        let status: Value = http
            .get(format!("{}/api/v2/jobs/{id}/", mesh.api()))
            .send()
            .and_then(|r| r.json())
            .expect("job detail");
        assert_eq!(
            status["status"], "successful",
            "lag job {id} did not succeed: {status:#}"
        );
        let mut lags = Lags::default();
        let mut missing = 0;
        for (counter, c) in &created {
            let Some(made) = on_clock(c) else { continue };
            if made < counted_from {
                continue;
            }
            let (Some(b), Some(s), Some(f), Some(t)) = (
                bare_seen.get(counter),
                sse_seen.get(counter),
                file_seen.get(counter),
                tap_seen.get(counter),
            ) else {
                missing += 1;
                continue;
            };
            let ms = |a: Instant, b: Instant| {
                if a >= b {
                    (a - b).as_secs_f64() * 1000.0
                } else {
                    -((b - a).as_secs_f64() * 1000.0)
                }
            };
            lags.added.push(ms(*s, *b));
            lags.coordinator.push(ms(*s, *t));
            lags.tap_from_file.push(ms(*t, *f));
            lags.bare_from_file.push(ms(*b, *f));
            lags.sse_from_file.push(ms(*s, *f));
            lags.bare_abs.push(ms(*b, made));
            lags.sse_abs.push(ms(*s, made));
        }
        assert_eq!(
            missing, 0,
            "events of job {id} missing from a reader (receptorctl, SSE, tap or stdout file)"
        );
        assert!(
            lags.added.len() >= 100,
            "job {id}: only {} events measured",
            lags.added.len()
        );
        let pc = |v: &[f64]| {
            format!(
                "p50 {:.1} p99 {:.1} max {:.1}",
                percentile(v, 50.0),
                percentile(v, 99.0),
                percentile(v, 100.0)
            )
        };
        println!(
            "event lag job {id} ({} events, {} measured), ms: SSE - receptorctl {}; \
             coordinator (SSE - receptor's hand-over) {}; stdout file -> hand-over {}, \
             -> receptorctl {}, -> SSE {}; created -> receptorctl {}, -> SSE {}",
            sse_seen.len(),
            lags.added.len(),
            pc(&lags.added),
            pc(&lags.coordinator),
            pc(&lags.tap_from_file),
            pc(&lags.bare_from_file),
            pc(&lags.sse_from_file),
            pc(&lags.bare_abs),
            pc(&lags.sse_abs),
        );
        per_run.push(lags);
        eventually(
            "exec's units to be released",
            Duration::from_secs(60),
            || mesh.work_list("exec").is_empty().then_some(()),
        );
    }
    let med = |f: &dyn Fn(&Lags) -> f64| median(&per_run.iter().map(f).collect::<Vec<_>>());
    let pooled = |f: &dyn Fn(&Lags) -> &Vec<f64>| -> Vec<f64> {
        per_run.iter().flat_map(|l| f(l).iter().copied()).collect()
    };
    let added = pooled(&|l| &l.added);
    let own = pooled(&|l| &l.coordinator);
    let (bare_file, sse_file) = (
        pooled(&|l| &l.bare_from_file),
        pooled(&|l| &l.sse_from_file),
    );
    let (bare_abs, sse_abs) = (pooled(&|l| &l.bare_abs), pooled(&|l| &l.sse_abs));
    let pc = |v: &[f64]| {
        format!(
            "p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            percentile(v, 50.0),
            percentile(v, 99.0),
            percentile(v, 100.0)
        )
    };
    println!(
        "event lag over all {} events: SSE - receptorctl {}; coordinator {}; stdout file -> \
         receptorctl {}, -> SSE {}",
        added.len(),
        pc(&added),
        pc(&own),
        pc(&bare_file),
        pc(&sse_file),
    );
    // Each `work results` reader re-checks the unit's stdout on its own 250 ms timer, so the
    // per-event difference between two readers carries their timers' phase (up to +-250 ms);
    // the coordinator's own lag is measured from receptor handing it the bytes.
    figures.push(figure(
        "event lag: per event, SSE arrival - bare `receptorctl work results` arrival, same unit (median of runs)",
        format!(
            "p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms (two receptor readers, each on its own 250 ms timer)",
            med(&|l| percentile(&l.added, 50.0)),
            med(&|l| percentile(&l.added, 99.0)),
            med(&|l| percentile(&l.added, 100.0)),
        ),
        "-",
        None,
    ));
    let (own_p99, own_p99_med) = (
        percentile(&own, 99.0),
        med(&|l| percentile(&l.coordinator, 99.0)),
    );
    figures.push(figure(
        "event lag added by the coordinator: receptor hands the line over -> SSE arrival (all events)",
        format!(
            "{} (median of runs' p99 {own_p99_med:.1} ms)",
            pc(&own)
        ),
        "<= 100 ms added at p99",
        Some(own_p99 <= 100.0),
    ));
    figures.push(figure(
        "event lag: line lands in control's copy of the stdout -> receptorctl / -> SSE (all events)",
        format!(
            "p50 {:.0} / {:.0} ms, p99 {:.0} / {:.0} ms",
            percentile(&bare_file, 50.0),
            percentile(&sse_file, 50.0),
            percentile(&bare_file, 99.0),
            percentile(&sse_file, 99.0),
        ),
        "-",
        None,
    ));
    figures.push(figure(
        "event lag end to end: created -> receptorctl / -> SSE (all events)",
        format!(
            "p50 {:.0} / {:.0} ms, p99 {:.0} / {:.0} ms (AWX: about 5 s end to end)",
            percentile(&bare_abs, 50.0),
            percentile(&sse_abs, 50.0),
            percentile(&bare_abs, 99.0),
            percentile(&sse_abs, 99.0),
        ),
        "-",
        None,
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
        bench_event_lag(runs, &mut figures);
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
