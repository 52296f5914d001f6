//! The node's identity in the report: a uuid kept in `<state_dir>/uuid` (created once, mode
//! 0600, never rewritten unless corrupt) and the kernel's boot id, which changes on every boot
//! so the coordinator can tell that units running before a reboot are gone.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Where the kernel publishes the boot id.
pub const BOOT_ID_PATH: &str = "/proc/sys/kernel/random/boot_id";
/// A fresh random (v4) uuid on every read.
const RANDOM_UUID_PATH: &str = "/proc/sys/kernel/random/uuid";
/// The uuid file's name in the state dir.
const UUID_FILE: &str = "uuid";

/// The node uuid, and whether an unreadable one had to be replaced to get it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeUuid {
    /// The uuid, lowercase, 36 characters.
    pub uuid: String,
    /// Set when the file held something else and was replaced (the old content, shortened).
    pub replaced: Option<String>,
}

/// Why the node uuid could not be read or kept.
#[derive(Debug, thiserror::Error)]
pub enum UuidError {
    /// The state dir could not be created.
    #[error("cannot create state dir {path}: {source}")]
    StateDir {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// The uuid file could not be read or written.
    #[error("cannot keep the node uuid in {path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// The kernel gave no usable random uuid.
    #[error("cannot generate a uuid from {RANDOM_UUID_PATH}: {0}")]
    Generate(String),
}

/// Whether `s` is a uuid in the canonical 8-4-4-4-12 hex form.
pub fn is_uuid(s: &str) -> bool {
    s.len() == 36
        && s.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        })
}

fn new_uuid() -> Result<String, UuidError> {
    let text =
        fs::read_to_string(RANDOM_UUID_PATH).map_err(|e| UuidError::Generate(e.to_string()))?;
    let uuid = text.trim().to_ascii_lowercase();
    if is_uuid(&uuid) {
        Ok(uuid)
    } else {
        Err(UuidError::Generate(format!("got {uuid:?}")))
    }
}

/// Returns the node uuid from `<state_dir>/uuid`, creating the dir (0700) and the file
/// (0600) on first use. Concurrent first calls agree: the file appears by an atomic link,
/// and whoever loses the race reads the winner's uuid.
pub fn ensure_uuid(state_dir: &Path) -> Result<NodeUuid, UuidError> {
    ensure_uuid_with(state_dir, new_uuid)
}

fn ensure_uuid_with(
    state_dir: &Path,
    generate: impl Fn() -> Result<String, UuidError>,
) -> Result<NodeUuid, UuidError> {
    let path = state_dir.join(UUID_FILE);
    let file_err = |source| UuidError::File {
        path: path.clone(),
        source,
    };
    match fs::read_to_string(&path) {
        Ok(text) => {
            let found = text.trim();
            if is_uuid(found) {
                return Ok(NodeUuid {
                    uuid: found.to_ascii_lowercase(),
                    replaced: None,
                });
            }
            let old: String = found.chars().take(40).collect();
            let uuid = generate()?;
            let tmp = write_temp(state_dir, &uuid).map_err(file_err)?;
            fs::rename(&tmp, &path).map_err(|e| {
                let _ = fs::remove_file(&tmp);
                file_err(e)
            })?;
            tracing::warn!(path = %path.display(), old = %old, new = %uuid, "replaced a corrupt node uuid file");
            Ok(NodeUuid {
                uuid,
                replaced: Some(old),
            })
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(state_dir)
                .map_err(|source| UuidError::StateDir {
                    path: state_dir.to_path_buf(),
                    source,
                })?;
            let uuid = generate()?;
            let tmp = write_temp(state_dir, &uuid).map_err(file_err)?;
            let linked = fs::hard_link(&tmp, &path);
            let _ = fs::remove_file(&tmp);
            match linked {
                Ok(()) => {
                    tracing::info!(path = %path.display(), %uuid, "created the node uuid");
                    Ok(NodeUuid {
                        uuid,
                        replaced: None,
                    })
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    let text = fs::read_to_string(&path).map_err(file_err)?;
                    let found = text.trim().to_ascii_lowercase();
                    if is_uuid(&found) {
                        Ok(NodeUuid {
                            uuid: found,
                            replaced: None,
                        })
                    } else {
                        Err(file_err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            "another process wrote something that is not a uuid",
                        )))
                    }
                }
                Err(e) => Err(file_err(e)),
            }
        }
        Err(e) => Err(file_err(e)),
    }
}

/// Writes `uuid` to a fresh 0600 file next to the uuid file and syncs it.
fn write_temp(dir: &Path, uuid: &str) -> io::Result<PathBuf> {
    let tmp = dir.join(format!(".{UUID_FILE}.tmp-{}", std::process::id()));
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    // The mode above only applies to a new file; a leftover from a crash may have another.
    file.set_permissions(fs::Permissions::from_mode(0o600))?;
    file.write_all(format!("{uuid}\n").as_bytes())?;
    file.sync_all()?;
    Ok(tmp)
}

/// The boot id from `path` (normally [`BOOT_ID_PATH`]).
pub fn read_boot_id(path: &Path) -> Result<String, String> {
    let text = fs::read_to_string(path)
        .map_err(|e| format!("cannot read the boot id from {}: {e}", path.display()))?;
    let id = text.trim();
    if is_uuid(id) {
        Ok(id.to_string())
    } else {
        Err(format!(
            "cannot read the boot id from {}: got {id:?}",
            path.display()
        ))
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn uuid_is_created_private_and_stable() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("a/b");
        let first = ensure_uuid(&state).unwrap();
        assert!(is_uuid(&first.uuid), "{first:?}");
        assert_eq!(first.replaced, None);
        let mode = fs::metadata(state.join("uuid"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let dir_mode = fs::metadata(&state).unwrap().permissions().mode();
        assert_eq!(dir_mode & 0o777, 0o700);
        assert_eq!(ensure_uuid(&state).unwrap(), first);
        // Nothing but the uuid file is left behind.
        let names: Vec<_> = fs::read_dir(&state)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("uuid")]);
    }

    #[test]
    fn an_existing_uuid_is_kept_even_in_upper_case() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(
            dir.path().join("uuid"),
            "A5D4C78D-9EE6-4D16-BB5D-CFE1AFB6427D",
        )
        .unwrap();
        let got = ensure_uuid(dir.path()).unwrap();
        assert_eq!(got.uuid, "a5d4c78d-9ee6-4d16-bb5d-cfe1afb6427d");
    }

    #[test]
    fn a_corrupt_uuid_is_replaced_and_says_so() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("uuid"), "garbage\n").unwrap();
        let got = ensure_uuid_with(dir.path(), || {
            Ok("11111111-2222-4333-8444-555555555555".to_string())
        })
        .unwrap();
        assert_eq!(got.uuid, "11111111-2222-4333-8444-555555555555");
        assert_eq!(got.replaced.as_deref(), Some("garbage"));
        let again = ensure_uuid(dir.path()).unwrap();
        assert_eq!(
            (again.uuid.as_str(), again.replaced),
            (got.uuid.as_str(), None)
        );
    }

    #[test]
    fn a_state_dir_that_cannot_exist_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        fs::write(&file, "").unwrap();
        let e = ensure_uuid(&file.join("state")).unwrap_err().to_string();
        assert!(e.contains(&file.join("state").display().to_string()), "{e}");
    }

    #[test]
    fn uuid_shape() {
        assert!(is_uuid("a5d4c78d-9ee6-4d16-bb5d-cfe1afb6427d"));
        assert!(!is_uuid("a5d4c78d9ee64d16bb5dcfe1afb6427d"));
        assert!(!is_uuid("g5d4c78d-9ee6-4d16-bb5d-cfe1afb6427d"));
    }

    #[test]
    fn boot_id_is_the_kernels() {
        let id = read_boot_id(Path::new(BOOT_ID_PATH)).unwrap();
        assert!(is_uuid(&id));
        let e = read_boot_id(Path::new("/nonexistent/boot_id")).unwrap_err();
        assert!(e.contains("/nonexistent/boot_id"), "{e}");
    }
}
