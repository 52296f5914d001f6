//! Zipping a directory the way ansible-runner's Python side expects.

use super::timestamps::dos_time;
use super::*;

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
