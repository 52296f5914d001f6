//! Creating and loading the mesh CA. Its key is ECDSA P-256, kept 0600 beside the certificate in
//! `<data_dir>/pki/`; the directory is 0700. An existing CA is never replaced: every node trusts
//! it, so a new one would cut the whole mesh off.

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use meshrun_agent::run::conf_file::write_atomic;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, KeyPair, KeyUsagePurpose,
};
use sha2::{Digest, Sha256};
use time::{Duration, OffsetDateTime};

use super::PkiError;

/// The CA key's file mode.
pub const KEY_MODE: u32 = 0o600;
/// How long the CA is valid.
pub const CA_VALIDITY_DAYS: i64 = 3650;

/// The mesh CA, loaded and ready to sign.
pub struct MeshCa {
    /// The certificate as stored (PEM); this exact text is handed to nodes.
    cert_pem: String,
    /// Its DER.
    cert_der: Vec<u8>,
    /// Lowercase hex SHA-256 of the DER.
    fingerprint: String,
    /// The issuer as rcgen needs it (same subject and key id as the stored certificate).
    pub(super) issuer: rcgen::Certificate,
    /// The CA key.
    pub(super) key: KeyPair,
    /// Where it lives.
    dir: PathBuf,
}

impl std::fmt::Debug for MeshCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MeshCa")
            .field("fingerprint", &self.fingerprint)
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

/// The CA certificate's path in `dir`.
pub fn cert_path(dir: &Path) -> PathBuf {
    dir.join("ca.crt")
}

/// The CA key's path in `dir`.
pub fn key_path(dir: &Path) -> PathBuf {
    dir.join("ca.key")
}

/// Lowercase hex SHA-256 of a certificate's DER (what join tokens carry).
pub fn fingerprint(der: &[u8]) -> String {
    hex::encode(Sha256::digest(der))
}

impl MeshCa {
    /// Loads the CA in `dir`, creating it when neither file exists. Returns whether it was made.
    pub fn load_or_create(dir: &Path) -> Result<(MeshCa, bool), PkiError> {
        let (cert, key) = (cert_path(dir), key_path(dir));
        match (cert.exists(), key.exists()) {
            (true, true) => Ok((Self::load(dir)?, false)),
            (false, false) => Ok((Self::create(dir)?, true)),
            (has_cert, _) => {
                let (present, missing) = if has_cert {
                    (&cert, &key)
                } else {
                    (&key, &cert)
                };
                Err(PkiError::BadCaFile {
                    path: missing.clone(),
                    expected: "CA file",
                    reason: format!("it is missing while {} exists", present.display()),
                })
            }
        }
    }

    fn create(dir: &Path) -> Result<MeshCa, PkiError> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|source| PkiError::Io {
                what: "cannot create",
                path: dir.to_path_buf(),
                source,
            })?;
        let key = KeyPair::generate().map_err(|e| PkiError::crypto("generate the CA key", e))?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        let tag = uuid::Uuid::new_v4().simple().to_string();
        dn.push(DnType::OrganizationName, "meshrun");
        dn.push(DnType::CommonName, format!("meshrun mesh CA {}", &tag[..8]));
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::hours(1);
        params.not_after = now + Duration::days(CA_VALIDITY_DAYS);
        let cert = params
            .self_signed(&key)
            .map_err(|e| PkiError::crypto("sign the CA certificate", e))?;
        // The key first: a certificate without its key would block the next start.
        write(&key_path(dir), key.serialize_pem().as_bytes(), KEY_MODE)?;
        write(&cert_path(dir), cert.pem().as_bytes(), 0o644)?;
        Self::load(dir)
    }

    fn load(dir: &Path) -> Result<MeshCa, PkiError> {
        let (cert_file, key_file) = (cert_path(dir), key_path(dir));
        let cert_pem = read(&cert_file)?;
        let key_pem = read(&key_file)?;
        let mode = std::fs::metadata(&key_file)
            .map_err(|source| PkiError::Io {
                what: "cannot stat",
                path: key_file.clone(),
                source,
            })?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            // Tighten rather than refuse: the operator's intent is clear.
            tracing::warn!(path = %key_file.display(), mode = format!("{:o}", mode & 0o777), "CA key was readable by others; setting 0600");
            std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(KEY_MODE))
                .map_err(|source| PkiError::Io {
                    what: "cannot chmod",
                    path: key_file.clone(),
                    source,
                })?;
        }
        let bad =
            |path: &Path, expected: &'static str, e: &dyn std::fmt::Display| PkiError::BadCaFile {
                path: path.to_path_buf(),
                expected,
                reason: e.to_string(),
            };
        let key = KeyPair::from_pem(&key_pem).map_err(|e| bad(&key_file, "private key", &e))?;
        let der = rustls_pki_types::CertificateDer::from_pem_slice(cert_pem.as_bytes())
            .map_err(|e| bad(&cert_file, "PEM certificate", &e))?;
        let params = CertificateParams::from_ca_cert_der(&der)
            .map_err(|e| bad(&cert_file, "CA certificate", &e))?;
        if !super::inspect::public_key_matches(der.as_ref(), &key) {
            return Err(bad(
                &cert_file,
                "CA certificate",
                &format!("it does not belong to the key in {}", key_file.display()),
            ));
        }
        let issuer = params
            .self_signed(&key)
            .map_err(|e| PkiError::crypto("load the CA", e))?;
        Ok(MeshCa {
            fingerprint: fingerprint(der.as_ref()),
            cert_der: der.as_ref().to_vec(),
            cert_pem,
            issuer,
            key,
            dir: dir.to_path_buf(),
        })
    }

    /// The CA certificate (PEM), as nodes store it.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA certificate (DER).
    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    /// Lowercase hex SHA-256 of the CA certificate's DER.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// The CA certificate file.
    pub fn cert_file(&self) -> PathBuf {
        cert_path(&self.dir)
    }
}

use rustls_pki_types::pem::PemObject as _;

fn read(path: &Path) -> Result<String, PkiError> {
    std::fs::read_to_string(path).map_err(|source| PkiError::Io {
        what: "cannot read",
        path: path.to_path_buf(),
        source,
    })
}

/// Writes a PKI file atomically with `mode` (the one writer of `pki`).
pub(super) fn write(path: &Path, bytes: &[u8], mode: u32) -> Result<(), PkiError> {
    write_atomic(path, bytes, mode).map_err(|source| PkiError::Io {
        what: "cannot write",
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ca_is_made_once_with_a_private_key_and_then_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let pki = dir.path().join("pki");
        let (ca, made) = MeshCa::load_or_create(&pki).unwrap();
        assert!(made);
        let mode = std::fs::metadata(key_path(&pki))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let dir_mode = std::fs::metadata(&pki).unwrap().permissions().mode();
        assert_eq!(dir_mode & 0o777, 0o700);
        let (again, made) = MeshCa::load_or_create(&pki).unwrap();
        assert!(!made);
        assert_eq!(again.fingerprint(), ca.fingerprint());
        assert_eq!(again.cert_pem(), ca.cert_pem());
    }

    #[test]
    fn a_half_present_or_foreign_ca_is_refused_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let pki = dir.path().join("pki");
        MeshCa::load_or_create(&pki).unwrap();
        let other = dir.path().join("other");
        MeshCa::load_or_create(&other).unwrap();
        // The other CA's key with this CA's certificate.
        std::fs::copy(key_path(&other), key_path(&pki)).unwrap();
        let err = MeshCa::load_or_create(&pki).unwrap_err().to_string();
        assert!(err.contains("does not belong to the key"), "{err}");
        std::fs::remove_file(key_path(&pki)).unwrap();
        let err = MeshCa::load_or_create(&pki).unwrap_err().to_string();
        assert!(err.contains("missing"), "{err}");
        assert!(cert_path(&pki).exists());
    }
}
