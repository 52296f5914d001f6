//! Tests of the decoder, the writers and `process_stream` together.

use std::convert::Infallible;
use std::fs;
use std::io::{self, Cursor, Read, Seek, SeekFrom};
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;

use serde_json::{Map, Value, json};

use super::archive::{self, ExtractLimits};
use super::decode::{
    Cut, DecodeError, DecoderLimits, Frame, StreamDecoder, StreamError, ZIP_DATA_CHUNK,
};
use super::encode::{self, EncodeError};
use super::process::{self, ProcessErrorKind};

const TRANSMIT: &[u8] = include_bytes!("testdata/transmit.raw");
const WORKER_CUT: &[u8] = include_bytes!("testdata/worker-cut.jsonl");

type Outcome = (Vec<Frame>, Result<(), StreamError>);

/// Decodes `bytes` fed in pieces whose sizes `next_size` picks.
fn decode_with(
    bytes: &[u8],
    limits: DecoderLimits,
    next_size: &mut dyn FnMut() -> usize,
) -> Outcome {
    let mut dec = StreamDecoder::new(limits);
    let mut frames = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let n = next_size().clamp(1, rest.len());
        let pushed = dec.push(&rest[..n], &mut |f| {
            frames.push(f);
            Ok::<(), Infallible>(())
        });
        if let Err(e) = pushed {
            return (frames, Err(stream_err(e)));
        }
        rest = &rest[n..];
    }
    (frames, dec.finish())
}

fn stream_err(e: DecodeError<Infallible>) -> StreamError {
    match e {
        DecodeError::Stream(e) => e,
        DecodeError::Sink { source, .. } => match source {},
    }
}

fn decode(bytes: &[u8]) -> Outcome {
    decode_with(bytes, DecoderLimits::default(), &mut || usize::MAX)
}

fn decode_limits(bytes: &[u8], limits: DecoderLimits) -> Outcome {
    decode_with(bytes, limits, &mut || usize::MAX)
}

fn decode_err(bytes: &[u8]) -> StreamError {
    match decode(bytes).1 {
        Err(e) => e,
        Ok(()) => panic!("stream was accepted: {:?}", String::from_utf8_lossy(bytes)),
    }
}

/// Small deterministic PRNG for chunk sizes.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn obj(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        other => panic!("not an object: {other}"),
    }
}

fn zip_bytes(frames: &[Frame]) -> Vec<u8> {
    frames
        .iter()
        .filter_map(|f| match f {
            Frame::ZipData(d) => Some(d.as_slice()),
            _ => None,
        })
        .collect::<Vec<_>>()
        .concat()
}

/// A directory like a worker's artifacts dir.
fn make_artifacts(dir: &Path) {
    fs::create_dir_all(dir.join("job_events")).unwrap();
    fs::create_dir_all(dir.join("fact_cache")).unwrap();
    fs::write(dir.join("rc"), "0").unwrap();
    fs::write(dir.join("status"), "successful").unwrap();
    fs::write(dir.join("stdout"), "PLAY [all]\nok\n").unwrap();
    fs::write(dir.join("fact_cache/localhost"), r#"{"x": 1}"#).unwrap();
}

fn event(counter: u64, uuid: &str, stdout: &str) -> Value {
    json!({"uuid": uuid, "counter": counter, "stdout": stdout, "start_line": 0, "end_line": 1,
           "runner_ident": "42", "event": "runner_on_ok", "event_data": {"host": "h", "ünï": "☃"}})
}

/// A complete worker output stream: statuses, events, keepalives, artifacts zip, eof.
fn worker_stream(artifacts: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    let lines = [
        json!({"status": "starting", "runner_ident": "42", "command": ["ansible-playbook"], "env": {}, "cwd": "/x"}),
        json!({"status": "running", "runner_ident": "42"}),
        event(1, "11111111-aaaa", "PLAY"),
        json!({"event": "keepalive", "counter": 0, "uuid": 0}),
        event(2, "22222222-bbbb", "ok: [h]"),
        json!({"event": "keepalive", "counter": 0, "uuid": 0}),
        json!({"status": "successful", "runner_ident": "42"}),
    ];
    for line in &lines {
        encode::write_json_line(&mut out, line).unwrap();
    }
    let mut zip = archive::zip_dir(artifacts, Cursor::new(Vec::new()), None).unwrap();
    encode::write_zip_frame(&mut out, &mut zip).unwrap();
    encode::write_eof(&mut out).unwrap();
    out
}

fn built_worker_stream() -> (tempfile::TempDir, Vec<u8>) {
    let tmp = tempfile::tempdir().unwrap();
    make_artifacts(&tmp.path().join("src"));
    let bytes = worker_stream(&tmp.path().join("src"));
    (tmp, bytes)
}

// ---------------------------------------------------------------------------------------------
// Decoder: samples

#[test]
fn transmit_sample_decodes_to_kwargs_zip_eof() {
    let (frames, end) = decode(TRANSMIT);
    end.unwrap();
    assert_eq!(frames.len(), 5, "{frames:?}");
    let Frame::Kwargs(kwargs) = &frames[0] else {
        panic!("{:?}", frames[0])
    };
    assert_eq!(kwargs["ident"], json!("a8e970b22dc047529c587eeb119af1b8"));
    assert_eq!(kwargs["playbook"], json!("play.yml"));
    assert_eq!(frames[1], Frame::ZipStart { size: 642 });
    assert!(matches!(frames[2], Frame::ZipData(_)));
    assert_eq!(frames[3], Frame::ZipEnd);
    assert_eq!(frames[4], Frame::Eof);
    let zip = zip_bytes(&frames);
    assert_eq!(zip.len(), 642);
    let archive = zip::ZipArchive::new(Cursor::new(zip)).unwrap();
    let mut names: Vec<_> = archive.file_names().collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "inventory/",
            "inventory/hosts",
            "project/",
            "project/play.yml"
        ]
    );
}

#[test]
fn transmit_sample_offsets() {
    let mut dec = StreamDecoder::new(DecoderLimits::default());
    let mut sink = |_f: Frame| Ok::<(), Infallible>(());
    dec.push(TRANSMIT, &mut sink).unwrap();
    assert!(dec.saw_eof());
    assert_eq!(dec.consumed(), TRANSMIT.len() as u64);
    assert_eq!(dec.resume_offset(), TRANSMIT.len() as u64);
    dec.finish().unwrap();
}

#[test]
fn cut_worker_sample_is_rejected_at_the_cut() {
    let (frames, end) = decode(WORKER_CUT);
    let statuses: Vec<_> = frames
        .iter()
        .filter_map(|f| match f {
            Frame::Status(s) => Some(s["status"].as_str().unwrap().to_owned()),
            _ => None,
        })
        .collect();
    assert_eq!(statuses, ["starting", "running", "successful"]);
    assert_eq!(
        frames
            .iter()
            .filter(|f| matches!(f, Frame::Event(_)))
            .count(),
        12
    );
    assert_eq!(frames.last(), Some(&Frame::ZipStart { size: 1807 }));
    let dots = WORKER_CUT.windows(3).position(|w| w == b"...").unwrap() as u64;
    match end {
        Err(StreamError::BadBase64 {
            offset,
            byte: b'.',
            total: 2412,
            ..
        }) => assert_eq!(offset, dots),
        other => panic!("{other:?}"),
    }
}

#[test]
fn built_worker_stream_decodes() {
    let (_tmp, bytes) = built_worker_stream();
    let (frames, end) = decode(&bytes);
    end.unwrap();
    let kinds: Vec<&str> = frames
        .iter()
        .map(|f| match f {
            Frame::Status(_) => "status",
            Frame::Event(_) => "event",
            Frame::Keepalive => "keepalive",
            Frame::ZipStart { .. } => "zipstart",
            Frame::ZipData(_) => "zipdata",
            Frame::ZipEnd => "zipend",
            Frame::Eof => "eof",
            Frame::Kwargs(_) | Frame::Other(_) => "other",
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "status",
            "status",
            "event",
            "keepalive",
            "event",
            "keepalive",
            "status",
            "zipstart",
            "zipdata",
            "zipend",
            "eof"
        ]
    );
    assert_eq!(
        frames[2],
        Frame::Event(obj(event(1, "11111111-aaaa", "PLAY")))
    );
}

// ---------------------------------------------------------------------------------------------
// Decoder: chunking invariance and resumption

fn assert_split_invariant(bytes: &[u8], limits: DecoderLimits) {
    let whole = decode_limits(bytes, limits);
    assert_eq!(
        decode_with(bytes, limits, &mut || 1),
        whole,
        "one byte at a time"
    );
    for seed in 1..=20u64 {
        let mut rng = XorShift(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let got = decode_with(bytes, limits, &mut || (rng.next() % 97) as usize + 1);
        assert_eq!(got, whole, "random chunks, seed {seed}");
    }
    // Every boundary for small streams; a dense sample of them for big ones (one-byte feeding
    // above already crosses every boundary).
    let step = (bytes.len() / 2500).max(1);
    for split in (1..bytes.len()).step_by(step) {
        let mut first = true;
        let got = decode_with(bytes, limits, &mut || {
            if std::mem::replace(&mut first, false) {
                split
            } else {
                usize::MAX
            }
        });
        assert_eq!(got, whole, "split at {split}");
    }
}

#[test]
fn frames_do_not_depend_on_chunking() {
    assert_split_invariant(TRANSMIT, DecoderLimits::default());
    assert_split_invariant(WORKER_CUT, DecoderLimits::default());
    let (_tmp, bytes) = built_worker_stream();
    assert_split_invariant(&bytes, DecoderLimits::default());
    let small = DecoderLimits {
        max_line_bytes: 150,
        ..DecoderLimits::default()
    };
    assert!(matches!(
        decode_limits(&bytes, small).1,
        Err(StreamError::LineTooLong { .. })
    ));
    assert_split_invariant(&bytes, small);
}

#[test]
fn large_zip_comes_in_fixed_chunks_whatever_the_input_chunks() {
    let mut rng = XorShift(7);
    let data: Vec<u8> = (0..3 * ZIP_DATA_CHUNK + 1000)
        .map(|_| rng.next() as u8)
        .collect();
    let mut stream = Vec::new();
    encode::write_zip_frame(&mut stream, &mut Cursor::new(&data)).unwrap();
    encode::write_eof(&mut stream).unwrap();
    let (frames, end) = decode(&stream);
    end.unwrap();
    let sizes: Vec<usize> = frames
        .iter()
        .filter_map(|f| match f {
            Frame::ZipData(d) => Some(d.len()),
            _ => None,
        })
        .collect();
    assert_eq!(
        sizes,
        [ZIP_DATA_CHUNK, ZIP_DATA_CHUNK, ZIP_DATA_CHUNK, 1000]
    );
    assert_eq!(zip_bytes(&frames), data);
    for seed in 1..=5u64 {
        let mut rng = XorShift(seed);
        let got = decode_with(&stream, DecoderLimits::default(), &mut || {
            (rng.next() % 70_000) as usize + 1
        });
        assert_eq!(got, (frames.clone(), Ok(())));
    }
}

#[test]
fn resuming_from_resume_offset_replays_the_tail() {
    let (_tmp, bytes) = built_worker_stream();
    let (all, end) = decode(&bytes);
    end.unwrap();
    for cut in 0..bytes.len() {
        let mut first = StreamDecoder::new(DecoderLimits::default());
        let mut seen = Vec::new();
        first
            .push(&bytes[..cut], &mut |f| {
                seen.push(f);
                Ok::<(), Infallible>(())
            })
            .unwrap();
        let resume = first.resume_offset();
        assert!(resume <= cut as u64);
        let mut second = StreamDecoder::resume_from(DecoderLimits::default(), resume);
        let mut tail = Vec::new();
        second
            .push(&bytes[resume as usize..], &mut |f| {
                tail.push(f);
                Ok::<(), Infallible>(())
            })
            .unwrap();
        second.finish().unwrap();
        assert_eq!(second.consumed(), bytes.len() as u64);
        assert!(all.ends_with(&tail), "cut {cut}: tail is not a suffix");
        let before = &all[..all.len() - tail.len()];
        assert!(
            seen.starts_with(before),
            "cut {cut}: frames before the resume point were not all seen"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Decoder: truncation

#[test]
fn truncation_at_every_byte_of_the_transmit_sample() {
    let line_end =
        |from: usize| from + TRANSMIT[from..].iter().position(|&b| b == b'\n').unwrap() + 1;
    let a = line_end(0);
    let b = line_end(a);
    let c = b + 856;
    assert_eq!(&TRANSMIT[c..], b"{\"eof\": true}\n");
    for len in 0..TRANSMIT.len() {
        let (_, end) = decode(&TRANSMIT[..len]);
        let Err(StreamError::Truncated { offset, cut }) = end else {
            panic!("prefix {len}: {end:?}")
        };
        let expected = match len {
            0 => (0, Cut::NoEof),
            l if l < a => (0, Cut::MidLine { bytes: l as u64 }),
            l if l == a => (a, Cut::NoEof),
            l if l < b => (
                a,
                Cut::MidLine {
                    bytes: (l - a) as u64,
                },
            ),
            l if l < c => (
                l,
                Cut::MidZip {
                    chars: (l - b) as u64,
                    of: 856,
                },
            ),
            l if l == c => (c, Cut::NoEof),
            l => (
                c,
                Cut::MidLine {
                    bytes: (l - c) as u64,
                },
            ),
        };
        assert_eq!(
            (offset, cut),
            (expected.0 as u64, expected.1),
            "prefix {len}"
        );
    }
}

#[test]
fn trailing_whitespace_without_eof_is_no_eof() {
    let err = decode_err(b"{\"status\": \"running\"}\n  \r\n ");
    assert_eq!(
        err,
        StreamError::Truncated {
            offset: 27,
            cut: Cut::NoEof
        }
    );
    assert!(err.to_string().contains("without an eof frame"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// Decoder: hostile and odd input

#[test]
fn garbage_line_is_not_json_with_offset_and_preview() {
    let err = decode_err(b"{\"status\": \"running\"}\nTraceback (most recent call last):\n");
    match &err {
        StreamError::NotJson {
            offset: 22,
            preview,
            ..
        } => assert_eq!(preview, "Traceback (most recent call last):"),
        other => panic!("{other:?}"),
    }
    let long = [b"x".repeat(1000), b"\n".to_vec()].concat();
    let StreamError::NotJson { preview, .. } = decode_err(&long) else {
        panic!()
    };
    assert_eq!(preview, format!("{}…", "x".repeat(200)));
    let StreamError::NotJson { .. } = decode_err(b"{\"a\": \"\xff\xfe\"}\n") else {
        panic!("invalid UTF-8 accepted")
    };
    let StreamError::NotJson { .. } = decode_err(b"{\"a\": NaN}\n") else {
        panic!("NaN accepted")
    };
}

#[test]
fn non_object_json_is_rejected() {
    for (line, kind) in [
        ("[1, 2]", "array"),
        ("\"s\"", "string"),
        ("42", "number"),
        ("null", "null"),
        ("true", "boolean"),
    ] {
        let err = decode_err(format!("{line}\n").as_bytes());
        assert_eq!(
            err,
            StreamError::NotObject {
                offset: 0,
                kind,
                preview: line.to_owned()
            }
        );
    }
}

#[test]
fn line_over_the_limit_is_rejected_before_its_newline() {
    let limits = DecoderLimits {
        max_line_bytes: 16,
        ..DecoderLimits::default()
    };
    let ok = b"{\"eof\":   true }\n";
    assert_eq!(ok.len(), 17);
    assert_eq!(decode_limits(ok, limits), (vec![Frame::Eof], Ok(())));
    let mut dec = StreamDecoder::new(limits);
    let mut sink = |_f: Frame| Ok::<(), Infallible>(());
    dec.push(b"{\"status\": \"ok\"}\n", &mut sink).unwrap();
    let err = dec.push(b"{\"status\": \"long\"}", &mut sink).unwrap_err();
    assert!(
        matches!(
            err,
            DecodeError::Stream(StreamError::LineTooLong {
                offset: 17,
                limit: 16
            })
        ),
        "{err:?}"
    );
    let again = dec.push(b"\n", &mut sink).unwrap_err();
    assert!(
        matches!(
            again,
            DecodeError::Stream(StreamError::AlreadyFailed { .. })
        ),
        "{again:?}"
    );
}

#[test]
fn bad_zipfile_sizes_are_rejected() {
    for value in ["-1", "1.5", "\"12\"", "null", "1e+30", "[3]"] {
        let err = decode_err(format!("{{\"zipfile\": {value}}}\nAAAA").as_bytes());
        match err {
            StreamError::BadField {
                offset: 0,
                field: "zipfile",
                found,
                ..
            } => assert_eq!(found, value),
            other => panic!("{value}: {other:?}"),
        }
    }
    let limits = DecoderLimits {
        max_zip_bytes: 100,
        ..DecoderLimits::default()
    };
    let (_, end) = decode_limits(b"{\"zipfile\": 101}\n", limits);
    assert_eq!(
        end,
        Err(StreamError::ZipTooLarge {
            offset: 0,
            size: 101,
            limit: 100
        })
    );
    let unlimited = DecoderLimits {
        max_zip_bytes: u64::MAX,
        ..DecoderLimits::default()
    };
    let line = format!("{{\"zipfile\": {}}}\n", u64::MAX);
    assert!(matches!(
        decode_limits(line.as_bytes(), unlimited).1,
        Err(StreamError::ZipTooLarge { .. })
    ));
}

#[test]
fn bad_base64_is_rejected_with_position() {
    // 4 bytes → 8 chars, two of them padding.
    let cases: [(&[u8], u64, u8, &str); 4] = [
        (b"QUJD*A==", 4, b'*', "a base64 character"),
        (b"QU==REU=", 2, b'=', "a base64 character"),
        (b"QUJDRA=A", 7, b'A', "padding '='"),
        (b"QUJDRAA=", 6, b'A', "padding '='"),
    ];
    for (blob, index, byte, expected) in cases {
        let stream = [b"{\"zipfile\": 4}\n".as_slice(), blob, b"{\"eof\": true}\n"].concat();
        match decode_err(&stream) {
            StreamError::BadBase64 {
                offset,
                byte: b,
                index: i,
                total: 8,
                expected: e,
                ..
            } => {
                assert_eq!((offset, b, i, e), (15 + index, byte, index, expected));
            }
            other => panic!("{other:?}"),
        }
    }
    let good = b"{\"zipfile\": 4}\nQUJDRA=={\"eof\": true}\n";
    assert_eq!(zip_bytes(&decode(good).0), b"ABCD");
}

#[test]
fn whitespace_inside_a_blob_is_skipped() {
    let good = b"{\"zipfile\": 5}\n QUJ\r\nDR\tEU={\"eof\": true}\n";
    let (frames, end) = decode(good);
    end.unwrap();
    assert_eq!(zip_bytes(&frames), b"ABCDE");
    let mut spaced = Vec::new();
    for (i, &b) in TRANSMIT.iter().enumerate() {
        spaced.push(b);
        if (900..1600).contains(&i) && i % 61 == 0 && b != b'\n' {
            spaced.extend_from_slice(b"\n ");
        }
    }
    let blob_start = TRANSMIT.windows(3).position(|w| w == b"}\nU").unwrap();
    assert!(blob_start < 900, "spacing must fall in the blob");
    assert_eq!(decode(&spaced), decode(TRANSMIT));
}

#[test]
fn trailing_bits_in_the_last_quad_are_accepted() {
    // "QR==" has non-zero bits after the one encoded byte; Python accepts it too.
    let (frames, end) = decode(b"{\"zipfile\": 1}\nQR=={\"eof\": true}\n");
    end.unwrap();
    assert_eq!(zip_bytes(&frames), b"A");
}

#[test]
fn empty_zip_frame_ends_at_once() {
    let (frames, end) = decode(b"{\"zipfile\": 0}\n{\"eof\": true}\n");
    end.unwrap();
    assert_eq!(
        frames,
        [Frame::ZipStart { size: 0 }, Frame::ZipEnd, Frame::Eof]
    );
}

#[test]
fn data_after_eof_is_rejected_but_whitespace_is_not() {
    assert_eq!(decode(b"{\"eof\": true}\n \r\n\t\n").1, Ok(()));
    let err = decode_err(b"{\"eof\": true}\n  \n{\"status\": \"x\"}\n");
    assert_eq!(
        err,
        StreamError::DataAfterEof {
            offset: 17,
            preview: "{\"status\": \"x\"}\n".to_owned()
        }
    );
}

#[test]
fn crlf_and_blank_lines_are_tolerated() {
    let (frames, end) = decode(b"\n{\"status\": \"running\"}\r\n\r\n   \n{\"eof\": true}\r\n");
    end.unwrap();
    assert_eq!(
        frames,
        [Frame::Status(obj(json!({"status": "running"}))), Frame::Eof]
    );
}

#[test]
fn classification_of_objects() {
    let cases = [
        (
            json!({"kwargs": {"ident": "1"}}),
            Frame::Kwargs(obj(json!({"ident": "1"}))),
        ),
        (
            json!({"status": "failed", "runner_ident": "1"}),
            Frame::Status(obj(json!({"status": "failed", "runner_ident": "1"}))),
        ),
        (
            json!({"event": "keepalive", "counter": 0, "uuid": 0}),
            Frame::Keepalive,
        ),
        (json!({"event": "keepalive"}), Frame::Keepalive),
        (
            json!({"uuid": "u"}),
            Frame::Event(obj(json!({"uuid": "u"}))),
        ),
        (
            json!({"counter": 3}),
            Frame::Event(obj(json!({"counter": 3}))),
        ),
        (
            json!({"event": "verbose"}),
            Frame::Event(obj(json!({"event": "verbose"}))),
        ),
        (json!({"hello": 1}), Frame::Other(obj(json!({"hello": 1})))),
        (json!({}), Frame::Other(Map::new())),
        (json!({"eof": false}), Frame::Eof),
    ];
    for (value, expected) in cases {
        let line = format!("{value}\n");
        let (frames, _) = decode(line.as_bytes());
        assert_eq!(frames, [expected], "{value}");
    }
    let err = decode_err(b"{\"status\": 3}\n");
    assert!(
        matches!(
            err,
            StreamError::BadField {
                field: "status",
                ..
            }
        ),
        "{err:?}"
    );
    let err = decode_err(b"{\"kwargs\": [1]}\n");
    assert!(
        matches!(
            err,
            StreamError::BadField {
                field: "kwargs",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains("field `kwargs` must be an object, found [1]"),
        "{err}"
    );
}

#[test]
fn lone_surrogates_become_replacement_characters() {
    let line = br#"{"uuid": "u", "counter": 1, "stdout": "a\ud800b\udc00c", "pair": "\ud83d\ude00", "lit": "\\ud800"}"#;
    let (frames, _) = decode(&[line.as_slice(), b"\n"].concat());
    let Frame::Event(ev) = &frames[0] else {
        panic!("{frames:?}")
    };
    assert_eq!(ev["stdout"], json!("a\u{fffd}b\u{fffd}c"));
    assert_eq!(ev["pair"], json!("😀"));
    assert_eq!(ev["lit"], json!("\\ud800"));
    let StreamError::NotJson { .. } = decode_err(b"{\"a\": \"\\ud800\" x}\n") else {
        panic!("garbage accepted")
    };
}

#[test]
fn sink_errors_stop_the_decoder() {
    let mut dec = StreamDecoder::new(DecoderLimits::default());
    let mut count = 0;
    let err = dec
        .push(TRANSMIT, &mut |f: Frame| {
            if f == Frame::ZipEnd {
                return Err("disk full");
            }
            count += 1;
            Ok(())
        })
        .unwrap_err();
    assert_eq!(count, 3);
    match err {
        DecodeError::Sink { offset, source } => {
            assert_eq!(source, "disk full");
            assert_eq!(offset, TRANSMIT.len() as u64 - 14);
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        dec.finish(),
        Err(StreamError::AlreadyFailed { .. })
    ));
}

// ---------------------------------------------------------------------------------------------
// Encoder

fn make_pdd(dir: &Path) {
    fs::create_dir_all(dir.join("project/roles")).unwrap();
    fs::create_dir_all(dir.join("inventory")).unwrap();
    fs::write(dir.join("project/play.yml"), "- hosts: all\n").unwrap();
    fs::write(dir.join("inventory/hosts"), "#!/bin/sh\necho {}\n").unwrap();
    fs::set_permissions(
        dir.join("inventory/hosts"),
        fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    symlink("../play.yml", dir.join("project/roles/link")).unwrap();
}

#[test]
fn transmit_stream_round_trips_through_the_decoder() {
    let tmp = tempfile::tempdir().unwrap();
    let pdd = tmp.path().join("pdd");
    make_pdd(&pdd);
    let kwargs = obj(json!({"ident": "7", "playbook": "play.yml", "envvars": {"K": "välue"}}));
    let mut out = Vec::new();
    let written = encode::write_transmit_stream(&mut out, &kwargs, Some(&pdd), Some(6)).unwrap();
    assert_eq!(written, out.len() as u64);
    let first_line =
        String::from_utf8(out[..out.iter().position(|&b| b == b'\n').unwrap()].to_vec()).unwrap();
    assert!(first_line.starts_with("{\"kwargs\": {\""), "{first_line}");
    assert!(
        first_line.contains(r#""envvars": {"K": "v\u00e4lue"}"#),
        "{first_line}"
    );
    let (frames, end) = decode(&out);
    end.unwrap();
    assert_eq!(frames[0], Frame::Kwargs(kwargs));
    let Frame::ZipStart { size } = frames[1] else {
        panic!("{:?}", frames[1])
    };
    let blob_start = out.iter().position(|&b| b == b'\n').unwrap() + 1;
    let blob_start = blob_start + out[blob_start..].iter().position(|&b| b == b'\n').unwrap() + 1;
    let blob_len = size.div_ceil(3) as usize * 4;
    assert_eq!(
        &out[blob_start + blob_len..],
        b"{\"eof\": true}\n",
        "no newline after the blob"
    );
    assert_eq!(frames.last(), Some(&Frame::Eof));

    let dest = tmp.path().join("out");
    archive::extract_zip(
        Cursor::new(zip_bytes(&frames)),
        &dest,
        &ExtractLimits::default(),
    )
    .unwrap();
    assert_eq!(
        fs::read_to_string(dest.join("project/play.yml")).unwrap(),
        "- hosts: all\n"
    );
    let mode = fs::metadata(dest.join("inventory/hosts"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o755);
    assert_eq!(
        fs::read_link(dest.join("project/roles/link")).unwrap(),
        Path::new("../play.yml")
    );
}

#[test]
fn transmit_stream_without_a_dir_is_kwargs_and_eof() {
    let mut out = Vec::new();
    encode::write_transmit_stream(&mut out, &obj(json!({"ident": "1"})), None, None).unwrap();
    assert_eq!(out, b"{\"kwargs\": {\"ident\": \"1\"}}\n{\"eof\": true}\n");
}

#[test]
fn reserved_kwargs_are_refused() {
    for key in encode::RESERVED_KWARGS {
        let kwargs = obj(json!({"ident": "1", *key: "x"}));
        let err = encode::write_transmit_stream(Vec::new(), &kwargs, None, None).unwrap_err();
        assert!(
            matches!(&err, EncodeError::ReservedKwarg { key: k } if k == key),
            "{err:?}"
        );
    }
}

#[test]
fn python_json_spacing_and_ascii_escapes() {
    let value = json!({"a": [1, "é😀\u{7f}\n\u{1}"], "b": {}});
    let text = String::from_utf8(encode::to_python_json(&value).unwrap()).unwrap();
    assert_eq!(
        text,
        r#"{"a": [1, "\u00e9\ud83d\ude00\u007f\n\u0001"], "b": {}}"#
    );
    let back: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(back, value);
}

#[test]
fn zip_frame_round_trips_odd_sizes() {
    for size in [0usize, 1, 2, 3, 4, 49_151, 49_152, 49_153, 200_000] {
        let data: Vec<u8> = (0..size).map(|i| (i * 7 % 251) as u8).collect();
        let mut out = Vec::new();
        let written = encode::write_zip_frame(&mut out, &mut Cursor::new(&data)).unwrap();
        assert_eq!(written, out.len() as u64);
        encode::write_eof(&mut out).unwrap();
        let (frames, end) = decode(&out);
        end.unwrap();
        assert_eq!(zip_bytes(&frames), data, "size {size}");
    }
}

/// Claims a longer length than it can deliver.
struct Liar(Cursor<Vec<u8>>);

impl Read for Liar {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

impl Seek for Liar {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        match pos {
            SeekFrom::End(_) => Ok(10),
            other => self.0.seek(other),
        }
    }
}

#[test]
fn short_zip_source_is_an_error() {
    let err = encode::write_zip_frame(&mut Vec::new(), &mut Liar(Cursor::new(vec![1, 2, 3])))
        .unwrap_err();
    assert!(
        matches!(
            err,
            EncodeError::ZipShort {
                expected: 10,
                read: 3
            }
        ),
        "{err:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// process_stream

fn run_process(
    bytes: &[u8],
    dir: &Path,
) -> (
    Result<process::ProcessOutcome, process::ProcessError>,
    Vec<Frame>,
) {
    let mut seen = Vec::new();
    let result = process::process_stream(
        bytes,
        dir,
        &DecoderLimits::default(),
        &ExtractLimits::default(),
        |f: &Frame| seen.push(f.clone()),
    );
    (result, seen)
}

fn event_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir.join("job_events"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

#[test]
fn process_writes_events_and_artifacts_like_the_real_processor() {
    let (tmp, bytes) = built_worker_stream();
    let dir = tmp.path().join("pdd/artifacts/42");
    let (result, seen) = run_process(&bytes, &dir);
    let outcome = result.unwrap();
    assert_eq!(outcome.status.as_deref(), Some("successful"));
    assert_eq!(outcome.rc, Some(0));
    assert_eq!((outcome.events, outcome.dropped_events), (2, 0));
    assert!(outcome.artifact_entries >= 6);
    assert_eq!(
        event_files(&dir),
        ["1-11111111-aaaa.json", "2-22222222-bbbb.json"]
    );
    let path = dir.join("job_events/2-22222222-bbbb.json");
    let text = fs::read_to_string(&path).unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&text).unwrap(),
        event(2, "22222222-bbbb", "ok: [h]")
    );
    assert!(text.contains("\"\\u00fcn\\u00ef\": \"\\u2603\""), "{text}");
    assert_eq!(
        fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(
        fs::metadata(dir.join("job_events"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o700
    );
    assert_eq!(
        fs::read_to_string(dir.join("status")).unwrap(),
        "successful"
    );
    assert_eq!(
        fs::read_to_string(dir.join("fact_cache/localhost")).unwrap(),
        r#"{"x": 1}"#
    );
    let leftovers: Vec<_> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "scratch files left: {leftovers:?}");
    assert!(
        !seen
            .iter()
            .any(|f| matches!(f, Frame::Keepalive | Frame::ZipData(_)))
    );
    assert_eq!(
        seen.iter().filter(|f| matches!(f, Frame::Event(_))).count(),
        2
    );
    assert_eq!(seen.last(), Some(&Frame::Eof));
}

#[test]
fn process_drops_falsy_and_unsafe_events() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("a");
    let mut bytes = Vec::new();
    for ev in [
        json!({"counter": 0, "uuid": "u0", "event": "x"}),
        json!({"counter": 1, "uuid": "", "event": "x"}),
        json!({"counter": null, "uuid": "u", "event": "x"}),
        json!({"uuid": "u", "event": "x"}),
        json!({"counter": 2, "uuid": "../../escape", "event": "x"}),
        json!({"counter": "3/../../x", "uuid": "u", "event": "x"}),
        json!({"counter": 1.5, "uuid": "u", "event": "x"}),
        json!({"counter": 4, "uuid": "x".repeat(300), "event": "x"}),
        json!({"counter": 5, "uuid": "ok", "event": "x"}),
    ] {
        encode::write_json_line(&mut bytes, &ev).unwrap();
    }
    encode::write_eof(&mut bytes).unwrap();
    let (result, seen) = run_process(&bytes, &dir);
    let outcome = result.unwrap();
    assert_eq!((outcome.events, outcome.dropped_events), (1, 8));
    assert_eq!(event_files(&dir), ["5-ok.json"]);
    assert_eq!(seen.len(), 2, "{seen:?}");
    let entries: Vec<_> = fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        entries,
        ["a"],
        "something was written outside the artifacts dir"
    );
}

#[test]
fn process_replaces_a_planted_symlink_instead_of_following_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("a");
    fs::create_dir_all(dir.join("job_events")).unwrap();
    let victim = tmp.path().join("victim");
    fs::write(&victim, "keep").unwrap();
    symlink(&victim, dir.join("job_events/1-u.json")).unwrap();
    let bytes = b"{\"counter\": 1, \"uuid\": \"u\"}\n{\"eof\": true}\n";
    run_process(bytes, &dir).0.unwrap();
    assert_eq!(fs::read_to_string(&victim).unwrap(), "keep");
    assert!(
        fs::symlink_metadata(dir.join("job_events/1-u.json"))
            .unwrap()
            .is_file()
    );
}

#[test]
fn process_refuses_a_job_events_symlink() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("a");
    let elsewhere = tmp.path().join("elsewhere");
    fs::create_dir_all(&dir).unwrap();
    fs::create_dir_all(&elsewhere).unwrap();
    symlink(&elsewhere, dir.join("job_events")).unwrap();
    let bytes = b"{\"counter\": 1, \"uuid\": \"u\"}\n{\"eof\": true}\n";
    let err = run_process(bytes, &dir).0.unwrap_err();
    assert!(matches!(err.kind, ProcessErrorKind::Setup(_)), "{err:?}");
    assert_eq!(fs::read_dir(&elsewhere).unwrap().count(), 0);
}

#[test]
fn worker_reported_error_is_an_outcome_not_a_failure() {
    let tmp = tempfile::tempdir().unwrap();
    let bytes = b"{\"status\": \"error\", \"job_explanation\": \"Failed to extract\", \"result_traceback\": \"Trace\"}\n{\"eof\": true}\n";
    let (result, _) = run_process(bytes, tmp.path());
    let outcome = result.unwrap();
    assert_eq!(outcome.status.as_deref(), Some("error"));
    assert_eq!(
        outcome.job_explanation.as_deref(),
        Some("Failed to extract")
    );
    assert_eq!(outcome.result_traceback.as_deref(), Some("Trace"));
    assert_eq!(outcome.rc, None);
    assert!(tmp.path().join("job_events").is_dir());
}

#[test]
fn truncated_stream_fails_with_a_partial_error_outcome() {
    let (tmp, bytes) = built_worker_stream();
    let zip_line = bytes
        .windows(10)
        .position(|w| w == b"{\"zipfile\"")
        .unwrap();
    for (label, cut) in [(1, zip_line + 40), (2, zip_line), (3, bytes.len() - 1)] {
        let dir = tmp.path().join(format!("cut{label}"));
        let err = run_process(&bytes[..cut], &dir).0.unwrap_err();
        assert!(
            matches!(
                err.kind,
                ProcessErrorKind::Stream(StreamError::Truncated { .. })
            ),
            "{err:?}"
        );
        assert_eq!(err.partial.status.as_deref(), Some("error"));
        assert!(
            err.partial
                .job_explanation
                .as_deref()
                .unwrap()
                .contains("truncated"),
            "{err}"
        );
        assert_eq!(err.partial.events, 2);
        assert_eq!(event_files(&dir).len(), 2, "events before the cut stay");
        assert_eq!(
            dir.join("status").exists(),
            label == 3,
            "status only from an extracted zip"
        );
    }
}

#[test]
fn worker_explanation_survives_a_later_failure() {
    let tmp = tempfile::tempdir().unwrap();
    let bytes = b"{\"status\": \"error\", \"job_explanation\": \"worker said\"}\n";
    let err = run_process(bytes, tmp.path()).0.unwrap_err();
    assert_eq!(err.partial.job_explanation.as_deref(), Some("worker said"));
}

#[test]
fn garbage_and_the_cut_sample_fail_after_writing_earlier_events() {
    let tmp = tempfile::tempdir().unwrap();
    let err = run_process(WORKER_CUT, tmp.path()).0.unwrap_err();
    assert!(
        matches!(
            err.kind,
            ProcessErrorKind::Stream(StreamError::BadBase64 { .. })
        ),
        "{err:?}"
    );
    assert_eq!(err.partial.events, 12);
    assert_eq!(event_files(tmp.path()).len(), 12);
    assert!(
        event_files(tmp.path()).contains(&"1-92f3e9ac-4988-4801-86ca-4ac0dfc624df.json".to_owned())
    );

    let dir = tmp.path().join("g");
    let bytes =
        b"{\"counter\": 1, \"uuid\": \"u\"}\nWARNING: something on stderr\n{\"eof\": true}\n";
    let err = run_process(bytes, &dir).0.unwrap_err();
    assert!(
        matches!(
            err.kind,
            ProcessErrorKind::Stream(StreamError::NotJson { offset: 28, .. })
        ),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("WARNING: something on stderr"),
        "{err}"
    );
    assert_eq!(event_files(&dir), ["1-u.json"]);
}

#[test]
fn broken_artifacts_zip_is_an_extract_error() {
    let tmp = tempfile::tempdir().unwrap();
    let mut bytes = Vec::new();
    encode::write_zip_frame(&mut bytes, &mut Cursor::new(b"not a zip at all".to_vec())).unwrap();
    encode::write_eof(&mut bytes).unwrap();
    let err = run_process(&bytes, tmp.path()).0.unwrap_err();
    assert!(
        matches!(err.kind, ProcessErrorKind::Frame { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("extracting artifacts"), "{err}");
}

struct FailingReader;

impl Read for FailingReader {
    fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
        Err(io::Error::new(
            io::ErrorKind::ConnectionReset,
            "peer went away",
        ))
    }
}

#[test]
fn read_errors_are_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let err = process::process_stream(
        FailingReader,
        tmp.path(),
        &DecoderLimits::default(),
        &ExtractLimits::default(),
        |_| {},
    )
    .unwrap_err();
    assert!(
        matches!(err.kind, ProcessErrorKind::Read { offset: 0, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("peer went away"), "{err}");
}

#[test]
fn artifact_dir_matches_the_cli_layout() {
    let pdd = Path::new("/p");
    assert_eq!(
        process::artifact_dir_for(pdd, None).unwrap(),
        Path::new("/p/artifacts")
    );
    assert_eq!(
        process::artifact_dir_for(pdd, Some("")).unwrap(),
        Path::new("/p/artifacts")
    );
    assert_eq!(
        process::artifact_dir_for(pdd, Some("42")).unwrap(),
        Path::new("/p/artifacts/42")
    );
    for bad in [".", "..", "a/b", "../x", "a\0b"] {
        assert_eq!(process::artifact_dir_for(pdd, Some(bad)), None, "{bad:?}");
    }
}
