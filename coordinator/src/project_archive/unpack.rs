//! Unpacking an untrusted project archive into a fresh directory: limits on entries and bytes,
//! bounded decoder memory, entry-by-entry checks before anything is created, and a stream that
//! must end properly before the result counts as a success.

use std::cell::Cell;
use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::rc::Rc;
use std::time::{Duration, SystemTime};

use tar::{Entry, EntryType, PaxExtensions};

use super::entry_path::{check_link_target, parse_entry_path};
use super::{ProjectArchiveError, Refusal};

/// Largest GNU long-name/long-link or PAX record read into memory (names are at most 4 KiB
/// on Linux; PAX records may carry a few extended attributes).
const MAX_RECORD_BYTES: u64 = 64 * 1024;
/// Zero padding accepted after the end-of-archive marker (GNU tar pads to 10 KiB records).
const MAX_TRAILING_ZEROS: u64 = 1024 * 1024;
/// mtimes past 9999-12-31 are refused rather than clamped.
const MAX_MTIME: u64 = 253_402_300_799;
const BLOCK: u64 = 512;
/// All entry names together (each is at most 4 KiB): bounds the bookkeeping kept in memory.
const MAX_NAME_BYTES_TOTAL: u64 = 64 * 1024 * 1024;
/// File bytes an archive may always produce, whatever its compression ratio.
pub const RATIO_FREE_BYTES: u64 = 64 << 20;

/// What an archive may contain at most. Everything that is not file data (headers, names,
/// padding) is bounded per entry, so these also bound the work done decompressing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnpackLimits {
    /// Entries (directories, files, links) in the archive, plus the parent directories it
    /// leaves implicit: everything that gets created.
    pub max_entries: u64,
    /// Bytes of all regular files together.
    pub max_total_bytes: u64,
    /// Bytes of one regular file.
    pub max_entry_bytes: u64,
    /// Largest zstd window accepted, as a power of two: the decoder's memory stays below
    /// about this. Frames asking for more are refused.
    pub max_window_log: u32,
    /// Most file bytes written per compressed byte read, once more than [`RATIO_FREE_BYTES`]
    /// were written (0: no limit). zstd turns a few KiB into gigabytes of zeros; real projects
    /// (text, a few binaries) stay far below 1000:1.
    pub max_ratio: u64,
}

impl Default for UnpackLimits {
    fn default() -> Self {
        UnpackLimits {
            max_entries: 100_000,
            max_total_bytes: 4 << 30,
            max_entry_bytes: 1 << 30,
            max_window_log: 27,
            max_ratio: 1000,
        }
    }
}

/// What [`unpack`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnpackSummary {
    /// Things created: the archive's directories, files and links, plus parent directories
    /// it did not list.
    pub entries: u64,
    /// Bytes of regular-file data written.
    pub bytes: u64,
    /// Regular files (hard links included), relative `/`-separated paths, sorted.
    pub files: Vec<String>,
}

/// Unpacks the zstd-compressed tar stream `input` into `dest`, which must be missing (it is
/// created) or an empty directory.
///
/// Directories get their permission bits plus owner `rwx` (so the tree can always be removed
/// by its owner), files their permission bits; setuid, setgid and sticky are dropped and
/// ownership is not restored. mtimes are restored on files and directories (directories after
/// their content), not on symlinks. Hard links are allowed only to a regular file that appeared
/// earlier in the archive. On error, `dest` may hold a partial tree: the caller deletes it.
/// Nothing is written outside `dest`, provided no one else writes into `dest` meanwhile.
pub fn unpack<R: Read>(
    input: R,
    dest: &Path,
    limits: &UnpackLimits,
) -> Result<UnpackSummary, ProjectArchiveError> {
    prepare_dest(dest)?;
    let compressed = Rc::new(Cell::new(0u64));
    let input = CountingInput {
        inner: input,
        count: Rc::clone(&compressed),
    };
    let mut decoder =
        zstd::stream::read::Decoder::new(input).map_err(|source| ProjectArchiveError::Corrupt {
            after: START.to_string(),
            source,
        })?;
    decoder
        .window_log_max(limits.max_window_log)
        .map_err(ProjectArchiveError::Limits)?;
    let mut stream = CountingReader {
        inner: decoder,
        count: 0,
    };
    let mut extractor = Extractor::new(dest, limits, compressed);
    {
        let mut archive = tar::Archive::new(&mut stream);
        let entries = archive
            .entries()
            .map_err(|source| extractor.corrupt(source))?
            .raw(true);
        for entry in entries {
            let mut entry = entry.map_err(|source| extractor.corrupt(source))?;
            extractor.entry(&mut entry)?;
        }
    }
    extractor.check_end(&mut stream)?;
    extractor.restore_dir_mtimes()?;
    let mut files = extractor.files;
    files.sort();
    tracing::debug!(
        dest = %dest.display(),
        entries = extractor.entries,
        bytes = extractor.bytes,
        "unpacked project archive"
    );
    Ok(UnpackSummary {
        entries: extractor.entries,
        bytes: extractor.bytes,
        files,
    })
}

const START: &str = "the start of the archive";

fn prepare_dest(dest: &Path) -> Result<(), ProjectArchiveError> {
    let refuse = |reason: String| ProjectArchiveError::Destination {
        path: dest.to_path_buf(),
        reason,
    };
    match fs::symlink_metadata(dest) {
        Ok(meta) if meta.is_dir() => {
            let mut listing = fs::read_dir(dest).map_err(|e| refuse(e.to_string()))?;
            if listing.next().is_some() {
                return Err(refuse("it is not empty".to_string()));
            }
            Ok(())
        }
        Ok(_) => Err(refuse("it is not a directory".to_string())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::create_dir_all(dest).map_err(|e| refuse(e.to_string()))
        }
        Err(e) => Err(refuse(e.to_string())),
    }
}

/// Counts the compressed bytes read, for the compression-ratio limit.
struct CountingInput<R> {
    inner: R,
    count: Rc<Cell<u64>>,
}

impl<R: Read> Read for CountingInput<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.set(self.count.get().saturating_add(n as u64));
        Ok(n)
    }
}

/// Counts the decompressed bytes the tar parser consumed, to tell where its last entry ended.
struct CountingReader<R> {
    inner: R,
    count: u64,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count += n as u64;
        Ok(n)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Dir,
    /// A parent created because an entry needed it, before (or without) its own entry.
    ImplicitDir,
    File,
    Symlink,
}

/// Extension records waiting for the entry they describe.
#[derive(Default)]
struct Pending {
    long_name: Option<Vec<u8>>,
    long_link: Option<Vec<u8>>,
    pax_path: Option<Vec<u8>>,
    pax_link: Option<Vec<u8>>,
    pax_size: Option<u64>,
    pax_seen: bool,
    global_seen: bool,
}

impl Pending {
    fn is_empty(&self) -> bool {
        self.long_name.is_none() && self.long_link.is_none() && !self.pax_seen && !self.global_seen
    }
}

struct Extractor<'a> {
    dest: &'a Path,
    limits: &'a UnpackLimits,
    /// Every path created so far, by its normalised relative name.
    seen: HashMap<String, Kind>,
    name_bytes: u64,
    pending: Pending,
    dir_mtimes: Vec<(String, SystemTime)>,
    files: Vec<String>,
    entries: u64,
    bytes: u64,
    last_name: Option<String>,
    /// Offset in the tar stream just after the last entry's (padded) data.
    end_of_entries: u64,
    /// Compressed bytes read so far (shared with the reader under the zstd decoder).
    compressed: Rc<Cell<u64>>,
}

fn lossy(raw: &[u8]) -> String {
    String::from_utf8_lossy(raw).into_owned()
}

impl<'a> Extractor<'a> {
    fn new(dest: &'a Path, limits: &'a UnpackLimits, compressed: Rc<Cell<u64>>) -> Self {
        Extractor {
            dest,
            limits,
            seen: HashMap::new(),
            name_bytes: 0,
            pending: Pending::default(),
            dir_mtimes: Vec::new(),
            files: Vec::new(),
            entries: 0,
            bytes: 0,
            last_name: None,
            end_of_entries: 0,
            compressed,
        }
    }

    fn corrupt(&self, source: io::Error) -> ProjectArchiveError {
        ProjectArchiveError::Corrupt {
            after: match &self.last_name {
                Some(name) => format!("entry {name:?}"),
                None => START.to_string(),
            },
            source,
        }
    }

    fn write_err(&self, path: &Path, source: io::Error) -> ProjectArchiveError {
        ProjectArchiveError::WriteTree {
            path: path.to_path_buf(),
            source,
        }
    }

    fn entry<R: Read>(&mut self, entry: &mut Entry<'_, R>) -> Result<(), ProjectArchiveError> {
        let size = entry.size();
        self.end_of_entries = size
            .div_ceil(BLOCK)
            .checked_mul(BLOCK)
            .and_then(|padded| entry.raw_file_position().checked_add(padded))
            .ok_or_else(|| self.corrupt(io::Error::other("entry size overflows")))?;
        let header_name = lossy(&entry.header().path_bytes());
        match entry.header().entry_type() {
            EntryType::GNULongName => {
                let record = self.read_record(entry, "GNU long name", &header_name)?;
                let slot = &mut self.pending.long_name;
                set_once(slot, strip_nuls(record), "GNU long name", &header_name)
            }
            EntryType::GNULongLink => {
                let record = self.read_record(entry, "GNU long link", &header_name)?;
                let slot = &mut self.pending.long_link;
                set_once(slot, strip_nuls(record), "GNU long link", &header_name)
            }
            EntryType::XHeader => {
                let record = self.read_record(entry, "PAX", &header_name)?;
                self.pax(&record, &header_name)
            }
            EntryType::XGlobalHeader => {
                let record = self.read_record(entry, "global PAX", &header_name)?;
                self.global_pax(&record, &header_name)
            }
            _ => {
                let pending = std::mem::take(&mut self.pending);
                let result = self.member(entry, &pending);
                self.last_name = Some(entry_name(entry, &pending));
                result
            }
        }
    }

    /// Reads an extension record's data, refusing large ones before reading.
    fn read_record<R: Read>(
        &self,
        entry: &mut Entry<'_, R>,
        kind: &'static str,
        header_name: &str,
    ) -> Result<Vec<u8>, ProjectArchiveError> {
        let size = entry.size();
        if size > MAX_RECORD_BYTES {
            return Err(refused(
                header_name,
                Refusal::MetadataTooLarge {
                    kind,
                    size,
                    limit: MAX_RECORD_BYTES,
                },
            ));
        }
        let mut record = Vec::new();
        entry
            .read_to_end(&mut record)
            .map_err(|source| self.corrupt(source))?;
        if record.len() as u64 != size {
            return Err(self.corrupt(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{kind} record truncated"),
            )));
        }
        Ok(record)
    }

    fn pax(&mut self, record: &[u8], header_name: &str) -> Result<(), ProjectArchiveError> {
        if self.pending.pax_seen {
            return Err(refused(
                header_name,
                Refusal::RepeatedExtension { kind: "PAX" },
            ));
        }
        self.pending.pax_seen = true;
        for field in PaxExtensions::new(record) {
            let field = field.map_err(|_| refused(header_name, Refusal::BadPax))?;
            let key = field.key_bytes();
            let value = field.value_bytes();
            match key {
                b"path" => self.pending.pax_path = Some(value.to_vec()),
                b"linkpath" => self.pending.pax_link = Some(value.to_vec()),
                b"size" => {
                    let size = std::str::from_utf8(value)
                        .ok()
                        .and_then(|v| v.parse::<u64>().ok())
                        .ok_or_else(|| refused(header_name, Refusal::BadPax))?;
                    self.pending.pax_size = Some(size);
                }
                _ if key.starts_with(b"GNU.sparse.") => {
                    return Err(refused(header_name, Refusal::Sparse));
                }
                // mtime, atime, uid, gid, names, xattrs: not restored, so not looked at.
                _ => {}
            }
        }
        Ok(())
    }

    /// Global records are accepted (git archive writes one) but may not redefine what an
    /// entry is, since we do not carry them forward.
    fn global_pax(&mut self, record: &[u8], header_name: &str) -> Result<(), ProjectArchiveError> {
        if self.pending.global_seen {
            return Err(refused(
                header_name,
                Refusal::RepeatedExtension { kind: "global PAX" },
            ));
        }
        self.pending.global_seen = true;
        for field in PaxExtensions::new(record) {
            let field = field.map_err(|_| refused(header_name, Refusal::BadPax))?;
            let key = field.key_bytes();
            if matches!(key, b"path" | b"linkpath" | b"size") || key.starts_with(b"GNU.sparse.") {
                return Err(refused(
                    header_name,
                    Refusal::GlobalPaxKey { key: lossy(key) },
                ));
            }
        }
        Ok(())
    }

    /// One real entry: directory, file, symlink or hard link.
    fn member<R: Read>(
        &mut self,
        entry: &mut Entry<'_, R>,
        pending: &Pending,
    ) -> Result<(), ProjectArchiveError> {
        let raw_name = chosen_name(entry, pending);
        let name = lossy(&raw_name);
        let refuse = |reason| refused(&name, reason);

        let header = entry.header();
        let entry_type = header.entry_type();
        let size = entry.size();
        if let Some(pax) = pending.pax_size
            && pax != size
        {
            return Err(refuse(Refusal::PaxSize { pax, header: size }));
        }
        let kind_name = match entry_type {
            EntryType::Regular | EntryType::Continuous => "file",
            EntryType::Directory => "directory",
            EntryType::Symlink => "symlink",
            EntryType::Link => "hard link",
            EntryType::Char => {
                return Err(refuse(Refusal::SpecialFile {
                    kind: "character device",
                }));
            }
            EntryType::Block => {
                return Err(refuse(Refusal::SpecialFile {
                    kind: "block device",
                }));
            }
            EntryType::Fifo => return Err(refuse(Refusal::SpecialFile { kind: "FIFO" })),
            EntryType::GNUSparse => return Err(refuse(Refusal::Sparse)),
            other => return Err(refuse(Refusal::UnknownType(other.as_byte()))),
        };
        if kind_name != "file" && size != 0 {
            return Err(refuse(Refusal::DataOnNonFile {
                kind: kind_name,
                size,
            }));
        }
        let mode = header
            .mode()
            .map_err(|_| refuse(Refusal::BadField { field: "mode" }))?
            & 0o777;
        let mtime = header
            .mtime()
            .map_err(|_| refuse(Refusal::BadField { field: "mtime" }))?;
        if mtime > MAX_MTIME {
            return Err(refuse(Refusal::MtimeOutOfRange(mtime)));
        }
        let mtime = SystemTime::UNIX_EPOCH + Duration::from_secs(mtime);

        let Some(components) = parse_entry_path(&raw_name).map_err(refuse)? else {
            // `./` names the root, which already exists and keeps its own metadata.
            return if entry_type == EntryType::Directory {
                Ok(())
            } else {
                Err(refuse(Refusal::EmptyName))
            };
        };
        let key = components.join("/");
        match (self.seen.get(&key), entry_type) {
            (None, _) => self.count_entry(&name)?,
            // Already counted when it was created as a parent.
            (Some(Kind::ImplicitDir), EntryType::Directory) => {}
            (Some(_), _) => return Err(refuse(Refusal::Duplicate)),
        }
        self.make_parents(&components, &name)?;
        let path = self.dest.join(&key);

        match entry_type {
            EntryType::Directory => {
                if self.seen.get(&key) != Some(&Kind::ImplicitDir) {
                    fs::create_dir(&path).map_err(|e| self.write_err(&path, e))?;
                }
                fs::set_permissions(&path, fs::Permissions::from_mode(mode | 0o700))
                    .map_err(|e| self.write_err(&path, e))?;
                self.dir_mtimes.push((key.clone(), mtime));
                self.remember(key, Kind::Dir, &name)?;
            }
            EntryType::Symlink => {
                let target =
                    link_target(entry, pending).ok_or_else(|| refuse(Refusal::EmptyLinkTarget))?;
                let target = check_link_target(&components, &target).map_err(refuse)?;
                std::os::unix::fs::symlink(target, &path).map_err(|e| self.write_err(&path, e))?;
                self.remember(key, Kind::Symlink, &name)?;
            }
            EntryType::Link => {
                let raw_target = link_target(entry, pending).unwrap_or_default();
                let bad_target = || {
                    refuse(Refusal::HardLinkTarget {
                        target: lossy(&raw_target),
                    })
                };
                let target_key = match parse_entry_path(&raw_target) {
                    Ok(Some(parts)) => parts.join("/"),
                    _ => return Err(bad_target()),
                };
                if self.seen.get(&target_key) != Some(&Kind::File) {
                    return Err(bad_target());
                }
                let target_path = self.dest.join(&target_key);
                fs::hard_link(&target_path, &path).map_err(|e| self.write_err(&path, e))?;
                self.remember(key.clone(), Kind::File, &name)?;
                self.files.push(key);
            }
            _ => {
                self.file(entry, &path, size, mode, mtime, &name)?;
                self.remember(key.clone(), Kind::File, &name)?;
                self.files.push(key);
            }
        }
        Ok(())
    }

    /// Creates the missing parents of an entry, refusing to go through anything but a
    /// directory this archive created. A known directory's own parents were checked when it was
    /// created and nothing is ever replaced, so the walk up stops at the first one found.
    fn make_parents(&mut self, components: &[&str], name: &str) -> Result<(), ProjectArchiveError> {
        let depth = components.len() - 1;
        let mut known = depth;
        while known > 0 {
            let parent = components[..known].join("/");
            match self.seen.get(&parent) {
                Some(Kind::Dir | Kind::ImplicitDir) => break,
                Some(Kind::Symlink) => {
                    return Err(refused(name, Refusal::ThroughSymlink { link: parent }));
                }
                Some(Kind::File) => {
                    return Err(refused(name, Refusal::ParentNotDirectory { parent }));
                }
                None => known -= 1,
            }
        }
        for level in known + 1..=depth {
            self.count_entry(name)?;
            let parent = components[..level].join("/");
            let path = self.dest.join(&parent);
            fs::create_dir(&path).map_err(|e| self.write_err(&path, e))?;
            fs::set_permissions(&path, fs::Permissions::from_mode(0o755))
                .map_err(|e| self.write_err(&path, e))?;
            self.remember(parent, Kind::ImplicitDir, name)?;
        }
        Ok(())
    }

    fn count_entry(&mut self, name: &str) -> Result<(), ProjectArchiveError> {
        self.entries += 1;
        if self.entries > self.limits.max_entries {
            return Err(refused(
                name,
                Refusal::TooManyEntries {
                    limit: self.limits.max_entries,
                },
            ));
        }
        Ok(())
    }

    fn remember(&mut self, key: String, kind: Kind, name: &str) -> Result<(), ProjectArchiveError> {
        let len = key.len() as u64;
        if self.seen.insert(key, kind).is_none() {
            self.name_bytes += len;
            if self.name_bytes > MAX_NAME_BYTES_TOTAL {
                return Err(refused(
                    name,
                    Refusal::NamesTooLong {
                        limit: MAX_NAME_BYTES_TOTAL,
                    },
                ));
            }
        }
        Ok(())
    }

    fn file<R: Read>(
        &mut self,
        entry: &mut Entry<'_, R>,
        path: &Path,
        size: u64,
        mode: u32,
        mtime: SystemTime,
        name: &str,
    ) -> Result<(), ProjectArchiveError> {
        let limit = self.limits.max_entry_bytes;
        if size > limit {
            return Err(refused(name, Refusal::EntryTooLarge { size, limit }));
        }
        let total_limit = self.limits.max_total_bytes;
        if self.bytes.saturating_add(size) > total_limit {
            return Err(refused(name, Refusal::TotalTooLarge { limit: total_limit }));
        }
        // create_new: never opens (or follows) anything that already exists.
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| self.write_err(path, e))?;
        let (before, ratio) = (self.bytes, self.limits.max_ratio);
        let compressed = Rc::clone(&self.compressed);
        let mut check = |copied: u64| {
            let written = before.saturating_add(copied);
            let read = compressed.get();
            if ratio > 0 && written > RATIO_FREE_BYTES && written > read.saturating_mul(ratio) {
                return Err(CopyError::Ratio { written, read });
            }
            Ok(())
        };
        let copied = copy_checked(entry, &mut file, size, &mut check).map_err(|e| match e {
            CopyError::Read(source) => self.corrupt(source),
            CopyError::Write(source) => self.write_err(path, source),
            CopyError::TooLong => refused(name, Refusal::LongerThanDeclared { declared: size }),
            CopyError::Ratio { written, read } => refused(
                name,
                Refusal::RatioTooHigh {
                    written,
                    read,
                    limit: ratio,
                },
            ),
        })?;
        if copied != size {
            return Err(self.corrupt(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("entry {name:?} has {copied} of its {size} bytes"),
            )));
        }
        self.bytes += copied;
        file.set_modified(mtime)
            .map_err(|e| self.write_err(path, e))?;
        file.set_permissions(fs::Permissions::from_mode(mode))
            .map_err(|e| self.write_err(path, e))
    }

    /// After the last entry: the tar end-of-archive marker must be there, followed by at most
    /// [`MAX_TRAILING_ZEROS`] zero bytes, and the zstd stream must end cleanly.
    fn check_end<R: Read>(
        &self,
        stream: &mut CountingReader<R>,
    ) -> Result<(), ProjectArchiveError> {
        if !self.pending.is_empty() {
            let name = self
                .pending
                .long_name
                .as_deref()
                .or(self.pending.pax_path.as_deref())
                .map(lossy)
                .unwrap_or_default();
            return Err(refused(&name, Refusal::DanglingExtension));
        }
        // The parser stops after one zero block, or at a clean EOF on a block boundary; only
        // the first is a real end.
        if stream.count < self.end_of_entries + BLOCK {
            return Err(self.corrupt(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the tar stream ends without its end-of-archive marker",
            )));
        }
        let mut buf = vec![0u8; 64 * 1024];
        let mut trailing = 0u64;
        loop {
            let n = stream
                .read(&mut buf)
                .map_err(|source| self.corrupt(source))?;
            if n == 0 {
                break;
            }
            if buf[..n].iter().any(|&b| b != 0) {
                return Err(ProjectArchiveError::TrailingData {
                    what: "non-zero bytes".to_string(),
                });
            }
            trailing += n as u64;
            if trailing > MAX_TRAILING_ZEROS {
                return Err(ProjectArchiveError::TrailingData {
                    what: format!("more than {MAX_TRAILING_ZEROS} bytes of padding"),
                });
            }
        }
        if trailing < BLOCK {
            return Err(self.corrupt(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the end-of-archive marker is cut short",
            )));
        }
        Ok(())
    }

    fn restore_dir_mtimes(&self) -> Result<(), ProjectArchiveError> {
        for (key, mtime) in &self.dir_mtimes {
            let path = self.dest.join(key);
            File::open(&path)
                .and_then(|dir| dir.set_modified(*mtime))
                .map_err(|e| self.write_err(&path, e))?;
        }
        Ok(())
    }
}

fn refused(name: &str, reason: Refusal) -> ProjectArchiveError {
    ProjectArchiveError::Refused {
        entry: name.to_string(),
        reason,
    }
}

fn set_once(
    slot: &mut Option<Vec<u8>>,
    value: Vec<u8>,
    kind: &'static str,
    header_name: &str,
) -> Result<(), ProjectArchiveError> {
    if slot.is_some() {
        return Err(refused(header_name, Refusal::RepeatedExtension { kind }));
    }
    *slot = Some(value);
    Ok(())
}

fn strip_nuls(mut record: Vec<u8>) -> Vec<u8> {
    while record.last() == Some(&0) {
        record.pop();
    }
    record
}

/// The entry's name: PAX `path` over GNU long name over the header's own field.
fn chosen_name<R: Read>(entry: &Entry<'_, R>, pending: &Pending) -> Vec<u8> {
    pending
        .pax_path
        .clone()
        .or_else(|| pending.long_name.clone())
        .unwrap_or_else(|| entry.header().path_bytes().into_owned())
}

fn entry_name<R: Read>(entry: &Entry<'_, R>, pending: &Pending) -> String {
    lossy(&chosen_name(entry, pending))
}

fn link_target<R: Read>(entry: &Entry<'_, R>, pending: &Pending) -> Option<Vec<u8>> {
    pending
        .pax_link
        .clone()
        .or_else(|| pending.long_link.clone())
        .or_else(|| entry.header().link_name_bytes().map(|t| t.into_owned()))
}

#[derive(Debug)]
pub(super) enum CopyError {
    Read(io::Error),
    Write(io::Error),
    /// The reader had more than the declared size.
    TooLong,
    /// Too many bytes written per compressed byte read.
    Ratio {
        /// File bytes written, this file included.
        written: u64,
        /// Compressed bytes read.
        read: u64,
    },
}

/// Copies `reader` to `writer`, counting as it goes and failing as soon as more than
/// `declared` bytes arrive, so the declared size is a hard bound on what is written.
#[cfg(test)]
pub(super) fn copy_at_most<R: Read, W: Write>(
    reader: &mut R,
    writer: &mut W,
    declared: u64,
) -> Result<u64, CopyError> {
    copy_checked(reader, writer, declared, &mut |_| Ok(()))
}

/// [`copy_at_most`], calling `check` with the bytes copied so far before each write.
fn copy_checked<R: Read, W: Write>(
    reader: &mut R,
    writer: &mut W,
    declared: u64,
    check: &mut dyn FnMut(u64) -> Result<(), CopyError>,
) -> Result<u64, CopyError> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut copied = 0u64;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => return Ok(copied),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(CopyError::Read(e)),
        };
        copied += n as u64;
        if copied > declared {
            return Err(CopyError::TooLong);
        }
        check(copied)?;
        writer.write_all(&buf[..n]).map_err(CopyError::Write)?;
    }
}
