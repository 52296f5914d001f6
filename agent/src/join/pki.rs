//! The node's side of the mesh PKI: its key pair (made here, never sent anywhere), CSRs for it,
//! PEM to DER, fingerprints, and reading a certificate's validity for renewal.

use std::path::Path;

use base64::Engine as _;
use sha2::{Digest, Sha256};
use x509_parser::prelude::{FromDer, X509Certificate};

/// Why a key, CSR or certificate could not be made or read.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// The key file is there but unusable.
    #[error("the node key {path} is not usable: {reason}")]
    BadKey {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// Making a key or CSR failed.
    #[error("cannot {what}: {reason}")]
    Crypto {
        /// What was being done.
        what: &'static str,
        /// Why.
        reason: String,
    },
    /// A PEM certificate could not be read.
    #[error("{what} is not a PEM certificate")]
    NotACert {
        /// Which one.
        what: &'static str,
    },
}

/// A new key pair (ECDSA P-256) as PKCS#8 PEM.
pub fn new_key_pem() -> Result<String, PkiError> {
    rcgen::KeyPair::generate()
        .map(|k| k.serialize_pem())
        .map_err(|e| PkiError::Crypto {
            what: "generate a key",
            reason: e.to_string(),
        })
}

/// The key in `path` if it exists and parses; `Ok(None)` if there is no file.
pub fn existing_key_pem(path: &Path) -> Result<Option<String>, PkiError> {
    match std::fs::read_to_string(path) {
        Ok(pem) => {
            rcgen::KeyPair::from_pem(&pem).map_err(|e| PkiError::BadKey {
                path: path.display().to_string(),
                reason: e.to_string(),
            })?;
            Ok(Some(pem))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(PkiError::BadKey {
            path: path.display().to_string(),
            reason: e.to_string(),
        }),
    }
}

/// A CSR (PEM) for `key_pem`, naming `node_id` (the coordinator decides the real names).
pub fn csr_pem(key_pem: &str, node_id: &str) -> Result<String, PkiError> {
    let crypto = |what| {
        move |e: rcgen::Error| PkiError::Crypto {
            what,
            reason: e.to_string(),
        }
    };
    let key = rcgen::KeyPair::from_pem(key_pem).map_err(crypto("read the key"))?;
    let mut params = rcgen::CertificateParams::default();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, node_id);
    params
        .serialize_request(&key)
        .and_then(|csr| csr.pem())
        .map_err(crypto("make a certificate signing request"))
}

/// The DER of the first certificate in `pem`.
pub fn first_cert_der(pem: &str) -> Option<Vec<u8>> {
    let start = "-----BEGIN CERTIFICATE-----";
    let begin = pem.find(start)? + start.len();
    let end = begin + pem[begin..].find("-----END CERTIFICATE-----")?;
    let b64: String = pem[begin..end]
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    base64::engine::general_purpose::STANDARD.decode(b64).ok()
}

/// Lowercase hex SHA-256 of `der` (a CA fingerprint as join tokens carry it).
pub fn fingerprint(der: &[u8]) -> String {
    hex::encode(Sha256::digest(der))
}

/// A certificate's validity as unix seconds `(not_before, not_after)`.
pub fn validity(cert_pem: &str) -> Result<(i64, i64), PkiError> {
    let der = first_cert_der(cert_pem).ok_or(PkiError::NotACert {
        what: "the certificate",
    })?;
    let (_, cert) = X509Certificate::from_der(&der).map_err(|_| PkiError::NotACert {
        what: "the certificate",
    })?;
    let v = cert.validity();
    Ok((v.not_before.timestamp(), v.not_after.timestamp()))
}

/// Whether a certificate valid `(not_before, not_after)` has under a third of its life left at
/// unix time `now`.
pub fn needs_renewal((not_before, not_after): (i64, i64), now: i64) -> bool {
    let life = (not_after - not_before).max(1);
    (not_after - now) * 3 < life
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_csr_is_made_for_a_local_key_and_a_third_of_life_triggers_renewal() {
        let key = new_key_pem().unwrap();
        let csr = csr_pem(&key, "exec1").unwrap();
        assert!(csr.contains("BEGIN CERTIFICATE REQUEST"));
        assert!(!csr.contains("PRIVATE KEY"));
        assert!(needs_renewal((0, 90), 61));
        assert!(!needs_renewal((0, 90), 59));
        assert!(needs_renewal((0, 90), 100));
    }

    #[test]
    fn a_self_signed_cert_yields_its_der_fingerprint_and_validity() {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["a".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let der = first_cert_der(&cert.pem()).unwrap();
        assert_eq!(der, cert.der().to_vec());
        assert_eq!(fingerprint(&der).len(), 64);
        let (nb, na) = validity(&cert.pem()).unwrap();
        assert!(na > nb);
        assert!(first_cert_der("garbage").is_none());
    }

    #[test]
    fn an_existing_key_is_reused_and_a_damaged_one_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("node.key");
        assert!(existing_key_pem(&p).unwrap().is_none());
        let key = new_key_pem().unwrap();
        std::fs::write(&p, &key).unwrap();
        assert_eq!(existing_key_pem(&p).unwrap().unwrap(), key);
        std::fs::write(&p, "nope").unwrap();
        assert!(existing_key_pem(&p).is_err());
    }
}
