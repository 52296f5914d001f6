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

/// Limits for extraction (bombs). Default: 100_000 entries, 8 GiB total uncompressed, 4 GiB per entry.
#[derive(Debug, Clone)]
pub struct ExtractLimits {
    /// Most entries (files, dirs, links) an archive may hold.
    pub max_entries: u64,
    /// Most decompressed bytes over all entries, declared or actual.
    pub max_total_bytes: u64,
    /// Most decompressed bytes in one entry, declared or actual.
    pub max_entry_bytes: u64,
}

impl Default for ExtractLimits {
    fn default() -> Self {
        Self {
            max_entries: 100_000,
            max_total_bytes: 8 << 30,
            max_entry_bytes: 4 << 30,
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

/// Zips `dir` (recursively, relative names, dirs with trailing '/', sorted for determinism) into `out`.
///
/// `level` is the deflate level 0..=9 (0 stores files uncompressed); `None` means the library
/// default, 6. Entries appear in pre-order with siblings sorted by byte order of their names.
/// Symlinks are stored as links (never followed; `dir` itself may be one), modes (rwx bits) and
/// mtimes are kept, FIFOs, sockets and devices are skipped. Directory and symlink entries are stored uncompressed. Files of 4 GiB or
/// more get Zip64 headers. Returns the writer after finishing the archive.
pub fn zip_dir<W: Write + Seek>(dir: &Path, out: W, level: Option<i64>) -> Result<W, ArchiveError> {
    if let Some(level) = level.filter(|l| !(0..=9).contains(l)) {
        return Err(ArchiveError::InvalidLevel { level });
    }
    let root = fs::metadata(dir).map_err(io_err("read metadata of", dir))?;
    if !root.is_dir() {
        return Err(ArchiveError::NotADirectory {
            path: dir.to_path_buf(),
        });
    }
    let mut zip = ZipWriter::new(out);
    // Reverse order so that popping yields the sorted order; pushing a directory's children
    // right after the directory itself gives pre-order.
    let mut stack = sorted_children(dir, "")?;
    stack.reverse();
    while let Some((path, name)) = stack.pop() {
        if let Some(mut children) = add_path(&mut zip, &path, &name, level)? {
            children.reverse();
            stack.append(&mut children);
        }
    }
    zip.finish().map_err(zip_err("finishing the archive"))
}

/// Lists `dir` as (full path, entry name) pairs sorted by name.
fn sorted_children(dir: &Path, prefix: &str) -> Result<Vec<(PathBuf, String)>, ArchiveError> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_err("list directory", dir))? {
        let entry = entry.map_err(io_err("list directory", dir))?;
        let path = entry.path();
        let Some(file_name) = entry.file_name().to_str().map(str::to_owned) else {
            return Err(ArchiveError::NonUtf8Path { path });
        };
        out.push((path, format!("{prefix}{file_name}")));
    }
    out.sort_by(|a, b| a.1.cmp(&b.1));
    Ok(out)
}

/// Adds one path; for a directory returns its children, still to be added.
fn add_path<W: Write + Seek>(
    zip: &mut ZipWriter<W>,
    path: &Path,
    name: &str,
    level: Option<i64>,
) -> Result<Option<Vec<(PathBuf, String)>>, ArchiveError> {
    let meta = fs::symlink_metadata(path).map_err(io_err("read metadata of", path))?;
    let kind = meta.file_type();
    if kind.is_symlink() {
        let target = fs::read_link(path).map_err(io_err("read symlink", path))?;
        let Some(target) = target.to_str() else {
            return Err(ArchiveError::NonUtf8Path { path: target });
        };
        let options = entry_options(&meta, None)?;
        zip.add_symlink(name, target, options)
            .map_err(zip_err(format!("adding symlink {name:?}")))?;
    } else if kind.is_dir() {
        let options = entry_options(&meta, None)?;
        zip.add_directory(format!("{name}/"), options)
            .map_err(zip_err(format!("adding directory {name:?}")))?;
        return sorted_children(path, &format!("{name}/")).map(Some);
    } else if kind.is_file() {
        add_file(zip, path, name, &meta, level)?;
    }
    // FIFOs, sockets and devices are skipped: opening a FIFO would block, and the others have
    // no content to carry.
    Ok(None)
}

fn add_file<W: Write + Seek>(
    zip: &mut ZipWriter<W>,
    path: &Path,
    name: &str,
    meta: &Metadata,
    level: Option<i64>,
) -> Result<(), ArchiveError> {
    let mut file = File::open(path).map_err(io_err("open", path))?;
    let opened = file.metadata().map_err(io_err("read metadata of", path))?;
    // A swap between lstat and open could make us read something else (a FIFO blocks forever
    // at open, but a link to a file outside the tree would silently leak it).
    if !opened.is_file() || opened.ino() != meta.ino() || opened.dev() != meta.dev() {
        return Err(ArchiveError::Io {
            op: "zip",
            path: path.to_path_buf(),
            source: io::Error::other("the file was replaced while being zipped"),
        });
    }
    // The deflate encoder knows levels 1..=9 only; level 0 means "store", as in zlib.
    let options = match level {
        Some(0) => entry_options(&opened, None)?.compression_method(CompressionMethod::Stored),
        _ => entry_options(&opened, level)?.compression_method(CompressionMethod::Deflated),
    }
    .large_file(opened.len() >= u64::from(u32::MAX));
    zip.start_file(name, options)
        .map_err(zip_err(format!("starting file {name:?}")))?;
    io::copy(&mut file, zip).map_err(io_err("zip the content of", path))?;
    Ok(())
}

/// Options shared by all entry kinds: rwx bits, DOS time and the extended timestamp.
fn entry_options(
    meta: &Metadata,
    level: Option<i64>,
) -> Result<FullFileOptions<'static>, ArchiveError> {
    let secs = meta.mtime();
    let mut options = FullFileOptions::default()
        .compression_level(level)
        .unix_permissions(meta.mode() & PERM_BITS)
        .last_modified_time(dos_time(secs));
    if let Ok(secs) = u32::try_from(secs) {
        let mut field = vec![1u8];
        field.extend_from_slice(&secs.to_le_bytes());
        options
            .add_extra_data(EXTENDED_TIMESTAMP_ID, field.into_boxed_slice(), false)
            .map_err(zip_err("adding the extended timestamp field"))?;
    }
    Ok(options)
}

/// Unix seconds to a DOS timestamp (UTC), clamped to the 1980..=2107 range DOS can express.
fn dos_time(secs: i64) -> DateTime {
    let secs = secs.clamp(DOS_EPOCH_SECS, DOS_MAX_SECS);
    let (year, month, day) = civil_from_days(secs.div_euclid(86_400));
    let tod = secs.rem_euclid(86_400);
    let fields = (
        u16::try_from(year),
        u8::try_from(month),
        u8::try_from(day),
        u8::try_from(tod / 3600),
        u8::try_from(tod / 60 % 60),
        u8::try_from(tod % 60),
    );
    match fields {
        (Ok(y), Ok(mo), Ok(d), Ok(h), Ok(mi), Ok(s)) => {
            DateTime::from_date_and_time(y, mo, d, h, mi, s).unwrap_or_default()
        }
        _ => DateTime::default(),
    }
}

/// DOS timestamp (taken as UTC) to unix seconds.
fn dos_to_unix(dt: DateTime) -> i64 {
    let days = days_from_civil(i64::from(dt.year()), dt.month().into(), dt.day().into());
    days * 86_400
        + i64::from(dt.hour()) * 3600
        + i64::from(dt.minute()) * 60
        + i64::from(dt.second())
}

/// Days since 1970-01-01 of a proleptic Gregorian date (eras of 400 years, years starting in March).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year.rem_euclid(400);
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// Inverse of [`days_from_civil`]: (year, month, day).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let shifted = days + 719_468;
    let era = shifted.div_euclid(146_097);
    let day_of_era = shifted.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

// ---------------------------------------------------------------------------------------------
// Extraction
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    File,
    Dir,
    Symlink,
}

/// One validated entry, ready to be materialized.
#[derive(Debug)]
struct Planned {
    index: usize,
    name: String,
    /// Relative path made only of normal components; empty for the root itself.
    rel: PathBuf,
    kind: Kind,
    perm: u32,
    mtime: Option<SystemTime>,
}

/// Final mode and mtime of a directory this extraction created.
#[derive(Debug, Clone, Copy)]
struct DirFixup {
    perm: u32,
    mtime: Option<SystemTime>,
}

/// Extracts into `dest` (created if missing) safely.
///
/// Every entry is validated (names, types, declared sizes, counts) before anything is written.
/// Then entries are written in archive order: existing directories are left alone, an existing
/// file, symlink or special file at an entry's own path is removed and replaced (so nothing is
/// ever written through it), and any path whose parent chain contains a symlink is refused.
/// Directories get their final mode and mtime after all their content is written. Symlink
/// mtimes are not restored (std cannot set them without following the link). On error the
/// partially written entry is removed; entries completed before it stay. The checks are
/// path-based (lstat, then create), so they assume nobody else writes into `dest` meanwhile.
pub fn extract_zip<R: Read + Seek>(
    input: R,
    dest: &Path,
    limits: &ExtractLimits,
) -> Result<ExtractSummary, ArchiveError> {
    let mut archive = ZipArchive::new(input).map_err(zip_err("reading the central directory"))?;
    let plan = plan_entries(&mut archive, limits)?;
    fs::create_dir_all(dest).map_err(io_err("create directory", dest))?;
    let mut extractor = Extractor {
        dest,
        limits,
        summary: ExtractSummary::default(),
        created_dirs: HashMap::new(),
    };
    for entry in &plan {
        let mut file = archive
            .by_index(entry.index)
            .map_err(zip_err(format!("opening entry {:?}", entry.name)))?;
        extractor.extract_entry(entry, &mut file)?;
    }
    extractor.finish_dirs()?;
    Ok(extractor.summary)
}

/// Validates every entry and the declared sizes before anything touches the disk.
fn plan_entries<R: Read + Seek>(
    archive: &mut ZipArchive<R>,
    limits: &ExtractLimits,
) -> Result<Vec<Planned>, ArchiveError> {
    let count = archive.len() as u64;
    if count > limits.max_entries {
        return Err(ArchiveError::TooManyEntries {
            count,
            max: limits.max_entries,
        });
    }
    let mut declared_total = 0u64;
    let mut plan = Vec::with_capacity(archive.len());
    for index in 0..archive.len() {
        let file = archive
            .by_index_raw(index)
            .map_err(zip_err(format!("reading the header of entry #{index}")))?;
        let planned = plan_entry(index, &file)?;
        let size = file.size();
        if size > limits.max_entry_bytes {
            return Err(ArchiveError::EntryTooLarge {
                name: planned.name,
                which: "declared",
                size,
                max: limits.max_entry_bytes,
            });
        }
        declared_total = declared_total.saturating_add(size);
        if declared_total > limits.max_total_bytes {
            return Err(ArchiveError::TotalTooLarge {
                name: planned.name,
                which: "declared",
                total: declared_total,
                max: limits.max_total_bytes,
            });
        }
        plan.push(planned);
    }
    Ok(plan)
}

fn plan_entry<R: Read>(index: usize, file: &ZipFile<'_, R>) -> Result<Planned, ArchiveError> {
    let name = file.name().to_owned();
    if file.name_raw().contains(&0) {
        return Err(ArchiveError::UnsafeName {
            index,
            name,
            reason: "contains a NUL byte",
        });
    }
    let (rel, trailing_slash) = safe_relative_path(index, &name)?;
    let (kind, perm) = classify(&name, file.unix_mode(), trailing_slash)?;
    if rel.as_os_str().is_empty() && kind != Kind::Dir {
        return Err(ArchiveError::UnsafeName {
            index,
            name,
            reason: "names the destination itself",
        });
    }
    if file.encrypted() {
        return Err(ArchiveError::Encrypted { name });
    }
    let method = file.compression();
    if !matches!(
        method,
        CompressionMethod::Stored | CompressionMethod::Deflated
    ) {
        return Err(ArchiveError::UnsupportedCompression {
            name,
            method: method.to_string(),
        });
    }
    Ok(Planned {
        index,
        name,
        rel,
        kind,
        perm,
        mtime: entry_mtime(file),
    })
}

/// Turns an entry name into a relative path of normal components, plus whether it ended in '/'.
fn safe_relative_path(index: usize, name: &str) -> Result<(PathBuf, bool), ArchiveError> {
    let refuse = |reason| ArchiveError::UnsafeName {
        index,
        name: name.to_owned(),
        reason,
    };
    if name.is_empty() {
        return Err(refuse("empty name"));
    }
    if name.contains('\0') {
        return Err(refuse("contains a NUL byte"));
    }
    // Windows tools treat '\' as a separator, so "..\\x" would climb there; refuse it everywhere.
    if name.contains('\\') {
        return Err(refuse("contains a backslash"));
    }
    if name.starts_with('/') {
        return Err(refuse("absolute path"));
    }
    let mut rel = PathBuf::new();
    for part in name.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err(refuse("contains a '..' component")),
            normal => rel.push(normal),
        }
    }
    Ok((rel, name.ends_with('/')))
}

/// Decides the entry kind and its permission bits from the stored unix mode.
fn classify(
    name: &str,
    mode: Option<u32>,
    trailing_slash: bool,
) -> Result<(Kind, u32), ArchiveError> {
    let by_name = if trailing_slash {
        Kind::Dir
    } else {
        Kind::File
    };
    let Some(mode) = mode.filter(|m| *m != 0) else {
        let perm = if trailing_slash {
            DEFAULT_DIR_MODE
        } else {
            DEFAULT_FILE_MODE
        };
        return Ok((by_name, perm));
    };
    let special = |kind| ArchiveError::SpecialFile {
        name: name.to_owned(),
        mode,
        kind,
    };
    let kind = match mode & S_IFMT {
        0 => by_name,
        S_IFDIR => Kind::Dir,
        S_IFREG => Kind::File,
        S_IFLNK => Kind::Symlink,
        S_IFIFO => return Err(special("FIFO")),
        S_IFCHR => return Err(special("character device")),
        S_IFBLK => return Err(special("block device")),
        S_IFSOCK => return Err(special("socket")),
        _ => {
            return Err(ArchiveError::UnknownFileType {
                name: name.to_owned(),
                mode,
            });
        }
    };
    if trailing_slash && kind != Kind::Dir {
        return Err(ArchiveError::InconsistentType {
            name: name.to_owned(),
            mode,
        });
    }
    Ok((kind, mode & PERM_BITS))
}

/// The entry mtime: the extended timestamp when present (whole seconds), else the DOS field.
fn entry_mtime<R: Read>(file: &ZipFile<'_, R>) -> Option<SystemTime> {
    let extended = file.extra_data_fields().find_map(|field| match field {
        ExtraField::ExtendedTimestamp(ts) => ts.mod_time(),
        _ => None,
    });
    let secs = match extended {
        Some(secs) => i64::from(secs),
        None => dos_to_unix(file.last_modified()?),
    };
    let offset = Duration::from_secs(secs.unsigned_abs());
    if secs >= 0 {
        UNIX_EPOCH.checked_add(offset)
    } else {
        UNIX_EPOCH.checked_sub(offset)
    }
}

/// Checks a symlink target lexically. `depth` is how many directories the link sits below `dest`.
///
/// `..` is accepted only before the first named component: after a named component it could
/// climb out of a directory reached through another link (`r -> sub/q/..` with `sub/q -> ..`
/// looks harmless lexically but lands above `dest`).
fn check_link_target(target: &[u8], depth: usize) -> Result<(), &'static str> {
    if target.is_empty() {
        return Err("empty target");
    }
    if target.contains(&0) {
        return Err("contains a NUL byte");
    }
    if target.starts_with(b"/") {
        return Err("absolute target");
    }
    let mut ups = 0usize;
    let mut named = false;
    for part in target.split(|b| *b == b'/') {
        match part {
            b"" | b"." => {}
            b".." if named => return Err("'..' after a named component"),
            b".." => {
                ups += 1;
                if ups > depth {
                    return Err("resolves outside the destination");
                }
            }
            _ => named = true,
        }
    }
    Ok(())
}

struct Extractor<'a> {
    dest: &'a Path,
    limits: &'a ExtractLimits,
    summary: ExtractSummary,
    /// Directories created by this extraction; pre-existing ones are never chmod-ed or touched.
    created_dirs: HashMap<PathBuf, DirFixup>,
}

impl Extractor<'_> {
    fn extract_entry<R: Read>(
        &mut self,
        entry: &Planned,
        file: &mut ZipFile<'_, R>,
    ) -> Result<(), ArchiveError> {
        match entry.kind {
            Kind::Dir => self.make_dir(entry)?,
            Kind::File => self.write_file(entry, file)?,
            Kind::Symlink => self.make_symlink(entry, file)?,
        }
        self.summary.entries += 1;
        Ok(())
    }

    /// Creates (or checks) every parent of the entry and returns the entry's full path.
    fn prepare_parents(&mut self, entry: &Planned) -> Result<PathBuf, ArchiveError> {
        let mut path = self.dest.to_path_buf();
        let mut parts = entry.rel.iter().peekable();
        while let Some(part) = parts.next() {
            path.push(part);
            if parts.peek().is_some() {
                self.ensure_parent_dir(entry, &path)?;
            }
        }
        Ok(path)
    }

    fn ensure_parent_dir(&mut self, entry: &Planned, path: &Path) -> Result<(), ArchiveError> {
        match fs::symlink_metadata(path) {
            Ok(meta) if meta.file_type().is_symlink() => Err(ArchiveError::ThroughSymlink {
                name: entry.name.clone(),
                link: path.to_path_buf(),
            }),
            Ok(meta) if meta.is_dir() => Ok(()),
            Ok(_) => Err(ArchiveError::Conflict {
                name: entry.name.clone(),
                path: path.to_path_buf(),
                reason: "a parent path exists and is not a directory",
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.create_dir(path)?;
                let implicit = DirFixup {
                    perm: DEFAULT_DIR_MODE,
                    mtime: None,
                };
                self.created_dirs.insert(path.to_path_buf(), implicit);
                Ok(())
            }
            Err(e) => Err(io_err("read metadata of", path)(e)),
        }
    }

    fn create_dir(&self, path: &Path) -> Result<(), ArchiveError> {
        DirBuilder::new()
            .mode(BUILD_DIR_MODE)
            .create(path)
            .map_err(io_err("create directory", path))
    }

    /// Returns the entry's path with nothing but a directory (refused) left in the way.
    fn prepare_leaf(&mut self, entry: &Planned) -> Result<PathBuf, ArchiveError> {
        let path = self.prepare_parents(entry)?;
        match fs::symlink_metadata(&path) {
            Ok(meta) if meta.is_dir() => Err(ArchiveError::Conflict {
                name: entry.name.clone(),
                path,
                reason: "a directory is in the way",
            }),
            // Unlinking (rather than truncating) also keeps us from writing into a hard link
            // or through a symlink that was already there.
            Ok(_) => {
                fs::remove_file(&path).map_err(io_err("remove", &path))?;
                Ok(path)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(path),
            Err(e) => Err(io_err("read metadata of", &path)(e)),
        }
    }

    fn make_dir(&mut self, entry: &Planned) -> Result<(), ArchiveError> {
        if entry.rel.as_os_str().is_empty() {
            return Ok(());
        }
        let path = self.prepare_parents(entry)?;
        let fixup = DirFixup {
            perm: entry.perm,
            mtime: entry.mtime,
        };
        match fs::symlink_metadata(&path) {
            Ok(meta) if meta.file_type().is_symlink() => Err(ArchiveError::ThroughSymlink {
                name: entry.name.clone(),
                link: path,
            }),
            Ok(meta) if meta.is_dir() => {
                if let Some(existing) = self.created_dirs.get_mut(&path) {
                    *existing = fixup;
                }
                Ok(())
            }
            Ok(_) => Err(ArchiveError::Conflict {
                name: entry.name.clone(),
                path,
                reason: "a non-directory is in the way",
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.create_dir(&path)?;
                self.created_dirs.insert(path, fixup);
                Ok(())
            }
            Err(e) => Err(io_err("read metadata of", &path)(e)),
        }
    }

    fn write_file<R: Read>(
        &mut self,
        entry: &Planned,
        file: &mut ZipFile<'_, R>,
    ) -> Result<(), ArchiveError> {
        let path = self.prepare_leaf(entry)?;
        // create_new refuses to follow a symlink planted at the final component.
        let mut out = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(io_err("create", &path))?;
        let result = self
            .copy_limited(entry, file, &mut out, &path)
            .and_then(|()| finish_file(entry, &out, &path));
        if result.is_err() {
            drop(out);
            // Best effort: the error being returned matters more than a failed cleanup.
            let _ = fs::remove_file(&path);
        }
        result
    }

    /// Copies the entry, counting the bytes really produced against the limits.
    fn copy_limited(
        &mut self,
        entry: &Planned,
        input: &mut impl Read,
        out: &mut impl Write,
        path: &Path,
    ) -> Result<(), ArchiveError> {
        let mut buf = vec![0u8; COPY_BUF];
        let mut written = 0u64;
        loop {
            let n = match input.read(&mut buf) {
                Ok(0) => return Ok(()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => {
                    return Err(ArchiveError::Corrupt {
                        name: entry.name.clone(),
                        source,
                    });
                }
            };
            written = written.saturating_add(n as u64);
            self.count(entry, written, n as u64)?;
            out.write_all(&buf[..n]).map_err(io_err("write", path))?;
        }
    }

    /// Adds `n` fresh bytes to the totals; `entry_bytes` is the entry's running size.
    fn count(&mut self, entry: &Planned, entry_bytes: u64, n: u64) -> Result<(), ArchiveError> {
        if entry_bytes > self.limits.max_entry_bytes {
            return Err(ArchiveError::EntryTooLarge {
                name: entry.name.clone(),
                which: "actual",
                size: entry_bytes,
                max: self.limits.max_entry_bytes,
            });
        }
        self.summary.bytes = self.summary.bytes.saturating_add(n);
        if self.summary.bytes > self.limits.max_total_bytes {
            return Err(ArchiveError::TotalTooLarge {
                name: entry.name.clone(),
                which: "actual",
                total: self.summary.bytes,
                max: self.limits.max_total_bytes,
            });
        }
        Ok(())
    }

    fn make_symlink<R: Read>(
        &mut self,
        entry: &Planned,
        file: &mut ZipFile<'_, R>,
    ) -> Result<(), ArchiveError> {
        let mut target = Vec::new();
        file.by_ref()
            .take(MAX_LINK_TARGET + 1)
            .read_to_end(&mut target)
            .map_err(|source| ArchiveError::Corrupt {
                name: entry.name.clone(),
                source,
            })?;
        if target.len() as u64 > MAX_LINK_TARGET {
            return Err(ArchiveError::LinkTargetTooLong {
                name: entry.name.clone(),
                max: MAX_LINK_TARGET,
            });
        }
        self.count(entry, target.len() as u64, target.len() as u64)?;
        let depth = entry.rel.iter().count().saturating_sub(1);
        check_link_target(&target, depth).map_err(|reason| ArchiveError::UnsafeLinkTarget {
            name: entry.name.clone(),
            target: String::from_utf8_lossy(&target).into_owned(),
            reason,
        })?;
        let path = self.prepare_leaf(entry)?;
        std::os::unix::fs::symlink(OsStr::from_bytes(&target), &path)
            .map_err(io_err("create symlink", &path))
    }

    /// Applies directory modes and mtimes deepest first, after all content is in place.
    fn finish_dirs(&mut self) -> Result<(), ArchiveError> {
        let mut dirs: Vec<_> = self.created_dirs.drain().collect();
        dirs.sort_by_key(|(path, _)| std::cmp::Reverse(path.components().count()));
        for (path, fixup) in dirs {
            let meta = fs::symlink_metadata(&path).map_err(io_err("read metadata of", &path))?;
            if !meta.is_dir() {
                return Err(ArchiveError::Io {
                    op: "restore the mode of",
                    path,
                    source: io::Error::other("it is no longer a directory"),
                });
            }
            let dir = File::open(&path).map_err(io_err("open", &path))?;
            if let Some(mtime) = fixup.mtime {
                dir.set_modified(mtime)
                    .map_err(io_err("set the mtime of", &path))?;
            }
            dir.set_permissions(Permissions::from_mode(fixup.perm))
                .map_err(io_err("set the mode of", &path))?;
        }
        Ok(())
    }
}

/// Sets mtime then mode through the open handle, so a read-only mode cannot get in the way.
fn finish_file(entry: &Planned, out: &File, path: &Path) -> Result<(), ArchiveError> {
    if let Some(mtime) = entry.mtime {
        out.set_modified(mtime)
            .map_err(io_err("set the mtime of", path))?;
    }
    out.set_permissions(Permissions::from_mode(entry.perm))
        .map_err(io_err("set the mode of", path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;
    use std::os::unix::fs::symlink;
    use std::os::unix::net::UnixListener;

    /// `ansible-runner transmit` 2.4.3 output, line 3 (the private data dir zip, 642 bytes).
    const TRANSMIT_SAMPLE_B64: &str = "UEsDBBQAAAAAALWce10AAAAAAAAAAAAAAAAIAAAAcHJvamVjdC9QSwMEFAAAAAAAtZx7XQAAAAAAAAAAAAAAAAoAAABpbnZlbnRvcnkvUEsDBBQAAAAIALWce10qK91ZigAAAO8AAAAQAAAAcHJvamVjdC9wbGF5LnltbF2NwQ7CMAxD73yFtfv4gPwMCl3WTrSN1GRI/D3dKAe4Oc+OPSOpuRGyBs6HvgBBa5Xgm9bBO4vsSdpt5XCkV84mnTrbw6gLYEblIgTjF5LkrCcFFrnvkcYBFIuE6QxgbVrQ9j7Wpp+OziAhfSuClsJ1oZMhbQM3iZu5NILuPv7/1p78ca/myxF6A1BLAwQUAAAACAC1nHtdM8Ood1AAAABkAAAADwAAAGludmVudG9yeS9ob3N0cz2KQQrAIAwE776iP8gLfEkpRUNAqd2IBqG/r1joZWdgdi/KoRxuIWm3LaDnWORkBYQtK/yKf6iPJcWZYdJqk7me7K4kGJyELxrTKGbQ93QvUEsBAhQDFAAAAAAAtZx7XQAAAAAAAAAAAAAAAAgAAAAAAAAAAAAQAO1BAAAAAHByb2plY3QvUEsBAhQDFAAAAAAAtZx7XQAAAAAAAAAAAAAAAAoAAAAAAAAAAAAQAO1BJgAAAGludmVudG9yeS9QSwECFAMUAAAACAC1nHtdKivdWYoAAADvAAAAEAAAAAAAAAAAAAAApIFOAAAAcHJvamVjdC9wbGF5LnltbFBLAQIUAxQAAAAIALWce10zw6h3UAAAAGQAAAAPAAAAAAAAAAAAAACkgQYBAABpbnZlbnRvcnkvaG9zdHNQSwUGAAAAAAQABADpAAAAgwEAAAAA";

    /// 2001-02-03T04:05:07Z: an odd second, which the DOS field alone would lose.
    const OLD_MTIME: i64 = 981_173_107;
    /// 2002-03-04T05:06:09Z.
    const DIR_MTIME: i64 = 1_015_218_369;

    fn at(secs: i64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs.unsigned_abs())
    }

    fn mode_of(path: &Path) -> u32 {
        fs::symlink_metadata(path).unwrap().mode() & 0o7777
    }

    fn mtime_of(path: &Path) -> i64 {
        fs::symlink_metadata(path).unwrap().mtime()
    }

    fn set_mtime(path: &Path, secs: i64) {
        File::open(path).unwrap().set_modified(at(secs)).unwrap();
    }

    fn write_mode(path: &Path, data: &[u8], mode: u32) {
        fs::write(path, data).unwrap();
        fs::set_permissions(path, Permissions::from_mode(mode)).unwrap();
    }

    fn all_bytes() -> Vec<u8> {
        (0..=255u8).collect()
    }

    /// Builds the round-trip source tree; returns the socket listener so it stays bound.
    fn build_tree(src: &Path) -> UnixListener {
        fs::create_dir_all(src.join("a/b/c")).unwrap();
        fs::create_dir_all(src.join("bin")).unwrap();
        fs::create_dir_all(src.join("emptydir")).unwrap();
        fs::write(src.join("a/b/c/deep.txt"), b"deep\n").unwrap();
        write_mode(&src.join("bin/run.sh"), b"#!/bin/sh\necho hi\n", 0o755);
        write_mode(&src.join("ro.txt"), b"read only\n", 0o444);
        fs::write(src.join("bin.dat"), all_bytes()).unwrap();
        fs::write(src.join("empty.txt"), b"").unwrap();
        fs::write(src.join("old.txt"), b"old\n").unwrap();
        set_mtime(&src.join("old.txt"), OLD_MTIME);
        symlink("a/b/c/deep.txt", src.join("link_rel")).unwrap();
        symlink("../../ro.txt", src.join("a/b/link_up")).unwrap();
        symlink("a/b", src.join("linkdir")).unwrap();
        let listener = UnixListener::bind(src.join("sock")).unwrap();
        // Last, so that creating children does not bump it again.
        set_mtime(&src.join("a/b"), DIR_MTIME);
        listener
    }

    fn zip_to_vec(dir: &Path) -> Vec<u8> {
        zip_dir(dir, Cursor::new(Vec::new()), None)
            .unwrap()
            .into_inner()
    }

    fn entry_modes(zip: &[u8]) -> Vec<(String, Option<u32>)> {
        let mut archive = ZipArchive::new(Cursor::new(zip)).unwrap();
        (0..archive.len())
            .map(|i| {
                let f = archive.by_index(i).unwrap();
                (f.name().to_owned(), f.unix_mode())
            })
            .collect()
    }

    #[test]
    fn zip_dir_lists_sorted_entries_with_unix_modes_and_skips_sockets() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        let _listener = build_tree(&src);
        let zip = zip_to_vec(&src);
        let expected: Vec<(String, Option<u32>)> = [
            ("a/", 0o40755),
            ("a/b/", 0o40755),
            ("a/b/c/", 0o40755),
            ("a/b/c/deep.txt", 0o100644),
            ("a/b/link_up", 0o120777),
            ("bin/", 0o40755),
            ("bin/run.sh", 0o100755),
            ("bin.dat", 0o100644),
            ("empty.txt", 0o100644),
            ("emptydir/", 0o40755),
            ("link_rel", 0o120777),
            ("linkdir", 0o120777),
            ("old.txt", 0o100644),
            ("ro.txt", 0o100444),
        ]
        .iter()
        .map(|(n, m)| (n.to_string(), Some(*m)))
        .collect();
        assert_eq!(entry_modes(&zip), expected);
        // Deterministic: same tree, same bytes.
        assert_eq!(zip, zip_to_vec(&src));
    }

    #[test]
    fn round_trip_keeps_content_modes_links_and_mtimes() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        let _listener = build_tree(&src);
        let zip = zip_to_vec(&src);
        let dest = tmp.path().join("out/nested");
        let summary = extract_zip(Cursor::new(&zip), &dest, &ExtractLimits::default()).unwrap();
        assert_eq!(summary.entries, 14);
        let link_bytes = "a/b/c/deep.txt".len() + "../../ro.txt".len() + "a/b".len();
        let file_bytes = 5 + 18 + 10 + 256 + 4;
        assert_eq!(summary.bytes, (link_bytes + file_bytes) as u64);

        assert_eq!(fs::read(dest.join("a/b/c/deep.txt")).unwrap(), b"deep\n");
        assert_eq!(fs::read(dest.join("bin.dat")).unwrap(), all_bytes());
        assert_eq!(fs::read(dest.join("empty.txt")).unwrap(), b"");
        assert_eq!(mode_of(&dest.join("bin/run.sh")), 0o755);
        assert_eq!(mode_of(&dest.join("ro.txt")), 0o444);
        assert_eq!(mode_of(&dest.join("bin.dat")), 0o644);
        assert_eq!(mode_of(&dest.join("a/b")), 0o755);
        assert!(
            fs::read_dir(dest.join("emptydir"))
                .unwrap()
                .next()
                .is_none()
        );
        assert!(!dest.join("sock").exists());

        assert_eq!(
            fs::read_link(dest.join("link_rel")).unwrap(),
            Path::new("a/b/c/deep.txt")
        );
        assert_eq!(
            fs::read_link(dest.join("a/b/link_up")).unwrap(),
            Path::new("../../ro.txt")
        );
        assert_eq!(
            fs::read_link(dest.join("linkdir")).unwrap(),
            Path::new("a/b")
        );
        assert_eq!(
            fs::read(dest.join("linkdir/c/deep.txt")).unwrap(),
            b"deep\n"
        );
        assert_eq!(fs::read(dest.join("a/b/link_up")).unwrap(), b"read only\n");

        assert_eq!(mtime_of(&dest.join("old.txt")), OLD_MTIME);
        assert_eq!(mtime_of(&dest.join("a/b")), DIR_MTIME);
        assert_eq!(
            mtime_of(&dest.join("bin/run.sh")),
            mtime_of(&src.join("bin/run.sh"))
        );
    }

    #[test]
    fn dos_field_alone_gives_two_second_precision_in_utc() {
        // Without the extended timestamp only the DOS field is left: UTC, even seconds.
        let tmp = tempfile::tempdir().unwrap();
        let data = raw_zip(&[Raw {
            date: (21 << 9) | (2 << 5) | 3,
            time: (4 << 11) | (5 << 5) | 3,
            ..Raw::file("f", b"x")
        }]);
        extract_zip(Cursor::new(data), tmp.path(), &ExtractLimits::default()).unwrap();
        assert_eq!(mtime_of(&tmp.path().join("f")), OLD_MTIME - 1);
    }

    #[test]
    fn transmit_sample_from_ansible_runner_extracts() {
        use base64::Engine as _;
        let zip = base64::engine::general_purpose::STANDARD
            .decode(TRANSMIT_SAMPLE_B64)
            .unwrap();
        assert_eq!(zip.len(), 642);
        let tmp = tempfile::tempdir().unwrap();
        let summary = extract_zip(Cursor::new(zip), tmp.path(), &ExtractLimits::default()).unwrap();
        assert_eq!(summary.entries, 4);
        let play = fs::read_to_string(tmp.path().join("project/play.yml")).unwrap();
        assert!(play.starts_with("- hosts: localhost\n"), "{play}");
        let hosts = fs::read_to_string(tmp.path().join("inventory/hosts")).unwrap();
        assert!(hosts.starts_with("[local]\n"), "{hosts}");
        assert_eq!(mode_of(&tmp.path().join("project/play.yml")), 0o644);
        assert_eq!(mode_of(&tmp.path().join("inventory/hosts")), 0o644);
        assert_eq!(mode_of(&tmp.path().join("project")), 0o755);
        // DOS time 2026-11-27 19:37:42, read as UTC.
        let expected = days_from_civil(2026, 11, 27) * 86_400 + 19 * 3600 + 37 * 60 + 42;
        assert_eq!(mtime_of(&tmp.path().join("project/play.yml")), expected);
    }

    #[test]
    fn zip_dir_rejects_bad_level_and_non_directories() {
        let tmp = tempfile::tempdir().unwrap();
        let err = zip_dir(tmp.path(), Cursor::new(Vec::new()), Some(10)).unwrap_err();
        assert!(
            matches!(err, ArchiveError::InvalidLevel { level: 10 }),
            "{err}"
        );
        let file = tmp.path().join("f");
        fs::write(&file, b"x").unwrap();
        let err = zip_dir(&file, Cursor::new(Vec::new()), None).unwrap_err();
        assert!(matches!(err, ArchiveError::NotADirectory { .. }), "{err}");
        let err = zip_dir(&tmp.path().join("missing"), Cursor::new(Vec::new()), None).unwrap_err();
        assert!(matches!(err, ArchiveError::Io { .. }), "{err}");
    }

    #[test]
    fn zip_dir_level_zero_and_nine_round_trip() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("src");
        fs::create_dir(&src).unwrap();
        fs::write(src.join("z"), vec![b'a'; 10_000]).unwrap();
        for (level, method) in [
            (0, CompressionMethod::Stored),
            (9, CompressionMethod::Deflated),
        ] {
            let zip = zip_dir(&src, Cursor::new(Vec::new()), Some(level))
                .unwrap()
                .into_inner();
            let mut archive = ZipArchive::new(Cursor::new(&zip)).unwrap();
            assert_eq!(archive.by_index(0).unwrap().compression(), method);
            let dest = tmp.path().join(format!("out{level}"));
            extract_zip(Cursor::new(zip), &dest, &ExtractLimits::default()).unwrap();
            assert_eq!(fs::read(dest.join("z")).unwrap(), vec![b'a'; 10_000]);
        }
    }

    #[test]
    fn civil_date_conversions() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(1980, 1, 1) * 86_400, DOS_EPOCH_SECS);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        for days in [-800_000, -1, 0, 59, 10_957, 50_000, 200_000] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        let dt = dos_time(OLD_MTIME);
        assert_eq!((dt.year(), dt.month(), dt.day()), (2001, 2, 3));
        assert_eq!((dt.hour(), dt.minute(), dt.second()), (4, 5, 6));
        assert_eq!(dos_to_unix(dos_time(0)), DOS_EPOCH_SECS);
        assert_eq!(dos_to_unix(dos_time(i64::MAX)), DOS_MAX_SECS);
    }

    // ---- hand-built archives -------------------------------------------------------------

    /// One entry of a hand-written zip; every field can lie.
    struct Raw {
        name: Vec<u8>,
        /// Full `external_attr` (unix mode in the high 16 bits).
        attr: u32,
        data: Vec<u8>,
        /// Uncompressed size to declare; defaults to the real length.
        declared: Option<u32>,
        method: u16,
        flags: u16,
        crc: Option<u32>,
        date: u16,
        time: u16,
    }

    impl Raw {
        fn new(name: &[u8], mode: u32, data: &[u8]) -> Self {
            Raw {
                name: name.to_vec(),
                attr: mode << 16,
                data: data.to_vec(),
                declared: None,
                method: 0,
                flags: 0,
                crc: None,
                date: (1 << 5) | 1,
                time: 0,
            }
        }
        fn file(name: &str, data: &[u8]) -> Self {
            Self::new(name.as_bytes(), 0o100644, data)
        }
        fn dir(name: &str, mode: u32) -> Self {
            Self::new(name.as_bytes(), 0o40000 | mode, b"")
        }
        fn link(name: &str, target: &str) -> Self {
            Self::new(name.as_bytes(), 0o120777, target.as_bytes())
        }
    }

    fn crc32(data: &[u8]) -> u32 {
        let mut crc = !0u32;
        for &byte in data {
            crc ^= u32::from(byte);
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }

    fn raw_zip(entries: &[Raw]) -> Vec<u8> {
        fn u16le(v: &mut Vec<u8>, x: u16) {
            v.extend_from_slice(&x.to_le_bytes());
        }
        fn u32le(v: &mut Vec<u8>, x: u32) {
            v.extend_from_slice(&x.to_le_bytes());
        }
        let mut out = Vec::new();
        let mut central = Vec::new();
        for e in entries {
            let offset = out.len() as u32;
            let crc = e.crc.unwrap_or_else(|| crc32(&e.data));
            let csize = e.data.len() as u32;
            let usize = e.declared.unwrap_or(csize);
            let common = |v: &mut Vec<u8>| {
                u16le(v, 20);
                u16le(v, e.flags);
                u16le(v, e.method);
                u16le(v, e.time);
                u16le(v, e.date);
                u32le(v, crc);
                u32le(v, csize);
                u32le(v, usize);
                u16le(v, e.name.len() as u16);
                u16le(v, 0);
            };
            u32le(&mut out, 0x0403_4b50);
            common(&mut out);
            out.extend_from_slice(&e.name);
            out.extend_from_slice(&e.data);

            u32le(&mut central, 0x0201_4b50);
            u16le(&mut central, (3 << 8) | 20);
            common(&mut central);
            u16le(&mut central, 0); // comment length
            u16le(&mut central, 0); // disk
            u16le(&mut central, 0); // internal attributes
            u32le(&mut central, e.attr);
            u32le(&mut central, offset);
            central.extend_from_slice(&e.name);
        }
        let cd_offset = out.len() as u32;
        out.extend_from_slice(&central);
        u32le(&mut out, 0x0605_4b50);
        u16le(&mut out, 0);
        u16le(&mut out, 0);
        u16le(&mut out, entries.len() as u16);
        u16le(&mut out, entries.len() as u16);
        u32le(&mut out, central.len() as u32);
        u32le(&mut out, cd_offset);
        u16le(&mut out, 0);
        out
    }

    fn extract_raw(entries: &[Raw], dest: &Path) -> Result<ExtractSummary, ArchiveError> {
        extract_zip(
            Cursor::new(raw_zip(entries)),
            dest,
            &ExtractLimits::default(),
        )
    }

    fn unsafe_name_reason(entries: &[Raw]) -> &'static str {
        let tmp = tempfile::tempdir().unwrap();
        match extract_raw(entries, &tmp.path().join("d")) {
            Err(ArchiveError::UnsafeName { reason, .. }) => {
                // Validation happens before anything is written.
                assert!(!tmp.path().join("d").exists());
                reason
            }
            other => panic!("expected UnsafeName, got {other:?}"),
        }
    }

    #[test]
    fn raw_builder_produces_valid_archives() {
        let tmp = tempfile::tempdir().unwrap();
        let summary = extract_raw(
            &[
                Raw::dir("d/", 0o750),
                Raw::file("d/f", b"hello"),
                Raw::link("d/l", "f"),
            ],
            tmp.path(),
        )
        .unwrap();
        assert_eq!(
            summary,
            ExtractSummary {
                entries: 3,
                bytes: 6
            }
        );
        assert_eq!(fs::read(tmp.path().join("d/l")).unwrap(), b"hello");
        assert_eq!(mode_of(&tmp.path().join("d")), 0o750);
    }

    #[test]
    fn refuses_absolute_names() {
        let tmp = tempfile::tempdir().unwrap();
        let victim = tmp.path().join("victim");
        let name = victim.to_str().unwrap();
        assert_eq!(
            unsafe_name_reason(&[Raw::file(name, b"pwned")]),
            "absolute path"
        );
        assert!(!victim.exists());
    }

    #[test]
    fn refuses_dot_dot_components() {
        assert_eq!(
            unsafe_name_reason(&[Raw::file("../evil", b"x")]),
            "contains a '..' component"
        );
        assert_eq!(
            unsafe_name_reason(&[Raw::file("ok", b"x"), Raw::file("a/../../evil", b"x")]),
            "contains a '..' component"
        );
        assert_eq!(
            unsafe_name_reason(&[Raw::dir("a/b/../", 0o755)]),
            "contains a '..' component"
        );
    }

    #[test]
    fn refuses_empty_nul_and_backslash_names() {
        assert_eq!(unsafe_name_reason(&[Raw::file("", b"x")]), "empty name");
        assert_eq!(
            unsafe_name_reason(&[Raw::file(".", b"x")]),
            "names the destination itself"
        );
        assert_eq!(
            unsafe_name_reason(&[Raw::new(b"a\0b", 0o100644, b"x")]),
            "contains a NUL byte"
        );
        assert_eq!(
            unsafe_name_reason(&[Raw::file("..\\evil", b"x")]),
            "contains a backslash"
        );
        assert_eq!(
            unsafe_name_reason(&[Raw::file("a\\..\\..\\evil", b"x")]),
            "contains a backslash"
        );
    }

    #[test]
    fn root_and_dot_entries_are_harmless() {
        let tmp = tempfile::tempdir().unwrap();
        extract_raw(
            &[Raw::dir("./", 0o700), Raw::file("./a//b", b"x")],
            tmp.path(),
        )
        .unwrap();
        assert_eq!(fs::read(tmp.path().join("a/b")).unwrap(), b"x");
        // The destination itself is pre-existing and left alone.
        assert_ne!(mode_of(tmp.path()), 0o700);
    }

    fn link_target_reason(entries: &[Raw]) -> &'static str {
        let tmp = tempfile::tempdir().unwrap();
        match extract_raw(entries, tmp.path()) {
            Err(ArchiveError::UnsafeLinkTarget { reason, .. }) => reason,
            other => panic!("expected UnsafeLinkTarget, got {other:?}"),
        }
    }

    #[test]
    fn refuses_absolute_and_escaping_link_targets() {
        assert_eq!(
            link_target_reason(&[Raw::link("l", "/etc/passwd")]),
            "absolute target"
        );
        assert_eq!(
            link_target_reason(&[Raw::link("l", "..")]),
            "resolves outside the destination"
        );
        assert_eq!(
            link_target_reason(&[Raw::link("a/l", "../../x")]),
            "resolves outside the destination"
        );
        assert_eq!(link_target_reason(&[Raw::link("l", "")]), "empty target");
        assert_eq!(
            link_target_reason(&[Raw::link("l", "a\0b")]),
            "contains a NUL byte"
        );
    }

    #[test]
    fn refuses_dot_dot_after_named_component_in_link_target() {
        // Lexically "sub/q/.." is "sub", but with sub/q -> ".." it is dest's parent.
        let entries = [
            Raw::dir("sub/", 0o755),
            Raw::link("sub/q", ".."),
            Raw::link("r", "sub/q/.."),
        ];
        assert_eq!(link_target_reason(&entries), "'..' after a named component");
    }

    #[test]
    fn accepts_in_tree_link_targets() {
        let tmp = tempfile::tempdir().unwrap();
        extract_raw(
            &[
                Raw::link("a/b/l", "../../x"),
                Raw::link("a/m", "./../a/./b"),
                Raw::link("n", "."),
            ],
            tmp.path(),
        )
        .unwrap();
        assert_eq!(
            fs::read_link(tmp.path().join("a/b/l")).unwrap(),
            Path::new("../../x")
        );
    }

    #[test]
    fn refuses_overlong_link_target() {
        let tmp = tempfile::tempdir().unwrap();
        let target = "a/".repeat(3000);
        let err = extract_raw(&[Raw::link("l", &target)], tmp.path()).unwrap_err();
        assert!(
            matches!(err, ArchiveError::LinkTargetTooLong { max: 4096, .. }),
            "{err}"
        );
        assert!(fs::symlink_metadata(tmp.path().join("l")).is_err());
    }

    #[test]
    fn refuses_writing_through_a_link_from_the_archive() {
        let tmp = tempfile::tempdir().unwrap();
        let entries = [
            Raw::dir("real/", 0o755),
            Raw::link("l", "real"),
            Raw::file("l/f", b"x"),
        ];
        let err = extract_raw(&entries, tmp.path()).unwrap_err();
        assert!(
            matches!(&err, ArchiveError::ThroughSymlink { name, link } if name == "l/f" && link.ends_with("l")),
            "{err}"
        );
        assert!(!tmp.path().join("real/f").exists());
        let entries = [
            Raw::dir("real/", 0o755),
            Raw::link("l", "real"),
            Raw::dir("l/", 0o755),
        ];
        let err = extract_raw(&entries, &tmp.path().join("second")).unwrap_err();
        assert!(matches!(err, ArchiveError::ThroughSymlink { .. }), "{err}");
    }

    #[test]
    fn refuses_writing_through_a_link_already_on_disk() {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tmp.path().join("outside");
        let dest = tmp.path().join("dest");
        fs::create_dir_all(&outside).unwrap();
        fs::create_dir_all(&dest).unwrap();
        symlink(&outside, dest.join("pre")).unwrap();
        let err = extract_raw(&[Raw::file("pre/f", b"x")], &dest).unwrap_err();
        assert!(matches!(err, ArchiveError::ThroughSymlink { .. }), "{err}");
        let err = extract_raw(&[Raw::file("pre/deeper/f", b"x")], &dest).unwrap_err();
        assert!(matches!(err, ArchiveError::ThroughSymlink { .. }), "{err}");
        assert_eq!(fs::read_dir(&outside).unwrap().count(), 0);
    }

    #[test]
    fn replaces_a_link_at_the_leaf_instead_of_following_it() {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tmp.path().join("outside.txt");
        let dest = tmp.path().join("dest");
        fs::create_dir_all(&dest).unwrap();
        fs::write(&outside, b"precious").unwrap();
        symlink(&outside, dest.join("leaf")).unwrap();
        symlink(&outside, dest.join("leaf2")).unwrap();
        extract_raw(
            &[Raw::file("leaf", b"new"), Raw::link("leaf2", "leaf")],
            &dest,
        )
        .unwrap();
        assert_eq!(fs::read(&outside).unwrap(), b"precious");
        assert!(fs::symlink_metadata(dest.join("leaf")).unwrap().is_file());
        assert_eq!(fs::read(dest.join("leaf")).unwrap(), b"new");
        assert_eq!(
            fs::read_link(dest.join("leaf2")).unwrap(),
            Path::new("leaf")
        );
    }

    #[test]
    fn does_not_write_into_hard_links() {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tmp.path().join("outside.txt");
        let dest = tmp.path().join("dest");
        fs::create_dir_all(&dest).unwrap();
        fs::write(&outside, b"precious").unwrap();
        fs::hard_link(&outside, dest.join("f")).unwrap();
        extract_raw(&[Raw::file("f", b"new")], &dest).unwrap();
        assert_eq!(fs::read(&outside).unwrap(), b"precious");
        assert_eq!(fs::read(dest.join("f")).unwrap(), b"new");
    }

    #[test]
    fn refuses_special_files() {
        for (mode, kind) in [
            (0o010644, "FIFO"),
            (0o020644, "character device"),
            (0o060644, "block device"),
            (0o140644, "socket"),
        ] {
            let tmp = tempfile::tempdir().unwrap();
            let err = extract_raw(&[Raw::new(b"dev", mode, b"")], tmp.path()).unwrap_err();
            assert!(
                matches!(&err, ArchiveError::SpecialFile { kind: k, mode: m, .. } if *k == kind && *m == mode),
                "{err}"
            );
            assert!(fs::symlink_metadata(tmp.path().join("dev")).is_err());
        }
        let tmp = tempfile::tempdir().unwrap();
        let err = extract_raw(&[Raw::new(b"odd", 0o170644, b"")], tmp.path()).unwrap_err();
        assert!(matches!(err, ArchiveError::UnknownFileType { .. }), "{err}");
    }

    #[test]
    fn refuses_trailing_slash_with_file_mode() {
        let tmp = tempfile::tempdir().unwrap();
        let err = extract_raw(&[Raw::new(b"d/", 0o100644, b"")], tmp.path()).unwrap_err();
        assert!(
            matches!(err, ArchiveError::InconsistentType { .. }),
            "{err}"
        );
    }

    #[test]
    fn refuses_too_many_entries() {
        let tmp = tempfile::tempdir().unwrap();
        let zip = raw_zip(&[
            Raw::file("a", b""),
            Raw::file("b", b""),
            Raw::file("c", b""),
        ]);
        let limits = ExtractLimits {
            max_entries: 2,
            ..ExtractLimits::default()
        };
        let err = extract_zip(Cursor::new(&zip), tmp.path(), &limits).unwrap_err();
        assert!(
            matches!(err, ArchiveError::TooManyEntries { count: 3, max: 2 }),
            "{err}"
        );
        assert!(!tmp.path().join("a").exists());
        let limits = ExtractLimits {
            max_entries: 3,
            ..ExtractLimits::default()
        };
        extract_zip(Cursor::new(&zip), tmp.path(), &limits).unwrap();
    }

    fn small_limits() -> ExtractLimits {
        ExtractLimits {
            max_entries: 100,
            max_total_bytes: 1000,
            max_entry_bytes: 700,
        }
    }

    #[test]
    fn refuses_declared_sizes_over_limits() {
        let tmp = tempfile::tempdir().unwrap();
        let big = Raw {
            declared: Some(701),
            ..Raw::file("big", b"tiny")
        };
        let err =
            extract_zip(Cursor::new(raw_zip(&[big])), tmp.path(), &small_limits()).unwrap_err();
        assert!(
            matches!(
                err,
                ArchiveError::EntryTooLarge {
                    which: "declared",
                    size: 701,
                    max: 700,
                    ..
                }
            ),
            "{err}"
        );
        let half = |name| Raw {
            declared: Some(600),
            ..Raw::file(name, b"tiny")
        };
        let zip = raw_zip(&[half("a"), half("b")]);
        let err = extract_zip(Cursor::new(zip), tmp.path(), &small_limits()).unwrap_err();
        assert!(
            matches!(&err, ArchiveError::TotalTooLarge { which: "declared", total: 1200, name, .. } if name == "b"),
            "{err}"
        );
        assert!(!tmp.path().join("a").exists());
    }

    #[test]
    fn counts_actual_bytes_not_declared_ones() {
        let tmp = tempfile::tempdir().unwrap();
        let liar = Raw {
            declared: Some(10),
            ..Raw::file("liar", &[7u8; 5000])
        };
        let err =
            extract_zip(Cursor::new(raw_zip(&[liar])), tmp.path(), &small_limits()).unwrap_err();
        assert!(
            matches!(
                err,
                ArchiveError::EntryTooLarge {
                    which: "actual",
                    max: 700,
                    ..
                }
            ),
            "{err}"
        );
        assert!(
            !tmp.path().join("liar").exists(),
            "partial file left behind"
        );

        let liar = |name| Raw {
            declared: Some(10),
            ..Raw::file(name, &[7u8; 600])
        };
        let zip = raw_zip(&[liar("a"), liar("b")]);
        let err = extract_zip(Cursor::new(zip), tmp.path(), &small_limits()).unwrap_err();
        assert!(
            matches!(&err, ArchiveError::TotalTooLarge { which: "actual", max: 1000, name, .. } if name == "b"),
            "{err}"
        );
        assert!(!tmp.path().join("b").exists(), "partial file left behind");
    }

    /// Rewrites the uncompressed size of every entry in a zip written by the zip crate.
    fn patch_uncompressed_sizes(zip: &mut [u8], size: u32) {
        let mut i = 0;
        while i + 4 <= zip.len() {
            let sig = u32::from_le_bytes([zip[i], zip[i + 1], zip[i + 2], zip[i + 3]]);
            let field = match sig {
                0x0403_4b50 => Some(i + 22),
                0x0201_4b50 => Some(i + 24),
                _ => None,
            };
            if let Some(at) = field {
                zip[at..at + 4].copy_from_slice(&size.to_le_bytes());
            }
            i += 1;
        }
    }

    #[test]
    fn deflate_bomb_with_lying_header_is_stopped_while_decompressing() {
        let mut writer = ZipWriter::new(Cursor::new(Vec::new()));
        writer
            .start_file(
                "bomb",
                FullFileOptions::default().compression_method(CompressionMethod::Deflated),
            )
            .unwrap();
        writer.write_all(&vec![0u8; 1 << 20]).unwrap();
        let mut zip = writer.finish().unwrap().into_inner();
        assert!(zip.len() < 10_000, "the bomb should compress well");
        patch_uncompressed_sizes(&mut zip, 100);
        let tmp = tempfile::tempdir().unwrap();
        let limits = ExtractLimits {
            max_entry_bytes: 100_000,
            ..ExtractLimits::default()
        };
        let err = extract_zip(Cursor::new(zip), tmp.path(), &limits).unwrap_err();
        assert!(
            matches!(
                err,
                ArchiveError::EntryTooLarge {
                    which: "actual",
                    max: 100_000,
                    ..
                }
            ),
            "{err}"
        );
        assert!(!tmp.path().join("bomb").exists());
    }

    #[test]
    fn corrupt_data_is_reported_and_removed() {
        let tmp = tempfile::tempdir().unwrap();
        let bad = Raw {
            crc: Some(0xdead_beef),
            ..Raw::file("bad", b"payload")
        };
        let err = extract_raw(&[Raw::file("good", b"ok"), bad], tmp.path()).unwrap_err();
        assert!(
            matches!(&err, ArchiveError::Corrupt { name, .. } if name == "bad"),
            "{err}"
        );
        assert!(!tmp.path().join("bad").exists());
        assert_eq!(fs::read(tmp.path().join("good")).unwrap(), b"ok");
    }

    #[test]
    fn garbage_and_truncated_input_is_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        let err = extract_zip(
            Cursor::new(b"not a zip at all".to_vec()),
            tmp.path(),
            &ExtractLimits::default(),
        )
        .unwrap_err();
        assert!(matches!(err, ArchiveError::Zip { .. }), "{err}");
        let zip = raw_zip(&[Raw::file("a", b"hello")]);
        for cut in [0, 10, zip.len() / 2, zip.len() - 1] {
            let err = extract_zip(
                Cursor::new(&zip[..cut]),
                tmp.path(),
                &ExtractLimits::default(),
            )
            .unwrap_err();
            assert!(matches!(err, ArchiveError::Zip { .. }), "cut {cut}: {err}");
        }
    }

    #[test]
    fn refuses_unsupported_compression_and_encryption() {
        let tmp = tempfile::tempdir().unwrap();
        let bzip = Raw {
            method: 12,
            ..Raw::file("b", b"x")
        };
        match extract_raw(&[bzip], tmp.path()) {
            Err(ArchiveError::UnsupportedCompression { .. }) => {}
            other => panic!("expected a compression refusal, got {other:?}"),
        }
        let locked = Raw {
            flags: 1,
            ..Raw::file("e", b"xxxxxxxxxxxxxxxx")
        };
        match extract_raw(&[locked], tmp.path()) {
            Err(ArchiveError::Encrypted { .. }) => {}
            other => panic!("expected an encryption refusal, got {other:?}"),
        }
        assert!(!tmp.path().join("b").exists());
        assert!(!tmp.path().join("e").exists());
    }

    #[test]
    fn strips_special_bits_and_applies_defaults() {
        let tmp = tempfile::tempdir().unwrap();
        extract_raw(
            &[
                Raw::new(b"suid", 0o106755, b"x"),
                Raw::dir("sticky/", 0o1777),
                Raw::new(b"plain", 0, b"x"),
                Raw::new(b"plaindir/", 0, b""),
                Raw::new(b"typeless", 0o600, b"x"),
            ],
            tmp.path(),
        )
        .unwrap();
        assert_eq!(mode_of(&tmp.path().join("suid")), 0o755);
        assert_eq!(mode_of(&tmp.path().join("sticky")), 0o777);
        assert_eq!(mode_of(&tmp.path().join("plain")), 0o644);
        assert_eq!(mode_of(&tmp.path().join("plaindir")), 0o755);
        assert_eq!(mode_of(&tmp.path().join("typeless")), 0o600);
    }

    #[test]
    fn directory_modes_apply_after_children_and_regardless_of_order() {
        let tmp = tempfile::tempdir().unwrap();
        extract_raw(
            &[
                Raw::dir("ro/", 0o555),
                Raw::file("ro/f", b"x"),
                Raw::file("late/f", b"y"),
                Raw::dir("late/", 0o710),
                Raw::file("implicit/f", b"z"),
            ],
            tmp.path(),
        )
        .unwrap();
        assert_eq!(fs::read(tmp.path().join("ro/f")).unwrap(), b"x");
        assert_eq!(mode_of(&tmp.path().join("ro")), 0o555);
        assert_eq!(mode_of(&tmp.path().join("late")), 0o710);
        assert_eq!(mode_of(&tmp.path().join("implicit")), 0o755);
        assert_eq!(mtime_of(&tmp.path().join("ro")), DOS_EPOCH_SECS);
    }

    #[test]
    fn leaves_existing_directories_alone_and_reports_conflicts() {
        let tmp = tempfile::tempdir().unwrap();
        let keep = tmp.path().join("keep");
        fs::create_dir(&keep).unwrap();
        fs::set_permissions(&keep, Permissions::from_mode(0o700)).unwrap();
        extract_raw(
            &[Raw::dir("keep/", 0o755), Raw::file("keep/f", b"x")],
            tmp.path(),
        )
        .unwrap();
        assert_eq!(mode_of(&keep), 0o700);

        fs::write(tmp.path().join("file"), b"x").unwrap();
        let err = extract_raw(&[Raw::file("file/child", b"x")], tmp.path()).unwrap_err();
        assert!(matches!(err, ArchiveError::Conflict { .. }), "{err}");
        let err = extract_raw(&[Raw::dir("file/", 0o755)], tmp.path()).unwrap_err();
        assert!(matches!(err, ArchiveError::Conflict { .. }), "{err}");
        let err = extract_raw(&[Raw::file("keep", b"x")], tmp.path()).unwrap_err();
        assert!(matches!(err, ArchiveError::Conflict { .. }), "{err}");
        let err = extract_raw(&[Raw::link("keep", "file")], tmp.path()).unwrap_err();
        assert!(matches!(err, ArchiveError::Conflict { .. }), "{err}");
        assert!(keep.is_dir());
    }

    #[test]
    fn error_messages_name_the_entry() {
        let tmp = tempfile::tempdir().unwrap();
        let err = extract_raw(&[Raw::file("x/../../evil\n", b"x")], tmp.path()).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains(r#""x/../../evil\n""#), "{msg}");
        assert!(msg.contains("'..'"), "{msg}");
    }
}
