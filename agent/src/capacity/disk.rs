//! Whether the directories jobs write to can take writes: writable, and with at least
//! `capacity.min_free_disk` free (blocks available to unprivileged users, as a job sees it).

use std::path::Path;

use nix::sys::statvfs::statvfs;
use nix::unistd::{AccessFlags, access};

/// A directory that cannot take a job's writes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DiskProblem {
    /// `access(W_OK)` refused (read-only filesystem, permissions, missing).
    #[error("{label} {path} is not writable: {reason}")]
    NotWritable {
        /// What the directory is for.
        label: &'static str,
        /// The directory.
        path: String,
        /// errno's text.
        reason: String,
    },
    /// `statvfs` failed.
    #[error("cannot measure free disk in {label} {path}: {reason}")]
    Unmeasurable {
        /// What the directory is for.
        label: &'static str,
        /// The directory.
        path: String,
        /// errno's text.
        reason: String,
    },
    /// Less free space than configured.
    #[error(
        "only {free_mib} MiB free in {label} {path}, below capacity.min_free_disk ({min_mib} MiB)"
    )]
    LowSpace {
        /// What the directory is for.
        label: &'static str,
        /// The directory.
        path: String,
        /// Free MiB (rounded down).
        free_mib: u64,
        /// Required MiB (rounded up).
        min_mib: u64,
    },
}

/// Checks `dir`; returns every problem found.
pub fn check_dir(label: &'static str, dir: &Path, min_free: u64) -> Vec<DiskProblem> {
    let path = dir.display().to_string();
    let mut problems = Vec::new();
    if let Err(errno) = access(dir, AccessFlags::W_OK) {
        problems.push(DiskProblem::NotWritable {
            label,
            path: path.clone(),
            reason: errno.desc().to_string(),
        });
    }
    match statvfs(dir) {
        Ok(st) => {
            // Both are u64 here but narrower on some 32-bit targets.
            #[allow(clippy::unnecessary_cast)]
            let free = (st.blocks_available() as u64).saturating_mul(st.fragment_size() as u64);
            problems.extend(low_space(label, &path, free, min_free));
        }
        Err(errno) => problems.push(DiskProblem::Unmeasurable {
            label,
            path,
            reason: errno.desc().to_string(),
        }),
    }
    problems
}

/// The low-space verdict, apart from the syscall.
fn low_space(label: &'static str, path: &str, free: u64, min_free: u64) -> Option<DiskProblem> {
    (free < min_free).then(|| DiskProblem::LowSpace {
        label,
        path: path.to_string(),
        free_mib: free >> 20,
        min_mib: min_free.div_ceil(1 << 20),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn low_space_is_below_the_minimum_only() {
        assert_eq!(low_space("state dir", "/s", 2 << 30, 1 << 30), None);
        assert_eq!(low_space("state dir", "/s", 1 << 30, 1 << 30), None);
        let p = low_space("state dir", "/s", 100 << 20, 1 << 30).unwrap();
        assert_eq!(
            p.to_string(),
            "only 100 MiB free in state dir /s, below capacity.min_free_disk (1024 MiB)"
        );
    }

    #[test]
    fn a_real_writable_dir_passes_and_a_missing_one_is_named() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(check_dir("state dir", dir.path(), 1), vec![]);
        let gone = dir.path().join("gone");
        let problems = check_dir("state dir", &gone, 1);
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(
            problems[0].to_string().contains("is not writable"),
            "{problems:?}"
        );
        assert!(
            problems[0]
                .to_string()
                .contains(&gone.display().to_string())
        );
        // More than any disk has.
        let huge = check_dir("state dir", dir.path(), u64::MAX);
        assert!(
            matches!(huge[..], [DiskProblem::LowSpace { .. }]),
            "{huge:?}"
        );
    }
}
