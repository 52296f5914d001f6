//! Project archives: a project tree as one tar stream compressed with zstd. This module owns
//! both directions: [`pack`] turns a directory into a deterministic archive (the same tree
//! always gives the same bytes, so the content-addressed store keeps it once), and [`unpack`]
//! extracts an archive that came from the network, treating every byte as hostile.
//!
//! # What an archive may hold
//! Directories, regular files, symlinks whose target stays inside the tree, and hard links to
//! an earlier regular file of the same archive. Entry names are relative UTF-8 paths without
//! `..`; GNU long names and PAX `path`/`linkpath` records are accepted and checked the same way.
//! Devices, FIFOs, sparse files and unknown entry types are refused. Modes keep the permission
//! bits only (setuid, setgid and sticky are dropped); ownership is never restored.
//!
//! # Bounds
//! [`UnpackLimits`] caps the entries created, the bytes of each file and of all files (declared
//! sizes are checked before a byte is written, and copies stop at the declared size), and the
//! zstd window (so decoder memory stays bounded), and the compression ratio: beyond the first
//! 64 MiB of file data, at most `max_ratio` (default 1000) bytes are written per compressed byte
//! read, so a few KiB of zstd can no longer make gigabytes of zeros on every unpack (highly
//! compressible projects stay legal below that). Everything else is bounded per entry: names
//! and link targets at 4 KiB, long-name and PAX records at 64 KiB, directories and links may
//! carry no data.
//!
//! # End of the archive
//! The tar stream must end with its end-of-archive marker (two zero blocks). Zero padding
//! after it (tar writers pad to a record size) is accepted up to 1 MiB; any other byte after
//! it, or after the zstd frames, is refused. The whole compressed stream is read to its end
//! before `unpack` succeeds, so a truncated or corrupt stream never yields a success.
//!
//! # Errors leave a partial tree
//! When [`unpack`] fails, `dest` may hold part of the archive: the caller deletes it. Nothing
//! is ever written outside `dest`, which must be private to the caller while unpacking runs.

mod entry_path;
mod pack;
mod unpack;

#[cfg(test)]
mod tests;

use std::io;
use std::path::PathBuf;

pub use pack::{DEFAULT_LEVEL, pack, pack_without};
pub use unpack::{RATIO_FREE_BYTES, UnpackLimits, UnpackSummary, unpack};

/// Why packing or unpacking a project archive failed.
#[derive(Debug, thiserror::Error)]
pub enum ProjectArchiveError {
    /// A file or directory of the project tree could not be read or added.
    #[error("cannot pack {path}: {source}")]
    Pack {
        /// The path in the project tree.
        path: PathBuf,
        /// What went wrong.
        #[source]
        source: io::Error,
    },
    /// Something in the project tree cannot go into an archive (it would be refused on unpack).
    #[error("cannot pack {path:?}: {reason}")]
    Unpackable {
        /// The path relative to the project root.
        path: String,
        /// Why it cannot be packed.
        reason: Refusal,
    },
    /// Writing the compressed archive failed.
    #[error("cannot write the project archive: {0}")]
    Write(#[source] io::Error),
    /// An entry of the archive is refused; nothing of it was written.
    #[error("project archive entry {entry:?} refused: {reason}")]
    Refused {
        /// The entry's name as found in the archive (lossy UTF-8).
        entry: String,
        /// Why it was refused.
        reason: Refusal,
    },
    /// The zstd stream or the tar structure is invalid or truncated.
    #[error("project archive is corrupt or truncated (after {after}): {source}")]
    Corrupt {
        /// The last entry read successfully, or "the start of the archive".
        after: String,
        /// The decoder's or parser's complaint.
        #[source]
        source: io::Error,
    },
    /// Bytes other than zero padding follow the end-of-archive marker.
    #[error("project archive has {what} after its end-of-archive marker")]
    TrailingData {
        /// What was found ("non-zero bytes", "more than 1048576 bytes of padding").
        what: String,
    },
    /// The unpack limits are unusable (the zstd decoder refused the window limit).
    #[error("invalid unpack limits: {0}")]
    Limits(#[source] io::Error),
    /// `dest` cannot be used: not a directory, not empty, or not creatable.
    #[error("cannot unpack into {path}: {reason}")]
    Destination {
        /// The destination given.
        path: PathBuf,
        /// Why it cannot be used.
        reason: String,
    },
    /// Creating something inside `dest` failed.
    #[error("cannot write {path} while unpacking: {source}")]
    WriteTree {
        /// The path being written.
        path: PathBuf,
        /// What went wrong.
        #[source]
        source: io::Error,
    },
}

/// Why one entry (or one file of the tree being packed) is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The name is empty, or only `.` for something that is not a directory.
    #[error("the name is empty")]
    EmptyName,
    /// The name starts with `/`.
    #[error("the name is absolute")]
    AbsolutePath,
    /// The name has a `..` component.
    #[error("the name has a `..` component")]
    ParentComponent,
    /// A NUL byte inside a name or link target (only possible through long-name records).
    #[error("the name contains a NUL byte")]
    NulByte,
    /// A name or link target longer than PATH_MAX.
    #[error("the name or link target is {len} bytes long, above the limit of {limit}")]
    NameTooLong {
        /// Its length.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// The names of all entries together are longer than allowed.
    #[error("the names of the archive's entries add up to more than {limit} bytes")]
    NamesTooLong {
        /// The limit.
        limit: u64,
    },
    /// A name or link target that is not UTF-8.
    #[error("the name is not valid UTF-8")]
    NotUtf8,
    /// A symlink with an empty target.
    #[error("the symlink target is empty")]
    EmptyLinkTarget,
    /// A symlink whose target starts with `/`.
    #[error("the symlink target {target:?} is absolute")]
    AbsoluteLinkTarget {
        /// The target.
        target: String,
    },
    /// A symlink whose `..` components climb above the project root.
    #[error("the symlink target {target:?} leaves the project")]
    LinkEscapes {
        /// The target.
        target: String,
    },
    /// A symlink with `..` after a named component (could leave through another symlink).
    #[error("the symlink target {target:?} has `..` after a name, which may leave the project")]
    LinkParentAfterName {
        /// The target.
        target: String,
    },
    /// The entry's path goes through a symlink created earlier by the archive.
    #[error("the path goes through the symlink {link:?}")]
    ThroughSymlink {
        /// The symlink's path.
        link: String,
    },
    /// A parent of the entry is a file or hard link, not a directory.
    #[error("the parent {parent:?} is not a directory")]
    ParentNotDirectory {
        /// The parent's path.
        parent: String,
    },
    /// The same path appears twice (entries are never replaced).
    #[error("the path appears more than once in the archive")]
    Duplicate,
    /// A hard link whose target is not an earlier regular file of the archive.
    #[error("the hard link target {target:?} is not an earlier regular file of the archive")]
    HardLinkTarget {
        /// The target as found in the archive.
        target: String,
    },
    /// A character device, block device or FIFO.
    #[error("{kind} entries are not allowed")]
    SpecialFile {
        /// "character device", "block device" or "FIFO".
        kind: &'static str,
    },
    /// A GNU sparse file (old format or PAX `GNU.sparse.*` records).
    #[error("sparse files are not supported")]
    Sparse,
    /// An entry type byte this format does not allow.
    #[error("unknown entry type {0:#04x}")]
    UnknownType(u8),
    /// A file whose declared size is above the per-file limit.
    #[error("its size {size} is above the limit of {limit} bytes per file")]
    EntryTooLarge {
        /// The declared size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// The files so far plus this one exceed the total limit.
    #[error("it brings the total size above the limit of {limit} bytes")]
    TotalTooLarge {
        /// The limit.
        limit: u64,
    },
    /// More entries (counting the parent directories the archive leaves implicit) than allowed.
    #[error("the archive has more than {limit} entries")]
    TooManyEntries {
        /// The limit.
        limit: u64,
    },
    /// The files decompress to far more than the compressed bytes read (a zstd bomb).
    #[error(
        "the files so far decompress to {written} bytes from {read} compressed bytes, above the limit of {limit} bytes per compressed byte (a zstd bomb?)"
    )]
    RatioTooHigh {
        /// File bytes written.
        written: u64,
        /// Compressed bytes read.
        read: u64,
        /// The limit ([`UnpackLimits::max_ratio`]).
        limit: u64,
    },
    /// A file whose data turned out longer than its declared size.
    #[error("its data is longer than the {declared} bytes declared")]
    LongerThanDeclared {
        /// The declared size.
        declared: u64,
    },
    /// A directory or link entry with a non-zero data size.
    #[error("a {kind} entry may not carry data ({size} bytes declared)")]
    DataOnNonFile {
        /// "directory", "symlink" or "hard link".
        kind: &'static str,
        /// The declared size.
        size: u64,
    },
    /// A long-name or PAX record larger than allowed.
    #[error("its {kind} record of {size} bytes is above the limit of {limit} bytes")]
    MetadataTooLarge {
        /// "GNU long name", "GNU long link", "PAX" or "global PAX".
        kind: &'static str,
        /// The declared size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// A PAX record that does not parse.
    #[error("malformed PAX record")]
    BadPax,
    /// A PAX `size` record that disagrees with the header (readers would disagree on layout).
    #[error("the PAX size {pax} differs from the header size {header}")]
    PaxSize {
        /// The PAX size.
        pax: u64,
        /// The header size.
        header: u64,
    },
    /// A global PAX header that sets a per-entry field.
    #[error("a global PAX header may not set {key:?}")]
    GlobalPaxKey {
        /// The key.
        key: String,
    },
    /// Two extension headers of the same kind before one entry.
    #[error("two {kind} records describe the same entry")]
    RepeatedExtension {
        /// The kind of record.
        kind: &'static str,
    },
    /// An extension header with no entry after it.
    #[error("extension records are not followed by an entry")]
    DanglingExtension,
    /// A header field that does not parse (mode, mtime).
    #[error("its {field} field is invalid")]
    BadField {
        /// The field.
        field: &'static str,
    },
    /// An mtime beyond year 9999.
    #[error("its mtime {0} is out of range")]
    MtimeOutOfRange(u64),
}
