//! Certificate renewal inside `meshrun-agent run`: at start and then every
//! `[join] renew_check_secs`, when the node's certificate has under a third of its life left,
//! a NEW key is made, its CSR is sent to the coordinator over mutual TLS with the CURRENT
//! certificate, the new key and certificate are written atomically and receptor is restarted
//! (it reads TLS files only at start; detached work runners survive). A refusal is logged with
//! the coordinator's reason and the current certificate stays in use.

use std::path::{Path, PathBuf};
use std::time::Duration;

use meshrun_shared::join::{RENEW_PATH, RenewRequest, RenewResponse};
use tokio::sync::mpsc;

use super::conf_file::write_atomic;
use super::supervisor::Control;
use crate::join::{pinned_client, pki, refusal};
use crate::settings::AgentSettings;

/// Where a node's TLS files and coordinator are, from agent.toml.
#[derive(Debug, Clone, PartialEq)]
pub struct RenewTarget {
    /// The coordinator's API URL.
    pub url: String,
    /// The mesh CA.
    pub ca: PathBuf,
    /// The node's certificate.
    pub cert: PathBuf,
    /// The node's key.
    pub key: PathBuf,
    /// Time between two looks.
    pub every: Duration,
}

impl RenewTarget {
    /// The target agent.toml describes, if the node joined (has `[join]` and TLS files).
    pub fn of(settings: &AgentSettings) -> Option<RenewTarget> {
        let join = settings.join.as_ref()?;
        let node = settings.node.as_ref()?;
        Some(RenewTarget {
            url: join.coordinator.trim_end_matches('/').to_string(),
            ca: node.tls_ca.clone()?,
            cert: node.tls_cert.clone()?,
            key: node.tls_key.clone()?,
            every: Duration::from_secs(join.renew_check_secs.max(1)),
        })
    }
}

/// Why a renewal did not happen.
#[derive(Debug, thiserror::Error)]
pub enum RenewError {
    /// A file could not be read or written.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Key, CSR or certificate trouble.
    #[error(transparent)]
    Pki(#[from] pki::PkiError),
    /// The coordinator could not be reached.
    #[error("cannot reach the coordinator at {url}: {reason}")]
    Unreachable {
        /// Its URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// The coordinator said no.
    #[error("the coordinator refused the renewal: {0}")]
    Refused(String),
}

fn read(what: &'static str, path: &Path) -> Result<String, RenewError> {
    std::fs::read_to_string(path).map_err(|source| RenewError::Io {
        what,
        path: path.to_path_buf(),
        source,
    })
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Renews now: a new key, a CSR, the request over mTLS with the current certificate, then the
/// new key and certificate written. Returns the new certificate's expiry (RFC 3339).
pub async fn renew_once(t: &RenewTarget) -> Result<String, RenewError> {
    let ca = read("cannot read the CA", &t.ca)?;
    let cert = read("cannot read the certificate", &t.cert)?;
    let key = read("cannot read the key", &t.key)?;
    let new_key = pki::new_key_pem()?;
    // The coordinator takes the node id from the client certificate; the CSR gives only the key.
    let csr = pki::csr_pem(&new_key, "meshrun-node")?;
    let unreachable = |e: &dyn std::fmt::Display| RenewError::Unreachable {
        url: t.url.clone(),
        reason: e.to_string(),
    };
    let identity = format!("{cert}\n{key}");
    let client = pinned_client(&ca, Some(&identity)).map_err(|e| unreachable(&format!("{e:#}")))?;
    let resp = client
        .post(format!("{}{RENEW_PATH}", t.url))
        .json(&RenewRequest { csr_pem: csr })
        .send()
        .await
        .map_err(|e| unreachable(&e))?;
    if !resp.status().is_success() {
        return Err(RenewError::Refused(refusal(resp).await));
    }
    let answer: RenewResponse = resp.json().await.map_err(|e| unreachable(&e))?;
    pki::validity(&answer.cert_pem)?;
    let write = |path: &Path, text: &str, mode| {
        write_atomic(path, text.as_bytes(), mode).map_err(|source| RenewError::Io {
            what: "cannot write",
            path: path.to_path_buf(),
            source,
        })
    };
    write(&t.key, &new_key, 0o600)?;
    write(&t.cert, &answer.cert_pem, 0o644)?;
    write(&t.ca, &answer.ca_pem, 0o644)?;
    Ok(answer.not_after)
}

/// Whether the certificate at `cert` needs renewing now.
pub fn due(cert: &Path) -> Result<bool, RenewError> {
    let pem = read("cannot read the certificate", cert)?;
    Ok(pki::needs_renewal(pki::validity(&pem)?, now()))
}

/// Looks at the certificate at start and every `every`; renews when due and asks the
/// supervisor to restart receptor. Ends when the supervisor is gone.
pub async fn renew_loop(agent_config: PathBuf, control: mpsc::Sender<Control>) {
    loop {
        let target = match AgentSettings::load(Some(&agent_config)) {
            Ok(s) => RenewTarget::of(&s),
            Err(e) => {
                tracing::error!(error = %e, "cannot read the agent config for certificate renewal");
                None
            }
        };
        let Some(target) = target else {
            return;
        };
        match due(&target.cert) {
            Ok(false) => {}
            Ok(true) => match renew_once(&target).await {
                Ok(not_after) => {
                    tracing::info!(%not_after, "node certificate renewed; restarting receptor to use it");
                    if control.send(Control::Restart).await.is_err() {
                        return;
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "certificate renewal failed; keeping the current certificate")
                }
            },
            Err(e) => tracing::error!(error = %e, "cannot check the node certificate"),
        }
        if control.is_closed() {
            return;
        }
        tokio::time::sleep(target.every).await;
    }
}
