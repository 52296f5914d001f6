//! What jobs leave behind: finished units' containers are swept when the next job starts (live
//! units' never), and `worker cleanup` removes old private data dirs as ansible-runner's does,
//! refusing dangerous patterns and the node's own image.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use meshrun_shared::runner_stream::{RunnerKwargs, write_transmit_stream};
use meshrun_tests::env;
use meshrun_tests::mesh::{Mesh, NodeSpec, agent_config};

fn podman() -> Command {
    let mut c = Command::new("podman");
    c.env("CONTAINERS_CONF", env::containers_conf());
    c
}

fn exists(name: &str) -> bool {
    podman()
        .args(["container", "exists", name])
        .status()
        .is_ok_and(|s| s.success())
}

/// A stopped container labelled like a job container of `node` whose unit dir is `unit_dir`.
fn fake_leftover(name: &str, node: &str, unit_dir: &Path) {
    let ok = podman()
        .args(["create", "--name", name])
        .arg(format!("--label=io.meshrun.node={node}"))
        .arg(format!(
            "--label=io.meshrun.unit-dir={}",
            unit_dir.display()
        ))
        .args([env::ee_image(), "true"])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(ok.success());
}

struct Cleanup<'a>(Vec<&'a str>, Option<Child>);

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        for name in &self.0 {
            let _ = podman().args(["rm", "--force", "--time=0", name]).output();
        }
        if let Some(mut c) = self.1.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[test]
fn a_job_sweeps_finished_units_containers_and_keeps_live_ones() {
    let mesh = Mesh::start(&[
        NodeSpec::new("control", "control").listening(),
        NodeSpec::new("sweeper", "execution")
            .dialing("control")
            .in_podman(),
    ]);
    let node_dir = mesh.nodes["sweeper"].dir.join("receptor-data/sweeper");
    std::fs::create_dir_all(&node_dir).unwrap();
    // A released unit (its directory is gone) and a unit that is still running (its recorded
    // process is alive).
    let released = node_dir.join("Released1");
    let live = node_dir.join("LiveUnit1");
    std::fs::create_dir_all(&live).unwrap();
    let sleeper = Command::new("sleep").arg("300").spawn().unwrap();
    std::fs::write(
        live.join("status"),
        format!(
            r#"{{"State":1,"StateName":"Running","ExtraData":{{"Pid":{}}}}}"#,
            sleeper.id()
        ),
    )
    .unwrap();
    let (gone_name, kept_name) = (
        "meshrun-test-released-leftover",
        "meshrun-test-live-leftover",
    );
    let _cleanup = Cleanup(vec![gone_name, kept_name], Some(sleeper));
    fake_leftover(gone_name, "sweeper", &released);
    fake_leftover(kept_name, "sweeper", &live);

    let pdd = mesh.dir().join("pdd");
    std::fs::create_dir_all(pdd.join("project")).unwrap();
    std::fs::create_dir_all(pdd.join("inventory")).unwrap();
    std::fs::write(pdd.join("inventory/hosts"), "localhost ansible_connection=local ansible_python_interpreter=\"{{ ansible_playbook_python }}\"\n").unwrap();
    std::fs::write(
        pdd.join("project/p.yml"),
        "- hosts: all\n  gather_facts: false\n  tasks: [{ansible.builtin.debug: {msg: hi}}]\n",
    )
    .unwrap();
    let mut payload = Vec::new();
    let kwargs = RunnerKwargs {
        playbook: Some("p.yml".into()),
        ..RunnerKwargs::new("1")
    };
    write_transmit_stream(&mut payload, &kwargs.to_map(), Some(&pdd), None).unwrap();
    let unit = mesh.submit("sweeper", "sweeper", "ansible-runner", "--delete", &payload);
    let out = mesh.output("sweeper", &unit, Duration::from_secs(60));
    assert!(String::from_utf8_lossy(&out).contains("\"status\": \"successful\""));
    assert!(
        !exists(gone_name),
        "the released unit's container was removed"
    );
    assert!(exists(kept_name), "the live unit's container was kept");
}

fn cleanup(config: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(env::bin("meshrun-agent"))
        .arg("--config")
        .arg(config)
        .args(["worker", "cleanup"])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.stderr.is_empty(),
        "nothing on stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn worker_cleanup_removes_old_dirs_and_refuses_what_it_must_not_touch() {
    let tmp = tempfile::tempdir().unwrap();
    let agent = tmp.path().join("agent");
    std::fs::create_dir_all(&agent).unwrap();
    let config = agent.join("agent.toml");
    std::fs::write(&config, agent_config("cleaner", &agent, true, "")).unwrap();
    let jobs = tmp.path().join("jobs");
    for d in ["awx_1_a", "awx_2_b", "awx_3_c", "other"] {
        std::fs::create_dir_all(jobs.join(d)).unwrap();
    }
    // awx_3_c belongs to a running job: its pid file names a live process.
    std::fs::write(jobs.join("awx_3_c/pid"), std::process::id().to_string()).unwrap();
    let pattern = format!("--file-pattern={}/awx_*_*", jobs.display());
    let (ok, text) = cleanup(
        &config,
        &[&pattern, "--exclude-strings", "awx_2_", "--grace-period=0"],
    );
    assert!(ok, "{text}");
    assert!(text.ends_with("(changed: True)\n"), "{text}");
    assert!(!jobs.join("awx_1_a").exists());
    assert!(jobs.join("awx_2_b").exists(), "excluded");
    assert!(jobs.join("awx_3_c").exists(), "running");
    assert!(jobs.join("other").exists(), "not matched");

    // Recent dirs are kept by the default 60-minute grace period.
    let (_, text) = cleanup(&config, &[&format!("--file-pattern={}/*", jobs.display())]);
    assert!(text.ends_with("(changed: False)\n"), "{text}");

    for bad in [
        "--file-pattern=/*",
        "--file-pattern=/et?",
        "--file-pattern=relative/*",
    ] {
        let (ok, text) = cleanup(&config, &[bad]);
        assert!(!ok && text.contains("refused the cleanup"), "{bad}: {text}");
    }
    std::fs::create_dir_all(agent.join("agent-state/units/u1")).unwrap();
    let own_state = format!("--file-pattern={}/*", agent.display());
    let (ok, text) = cleanup(&config, &[&own_state, "--grace-period=0"]);
    assert!(!ok && text.contains("must never be deleted"), "{text}");

    let (ok, text) = cleanup(&config, &["--remove-images", env::ee_image()]);
    assert!(
        ok && text.contains("default execution environment"),
        "{text}"
    );
    assert!(
        podman()
            .args(["image", "exists", env::ee_image()])
            .status()
            .unwrap()
            .success()
    );
}
