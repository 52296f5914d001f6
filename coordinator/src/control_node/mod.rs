//! The control node's own receptor, run by the coordinator when `[control_node]` is configured:
//! the work-signing key pair made on first start, receptor.conf rendered with the shared
//! renderer and written with the agent's merge (atomic, only on change, an operator's own
//! entries kept), and receptor supervised by the agent's supervisor (started by absolute path,
//! restarted with backoff when it dies, stopped by its PID alone so detached work runners live on).
//!
//! # Layout
//! - [`plan`]: `[control_node]` → the agent's `RunPlan` (entries and paths).
//! - [`signing_key`]: the RSA key pair receptor signs and verifies work with.
//! - [`local_agent`]: the agent config `local` work runs with (the operator's plus the project
//!   cache as a volume root).

pub mod local_agent;
pub mod plan;
pub mod signing_key;

use std::path::{Path, PathBuf};
use std::time::Duration;

use meshrun_agent::run::supervisor::{Control, StartError, Supervisor};
use meshrun_shared::control_socket::ControlClient;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::config::ControlNodeSettings;
use plan::PlanError;
use signing_key::{KeyError, KeyOutcome};

/// How long start-up waits for the new receptor to answer on its control socket.
pub const READY_WAIT: Duration = Duration::from_secs(30);

/// Why the control node's receptor is not running.
#[derive(Debug, thiserror::Error)]
pub enum ControlNodeError {
    /// The settings cannot drive receptor.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// The work-signing key pair is not usable.
    #[error("control_node work-signing keys: {0}")]
    Key(#[from] KeyError),
    /// receptor could not be started the first time.
    #[error("cannot start the control node's receptor: {0}")]
    Start(#[source] Box<StartError>),
    /// receptor started but did not answer as this node in time.
    #[error(
        "the control node's receptor did not answer on {socket} as node {node_id} within {secs} s \
         (its output is in {log}): {last}"
    )]
    NotReady {
        /// The control socket.
        socket: PathBuf,
        /// The node id it should greet with.
        node_id: String,
        /// How long start-up waited.
        secs: u64,
        /// receptor's log.
        log: PathBuf,
        /// The last thing seen.
        last: String,
    },
    /// The control node's certificate could not be issued.
    #[error("the control node's certificate: {0}")]
    Pki(#[source] crate::pki::PkiError),
    /// A background task died.
    #[error("the control node's {what} task failed: {reason}")]
    Task {
        /// Which task.
        what: &'static str,
        /// Why.
        reason: String,
    },
}

/// The supervised receptor. Stop it with [`ControlNode::stop`]; dropping it instead closes
/// the supervisor's channel, which also stops receptor, but without waiting for it.
pub struct ControlNode {
    control: mpsc::Sender<Control>,
    task: JoinHandle<Result<(), StartError>>,
    cert_task: Option<JoinHandle<()>>,
}

/// The control node's mesh TLS: the CA that issues its certificate and the names other nodes
/// dial it at.
#[derive(Debug, Clone)]
pub struct MeshTls {
    /// The mesh PKI.
    pub pki: std::sync::Arc<crate::pki::PkiContext>,
    /// DNS names in its certificate.
    pub dns_names: Vec<String>,
    /// IP addresses in its certificate.
    pub ip_addresses: Vec<std::net::IpAddr>,
}

impl MeshTls {
    fn ensure(
        &self,
        node_id: &str,
    ) -> Result<crate::pki::context::ControlNodeCert, ControlNodeError> {
        let id = meshrun_shared::node_id::NodeId::new(node_id).map_err(|e| {
            ControlNodeError::Plan(PlanError::Invalid {
                field: "node_id",
                reason: e.to_string(),
            })
        })?;
        self.pki
            .control_node_cert(&id, self.dns_names.clone(), self.ip_addresses.clone())
            .map_err(ControlNodeError::Pki)
    }

    /// How often the certificate's remaining life is looked at.
    fn check_every(&self) -> Duration {
        (self.pki.node_validity / 20).clamp(Duration::from_secs(5), Duration::from_secs(3600))
    }
}

impl ControlNode {
    /// Makes the key pair if missing, writes receptor.conf if it changed, starts receptor under
    /// supervision with its control socket at `socket` (its log and PID file go to `state_dir`),
    /// and returns once that receptor answers on the socket as `settings.node_id`.
    pub async fn start(
        settings: &ControlNodeSettings,
        socket: &Path,
        state_dir: &Path,
        mesh_tls: Option<MeshTls>,
    ) -> Result<ControlNode, ControlNodeError> {
        let mut settings = settings.clone();
        match local_agent::write(&settings.agent_config, state_dir) {
            Ok(path) => settings.agent_config = path,
            Err(e) => {
                tracing::warn!(error = %e, "local work uses control_node.agent_config as it is: project updates in podman mode cannot mount the project cache")
            }
        }
        let settings = &settings;
        let tls = match &mesh_tls {
            Some(m) => {
                let c = m.ensure(&settings.node_id)?;
                tracing::info!(cert = %c.cert.display(), not_after = %c.not_after, "the control node's mesh links use mutual TLS");
                Some(meshrun_shared::receptor_conf::TlsFiles {
                    ca: c.ca,
                    cert: c.cert,
                    key: c.key,
                })
            }
            None => {
                tracing::warn!(
                    "control_node.mesh_tls = false: the control node's listener takes plain TCP links from anyone"
                );
                None
            }
        };
        let plan = plan::run_plan(settings, socket, state_dir, tls)?;
        if !plan::is_executable_file(&settings.agent) {
            tracing::warn!(path = %settings.agent.display(), "control_node.agent is not an executable file: `local` work will fail");
        }
        let (private, public) = (
            settings.work_signing_key.clone(),
            settings.work_verification_key.clone(),
        );
        let keys =
            tokio::task::spawn_blocking(move || signing_key::ensure_key_pair(&private, &public))
                .await
                .map_err(|e| ControlNodeError::Task {
                    what: "key generation",
                    reason: e.to_string(),
                })??;
        match keys {
            KeyOutcome::Kept => {}
            KeyOutcome::PublicWritten => {
                tracing::info!(path = %settings.work_verification_key.display(), "wrote the work-verification key from the signing key")
            }
            KeyOutcome::Generated => {
                tracing::info!(private = %settings.work_signing_key.display(), public = %settings.work_verification_key.display(), "generated the work-signing key pair")
            }
        }
        let pid_file = plan.pid_file.clone();
        let log = plan.receptor_log.clone();
        let earlier_pid = read_pid(&pid_file);
        // Nothing re-reads the settings while the coordinator runs: a reconfigure re-applies
        // the same plan (restoring a hand-damaged receptor.conf), a restart applies new ones.
        let same_plan = plan.clone();
        let supervisor = Supervisor::new(plan, move || Ok(same_plan.clone()));
        let (control, requests) = mpsc::channel(4);
        let task = tokio::spawn(supervisor.run(requests));
        let cert_task = mesh_tls.map(|m| {
            let control = control.clone();
            let node_id = settings.node_id.clone();
            tokio::spawn(keep_cert_fresh(m, node_id, control))
        });
        let mut node = ControlNode {
            control,
            task,
            cert_task,
        };
        let ready = node
            .wait_ready(socket, &settings.node_id, &pid_file, earlier_pid)
            .await;
        match ready {
            Ok(()) => Ok(node),
            Err(Readiness::Failed(e)) => Err(e),
            Err(Readiness::TimedOut(last)) => {
                node.stop().await;
                Err(ControlNodeError::NotReady {
                    socket: socket.to_path_buf(),
                    node_id: settings.node_id.clone(),
                    secs: READY_WAIT.as_secs(),
                    log,
                    last,
                })
            }
        }
    }

    /// Stops receptor (SIGTERM to its PID, SIGKILL after the supervisor's grace) and waits
    /// for the supervisor to end. Work units keep running under their detached runners.
    pub async fn stop(self) {
        if let Some(t) = &self.cert_task {
            t.abort();
        }
        // A closed channel means the supervisor already ended; awaiting it says why.
        let _ = self.control.send(Control::Stop).await;
        match self.task.await {
            Ok(Ok(())) => tracing::info!("the control node's receptor is stopped"),
            Ok(Err(e)) => tracing::error!(error = %e, "the control node's receptor never started"),
            Err(e) => tracing::error!(error = %e, "the control node's supervisor task failed"),
        }
    }

    /// Waits until a receptor started by this supervisor (its PID file names a new process)
    /// greets on `socket` as `node_id`. The PID check keeps a receptor an earlier, killed
    /// coordinator left behind from passing for the new one before the supervisor stops it.
    async fn wait_ready(
        &mut self,
        socket: &Path,
        node_id: &str,
        pid_file: &Path,
        earlier_pid: Option<u32>,
    ) -> Result<(), Readiness> {
        let deadline = tokio::time::Instant::now() + READY_WAIT;
        let mut last = "receptor has not started yet".to_string();
        loop {
            if self.task.is_finished() {
                let reason = match (&mut self.task).await {
                    Ok(Err(e)) => {
                        return Err(Readiness::Failed(ControlNodeError::Start(Box::new(e))));
                    }
                    Ok(Ok(())) => "it stopped".to_string(),
                    Err(e) => e.to_string(),
                };
                return Err(Readiness::Failed(ControlNodeError::Task {
                    what: "supervisor",
                    reason,
                }));
            }
            let started = read_pid(pid_file).is_some_and(|p| Some(p) != earlier_pid);
            if started {
                match ControlClient::connect_unix(socket).await {
                    Ok(c) if c.node_id() == node_id => return Ok(()),
                    Ok(c) => last = format!("node {} answered instead", c.node_id()),
                    Err(e) => last = e.to_string(),
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Readiness::TimedOut(last));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Reissues the control node's certificate when under a third of its life is left (looked at
/// periodically; the start already did once) and restarts receptor to load it.
async fn keep_cert_fresh(tls: MeshTls, node_id: String, control: mpsc::Sender<Control>) {
    loop {
        tokio::time::sleep(tls.check_every()).await;
        let (t, id) = (tls.clone(), node_id.clone());
        match tokio::task::spawn_blocking(move || t.ensure(&id)).await {
            Ok(Ok(c)) if c.reissued => {
                tracing::info!(not_after = %c.not_after, "reissued the control node's certificate; restarting its receptor");
                if control.send(Control::Restart).await.is_err() {
                    return;
                }
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                tracing::error!(error = %e, "cannot reissue the control node's certificate")
            }
            Err(e) => tracing::error!(error = %e, "the certificate task failed"),
        }
    }
}

enum Readiness {
    Failed(ControlNodeError),
    TimedOut(String),
}

fn read_pid(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}
