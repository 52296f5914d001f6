//! Directory ⇄ zip conversion for the ansible-runner streaming protocol.
//!
//! ansible-runner ships whole directories inside its streams as zip files: the private data dir
//! travels to the worker and the artifacts dir comes back. This module owns both directions.
//! [`zip_dir`] writes an archive the Python side understands (unix mode in the high 16 bits of
//! `external_attr`, directory entries with a trailing `/`, symlinks as `0o120777` entries whose
//! content is the target, FIFOs/sockets/devices skipped). [`extract_zip`] unpacks an archive that
//! came off the network, so it treats every name, mode, size and link target as hostile: it never
//! writes outside the destination or through a symlink, refuses special files, and enforces
//! [`ExtractLimits`] on the bytes it actually decompresses rather than on the headers.
//!
//! Times: the DOS time field is written and read as UTC (Python's `zipfile` uses local time, so the
//! two agree on UTC hosts only). To keep whole seconds, which the 2-second DOS field cannot, every
//! entry also carries the Info-ZIP extended timestamp (`0x5455`), preferred on extraction.
//!
//! Layout: `write` holds [`zip_dir`], `extract` holds [`extract_zip`], `timestamps` converts
//! between unix seconds and the zip's DOS time field.

mod extract;
mod timestamps;
mod write;

#[cfg(test)]
mod tests;

pub use extract::extract_zip;
pub use write::zip_dir;
#[cfg(test)]
use write::zip_dir_with_workers;

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::{self, DirBuilder, File, Metadata, OpenOptions, Permissions};
use std::io::{self, Read, Seek, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use zip::read::ZipFile;
use zip::result::ZipError;
use zip::write::FullFileOptions;
use zip::{CompressionMethod, DateTime, ExtraField, ZipArchive, ZipWriter};

const S_IFMT: u32 = 0o170_000;
const S_IFIFO: u32 = 0o010_000;
const S_IFCHR: u32 = 0o020_000;
const S_IFDIR: u32 = 0o040_000;
const S_IFBLK: u32 = 0o060_000;
const S_IFREG: u32 = 0o100_000;
const S_IFLNK: u32 = 0o120_000;
const S_IFSOCK: u32 = 0o140_000;
/// Only the rwx bits survive extraction: setuid/setgid/sticky from a remote peer are never honoured.
const PERM_BITS: u32 = 0o777;
const DEFAULT_FILE_MODE: u32 = 0o644;
const DEFAULT_DIR_MODE: u32 = 0o755;
/// Directories stay private while their content is being written; final modes come at the end.
const BUILD_DIR_MODE: u32 = 0o700;
/// Info-ZIP "UT" extra field: flags byte + little-endian u32 seconds since the epoch.
const EXTENDED_TIMESTAMP_ID: u16 = 0x5455;
/// Linux PATH_MAX; a longer link target cannot be created anyway.
const MAX_LINK_TARGET: u64 = 4096;
/// 1980-01-01T00:00:00Z, the earliest DOS timestamp.
const DOS_EPOCH_SECS: i64 = 315_532_800;
/// 2107-12-31T23:59:58Z, the latest DOS timestamp.
const DOS_MAX_SECS: i64 = 4_354_819_198;
const COPY_BUF: usize = 64 * 1024;

/// Decompressed bytes an archive may always produce, whatever its compression ratio.
pub const RATIO_FREE_BYTES: u64 = 1 << 20;

/// Limits for extraction (bombs). Default: 100_000 entries, 8 GiB total uncompressed, 4 GiB per
/// entry, and at most 200 decompressed bytes per archive byte beyond [`RATIO_FREE_BYTES`].
#[derive(Debug, Clone)]
pub struct ExtractLimits {
    /// Most entries (files, dirs, links) an archive may hold.
    pub max_entries: u64,
    /// Most decompressed bytes over all entries, declared or actual.
    pub max_total_bytes: u64,
    /// Most decompressed bytes in one entry, declared or actual.
    pub max_entry_bytes: u64,
    /// Most decompressed bytes (actual, over all entries) per byte of archive, once more than
    /// [`RATIO_FREE_BYTES`] were written; 0 turns the check off. Deflate reaches about 1030:1 on
    /// zeros, real artifacts (JSON events, text output) stay far below 200:1, so a small archive
    /// can no longer fill the disk up to `max_total_bytes`.
    pub max_ratio: u64,
}

impl Default for ExtractLimits {
    fn default() -> Self {
        Self {
            max_entries: 100_000,
            max_total_bytes: 8 << 30,
            max_entry_bytes: 4 << 30,
            max_ratio: 200,
        }
    }
}

/// What an extraction wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExtractSummary {
    /// Archive entries processed (files, directories and symlinks).
    pub entries: u64,
    /// Decompressed bytes written: file contents plus symlink targets.
    pub bytes: u64,
}

/// Everything that can go wrong while zipping or extracting. Entry names are shown quoted and
/// escaped because they come from the peer.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// A filesystem operation failed.
    #[error("cannot {op} {path:?}: {source}")]
    Io {
        /// What was being done ("open", "create directory", ...).
        op: &'static str,
        /// The path it was done to.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The zip library rejected the archive or a write.
    #[error("zip error while {context}: {source}")]
    Zip {
        /// What was being done, naming the entry where there is one.
        context: String,
        /// The library's error.
        #[source]
        source: ZipError,
    },
    /// The deflate level passed to [`zip_dir`] is not 0..=9.
    #[error("deflate level {level} is out of range 0..=9")]
    InvalidLevel {
        /// The rejected level.
        level: i64,
    },
    /// The directory to zip is not a directory.
    #[error("{path:?} is not a directory")]
    NotADirectory {
        /// The rejected path.
        path: PathBuf,
    },
    /// A path (or link target) to zip is not UTF-8, which zip names must be.
    #[error("{path:?} is not valid UTF-8 and cannot be stored in a zip entry")]
    NonUtf8Path {
        /// The offending path.
        path: PathBuf,
    },
    /// The archive holds more entries than [`ExtractLimits::max_entries`].
    #[error("archive has {count} entries, over the limit of {max}")]
    TooManyEntries {
        /// Entries in the central directory.
        count: u64,
        /// The limit.
        max: u64,
    },
    /// An entry name is absolute, climbs with `..`, is empty, or contains NUL or `\`.
    #[error("entry #{index} {name:?}: unsafe name: {reason}")]
    UnsafeName {
        /// Position in the central directory.
        index: usize,
        /// The name as stored.
        name: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// A symlink entry's target is absolute or could lead outside the destination.
    #[error("entry {name:?}: unsafe symlink target {target:?}: {reason}")]
    UnsafeLinkTarget {
        /// The entry name.
        name: String,
        /// The target, lossily decoded.
        target: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// A symlink target is longer than any path the OS accepts.
    #[error("entry {name:?}: symlink target is longer than {max} bytes")]
    LinkTargetTooLong {
        /// The entry name.
        name: String,
        /// The limit.
        max: u64,
    },
    /// Writing the entry would go through a symlink (from the archive or already on disk).
    #[error("entry {name:?}: path goes through the symlink {link:?}")]
    ThroughSymlink {
        /// The entry name.
        name: String,
        /// The symlink on the way.
        link: PathBuf,
    },
    /// The entry is a FIFO, socket or device.
    #[error("entry {name:?}: mode {mode:#o} is a {kind}, which is never extracted")]
    SpecialFile {
        /// The entry name.
        name: String,
        /// The unix mode stored in the entry.
        mode: u32,
        /// "FIFO", "socket", "character device" or "block device".
        kind: &'static str,
    },
    /// The entry's mode has file-type bits that mean nothing on unix.
    #[error("entry {name:?}: mode {mode:#o} has an unknown file type")]
    UnknownFileType {
        /// The entry name.
        name: String,
        /// The unix mode stored in the entry.
        mode: u32,
    },
    /// The name ends in `/` but the mode says file or symlink.
    #[error("entry {name:?}: name ends with '/' but mode {mode:#o} is not a directory")]
    InconsistentType {
        /// The entry name.
        name: String,
        /// The unix mode stored in the entry.
        mode: u32,
    },
    /// The entry is encrypted.
    #[error("entry {name:?}: encrypted entries are not supported")]
    Encrypted {
        /// The entry name.
        name: String,
    },
    /// The entry uses a compression method other than stored or deflate.
    #[error(
        "entry {name:?}: compression method {method} is not supported (only stored and deflate)"
    )]
    UnsupportedCompression {
        /// The entry name.
        name: String,
        /// The method, as the zip library names it.
        method: String,
    },
    /// One entry is bigger than [`ExtractLimits::max_entry_bytes`].
    #[error("entry {name:?}: {which} size of {size} bytes is over the per-entry limit of {max}")]
    EntryTooLarge {
        /// The entry name.
        name: String,
        /// "declared" (header) or "actual" (bytes decompressed so far).
        which: &'static str,
        /// The size found.
        size: u64,
        /// The limit.
        max: u64,
    },
    /// All entries together are bigger than [`ExtractLimits::max_total_bytes`].
    #[error("entry {name:?}: {which} total of {total} bytes is over the archive limit of {max}")]
    TotalTooLarge {
        /// The entry that crossed the limit.
        name: String,
        /// "declared" (headers) or "actual" (bytes decompressed so far).
        which: &'static str,
        /// The running total.
        total: u64,
        /// The limit.
        max: u64,
    },
    /// The archive decompresses to far more than its size (a zip bomb).
    #[error(
        "entry {name:?}: {total} bytes decompressed from a {archive_bytes}-byte archive, over the limit of {max_ratio} bytes per archive byte (a zip bomb?)"
    )]
    RatioTooHigh {
        /// The entry that crossed the limit.
        name: String,
        /// Bytes decompressed so far.
        total: u64,
        /// Size of the whole archive.
        archive_bytes: u64,
        /// The limit.
        max_ratio: u64,
    },
    /// Something already on disk (or created earlier from the archive) is in the way.
    #[error("entry {name:?}: cannot create {path:?}: {reason}")]
    Conflict {
        /// The entry name.
        name: String,
        /// The path in the way.
        path: PathBuf,
        /// What is in the way.
        reason: &'static str,
    },
    /// The entry's data could not be decompressed or failed its CRC check.
    #[error("entry {name:?}: cannot decompress: {source}")]
    Corrupt {
        /// The entry name.
        name: String,
        /// The decoder's error.
        #[source]
        source: io::Error,
    },
}

fn io_err(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> ArchiveError {
    let path = path.to_path_buf();
    move |source| ArchiveError::Io { op, path, source }
}

fn zip_err(context: impl Into<String>) -> impl FnOnce(ZipError) -> ArchiveError {
    let context = context.into();
    move |source| ArchiveError::Zip { context, source }
}

// ---------------------------------------------------------------------------------------------
// Zipping
// ---------------------------------------------------------------------------------------------
