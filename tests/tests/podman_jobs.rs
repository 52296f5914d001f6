//! Jobs in podman containers of the EE image on a real execution node (receptor runs
//! `meshrun-agent worker` in podman mode), with the real ansible-runner on both ends.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use meshrun_shared::runner_stream::{Frame, RunnerKwargs, write_transmit_stream};
use meshrun_tests::env;
use meshrun_tests::mesh::{Mesh, NodeSpec};
use meshrun_tests::stream::{frames, last_status};
use meshrun_tests::wait::eventually;
use serde_json::{Value, json};

const INVENTORY: &str = "localhost ansible_connection=local ansible_python_interpreter=\"{{ ansible_playbook_python }}\"\n";

/// control (listens) ← `exec` (podman mode). Each test names its execution node differently,
/// because tests run at once and job containers are labelled with the node id.
fn mesh(exec: &str) -> Mesh {
    env::ee_image();
    let mesh = Mesh::start(&[
        NodeSpec::new("control", "control").listening(),
        NodeSpec::new(exec, "execution")
            .dialing("control")
            .in_podman(),
    ]);
    mesh.wait_routable("control", &[exec]);
    mesh
}

/// A private data dir with `project/p.yml` = `playbook`.
fn pdd(root: &Path, playbook: &str) -> PathBuf {
    let pdd = root.join("pdd");
    std::fs::create_dir_all(pdd.join("project")).unwrap();
    std::fs::create_dir_all(pdd.join("inventory")).unwrap();
    std::fs::write(pdd.join("inventory/hosts"), INVENTORY).unwrap();
    std::fs::write(pdd.join("project/p.yml"), playbook).unwrap();
    pdd
}

/// A job stream with `extra` merged into the kwargs.
fn stream(pdd: &Path, extra: Value) -> Vec<u8> {
    let mut kwargs = RunnerKwargs {
        playbook: Some("p.yml".into()),
        ..RunnerKwargs::new("42")
    }
    .to_map();
    if let Value::Object(extra) = extra {
        kwargs.extend(extra);
    }
    let mut out = Vec::new();
    write_transmit_stream(&mut out, &kwargs, Some(pdd), None).unwrap();
    out
}

/// Containers (any state) carrying `label`.
fn containers(label: &str) -> Vec<String> {
    let out = Command::new("podman")
        .env("CONTAINERS_CONF", env::containers_conf())
        .args([
            "ps",
            "--all",
            "--format={{.ID}}",
            &format!("--filter=label={label}"),
        ])
        .output()
        .expect("podman ps");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

fn remove_containers(label: &str) {
    for id in containers(label) {
        let _ = Command::new("podman")
            .env("CONTAINERS_CONF", env::containers_conf())
            .args(["rm", "--force", "--time=0", &id])
            .status();
    }
}

const SLEEPY: &str = "- hosts: all\n  gather_facts: false\n  tasks:\n    - ansible.builtin.debug: {msg: started}\n    - name: long sleep\n      ansible.builtin.command: sleep 120\n";

#[test]
fn a_job_through_the_coordinator_runs_inside_the_ee_container() {
    let mut mesh = mesh("pod-coord");
    mesh.start_coordinator("control");
    let project = mesh.dir().join("project");
    std::fs::create_dir_all(&project).unwrap();
    std::fs::write(
        project.join("where.yml"),
        "- hosts: all\n  gather_facts: false\n  tasks:\n\
         \x20   - ansible.builtin.stat: {path: /run/.containerenv}\n      register: ce\n\
         \x20   - ansible.builtin.assert:\n        that: [ce.stat.exists]\n\
         \x20   - ansible.builtin.debug:\n        msg: \"in a container on {{ lookup('ansible.builtin.env', 'MESHRUN_NODE_ID') }}\"\n",
    )
    .unwrap();
    let inventory = mesh.dir().join("inventory");
    std::fs::write(&inventory, INVENTORY).unwrap();
    let out = mesh.meshrun(&[
        "job",
        "run",
        &project.display().to_string(),
        "where.yml",
        "-i",
        &inventory.display().to_string(),
        "--node",
        "pod-coord",
        "--follow",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("in a container on pod-coord"),
        "{stdout}\n{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        mesh.coordinator_log()
    );
    assert!(
        containers("io.meshrun.node=pod-coord").is_empty(),
        "--rm removed the container"
    );
}

#[test]
fn an_awx_shaped_stream_from_the_real_runner_runs_and_the_real_process_accepts_it() {
    let mesh = mesh("pod-awx");
    let pdd = pdd(
        mesh.dir(),
        "- hosts: all\n  gather_facts: false\n  tasks:\n    - ansible.builtin.command: id -un\n      register: who\n    - ansible.builtin.debug: {msg: \"user={{ who.stdout }}\"}\n",
    );
    // What AWX does: transmit with process isolation on, an EE image and its container options.
    let script = format!(
        "import sys, ansible_runner\n\
         ansible_runner.interface.run(private_data_dir={pdd:?}, playbook='p.yml', streamer='transmit',\n\
             _output=sys.stdout.buffer, process_isolation=True, process_isolation_executable='podman',\n\
             container_image={image:?}, container_options=['--user=root', '--pull=missing'])\n",
        pdd = pdd.display().to_string(),
        image = env::ee_image(),
    );
    let transmit = Command::new(env::venv().join("bin/python"))
        .args(["-c", &script])
        .output()
        .unwrap();
    assert!(
        transmit.status.success(),
        "{}",
        String::from_utf8_lossy(&transmit.stderr)
    );
    assert!(String::from_utf8_lossy(&transmit.stdout).contains("\"process_isolation\": true"));
    let unit = mesh.submit(
        "control",
        "pod-awx",
        "ansible-runner",
        "--private-data-dir=/tmp/awx_42_abc --delete",
        &transmit.stdout,
    );
    let output = mesh.output("control", &unit, Duration::from_secs(120));
    mesh.release("control", &unit);
    let dir = mesh.dir().join("processed");
    let mut process = Command::new(env::ansible_runner())
        .arg("process")
        .arg(&dir)
        .env("PATH", env::venv_path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    process.stdin.take().unwrap().write_all(&output).unwrap();
    let done = process.wait_with_output().unwrap();
    assert!(done.status.success());
    let status = std::fs::read_to_string(dir.join("artifacts/status")).unwrap_or_default();
    assert_eq!(status, "successful", "{}", String::from_utf8_lossy(&output));
    assert!(
        String::from_utf8_lossy(&done.stdout).contains("user=root"),
        "ran as --user=root"
    );
}

#[test]
fn cancel_through_receptor_stops_the_container_and_leaves_nothing() {
    let mesh = mesh("pod-cancel");
    let pdd = pdd(mesh.dir(), SLEEPY);
    let unit = mesh.submit(
        "pod-cancel",
        "pod-cancel",
        "ansible-runner",
        "--delete",
        &stream(&pdd, json!({})),
    );
    let label = format!("io.meshrun.unit={unit}");
    eventually("the job container to run", Duration::from_secs(60), || {
        (!containers(&label).is_empty()).then_some(())
    });
    let agent_pid = mesh.unit_status("pod-cancel", &unit).extra_data["Pid"]
        .as_i64()
        .expect("runner pid");
    std::thread::sleep(Duration::from_secs(2));
    let t0 = Instant::now();
    mesh.cancel("pod-cancel", &unit);
    eventually("the container to be gone", Duration::from_secs(15), || {
        containers(&label).is_empty().then_some(())
    });
    let gone_after = t0.elapsed();
    let output = mesh.output("pod-cancel", &unit, Duration::from_secs(15));
    eprintln!("container gone {gone_after:?} after work cancel");
    let frames = frames(&output);
    assert_eq!(
        last_status(&frames)["status"],
        "canceled",
        "{}",
        String::from_utf8_lossy(&output)
    );
    assert!(
        !Path::new(&format!("/proc/{agent_pid}")).exists(),
        "the unit's process {agent_pid} is gone"
    );
    mesh.release("pod-cancel", &unit);
    assert!(mesh.work_list("pod-cancel").is_empty());
}

#[test]
fn a_missing_image_and_a_refused_option_are_clear_errors_in_the_stream() {
    let mesh = mesh("pod-refuse");
    let pdd = pdd(mesh.dir(), SLEEPY);
    let cases = [
        (
            json!({"container_image": "localhost/meshrun-no-such-image:1"}),
            "podman could not run the job's container",
        ),
        (
            json!({"container_options": ["--privileged"]}),
            "container option \"--privileged\" is not allowed on this node",
        ),
        (
            json!({"container_volume_mounts": ["/etc:/host-etc"]}),
            "volume mount \"/etc:/host-etc\" is not allowed",
        ),
    ];
    for (extra, expected) in cases {
        let unit = mesh.submit(
            "pod-refuse",
            "pod-refuse",
            "ansible-runner",
            "--delete",
            &stream(&pdd, extra.clone()),
        );
        let output = mesh.output("pod-refuse", &unit, Duration::from_secs(60));
        let status = last_status(&frames(&output));
        assert_eq!(status["status"], "error", "{extra}: {status}");
        let text = format!(
            "{} {}",
            status["job_explanation"].as_str().unwrap_or_default(),
            status["result_traceback"].as_str().unwrap_or_default()
        );
        assert!(text.contains(expected), "{extra}: {text}");
        mesh.release("pod-refuse", &unit);
    }
    assert!(containers("io.meshrun.node=pod-refuse").is_empty());
}

#[test]
fn a_container_killed_mid_run_yields_a_well_formed_error() {
    let mesh = mesh("pod-kill");
    let pdd = pdd(mesh.dir(), SLEEPY);
    let unit = mesh.submit(
        "pod-kill",
        "pod-kill",
        "ansible-runner",
        "--delete",
        &stream(&pdd, json!({})),
    );
    let label = format!("io.meshrun.unit={unit}");
    let id = eventually("the job container to run", Duration::from_secs(60), || {
        containers(&label).pop()
    });
    std::thread::sleep(Duration::from_secs(2));
    let killed = Command::new("podman")
        .env("CONTAINERS_CONF", env::containers_conf())
        .args(["kill", &id])
        .status()
        .unwrap();
    assert!(killed.success());
    let output = mesh.output("pod-kill", &unit, Duration::from_secs(30));
    let frames = frames(&output);
    let status = last_status(&frames);
    assert_eq!(status["status"], "error", "{status}");
    assert!(
        status["job_explanation"]
            .as_str()
            .unwrap()
            .contains("killed"),
        "{status}"
    );
    assert!(matches!(frames.last(), Some(Frame::Eof)));
    mesh.release("pod-kill", &unit);
    remove_containers(&label);
}
