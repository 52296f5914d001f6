//! Runs a probe command with a deadline, capturing both its outputs (the worker may write
//! nothing to stderr, so neither is inherited).

use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How often a running probe is polled for exit.
const POLL: Duration = Duration::from_millis(5);
/// How long to wait for the output pipes once the probe has exited (a grandchild may hold
/// them open).
const DRAIN: Duration = Duration::from_millis(500);

/// What a probe printed, when it exited 0.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Success {
    /// Its stdout.
    pub stdout: String,
}

/// Why a probe command did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// It could not be started.
    #[error("cannot run `{command}`: {source}")]
    Spawn {
        /// The command line.
        command: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// It ran longer than allowed and was killed.
    #[error("`{command}` did not finish within {:.1} s", .limit.as_secs_f64())]
    TimedOut {
        /// The command line.
        command: String,
        /// The limit.
        limit: Duration,
    },
    /// It exited non-zero or by a signal.
    #[error("`{command}` failed ({status}){detail}")]
    Failed {
        /// The command line.
        command: String,
        /// Exit status text.
        status: String,
        /// `: <last stderr line>` when there is one.
        detail: String,
    },
}

/// Runs `cmd` (stdin closed) and returns its stdout when it exits 0 within `timeout`.
pub fn run(cmd: &mut Command, timeout: Duration) -> Result<Success, CommandError> {
    let shown = describe(cmd);
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| CommandError::Spawn {
            command: shown.clone(),
            source,
        })?;
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(POLL),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(CommandError::TimedOut {
                    command: shown,
                    limit: timeout,
                });
            }
            Err(source) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(CommandError::Spawn {
                    command: shown,
                    source,
                });
            }
        }
    };
    let out = stdout.recv_timeout(DRAIN).unwrap_or_default();
    if status.success() {
        return Ok(Success {
            stdout: String::from_utf8_lossy(&out).into_owned(),
        });
    }
    let err = stderr.recv_timeout(DRAIN).unwrap_or_default();
    let last = String::from_utf8_lossy(&err)
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .map(|l| format!(": {}", l.trim()))
        .unwrap_or_default();
    Err(CommandError::Failed {
        command: shown,
        status: status.to_string(),
        detail: last,
    })
}

/// Reads a pipe to its end on a thread, so a chatty probe cannot block on a full pipe.
fn drain(pipe: Option<impl Read + Send + 'static>) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    if let Some(mut pipe) = pipe {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = pipe.read_to_end(&mut buf);
            let _ = tx.send(buf);
        });
    }
    rx
}

fn describe(cmd: &Command) -> String {
    let mut parts = vec![cmd.get_program().to_string_lossy().into_owned()];
    parts.extend(cmd.get_args().map(|a| a.to_string_lossy().into_owned()));
    parts.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stdout_of_a_successful_command() {
        let ok = run(
            Command::new("sh").args(["-c", "echo 2.4.3; echo noise >&2"]),
            Duration::from_secs(5),
        )
        .unwrap();
        assert_eq!(ok.stdout, "2.4.3\n");
    }

    #[test]
    fn failures_carry_the_last_stderr_line() {
        let e = run(
            Command::new("sh").args([
                "-c",
                "echo first >&2; echo 'Error: no such image' >&2; exit 125",
            ]),
            Duration::from_secs(5),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("exit status: 125"), "{e}");
        assert!(e.ends_with(": Error: no such image"), "{e}");
    }

    #[test]
    fn missing_programs_and_hangs_are_errors() {
        let e = run(
            &mut Command::new("/nonexistent/podman"),
            Duration::from_secs(1),
        )
        .unwrap_err();
        assert!(matches!(e, CommandError::Spawn { .. }), "{e}");
        let e = run(Command::new("sleep").arg("30"), Duration::from_millis(100)).unwrap_err();
        assert!(matches!(e, CommandError::TimedOut { .. }), "{e}");
    }
}
