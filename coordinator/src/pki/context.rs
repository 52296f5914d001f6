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
        Ok(PkiContext {
            ca,
            node_validity: Duration::from_secs(u64::from(days) * 86_400),
            public_url,
            dir,
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
            write(&key, key_pem.as_bytes(), 0o600)?;
            write(&cert, issued.cert_pem.as_bytes(), 0o644)?;
            tracing::info!(names = ?req.dns_names, ips = ?req.ip_addresses, not_after = %issued.not_after, "issued the API's certificate");
        }
        Ok((cert, key))
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

fn write(path: &Path, bytes: &[u8], mode: u32) -> Result<(), PkiError> {
    meshrun_agent::run::conf_file::write_atomic(path, bytes, mode).map_err(|source| PkiError::Io {
        what: "cannot write",
        path: path.to_path_buf(),
        source,
    })
}
