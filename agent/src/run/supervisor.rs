//! The receptor process: started by absolute path with `-c <config>`, restarted with backoff
//! when it dies, reloaded or restarted when agent.toml changes, stopped on request.
//!
//! Only receptor's own PID is ever signalled, never a process group: receptor runs each work
//! unit under a detached runner that is its own session leader, and those runners (and the jobs
//! under them) must outlive a receptor restart or the agent's own stop. receptor reattaches to
//! them when it starts again.

use std::fs::OpenOptions;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use meshrun_shared::receptor_conf::ReceptorConfig;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::change::{Change, classify};
use super::conf_file::{self, ConfFileError, write_atomic};
use super::control::{RELOAD_TIMEOUT, reload};
use super::plan::RunPlan;

/// How long receptor gets to exit after SIGTERM before it is killed.
pub const STOP_GRACE: Duration = Duration::from_secs(10);

/// Requests to the supervisor (the signal handlers send them; tests may too).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// Re-read agent.toml and apply it (SIGHUP).
    Reconfigure,
    /// Stop receptor and return (SIGTERM, SIGINT).
    Stop,
    /// Restart receptor with the same configuration: it reads its TLS files only at start, so
    /// a renewed certificate needs one. Detached work runners live on.
    Restart,
}

/// Why receptor could not be started.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// receptor.conf could not be brought up to date.
    #[error(transparent)]
    Conf(#[from] ConfFileError),
    /// A directory or file receptor needs could not be made.
    #[error("cannot prepare {path}: {source}")]
    Prepare {
        /// The path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The process could not be started.
    #[error("cannot start {binary}: {source}")]
    Spawn {
        /// The receptor binary.
        binary: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// Restart delays after crashes: `min`, doubling up to `max`; back to `min` once a receptor
/// stayed up for `stable`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    stable: Duration,
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::new(
            Duration::from_secs(1),
            Duration::from_secs(30),
            Duration::from_secs(60),
        )
    }
}

impl Backoff {
    /// A backoff from `min` to `max`, reset after `stable` of uptime.
    pub fn new(min: Duration, max: Duration, stable: Duration) -> Self {
        Backoff {
            min,
            max,
            stable,
            next: min,
        }
    }

    /// The delay before the next start, after a receptor that ran for `uptime` died (a failed
    /// start counts as zero uptime).
    pub fn after_exit(&mut self, uptime: Duration) -> Duration {
        if uptime >= self.stable {
            self.next = self.min;
        }
        let delay = self.next;
        self.next = (self.next * 2).min(self.max);
        delay
    }
}

/// What receptor was started with; a change of either means a restart.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Launch {
    binary: PathBuf,
    config: PathBuf,
}

impl Launch {
    fn of(plan: &RunPlan) -> Self {
        Launch {
            binary: plan.binary.clone(),
            config: plan.config.clone(),
        }
    }
}

struct Running {
    child: Child,
    pid: u32,
    started: Instant,
    launch: Launch,
    socket: PathBuf,
    pid_file: PathBuf,
    /// The config receptor was started or last reloaded with.
    config: ReceptorConfig,
}

/// Runs receptor until a [`Control::Stop`] arrives (or `control` closes).
pub struct Supervisor {
    load_plan: Box<dyn FnMut() -> Result<RunPlan, String> + Send>,
    plan: RunPlan,
    running: Option<Running>,
    restart_at: Option<Instant>,
    backoff: Backoff,
}

impl Supervisor {
    /// A supervisor for `plan`; `load_plan` re-reads agent.toml on [`Control::Reconfigure`]
    /// (its error text is logged, and the current plan stays).
    pub fn new(
        plan: RunPlan,
        load_plan: impl FnMut() -> Result<RunPlan, String> + Send + 'static,
    ) -> Self {
        Supervisor {
            load_plan: Box::new(load_plan),
            plan,
            running: None,
            restart_at: None,
            backoff: Backoff::default(),
        }
    }

    /// Starts receptor, then supervises it until told to stop. Only the first start's failure is
    /// returned; later ones are logged and retried with backoff.
    pub async fn run(mut self, mut control: mpsc::Receiver<Control>) -> Result<(), StartError> {
        stop_leftover(&self.plan).await;
        self.start()?;
        loop {
            tokio::select! {
                status = wait_running(&mut self.running) => self.exited(status),
                () = sleep_until(self.restart_at) => {
                    self.restart_at = None;
                    self.start_or_retry();
                }
                request = control.recv() => match request {
                    Some(Control::Reconfigure) => self.reconfigure().await,
                    Some(Control::Restart) => {
                        tracing::info!("restarting receptor to load new files");
                        self.restart().await;
                    }
                    Some(Control::Stop) | None => {
                        self.stop().await;
                        return Ok(());
                    }
                },
            }
        }
    }

    fn exited(&mut self, status: std::io::Result<ExitStatus>) {
        let Some(gone) = self.running.take() else {
            return;
        };
        let uptime = gone.started.elapsed();
        let delay = self.backoff.after_exit(uptime);
        match status {
            Ok(s) => {
                tracing::warn!(pid = gone.pid, status = %s, ?uptime, ?delay, "receptor exited; restarting it")
            }
            Err(e) => {
                tracing::warn!(pid = gone.pid, error = %e, ?delay, "lost track of receptor; restarting it")
            }
        }
        remove_pid_file(&gone.pid_file, gone.pid);
        self.restart_at = Some(Instant::now() + delay);
    }

    fn start_or_retry(&mut self) {
        if let Err(e) = self.start() {
            let delay = self.backoff.after_exit(Duration::ZERO);
            tracing::error!(error = %e, ?delay, "cannot start receptor; trying again later");
            self.restart_at = Some(Instant::now() + delay);
        }
    }

    /// Brings receptor.conf up to date and starts receptor with it.
    fn start(&mut self) -> Result<(), StartError> {
        let plan = &self.plan;
        prepare_dirs(plan)?;
        let updated = conf_file::update(&plan.config, &plan.owned)?;
        if updated.written {
            tracing::info!(path = %plan.config.display(), "wrote receptor.conf");
        }
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o640)
            .open(&plan.receptor_log)
            .map_err(|source| StartError::Prepare {
                path: plan.receptor_log.clone(),
                source,
            })?;
        let log_err = log.try_clone().map_err(|source| StartError::Prepare {
            path: plan.receptor_log.clone(),
            source,
        })?;
        let spawn_error = |source| StartError::Spawn {
            binary: plan.binary.clone(),
            source,
        };
        let child = Command::new(&plan.binary)
            .arg("-c")
            .arg(&plan.config)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .map_err(spawn_error)?;
        let pid = child.id().unwrap_or_default();
        if let Err(e) = write_atomic(&plan.pid_file, format!("{pid}\n").as_bytes(), 0o644) {
            tracing::warn!(path = %plan.pid_file.display(), error = %e, "cannot record receptor's PID");
        }
        tracing::info!(pid, binary = %plan.binary.display(), config = %plan.config.display(), "receptor started");
        self.running = Some(Running {
            child,
            pid,
            started: Instant::now(),
            launch: Launch::of(plan),
            socket: plan.socket.clone(),
            pid_file: plan.pid_file.clone(),
            config: updated.config,
        });
        Ok(())
    }

    /// Re-reads agent.toml and applies it: rewrites receptor.conf if it changed, then reloads or
    /// restarts receptor as the change requires. Any failure keeps what runs now.
    async fn reconfigure(&mut self) {
        let plan = match (self.load_plan)() {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(error = %e, "keeping the current configuration");
                return;
            }
        };
        if let Err(e) = prepare_dirs(&plan) {
            tracing::error!(error = %e, "keeping the current configuration");
            return;
        }
        let updated = match conf_file::update(&plan.config, &plan.owned) {
            Ok(u) => u,
            Err(e) => {
                tracing::error!(error = %e, "keeping the current configuration");
                return;
            }
        };
        if updated.written {
            tracing::info!(path = %plan.config.display(), "wrote receptor.conf");
        }
        self.plan = plan;
        let Some(running) = self.running.as_mut() else {
            tracing::info!("receptor is not running; it starts with the new configuration");
            return;
        };
        let change = if running.launch == Launch::of(&self.plan) {
            classify(&running.config, &updated.config)
        } else {
            Change::Restart
        };
        match change {
            Change::Nothing => {
                tracing::info!(
                    pid = running.pid,
                    "configuration unchanged for receptor; left alone"
                );
            }
            Change::Reload => match reload(&running.socket, RELOAD_TIMEOUT).await {
                Ok(()) => {
                    tracing::info!(pid = running.pid, "receptor reloaded its links");
                    running.config = updated.config;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "reload failed; restarting receptor");
                    self.restart().await;
                }
            },
            Change::Restart => {
                tracing::info!(
                    pid = running.pid,
                    "configuration change needs a receptor restart"
                );
                self.restart().await;
            }
        }
    }

    async fn restart(&mut self) {
        self.stop().await;
        self.start_or_retry();
    }

    /// Stops receptor: SIGTERM to its PID, SIGKILL after [`STOP_GRACE`].
    async fn stop(&mut self) {
        self.restart_at = None;
        let Some(mut running) = self.running.take() else {
            return;
        };
        match stop_child(&mut running.child, running.pid).await {
            Ok(status) => tracing::info!(pid = running.pid, %status, "receptor stopped"),
            Err(e) => {
                tracing::warn!(pid = running.pid, error = %e, "lost track of receptor while stopping it")
            }
        }
        remove_pid_file(&running.pid_file, running.pid);
    }
}

async fn stop_child(child: &mut Child, pid: u32) -> std::io::Result<ExitStatus> {
    if let Some(status) = child.try_wait()? {
        return Ok(status);
    }
    // The child is not reaped yet, so its PID cannot have been reused.
    if let Ok(raw) = i32::try_from(pid) {
        let _ = kill(Pid::from_raw(raw), Signal::SIGTERM);
    }
    match tokio::time::timeout(STOP_GRACE, child.wait()).await {
        Ok(status) => status,
        Err(_) => {
            tracing::warn!(pid, "receptor ignored SIGTERM; killing it");
            let _ = child.start_kill();
            child.wait().await
        }
    }
}

async fn wait_running(running: &mut Option<Running>) -> std::io::Result<ExitStatus> {
    match running {
        Some(r) => r.child.wait().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The directories receptor needs: its data dir private (0700), the rest ordinary.
fn prepare_dirs(plan: &RunPlan) -> Result<(), StartError> {
    let prepare = |path: &Path, source| StartError::Prepare {
        path: path.to_path_buf(),
        source,
    };
    ensure_private_dir(&plan.data_dir).map_err(|e| prepare(&plan.data_dir, e))?;
    for file in [&plan.socket, &plan.receptor_log, &plan.pid_file] {
        if let Some(dir) = file.parent() {
            std::fs::create_dir_all(dir).map_err(|e| prepare(dir, e))?;
        }
    }
    Ok(())
}

/// Creates `dir` with mode 0700 if it is missing. An existing one keeps its mode, with a warning
/// when others may read it: job payloads and outputs live there.
fn ensure_private_dir(dir: &Path) -> std::io::Result<()> {
    match std::fs::metadata(dir) {
        Ok(meta) => {
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                tracing::warn!(path = %dir.display(), mode = format!("{mode:o}"), "receptor's data dir is open to other users; 0700 is expected");
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(parent) = dir.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::DirBuilder::new().mode(0o700).create(dir)?;
            // The umask may have taken bits away; none may be added, but be exact.
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        }
        Err(e) => Err(e),
    }
}

fn remove_pid_file(path: &Path, pid: u32) {
    // Only our own record: a file naming another PID is someone else's business.
    let ours = std::fs::read_to_string(path).is_ok_and(|t| t.trim() == pid.to_string());
    if ours {
        let _ = std::fs::remove_file(path);
    }
}

/// A receptor a previous `run` started and left behind (that `run` was killed) would hold the
/// control socket and the node id. It is stopped only when the PID file names a live process
/// whose command line is exactly the one `run` uses.
async fn stop_leftover(plan: &RunPlan) {
    let Some(pid) = std::fs::read_to_string(&plan.pid_file)
        .ok()
        .and_then(|t| t.trim().parse::<i32>().ok())
        .filter(|p| *p > 1)
    else {
        return;
    };
    let expected = [
        plan.binary.as_os_str().as_encoded_bytes(),
        b"-c",
        plan.config.as_os_str().as_encoded_bytes(),
    ]
    .join(&0u8);
    let is_ours = || {
        std::fs::read(format!("/proc/{pid}/cmdline"))
            .is_ok_and(|c| c.strip_suffix(&[0u8]).unwrap_or(&c) == expected.as_slice())
    };
    if !is_ours() {
        return;
    }
    tracing::warn!(pid, "stopping the receptor an earlier run left behind");
    let target = Pid::from_raw(pid);
    let _ = kill(target, Signal::SIGTERM);
    let deadline = Instant::now() + STOP_GRACE;
    while is_ours() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if is_ours() {
        let _ = kill(target, Signal::SIGKILL);
    }
    let _ = std::fs::remove_file(&plan.pid_file);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_the_cap_and_resets_after_a_stable_run() {
        let mut b = Backoff::default();
        let quick = Duration::from_secs(2);
        let delays: Vec<u64> = (0..7).map(|_| b.after_exit(quick).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 30, 30]);
        assert_eq!(b.after_exit(Duration::from_secs(60)).as_secs(), 1);
        assert_eq!(b.after_exit(quick).as_secs(), 2);
    }

    #[test]
    fn a_new_data_dir_is_private_and_an_existing_one_is_left_alone() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("lib/receptor");
        ensure_private_dir(&dir).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir), 0o700);
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o750)).unwrap();
        ensure_private_dir(&dir).unwrap();
        assert_eq!(mode(&dir), 0o750);
    }

    #[test]
    fn only_our_own_pid_file_is_removed() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("receptor.pid");
        std::fs::write(&path, "123\n").unwrap();
        remove_pid_file(&path, 456);
        assert!(path.exists());
        remove_pid_file(&path, 123);
        assert!(!path.exists());
    }
}
