//! Hostile inputs for the hostile-input corpus and the fuzz targets: zips, tars and worker
//! streams that nothing legitimate writes (names with `..`, absolute names, escaping symlinks,
//! bombs), and a [`Sandbox`] that proves what a refused input did not do: nothing written
//! outside the target directory, no link inside it pointing out, earlier content unchanged.

use std::collections::BTreeMap;
use std::fs;
use std::io::{Cursor, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use tar::{EntryType, Header};
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipWriter};

/// One entry of a hand-made zip.
#[derive(Debug, Clone)]
pub enum ZipItem {
    /// A regular file (stored, or deflated when `deflate`).
    File {
        /// Entry name, written as is.
        name: String,
        /// Content.
        data: Vec<u8>,
        /// Compress with deflate.
        deflate: bool,
    },
    /// A directory entry (`name` should end with `/`).
    Dir(String),
    /// A symlink entry (mode `0o120777`, content = target).
    Link {
        /// Entry name.
        name: String,
        /// Link target, written as is.
        target: String,
    },
    /// A file whose unix mode is `mode` (FIFO, device, ...).
    Mode {
        /// Entry name.
        name: String,
        /// Full unix mode, type bits included.
        mode: u32,
    },
}

/// A zip holding `items` in order; names and targets are written without any check (items the
/// zip writer itself refuses, such as a second entry of the same name, are left out).
pub fn zip_of(items: &[ZipItem]) -> Vec<u8> {
    let mut w = ZipWriter::new(Cursor::new(Vec::new()));
    for item in items {
        match item {
            ZipItem::File {
                name,
                data,
                deflate,
            } => {
                let method = if *deflate {
                    CompressionMethod::Deflated
                } else {
                    CompressionMethod::Stored
                };
                let opts = SimpleFileOptions::default()
                    .compression_method(method)
                    .unix_permissions(0o644);
                // The writer refuses some names (duplicates): such items are left out.
                if w.start_file(name.as_str(), opts).is_ok() {
                    w.write_all(data).expect("zip file data");
                }
            }
            ZipItem::Dir(name) => {
                let _ = w.add_directory(name.as_str(), SimpleFileOptions::default());
            }
            ZipItem::Link { name, target } => {
                let _ = w.add_symlink(name.as_str(), target.as_str(), SimpleFileOptions::default());
            }
            ZipItem::Mode { name, .. } => {
                // The writer keeps only permission bits: the type bits are patched in below.
                let opts = SimpleFileOptions::default()
                    .compression_method(CompressionMethod::Stored)
                    .unix_permissions(0o644);
                let _ = w.start_file(name.as_str(), opts);
            }
        }
    }
    let mut zip = w.finish().expect("zip finish").into_inner();
    for item in items {
        if let ZipItem::Mode { name, mode } = item {
            set_unix_mode(&mut zip, name.as_bytes(), *mode);
        }
    }
    zip
}

/// Sets the unix mode (high 16 bits of the external attributes) of every central-directory
/// entry named `name`.
fn set_unix_mode(zip: &mut [u8], name: &[u8], mode: u32) {
    let mut at = 0;
    while at + 46 <= zip.len() {
        if zip[at..at + 4] != [0x50, 0x4b, 0x01, 0x02] {
            at += 1;
            continue;
        }
        let len = usize::from(u16::from_le_bytes([zip[at + 28], zip[at + 29]]));
        if zip.get(at + 46..at + 46 + len) == Some(name) {
            zip[at + 38..at + 42].copy_from_slice(&(mode << 16).to_le_bytes());
        }
        at += 46;
    }
}

/// A deflated zip of `entries` files of `size` zero bytes each (a high-ratio bomb).
pub fn zip_bomb(entries: usize, size: usize) -> Vec<u8> {
    let mut w = ZipWriter::new(Cursor::new(Vec::new()));
    let chunk = vec![0u8; 1 << 20];
    for i in 0..entries {
        let opts = SimpleFileOptions::default()
            .compression_method(CompressionMethod::Deflated)
            .compression_level(Some(9))
            .large_file(size as u64 >= u32::MAX as u64);
        w.start_file(format!("bomb{i}"), opts).expect("zip entry");
        let mut left = size;
        while left > 0 {
            let n = left.min(chunk.len());
            w.write_all(&chunk[..n]).expect("zip data");
            left -= n;
        }
    }
    w.finish().expect("zip finish").into_inner()
}

/// A worker stream: `lines` (each gets a `\n`), then `zip` as a zipfile frame, then `eof` if
/// asked.
pub fn worker_stream(lines: &[&str], zip: Option<&[u8]>, eof: bool) -> Vec<u8> {
    let mut out = Vec::new();
    for line in lines {
        out.extend_from_slice(line.as_bytes());
        out.push(b'\n');
    }
    if let Some(zip) = zip {
        out.extend_from_slice(format!("{{\"zipfile\": {}}}\n", zip.len()).as_bytes());
        out.extend_from_slice(STANDARD.encode(zip).as_bytes());
    }
    if eof {
        out.extend_from_slice(b"{\"eof\": true}\n");
    }
    out
}

/// A tar header with `name` (raw bytes, up to 100, never checked), `kind` and `size`.
pub fn tar_header(name: &[u8], kind: EntryType, size: u64, link: &[u8]) -> Header {
    let mut h = Header::new_gnu();
    let n = name.len().min(100);
    h.as_old_mut().name[..n].copy_from_slice(&name[..n]);
    let l = link.len().min(100);
    h.as_old_mut().linkname[..l].copy_from_slice(&link[..l]);
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(0o644);
    h.set_mtime(1_600_000_000);
    h.set_uid(0);
    h.set_gid(0);
    h.set_cksum();
    h
}

/// One entry of a hand-made tar.
#[derive(Debug, Clone)]
pub struct TarItem {
    /// Entry name (raw).
    pub name: Vec<u8>,
    /// Entry type.
    pub kind: EntryType,
    /// Link target for symlinks and hard links (raw).
    pub link: Vec<u8>,
    /// Data (regular files).
    pub data: Vec<u8>,
}

impl TarItem {
    /// A regular file.
    pub fn file(name: &str, data: &[u8]) -> Self {
        TarItem {
            name: name.as_bytes().to_vec(),
            kind: EntryType::Regular,
            link: Vec::new(),
            data: data.to_vec(),
        }
    }

    /// A symlink.
    pub fn symlink(name: &str, target: &str) -> Self {
        TarItem {
            name: name.as_bytes().to_vec(),
            kind: EntryType::Symlink,
            link: target.as_bytes().to_vec(),
            data: Vec::new(),
        }
    }

    /// A hard link.
    pub fn hardlink(name: &str, target: &str) -> Self {
        TarItem {
            kind: EntryType::Link,
            ..TarItem::symlink(name, target)
        }
    }

    /// Any other entry type, without data.
    pub fn other(name: &str, kind: EntryType) -> Self {
        TarItem {
            name: name.as_bytes().to_vec(),
            kind,
            link: Vec::new(),
            data: Vec::new(),
        }
    }
}

/// The uncompressed tar of `items`, ended by two zero blocks.
pub fn tar_of(items: &[TarItem]) -> Vec<u8> {
    let mut out = Vec::new();
    for item in items {
        let h = tar_header(&item.name, item.kind, item.data.len() as u64, &item.link);
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(&item.data);
        out.extend(std::iter::repeat_n(
            0u8,
            (512 - item.data.len() % 512) % 512,
        ));
    }
    out.extend_from_slice(&[0u8; 1024]);
    out
}

/// `tar` compressed with zstd.
pub fn zst(tar: &[u8]) -> Vec<u8> {
    zstd::encode_all(tar, 3).expect("zstd")
}

/// A tar.zst whose only file declares `size` bytes and holds that many zeros, made in chunks.
pub fn zstd_zero_file(name: &str, size: u64) -> Vec<u8> {
    let mut enc = zstd::stream::write::Encoder::new(Vec::new(), 3).expect("zstd");
    let h = tar_header(name.as_bytes(), EntryType::Regular, size, b"");
    enc.write_all(h.as_bytes()).expect("zstd");
    let chunk = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        let n = left.min(chunk.len() as u64);
        enc.write_all(&chunk[..n as usize]).expect("zstd");
        left -= n;
    }
    let pad = (512 - size % 512) % 512;
    enc.write_all(&vec![0u8; pad as usize]).expect("zstd");
    enc.write_all(&[0u8; 1024]).expect("zstd");
    enc.finish().expect("zstd")
}

/// `n` zero bytes compressed with zstd (a tar end marker followed by far too much padding).
pub fn zstd_zeros(n: usize) -> Vec<u8> {
    let mut enc = zstd::stream::write::Encoder::new(Vec::new(), 3).expect("zstd");
    let chunk = vec![0u8; 1 << 20];
    let mut left = n;
    while left > 0 {
        let k = left.min(chunk.len());
        enc.write_all(&chunk[..k]).expect("zstd");
        left -= k;
    }
    enc.finish().expect("zstd")
}

/// What is on disk at a path, as compared by [`Sandbox`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    /// A directory and its mode.
    Dir(u32),
    /// A file: mode, content.
    File(u32, Vec<u8>),
    /// A symlink and its target.
    Link(PathBuf),
    /// Anything else.
    Other(u32),
}

/// Every path below `root` (relative) and what it is.
pub fn snapshot(root: &Path) -> BTreeMap<PathBuf, Seen> {
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Seen>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let rel = path.strip_prefix(root).unwrap_or(&path).to_path_buf();
        let Ok(meta) = fs::symlink_metadata(&path) else {
            continue;
        };
        let mode = meta.mode() & 0o7777;
        let seen = if meta.file_type().is_symlink() {
            Seen::Link(fs::read_link(&path).unwrap_or_default())
        } else if meta.is_dir() {
            walk(root, &path, out);
            Seen::Dir(mode)
        } else if meta.is_file() {
            Seen::File(mode, fs::read(&path).unwrap_or_default())
        } else {
            Seen::Other(meta.mode())
        };
        out.insert(rel, seen);
    }
}

/// A temp root with `outside/` (a sentinel file) and `target/` (the directory under test, with
/// one earlier file), to prove that a refused input changed nothing it must not.
pub struct Sandbox {
    _tmp: tempfile::TempDir,
    /// The temp root.
    pub root: PathBuf,
    /// The directory the code under test writes into.
    pub target: PathBuf,
    before: BTreeMap<PathBuf, Seen>,
}

/// Content of the file `target/earlier.txt` every sandbox starts with.
pub const EARLIER: &[u8] = b"written before the hostile input arrived\n";

impl Sandbox {
    /// A fresh sandbox; the snapshot of "before" is taken now.
    pub fn new() -> Sandbox {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = tmp.path().to_path_buf();
        let target = root.join("target");
        fs::create_dir_all(root.join("outside")).expect("mkdir");
        fs::write(root.join("outside/sentinel"), b"must stay as it is\n").expect("write");
        fs::create_dir_all(&target).expect("mkdir");
        fs::write(target.join("earlier.txt"), EARLIER).expect("write");
        let before = snapshot(&root);
        Sandbox {
            _tmp: tmp,
            root,
            target,
            before,
        }
    }

    /// Takes the "before" snapshot again (after a test prepared more state).
    pub fn rebase(&mut self) {
        self.before = snapshot(&self.root);
    }

    /// Panics unless nothing outside `target` changed, `target/earlier.txt` is intact, and no
    /// symlink inside `target` resolves outside it.
    pub fn assert_contained(&self, case: &str) {
        let outside = |m: &BTreeMap<PathBuf, Seen>| -> BTreeMap<PathBuf, Seen> {
            m.iter()
                .filter(|(p, _)| !p.starts_with("target"))
                .map(|(p, s)| (p.clone(), s.clone()))
                .collect()
        };
        let now = snapshot(&self.root);
        assert_eq!(
            outside(&now),
            outside(&self.before),
            "{case}: something outside the target dir changed"
        );
        assert_eq!(
            fs::read(self.target.join("earlier.txt")).ok().as_deref(),
            Some(EARLIER),
            "{case}: earlier content of the target dir changed"
        );
        assert_links_inside(&self.target, case);
    }

    /// Panics unless `target` is exactly as it was (nothing stored at all).
    pub fn assert_untouched(&self, case: &str) {
        self.assert_contained(case);
        let now = snapshot(&self.root);
        assert_eq!(now, self.before, "{case}: the target dir changed");
    }
}

impl Default for Sandbox {
    fn default() -> Self {
        Sandbox::new()
    }
}

/// Panics if a symlink below `dir` resolves (lexically, following links below `dir`) outside it.
pub fn assert_links_inside(dir: &Path, case: &str) {
    let Ok(canon_dir) = fs::canonicalize(dir) else {
        return;
    };
    for (rel, seen) in snapshot(dir) {
        if let Seen::Link(target) = seen {
            let link = dir.join(&rel);
            assert!(
                !target.is_absolute(),
                "{case}: symlink {rel:?} has absolute target {target:?}"
            );
            let lexical = normalize(&link.parent().unwrap_or(dir).join(&target));
            assert!(
                lexical.starts_with(dir),
                "{case}: symlink {rel:?} -> {target:?} points outside the target dir"
            );
            if let Ok(real) = fs::canonicalize(&link) {
                assert!(
                    real.starts_with(&canon_dir),
                    "{case}: symlink {rel:?} resolves to {real:?}, outside the target dir"
                );
            }
        }
    }
}

fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// The peak resident set (VmHWM) of this process, in bytes.
pub fn peak_rss() -> Option<u64> {
    proc_status_kb("VmHWM:").map(|kb| kb * 1024)
}

fn proc_status_kb(key: &str) -> Option<u64> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(key))?;
    line[key.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}
