//! Packing a project tree into a deterministic tar + zstd archive: what is walked, in which
//! order, and which metadata is kept, so that the same tree always gives the same bytes.

use std::fs::{self, File, Metadata};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use tar::{Builder, EntryType, Header};

use super::entry_path::check_link_target;
use super::{ProjectArchiveError, Refusal};

/// The zstd level [`pack`] callers use unless they have a reason not to.
pub const DEFAULT_LEVEL: i32 = 3;

/// Packs the tree below `dir` into `out` as a zstd-compressed tar stream and returns `out`.
///
/// Deterministic: entries are sorted by path component by component (a directory before its
/// contents), uid/gid are 0 with no user or group names, file and directory mtimes (whole
/// seconds; before 1970 becomes 0; symlinks get 0) and permission bits are kept while setuid/setgid/sticky are dropped, and atime,
/// ctime and inode numbers are never looked at. Symlinks are stored as links, never followed;
/// one whose target is absolute or leaves the tree is refused ([`Refusal`]), since [`super::unpack`]
/// would refuse it. FIFOs, sockets and devices are skipped with a warning. Hard-linked files
/// are stored as independent files. Names must be UTF-8. `dir` itself is not an entry.
pub fn pack<W: Write>(dir: &Path, out: W, level: i32) -> Result<W, ProjectArchiveError> {
    pack_without(dir, out, level, &[])
}

/// [`pack`], leaving out the top-level entries named in `skip` (a checkout's `.git`, say).
pub fn pack_without<W: Write>(
    dir: &Path,
    out: W,
    level: i32,
    skip: &[&str],
) -> Result<W, ProjectArchiveError> {
    let meta = fs::metadata(dir).map_err(|source| pack_err(dir, source))?;
    if !meta.is_dir() {
        return Err(pack_err(
            dir,
            io::Error::new(io::ErrorKind::NotADirectory, "not a directory"),
        ));
    }
    let mut encoder =
        zstd::stream::write::Encoder::new(out, level).map_err(ProjectArchiveError::Write)?;
    // The frame checksum lets unpack detect corruption that still decodes.
    encoder
        .include_checksum(true)
        .map_err(ProjectArchiveError::Write)?;
    let mut builder = Builder::new(encoder);
    let mut rel = Vec::new();
    add_dir_contents(&mut builder, dir, &mut rel, skip)?;
    let encoder = builder.into_inner().map_err(ProjectArchiveError::Write)?;
    encoder.finish().map_err(ProjectArchiveError::Write)
}

fn pack_err(path: &Path, source: io::Error) -> ProjectArchiveError {
    ProjectArchiveError::Pack {
        path: path.to_path_buf(),
        source,
    }
}

/// Adds the children of `abs` (whose path in the archive is `rel`), sorted by name bytes,
/// recursing into directories right after their own entry.
fn add_dir_contents<W: Write>(
    builder: &mut Builder<W>,
    abs: &Path,
    rel: &mut Vec<String>,
    skip: &[&str],
) -> Result<(), ProjectArchiveError> {
    let mut children = Vec::new();
    for entry in fs::read_dir(abs).map_err(|source| pack_err(abs, source))? {
        let entry = entry.map_err(|source| pack_err(abs, source))?;
        let name = entry.file_name();
        if !skip.iter().any(|s| name.as_bytes() == s.as_bytes()) {
            children.push(name);
        }
    }
    children.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    for name in children {
        let child = abs.join(&name);
        let Some(name) = name.to_str() else {
            return Err(ProjectArchiveError::Unpackable {
                path: rel_name(rel, &name.to_string_lossy()),
                reason: Refusal::NotUtf8,
            });
        };
        rel.push(name.to_string());
        add_entry(builder, &child, rel)?;
        rel.pop();
    }
    Ok(())
}

fn rel_name(rel: &[String], last: &str) -> String {
    let mut parts: Vec<&str> = rel.iter().map(String::as_str).collect();
    parts.push(last);
    parts.join("/")
}

fn add_entry<W: Write>(
    builder: &mut Builder<W>,
    abs: &Path,
    rel: &mut Vec<String>,
) -> Result<(), ProjectArchiveError> {
    let meta = fs::symlink_metadata(abs).map_err(|source| pack_err(abs, source))?;
    let name = rel.join("/");
    let file_type = meta.file_type();
    if file_type.is_dir() {
        let mut header = base_header(&meta, EntryType::Directory);
        builder
            .append_data(&mut header, format!("{name}/"), io::empty())
            .map_err(ProjectArchiveError::Write)?;
        add_dir_contents(builder, abs, rel, &[])
    } else if file_type.is_file() {
        let mut header = base_header(&meta, EntryType::Regular);
        header.set_size(meta.len());
        let file = File::open(abs).map_err(|source| pack_err(abs, source))?;
        let data = ExactReader {
            inner: file.take(meta.len()),
            remaining: meta.len(),
        };
        builder
            .append_data(&mut header, &name, data)
            .map_err(|source| pack_err(abs, source))
    } else if file_type.is_symlink() {
        let target = fs::read_link(abs).map_err(|source| pack_err(abs, source))?;
        let parts: Vec<&str> = rel.iter().map(String::as_str).collect();
        let target =
            check_link_target(&parts, target.as_os_str().as_bytes()).map_err(|reason| {
                ProjectArchiveError::Unpackable {
                    path: name.clone(),
                    reason,
                }
            })?;
        let mut header = base_header(&meta, EntryType::Symlink);
        // unpack cannot restore a symlink's own mtime, so keeping it would only make equal
        // trees pack differently.
        header.set_mtime(0);
        builder
            .append_link(&mut header, &name, target)
            .map_err(ProjectArchiveError::Write)
    } else {
        let kind = if file_type.is_fifo() {
            "FIFO"
        } else if file_type.is_socket() {
            "socket"
        } else {
            "device"
        };
        tracing::warn!(path = %name, kind, "skipping special file while packing a project");
        Ok(())
    }
}

/// A header with only the metadata that [`pack`] promises to keep.
fn base_header(meta: &Metadata, entry_type: EntryType) -> Header {
    let mut header = Header::new_gnu();
    header.set_entry_type(entry_type);
    header.set_mode(meta.mode() & 0o777);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(u64::try_from(meta.mtime()).unwrap_or(0));
    header.set_size(0);
    header
}

/// Yields exactly `remaining` bytes or fails: the tar writer trusts the size in the header,
/// so a file that shrinks while being packed must not produce a misaligned archive.
struct ExactReader<R> {
    inner: R,
    remaining: u64,
}

impl<R: Read> Read for ExactReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 {
            return Ok(0);
        }
        let n = self.inner.read(buf)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the file shrank while it was being packed",
            ));
        }
        self.remaining = self.remaining.saturating_sub(n as u64);
        Ok(n)
    }
}
