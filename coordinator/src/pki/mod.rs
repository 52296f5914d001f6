//! The mesh's certificate authority: made on the coordinator's first start, it signs every node's
//! certificate (bound to the node id through receptor's otherName SAN) and the API's own HTTPS
//! certificate. Receptor has no revocation, so certificates are short-lived and a removed node is
//! simply never renewed.
//!
//! - [`ca`]: creating and loading the CA (key 0600) and its fingerprint.
//! - [`context`]: the CA as the running coordinator holds it, and the API's HTTPS certificate.
//! - [`issue`]: turning a CSR (or a fresh key) into a certificate for a node id and its names.
//! - [`inspect`]: reading node ids, expiry and key hashes back out of certificates.
//! - [`admin`]: `admin cert issue`, certificates for hand-configured nodes.

pub mod admin;
pub mod ca;
pub mod context;
pub mod inspect;
pub mod issue;

pub use ca::MeshCa;
pub use context::PkiContext;
pub use issue::{IssuedCert, NodeCertRequest};

use std::path::PathBuf;

/// Why a PKI operation failed.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// A CA file could not be read or written.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// An existing CA file is unusable; it is left as it is.
    #[error(
        "{path} is not a usable {expected}: {reason}; fix or remove it (removing the CA means every node must join again)"
    )]
    BadCaFile {
        /// The file.
        path: PathBuf,
        /// What it should hold.
        expected: &'static str,
        /// Why not.
        reason: String,
    },
    /// The CSR is not a well-formed, self-signed PKCS#10 request.
    #[error("the certificate signing request is not valid: {0}")]
    BadCsr(String),
    /// A requested name cannot go into a certificate.
    #[error("{0}")]
    BadName(String),
    /// The signing library failed.
    #[error("cannot {what}: {reason}")]
    Crypto {
        /// What was being done.
        what: &'static str,
        /// The library's explanation.
        reason: String,
    },
}

impl PkiError {
    pub(crate) fn crypto(what: &'static str, e: impl std::fmt::Display) -> Self {
        PkiError::Crypto {
            what,
            reason: e.to_string(),
        }
    }
}
