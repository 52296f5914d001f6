//! Removes what finished units left behind on this node: job containers (labelled with the node
//! and the unit's receptor directory) and host-mode private data dirs. A unit counts as finished
//! only when receptor says so: its directory is gone (released), its status is final, or it is
//! "Running" but the process receptor recorded for it is dead. Anything uncertain is kept.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use nix::errno::Errno;
use nix::sys::signal::kill;
use nix::unistd::Pid;
use serde_json::Value;

use super::podman::{LABEL_NODE, LABEL_UNIT_DIR, podman};
use crate::settings::{AgentSettings, WorkerMode};

/// Whether the receptor unit whose directory is `unit_dir` has verifiably finished.
pub fn unit_finished(unit_dir: &Path) -> bool {
    let status = match std::fs::read(unit_dir.join("status")) {
        Ok(s) => s,
        // No directory at all: the unit was released.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return !unit_dir.exists(),
        Err(_) => return false,
    };
    let Ok(status) = serde_json::from_slice::<Value>(&status) else {
        return false;
    };
    match status.get("State").and_then(Value::as_i64) {
        Some(2..=4) => true,
        Some(1) => status
            .pointer("/ExtraData/Pid")
            .and_then(Value::as_i64)
            .and_then(|p| i32::try_from(p).ok())
            .is_some_and(|pid| {
                pid > 0 && matches!(kill(Pid::from_raw(pid), None), Err(Errno::ESRCH))
            }),
        _ => false,
    }
}

/// Removes leftovers of finished units of `node`, except `own_unit_dir` (this worker's unit).
pub async fn sweep(settings: &AgentSettings, node: &str, node_dir: &Path, own_unit_dir: &Path) {
    // Host-mode nodes start no containers (and may have no podman at all).
    if settings.worker.mode == WorkerMode::Podman {
        sweep_containers(settings, node, own_unit_dir).await;
    }
    if let Ok(entries) = std::fs::read_dir(settings.state_dir.join("units")) {
        for entry in entries.flatten() {
            let unit_dir = node_dir.join(entry.file_name());
            if unit_dir != own_unit_dir && unit_finished(&unit_dir) {
                tracing::info!(dir = %entry.path().display(), "removing a finished unit's private data dir");
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
}

async fn sweep_containers(settings: &AgentSettings, node: &str, own_unit_dir: &Path) {
    let out = podman(&settings.podman)
        .args(["ps", "--all", "--format=json"])
        .arg(format!("--filter=label={LABEL_NODE}={node}"))
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .await;
    let Ok(out) = out else { return };
    let Ok(list) = serde_json::from_slice::<Vec<Value>>(&out.stdout) else {
        return;
    };
    for c in list {
        let Some(dir) = c
            .pointer(&format!("/Labels/{}", LABEL_UNIT_DIR.replace('/', "~1")))
            .and_then(Value::as_str)
        else {
            continue;
        };
        let dir = PathBuf::from(dir);
        if dir == own_unit_dir || !unit_finished(&dir) {
            continue;
        }
        let Some(id) = c.get("Id").and_then(Value::as_str) else {
            continue;
        };
        tracing::info!(container = id, unit_dir = %dir.display(), "removing a finished unit's container");
        let _ = podman(&settings.podman)
            .args(["rm", "--force", "--time=0", id])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(status: Option<&str>) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        if let Some(s) = status {
            std::fs::write(d.path().join("status"), s).unwrap();
        }
        d
    }

    #[test]
    fn only_verifiably_finished_units_count() {
        assert!(unit_finished(
            unit(Some(r#"{"State":2,"ExtraData":null}"#)).path()
        ));
        assert!(unit_finished(unit(Some(r#"{"State":4}"#)).path()));
        let me = std::process::id();
        assert!(!unit_finished(
            unit(Some(&format!(
                r#"{{"State":1,"ExtraData":{{"Pid":{me}}}}}"#
            )))
            .path()
        ));
        assert!(unit_finished(
            unit(Some(r#"{"State":1,"ExtraData":{"Pid":2147483646}}"#)).path()
        ));
        assert!(
            !unit_finished(unit(Some(r#"{"State":0}"#)).path()),
            "pending is not finished"
        );
        assert!(
            !unit_finished(unit(Some("garbage")).path()),
            "unreadable is kept"
        );
        assert!(
            !unit_finished(unit(None).path()),
            "a dir without status is kept"
        );
        assert!(
            unit_finished(Path::new("/nonexistent/meshrun/unit")),
            "released units are gone"
        );
    }
}
