//! Against a real receptor: set `MESHRUN_RECEPTOR` to the binary and run with `--ignored`.
//! Starts a local-only node with a `cat` work type in a temp dir and kills it at the end.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::AsyncReadExt;
use tokio::process::{Child, Command};

use super::within;
use crate::control_socket::*;

struct Node {
    child: Child,
    sock: PathBuf,
    _dir: tempfile::TempDir,
}

async fn start_node(bin: &str) -> Node {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("r.sock");
    let conf = dir.path().join("r.conf");
    let data = dir.path().join("data");
    std::fs::write(
        &conf,
        format!(
            "---\n- node: {{id: t1, datadir: {}}}\n- log-level: info\n- local-only: null\n\
             - control-service: {{service: control, filename: {}}}\n\
             - work-command: {{worktype: cat, command: /bin/cat, allowruntimeparams: true}}\n",
            data.display(),
            sock.display()
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.path().join("log")).unwrap();
    let child = Command::new(bin)
        .arg("-c")
        .arg(&conf)
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    eprintln!("started receptor pid {:?}", child.id());
    Node {
        child,
        sock,
        _dir: dir,
    }
}

async fn connect_when_ready(sock: &Path) -> ControlClient {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match ControlClient::connect_unix(sock).await {
            Ok(c) => return c,
            Err(e) if Instant::now() > deadline => panic!("receptor never answered: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

async fn submit(sock: &Path, req: &SubmitRequest, payload: &[u8]) -> SubmitResult {
    let c = ControlClient::connect_unix(sock).await.unwrap();
    let mut s = c.work_submit(req).await.unwrap();
    assert!(is_valid_unit_id(&s.unit_id), "{}", s.unit_id);
    s.write_all(payload).await.unwrap();
    let res = s.finish().await.unwrap();
    assert!(is_valid_unit_id(&res.unit_id));
    res
}

async fn wait_complete(c: &mut ControlClient, id: &str) -> UnitStatus {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let st = c.work_status(id).await.unwrap();
        if st.state.is_complete() {
            return st;
        }
        assert!(Instant::now() < deadline, "unit {id} stuck: {st:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn results(sock: &Path, id: &str, offset: u64) -> Vec<u8> {
    let c = ControlClient::connect_unix(sock).await.unwrap();
    let mut r = c.work_results(id, offset).await.unwrap();
    let mut out = Vec::new();
    r.read_to_end(&mut out).await.unwrap();
    assert_eq!(r.position(), offset + out.len() as u64);
    out
}

#[tokio::test]
#[ignore = "needs a receptor binary in MESHRUN_RECEPTOR"]
async fn real_receptor_round_trip() {
    let Ok(bin) = std::env::var("MESHRUN_RECEPTOR") else {
        eprintln!("MESHRUN_RECEPTOR not set; skipping");
        return;
    };
    let mut node = start_node(&bin).await;
    let sock = node.sock.clone();
    within(async {
        let mut c = connect_when_ready(&sock).await;
        check_status_and_ping(&mut c).await;
        check_local_unit(&mut c, &sock).await;
        check_errors(&mut c, &sock).await;
        check_remote_unit_keeps_extra_keys(&mut c, &sock).await;
    })
    .await;
    node.child.kill().await.unwrap();
}

async fn check_status_and_ping(c: &mut ControlClient) {
    assert_eq!(c.node_id(), "t1");
    let s = c.status().await.unwrap();
    assert_eq!(s.node_id, "t1");
    assert!(!s.version.is_empty());
    assert!(s.system_cpu_count >= 1 && s.system_memory_mib >= 1);
    assert!(s.is_reachable("t1"));
    let ad = s
        .advertisements
        .iter()
        .find(|a| a.service == "control")
        .unwrap();
    assert_eq!(ad.node_id, "t1");
    assert_eq!(ad.conn_type, 1);
    let tags = ad.tags.as_ref().unwrap();
    assert_eq!(
        tags.get("type").map(String::as_str),
        Some("Control Service")
    );
    assert!(!s.advertised_work_command("t1", "cat").unwrap().secure);
    assert!(
        matches!(c.ping("t1").await.unwrap(), PingReply::Reached { ref from, .. } if from == "t1")
    );
    assert_eq!(
        c.ping("nosuchnode").await.unwrap(),
        PingReply::Failed {
            error: "no route to node".into()
        }
    );
}

async fn check_local_unit(c: &mut ControlClient, sock: &Path) {
    let mut req = SubmitRequest::new("t1", "cat");
    req.extra.insert("tag".into(), "job-1".into());
    let res = submit(sock, &req, b"hello").await;
    assert!(res.is_started(), "{res:?}");
    let id = res.unit_id;
    let st = wait_complete(c, &id).await;
    assert_eq!(st.state, UnitState::Succeeded);
    assert_eq!((st.stdout_size, st.work_type.as_str()), (5, "cat"));
    assert_eq!(st.detail, "exit status 0");
    assert_eq!(results(sock, &id, 0).await, b"hello");
    assert_eq!(results(sock, &id, 2).await, b"llo");
    assert!(results(sock, &id, 99).await.is_empty());
    let list = c.work_list().await.unwrap();
    assert_eq!(list[&id].state, UnitState::Succeeded);
    // Receptor does not keep extra keys for units it runs itself.
    assert_eq!(list[&id].remote_param("tag"), None);

    let binary = b"a\r\nb\0\xff\nend";
    let id2 = submit(sock, &SubmitRequest::new("localhost", "cat"), binary)
        .await
        .unit_id;
    wait_complete(c, &id2).await;
    assert_eq!(results(sock, &id2, 0).await, binary);

    assert_eq!(c.work_cancel(&id).await.unwrap(), CancelOutcome::Cancelled);
    assert_eq!(c.work_release(&id).await.unwrap(), ReleaseOutcome::Released);
    assert_eq!(
        c.work_force_release(&id2).await.unwrap(),
        ReleaseOutcome::Released
    );
    for gone in [&id, &id2] {
        assert!(
            matches!(c.work_status(gone).await.unwrap_err(), ControlError::UnknownUnit(ref u) if u == gone)
        );
    }
    assert!(!c.work_list().await.unwrap().contains_key(&id));
}

async fn check_errors(c: &mut ControlClient, sock: &Path) {
    let unknown = |e: ControlError| matches!(e, ControlError::UnknownUnit(ref u) if u == "nosuch");
    assert!(unknown(c.work_status("nosuch").await.unwrap_err()));
    assert!(unknown(c.work_cancel("nosuch").await.unwrap_err()));
    assert!(unknown(c.work_release("nosuch").await.unwrap_err()));
    let r = ControlClient::connect_unix(sock).await.unwrap();
    assert!(unknown(r.work_results("nosuch", 0).await.unwrap_err()));

    let refused = |e: ControlError, want: &str| {
        assert!(
            matches!(e, ControlError::Receptor { ref message, .. } if message == want),
            "{e:?}"
        );
    };
    refused(
        c.call::<Value>("frob", &json!({"command": "frob"}))
            .await
            .unwrap_err(),
        "Unknown command",
    );
    let frob = json!({"command": "work", "subcommand": "frob"});
    refused(
        c.call::<Value>("work frob", &frob).await.unwrap_err(),
        "bad command",
    );
    let s = ControlClient::connect_unix(sock).await.unwrap();
    let err = s
        .work_submit(&SubmitRequest::new("t1", "nope"))
        .await
        .unwrap_err();
    refused(err, "unknown work type nope");
    let mut ttl_local = SubmitRequest::new("t1", "cat");
    ttl_local.ttl = Some("5s".into());
    let s = ControlClient::connect_unix(sock).await.unwrap();
    refused(
        s.work_submit(&ttl_local).await.unwrap_err(),
        "ttl option is intended for remote work only",
    );
    // The session survived every refusal.
    assert_eq!(c.status().await.unwrap().node_id, "t1");
}

async fn check_remote_unit_keeps_extra_keys(c: &mut ControlClient, sock: &Path) {
    let mut req = SubmitRequest::new("t2", "cat");
    req.ttl = Some("2s".into());
    req.params = Some("a b".into());
    req.extra.insert("tag".into(), "job-7".into());
    let res = submit(sock, &req, b"xx").await;
    assert_eq!(res.result, "Job Submitted");
    let list = c.work_list().await.unwrap();
    let unit = &list[&res.unit_id];
    assert_eq!(unit.work_type, "remote");
    assert_eq!(unit.remote_node(), Some("t2"));
    assert_eq!(unit.remote_param("tag"), Some("job-7"));
    assert_eq!(unit.remote_param("params"), Some("a b"));
    let st = wait_complete(c, &res.unit_id).await;
    assert_eq!(st.state, UnitState::Failed);
    assert!(
        st.detail.starts_with("Work unit expired on"),
        "{}",
        st.detail
    );
    assert_eq!(
        c.work_force_release(&res.unit_id).await.unwrap(),
        ReleaseOutcome::Released
    );
}
