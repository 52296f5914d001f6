//! `meshrun-coordinator admin cert issue`: a certificate and key for a hand-configured node (the
//! manual-install path), made offline from the coordinator's own CA, which is created as a first
//! start would create it when it is missing. The files land in one folder, each written
//! atomically: `ca.crt`, `<id>.crt` and `<id>.key` (0600).

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use meshrun_shared::node_id::NodeId;

use super::issue::check_dns_name;
use super::{IssuedCert, MeshCa, NodeCertRequest, PkiError};
use crate::config::{CoordinatorConfig, DEFAULT_NODE_CERT_DAYS};

/// The longest life `admin cert issue` gives a node certificate, in days.
pub const MAX_DAYS: u32 = 3650;

/// What to issue.
#[derive(Debug, Clone)]
pub struct CertIssueRequest {
    /// The node id bound into the certificate.
    pub node_id: String,
    /// DNS names the node is dialled at.
    pub dns_names: Vec<String>,
    /// IP addresses the node is dialled at.
    pub ip_addresses: Vec<IpAddr>,
    /// Days of validity; none means the config's `pki.node_cert_days` (default 7).
    pub days: Option<u32>,
    /// The folder the three files go to (made when missing).
    pub out_dir: PathBuf,
}

/// The files written.
#[derive(Debug, Clone)]
pub struct CertIssued {
    /// The mesh CA certificate.
    pub ca_cert: PathBuf,
    /// The node's certificate.
    pub cert: PathBuf,
    /// The node's private key (0600).
    pub key: PathBuf,
    /// The certificate as issued.
    pub issued: IssuedCert,
    /// The CA's fingerprint.
    pub ca_fingerprint: String,
    /// Whether the CA was made by this call.
    pub ca_created: bool,
}

/// Issues a certificate for `req` from the CA of `config` (creating the CA when absent).
pub fn issue(config: &CoordinatorConfig, req: &CertIssueRequest) -> Result<CertIssued, PkiError> {
    let node_id = NodeId::new(req.node_id.clone()).map_err(|e| PkiError::BadName(e.to_string()))?;
    for name in &req.dns_names {
        check_dns_name(name)?;
    }
    let days = req
        .days
        .or(config.pki.node_cert_days)
        .unwrap_or(DEFAULT_NODE_CERT_DAYS);
    if days == 0 || days > MAX_DAYS {
        return Err(PkiError::BadName(format!(
            "--days {days}: a certificate lives from 1 to {MAX_DAYS} days"
        )));
    }
    let (ca, ca_created) = MeshCa::load_or_create(&config.pki_dir())?;
    let (issued, key_pem) = ca.issue_with_new_key(&NodeCertRequest {
        node_id: Some(node_id.clone()),
        dns_names: req.dns_names.clone(),
        ip_addresses: req.ip_addresses.clone(),
        validity: Duration::from_secs(u64::from(days) * 86_400),
    })?;
    std::fs::create_dir_all(&req.out_dir).map_err(|source| PkiError::Io {
        what: "cannot create",
        path: req.out_dir.clone(),
        source,
    })?;
    let ca_cert = req.out_dir.join("ca.crt");
    let cert = req.out_dir.join(format!("{}.crt", node_id.as_str()));
    let key = req.out_dir.join(format!("{}.key", node_id.as_str()));
    // The key first, so a certificate on disk always has its key beside it.
    super::ca::write(&key, key_pem.as_bytes(), 0o600)?;
    super::ca::write(&cert, issued.cert_pem.as_bytes(), 0o644)?;
    super::ca::write(&ca_cert, ca.cert_pem().as_bytes(), 0o644)?;
    Ok(CertIssued {
        ca_cert,
        cert,
        key,
        issued,
        ca_fingerprint: ca.fingerprint().to_string(),
        ca_created,
    })
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;
    use std::path::Path;

    use super::*;
    use crate::pki::inspect;

    fn config(dir: &Path) -> CoordinatorConfig {
        let text = format!(
            "database = \"{d}/db\"\ndata_dir = \"{d}/data\"\n",
            d = dir.display()
        );
        toml::from_str(&text).unwrap()
    }

    fn request(dir: &Path, id: &str) -> CertIssueRequest {
        CertIssueRequest {
            node_id: id.into(),
            dns_names: vec!["exec1.example.com".into()],
            ip_addresses: vec!["127.0.0.1".parse().unwrap()],
            days: Some(2),
            out_dir: dir.join("out"),
        }
    }

    #[test]
    fn issues_a_bound_certificate_from_the_coordinators_ca_made_on_demand() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(dir.path());
        let done = issue(&cfg, &request(dir.path(), "exec1")).unwrap();
        assert!(done.ca_created);
        assert!(cfg.pki_dir().join("ca.key").exists());
        let mode = std::fs::metadata(&done.key).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let pem = std::fs::read_to_string(&done.cert).unwrap();
        let der = inspect::first_cert_der(&pem).unwrap();
        assert_eq!(inspect::receptor_names(&der).unwrap(), vec!["exec1"]);
        let ca_pem = std::fs::read_to_string(&done.ca_cert).unwrap();
        let ca_der = inspect::first_cert_der(&ca_pem).unwrap();
        assert!(inspect::verifies_against(&der, &ca_der));
        let (dns, ips) = inspect::san_names(&der).unwrap();
        assert_eq!(dns, vec!["exec1.example.com"]);
        assert_eq!(ips, vec!["127.0.0.1".parse::<IpAddr>().unwrap()]);
        // A second node: same CA, not made again.
        let again = issue(&cfg, &request(dir.path(), "exec2")).unwrap();
        assert!(!again.ca_created);
        assert_eq!(again.ca_fingerprint, done.ca_fingerprint);
    }

    #[test]
    fn bad_ids_names_and_lifetimes_are_refused_before_anything_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(dir.path());
        for id in ["", "has space", "a:b", "localhost", "../x"] {
            let err = issue(&cfg, &request(dir.path(), id)).unwrap_err();
            assert!(err.to_string().contains("node id"), "{id:?}: {err}");
        }
        let mut r = request(dir.path(), "exec1");
        r.dns_names = vec!["bad name".into()];
        assert!(issue(&cfg, &r).unwrap_err().to_string().contains("DNS"));
        r.dns_names.clear();
        r.days = Some(0);
        assert!(issue(&cfg, &r).unwrap_err().to_string().contains("days"));
        assert!(!r.out_dir.exists());
        assert!(!cfg.pki_dir().exists());
    }
}
