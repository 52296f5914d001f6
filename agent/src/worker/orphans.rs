//! Processes a canceled host-mode job leaves behind. ansible-runner starts ansible in a new
//! session on a pty, so a cancel that stops the runner does not reach ansible, its forks or the
//! commands its modules run (receptor's cancel signals only its direct child, issue #434). The
//! agent makes itself their subreaper before it starts the runner, so once the runner has
//! exited whatever it left is still the agent's descendant: on cancel, those are sent SIGTERM,
//! then SIGKILL after a short grace, and reaped.

use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitPidFlag, waitpid};
use nix::unistd::Pid;

/// How long leftovers get between SIGTERM and SIGKILL.
const TERM_GRACE: Duration = Duration::from_secs(2);

/// Makes this process the subreaper of everything it starts (logged if refused).
pub fn become_subreaper() {
    if let Err(e) = nix::sys::prctl::set_child_subreaper(true) {
        tracing::warn!(error = %e, "cannot become the subreaper of the job's processes");
    }
}

/// Stops every live descendant of this process; returns how many there were.
pub fn stop_all() -> usize {
    let me = i32::try_from(std::process::id()).unwrap_or(i32::MAX);
    let found = descendants(me);
    if !found.is_empty() {
        tracing::warn!(pids = ?found, "the canceled job left processes behind; stopping them");
        stop(&found);
    }
    found.len()
}

/// SIGTERM to `pids`, SIGKILL to those still alive after [`TERM_GRACE`]; reaps them.
fn stop(pids: &[i32]) {
    for p in pids {
        let _ = kill(Pid::from_raw(*p), Signal::SIGTERM);
    }
    let alive = |p: &i32| {
        std::fs::read_to_string(format!("/proc/{p}/stat")).is_ok_and(|s| {
            s.rsplit_once(')')
                .is_some_and(|(_, r)| !r.trim_start().starts_with('Z'))
        })
    };
    let deadline = Instant::now() + TERM_GRACE;
    loop {
        reap(pids);
        let left: Vec<i32> = pids.iter().copied().filter(alive).collect();
        if left.is_empty() {
            return;
        }
        if Instant::now() >= deadline {
            for p in &left {
                let _ = kill(Pid::from_raw(*p), Signal::SIGKILL);
            }
            std::thread::sleep(Duration::from_millis(100));
            reap(pids);
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Collects those of `pids` that exited (orphans reparented to this subreaper become its
/// children); only these, so no other child's exit status is taken from its owner.
fn reap(pids: &[i32]) {
    for p in pids {
        let _ = waitpid(Pid::from_raw(*p), Some(WaitPidFlag::WNOHANG));
    }
}

/// Live (not zombie) descendants of `root`, from /proc.
fn descendants(root: i32) -> Vec<i32> {
    let mut procs = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // Fields after the ")" that ends the command name: state, ppid, ...
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let mut fields = rest.split_whitespace();
        let state = fields.next().unwrap_or("");
        let Some(ppid) = fields.next().and_then(|p| p.parse::<i32>().ok()) else {
            continue;
        };
        procs.push((pid, ppid, state == "Z"));
    }
    let mut out = Vec::new();
    let mut frontier = vec![root];
    while let Some(parent) = frontier.pop() {
        for &(pid, ppid, zombie) in &procs {
            if ppid == parent {
                frontier.push(pid);
                if !zombie {
                    out.push(pid);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_orphaned_grandchild_is_found_and_stopped() {
        become_subreaper();
        // sh starts a sleep in the background and exits: the sleep is orphaned to us.
        let status = std::process::Command::new("sh")
            .args(["-c", "sleep 300 >/dev/null 2>&1 & echo $!"])
            .output()
            .unwrap();
        let pid: i32 = String::from_utf8_lossy(&status.stdout)
            .trim()
            .parse()
            .unwrap();
        let me = i32::try_from(std::process::id()).unwrap();
        assert!(descendants(me).contains(&pid), "the orphan is ours");
        // Only this pid: other tests of this binary run their own children meanwhile.
        stop(&[pid]);
        assert!(!descendants(me).contains(&pid));
        assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
    }
}
