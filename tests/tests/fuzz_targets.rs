//! Fuzz targets (proptest) for the code that reads hostile input: the worker-stream decoder, the
//! receptor.conf parser, archive extraction (the artifact zip of a worker stream, a project
//! tar.zst) and the join request (token text, request JSON, CSR bytes).
//!
//! Properties: nothing panics; errors are errors (values, with a message), not crashes; memory
//! stays bounded (the decoder never hands out a line longer than its limit); nothing is
//! written outside the target directory and no link inside it points out; what parses
//! round-trips.
//!
//! Inputs are generated from pools of hostile pieces (names with `..`, absolute names, escaping
//! link targets, YAML tokens, stream frames) and then mutated byte by byte, so both the structure
//! and the byte-level parsing are exercised.
//!
//! How long: `cargo test` runs each target for `FUZZ_CASES` cases (default 32). With `FUZZ_SECS`
//! set (`make fuzz`, default 30 s per target), each target runs rounds of fresh random cases
//! until that time is spent, then prints `FUZZ <target>: <cases> cases in <secs> s`. A failure
//! prints the shrunk input.

use std::io::Cursor;
use std::time::{Duration, Instant};

use meshrun_coordinator::pki::{MeshCa, NodeCertRequest, PkiError, inspect};
use meshrun_coordinator::project_archive::{UnpackLimits, unpack};
use meshrun_shared::join::{JoinRequest, JoinToken};
use meshrun_shared::node_id::NodeId;
use meshrun_shared::receptor_conf::ReceptorConfig;
use meshrun_shared::runner_stream::archive::{ExtractLimits, extract_zip};
use meshrun_shared::runner_stream::decode::ZIP_DATA_CHUNK;
use meshrun_shared::runner_stream::{DecoderLimits, Frame, StreamDecoder, process_stream};
use meshrun_tests::hostile::{Sandbox, TarItem, ZipItem, tar_of, worker_stream, zip_of, zst};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestError, TestRunner};
use tar::EntryType;

/// Runs `property` on values of `strategy`: `FUZZ_CASES` of them, or rounds until `FUZZ_SECS`.
/// The property returns whether the input was accepted (counted, so that a target whose inputs
/// are all refused shows up as such).
fn fuzz<S: Strategy>(
    name: &str,
    strategy: S,
    property: impl Fn(S::Value) -> Result<bool, TestCaseError>,
) where
    S::Value: std::fmt::Debug,
{
    let secs: Option<u64> = std::env::var("FUZZ_SECS").ok().and_then(|s| s.parse().ok());
    let cases: u32 = std::env::var("FUZZ_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(if secs.is_some() { 256 } else { 32 });
    let started = Instant::now();
    let deadline = secs.map(|s| started + Duration::from_secs(s));
    let mut total = 0u64;
    let accepted = std::sync::atomic::AtomicU64::new(0);
    let counted = |value: S::Value| -> Result<(), TestCaseError> {
        if property(value)? {
            accepted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(())
    };
    loop {
        let mut runner = TestRunner::new(Config {
            cases,
            failure_persistence: None,
            max_shrink_iters: 2048,
            ..Config::default()
        });
        match runner.run(&strategy, counted) {
            Ok(()) => {}
            Err(TestError::Fail(reason, value)) => {
                panic!(
                    "FUZZ {name}: property failed after {total} cases: {reason}\ninput: {value:#?}"
                )
            }
            Err(TestError::Abort(reason)) => panic!("FUZZ {name}: aborted: {reason}"),
        }
        total += u64::from(cases);
        if deadline.is_none_or(|d| Instant::now() >= d) {
            break;
        }
    }
    eprintln!(
        "FUZZ {name}: {total} cases in {:.1} s ({} accepted, the rest refused with an error)",
        started.elapsed().as_secs_f64(),
        accepted.into_inner()
    );
}

/// Byte-level edits: (position, kind, byte); positions wrap around the input.
fn edits() -> impl Strategy<Value = Vec<(usize, u8, u8)>> {
    prop::collection::vec((any::<usize>(), 0u8..3, any::<u8>()), 0..6)
}

fn mutate(mut bytes: Vec<u8>, edits: &[(usize, u8, u8)]) -> Vec<u8> {
    for &(pos, kind, byte) in edits {
        let len = bytes.len();
        match kind {
            0 if len > 0 => bytes[pos % len] = byte,
            1 => bytes.insert(pos % (len + 1), byte),
            2 if len > 0 => {
                bytes.remove(pos % len);
            }
            _ => {}
        }
    }
    bytes
}

// ---------------------------------------------------------------------------------------------
// Worker-stream decoder
// ---------------------------------------------------------------------------------------------

const LIMITS: DecoderLimits = DecoderLimits {
    max_line_bytes: 300,
    max_zip_bytes: 4096,
};

fn stream_piece() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(b"{\"status\": \"running\"}\n".to_vec()),
        Just(b"{\"uuid\": \"u1\", \"counter\": 1, \"event\": \"runner_on_ok\", \"stdout\": \"ok\"}\n".to_vec()),
        Just(b"{\"event\": \"keepalive\"}\n".to_vec()),
        Just(b"{\"kwargs\": {\"ident\": \"x\"}}\n".to_vec()),
        Just(b"{\"eof\": true}\n".to_vec()),
        Just(b"{\"zipfile\": 5}\nSGVsbG8=".to_vec()),
        Just(b"{\"zipfile\": 0}\n".to_vec()),
        Just(b"{\"zipfile\": 99999999999}\n".to_vec()),
        Just(b"{\"status\": \"x\", \"bad\": \"\\ud800\"}\n".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b"  \n".to_vec()),
        Just(b"[[[[[[[[[[\n".to_vec()),
        Just(vec![b'a'; 400]),
        prop::collection::vec(any::<u8>(), 0..64),
        "[ -~]{0,40}\n".prop_map(String::into_bytes),
        (1u64..200).prop_map(|n| format!("{{\"zipfile\": {n}}}\n").into_bytes()),
        "[A-Za-z0-9+/= \n]{0,80}".prop_map(String::into_bytes),
    ]
}

/// Pieces of a well-formed stream.
fn valid_piece() -> impl Strategy<Value = &'static [u8]> {
    prop::sample::select(vec![
        b"{\"status\": \"running\"}\n".as_slice(),
        b"{\"uuid\": \"u1\", \"counter\": 1, \"event\": \"runner_on_ok\"}\n",
        b"{\"event\": \"keepalive\"}\n",
        b"{\"kwargs\": {\"ident\": \"x\"}}\n",
        b"{\"zipfile\": 5}\nSGVs\nbG8=",
        b"{\"zipfile\": 0}\n",
        b"{\"other\": [1, {\"a\": null}]}\r\n",
        b"\n",
    ])
}

fn stream_input() -> impl Strategy<Value = (Vec<u8>, Vec<usize>)> {
    let bytes = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..1024),
        prop::collection::vec(valid_piece(), 0..10).prop_map(|p| {
            let mut s = p.concat();
            s.extend_from_slice(b"{\"eof\": true}\n");
            s
        }),
        (prop::collection::vec(stream_piece(), 0..12), edits())
            .prop_map(|(pieces, e)| mutate(pieces.concat(), &e)),
    ];
    (bytes, prop::collection::vec(1usize..64, 0..16))
}

type Decoded = (Vec<Frame>, Result<(), String>);

/// The error text without the part that legitimately depends on chunking: the preview of data
/// after the eof frame shows what the current chunk holds.
fn normalized(err: String) -> String {
    match err.find(": ") {
        Some(at) if err.starts_with("data after the eof frame") => err[..at].to_string(),
        _ => err,
    }
}

/// Decodes `input` split at `cuts` (chunk sizes, cycled); checks the bounds on the way.
fn decode_in_chunks(input: &[u8], cuts: &[usize]) -> Result<Decoded, TestCaseError> {
    let mut decoder = StreamDecoder::new(LIMITS);
    let mut frames = Vec::new();
    let mut too_long = None;
    let mut rest = input;
    let mut i = 0;
    let mut result = Ok(());
    while !rest.is_empty() {
        let n = if cuts.is_empty() {
            rest.len()
        } else {
            cuts[i % cuts.len()].min(rest.len())
        };
        i += 1;
        let (chunk, tail) = rest.split_at(n);
        rest = tail;
        let pushed = decoder.push_with_lines(chunk, &mut |frame: Frame, line: &[u8]| {
            if line.len() > LIMITS.max_line_bytes {
                too_long = Some(line.len());
            }
            if let Frame::ZipData(d) = &frame
                && d.len() > ZIP_DATA_CHUNK
            {
                too_long = Some(d.len());
            }
            frames.push(frame);
            Ok::<(), std::convert::Infallible>(())
        });
        if let Err(e) = pushed {
            result = Err(normalized(e.to_string()));
            break;
        }
    }
    prop_assert!(
        too_long.is_none(),
        "the decoder handed out {too_long:?} bytes at once"
    );
    if result.is_ok() {
        result = decoder.finish().map_err(|e| e.to_string());
    }
    Ok((frames, result))
}

#[test]
fn fuzz_stream_decoder() {
    fuzz("stream_decoder", stream_input(), |(input, cuts)| {
        let whole = decode_in_chunks(&input, &[])?;
        let chunked = decode_in_chunks(&input, &cuts)?;
        prop_assert_eq!(&whole, &chunked, "chunking changed the result");
        if let Err(e) = &whole.1 {
            prop_assert!(!e.is_empty());
        }
        // Zip data adds up to the announced size when the blob completed.
        let mut announced = None;
        let mut got = 0u64;
        for frame in &whole.0 {
            match frame {
                Frame::ZipStart { size } => (announced, got) = (Some(*size), 0),
                Frame::ZipData(d) => got += d.len() as u64,
                Frame::ZipEnd => prop_assert_eq!(announced.take(), Some(got)),
                _ => {}
            }
        }
        Ok(whole.1.is_ok())
    });
}

// ---------------------------------------------------------------------------------------------
// receptor.conf parser
// ---------------------------------------------------------------------------------------------

const CONF_SEEDS: &[&str] = &[
    "- node:\n    id: exec1\n- log-level: debug\n- tcp-listener:\n    port: 27199\n",
    "- tcp-peer:\n    address: hop:27199\n    redial: true\n    tls: tls_client\n",
    "- control-service:\n    service: control\n    filename: /run/receptor.sock\n    permissions: 0660\n",
    "- work-command:\n    worktype: ansible-runner\n    command: ansible-runner\n    params: worker\n    allowruntimeparams: true\n",
    "- tls-server:\n    name: tls_server\n    cert: /a.crt\n    key: /a.key\n    clientcas: /ca.crt\n    requireclientcert: true\n",
    "- node:\n    id: a\n    firewallrules:\n      - action: reject\n        tonode: b\n- local-only\n",
    "- work-verification:\n    publickey: /k.pem\n- work-signing:\n    privatekey: /p.pem\n    tokenexpiration: 1h\n",
];

fn yaml_piece() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "- ",
            "\n",
            "  ",
            "    ",
            ":",
            ": ",
            "{",
            "}",
            "[",
            "]",
            ", ",
            "\"",
            "'",
            "&a ",
            "*a",
            "!!str ",
            "!!binary ",
            "---\n",
            "...\n",
            "# c\n",
            "? ",
            "|\n",
            ">\n",
            "node",
            "id",
            "tcp-peer",
            "tcp-listener",
            "address",
            "port",
            "redial",
            "cost",
            "nodecost",
            "log-level",
            "local-only",
            "version",
            "yes",
            "no",
            "~",
            "null",
            "0660",
            "0x1F",
            "0o17",
            "1_000",
            "1.5",
            ".inf",
            "-1",
            "1e400",
            "\t",
            "\\u0000",
            "\u{7f}",
            "é",
        ])
        .prop_map(str::to_string),
        "[a-z0-9_.:/-]{0,10}",
    ]
}

fn conf_input() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::collection::vec(yaml_piece(), 0..48).prop_map(|p| p.concat()),
        (prop::sample::select(CONF_SEEDS), edits()).prop_map(|(seed, e)| {
            String::from_utf8_lossy(&mutate(seed.as_bytes().to_vec(), &e)).into_owned()
        }),
        (
            prop::sample::select(CONF_SEEDS),
            prop::collection::vec(yaml_piece(), 1..4),
            any::<usize>()
        )
            .prop_map(|(seed, ins, at)| {
                let mut s = seed.to_string();
                let mut at = at % (s.len() + 1);
                while !s.is_char_boundary(at) {
                    at -= 1;
                }
                s.insert_str(at, &ins.concat());
                s
            }),
    ]
}

#[test]
fn fuzz_receptor_conf_parser() {
    for seed in CONF_SEEDS {
        ReceptorConfig::parse(seed).unwrap_or_else(|e| panic!("seed does not parse: {e}\n{seed}"));
    }
    fuzz("receptor_conf", conf_input(), |text| {
        if let Ok(config) = ReceptorConfig::parse(&text) {
            let rendered = config.render();
            let again = ReceptorConfig::parse(&rendered).map_err(|e| {
                TestCaseError::fail(format!("render output does not parse: {e}\n{rendered}"))
            })?;
            prop_assert_eq!(again.render(), rendered, "render is not stable");
            return Ok(true);
        }
        Ok(false)
    });
}

// ---------------------------------------------------------------------------------------------
// Archive extraction
// ---------------------------------------------------------------------------------------------

const NAMES: &[&str] = &[
    "a",
    "b/c",
    "d/",
    "../x",
    "/abs",
    "a/../../y",
    ".",
    "./",
    "",
    "l",
    "l/x",
    "..",
    "a\\b",
    "sub/..",
    "x/./y",
    "sub/",
    "sub/f",
    "l/../z",
    "rc",
    "job_events/1-u.json",
];
const TARGETS: &[&str] = &[
    "..",
    "../outside",
    "/etc",
    ".",
    "a",
    "sub/..",
    "../target/a",
    "l",
    "b/../..",
    "../../..",
    "sub",
    "x/../../..",
    "",
];

fn zip_item() -> impl Strategy<Value = ZipItem> {
    let name = prop::sample::select(NAMES).prop_map(str::to_string);
    prop_oneof![
        (
            name.clone(),
            prop::collection::vec(any::<u8>(), 0..16),
            any::<bool>()
        )
            .prop_map(|(name, data, deflate)| ZipItem::File {
                name,
                data,
                deflate
            }),
        name.clone()
            .prop_map(|n| ZipItem::Dir(format!("{}/", n.trim_end_matches('/')))),
        (name.clone(), prop::sample::select(TARGETS)).prop_map(|(name, t)| ZipItem::Link {
            name,
            target: t.to_string()
        }),
        (
            name,
            prop::sample::select(vec![
                0o010_644u32,
                0o020_644,
                0o140_644,
                0o170_644,
                0o104_755
            ])
        )
            .prop_map(|(name, mode)| ZipItem::Mode { name, mode }),
    ]
}

fn zip_input() -> impl Strategy<Value = (Vec<ZipItem>, Vec<(usize, u8, u8)>)> {
    (
        prop::collection::vec(zip_item(), 0..8),
        prop_oneof![Just(Vec::new()), edits()],
    )
}

#[test]
fn fuzz_artifact_zip_from_a_worker_stream() {
    fuzz("artifact_zip", zip_input(), |(items, e)| {
        let zip = mutate(zip_of(&items), &e);
        let sandbox = Sandbox::new();
        let stream = worker_stream(&[], Some(&zip), true);
        let result = process_stream(
            Cursor::new(&stream),
            &sandbox.target,
            &DecoderLimits::default(),
            &ExtractLimits::default(),
            |_| {},
        );
        if let Err(err) = &result {
            prop_assert!(!err.to_string().is_empty());
        }
        sandbox.assert_contained("artifact zip");
        // The same bytes straight into extract_zip (no stream around them).
        let sandbox = Sandbox::new();
        let direct = extract_zip(
            Cursor::new(&zip),
            &sandbox.target,
            &ExtractLimits::default(),
        );
        sandbox.assert_contained("extract_zip");
        prop_assert_eq!(
            result.is_ok(),
            direct.is_ok(),
            "stream and direct extraction disagree"
        );
        Ok(result.is_ok())
    });
}

fn tar_item() -> impl Strategy<Value = TarItem> {
    let kind = prop::sample::select(vec![
        EntryType::Regular,
        EntryType::Directory,
        EntryType::Symlink,
        EntryType::Link,
        EntryType::Char,
        EntryType::Fifo,
        EntryType::GNULongName,
        EntryType::XHeader,
        EntryType::GNUSparse,
        EntryType::new(b'Z'),
    ]);
    (
        prop::sample::select(NAMES),
        kind,
        prop::sample::select(TARGETS),
        prop::collection::vec(any::<u8>(), 0..40),
    )
        .prop_map(|(name, kind, link, data)| {
            let data = if matches!(kind, EntryType::XHeader) {
                format!("{} path={link}\n", 6 + link.len() + 1 + 1 + 1).into_bytes()
            } else if matches!(kind, EntryType::GNULongName) {
                let mut d = link.as_bytes().to_vec();
                d.push(0);
                d
            } else {
                data
            };
            TarItem {
                name: name.as_bytes().to_vec(),
                kind,
                link: link.as_bytes().to_vec(),
                data,
            }
        })
}

#[test]
fn fuzz_project_tar_zst_unpack() {
    let input = (
        prop::collection::vec(tar_item(), 0..8),
        prop_oneof![Just(Vec::new()), edits()],
        prop_oneof![3 => Just(Vec::new()), 1 => edits()],
    );
    fuzz("project_unpack", input, |(items, tar_edits, zst_edits)| {
        let tar = mutate(tar_of(&items), &tar_edits);
        let archive = mutate(zst(&tar), &zst_edits);
        let sandbox = Sandbox::new();
        let dest = sandbox.target.join("p");
        let result = unpack(archive.as_slice(), &dest, &UnpackLimits::default());
        if let Err(err) = &result {
            prop_assert!(!err.to_string().is_empty());
        }
        sandbox.assert_contained("project unpack");
        Ok(result.is_ok())
    });
}

// ---------------------------------------------------------------------------------------------
// The join request
// ---------------------------------------------------------------------------------------------

fn token_text() -> impl Strategy<Value = String> {
    use base64::Engine as _;
    let b64 = |json: String| {
        format!(
            "mrjoin1.{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
        )
    };
    let good = r#"{"u":"https://coord:8443","f":"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef","s":"c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0"}"#;
    prop_oneof![
        any::<String>(),
        "mrjoin1\\.[A-Za-z0-9_=+/.-]{0,80}",
        edits().prop_map(move |e| b64(String::from_utf8_lossy(&mutate(
            good.as_bytes().to_vec(),
            &e
        ))
        .into_owned())),
        edits().prop_map(move |e| String::from_utf8_lossy(&mutate(
            b64(good.to_string()).into_bytes(),
            &e
        ))
        .into_owned()),
    ]
}

#[test]
fn fuzz_join_token_decode() {
    fuzz("join_token", token_text(), |text| {
        match JoinToken::decode(&text) {
            Ok(token) => {
                prop_assert!(token.url.starts_with("https://"));
                prop_assert_eq!(JoinToken::decode(&token.encode()), Ok(token));
                Ok(true)
            }
            Err(e) => {
                prop_assert!(!e.to_string().is_empty());
                Ok(false)
            }
        }
    });
}

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::Value;
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        prop::sample::select(vec![
            "",
            "exec1",
            "execution",
            "hop",
            "control",
            "10.0.0.1",
            "::1",
            "h:1",
            "mrjoin1.x",
            "-----BEGIN CERTIFICATE REQUEST-----"
        ])
        .prop_map(|s| Value::String(s.to_string())),
        any::<String>().prop_map(Value::String),
    ];
    let keys = prop::sample::select(vec![
        "token",
        "node_id",
        "node_type",
        "csr_pem",
        "dns_names",
        "ip_addresses",
        "advertise",
        "peer",
        "agent_version",
        "extra",
    ]);
    leaf.prop_recursive(3, 32, 8, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((keys.clone(), inner), 0..9).prop_map(|kv| {
                Value::Object(kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
            }),
        ]
    })
}

/// A request object with the required fields (of any JSON type) and some optional ones.
fn join_request_object() -> impl Strategy<Value = serde_json::Value> {
    let optional = prop::sample::subsequence(
        vec![
            "node_type",
            "dns_names",
            "ip_addresses",
            "advertise",
            "peer",
            "agent_version",
            "extra",
        ],
        0..7,
    );
    (
        prop::collection::vec(
            prop_oneof![
                4 => any::<String>().prop_map(serde_json::Value::String),
                1 => json_value(),
            ],
            3,
        ),
        optional,
        prop::collection::vec(
            prop_oneof![
                json_value(),
                prop::sample::select(vec![
                    "execution",
                    "hop",
                    "10.1.2.3",
                    "fe80::1",
                    "h.example:27199"
                ])
                .prop_map(|s| serde_json::Value::String(s.to_string())),
                Just(serde_json::json!(["10.0.0.1", "::1"])),
                Just(serde_json::json!(["a.example", "b"])),
            ],
            7,
        ),
    )
        .prop_map(|(required, optional, values)| {
            let mut map = serde_json::Map::new();
            for (k, v) in ["token", "node_id", "csr_pem"].iter().zip(required) {
                map.insert(k.to_string(), v);
            }
            for (k, v) in optional.into_iter().zip(values) {
                map.insert(k.to_string(), v);
            }
            serde_json::Value::Object(map)
        })
}

#[test]
fn fuzz_join_request_json() {
    let input = prop_oneof![
        json_value().prop_map(|v| serde_json::to_vec(&v).unwrap_or_default()),
        join_request_object().prop_map(|v| serde_json::to_vec(&v).unwrap_or_default()),
        prop::collection::vec(any::<u8>(), 0..256),
    ];
    fuzz("join_request", input, |bytes| {
        if let Ok(req) = serde_json::from_slice::<JoinRequest>(&bytes) {
            let again: JoinRequest = serde_json::from_value(serde_json::to_value(&req).unwrap())
                .map_err(|e| TestCaseError::fail(format!("round trip: {e}")))?;
            prop_assert_eq!(again, req);
            return Ok(true);
        }
        Ok(false)
    });
}

#[test]
fn fuzz_sign_csr() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, _) = MeshCa::load_or_create(dir.path()).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["control".to_string()]).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "control");
    let csr = params.serialize_request(&key).unwrap();
    let (pem, der) = (csr.pem().unwrap(), csr.der().to_vec());
    let req = NodeCertRequest {
        node_id: Some(NodeId::new("exec1").unwrap()),
        dns_names: vec![],
        ip_addresses: vec![],
        validity: Duration::from_secs(3600),
    };
    let pem_of = |der: &[u8]| {
        use base64::Engine as _;
        format!(
            "-----BEGIN CERTIFICATE REQUEST-----\n{}\n-----END CERTIFICATE REQUEST-----\n",
            base64::engine::general_purpose::STANDARD.encode(der)
        )
    };
    let input = prop_oneof![
        any::<String>(),
        edits().prop_map({
            let pem = pem.clone();
            move |e| String::from_utf8_lossy(&mutate(pem.clone().into_bytes(), &e)).into_owned()
        }),
        edits().prop_map(move |e| pem_of(&mutate(der.clone(), &e))),
        prop::collection::vec(any::<u8>(), 0..512).prop_map(move |d| pem_of(&d)),
    ];
    fuzz("sign_csr", input, |text| match ca.sign_csr(&text, &req) {
        Ok(issued) => {
            let der = inspect::first_cert_der(&issued.cert_pem).unwrap();
            prop_assert_eq!(inspect::receptor_names(&der).unwrap(), ["exec1"]);
            prop_assert!(inspect::verifies_against(&der, ca.cert_der()));
            Ok(true)
        }
        Err(PkiError::BadCsr(reason)) => {
            prop_assert!(!reason.is_empty());
            Ok(false)
        }
        Err(other) => Err(TestCaseError::fail(format!("not a CSR refusal: {other}"))),
    });
}
