//! meshrun's stream codec and agent against the real ansible-runner (no mesh needed).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, SystemTime};

use meshrun_shared::runner_stream::Frame;
use meshrun_tests::env;
use meshrun_tests::procs::descendants;
use meshrun_tests::stream::{events_stdout, frames, last_status};
use meshrun_tests::wait::eventually;
use serde_json::Value;

const INVENTORY: &str = "localhost ansible_connection=local ansible_python_interpreter=\"{{ ansible_playbook_python }}\"\n";

/// A private data dir with `project/<name>` = `playbook`.
fn private_data_dir(root: &Path, name: &str, playbook: &str) -> PathBuf {
    let pdd = root.join("pdd");
    std::fs::create_dir_all(pdd.join("project")).unwrap();
    std::fs::create_dir_all(pdd.join("inventory")).unwrap();
    std::fs::write(pdd.join("inventory/hosts"), INVENTORY).unwrap();
    std::fs::write(pdd.join("project").join(name), playbook).unwrap();
    pdd
}

fn run(cmd: &mut Command, stdin: &[u8]) -> Output {
    let mut child = cmd
        .env("PATH", env::venv_path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut input = child.stdin.take().unwrap();
    let data = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&data);
    });
    let out = child.wait_with_output().expect("wait");
    writer.join().unwrap();
    out
}

fn ok(out: &Output, what: &str) -> Vec<u8> {
    assert!(
        out.status.success(),
        "{what} failed ({:?}): {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout.clone()
}

fn meshrun_transmit(pdd: &Path, playbook: &str) -> Vec<u8> {
    let out = run(
        Command::new(env::bin("meshrun"))
            .arg("transmit")
            .arg(pdd)
            .args(["-p", playbook]),
        b"",
    );
    ok(&out, "meshrun transmit")
}

fn real_worker(stream: &[u8]) -> Vec<u8> {
    let out = run(Command::new(env::ansible_runner()).arg("worker"), stream);
    out.stdout
}

#[test]
fn our_stream_keeps_exec_bits_symlinks_mtimes_and_binary_files_for_the_real_worker() {
    let tmp = tempfile::tempdir().unwrap();
    let binary: Vec<u8> = (0..=255u8).cycle().take(4096).collect();
    let sha1 = {
        // ansible's stat checksum is sha1; compute it with the venv's python to avoid a dep.
        let out = Command::new(env::venv().join("bin/python"))
            .args([
                "-c",
                "import hashlib,sys; print(hashlib.sha1(sys.stdin.buffer.read()).hexdigest())",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                c.stdin.take().unwrap().write_all(&binary)?;
                c.wait_with_output()
            })
            .unwrap();
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    let old = 981_173_106; // 2001-02-03 04:05:06 UTC
    let playbook = format!(
        r#"- hosts: all
  gather_facts: false
  tasks:
    - name: the script kept its exec bit
      ansible.builtin.command: "{{{{ playbook_dir }}}}/bin/tool.sh"
      register: tool
    - ansible.builtin.assert:
        that: ["tool.stdout == 'tool ran'"]
    - ansible.builtin.stat:
        path: "{{{{ playbook_dir }}}}/link"
      register: link
    - ansible.builtin.assert:
        that: ["link.stat.islnk", "link.stat.lnk_target == 'data.bin'"]
    - ansible.builtin.stat:
        path: "{{{{ playbook_dir }}}}/data.bin"
        checksum_algorithm: sha1
      register: data
    - ansible.builtin.assert:
        that: ["data.stat.checksum == '{sha1}'", "data.stat.size == 4096"]
    - ansible.builtin.stat:
        path: "{{{{ playbook_dir }}}}/old.txt"
      register: oldf
    - ansible.builtin.assert:
        that: ["(oldf.stat.mtime | int) == {old}"]
"#
    );
    let pdd = private_data_dir(tmp.path(), "check.yml", &playbook);
    let project = pdd.join("project");
    std::fs::create_dir_all(project.join("bin")).unwrap();
    std::fs::write(project.join("bin/tool.sh"), "#!/bin/sh\necho tool ran\n").unwrap();
    std::fs::set_permissions(
        project.join("bin/tool.sh"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    std::fs::write(project.join("data.bin"), &binary).unwrap();
    std::os::unix::fs::symlink("data.bin", project.join("link")).unwrap();
    std::fs::write(project.join("old.txt"), "old\n").unwrap();
    let f = std::fs::File::options()
        .write(true)
        .open(project.join("old.txt"))
        .unwrap();
    f.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(old))
        .unwrap();

    let output = real_worker(&meshrun_transmit(&pdd, "check.yml"));
    let frames = frames(&output);
    let line = last_status(&frames);
    let status = line["status"].as_str().unwrap_or_default().to_string();
    assert_eq!(status, "successful", "{line}\n{}", events_stdout(&frames));
}

/// Every file below `dir`, relative, with its content.
fn tree(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).unwrap().display().to_string();
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

#[test]
fn our_process_writes_the_same_artifacts_as_the_real_process() {
    let tmp = tempfile::tempdir().unwrap();
    let pdd = private_data_dir(
        tmp.path(),
        "p.yml",
        "- hosts: all\n  gather_facts: false\n  tasks:\n    - ansible.builtin.debug: {msg: hi}\n    - ansible.builtin.command: echo there\n",
    );
    let transmit = run(
        Command::new(env::ansible_runner())
            .arg("transmit")
            .arg(&pdd)
            .args(["-p", "p.yml"]),
        b"",
    );
    let output = real_worker(&ok(&transmit, "ansible-runner transmit"));
    let (real, ours) = (tmp.path().join("real"), tmp.path().join("ours"));
    ok(
        &run(
            Command::new(env::ansible_runner())
                .arg("process")
                .arg(&real),
            &output,
        ),
        "ansible-runner process",
    );
    ok(
        &run(
            Command::new(env::bin("meshrun")).arg("process").arg(&ours),
            &output,
        ),
        "meshrun process",
    );
    let (a, b) = (tree(&real.join("artifacts")), tree(&ours.join("artifacts")));
    assert_eq!(
        a.get("status").map(Vec::as_slice),
        Some(&b"successful"[..]),
        "the job really ran"
    );
    assert_eq!(
        a.keys().collect::<Vec<_>>(),
        b.keys().collect::<Vec<_>>(),
        "same files"
    );
    assert!(
        a.keys().any(|k| k.starts_with("job_events/")),
        "events were written: {:?}",
        a.keys()
    );
    for (name, real_bytes) in &a {
        let our_bytes = &b[name];
        if name.ends_with(".json") {
            let x: Value = serde_json::from_slice(real_bytes).unwrap();
            let y: Value = serde_json::from_slice(our_bytes).unwrap();
            assert_eq!(x, y, "{name}");
        } else {
            assert_eq!(real_bytes, our_bytes, "{name}");
        }
    }
}

#[test]
fn meshrun_process_refuses_a_bad_stream_with_a_message() {
    let tmp = tempfile::tempdir().unwrap();
    let out = run(
        Command::new(env::bin("meshrun"))
            .arg("process")
            .arg(tmp.path()),
        b"{\"status\": \"running\"}\nTraceback (most recent call last):\n",
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not valid") && err.contains("offset"), "{err}");
}

fn agent_config(dir: &Path, node: &str) -> PathBuf {
    let p = dir.join("agent.toml");
    std::fs::write(&p, meshrun_tests::mesh::agent_config(node, dir, false, "")).unwrap();
    p
}

#[test]
fn the_agent_runs_a_job_writes_only_the_stream_and_passes_its_node_id() {
    let tmp = tempfile::tempdir().unwrap();
    let pdd = private_data_dir(
        tmp.path(),
        "hello.yml",
        &std::fs::read_to_string(env::repo_root().join("packaging/demo/project/hello.yml"))
            .unwrap(),
    );
    let config = agent_config(tmp.path(), "itest-node");
    let out = run(
        Command::new(env::bin("meshrun-agent"))
            .arg("--config")
            .arg(&config)
            .args(["worker", "--private-data-dir=/tmp/ignored", "--delete"]),
        &meshrun_transmit(&pdd, "hello.yml"),
    );
    assert!(
        out.stderr.is_empty(),
        "the agent wrote to stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success());
    let frames = frames(&out.stdout);
    assert_eq!(last_status(&frames)["status"], "successful");
    assert!(events_stdout(&frames).contains("hello from execution node itest-node"));
    // The unit's private data dir was removed (--delete).
    let units = tmp.path().join("agent-state/units");
    assert_eq!(std::fs::read_dir(&units).map(|d| d.count()).unwrap_or(0), 0);
}

#[test]
fn the_agent_refuses_unknown_parameters_inside_the_stream() {
    let tmp = tempfile::tempdir().unwrap();
    let config = agent_config(tmp.path(), "n1");
    let out = run(
        Command::new(env::bin("meshrun-agent"))
            .arg("--config")
            .arg(&config)
            .args(["worker", "--delete", "--container-runtime=docker"]),
        b"",
    );
    assert!(out.stderr.is_empty());
    assert_eq!(out.status.code(), Some(1));
    let frames = frames(&out.stdout);
    let line = last_status(&frames);
    let status = line["status"].as_str().unwrap_or_default().to_string();
    assert_eq!(status, "error");
    assert!(
        line["job_explanation"]
            .as_str()
            .unwrap()
            .contains("--container-runtime=docker"),
        "{line}"
    );
}

#[test]
fn a_worker_killed_mid_run_still_yields_a_well_formed_error_ending() {
    let tmp = tempfile::tempdir().unwrap();
    let pdd = private_data_dir(
        tmp.path(),
        "slow.yml",
        "- hosts: all\n  gather_facts: false\n  tasks:\n    - ansible.builtin.debug: {msg: started}\n    - name: long sleep\n      ansible.builtin.command: sleep 60\n",
    );
    let stream_file = tmp.path().join("stream");
    std::fs::write(&stream_file, meshrun_transmit(&pdd, "slow.yml")).unwrap();
    let config = agent_config(tmp.path(), "n1");
    let out_file = tmp.path().join("out");
    let err_file = tmp.path().join("err");
    let mut agent = Command::new(env::bin("meshrun-agent"))
        .arg("--config")
        .arg(&config)
        .args(["worker", "--delete"])
        .stdin(std::fs::File::open(&stream_file).unwrap())
        .stdout(std::fs::File::create(&out_file).unwrap())
        .stderr(std::fs::File::create(&err_file).unwrap())
        .spawn()
        .unwrap();
    eventually("the sleep task to start", Duration::from_secs(60), || {
        let text = std::fs::read_to_string(&out_file).unwrap_or_default();
        text.contains("TASK [long sleep]").then_some(())
    });
    let worker_tree = descendants(agent.id() as i32);
    let runner = *worker_tree.first().expect("the agent has a worker child");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(runner),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let status = agent.wait().unwrap();
    // Clean up what ansible-runner left behind (its playbook process), by PID.
    for pid in worker_tree {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    let mut stdout = Vec::new();
    std::fs::File::open(&out_file)
        .unwrap()
        .read_to_end(&mut stdout)
        .unwrap();
    assert_eq!(
        std::fs::metadata(&err_file).unwrap().len(),
        0,
        "nothing on stderr"
    );
    assert_eq!(status.code(), Some(1));
    let frames = frames(&stdout);
    let line = last_status(&frames);
    let st = line["status"].as_str().unwrap_or_default().to_string();
    assert_eq!(st, "error");
    assert!(
        line["job_explanation"]
            .as_str()
            .unwrap()
            .contains("killed by signal 9"),
        "{line}"
    );
    assert!(matches!(frames.last(), Some(Frame::Eof)));
}
