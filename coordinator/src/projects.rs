//! Content-addressed project archives. An upload is checked by extracting it (with the shared
//! safe extractor) into a scratch dir before anything is stored; the same archive is stored once.

use std::path::{Path, PathBuf};

use meshrun_shared::runner_stream::archive::{self, ExtractLimits};
use sha2::{Digest, Sha256};

/// Why an archive was refused or could not be stored.
#[derive(Debug, thiserror::Error)]
pub enum ProjectError {
    /// The archive is not a safe, well-formed zip.
    #[error("project archive refused: {0}")]
    Refused(#[from] archive::ArchiveError),
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
    limits: ExtractLimits,
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

fn list_files(root: &Path, dir: &Path, out: &mut Vec<String>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let ty = entry.file_type()?;
        let path = entry.path();
        if ty.is_dir() {
            list_files(root, &path, out)?;
        } else if ty.is_file()
            && let Ok(rel) = path.strip_prefix(root)
        {
            out.push(rel.to_string_lossy().into_owned());
        }
    }
    Ok(())
}

impl ProjectStore {
    /// A store below `dir` (created if missing).
    pub fn new(dir: PathBuf, limits: ExtractLimits) -> std::io::Result<Self> {
        std::fs::create_dir_all(&dir)?;
        Ok(ProjectStore { dir, limits })
    }

    fn zip_path(&self, sha: &str) -> PathBuf {
        self.dir.join(format!("{sha}.zip"))
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
        archive::extract_zip(std::io::Cursor::new(bytes), scratch.path(), &self.limits)?;
        let mut files = Vec::new();
        list_files(scratch.path(), scratch.path(), &mut files)?;
        if files.is_empty() {
            return Err(ProjectError::Empty);
        }
        files.sort();
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
        archive::extract_zip(std::io::BufReader::new(file), dest, &self.limits)?;
        Ok(())
    }
}
