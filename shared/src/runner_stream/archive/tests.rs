use super::timestamps::{civil_from_days, days_from_civil, dos_time, dos_to_unix};
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
fn parallel_zip_is_byte_identical_to_serial() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let _listener = build_tree(&src);
    // Enough small files to fill the queue many times, plus files over the in-memory limit.
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    for i in 0..300u32 {
        let dir = src.join(format!("many/d{:02}", i / 40));
        fs::create_dir_all(&dir).unwrap();
        let len = 100 + (i as usize * 997) % 60_000;
        let data: Vec<u8> = (0..len)
            .map(|j| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                if i % 3 == 0 {
                    seed as u8
                } else {
                    b"abc \n"[j % 5]
                }
            })
            .collect();
        fs::write(dir.join(format!("f{i:03}")), data).unwrap();
    }
    fs::write(src.join("many/big1"), vec![7u8; 3 << 20]).unwrap();
    fs::write(src.join("many/d03/big2"), all_bytes().repeat(5 << 12)).unwrap();
    let zip = |workers| {
        zip_dir_with_workers(&src, Cursor::new(Vec::new()), Some(6), workers)
            .unwrap()
            .into_inner()
    };
    let serial = zip(1);
    for workers in [2, 3, 8] {
        assert!(zip(workers) == serial, "{workers} workers");
    }
    // 300 small files, 8 of their dirs, `many/`, 2 big files, and build_tree's 14 entries.
    assert_eq!(entry_modes(&serial).len(), 300 + 8 + 1 + 2 + 14);
    let dest = tmp.path().join("dest");
    extract_zip(Cursor::new(serial), &dest, &ExtractLimits::default()).unwrap();
    assert_eq!(
        fs::read(dest.join("many/big1")).unwrap(),
        vec![7u8; 3 << 20]
    );
    assert_eq!(
        fs::read(dest.join("many/d07/f299")).unwrap(),
        fs::read(src.join("many/d07/f299")).unwrap()
    );
}

#[test]
fn parallel_zip_reports_the_first_failing_entry() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("a.txt"), b"a").unwrap();
    fs::write(src.join("c.txt"), b"c").unwrap();
    // Read by a worker; not valid UTF-8, so it cannot be stored.
    symlink(OsStr::from_bytes(b"t\xff"), src.join("b_link")).unwrap();
    let err = zip_dir_with_workers(&src, Cursor::new(Vec::new()), None, 2).unwrap_err();
    assert!(matches!(err, ArchiveError::NonUtf8Path { .. }), "{err}");
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
        max_ratio: 0,
    }
}

#[test]
fn refuses_declared_sizes_over_limits() {
    let tmp = tempfile::tempdir().unwrap();
    let big = Raw {
        declared: Some(701),
        ..Raw::file("big", b"tiny")
    };
    let err = extract_zip(Cursor::new(raw_zip(&[big])), tmp.path(), &small_limits()).unwrap_err();
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
    let err = extract_zip(Cursor::new(raw_zip(&[liar])), tmp.path(), &small_limits()).unwrap_err();
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

#[test]
fn a_high_ratio_bomb_is_stopped_soon_after_the_ratio_free_allowance() {
    let mut writer = ZipWriter::new(Cursor::new(Vec::new()));
    for name in ["a", "b"] {
        writer
            .start_file(
                name,
                FullFileOptions::default().compression_method(CompressionMethod::Deflated),
            )
            .unwrap();
        writer.write_all(&vec![0u8; 4 << 20]).unwrap();
    }
    let zip = writer.finish().unwrap().into_inner();
    assert!(zip.len() < 40_000, "the bomb should compress well");
    let tmp = tempfile::tempdir().unwrap();
    // Default limits: 8 GiB total would let it through; the ratio does not.
    let err = extract_zip(Cursor::new(&zip), tmp.path(), &ExtractLimits::default()).unwrap_err();
    match &err {
        ArchiveError::RatioTooHigh {
            name,
            total,
            archive_bytes,
            max_ratio: 200,
        } => {
            assert_eq!(name, "a");
            assert_eq!(*archive_bytes, zip.len() as u64);
            let allowed = super::RATIO_FREE_BYTES.max(archive_bytes * 200);
            assert!(
                *total > allowed && *total <= allowed + COPY_BUF as u64,
                "{total}"
            );
        }
        other => panic!("unexpected {other}"),
    }
    assert!(err.to_string().contains("zip bomb"), "{err}");
    assert!(!tmp.path().join("a").exists() && !tmp.path().join("b").exists());
    // Switched off, the same archive extracts.
    let off = ExtractLimits {
        max_ratio: 0,
        ..ExtractLimits::default()
    };
    let tmp = tempfile::tempdir().unwrap();
    let summary = extract_zip(Cursor::new(&zip), tmp.path(), &off).unwrap();
    assert_eq!(summary.bytes, 8 << 20);
}
