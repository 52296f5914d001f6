//! The scheduler's placement on a real mesh (real receptor, real ansible-runner in host mode):
//! jobs go to the execution node with the most room and follow a capacity change; a job larger
//! than every node runs on an idle one; instance-group limits hold jobs back until a slot frees;
//! a hybrid control node runs jobs itself through `local` while a control-only node never does;
//! a job nothing can take stays `pending` and says why. Also: hostile project archives are
//! refused over the API with a message and leave nothing stored.
//!
//! Node capacities are made different through `[capacity] reserved_memory`, computed from the
//! node's own `--worker-info`, so the expected figures hold on any machine with a few GiB.
//! Slow jobs wait for a gate file the test creates, so no outcome depends on timing.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use meshrun_shared::capacity;
use meshrun_shared::worker_info::WorkerInfo;
use meshrun_tests::api;
use meshrun_tests::env;
use meshrun_tests::mesh::{Mesh, NodeSpec, agent_config};
use reqwest::StatusCode;
use serde_json::{Value, json};

const INVENTORY: &str = "localhost ansible_connection=local ansible_python_interpreter=\"{{ ansible_playbook_python }}\"\n";

/// A job's inventory of 501 hosts where the play only targets `localhost`: the other 500 are
/// counted for `task_impact` but never contacted.
fn big_inventory() -> String {
    format!("{INVENTORY}\n[spare]\nhost[001:500] ansible_connection=local\n")
}

const HELLO: &str = "- hosts: localhost\n  gather_facts: false\n  tasks:\n    - ansible.builtin.debug:\n        msg: \"ran on {{ lookup('ansible.builtin.env', 'MESHRUN_NODE_ID') }}\"\n";

/// Waits until the test creates `gate` (at most 5 minutes, so a failed test never leaves a
/// job behind for long).
const GATED: &str = "- hosts: localhost\n  gather_facts: false\n  tasks:\n    - ansible.builtin.wait_for:\n        path: \"{{ gate }}\"\n        timeout: 300\n    - ansible.builtin.debug:\n        msg: \"gated job ran on {{ lookup('ansible.builtin.env', 'MESHRUN_NODE_ID') }}\"\n";

/// Writes the test project (hello.yml, gated.yml) under the mesh folder and uploads it.
fn project(mesh: &Mesh) -> String {
    let dir = mesh.dir().join("project");
    std::fs::create_dir_all(&dir).expect("project dir");
    std::fs::write(dir.join("hello.yml"), HELLO).expect("hello.yml");
    std::fs::write(dir.join("gated.yml"), GATED).expect("gated.yml");
    api::upload_project(mesh, &dir)
}

/// A file whose creation lets gated jobs finish; created on drop too, so a failing test does
/// not leave jobs waiting (declare it after the mesh: it is dropped first).
struct Gate(PathBuf);

impl Gate {
    fn new(mesh: &Mesh, name: &str) -> Gate {
        Gate(mesh.dir().join(format!("gate-{name}")))
    }

    fn open(&self) {
        std::fs::write(&self.0, b"open").expect("gate file");
    }

    fn extra_vars(&self) -> Value {
        json!({ "gate": self.0.display().to_string() })
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        let _ = std::fs::write(&self.0, b"open");
    }
}

/// A job body: `project`, `playbook`, the one-host inventory, plus `more` fields.
fn job_body(sha: &str, playbook: &str, more: Value) -> Value {
    let mut body = json!({ "project": sha, "playbook": playbook, "inventory": INVENTORY });
    if let (Some(b), Some(m)) = (body.as_object_mut(), more.as_object()) {
        b.extend(m.clone());
    }
    body
}

/// Waits for the scheduler to place job `id` and returns it.
fn wait_placed(mesh: &Mesh, id: i64) -> Value {
    api::wait_job(mesh, id, "placed", Duration::from_secs(60), |j| {
        j["execution_node"].is_string()
    })
}

/// Waits for job `id` to stay pending with an explanation containing `reason`, and returns it.
fn wait_pending_because(mesh: &Mesh, id: i64, reason: &str) -> Value {
    let job = api::wait_job(
        mesh,
        id,
        &format!("explained with {reason:?}"),
        Duration::from_secs(30),
        |j| {
            j["job_explanation"]
                .as_str()
                .is_some_and(|e| e.contains(reason))
        },
    );
    assert_eq!(job["status"], "pending", "{job:#}");
    assert!(job["execution_node"].is_null(), "{job:#}");
    assert!(job["work_unit_id"].is_null(), "nothing submitted: {job:#}");
    job
}

/// Waits for job `id` to end and checks it succeeded on `node`, controlled by `controller`.
fn assert_ran(mesh: &Mesh, id: i64, controller: &str, node: &str) -> Value {
    let job = api::wait_job_end(mesh, id);
    assert_eq!(
        job["status"],
        "successful",
        "{job:#}\n{}",
        mesh.coordinator_log()
    );
    assert_eq!(job["execution_node"], node, "{job:#}");
    assert_eq!(job["controller_node"], controller, "{job:#}");
    let out = api::job_stdout(mesh, id);
    assert!(
        out.contains(&format!("ran on {node}")),
        "job {id} output:\n{out}"
    );
    job
}

/// The `reserved_memory` that leaves a node measured as `info` with exactly `mem_capacity`
/// (middle of the 100 MiB step, so rounding never moves it).
fn reservation_for(info: &WorkerInfo, mem_capacity: i64) -> u64 {
    let keep = capacity::MEM_PENALTY_BYTES as u64 + ((mem_capacity as u64 * 100) + 50) * (1 << 20);
    assert!(
        info.mem_in_bytes > keep + (1 << 30),
        "this test needs more than {} bytes of memory to make nodes of different sizes; the machine has {}",
        keep + (1 << 30),
        info.mem_in_bytes
    );
    info.mem_in_bytes - keep
}

/// `[capacity]` TOML reserving `bytes` of memory.
fn reserve(bytes: u64) -> String {
    format!("[capacity]\nreserved_memory = {bytes}\n")
}

/// control (listens, runs the coordinator) plus execution nodes dialing it, all discovered and
/// ready. `sizes` gives each execution node's memory capacity (`None`: no reservation).
fn mesh_with(execs: &[(&str, Option<i64>)]) -> Mesh {
    let mut mesh = Mesh::start(&[NodeSpec::new("control", "control").listening()]);
    for (name, mem_capacity) in execs {
        let mut spec = NodeSpec::new(name, "execution").dialing("control");
        if let Some(m) = mem_capacity {
            spec = spec.agent_toml(&reserve(reservation_for(&machine(), *m)));
        }
        mesh.add_node(&spec);
    }
    let names: Vec<&str> = execs.iter().map(|(n, _)| *n).collect();
    mesh.wait_routable("control", &names);
    mesh.start_coordinator("control");
    let mut all = names.clone();
    all.push("control");
    mesh.wait_discovered(&all);
    for n in &names {
        api::wait_ready(&mesh, n);
    }
    mesh
}

/// The machine as an unreserved node's `--worker-info` measures it (every node of these
/// meshes runs on this host).
fn machine() -> WorkerInfo {
    let dir = tempfile::tempdir().expect("temp dir");
    let toml = dir.path().join("agent.toml");
    std::fs::write(&toml, agent_config("probe", dir.path(), false, "")).expect("agent.toml");
    let out = std::process::Command::new(env::bin("meshrun-agent"))
        .arg("--config")
        .arg(&toml)
        .args(["worker", "--worker-info"])
        .output()
        .expect("meshrun-agent worker --worker-info");
    assert!(out.status.success(), "worker-info: {out:?}");
    meshrun_shared::worker_info::parse(&String::from_utf8_lossy(&out.stdout))
        .unwrap_or_else(|e| panic!("worker-info: {e}"))
}

fn capacity_of(mesh: &Mesh, node: &str) -> i64 {
    api::instance(mesh, node)
        .and_then(|i| i["capacity"].as_i64())
        .unwrap_or_else(|| panic!("{node} has no capacity"))
}

#[test]
fn jobs_go_to_the_node_with_more_room_and_follow_a_capacity_change() {
    let probe = machine();
    let cpu = capacity::cpu_capacity(probe.cpu_count);
    let big_mem = capacity::mem_capacity(probe.mem_in_bytes);
    let small_mem = cpu + 7;
    assert!(
        big_mem > small_mem + 2,
        "this machine's memory capacity {big_mem} is too small next to its cpu capacity {cpu}"
    );
    let mesh = mesh_with(&[("exec-big", None), ("exec-small", Some(small_mem))]);
    // capacity = max(cpu, mem) with the default adjustment of 1.
    assert_eq!(capacity_of(&mesh, "exec-big"), big_mem.max(cpu));
    assert_eq!(capacity_of(&mesh, "exec-small"), small_mem);
    let sha = project(&mesh);

    let first = api::submit_job(&mesh, &job_body(&sha, "hello.yml", json!({})));
    let placed = wait_placed(&mesh, first);
    assert_eq!(placed["task_impact"], 2, "one host, 5 forks: {placed:#}");
    assert_eq!(placed["execution_node"], "exec-big", "{placed:#}");

    // Adjustment 0: exec-big falls to min(cpu, mem) = cpu, below exec-small.
    let changed = api::patch_instance(&mesh, "exec-big", &json!({"capacity_adjustment": 0}));
    assert_eq!(changed["capacity"], cpu.min(big_mem), "{changed:#}");
    let second = api::submit_job(&mesh, &job_body(&sha, "hello.yml", json!({})));
    let placed = wait_placed(&mesh, second);
    assert_eq!(placed["execution_node"], "exec-small", "{placed:#}");

    assert_ran(&mesh, first, "control", "exec-big");
    assert_ran(&mesh, second, "control", "exec-small");
}

#[test]
fn a_job_larger_than_every_node_runs_on_an_idle_one() {
    let cpu = capacity::cpu_capacity(machine().cpu_count);
    let mesh = mesh_with(&[("exec-a", Some(cpu + 20)), ("exec-b", Some(cpu + 10))]);
    let (a, b) = (capacity_of(&mesh, "exec-a"), capacity_of(&mesh, "exec-b"));
    assert!(a > b, "exec-a ({a}) is the larger node, exec-b ({b})");
    let sha = project(&mesh);
    let gate = Gate::new(&mesh, "a");
    let huge = |mesh: &Mesh| {
        api::submit_job(
            mesh,
            &job_body(
                &sha,
                "hello.yml",
                json!({"inventory": big_inventory(), "forks": 500}),
            ),
        )
    };

    // exec-a (larger) is busy: the huge job takes the idle exec-b rather than waiting.
    let blocker = api::submit_job(
        &mesh,
        &job_body(
            &sha,
            "gated.yml",
            json!({"execution_node": "exec-a", "extra_vars": gate.extra_vars()}),
        ),
    );
    api::wait_job(&mesh, blocker, "running", Duration::from_secs(60), |j| {
        j["status"] == "running"
    });
    let first = huge(&mesh);
    let placed = wait_placed(&mesh, first);
    assert_eq!(placed["host_count"], 501, "{placed:#}");
    assert_eq!(placed["task_impact"], 501, "min(501, 500) + 1: {placed:#}");
    assert!(501 > a && 501 > b, "the job is larger than every node");
    assert_eq!(placed["execution_node"], "exec-b", "{placed:#}");
    let job = assert_ran(&mesh, first, "control", "exec-b");
    // Only localhost was contacted.
    let out = api::job_stdout(&mesh, first);
    assert!(!out.contains("host001"), "{out}");
    assert_eq!(job["rc"], 0);
    gate.open();
    let ended = api::wait_job_end(&mesh, blocker);
    assert_eq!(ended["status"], "successful", "{ended:#}");

    // Both idle: the largest one takes it.
    let second = huge(&mesh);
    assert_ran(&mesh, second, "control", "exec-a");
}

#[test]
fn instance_group_limits_hold_a_job_until_a_slot_frees() {
    let mesh = mesh_with(&[("exec1", None)]);
    let sha = project(&mesh);
    let gate = Gate::new(&mesh, "one");
    let group = api::create_group(&mesh, "one", 1, 0);
    api::set_group_member(&mesh, group, "exec1", true);

    let first = api::submit_job(
        &mesh,
        &job_body(
            &sha,
            "gated.yml",
            json!({"instance_group": "one", "extra_vars": gate.extra_vars()}),
        ),
    );
    api::wait_job(&mesh, first, "running", Duration::from_secs(60), |j| {
        j["status"] == "running"
    });
    let second = api::submit_job(
        &mesh,
        &job_body(&sha, "hello.yml", json!({"instance_group": "one"})),
    );
    let held = wait_pending_because(&mesh, second, "max_concurrent_jobs (1)");
    assert!(
        held["job_explanation"]
            .as_str()
            .unwrap()
            .contains("\"one\""),
        "{held:#}"
    );

    // The same wait under a fork limit: 5 forks running, 5 more would exceed 6.
    let (status, changed) = api::patch(
        &mesh,
        &format!("/api/v2/instance_groups/{group}/"),
        &json!({"max_concurrent_jobs": 0, "max_forks": 6}),
    );
    assert_eq!(status, StatusCode::OK, "{changed:#}");
    wait_pending_because(&mesh, second, "max_forks (6)");

    gate.open();
    let done = api::wait_job_end(&mesh, first);
    assert_eq!(done["status"], "successful", "{done:#}");
    assert_ran(&mesh, second, "control", "exec1");
}

#[test]
fn a_hybrid_control_node_runs_jobs_itself_through_local() {
    let mut mesh = Mesh::start(&[]);
    mesh.start_managed_control("control", "hybrid");
    api::wait_ready(&mesh, "control");
    let sha = project(&mesh);
    let id = api::submit_job(&mesh, &job_body(&sha, "hello.yml", json!({})));
    assert_ran(&mesh, id, "control", "control");
}

#[test]
fn a_control_only_node_never_runs_jobs_and_they_wait_for_an_execution_node() {
    let mut mesh = Mesh::start(&[]);
    mesh.start_managed_control("control", "control");
    api::wait_ready(&mesh, "control");
    let sha = project(&mesh);
    let any = api::submit_job(&mesh, &job_body(&sha, "hello.yml", json!({})));
    wait_pending_because(
        &mesh,
        any,
        "instance group \"default\" has no ready, enabled execution or hybrid node",
    );
    let pinned = api::submit_job(
        &mesh,
        &job_body(&sha, "hello.yml", json!({"execution_node": "control"})),
    );
    wait_pending_because(
        &mesh,
        pinned,
        "the requested node control is not a ready, enabled execution or hybrid node",
    );

    // An execution node joins: the waiting job runs there; the one pinned to control never runs.
    mesh.add_node(&NodeSpec::new("exec1", "execution").dialing("control"));
    api::wait_ready(&mesh, "exec1");
    assert_ran(&mesh, any, "control", "exec1");
    wait_pending_because(&mesh, pinned, "the requested node control");
}

#[test]
fn a_job_waits_while_its_only_node_is_disabled_and_runs_once_enabled() {
    let mesh = mesh_with(&[("exec1", None)]);
    let sha = project(&mesh);
    let (status, refused) = api::post(
        &mesh,
        "/api/v2/jobs/",
        &job_body(&sha, "hello.yml", json!({"instance_group": "nope"})),
    );
    assert_eq!(status, StatusCode::BAD_REQUEST, "{refused:#}");
    assert!(
        refused["detail"]
            .as_str()
            .is_some_and(|d| d.contains("instance_group \"nope\" does not exist")),
        "{refused:#}"
    );

    let off = api::patch_instance(&mesh, "exec1", &json!({"enabled": false}));
    assert_eq!(off["capacity"], 0, "{off:#}");
    let id = api::submit_job(&mesh, &job_body(&sha, "hello.yml", json!({})));
    wait_pending_because(
        &mesh,
        id,
        "instance group \"default\" has no ready, enabled execution or hybrid node",
    );
    assert!(mesh.work_list("control").is_empty());
    assert!(mesh.work_list("exec1").is_empty());

    api::patch_instance(&mesh, "exec1", &json!({"enabled": true}));
    assert_ran(&mesh, id, "control", "exec1");
}

#[test]
fn a_job_in_a_group_without_members_waits_until_one_is_added() {
    let mesh = mesh_with(&[("exec1", None)]);
    let sha = project(&mesh);
    let group = api::create_group(&mesh, "spare", 0, 0);
    // Added, then taken out again (AWX's disassociate).
    api::set_group_member(&mesh, group, "exec1", true);
    api::set_group_member(&mesh, group, "exec1", false);
    let (status, shown) = api::get(&mesh, &format!("/api/v2/instance_groups/{group}/"));
    assert_eq!(status, StatusCode::OK, "{shown:#}");
    assert_eq!(shown["name"], "spare", "{shown:#}");

    let id = api::submit_job(
        &mesh,
        &job_body(&sha, "hello.yml", json!({"instance_group": "spare"})),
    );
    wait_pending_because(
        &mesh,
        id,
        "instance group \"spare\" has no ready, enabled execution or hybrid node",
    );
    api::set_group_member(&mesh, group, "exec1", true);
    assert_ran(&mesh, id, "control", "exec1");
}

// ---- hostile project archives ----

/// A tar header for `name` (raw bytes, so names the tar crate refuses to write can be made).
fn raw_header(name: &[u8], kind: tar::EntryType, link: &[u8], size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    {
        let old = h.as_old_mut();
        old.name[..name.len()].copy_from_slice(name);
        old.linkname[..link.len()].copy_from_slice(link);
    }
    h.set_entry_type(kind);
    h.set_mode(0o644);
    h.set_size(size);
    h.set_mtime(0);
    h.set_cksum();
    h
}

/// A tar + zstd archive of one good file and then `entry` with `data`.
fn archive_with(name: &[u8], kind: tar::EntryType, link: &[u8], data: &[u8]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let good = raw_header(b"site.yml", tar::EntryType::Regular, b"", 3);
    b.append(&good, &b"---"[..]).expect("tar");
    let h = raw_header(name, kind, link, data.len() as u64);
    b.append(&h, data).expect("tar");
    let tar = b.into_inner().expect("tar");
    zstd::encode_all(&tar[..], 3).expect("zstd")
}

/// Everything below `dir`, recursively.
fn count_entries(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| {
            let e = e.expect("dir entry");
            let below = if e.file_type().is_ok_and(|t| t.is_dir()) {
                count_entries(&e.path())
            } else {
                0
            };
            1 + below
        })
        .sum()
}

#[test]
fn hostile_project_archives_are_refused_and_nothing_is_stored() {
    let mut mesh = Mesh::start(&[NodeSpec::new("control", "control")]);
    mesh.start_coordinator("control");
    let projects = mesh.nodes["control"].dir.join("coordinator/projects");
    let outside = mesh.dir().join("written-outside");
    let absolute = outside.display().to_string();

    // A real project whose archive is cut short, and noise that compresses poorly.
    let truncated = {
        let dir = mesh.dir().join("real");
        std::fs::create_dir_all(&dir).unwrap();
        let noise: Vec<u8> = (0u32..200_000)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        std::fs::write(dir.join("site.yml"), &noise).unwrap();
        let full = meshrun_coordinator::project_archive::pack(&dir, Vec::new(), 3).unwrap();
        full[..full.len() / 2].to_vec()
    };
    let garbage: Vec<u8> = (0u32..4096)
        .map(|i| (i.wrapping_mul(40_503) >> 7) as u8)
        .collect();
    // 64 MiB of zeros: a valid tar end marker followed by 64 MiB of "padding".
    let zero_bomb = {
        let mut out = Vec::new();
        zstd::stream::copy_encode(std::io::repeat(0).take(64 << 20), &mut out, 3).unwrap();
        out
    };
    // A header declaring a 2 GiB file, with almost no data behind it.
    let size_bomb = {
        let mut tar = raw_header(b"huge.bin", tar::EntryType::Regular, b"", 2 << 30)
            .as_bytes()
            .to_vec();
        tar.extend(std::iter::repeat_n(0u8, 4096));
        zstd::encode_all(&tar[..], 3).unwrap()
    };

    let cases: Vec<(&str, Vec<u8>, Vec<&str>)> = vec![
        (
            "a `..` entry",
            archive_with(b"../evil", tar::EntryType::Regular, b"", b"evil"),
            vec!["\"../evil\"", "`..`"],
        ),
        (
            "an absolute entry",
            archive_with(absolute.as_bytes(), tar::EntryType::Regular, b"", b"evil"),
            vec![absolute.as_str(), "absolute"],
        ),
        (
            "a symlink leaving the tree",
            archive_with(b"up", tar::EntryType::Symlink, b"../../..", b""),
            vec!["\"up\"", "leaves the project"],
        ),
        (
            "a symlink to an absolute path",
            archive_with(b"etc", tar::EntryType::Symlink, b"/etc", b""),
            vec!["\"etc\"", "\"/etc\" is absolute"],
        ),
        (
            "a hard link to a file outside",
            archive_with(b"passwd", tar::EntryType::Link, b"/etc/passwd", b""),
            vec!["\"passwd\"", "hard link target"],
        ),
        (
            "a device",
            archive_with(b"tty", tar::EntryType::Char, b"", b""),
            vec!["\"tty\"", "character device"],
        ),
        (
            "a truncated zstd stream",
            truncated,
            vec!["corrupt or truncated"],
        ),
        ("garbage bytes", garbage, vec!["corrupt or truncated"]),
        (
            "64 MiB of zeros",
            zero_bomb,
            vec!["after its end-of-archive marker"],
        ),
        (
            "a 2 GiB file",
            size_bomb,
            vec![
                "\"huge.bin\"",
                "above the limit of 1073741824 bytes per file",
            ],
        ),
        ("an empty body", Vec::new(), vec!["the body is empty"]),
    ];
    let before = count_entries(&projects);
    for (what, bytes, wanted) in cases {
        let (status, body) = api::upload_archive(&mesh, bytes);
        assert_eq!(status, StatusCode::BAD_REQUEST, "{what}: {body:#}");
        let detail = body["detail"].as_str().unwrap_or_default();
        for w in wanted {
            assert!(detail.contains(w), "{what}: {detail:?} should name {w:?}");
        }
        assert_eq!(
            count_entries(&projects),
            before,
            "{what} left something in {}",
            projects.display()
        );
        assert!(!outside.exists(), "{what} wrote {}", outside.display());
    }

    // The same store takes a good archive: two files (archive and manifest).
    let dir = mesh.dir().join("good");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("site.yml"), HELLO).unwrap();
    api::upload_project(&mesh, &dir);
    assert_eq!(count_entries(&projects), before + 2);
}
