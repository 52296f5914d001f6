//! Zipping a directory the way ansible-runner's Python side expects.
//!
//! Deflate dominates the cost, so entries are compressed on worker threads (one per available
//! core): each worker turns one small entry into a one-entry zip in memory, and the calling
//! thread appends those to the archive in tree order with the zip library's merge, which copies
//! the compressed bytes and keeps every header field. At most [`MAX_IN_FLIGHT`] entries and
//! about [`MAX_IN_FLIGHT_BYTES`] of file content are handed out and not yet appended, which
//! bounds the memory; files bigger than [`PARALLEL_MAX_FILE`] are compressed by the calling
//! thread, streaming, once everything before them is written. The price is memory: on a
//! 5,000-file tree peak RSS is about 5 MiB above the single-threaded run's, because the
//! allocator keeps what each thread's per-file deflate state (a few hundred KiB) used.

use std::collections::BTreeMap;
use std::io::Cursor;
use std::panic::AssertUnwindSafe;
use std::sync::mpsc::{Receiver, Sender, SyncSender, channel, sync_channel};
use std::sync::{Arc, Mutex};

use super::timestamps::dos_time;
use super::*;

/// Files up to this size are compressed on worker threads, bigger ones in the calling thread.
const PARALLEL_MAX_FILE: u64 = 1 << 20;
/// Most entries handed to workers and not yet appended.
const MAX_IN_FLIGHT: usize = 16;
/// Most file content (bytes, before compression) handed to workers and not yet appended.
const MAX_IN_FLIGHT_BYTES: u64 = 4 << 20;

/// Zips `dir` (recursively, relative names, dirs with trailing '/', sorted for determinism) into `out`.
///
/// `level` is the deflate level 0..=9 (0 stores files uncompressed); `None` means the library
/// default, 6. Entries appear in pre-order with siblings sorted by byte order of their names.
/// Symlinks are stored as links (never followed; `dir` itself may be one), modes (rwx bits) and
/// mtimes are kept, FIFOs, sockets and devices are skipped. Directory and symlink entries are stored uncompressed. Files of 4 GiB or
/// more get Zip64 headers. The archive's bytes do not depend on how many cores compress it.
/// Returns the writer after finishing the archive.
pub fn zip_dir<W: Write + Seek>(dir: &Path, out: W, level: Option<i64>) -> Result<W, ArchiveError> {
    let workers = std::thread::available_parallelism().map_or(1, usize::from);
    zip_dir_with_workers(dir, out, level, workers)
}

/// [`zip_dir`] with `workers` compressing threads; 1 or less compresses in the calling thread.
pub(super) fn zip_dir_with_workers<W: Write + Seek>(
    dir: &Path,
    out: W,
    level: Option<i64>,
    workers: usize,
) -> Result<W, ArchiveError> {
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
    if workers <= 1 {
        walk(dir, |entry| add_entry(&mut zip, &entry, level))?;
    } else {
        std::thread::scope(|scope| {
            let (jobs, job_queue) = sync_channel::<(u64, Entry)>(MAX_IN_FLIGHT);
            let job_queue = Arc::new(Mutex::new(job_queue));
            let (done, results) = channel();
            for _ in 0..workers {
                let (job_queue, done) = (Arc::clone(&job_queue), done.clone());
                scope.spawn(move || compress_entries(&job_queue, &done, level));
            }
            // Only the workers hold senders now, so results ending means they all stopped.
            drop(done);
            let mut merger = Merger {
                zip: &mut zip,
                jobs,
                results,
                ready: BTreeMap::new(),
                sent: 0,
                merged: 0,
                in_flight_bytes: Vec::new(),
            };
            walk(dir, |entry| merger.add(entry, level))?;
            merger.drain()
            // Dropping `merger` closes the job queue, which ends the workers.
        })?;
    }
    zip.finish().map_err(zip_err("finishing the archive"))
}

/// One path to archive, with the metadata it had when the walk saw it.
struct Entry {
    path: PathBuf,
    name: String,
    meta: Metadata,
}

/// Calls `each` for every entry below `dir`, in archive order.
fn walk(
    dir: &Path,
    mut each: impl FnMut(Entry) -> Result<(), ArchiveError>,
) -> Result<(), ArchiveError> {
    // Reverse order so that popping yields the sorted order; pushing a directory's children
    // right after the directory itself gives pre-order.
    let mut stack = sorted_children(dir, "")?;
    stack.reverse();
    while let Some((path, name)) = stack.pop() {
        let meta = fs::symlink_metadata(&path).map_err(io_err("read metadata of", &path))?;
        let children = if meta.is_dir() {
            Some(sorted_children(&path, &format!("{name}/"))?)
        } else {
            None
        };
        each(Entry { path, name, meta })?;
        if let Some(mut children) = children {
            children.reverse();
            stack.append(&mut children);
        }
    }
    Ok(())
}

/// Worker loop: compresses entries into one-entry zips until the job queue closes.
fn compress_entries(
    job_queue: &Mutex<Receiver<(u64, Entry)>>,
    done: &Sender<(u64, Result<Vec<u8>, ArchiveError>)>,
    level: Option<i64>,
) {
    loop {
        // The lock is held only while waiting for the next job, never while compressing.
        let job = match job_queue.lock() {
            Ok(queue) => queue.recv(),
            Err(_) => return,
        };
        let Ok((seq, entry)) = job else { return };
        // Every job gets an answer, even a panic, so that the merger never waits forever.
        let zipped = std::panic::catch_unwind(AssertUnwindSafe(|| zip_one(&entry, level)))
            .unwrap_or_else(|_| {
                Err(ArchiveError::Io {
                    op: "zip",
                    path: entry.path.clone(),
                    source: io::Error::other("the compressing thread panicked"),
                })
            });
        if done.send((seq, zipped)).is_err() {
            return;
        }
    }
}

/// `entry` as a one-entry zip in memory.
fn zip_one(entry: &Entry, level: Option<i64>) -> Result<Vec<u8>, ArchiveError> {
    let capacity = usize::try_from(entry.meta.len()).map_or(0, |n| n / 2 + 512);
    let mut mini = ZipWriter::new(Cursor::new(Vec::with_capacity(capacity)));
    add_entry(&mut mini, entry, level)?;
    mini.finish()
        .map(Cursor::into_inner)
        .map_err(zip_err("finishing a one-entry zip"))
}

/// The calling thread's side of parallel zipping: hands entries out and appends the results
/// in order.
struct Merger<'a, W: Write + Seek> {
    zip: &'a mut ZipWriter<W>,
    jobs: SyncSender<(u64, Entry)>,
    results: Receiver<(u64, Result<Vec<u8>, ArchiveError>)>,
    /// Results that came back before the ones ahead of them.
    ready: BTreeMap<u64, Result<Vec<u8>, ArchiveError>>,
    /// Entries handed out so far (the next sequence number).
    sent: u64,
    /// Entries appended so far.
    merged: u64,
    /// Content sizes of the entries handed out and not yet appended, oldest first.
    in_flight_bytes: Vec<u64>,
}

impl<W: Write + Seek> Merger<'_, W> {
    fn add(&mut self, entry: Entry, level: Option<i64>) -> Result<(), ArchiveError> {
        let size = if entry.meta.is_file() {
            entry.meta.len()
        } else {
            0
        };
        if size > PARALLEL_MAX_FILE {
            // Big files stream through this thread, after everything before them.
            self.drain()?;
            return add_entry(self.zip, &entry, level);
        }
        loop {
            let count = self.in_flight_bytes.len();
            let bytes: u64 = self.in_flight_bytes.iter().sum();
            if count == 0 || (count < MAX_IN_FLIGHT && bytes + size <= MAX_IN_FLIGHT_BYTES) {
                break;
            }
            self.merge_next()?;
        }
        self.in_flight_bytes.push(size);
        let seq = self.sent;
        self.sent += 1;
        if self.jobs.send((seq, entry)).is_err() {
            // Every worker is gone; waiting for the result reports why (or the panic).
            return self.merge_next();
        }
        // Append whatever is already done, so that finished zips do not pile up.
        while let Ok((seq, zipped)) = self.results.try_recv() {
            self.ready.insert(seq, zipped);
        }
        while self.ready.contains_key(&self.merged) {
            self.merge_next()?;
        }
        Ok(())
    }

    /// Appends every entry handed out.
    fn drain(&mut self) -> Result<(), ArchiveError> {
        while self.merged < self.sent {
            self.merge_next()?;
        }
        Ok(())
    }

    /// Waits for the oldest entry not yet appended and appends it.
    fn merge_next(&mut self) -> Result<(), ArchiveError> {
        let zipped = loop {
            if let Some(zipped) = self.ready.remove(&self.merged) {
                break zipped;
            }
            match self.results.recv() {
                Ok((seq, zipped)) => {
                    self.ready.insert(seq, zipped);
                }
                Err(_) => {
                    return Err(ArchiveError::Io {
                        op: "zip",
                        path: PathBuf::new(),
                        source: io::Error::other("a compressing thread stopped"),
                    });
                }
            }
        };
        self.merged += 1;
        if !self.in_flight_bytes.is_empty() {
            self.in_flight_bytes.remove(0);
        }
        let archive = ZipArchive::new(Cursor::new(zipped?))
            .map_err(zip_err("reading back a one-entry zip"))?;
        self.zip
            .merge_archive(archive)
            .map_err(zip_err("appending a compressed entry"))
    }
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

/// Adds one entry (its children, for a directory, are separate entries).
fn add_entry<W: Write + Seek>(
    zip: &mut ZipWriter<W>,
    entry: &Entry,
    level: Option<i64>,
) -> Result<(), ArchiveError> {
    let Entry { path, name, meta } = entry;
    let kind = meta.file_type();
    if kind.is_symlink() {
        let target = fs::read_link(path).map_err(io_err("read symlink", path))?;
        let Some(target) = target.to_str() else {
            return Err(ArchiveError::NonUtf8Path { path: target });
        };
        let options = entry_options(meta, None)?;
        zip.add_symlink(name, target, options)
            .map_err(zip_err(format!("adding symlink {name:?}")))?;
    } else if kind.is_dir() {
        let options = entry_options(meta, None)?;
        zip.add_directory(format!("{name}/"), options)
            .map_err(zip_err(format!("adding directory {name:?}")))?;
    } else if kind.is_file() {
        add_file(zip, path, name, meta, level)?;
    }
    // FIFOs, sockets and devices are skipped: opening a FIFO would block, and the others have
    // no content to carry.
    Ok(())
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
