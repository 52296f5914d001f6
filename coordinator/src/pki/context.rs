//! What the running coordinator knows about its PKI: the CA, how long node certificates live,
//! the URL join tokens name, and the API's own HTTPS certificate (issued by the CA, kept in the
//! PKI directory, reissued when it is missing, names other hosts or nears its end).

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::Utc;

use super::{MeshCa, NodeCertRequest, PkiError, inspect};
use crate::config::{CoordinatorConfig, DEFAULT_NODE_CERT_DAYS};

/// How long the API's certificate is valid.
pub const API_CERT_VALIDITY: Duration = Duration::from_secs(30 * 86_400);

/// The PKI as the API and the loops use it.
#[derive(Debug)]
pub struct PkiContext {
    /// The mesh CA.
    pub ca: MeshCa,
    /// Lifetime of node certificates.
    pub node_validity: Duration,
    /// The API URL join tokens carry.
    pub public_url: String,
    /// The PKI directory.
    pub dir: PathBuf,
    /// The work-verification public key joining nodes get (none: joins are refused).
    pub work_verification_key: Option<PathBuf>,
    /// The listener joining nodes dial when they name none.
    pub join_peer: Option<String>,
}

impl PkiContext {
    /// Loads (or on first start creates) the CA named by `config`.
    pub fn load(config: &CoordinatorConfig) -> Result<PkiContext, PkiError> {
        let dir = config.pki_dir();
        let (ca, made) = MeshCa::load_or_create(&dir)?;
        if made {
            tracing::info!(dir = %dir.display(), fingerprint = ca.fingerprint(), "created the mesh CA");
        } else {
            tracing::info!(fingerprint = ca.fingerprint(), "loaded the mesh CA");
        }
        let days = config.pki.node_cert_days.unwrap_or(DEFAULT_NODE_CERT_DAYS);
        let names = api_names(config);
        let public_url = config.pki.public_url.clone().unwrap_or_else(|| {
            let host = names
                .first()
                .cloned()
                .unwrap_or_else(|| config.api_listen.ip().to_string());
            format!("https://{host}:{}", config.api_listen.port())
        });
        let node_validity = match config.pki.node_cert_secs {
            Some(secs) => Duration::from_secs(secs.max(60)),
            None => Duration::from_secs(u64::from(days) * 86_400),
        };
        let work_verification_key = config
            .control_node
            .as_ref()
            .map(|c| c.work_verification_key.clone())
            .or_else(|| config.pki.work_verification_key.clone());
        let join_peer = config
            .pki
            .join_peer
            .clone()
            .or_else(|| derived_join_peer(config, &public_url));
        Ok(PkiContext {
            ca,
            node_validity,
            public_url,
            dir,
            work_verification_key,
            join_peer,
        })
    }

    /// The API's certificate and key files, (re)issued when needed.
    pub fn api_cert(&self, config: &CoordinatorConfig) -> Result<(PathBuf, PathBuf), PkiError> {
        let cert = self.dir.join("api.crt");
        let key = self.dir.join("api.key");
        let req = NodeCertRequest {
            node_id: None,
            dns_names: api_names(config),
            ip_addresses: api_ips(config),
            validity: API_CERT_VALIDITY,
        };
        if !self.still_good(&cert, &key, &req) {
            let (issued, key_pem) = self.ca.issue_with_new_key(&req)?;
            super::ca::write(&key, key_pem.as_bytes(), 0o600)?;
            super::ca::write(&cert, issued.cert_pem.as_bytes(), 0o644)?;
            tracing::info!(names = ?req.dns_names, ips = ?req.ip_addresses, not_after = %issued.not_after, "issued the API's certificate");
        }
        Ok((cert, key))
    }

    /// The managed control node's certificate and key files (`control-node.crt`, key 0600),
    /// bound to `node_id` and `dns_names`/`ips`, (re)issued when missing, for other names, or
    /// under a third of their life left. Returns the files, their expiry and whether they were
    /// just (re)issued.
    pub fn control_node_cert(
        &self,
        node_id: &meshrun_shared::node_id::NodeId,
        dns_names: Vec<String>,
        ip_addresses: Vec<IpAddr>,
    ) -> Result<ControlNodeCert, PkiError> {
        let cert = self.dir.join("control-node.crt");
        let key = self.dir.join("control-node.key");
        let req = NodeCertRequest {
            node_id: Some(node_id.clone()),
            dns_names,
            ip_addresses,
            validity: self.node_validity,
        };
        let bound = std::fs::read_to_string(&cert)
            .ok()
            .and_then(|pem| inspect::first_cert_der(&pem))
            .and_then(|der| inspect::receptor_names(&der))
            .is_some_and(|names| names == [node_id.as_str().to_string()]);
        let reissued = !(bound && self.still_good(&cert, &key, &req));
        if reissued {
            let (issued, key_pem) = self.ca.issue_with_new_key(&req)?;
            super::ca::write(&key, key_pem.as_bytes(), 0o600)?;
            super::ca::write(&cert, issued.cert_pem.as_bytes(), 0o644)?;
            tracing::info!(node = %node_id, not_after = %issued.not_after, "issued the control node's certificate");
        }
        let not_after = cert_not_after(&cert).unwrap_or_else(Utc::now);
        Ok(ControlNodeCert {
            ca: self.ca.cert_file(),
            cert,
            key,
            not_after,
            reissued,
        })
    }

    /// Whether the files hold a certificate from this CA, for these names, with over a third of
    /// its life left.
    fn still_good(&self, cert: &Path, key: &Path, req: &NodeCertRequest) -> bool {
        let (Ok(pem), true) = (std::fs::read_to_string(cert), key.exists()) else {
            return false;
        };
        let Some(der) = inspect::first_cert_der(&pem) else {
            return false;
        };
        let left_ok = inspect::not_after(&der).is_some_and(|end| {
            let third = chrono::Duration::from_std(req.validity / 3).unwrap_or_default();
            end - Utc::now() > third
        });
        left_ok
            && inspect::verifies_against(&der, self.ca.cert_der())
            && inspect::san_names(&der)
                .is_some_and(|(dns, ips)| dns == req.dns_names && ips == req.ip_addresses)
    }
}

/// The control node's certificate files.
#[derive(Debug, Clone)]
pub struct ControlNodeCert {
    /// The CA certificate.
    pub ca: PathBuf,
    /// The certificate.
    pub cert: PathBuf,
    /// Its key (0600).
    pub key: PathBuf,
    /// Its expiry.
    pub not_after: chrono::DateTime<Utc>,
    /// Whether it was just (re)issued.
    pub reissued: bool,
}

/// The expiry of the certificate in the PEM file `path`.
pub fn cert_not_after(path: &Path) -> Option<chrono::DateTime<Utc>> {
    let pem = std::fs::read_to_string(path).ok()?;
    inspect::not_after(&inspect::first_cert_der(&pem)?)
}

/// The listener joining nodes dial by default: the managed control node's, at its bind address
/// when that is a specific one, else at the public URL's host.
fn derived_join_peer(config: &CoordinatorConfig, public_url: &str) -> Option<String> {
    let control = config.control_node.as_ref()?;
    let bind = control.listen_bind.as_deref().filter(|b| {
        b.parse::<IpAddr>()
            .map_or(!b.is_empty(), |ip| !ip.is_unspecified())
    });
    let host = match bind {
        Some(b) => b.to_string(),
        None => {
            let rest = public_url.strip_prefix("https://")?;
            let authority = rest.split('/').next()?;
            match authority.rsplit_once(':') {
                Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => h.to_string(),
                _ => authority.to_string(),
            }
        }
    };
    Some(format!("{host}:{}", control.listen_port))
}

/// The API certificate's DNS names.
pub fn api_names(config: &CoordinatorConfig) -> Vec<String> {
    if let Some(names) = &config.pki.api_names {
        return names.clone();
    }
    let mut names = vec!["localhost".to_string()];
    if let Ok(host) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
        let host = host.trim().to_string();
        if super::issue::check_dns_name(&host).is_ok() && !names.contains(&host) {
            names.push(host);
        }
    }
    names
}

/// The API certificate's IP addresses.
pub fn api_ips(config: &CoordinatorConfig) -> Vec<IpAddr> {
    if let Some(ips) = &config.pki.api_ips {
        return ips.clone();
    }
    let mut ips: Vec<IpAddr> = vec![[127, 0, 0, 1].into(), std::net::Ipv6Addr::LOCALHOST.into()];
    let listen = config.api_listen.ip();
    if !listen.is_unspecified() && !ips.contains(&listen) {
        ips.push(listen);
    }
    ips
}
