//! The coordinator runs the control node's receptor itself (`[control_node]`, no receptor
//! started by anyone else): it makes the work-signing key pair, writes receptor.conf with the
//! listener, the signature-verifying `local` work type and the firewall rule, starts receptor by
//! absolute path, brings it back after a crash, stops it on SIGTERM, and on the next start keeps
//! the key and an unchanged receptor.conf. Nodes dial its listener and jobs run through it:
//! unsigned to a node that does not verify, signed to one that verifies with the control node's
//! public key, and through `local` on the hybrid control node itself.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Output;
use std::time::{Duration, SystemTime};

use meshrun_shared::receptor_conf::{Entry, FirewallAction, ReceptorConfig};
use meshrun_tests::env;
use meshrun_tests::mesh::managed_control::{ControlFiles, alive, read_or_note};
use meshrun_tests::mesh::{Mesh, NodeSpec};
use meshrun_tests::wait::eventually;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

fn mtime(path: &Path) -> SystemTime {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn describe(mesh: &Mesh, files: &ControlFiles, out: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}\n--- coordinator log\n{}\n--- receptor log\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        mesh.coordinator_log(),
        read_or_note(&files.receptor_log),
    )
}

/// `meshrun job run <demo project> hello.yml -i <demo inventory> --node <node> --follow`.
fn run_demo_job(mesh: &Mesh, node: &str) -> Output {
    let project = env::repo_root().join("packaging/demo/project");
    let inventory = env::repo_root().join("packaging/demo/inventory.ini");
    mesh.meshrun(&[
        "job",
        "run",
        &project.display().to_string(),
        "hello.yml",
        "-i",
        &inventory.display().to_string(),
        "--node",
        node,
        "--follow",
    ])
}

#[test]
fn the_coordinators_own_receptor_is_configured_joined_and_runs_signed_and_local_jobs() {
    let mut mesh = Mesh::start(&[]);
    let files = mesh.start_managed_control("control", "hybrid");

    assert!(files.answers(), "the control socket greets as `control`");
    let pid = files.receptor_pid().unwrap_or_else(|| {
        panic!(
            "no receptor `{}` recorded in {}",
            files.receptor_cmdline().join(" "),
            files.receptor_pid_file.display()
        )
    });
    assert!(pid > 1);

    // receptor.conf: the renderer's control-node entries, pointing at the coordinator's files.
    let text = std::fs::read_to_string(&files.receptor_conf).unwrap();
    let conf = ReceptorConfig::parse(&text).unwrap();
    let node = conf.node().expect("a node entry");
    assert_eq!(node.id.as_ref().unwrap(), "control");
    assert!(
        node.firewallrules
            .iter()
            .any(|r| r.action == FirewallAction::Reject
                && r.tonode.as_deref() == Some("control")
                && r.toservice.as_deref() == Some("control")
                && r.fromnode.is_none()),
        "no mesh peer may use the control service:\n{text}"
    );
    let entry = |f: &dyn Fn(&Entry) -> bool| conf.entries.iter().any(f);
    assert!(
        entry(&|e| matches!(e, Entry::TcpListener(l)
            if l.port == files.port && l.bindaddr.as_deref() == Some("127.0.0.1"))),
        "{text}"
    );
    assert!(
        entry(&|e| matches!(e, Entry::ControlService(c)
            if c.filename.as_deref() == Some(&*files.socket.display().to_string()))),
        "{text}"
    );
    assert!(
        entry(&|e| matches!(e, Entry::WorkSigning(s)
            if Path::new(&s.privatekey) == files.signing_key && s.tokenexpiration.is_some())),
        "{text}"
    );
    assert!(
        entry(&|e| matches!(e, Entry::WorkVerification(v)
            if Path::new(&v.publickey) == files.verification_key)),
        "{text}"
    );
    let wc: Vec<_> = conf.work_commands().collect();
    assert_eq!(wc.len(), 1, "{text}");
    assert_eq!(wc[0].worktype, "local");
    assert_eq!(Path::new(&wc[0].command), env::bin("meshrun-agent"));
    // Local work runs with the coordinator's copy of the agent config, which adds the project
    // cache as a podman volume root and keeps the rest.
    let local_agent = files.dir.join("coordinator/local-agent.toml");
    assert_eq!(
        wc[0].params.as_deref(),
        Some(format!("--config {} worker", local_agent.display()).as_str())
    );
    let derived = std::fs::read_to_string(&local_agent).unwrap();
    for line in [
        format!("node_id = \"{}\"", files.name),
        "mode = \"host\"".to_string(),
        format!(
            "volume_roots = [\"{}\"]",
            files.dir.join("coordinator/project_cache").display()
        ),
    ] {
        assert!(derived.contains(&line), "{line} not in {derived}");
    }
    assert_eq!(wc[0].verifysignature, Some(true), "{text}");

    // The key pair receptor was started with.
    assert_eq!(mode(&files.receptor_conf), 0o644);
    assert_eq!(mode(&files.receptor_data), 0o700);
    assert_eq!(mode(&files.signing_key), 0o600);
    assert_eq!(mode(files.signing_key.parent().unwrap()), 0o700);
    assert_eq!(mode(&files.verification_key), 0o644);
    let private = std::fs::read_to_string(&files.signing_key).unwrap();
    let public = std::fs::read_to_string(&files.verification_key).unwrap();
    assert!(private.starts_with("-----BEGIN PRIVATE KEY-----"));
    assert!(public.starts_with("-----BEGIN PUBLIC KEY-----"));

    // exec1 does not verify signatures; exec2 verifies them with the control node's key.
    mesh.add(&NodeSpec::new("exec1", "execution").dialing("control"));
    let verification_key = files.verification_key.display().to_string();
    mesh.add(
        &NodeSpec::new("exec2", "execution")
            .dialing("control")
            .config_args(&["--work-verification-key", &verification_key]),
    );
    mesh.wait_routable("control", &["exec1", "exec2"]);
    for (name, secure) in [("exec1", false), ("exec2", true)] {
        eventually(
            &format!("control to learn that {name} offers ansible-runner"),
            Duration::from_secs(90),
            || {
                mesh.status("control")
                    .advertised_work_command(name, "ansible-runner")
                    .map(|w| assert_eq!(w.secure, secure, "{name} verifies signatures"))
            },
        );
    }

    // Unsigned to exec1, signed to exec2 (receptor signs with the generated private key, exec2
    // checks with the public one), and `local` on the hybrid control node itself.
    for (id, node) in [(1, "exec1"), (2, "exec2"), (3, "control")] {
        let out = run_demo_job(&mesh, node);
        assert!(out.status.success(), "{}", describe(&mesh, &files, &out));
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            stdout.contains(&format!("hello from execution node {node}")),
            "{}",
            describe(&mesh, &files, &out)
        );
        let job = mesh.get(&format!("/api/v2/jobs/{id}/"));
        assert_eq!(job["status"], "successful", "{job:#}");
        assert_eq!(job["execution_node"], node, "{job:#}");
        assert_eq!(job["controller_node"], "control", "{job:#}");
    }
    assert_eq!(
        files.receptor_pid(),
        Some(pid),
        "the same receptor served all along"
    );
}

#[test]
fn the_control_receptor_returns_after_a_crash_stops_with_the_coordinator_and_keeps_its_key() {
    let mut mesh = Mesh::start(&[]);
    let files = mesh.start_managed_control("control", "control");
    let first = files.receptor_pid().expect("the coordinator's receptor");
    let key = std::fs::read(&files.signing_key).unwrap();
    let public = std::fs::read(&files.verification_key).unwrap();
    let conf = std::fs::read(&files.receptor_conf).unwrap();
    let (key_mtime, conf_mtime) = (mtime(&files.signing_key), mtime(&files.receptor_conf));

    // A crash: the coordinator starts a new receptor.
    kill(Pid::from_raw(first), Signal::SIGKILL).unwrap();
    let second = eventually(
        "the coordinator to start a new receptor",
        Duration::from_secs(30),
        || files.receptor_pid().filter(|p| *p != first),
    );
    eventually(
        "the new receptor to answer",
        Duration::from_secs(30),
        || files.answers().then_some(()),
    );
    assert!(!alive(first));
    let coordinator = mesh.coordinator_pid() as i32;
    assert!(alive(coordinator), "{}", mesh.coordinator_log());

    // SIGTERM: the coordinator stops its receptor and exits 0.
    let status = mesh.stop_coordinator(Signal::SIGTERM);
    assert!(status.success(), "{status:?}\n{}", mesh.coordinator_log());
    assert!(!alive(second), "receptor stopped with the coordinator");
    assert!(
        !files.receptor_pid_file.exists(),
        "the PID record went with it"
    );

    // The next start keeps the key pair and the unchanged receptor.conf, file and all.
    mesh.start_managed_control("control", "control");
    let third = files.receptor_pid().expect("a receptor after the restart");
    assert!(files.answers());
    assert_eq!(std::fs::read(&files.signing_key).unwrap(), key);
    assert_eq!(std::fs::read(&files.verification_key).unwrap(), public);
    assert_eq!(mtime(&files.signing_key), key_mtime, "key not rewritten");
    assert_eq!(std::fs::read(&files.receptor_conf).unwrap(), conf);
    assert_eq!(
        mtime(&files.receptor_conf),
        conf_mtime,
        "receptor.conf not rewritten"
    );

    // A killed coordinator cannot stop its receptor; the next one replaces it, never doubles it.
    let status = mesh.stop_coordinator(Signal::SIGKILL);
    assert!(!status.success());
    assert!(alive(third), "receptor outlives a SIGKILLed coordinator");
    mesh.start_managed_control("control", "control");
    let fourth = files
        .receptor_pid()
        .expect("a receptor after the second restart");
    assert_ne!(fourth, third);
    assert!(!alive(third), "the left-over receptor was stopped");
    assert!(files.answers());
}
