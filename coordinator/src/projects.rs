//! Content-addressed project archives (tar + zstd). An upload is checked by unpacking it into a
//! scratch dir before anything is stored; the same archive is stored once.

use std::path::{Path, PathBuf};

use crate::project_archive::{self, ProjectArchiveError, UnpackLimits};
use sha2::{Digest, Sha256};

/// Why an archive was refused or could not be stored.
#[derive(Debug, thiserror::Error)]
pub enum ProjectError {
    /// The archive is not a safe, well-formed tar + zstd archive.
    #[error("{0}")]
    Refused(#[from] ProjectArchiveError),
    /// The archive holds no files.
    #[error("project archive refused: it contains no files")]
    Empty,
    /// No stored archive has this digest.
    #[error("no project archive with sha256 {0}")]
    Unknown(String),
    /// A digest that is not 64 lowercase hex characters.
    #[error("invalid project archive id {0:?}: expected a sha256 in lowercase hex")]
    BadId(String),
    /// Storage failed.
    #[error("cannot store project archive: {0}")]
    Io(#[from] std::io::Error),
}

/// What was stored.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StoredArchive {
    /// Lowercase hex sha256 of the archive bytes.
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
    /// Regular files in the archive, relative paths.
    pub files: Vec<String>,
}

/// The archive directory.
#[derive(Debug, Clone)]
pub struct ProjectStore {
    dir: PathBuf,
    limits: UnpackLimits,
}

fn check_id(sha: &str) -> Result<(), ProjectError> {
    let ok = sha.len() == 64
        && sha
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if ok {
        Ok(())
    } else {
        Err(ProjectError::BadId(sha.to_string()))
    }
}

impl ProjectStore {
    /// A store below `dir` (created if missing).
    pub fn new(dir: PathBuf, limits: UnpackLimits) -> std::io::Result<Self> {
        std::fs::create_dir_all(&dir)?;
        Ok(ProjectStore { dir, limits })
    }

    fn zip_path(&self, sha: &str) -> PathBuf {
        self.dir.join(format!("{sha}.tar.zst"))
    }

    fn manifest_path(&self, sha: &str) -> PathBuf {
        self.dir.join(format!("{sha}.files.json"))
    }

    /// Checks and stores `bytes` (blocking: call from a blocking task).
    pub fn put(&self, bytes: &[u8]) -> Result<StoredArchive, ProjectError> {
        let sha = hex::encode(Sha256::digest(bytes));
        if let Ok(existing) = self.get(&sha) {
            return Ok(existing);
        }
        let scratch = tempfile::tempdir_in(&self.dir)?;
        let unpacked = project_archive::unpack(bytes, &scratch.path().join("p"), &self.limits)?;
        let files = unpacked.files;
        if files.is_empty() {
            return Err(ProjectError::Empty);
        }
        let tmp = tempfile::NamedTempFile::new_in(&self.dir)?;
        std::fs::write(tmp.path(), bytes)?;
        let manifest = tempfile::NamedTempFile::new_in(&self.dir)?;
        std::fs::write(
            manifest.path(),
            serde_json::to_vec(&files).unwrap_or_default(),
        )?;
        // Manifest first: an archive without its manifest is never visible.
        manifest
            .persist(self.manifest_path(&sha))
            .map_err(|e| e.error)?;
        tmp.persist(self.zip_path(&sha)).map_err(|e| e.error)?;
        Ok(StoredArchive {
            sha256: sha,
            size: bytes.len() as u64,
            files,
        })
    }

    /// A stored archive's description.
    pub fn get(&self, sha: &str) -> Result<StoredArchive, ProjectError> {
        check_id(sha)?;
        let zip = self.zip_path(sha);
        let size = match std::fs::metadata(&zip) {
            Ok(m) => m.len(),
            Err(_) => return Err(ProjectError::Unknown(sha.to_string())),
        };
        let files: Vec<String> = std::fs::read(self.manifest_path(sha))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or_else(|| ProjectError::Unknown(sha.to_string()))?;
        Ok(StoredArchive {
            sha256: sha.to_string(),
            size,
            files,
        })
    }

    /// Extracts a stored archive into `dest` (blocking).
    pub fn extract(&self, sha: &str, dest: &Path) -> Result<(), ProjectError> {
        check_id(sha)?;
        let file = std::fs::File::open(self.zip_path(sha))
            .map_err(|_| ProjectError::Unknown(sha.to_string()))?;
        project_archive::unpack(std::io::BufReader::new(file), dest, &self.limits)?;
        Ok(())
    }
}
