//! The control node's RSA work-signing key pair, made on first start. receptor signs work with
//! the private key (RS512 JWTs) and every verifying node, this one included, checks them with the
//! public key, so an existing pair is never replaced: a new one would make every node that was
//! handed the old public key refuse signed work.
//!
//! Formats are the ones receptor reads: the private key as PKCS#8 PEM (`PRIVATE KEY`; an
//! operator's PKCS#1 `RSA PRIVATE KEY` is accepted too), mode 0600, in a directory created 0700;
//! the public key as PKIX PEM (`PUBLIC KEY`), mode 0644.

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use meshrun_agent::run::conf_file::write_atomic;
use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::pkcs8::{
    DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey, LineEnding,
};
use rsa::rand_core::OsRng;
use rsa::{RsaPrivateKey, RsaPublicKey};

/// Size of a generated key. 2048 bits is what RS512 needs and keeps the first start quick;
/// an operator may provide a larger key.
pub const KEY_BITS: usize = 2048;
/// The private key's file mode.
pub const PRIVATE_KEY_MODE: u32 = 0o600;
/// The public key's file mode (nodes and people may read it).
pub const PUBLIC_KEY_MODE: u32 = 0o644;

/// Why the key pair is not usable.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// A key file could not be read, or a file or directory not made.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// An existing file is not an RSA key receptor can use; it is left as is.
    #[error("{path} is not {expected}: {reason}; fix or remove it")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What it should hold.
        expected: &'static str,
        /// What the decoder said.
        reason: String,
    },
    /// The existing public key does not belong to the existing private key.
    #[error(
        "{public} does not hold the public half of {private}; remove {public} and it will be \
         derived from the private key again"
    )]
    Mismatch {
        /// The private key file.
        private: PathBuf,
        /// The public key file.
        public: PathBuf,
    },
    /// Generating or encoding a key failed.
    #[error("cannot {what}: {reason}")]
    Crypto {
        /// What was being done.
        what: &'static str,
        /// The library's explanation.
        reason: String,
    },
}

/// What [`ensure_key_pair`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyOutcome {
    /// Both files existed and match.
    Kept,
    /// The private key existed; the public key was (re)written from it.
    PublicWritten,
    /// A new pair was generated.
    Generated,
}

/// Makes sure `private` holds an RSA private key and `public` its public half: generates a pair
/// when `private` is missing, derives `public` when only it is missing, and otherwise checks
/// that the two belong together. Blocking (generation takes a while): run it off the runtime.
pub fn ensure_key_pair(private: &Path, public: &Path) -> Result<KeyOutcome, KeyError> {
    match read_private(private)? {
        Some(key) => {
            let derived = RsaPublicKey::from(&key);
            match read_public(public)? {
                Some(existing) if existing == derived => Ok(KeyOutcome::Kept),
                Some(_) => Err(KeyError::Mismatch {
                    private: private.to_path_buf(),
                    public: public.to_path_buf(),
                }),
                None => {
                    write_public(public, &derived)?;
                    Ok(KeyOutcome::PublicWritten)
                }
            }
        }
        None => {
            if public.exists() {
                tracing::warn!(path = %public.display(), "replacing a work-verification key whose private key is gone; nodes given the old one must get the new one");
            }
            let key = RsaPrivateKey::new(&mut OsRng, KEY_BITS).map_err(|e| KeyError::Crypto {
                what: "generate the work-signing key",
                reason: e.to_string(),
            })?;
            let pem = key
                .to_pkcs8_pem(LineEnding::LF)
                .map_err(|e| KeyError::Crypto {
                    what: "encode the work-signing key",
                    reason: e.to_string(),
                })?;
            ensure_private_dir(private)?;
            write_atomic(private, pem.as_bytes(), PRIVATE_KEY_MODE).map_err(|source| {
                KeyError::Io {
                    what: "cannot write",
                    path: private.to_path_buf(),
                    source,
                }
            })?;
            write_public(public, &RsaPublicKey::from(&key))?;
            Ok(KeyOutcome::Generated)
        }
    }
}

fn read_text(path: &Path) -> Result<Option<String>, KeyError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(KeyError::Io {
            what: "cannot read",
            path: path.to_path_buf(),
            source,
        }),
    }
}

fn read_private(path: &Path) -> Result<Option<RsaPrivateKey>, KeyError> {
    let Some(text) = read_text(path)? else {
        return Ok(None);
    };
    warn_if_readable_by_others(path);
    let key = if text.contains("-----BEGIN RSA PRIVATE KEY-----") {
        RsaPrivateKey::from_pkcs1_pem(&text).map_err(|e| e.to_string())
    } else {
        RsaPrivateKey::from_pkcs8_pem(&text).map_err(|e| e.to_string())
    };
    key.map(Some).map_err(|reason| KeyError::Invalid {
        path: path.to_path_buf(),
        expected: "an RSA private key in PEM (PKCS#8 or PKCS#1)",
        reason,
    })
}

fn read_public(path: &Path) -> Result<Option<RsaPublicKey>, KeyError> {
    let Some(text) = read_text(path)? else {
        return Ok(None);
    };
    RsaPublicKey::from_public_key_pem(&text)
        .map(Some)
        .map_err(|e| KeyError::Invalid {
            path: path.to_path_buf(),
            expected: "an RSA public key in PEM (PKIX `PUBLIC KEY`)",
            reason: e.to_string(),
        })
}

fn write_public(path: &Path, key: &RsaPublicKey) -> Result<(), KeyError> {
    let pem = key
        .to_public_key_pem(LineEnding::LF)
        .map_err(|e| KeyError::Crypto {
            what: "encode the work-verification key",
            reason: e.to_string(),
        })?;
    write_atomic(path, pem.as_bytes(), PUBLIC_KEY_MODE).map_err(|source| KeyError::Io {
        what: "cannot write",
        path: path.to_path_buf(),
        source,
    })
}

/// Creates the private key's directory 0700 when it is missing; an existing one is left alone.
fn ensure_private_dir(private: &Path) -> Result<(), KeyError> {
    let Some(dir) = private.parent() else {
        return Ok(());
    };
    if dir.as_os_str().is_empty() || dir.exists() {
        return Ok(());
    }
    let io = |source| KeyError::Io {
        what: "cannot create",
        path: dir.to_path_buf(),
        source,
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io)?;
    // The umask may have taken bits away; none may be added, but be exact.
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io)
}

fn warn_if_readable_by_others(path: &Path) {
    if let Ok(meta) = std::fs::metadata(path) {
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            tracing::warn!(path = %path.display(), mode = format!("{mode:o}"), "the work-signing key is open to other users; 0600 is expected");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn a_pair_is_made_once_with_private_modes_and_then_kept() {
        let tmp = tempfile::tempdir().unwrap();
        let private = tmp.path().join("keys/work.key");
        let public = tmp.path().join("pub/work.pub");
        assert_eq!(
            ensure_key_pair(&private, &public).unwrap(),
            KeyOutcome::Generated
        );
        assert_eq!(mode(&private), 0o600);
        assert_eq!(mode(private.parent().unwrap()), 0o700);
        assert_eq!(mode(&public), 0o644);
        let private_pem = std::fs::read_to_string(&private).unwrap();
        let public_pem = std::fs::read_to_string(&public).unwrap();
        assert!(private_pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
        assert!(public_pem.starts_with("-----BEGIN PUBLIC KEY-----\n"));
        let key = RsaPrivateKey::from_pkcs8_pem(&private_pem).unwrap();
        assert_eq!(rsa::traits::PublicKeyParts::size(&key), KEY_BITS / 8);

        assert_eq!(
            ensure_key_pair(&private, &public).unwrap(),
            KeyOutcome::Kept
        );
        assert_eq!(std::fs::read_to_string(&private).unwrap(), private_pem);

        // A lost public key comes back from the private one, identical.
        std::fs::remove_file(&public).unwrap();
        assert_eq!(
            ensure_key_pair(&private, &public).unwrap(),
            KeyOutcome::PublicWritten
        );
        assert_eq!(std::fs::read_to_string(&public).unwrap(), public_pem);

        // A public key of another pair is refused, not silently replaced.
        let other_pub = tmp.path().join("other.pub");
        // Small, so that the test stays quick; only its mismatch matters.
        let other = RsaPrivateKey::new(&mut OsRng, 512).unwrap();
        write_public(&other_pub, &RsaPublicKey::from(&other)).unwrap();
        let e = ensure_key_pair(&private, &other_pub).unwrap_err();
        assert!(matches!(e, KeyError::Mismatch { .. }), "{e}");

        // An operator's PKCS#1 key is accepted.
        let pkcs1 = tmp.path().join("pkcs1.key");
        let pem = rsa::pkcs1::EncodeRsaPrivateKey::to_pkcs1_pem(&key, LineEnding::LF).unwrap();
        std::fs::write(&pkcs1, pem.as_bytes()).unwrap();
        assert_eq!(ensure_key_pair(&pkcs1, &public).unwrap(), KeyOutcome::Kept);
    }

    #[test]
    fn a_file_that_is_no_key_is_refused_and_left_alone() {
        let tmp = tempfile::tempdir().unwrap();
        let private = tmp.path().join("work.key");
        let public = tmp.path().join("work.pub");
        std::fs::write(&private, "not a key\n").unwrap();
        let e = ensure_key_pair(&private, &public).unwrap_err();
        assert!(e.to_string().contains("work.key"), "{e}");
        assert_eq!(std::fs::read_to_string(&private).unwrap(), "not a key\n");
        assert!(!public.exists());
    }
}
