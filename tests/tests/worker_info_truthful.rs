//! `meshrun-agent worker --worker-info` tells the truth: on an unlimited node it agrees with
//! the real `ansible-runner worker --worker-info`, a configured reservation lowers it exactly,
//! and real cgroup v1 limits (created here, the agent run inside them or pointed at them) are
//! followed, including limits set only on an ancestor. Every line is read by both PyYAML
//! (from the pinned venv, as AWX reads it) and yaml-rust2 (as the coordinator reads it), and
//! the two must agree. Host mode only: podman checks are covered by the agent's unit tests.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use meshrun_tests::env;
use serde_json::{Value, json};
use yaml_rust2::{Yaml, YamlLoader};

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

/// A TOML basic string.
fn toml_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\u{:04X}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// An agent config in `dir`: host mode with the venv's ansible-runner, plus `capacity` lines.
fn agent_config(dir: &Path, state_dir: &Path, capacity: &str) -> PathBuf {
    let path = dir.join("agent.toml");
    let text = format!(
        "log_file = {}\nstate_dir = {}\n[worker]\nmode = \"host\"\nansible_runner = {}\n\
         [receptor]\ndata_dir = {}\n[capacity]\n{capacity}\n",
        toml_str(&dir.join("agent.log").display().to_string()),
        toml_str(&state_dir.display().to_string()),
        toml_str(&env::ansible_runner().display().to_string()),
        toml_str(&dir.join("no-receptor-here").display().to_string()),
    );
    fs::write(&path, text).unwrap();
    path
}

fn yaml_to_json(y: &Yaml) -> Value {
    match y {
        Yaml::Real(r) => json!(r.parse::<f64>().unwrap_or_else(|_| panic!("bad real {r}"))),
        Yaml::Integer(i) => json!(i),
        Yaml::String(s) => json!(s),
        Yaml::Boolean(b) => json!(b),
        Yaml::Array(a) => Value::Array(a.iter().map(yaml_to_json).collect()),
        Yaml::Hash(h) => Value::Object(
            h.iter()
                .map(|(k, v)| {
                    (
                        k.as_str().expect("string keys").to_string(),
                        yaml_to_json(v),
                    )
                })
                .collect(),
        ),
        Yaml::Null => Value::Null,
        other => panic!("unexpected YAML node {other:?}"),
    }
}

/// Parses a worker-info text with yaml-rust2 and with the venv's PyYAML `safe_load`, checks
/// they agree, and returns the mapping.
fn parse_both(text: &str) -> serde_json::Map<String, Value> {
    let docs = YamlLoader::load_from_str(text)
        .unwrap_or_else(|e| panic!("yaml-rust2 cannot parse {text:?}: {e}"));
    assert_eq!(docs.len(), 1, "{text:?}");
    let Yaml::Hash(hash) = &docs[0] else {
        panic!("not a mapping: {text:?}");
    };
    // Keys in the order written, which must be sorted as PyYAML's safe_dump sorts them.
    let keys: Vec<&str> = hash
        .keys()
        .map(|k| k.as_str().expect("string keys"))
        .collect();
    let mut sorted = keys.clone();
    sorted.sort_unstable();
    assert_eq!(keys, sorted, "keys not sorted in {text:?}");
    let Value::Object(by_rust) = yaml_to_json(&docs[0]) else {
        unreachable!("a hash converts to an object");
    };
    let mut py = Command::new(env::venv().join("bin/python"))
        .args([
            "-c",
            "import sys, json, yaml; print(json.dumps(yaml.safe_load(sys.stdin.read())))",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("venv python");
    use std::io::Write;
    py.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = py.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "PyYAML cannot parse {text:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let by_python: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        Value::Object(by_rust.clone()),
        by_python,
        "PyYAML and yaml-rust2 disagree on {text:?}"
    );
    by_rust
}

/// Checks the framing every worker-info answer must have and returns the parsed mapping.
fn check_output(out: &Output, what: &str) -> serde_json::Map<String, Value> {
    assert!(out.status.success(), "{what}: exit {:?}", out.status);
    assert!(
        out.stderr.is_empty(),
        "{what}: wrote to stderr (receptor would mix it into the unit's stdout): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout.clone()).expect("utf-8");
    assert!(
        text.starts_with('{') && text.ends_with("}\n\n") && text.matches('\n').count() == 2,
        "{what}: not one flow mapping line plus an empty line: {text:?}"
    );
    parse_both(&text)
}

fn agent_info(config: &Path) -> serde_json::Map<String, Value> {
    let out = Command::new(env::bin("meshrun-agent"))
        .arg("--config")
        .arg(config)
        .args(["worker", "--worker-info"])
        .stdin(Stdio::null())
        .output()
        .expect("run meshrun-agent");
    check_output(&out, "meshrun-agent worker --worker-info")
}

fn runner_info(home: &Path) -> serde_json::Map<String, Value> {
    let out = Command::new(env::ansible_runner())
        .args(["worker", "--worker-info"])
        .env("HOME", home)
        .env("PATH", env::venv_path())
        .stdin(Stdio::null())
        .output()
        .expect("run ansible-runner");
    check_output(&out, "ansible-runner worker --worker-info")
}

fn errors(info: &serde_json::Map<String, Value>) -> Vec<String> {
    info["errors"]
        .as_array()
        .expect("errors is a list")
        .iter()
        .map(|e| e.as_str().expect("errors are strings").to_string())
        .collect()
}

fn cpu(info: &serde_json::Map<String, Value>) -> f64 {
    info["cpu_count"].as_f64().expect("cpu_count is a number")
}

fn mem(info: &serde_json::Map<String, Value>) -> u64 {
    info["mem_in_bytes"]
        .as_u64()
        .expect("mem_in_bytes is a whole number")
}

#[test]
fn agrees_with_ansible_runner_on_an_unlimited_node() {
    let dir = tempfile::tempdir().unwrap();
    let config = agent_config(dir.path(), &dir.path().join("state"), "");
    let runner = runner_info(dir.path());
    let first = agent_info(&config);
    let second = agent_info(&config);

    assert_eq!(errors(&first), Vec::<String>::new(), "{first:?}");
    for key in ["cpu_count", "mem_in_bytes", "runner_version"] {
        assert_eq!(
            first[key], runner[key],
            "{key} differs from ansible-runner's (is this test running inside a limited cgroup?)\nagent: {first:?}\nrunner: {runner:?}"
        );
    }
    // Same keys as ansible-runner plus the agent's own (their order is checked when parsing).
    for key in runner.keys() {
        assert!(first.contains_key(key), "missing {key}: {first:?}");
    }
    assert_eq!(first["mode"], "host");
    assert_eq!(first["agent_version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(
        (
            first["reserved_cpus"].clone(),
            first["reserved_memory"].clone()
        ),
        (json!(0), json!(0))
    );

    let uuid = first["uuid"].as_str().expect("uuid is a string");
    assert_eq!(uuid.len(), 36, "{uuid}");
    assert_eq!(second["uuid"], first["uuid"], "uuid changed between calls");
    assert_eq!(
        fs::read_to_string(dir.path().join("state/uuid"))
            .unwrap()
            .trim(),
        uuid
    );
    let boot_id = fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
    assert_eq!(first["boot_id"], boot_id.trim());
}

#[test]
fn a_reservation_lowers_the_report_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let base = agent_info(&agent_config(dir.path(), &state, ""));
    let reserved = agent_info(&agent_config(
        dir.path(),
        &state,
        "reserved_cpus = 1\nreserved_memory = \"1GiB\"",
    ));
    assert_eq!(errors(&reserved), Vec::<String>::new());
    assert_eq!(cpu(&reserved), cpu(&base) - 1.0);
    assert_eq!(mem(&reserved), mem(&base) - GIB);
    assert_eq!(reserved["reserved_memory"], json!(GIB));
    assert_eq!(reserved["reserved_cpus"], json!(1));

    let starved = agent_info(&agent_config(
        dir.path(),
        &state,
        "reserved_cpus = 4096.0\nreserved_memory = \"64TiB\"",
    ));
    assert_eq!(cpu(&starved), 0.0);
    assert_eq!(mem(&starved), 0);
    let errs = errors(&starved).join("\n");
    assert!(
        errs.contains("capacity.reserved_cpus = 4096 leaves no CPU"),
        "{errs}"
    );
    assert!(
        errs.contains("capacity.reserved_memory = 70368744177664 bytes leaves no memory"),
        "{errs}"
    );
}

#[test]
fn odd_strings_in_errors_read_back_the_same_in_pyyaml_and_yaml_rust2() {
    let dir = tempfile::tempdir().unwrap();
    // A state dir below a regular file cannot exist, so its path lands in `errors`.
    let odd = dir
        .path()
        .join("odd: 'q' \"dq\" #x, [y] {z} caf\u{e9} \u{2603}\ttab\nnewline \\ end");
    fs::write(&odd, "").unwrap();
    let state = odd.join("state");
    let info = agent_info(&agent_config(dir.path(), &state, ""));
    assert_eq!(info["uuid"], Value::Null);
    let errs = errors(&info);
    assert!(
        errs.iter()
            .any(|e| e.contains(&format!("state dir {} is not writable", state.display()))),
        "{errs:?}"
    );
}

/// Cgroups this test created (directories, deepest last); removed in reverse when dropped.
struct TestCgroups {
    dirs: Vec<PathBuf>,
}

impl TestCgroups {
    fn create(&mut self, dir: PathBuf, settings: &[(&str, String)]) {
        fs::create_dir(&dir).unwrap_or_else(|e| {
            panic!(
                "cannot create cgroup {} ({e}); this test needs root and cgroup v1 memory, cpu and cpuset hierarchies at /sys/fs/cgroup/<controller>",
                dir.display()
            )
        });
        self.dirs.push(dir.clone());
        for (file, value) in settings {
            write_cgroup(&dir, file, value);
        }
    }
}

fn write_cgroup(dir: &Path, file: &str, value: &str) {
    fs::write(dir.join(file), value)
        .unwrap_or_else(|e| panic!("cannot write {value:?} to {}/{file}: {e}", dir.display()));
}

impl Drop for TestCgroups {
    fn drop(&mut self) {
        for dir in self.dirs.iter().rev() {
            // A process that just exited can take a moment to leave its cgroup. No panic
            // here: this may run while a failed assertion unwinds.
            let mut last = None;
            for _ in 0..50 {
                match fs::remove_dir(dir) {
                    Ok(()) => {
                        last = None;
                        break;
                    }
                    Err(e) => last = Some(e),
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            if let Some(e) = last {
                eprintln!("could not remove cgroup {}: {e}", dir.display());
            }
        }
    }
}

fn require_v1(controller: &str) -> PathBuf {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap();
    let mount = PathBuf::from("/sys/fs/cgroup").join(controller);
    let found = mountinfo.lines().any(|l| {
        let f: Vec<&str> = l.split(' ').collect();
        f.len() > 4
            && Path::new(f[4]) == mount
            && l.contains(" - cgroup ")
            && l.rsplit(' ')
                .next()
                .is_some_and(|o| o.split(',').any(|c| c == controller))
    });
    assert!(
        found,
        "this test needs a cgroup v1 `{controller}` hierarchy at {} (this machine is cgroup v1 hybrid); not found in /proc/self/mountinfo",
        mount.display()
    );
    mount
}

#[test]
fn real_cgroup_v1_limits_are_followed_up_the_hierarchy() {
    let memory = require_v1("memory");
    let cpu_mount = require_v1("cpu");
    let cpuset = require_v1("cpuset");
    let name = format!("meshrun-test-{}", std::process::id());
    let mut cgroups = TestCgroups { dirs: Vec::new() };

    // Limits on the parent only; the child that holds the agent is "unlimited" itself (a
    // larger memory limit, no CPU quota), so only a walk up the hierarchy finds them.
    cgroups.create(
        memory.join(&name),
        &[("memory.limit_in_bytes", (512 * MIB).to_string())],
    );
    cgroups.create(
        memory.join(&name).join("inner"),
        &[("memory.limit_in_bytes", GIB.to_string())],
    );
    cgroups.create(
        cpu_mount.join(&name),
        &[
            ("cpu.cfs_period_us", "100000".into()),
            ("cpu.cfs_quota_us", "100000".into()),
        ],
    );
    cgroups.create(cpu_mount.join(&name).join("inner"), &[]);
    let root_cpus = fs::read_to_string(cpuset.join("cpuset.effective_cpus"))
        .or_else(|_| fs::read_to_string(cpuset.join("cpuset.cpus")))
        .unwrap();
    let root_mems = fs::read_to_string(cpuset.join("cpuset.mems")).unwrap();
    cgroups.create(
        cpuset.join(&name),
        &[
            ("cpuset.cpus", root_cpus.trim().to_string()),
            ("cpuset.mems", root_mems.trim().to_string()),
        ],
    );
    assert_eq!(
        fs::read_to_string(memory.join(&name).join("memory.limit_in_bytes"))
            .unwrap()
            .trim(),
        (512 * MIB).to_string(),
        "the kernel did not keep the memory limit"
    );

    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let inside = |config: &Path| {
        let script = format!(
            "echo $$ > {mem}/cgroup.procs && echo $$ > {cpu}/cgroup.procs && exec \"$0\" --config \"$1\" worker --worker-info",
            mem = memory.join(&name).join("inner").display(),
            cpu = cpu_mount.join(&name).join("inner").display(),
        );
        let out = Command::new("sh")
            .arg("-c")
            .arg(script)
            .arg(env::bin("meshrun-agent"))
            .arg(config)
            .stdin(Stdio::null())
            .output()
            .expect("sh");
        check_output(&out, "meshrun-agent inside the test cgroup")
    };

    // 1. Run inside the cgroup: 512 MiB and 1 CPU, from the parent's limits.
    let info = inside(&agent_config(dir.path(), &state, ""));
    assert_eq!(errors(&info), Vec::<String>::new(), "{info:?}");
    assert_eq!(mem(&info), 512 * MIB, "{info:?}");
    assert_eq!(cpu(&info), 1.0, "{info:?}");

    // 2. Inside, with a reservation: what is left of the cgroup's share.
    let info = inside(&agent_config(
        dir.path(),
        &state,
        "reserved_cpus = 0.5\nreserved_memory = \"256MiB\"",
    ));
    assert_eq!((cpu(&info), mem(&info)), (0.5, 256 * MIB), "{info:?}");

    // 3. Outside, pointed at the cgroup by its cgroup path; a fractional quota is kept.
    write_cgroup(&cpu_mount.join(&name), "cpu.cfs_quota_us", "150000");
    let info = agent_info(&agent_config(
        dir.path(),
        &state,
        &format!("cgroup = {}", toml_str(&format!("/{name}/inner"))),
    ));
    assert_eq!(errors(&info), Vec::<String>::new(), "{info:?}");
    assert_eq!((cpu(&info), mem(&info)), (1.5, 512 * MIB), "{info:?}");

    // 4. Pointed at it by a directory under one mount: every hierarchy follows, and a cpuset
    //    narrower than the quota wins.
    write_cgroup(&cpuset.join(&name), "cpuset.cpus", "0");
    let info = agent_info(&agent_config(
        dir.path(),
        &state,
        &format!(
            "cgroup = {}",
            toml_str(&cpuset.join(&name).display().to_string())
        ),
    ));
    assert_eq!(errors(&info), Vec::<String>::new(), "{info:?}");
    assert_eq!((cpu(&info), mem(&info)), (1.0, 512 * MIB), "{info:?}");

    // 5. A configured cgroup that does not exist is reported, not silently ignored.
    let info = agent_info(&agent_config(
        dir.path(),
        &state,
        &format!("cgroup = {}", toml_str(&format!("/{name}-missing"))),
    ));
    let errs = errors(&info).join("\n");
    assert!(
        errs.contains(&format!("capacity.cgroup /{name}-missing does not exist")),
        "{errs}"
    );

    drop(cgroups);
    for hierarchy in [&memory, &cpu_mount, &cpuset] {
        assert!(
            !hierarchy.join(&name).exists(),
            "cgroup {name} left in {}",
            hierarchy.display()
        );
    }
}
