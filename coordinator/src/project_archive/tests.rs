//! Tests of project archives: round trips and determinism of real trees, and one hand-made
//! hostile archive per refusal (built with the tar crate's low-level `Header` API or raw
//! bytes), each also checking that nothing appeared outside the destination.

use std::fs::{self, File, FileTimes};
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::Path;
use std::time::{Duration, SystemTime};

use tar::{EntryType, Header};
use tempfile::TempDir;

use super::unpack::{CopyError, copy_at_most};
use super::*;

// ---------- hand-made archives ----------

const MTIME: u64 = 1_600_000_000;

fn header(name: &[u8], entry_type: EntryType, size: u64) -> Header {
    let mut h = Header::new_gnu();
    h.as_old_mut().name[..name.len()].copy_from_slice(name);
    h.set_entry_type(entry_type);
    h.set_size(size);
    h.set_mode(0o644);
    h.set_mtime(MTIME);
    h.set_uid(0);
    h.set_gid(0);
    h.set_cksum();
    h
}

fn link_header(name: &[u8], entry_type: EntryType, target: &[u8]) -> Header {
    let mut h = header(name, entry_type, 0);
    h.as_old_mut().linkname[..target.len()].copy_from_slice(target);
    h.set_cksum();
    h
}

/// Raw tar bytes, entry by entry.
struct Tar(Vec<u8>);

impl Tar {
    fn new() -> Self {
        Tar(Vec::new())
    }

    fn raw(mut self, h: &Header, data: &[u8]) -> Self {
        self.0.extend_from_slice(h.as_bytes());
        self.0.extend_from_slice(data);
        let pad = (512 - data.len() % 512) % 512;
        self.0.extend(std::iter::repeat_n(0u8, pad));
        self
    }

    fn file(self, name: &str, data: &[u8]) -> Self {
        let h = header(name.as_bytes(), EntryType::Regular, data.len() as u64);
        self.raw(&h, data)
    }

    fn dir(self, name: &str) -> Self {
        self.raw(&header(name.as_bytes(), EntryType::Directory, 0), b"")
    }

    fn symlink(self, name: &str, target: &str) -> Self {
        let h = link_header(name.as_bytes(), EntryType::Symlink, target.as_bytes());
        self.raw(&h, b"")
    }

    fn hardlink(self, name: &str, target: &str) -> Self {
        let h = link_header(name.as_bytes(), EntryType::Link, target.as_bytes());
        self.raw(&h, b"")
    }

    /// A GNU long-name/long-link ('L'/'K') or PAX ('x'/'g') record.
    fn record(self, entry_type: EntryType, data: &[u8]) -> Self {
        let h = header(b"././@LongLink", entry_type, data.len() as u64);
        self.raw(&h, data)
    }

    fn end(mut self) -> Vec<u8> {
        self.0.extend_from_slice(&[0u8; 1024]);
        self.0
    }

    fn without_end(self) -> Vec<u8> {
        self.0
    }
}

fn pax(records: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (key, value) in records {
        let body = [b" ", key.as_bytes(), b"=", value, b"\n"].concat();
        // The length prefix counts itself.
        let mut len = body.len() + 1;
        while len.to_string().len() + body.len() != len {
            len += 1;
        }
        out.extend_from_slice(len.to_string().as_bytes());
        out.extend_from_slice(&body);
    }
    out
}

fn zst(tar: &[u8]) -> Vec<u8> {
    zstd::encode_all(tar, 3).unwrap()
}

/// A temp dir whose only child should ever be `out`, the destination.
struct Scratch(TempDir);

impl Scratch {
    fn new() -> Self {
        Scratch(tempfile::tempdir().unwrap())
    }

    fn dest(&self) -> std::path::PathBuf {
        self.0.path().join("out")
    }

    fn unpack(
        &self,
        archive: &[u8],
        limits: &UnpackLimits,
    ) -> Result<UnpackSummary, ProjectArchiveError> {
        let result = unpack(archive, &self.dest(), limits);
        let names: Vec<String> = fs::read_dir(self.0.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["out"], "something was written outside dest");
        result
    }
}

fn refusal(result: Result<UnpackSummary, ProjectArchiveError>) -> (String, Refusal) {
    match result {
        Err(ProjectArchiveError::Refused { entry, reason }) => (entry, reason),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// Unpacks a hand-made tar (compressed here) with default limits and returns the refusal.
fn refused(tar: Vec<u8>) -> Refusal {
    refusal(Scratch::new().unpack(&zst(&tar), &UnpackLimits::default())).1
}

fn corrupt(result: Result<UnpackSummary, ProjectArchiveError>) -> String {
    match result {
        Err(e @ ProjectArchiveError::Corrupt { .. }) => {
            let mut text = e.to_string();
            if let Some(source) = std::error::Error::source(&e) {
                text.push_str(&format!(" / {source}"));
            }
            text
        }
        other => panic!("expected a corrupt-archive error, got {other:?}"),
    }
}

// ---------- real trees ----------

#[derive(Debug, PartialEq)]
enum Node {
    Dir {
        mode: u32,
        mtime: i64,
    },
    File {
        mode: u32,
        mtime: i64,
        data: Vec<u8>,
    },
    Link {
        target: String,
    },
}

/// Everything below `root` that an archive must keep, in path order.
fn snapshot(root: &Path) -> Vec<(String, Node)> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, Node)>) {
        let mut names: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        for name in names {
            let path = dir.join(&name);
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let meta = fs::symlink_metadata(&path).unwrap();
            let mode = meta.mode() & 0o7777;
            if meta.file_type().is_symlink() {
                let target = fs::read_link(&path).unwrap().to_string_lossy().into_owned();
                out.push((rel, Node::Link { target }));
            } else if meta.is_dir() {
                out.push((
                    rel,
                    Node::Dir {
                        mode,
                        mtime: meta.mtime(),
                    },
                ));
                walk(root, &path, out);
            } else {
                let data = fs::read(&path).unwrap();
                out.push((
                    rel,
                    Node::File {
                        mode,
                        mtime: meta.mtime(),
                        data,
                    },
                ));
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out
}

fn set_mtime(path: &Path, secs: u64) {
    let time = SystemTime::UNIX_EPOCH + Duration::from_secs(secs);
    File::open(path).unwrap().set_modified(time).unwrap();
}

fn write_mode(path: &Path, data: &[u8], mode: u32) {
    fs::write(path, data).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

const LONG_DIR: &str = "a-directory-name-that-is-rather-long-on-purpose-0123456789";
const LONG_FILE: &str = "and-a-file-name-that-is-long-as-well-so-the-path-passes-100-bytes.yml";

/// The tree of the round-trip test. `reverse` creates the same tree in another order, so
/// directory listings come back in another order.
fn sample_tree(root: &Path, reverse: bool) {
    type Step = Box<dyn Fn(&Path)>;
    let mut steps: Vec<Step> = vec![
        Box::new(|r| {
            fs::create_dir_all(r.join("a/b/c")).unwrap();
            fs::write(r.join("a/b/c/deep.txt"), "deep\n").unwrap();
        }),
        Box::new(|r| write_mode(&r.join("run.sh"), b"#!/bin/sh\necho hi\n", 0o755)),
        Box::new(|r| write_mode(&r.join("readonly.txt"), b"do not touch\n", 0o444)),
        Box::new(|r| {
            let bytes: Vec<u8> = (0..=255u8).cycle().take(256 * 40 + 7).collect();
            fs::write(r.join("binary.dat"), bytes).unwrap();
        }),
        Box::new(|r| fs::write(r.join("empty.txt"), "").unwrap()),
        Box::new(|r| fs::create_dir(r.join("empty_dir")).unwrap()),
        Box::new(|r| {
            fs::create_dir_all(r.join(LONG_DIR)).unwrap();
            fs::write(r.join(LONG_DIR).join(LONG_FILE), "long: yes\n").unwrap();
        }),
    ];
    if reverse {
        steps.reverse();
    }
    for step in steps {
        step(root);
    }
    symlink("a/b/c/deep.txt", root.join("link_rel")).unwrap();
    symlink("b", root.join("a/dirlink")).unwrap();
    symlink("../../run.sh", root.join("a/b/up")).unwrap();
    symlink(format!("{LONG_DIR}/{LONG_FILE}"), root.join("long_target")).unwrap();
    // Fixed mtimes, directories last (writing into a directory changes its mtime).
    for file in ["run.sh", "readonly.txt", "binary.dat", "empty.txt"] {
        set_mtime(&root.join(file), 1_500_000_000);
    }
    set_mtime(&root.join(LONG_DIR).join(LONG_FILE), 1_500_000_000);
    set_mtime(&root.join("a/b/c/deep.txt"), 1_000_000_000); // 2001: an old one
    for dir in ["a/b/c", "a/b", "a", "empty_dir", LONG_DIR] {
        set_mtime(&root.join(dir), 1_100_000_000);
    }
}

fn pack_to_vec(dir: &Path) -> Vec<u8> {
    pack(dir, Vec::new(), DEFAULT_LEVEL).unwrap()
}

#[test]
fn round_trip_keeps_bytes_modes_links_and_mtimes() {
    let src = tempfile::tempdir().unwrap();
    sample_tree(src.path(), false);
    let archive = pack_to_vec(src.path());

    let scratch = Scratch::new();
    let summary = scratch.unpack(&archive, &UnpackLimits::default()).unwrap();

    assert_eq!(snapshot(&scratch.dest()), snapshot(src.path()));
    let long_file = format!("{LONG_DIR}/{LONG_FILE}");
    let mut expected_files = vec![
        "a/b/c/deep.txt",
        long_file.as_str(),
        "binary.dat",
        "empty.txt",
        "readonly.txt",
        "run.sh",
    ];
    expected_files.sort();
    assert_eq!(summary.files, expected_files);
    // 5 dirs, 6 files, 4 symlinks.
    assert_eq!(summary.entries, 15);
    let bytes: u64 = expected_files
        .iter()
        .map(|f| fs::metadata(src.path().join(f)).unwrap().len())
        .sum();
    assert_eq!(summary.bytes, bytes);
}

#[test]
fn packed_entries_are_sorted_and_anonymous() {
    let src = tempfile::tempdir().unwrap();
    sample_tree(src.path(), false);
    let tar = zstd::decode_all(&pack_to_vec(src.path())[..]).unwrap();
    let mut archive = tar::Archive::new(&tar[..]);
    let mut names = Vec::new();
    for entry in archive.entries().unwrap() {
        let entry = entry.unwrap();
        let h = entry.header();
        assert_eq!((h.uid().unwrap(), h.gid().unwrap()), (0, 0));
        assert_eq!(h.username_bytes().unwrap_or_default(), b"");
        assert_eq!(h.groupname_bytes().unwrap_or_default(), b"");
        names.push(entry.path().unwrap().to_string_lossy().into_owned());
    }
    let expected = [
        "a/",
        "a/b/",
        "a/b/c/",
        "a/b/c/deep.txt",
        "a/b/up",
        "a/dirlink",
        &format!("{LONG_DIR}/"),
        &format!("{LONG_DIR}/{LONG_FILE}"),
        "binary.dat",
        "empty.txt",
        "empty_dir/",
        "link_rel",
        "long_target",
        "readonly.txt",
        "run.sh",
    ];
    assert_eq!(names, expected);
}

#[test]
fn packing_is_deterministic_across_runs_creation_order_and_atime() {
    let one = tempfile::tempdir().unwrap();
    let two = tempfile::tempdir().unwrap();
    sample_tree(one.path(), false);
    sample_tree(two.path(), true);
    let first = pack_to_vec(one.path());
    assert_eq!(pack_to_vec(one.path()), first);
    assert_eq!(
        pack_to_vec(two.path()),
        first,
        "creation order leaked into the archive"
    );

    let touched = one.path().join("binary.dat");
    let mut data = Vec::new();
    File::open(&touched)
        .unwrap()
        .read_to_end(&mut data)
        .unwrap();
    let later = SystemTime::now() + Duration::from_secs(3600);
    File::options()
        .write(true)
        .open(&touched)
        .unwrap()
        .set_times(FileTimes::new().set_accessed(later))
        .unwrap();
    assert_eq!(
        pack_to_vec(one.path()),
        first,
        "atime leaked into the archive"
    );
}

#[test]
fn special_bits_are_dropped_by_pack_and_by_unpack() {
    let src = tempfile::tempdir().unwrap();
    write_mode(&src.path().join("suid"), b"x", 0o4755);
    fs::create_dir(src.path().join("sticky")).unwrap();
    fs::set_permissions(
        src.path().join("sticky"),
        fs::Permissions::from_mode(0o1777),
    )
    .unwrap();
    let scratch = Scratch::new();
    scratch
        .unpack(&pack_to_vec(src.path()), &UnpackLimits::default())
        .unwrap();
    let mode = |p: &str| fs::metadata(scratch.dest().join(p)).unwrap().mode() & 0o7777;
    assert_eq!(mode("suid"), 0o755);
    assert_eq!(mode("sticky"), 0o777);

    let mut suid = header(b"f", EntryType::Regular, 1);
    suid.set_mode(0o6755);
    suid.set_cksum();
    let mut sticky = header(b"d", EntryType::Directory, 0);
    sticky.set_mode(0o1755);
    sticky.set_cksum();
    let tar = Tar::new().raw(&suid, b"x").raw(&sticky, b"").end();
    let scratch = Scratch::new();
    scratch
        .unpack(&zst(&tar), &UnpackLimits::default())
        .unwrap();
    let mode = |p: &str| fs::metadata(scratch.dest().join(p)).unwrap().mode() & 0o7777;
    assert_eq!(mode("f"), 0o755);
    assert_eq!(mode("d"), 0o755);
}

#[test]
fn pack_refuses_escaping_symlinks_and_non_utf8_names_and_skips_sockets() {
    let src = tempfile::tempdir().unwrap();
    symlink("/etc/passwd", src.path().join("abs")).unwrap();
    match pack(src.path(), Vec::new(), DEFAULT_LEVEL) {
        Err(ProjectArchiveError::Unpackable { path, reason }) => {
            assert_eq!(path, "abs");
            assert!(matches!(reason, Refusal::AbsoluteLinkTarget { .. }));
        }
        other => panic!("expected Unpackable, got {other:?}"),
    }
    fs::remove_file(src.path().join("abs")).unwrap();

    fs::create_dir(src.path().join("d")).unwrap();
    symlink("../../up", src.path().join("d/l")).unwrap();
    assert!(matches!(
        pack(src.path(), Vec::new(), DEFAULT_LEVEL),
        Err(ProjectArchiveError::Unpackable {
            reason: Refusal::LinkEscapes { .. },
            ..
        })
    ));
    fs::remove_file(src.path().join("d/l")).unwrap();

    use std::os::unix::ffi::OsStrExt;
    let bad = src.path().join(std::ffi::OsStr::from_bytes(b"bad\xff"));
    fs::write(&bad, "x").unwrap();
    assert!(matches!(
        pack(src.path(), Vec::new(), DEFAULT_LEVEL),
        Err(ProjectArchiveError::Unpackable {
            reason: Refusal::NotUtf8,
            ..
        })
    ));
    fs::remove_file(&bad).unwrap();

    let _socket = std::os::unix::net::UnixListener::bind(src.path().join("sock")).unwrap();
    fs::write(src.path().join("kept"), "k").unwrap();
    let scratch = Scratch::new();
    let summary = scratch
        .unpack(&pack_to_vec(src.path()), &UnpackLimits::default())
        .unwrap();
    assert_eq!(summary.files, ["kept"]);
    assert!(!scratch.dest().join("sock").exists());
}

#[test]
fn hard_links_to_earlier_files_are_kept_as_hard_links() {
    let tar = Tar::new()
        .file("f", b"shared")
        .dir("sub")
        .hardlink("sub/h", "f")
        .end();
    let scratch = Scratch::new();
    let summary = scratch
        .unpack(&zst(&tar), &UnpackLimits::default())
        .unwrap();
    assert_eq!(summary.files, ["f", "sub/h"]);
    let ino = |p: &str| fs::metadata(scratch.dest().join(p)).unwrap().ino();
    assert_eq!(ino("f"), ino("sub/h"));
    assert_eq!(fs::read(scratch.dest().join("sub/h")).unwrap(), b"shared");
}

#[test]
fn archives_from_other_writers_are_accepted() {
    // `./` prefixes, a root entry, implicit parents, a git-archive style global header, a PAX
    // path longer than the header field, and GNU-style zero padding to a 10 KiB record.
    let long = format!("{}/file", "p".repeat(150));
    let mut tar = Tar::new()
        .record(EntryType::XGlobalHeader, &pax(&[("comment", b"0123abcd")]))
        .dir("./")
        .file("./x/y/z.txt", b"z")
        .record(
            EntryType::XHeader,
            &pax(&[("path", long.as_bytes()), ("mtime", b"1.5")]),
        )
        .file("placeholder", b"long")
        .end();
    tar.extend(std::iter::repeat_n(0u8, 9 * 1024));
    let scratch = Scratch::new();
    let summary = scratch
        .unpack(&zst(&tar), &UnpackLimits::default())
        .unwrap();
    assert_eq!(summary.files, [long.clone(), "x/y/z.txt".to_string()]);
    // x, x/y, ppp… are created as parents; the files; the root entry creates nothing.
    assert_eq!(summary.entries, 5);
    assert_eq!(fs::read(scratch.dest().join(&long)).unwrap(), b"long");
    assert_eq!(
        fs::metadata(scratch.dest().join("x/y/z.txt"))
            .unwrap()
            .mtime(),
        MTIME as i64
    );
}

// ---------- hostile names ----------

#[test]
fn refuses_absolute_parent_empty_nul_and_non_utf8_names() {
    assert_eq!(
        refused(Tar::new().file("/etc/evil", b"x").end()),
        Refusal::AbsolutePath
    );
    assert_eq!(
        refused(Tar::new().file("../evil", b"x").end()),
        Refusal::ParentComponent
    );
    assert_eq!(
        refused(Tar::new().dir("a").file("a/../../evil", b"x").end()),
        Refusal::ParentComponent
    );
    assert_eq!(refused(Tar::new().file("", b"x").end()), Refusal::EmptyName);
    assert_eq!(
        refused(Tar::new().file("./", b"x").end()),
        Refusal::EmptyName
    );
    assert_eq!(
        refused(
            Tar::new()
                .raw(&header(b"bad\xff", EntryType::Regular, 0), b"")
                .end()
        ),
        Refusal::NotUtf8
    );
    let tar = Tar::new()
        .record(EntryType::GNULongName, b"safe\0/../../evil\0")
        .file("placeholder", b"x")
        .end();
    assert_eq!(refused(tar), Refusal::NulByte);
}

#[test]
fn long_names_and_pax_paths_are_checked_like_header_names() {
    let tar = Tar::new()
        .record(EntryType::GNULongName, b"../../../../tmp/evil\0")
        .file("harmless", b"x")
        .end();
    let (entry, reason) = refusal(Scratch::new().unpack(&zst(&tar), &UnpackLimits::default()));
    assert_eq!(
        (entry.as_str(), reason),
        ("../../../../tmp/evil", Refusal::ParentComponent)
    );

    let tar = Tar::new()
        .record(EntryType::XHeader, &pax(&[("path", b"/etc/cron.d/evil")]))
        .file("harmless", b"x")
        .end();
    assert_eq!(refused(tar), Refusal::AbsolutePath);

    let tar = Tar::new()
        .record(EntryType::XHeader, &pax(&[("linkpath", b"../../etc")]))
        .symlink("l", "harmless")
        .end();
    assert!(matches!(refused(tar), Refusal::LinkEscapes { .. }));

    let tar = Tar::new()
        .record(EntryType::GNULongLink, b"/etc/shadow\0")
        .symlink("l", "harmless")
        .end();
    assert!(matches!(refused(tar), Refusal::AbsoluteLinkTarget { .. }));

    let tar = Tar::new()
        .record(EntryType::XGlobalHeader, &pax(&[("path", b"evil")]))
        .file("f", b"x")
        .end();
    assert!(matches!(refused(tar), Refusal::GlobalPaxKey { .. }));
}

#[test]
fn refuses_malformed_or_misused_extension_records() {
    let tar = Tar::new()
        .record(EntryType::GNULongName, b"one\0")
        .record(EntryType::GNULongName, b"two\0")
        .file("f", b"x")
        .end();
    assert_eq!(
        refused(tar),
        Refusal::RepeatedExtension {
            kind: "GNU long name"
        }
    );

    let tar = Tar::new().record(EntryType::GNULongName, b"orphan\0").end();
    assert_eq!(refused(tar), Refusal::DanglingExtension);

    let big = vec![b'a'; 1 << 20];
    let tar = Tar::new()
        .record(EntryType::GNULongName, &big)
        .file("f", b"x")
        .end();
    assert!(matches!(refused(tar), Refusal::MetadataTooLarge { .. }));

    let tar = Tar::new()
        .record(EntryType::XHeader, b"not a pax record\n")
        .file("f", b"x")
        .end();
    assert_eq!(refused(tar), Refusal::BadPax);

    // A reader honouring PAX size would see different entries than one that does not.
    let tar = Tar::new()
        .record(EntryType::XHeader, &pax(&[("size", b"0")]))
        .file("f", b"x")
        .end();
    assert_eq!(refused(tar), Refusal::PaxSize { pax: 0, header: 1 });

    let tar = Tar::new()
        .record(EntryType::XHeader, &pax(&[("GNU.sparse.major", b"1")]))
        .file("f", b"x")
        .end();
    assert_eq!(refused(tar), Refusal::Sparse);
}

// ---------- hostile links ----------

#[test]
fn refuses_symlinks_that_are_absolute_or_climb_out() {
    assert!(matches!(
        refused(Tar::new().symlink("l", "/etc").end()),
        Refusal::AbsoluteLinkTarget { .. }
    ));
    assert!(matches!(
        refused(Tar::new().symlink("l", "..").end()),
        Refusal::LinkEscapes { .. }
    ));
    assert!(matches!(
        refused(Tar::new().dir("a").symlink("a/l", "../../x").end()),
        Refusal::LinkEscapes { .. }
    ));
    assert_eq!(
        refused(
            Tar::new()
                .raw(&header(b"l", EntryType::Symlink, 0), b"")
                .end()
        ),
        Refusal::EmptyLinkTarget
    );
}

#[test]
fn refuses_a_link_that_climbs_through_another_link() {
    // sub/q -> .. is the root (fine on its own); sub/q/.. would then be above the root.
    let scratch = Scratch::new();
    let ok = Tar::new().dir("sub").symlink("sub/q", "..").end();
    scratch.unpack(&zst(&ok), &UnpackLimits::default()).unwrap();

    let tar = Tar::new()
        .dir("sub")
        .symlink("sub/q", "..")
        .symlink("r", "sub/q/..")
        .end();
    let (entry, reason) = refusal(Scratch::new().unpack(&zst(&tar), &UnpackLimits::default()));
    assert_eq!(entry, "r");
    assert!(matches!(reason, Refusal::LinkParentAfterName { .. }));
}

#[test]
fn refuses_entries_through_a_symlink_of_the_archive() {
    let scratch = Scratch::new();
    let tar = Tar::new()
        .dir("d")
        .symlink("l", "d")
        .file("l/planted", b"x")
        .end();
    let (entry, reason) = refusal(scratch.unpack(&zst(&tar), &UnpackLimits::default()));
    assert_eq!(entry, "l/planted");
    assert_eq!(
        reason,
        Refusal::ThroughSymlink {
            link: "l".to_string()
        }
    );
    assert!(!scratch.dest().join("d/planted").exists());

    // The same through a directory entry and through a hard link's name.
    let tar = Tar::new().symlink("l", ".").dir("l/x").end();
    assert!(matches!(refused(tar), Refusal::ThroughSymlink { .. }));
    let tar = Tar::new()
        .file("f", b"x")
        .symlink("l", ".")
        .hardlink("l/h", "f")
        .end();
    assert!(matches!(refused(tar), Refusal::ThroughSymlink { .. }));
}

#[test]
fn refuses_replacing_an_entry_and_files_as_parents() {
    // Writing "l" again must not write through the link.
    let scratch = Scratch::new();
    let tar = Tar::new().symlink("l", "target").file("l", b"x").end();
    let (_, reason) = refusal(scratch.unpack(&zst(&tar), &UnpackLimits::default()));
    assert_eq!(reason, Refusal::Duplicate);
    assert!(!scratch.dest().join("target").exists());

    assert_eq!(
        refused(Tar::new().file("x", b"1").file("x", b"2").end()),
        Refusal::Duplicate
    );
    assert_eq!(
        refused(Tar::new().file("f", b"1").file("f/x", b"2").end()),
        Refusal::ParentNotDirectory {
            parent: "f".to_string()
        }
    );
}

#[test]
fn refuses_hard_links_except_to_earlier_regular_files() {
    let cases = [
        Tar::new().hardlink("h", "missing").end(),
        Tar::new().hardlink("h", "/etc/passwd").end(),
        Tar::new().hardlink("h", "../outside").end(),
        Tar::new().dir("d").hardlink("h", "d").end(),
        Tar::new()
            .file("f", b"x")
            .symlink("s", "f")
            .hardlink("h", "s")
            .end(),
        Tar::new().hardlink("h", "later").file("later", b"x").end(),
    ];
    for tar in cases {
        assert!(matches!(refused(tar), Refusal::HardLinkTarget { .. }));
    }
}

// ---------- hostile types ----------

#[test]
fn refuses_devices_fifos_sparse_and_unknown_types() {
    let one = |entry_type| refused(Tar::new().raw(&header(b"x", entry_type, 0), b"").end());
    assert_eq!(
        one(EntryType::Char),
        Refusal::SpecialFile {
            kind: "character device"
        }
    );
    assert_eq!(
        one(EntryType::Block),
        Refusal::SpecialFile {
            kind: "block device"
        }
    );
    assert_eq!(one(EntryType::Fifo), Refusal::SpecialFile { kind: "FIFO" });
    assert_eq!(one(EntryType::GNUSparse), Refusal::Sparse);
    assert_eq!(one(EntryType::new(b'Z')), Refusal::UnknownType(b'Z'));
}

#[test]
fn refuses_data_on_directories_and_impossible_mtimes() {
    let tar = Tar::new()
        .raw(&header(b"d", EntryType::Directory, 4), b"data")
        .end();
    assert_eq!(
        refused(tar),
        Refusal::DataOnNonFile {
            kind: "directory",
            size: 4
        }
    );

    let mut h = header(b"f", EntryType::Regular, 0);
    h.set_mtime(1 << 40);
    h.set_cksum();
    assert_eq!(
        refused(Tar::new().raw(&h, b"").end()),
        Refusal::MtimeOutOfRange(1 << 40)
    );
}

// ---------- bombs and limits ----------

fn small_limits() -> UnpackLimits {
    UnpackLimits {
        max_entries: 10,
        max_total_bytes: 1 << 20,
        max_entry_bytes: 1 << 20,
        ..UnpackLimits::default()
    }
}

#[test]
fn refuses_more_entries_than_allowed() {
    let mut tar = Tar::new();
    for i in 0..11 {
        tar = tar.file(&format!("f{i}"), b"x");
    }
    let scratch = Scratch::new();
    let (entry, reason) = refusal(scratch.unpack(&zst(&tar.end()), &small_limits()));
    assert_eq!(
        (entry.as_str(), reason),
        ("f10", Refusal::TooManyEntries { limit: 10 })
    );
}

#[test]
fn parents_the_archive_leaves_implicit_count_as_entries() {
    let deep = format!("{}f", "d/".repeat(10));
    let tar = Tar::new().file(&deep, b"x").end();
    let (_, reason) = refusal(Scratch::new().unpack(&zst(&tar), &small_limits()));
    assert_eq!(reason, Refusal::TooManyEntries { limit: 10 });
}

#[test]
fn names_longer_than_path_max_are_refused() {
    let long = "n".repeat(5000);
    let tar = Tar::new()
        .record(EntryType::XHeader, &pax(&[("path", long.as_bytes())]))
        .file("f", b"x")
        .end();
    assert_eq!(
        refused(tar),
        Refusal::NameTooLong {
            len: 5000,
            limit: 4096
        }
    );
}

#[test]
fn a_zero_bomb_is_refused_by_its_declared_size_before_any_byte_is_written() {
    const BOMB: u64 = 64 << 20;
    let encoder = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
    let mut builder = tar::Builder::new(encoder);
    let mut h = Header::new_gnu();
    h.set_entry_type(EntryType::Regular);
    h.set_size(BOMB);
    h.set_mode(0o644);
    builder
        .append_data(&mut h, "zeros.bin", io::repeat(0).take(BOMB))
        .unwrap();
    let archive = builder.into_inner().unwrap().finish().unwrap();
    assert!(archive.len() < 64 * 1024, "bomb is {} bytes", archive.len());

    let scratch = Scratch::new();
    let (entry, reason) = refusal(scratch.unpack(&archive, &small_limits()));
    assert_eq!(entry, "zeros.bin");
    assert_eq!(
        reason,
        Refusal::EntryTooLarge {
            size: BOMB,
            limit: 1 << 20
        }
    );
    assert!(!scratch.dest().join("zeros.bin").exists());
}

#[test]
fn the_total_limit_stops_many_files_that_are_each_small_enough() {
    let chunk = vec![0u8; 300 * 1024];
    let mut tar = Tar::new();
    for i in 0..5 {
        tar = tar.file(&format!("f{i}"), &chunk);
    }
    let scratch = Scratch::new();
    let (entry, reason) = refusal(scratch.unpack(&zst(&tar.end()), &small_limits()));
    assert_eq!(
        (entry.as_str(), reason),
        ("f3", Refusal::TotalTooLarge { limit: 1 << 20 })
    );
    let written: u64 = fs::read_dir(scratch.dest())
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    assert_eq!(written, 3 * 300 * 1024);
}

#[test]
fn a_declared_size_above_the_limit_is_refused_even_when_the_data_is_missing() {
    let h = header(b"liar", EntryType::Regular, 2 << 20);
    let tar = Tar::new().raw(&h, b"tiny").without_end();
    let (_, reason) = refusal(Scratch::new().unpack(&zst(&tar), &small_limits()));
    assert_eq!(
        reason,
        Refusal::EntryTooLarge {
            size: 2 << 20,
            limit: 1 << 20
        }
    );
}

#[test]
fn the_copy_stops_at_the_declared_size() {
    let mut source: &[u8] = &[7u8; 10];
    let mut sink = Vec::new();
    assert!(matches!(
        copy_at_most(&mut source, &mut sink, 5),
        Err(CopyError::TooLong)
    ));
    assert!(sink.len() <= 5);
    let mut source: &[u8] = &[7u8; 10];
    assert_eq!(copy_at_most(&mut source, &mut Vec::new(), 10).unwrap(), 10);
}

/// A single zstd frame holding `payload` as one raw block, with the window size we choose.
fn raw_zstd_frame(window_log: u8, payload: &[u8]) -> Vec<u8> {
    assert!(payload.len() < 128 * 1024);
    let mut frame = vec![0x28, 0xB5, 0x2F, 0xFD];
    frame.push(0x00); // no content size, not single-segment, no checksum, no dictionary
    frame.push((window_log - 10) << 3); // window descriptor: exponent only
    let block_header = ((payload.len() as u32) << 3) | 1; // raw block, last block
    frame.extend_from_slice(&block_header.to_le_bytes()[..3]);
    frame.extend_from_slice(payload);
    frame
}

#[test]
fn a_frame_asking_for_a_huge_window_is_refused() {
    let tar = Tar::new().file("f", b"x").end();
    Scratch::new()
        .unpack(&raw_zstd_frame(20, &tar), &UnpackLimits::default())
        .unwrap();
    let message =
        corrupt(Scratch::new().unpack(&raw_zstd_frame(30, &tar), &UnpackLimits::default()));
    assert!(message.contains("memory"), "{message}");

    // The limit is ours, not only zstd's default.
    let tight = UnpackLimits {
        max_window_log: 20,
        ..UnpackLimits::default()
    };
    Scratch::new()
        .unpack(&raw_zstd_frame(20, &tar), &tight)
        .unwrap();
    corrupt(Scratch::new().unpack(&raw_zstd_frame(21, &tar), &tight));
}

// ---------- truncation and corruption ----------

#[test]
fn truncated_zstd_is_an_error_wherever_it_is_cut() {
    let src = tempfile::tempdir().unwrap();
    sample_tree(src.path(), false);
    let archive = pack_to_vec(src.path());
    for cut in [
        0,
        5,
        archive.len() / 2,
        archive.len() - 5,
        archive.len() - 1,
    ] {
        corrupt(Scratch::new().unpack(&archive[..cut], &UnpackLimits::default()));
    }
}

#[test]
fn garbage_after_the_zstd_frame_is_an_error() {
    let mut archive = zst(&Tar::new().file("f", b"x").end());
    archive.extend_from_slice(b"garbage");
    corrupt(Scratch::new().unpack(&archive, &UnpackLimits::default()));
}

#[test]
fn truncated_tar_inside_a_valid_frame_is_an_error() {
    let full = Tar::new().file("f", &[1u8; 2000]).end();
    let no_marker = &full[..full.len() - 1024];
    let message = corrupt(Scratch::new().unpack(&zst(no_marker), &UnpackLimits::default()));
    assert!(message.contains("end-of-archive"), "{message}");
    let half_marker = &full[..full.len() - 512];
    corrupt(Scratch::new().unpack(&zst(half_marker), &UnpackLimits::default()));
    let mid_data = &full[..1000];
    corrupt(Scratch::new().unpack(&zst(mid_data), &UnpackLimits::default()));
    let mid_header = &full[..200];
    corrupt(Scratch::new().unpack(&zst(mid_header), &UnpackLimits::default()));
}

#[test]
fn a_bad_header_checksum_is_an_error() {
    let mut tar = Tar::new().file("f", b"x").end();
    tar[0] = b'g';
    let message = corrupt(Scratch::new().unpack(&zst(&tar), &UnpackLimits::default()));
    assert!(message.contains("checksum"), "{message}");
}

#[test]
fn only_bounded_zero_padding_may_follow_the_tar_end() {
    let mut tar = Tar::new().file("f", b"x").end();
    tar.extend_from_slice(b"\0\0tail");
    assert!(matches!(
        Scratch::new().unpack(&zst(&tar), &UnpackLimits::default()),
        Err(ProjectArchiveError::TrailingData { .. })
    ));
    let mut tar = Tar::new().file("f", b"x").end();
    tar.extend(std::iter::repeat_n(0u8, 2 << 20));
    assert!(matches!(
        Scratch::new().unpack(&zst(&tar), &UnpackLimits::default()),
        Err(ProjectArchiveError::TrailingData { .. })
    ));
}

// ---------- destination ----------

#[test]
fn the_destination_must_be_missing_or_an_empty_directory() {
    let archive = zst(&Tar::new().file("f", b"x").end());
    let scratch = Scratch::new();
    fs::create_dir(scratch.dest()).unwrap();
    fs::write(scratch.dest().join("old"), "o").unwrap();
    assert!(matches!(
        unpack(&archive[..], &scratch.dest(), &UnpackLimits::default()),
        Err(ProjectArchiveError::Destination { .. })
    ));
    let file = scratch.0.path().join("a-file");
    fs::write(&file, "x").unwrap();
    assert!(matches!(
        unpack(&archive[..], &file, &UnpackLimits::default()),
        Err(ProjectArchiveError::Destination { .. })
    ));
    let empty = scratch.0.path().join("empty");
    fs::create_dir(&empty).unwrap();
    unpack(&archive[..], &empty, &UnpackLimits::default()).unwrap();
}

// ---------- measurement (by hand) ----------

/// Packs and unpacks a generated 50 MB, 5,000-file tree and prints the figures. Run with
/// `cargo test --release -p meshrun-coordinator measure_throughput -- --ignored --nocapture`.
#[test]
#[ignore = "a measurement, not a test"]
fn measure_throughput() {
    let src = tempfile::tempdir().unwrap();
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    let mut total = 0u64;
    for i in 0..5000u32 {
        let dir = src
            .path()
            .join(format!("role{:02}/tasks{:02}", i % 50, (i / 50) % 10));
        fs::create_dir_all(&dir).unwrap();
        let data: Vec<u8> = if i % 5 == 0 {
            // One file in five is incompressible (binaries, archives, images).
            (0..10_000)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    seed as u8
                })
                .collect()
        } else {
            let mut text = String::new();
            let mut line = 0u32;
            while text.len() < 10_000 {
                text.push_str(&format!(
                    "- name: step {line} of file {i}\n  ansible.builtin.command: /usr/bin/run --item {} --id {}\n",
                    line * 7 + i,
                    (u64::from(line) * 2_654_435_761) % 1_000_003
                ));
                line += 1;
            }
            text.truncate(10_000);
            text.into_bytes()
        };
        total += data.len() as u64;
        fs::write(dir.join(format!("file{i:04}.yml")), data).unwrap();
    }

    let started = std::time::Instant::now();
    let archive = pack(src.path(), Vec::new(), DEFAULT_LEVEL).unwrap();
    let pack_time = started.elapsed();

    let scratch = Scratch::new();
    let started = std::time::Instant::now();
    let summary = scratch.unpack(&archive, &UnpackLimits::default()).unwrap();
    let unpack_time = started.elapsed();
    assert_eq!(summary.bytes, total);
    assert_eq!(summary.files.len(), 5000);

    let mb = total as f64 / 1e6;
    println!(
        "tree: {mb:.1} MB in 5000 files; archive: {:.2} MB ({:.1}% of the tree)",
        archive.len() as f64 / 1e6,
        archive.len() as f64 * 100.0 / total as f64
    );
    println!(
        "pack: {:.2} s ({:.0} MB/s); unpack: {:.2} s ({:.0} MB/s)",
        pack_time.as_secs_f64(),
        mb / pack_time.as_secs_f64(),
        unpack_time.as_secs_f64(),
        mb / unpack_time.as_secs_f64()
    );
}

/// A tar.zst holding `files` files of `size` zeros each, made without holding them in memory.
fn zeros_archive(files: usize, size: u64) -> Vec<u8> {
    let mut enc = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
    let chunk = vec![0u8; 1 << 20];
    for i in 0..files {
        let h = header(format!("zeros{i}").as_bytes(), EntryType::Regular, size);
        enc.write_all(h.as_bytes()).unwrap();
        let mut left = size;
        while left > 0 {
            let n = left.min(chunk.len() as u64);
            enc.write_all(&chunk[..n as usize]).unwrap();
            left -= n;
        }
        let pad = (512 - size % 512) % 512;
        enc.write_all(&vec![0u8; pad as usize]).unwrap();
    }
    enc.write_all(&[0u8; 1024]).unwrap();
    enc.finish().unwrap()
}

#[test]
fn a_zstd_bomb_is_stopped_by_the_compression_ratio() {
    // 96 MiB of zeros in about 10 KiB: every size is within the default limits.
    let bomb = zeros_archive(1, 96 << 20);
    assert!(bomb.len() < 64 * 1024, "{}", bomb.len());
    let scratch = Scratch::new();
    let (entry, reason) = refusal(scratch.unpack(&bomb, &UnpackLimits::default()));
    assert_eq!(entry, "zeros0");
    match reason {
        Refusal::RatioTooHigh {
            written,
            read,
            limit: 1000,
        } => {
            assert!(
                written > RATIO_FREE_BYTES && written > read * 1000,
                "{written} {read}"
            );
            assert!(written <= RATIO_FREE_BYTES + (64 << 10) + read * 1000);
        }
        other => panic!("unexpected {other}"),
    }
    // What was written before the refusal is bounded (the caller deletes dest).
    let partial = fs::metadata(scratch.dest().join("zeros0")).unwrap().len();
    assert!(partial <= RATIO_FREE_BYTES + (128 << 10), "{partial}");
    // Switched off, the same archive unpacks.
    let off = UnpackLimits {
        max_ratio: 0,
        ..UnpackLimits::default()
    };
    let summary = Scratch::new().unpack(&bomb, &off).unwrap();
    assert_eq!(summary.bytes, 96 << 20);
}
