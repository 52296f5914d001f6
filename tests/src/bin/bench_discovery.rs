//! `bench-discovery [RUNS] [--synthetic-only]`: how fast discovery sees nodes come and go, and
//! what one discovery cycle costs on a large mesh.
//!
//! 1. Discovery latency: with the coordinator running (default settings: 2 s period), start an
//!    execution node that dials a hop; time until it is routable, registered, and `ready` with
//!    capacity. Receptor sends a new node's advertisements about 5 s after it starts, and an
//!    unknown node is registered only once its advertisement arrives.
//! 2. Loss and return: kill that node's receptor; time until it leaves the routing table and
//!    until it is `unavailable` (default 20 s grace); start it again, time until `ready`.
//! 3. Cycle cost on a synthetic 1,000-node `status` (routing table, link costs,
//!    advertisements): the pure reconcile step alone, and a whole cycle minus the socket read
//!    (store read + reconcile + writes), in steady state and when 100 nodes leave and return.
//!
//! Build first: `cargo build --release -p meshrun-agent -p meshrun-coordinator`, then
//! `cargo run --release -p meshrun-tests --bin bench-discovery`.

use std::time::{Duration, Instant};

use chrono::{TimeDelta, Utc};
use meshrun_coordinator::discovery::reconcile::{Policy, reconcile};
use meshrun_coordinator::discovery::{CycleOutcome, Discovery};
use meshrun_coordinator::store::{NodeState, Store};
use meshrun_shared::control_socket::Status;
use meshrun_shared::node_type::NodeType;
use meshrun_tests::mesh::{Mesh, NodeSpec};
use serde_json::{Map, Value, json};

const HOPS: usize = 40;
const NODES: usize = 1000;
const STEADY_CYCLES: usize = 40;
const PERIOD: TimeDelta = TimeDelta::seconds(2);

struct Row {
    what: String,
    samples: Vec<Duration>,
    note: String,
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn fmt(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms >= 1000.0 {
        format!("{:.2} s", ms / 1000.0)
    } else {
        format!("{ms:.2} ms")
    }
}

fn print(rows: &[Row]) {
    println!(
        "{:<58} {:>3} {:>10} {:>10} {:>10}  note",
        "measure", "n", "min", "p50", "max"
    );
    for r in rows {
        let mut s = r.samples.clone();
        s.sort();
        if s.is_empty() {
            println!(
                "{:<58} {:>3} {:>10} {:>10} {:>10}  {}",
                r.what, 0, "-", "-", "-", r.note
            );
            continue;
        }
        println!(
            "{:<58} {:>3} {:>10} {:>10} {:>10}  {}",
            r.what,
            s.len(),
            fmt(s[0]),
            fmt(pct(&s, 0.5)),
            fmt(s[s.len() - 1]),
            r.note
        );
    }
}

fn row(what: &str, samples: Vec<Duration>, note: &str) -> Row {
    Row {
        what: what.to_string(),
        samples,
        note: note.to_string(),
    }
}

/// A 1,000-node status: the control node, 40 hops dialling it, 959 execution nodes each
/// linked to two hops; `gone` execution nodes are missing from the routing table (their
/// costs stay known, as receptor keeps them).
fn synthetic_status(gone: &[usize]) -> Value {
    let execs = NODES - 1 - HOPS;
    let hop = |h: usize| format!("hop-{h:03}");
    let exec = |e: usize| format!("exec-{e:04}");
    let mut routing = Map::new();
    let mut costs: Map<String, Value> = Map::new();
    let mut ads = vec![json!({
        "NodeID": "control", "Service": "control", "Time": "2026-11-27T10:00:00Z", "ConnType": 2,
        "Tags": {"type": "Control Service"}, "WorkCommands": [{"WorkType": "local", "Secure": true}]
    })];
    let link = |a: &str, b: &str, costs: &mut Map<String, Value>| {
        for (x, y) in [(a, b), (b, a)] {
            costs
                .entry(x.to_string())
                .or_insert_with(|| json!({}))
                .as_object_mut()
                .map(|m| m.insert(y.to_string(), json!(1.0)));
        }
    };
    for h in 0..HOPS {
        routing.insert(hop(h), json!(hop(h)));
        link("control", &hop(h), &mut costs);
        ads.push(json!({
            "NodeID": hop(h), "Service": "control", "Time": "2026-11-27T10:00:00Z", "ConnType": 2,
            "Tags": {"type": "Control Service"}, "WorkCommands": null
        }));
    }
    for e in 0..execs {
        let (a, b) = (e % HOPS, (e + 1) % HOPS);
        if !gone.contains(&e) {
            routing.insert(exec(e), json!(hop(a)));
        }
        link(&exec(e), &hop(a), &mut costs);
        link(&exec(e), &hop(b), &mut costs);
        ads.push(json!({
            "NodeID": exec(e), "Service": "control", "Time": "2026-11-27T10:00:00Z", "ConnType": 2,
            "Tags": {"type": "Control Service"},
            "WorkCommands": [{"WorkType": "ansible-runner", "Secure": true}]
        }));
    }
    let connections: Vec<Value> = (0..HOPS)
        .map(|h| json!({"NodeID": hop(h), "Cost": 1.0}))
        .collect();
    json!({
        "NodeID": "control", "Version": "1.4.8", "SystemCPUCount": 2, "SystemMemoryMiB": 4096,
        "Connections": connections, "RoutingTable": routing,
        "KnownConnectionCosts": costs, "Advertisements": ads
    })
}

fn synthetic(rows: &mut Vec<Row>) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let all_text = synthetic_status(&[]).to_string();
    let gone: Vec<usize> = (0..100).map(|i| i * 9).collect();
    let some_gone: Status =
        serde_json::from_value(synthetic_status(&gone)).expect("synthetic status");
    let mut parse = Vec::new();
    let mut all: Option<Status> = None;
    for _ in 0..20 {
        let t = Instant::now();
        let s: Status = serde_json::from_str(&all_text).expect("synthetic status");
        parse.push(t.elapsed());
        all = Some(s);
    }
    let all = all.expect("parsed");
    let policy = Policy {
        control_type: NodeType::Control,
        auto_register: true,
        grace: TimeDelta::seconds(20),
    };
    rt.block_on(async {
        let store = Store::open(&dir.path().join("bench.db")).await.expect("store");
        let mut d = Discovery::new(store.clone(), policy.clone());
        let t0 = Utc::now();
        let timed = |o: &CycleOutcome, t: Instant| (t.elapsed(), o.writes);

        let t = Instant::now();
        let first = d.cycle(&all, t0).await.expect("first cycle");
        let (first_t, first_w) = timed(&first, t);

        let mut steady = Vec::new();
        let mut recon = Vec::new();
        let mut writes = Vec::new();
        let mut now = t0;
        for _ in 0..STEADY_CYCLES {
            now += PERIOD;
            let t = Instant::now();
            let o = d.cycle(&all, now).await.expect("cycle");
            steady.push(t.elapsed());
            recon.push(o.reconcile_time);
            writes.push(o.writes);
        }
        let stored = store.all_instances().await.expect("instances");
        let mut pure = Vec::new();
        let prev = {
            let p = reconcile(&all, &stored, None, now, &policy);
            p.reading
        };
        for _ in 0..20 {
            let t = Instant::now();
            let p = reconcile(&all, &stored, Some(&prev), now + PERIOD, &policy);
            pure.push(t.elapsed());
            std::hint::black_box(p);
        }
        let mut read = Vec::new();
        for _ in 0..20 {
            let t = Instant::now();
            std::hint::black_box(store.all_instances().await.expect("instances"));
            read.push(t.elapsed());
        }

        now += PERIOD;
        let t = Instant::now();
        let leave = d.cycle(&some_gone, now).await.expect("leave cycle");
        let leave_t = timed(&leave, t);
        now += TimeDelta::seconds(22);
        let t = Instant::now();
        let lost = d.cycle(&some_gone, now).await.expect("lost cycle");
        let lost_t = timed(&lost, t);
        let unavailable = store
            .all_instances()
            .await
            .expect("instances")
            .iter()
            .filter(|i| i.node_state == NodeState::Unavailable)
            .count();
        now += PERIOD;
        let t = Instant::now();
        let back = d.cycle(&all, now).await.expect("return cycle");
        let back_t = timed(&back, t);
        store.close().await;

        let mean_writes = writes.iter().sum::<usize>() as f64 / writes.len() as f64;
        let max_writes = writes.iter().max().copied().unwrap_or(0);
        rows.push(row(
            "1000 nodes: status JSON parse (part of the socket read)",
            parse,
            &format!("{} KiB document", all_text.len() / 1024),
        ));
        rows.push(row(
            "1000 nodes: reconcile, pure (steady state)",
            pure,
            "target <= 20 ms",
        ));
        rows.push(row(
            "1000 nodes: reconcile inside the cycles below",
            recon,
            "",
        ));
        rows.push(row("1000 nodes: store read of all instances", read, ""));
        rows.push(row(
            "1000 nodes: cycle minus socket read, steady",
            steady,
            &format!(
                "{STEADY_CYCLES} cycles 2 s apart; writes/cycle mean {mean_writes:.1}, max {max_writes} (last_seen refresh)"
            ),
        ));
        rows.push(row(
            "1000 nodes: first cycle (registers every node)",
            vec![first_t],
            &format!("{first_w} writes"),
        ));
        rows.push(row(
            "1000 nodes: cycle where 100 nodes leave",
            vec![leave_t.0],
            &format!("{} writes", leave_t.1),
        ));
        rows.push(row(
            "1000 nodes: cycle where they pass the grace",
            vec![lost_t.0],
            &format!("{} writes, {unavailable} unavailable", lost_t.1),
        ));
        rows.push(row(
            "1000 nodes: cycle where they return",
            vec![back_t.0],
            &format!("{} writes, {} checks asked", back_t.1, back.check_now.len()),
        ));
    });
}

fn poll<T>(patience: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + patience;
    while Instant::now() < deadline {
        if let Some(v) = f() {
            return Some(v);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    None
}

fn real_mesh(runs: usize, rows: &mut Vec<Row>) {
    let mut mesh = Mesh::start(&[NodeSpec::new("control", "control").listening()]);
    mesh.start_coordinator("control");
    mesh.add_node(&NodeSpec::new("hop", "hop").listening().dialing("control"));
    poll(Duration::from_secs(60), || {
        mesh.instance("hop")
            .filter(|i| i.node_state == NodeState::Ready)
    })
    .expect("the hop becomes ready");
    let (mut routable, mut registered, mut ready) = (Vec::new(), Vec::new(), Vec::new());
    let (mut unroutable, mut unavailable, mut back) = (Vec::new(), Vec::new(), Vec::new());
    let patience = Duration::from_secs(120);
    for i in 0..runs {
        let name = format!("exec{i}");
        let t0 = Instant::now();
        mesh.add_node(&NodeSpec::new(&name, "execution").dialing("hop"));
        let mut t_route = None;
        let mut t_reg = None;
        let done = poll(patience, || {
            if t_route.is_none() && mesh.status("control").routing_table.contains_key(&name) {
                t_route = Some(t0.elapsed());
            }
            let inst = mesh.instance(&name);
            if t_reg.is_none() && inst.is_some() {
                t_reg = Some(t0.elapsed());
            }
            inst.filter(|i| i.node_state == NodeState::Ready && i.capacity > 0)
                .map(|_| t0.elapsed())
        });
        routable.extend(t_route);
        registered.extend(t_reg);
        ready.extend(done);
        if done.is_none() {
            eprintln!("{name} never became ready:\n{}", mesh.coordinator_log());
            continue;
        }

        let t0 = Instant::now();
        mesh.stop_node(&name);
        let mut t_gone = None;
        let lost = poll(patience, || {
            if t_gone.is_none() && !mesh.status("control").routing_table.contains_key(&name) {
                t_gone = Some(t0.elapsed());
            }
            mesh.instance(&name)
                .filter(|i| i.node_state == NodeState::Unavailable)
                .map(|_| t0.elapsed())
        });
        unroutable.extend(t_gone);
        unavailable.extend(lost);

        let t0 = Instant::now();
        mesh.restart_node(&name);
        back.extend(poll(patience, || {
            mesh.instance(&name)
                .filter(|i| i.node_state == NodeState::Ready && i.capacity > 0)
                .map(|_| t0.elapsed())
        }));
    }
    rows.push(row(
        "new node: start -> routable from control",
        routable,
        "dials a hop",
    ));
    rows.push(row(
        "new node: start -> registered",
        registered,
        "waits for its advertisement",
    ));
    rows.push(row(
        "new node: start -> ready with capacity",
        ready,
        "period 2 s",
    ));
    rows.push(row(
        "loss: kill -> out of the routing table",
        unroutable,
        "",
    ));
    rows.push(row(
        "loss: kill -> unavailable",
        unavailable,
        "default grace 20 s",
    ));
    rows.push(row(
        "return: restart -> ready with capacity",
        back,
        "known node: checked once routable",
    ));
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let synthetic_only = args.iter().any(|a| a == "--synthetic-only");
    let runs = args
        .iter()
        .find_map(|a| a.parse::<usize>().ok())
        .unwrap_or(5);
    let mut rows = Vec::new();
    synthetic(&mut rows);
    if !synthetic_only {
        real_mesh(runs, &mut rows);
    }
    print(&rows);
}
