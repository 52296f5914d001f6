//! `work submit`: request encoding, the created line, payload streaming with half-close, result.

use std::collections::BTreeMap;

use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

use super::fake::{Fake, Step, greet, line};
use super::{connect, within};
use crate::control_socket::*;

const CREATED: &str = "Work unit created with ID WURYEcy6. Send stdin data and EOF.";

fn cat_request() -> SubmitRequest {
    SubmitRequest::new("t1", "cat")
}

fn minimal_json() -> Value {
    json!({"command": "work", "subcommand": "submit", "node": "t1", "worktype": "cat"})
}

#[test]
fn request_encoding_full_and_minimal() {
    let mut req = SubmitRequest::new("exec1", "ansible-runner");
    req.params = Some("--worker-info".into());
    req.tlsclient = Some("tls_client".into());
    req.ttl = Some("20s".into());
    req.signwork = true;
    req.extra = BTreeMap::from([("meshrun_job".to_owned(), "42".to_owned())]);
    let got: Value = serde_json::from_slice(&req.to_command_line().unwrap()).unwrap();
    assert_eq!(
        got,
        json!({"command": "work", "subcommand": "submit", "node": "exec1",
               "worktype": "ansible-runner", "params": "--worker-info",
               "tlsclient": "tls_client", "ttl": "20s", "signwork": "true", "meshrun_job": "42"})
    );
    let line = cat_request().to_command_line().unwrap();
    assert!(!line.contains(&b'\n'));
    let got: Value = serde_json::from_slice(&line).unwrap();
    assert_eq!(got, minimal_json());
    // Params are free text for shlex; JSON quoting keeps them on one line.
    let mut req = cat_request();
    req.params = Some("a \"b c\"\nd".into());
    let line = req.to_command_line().unwrap();
    assert!(!line.contains(&b'\n'));
}

#[test]
fn request_refusals_name_the_field() {
    for key in RESERVED_SUBMIT_KEYS {
        let mut req = cat_request();
        req.extra.insert(key.to_owned(), "x".into());
        let err = req.to_command_line().unwrap_err();
        assert!(
            matches!(err, ControlError::InvalidRequest { ref field, .. } if field.contains(key)),
            "{key}: {err:?}"
        );
    }
    let bad_extras = [("", "v"), ("a\nb", "v"), ("tag", "x\ny"), ("tag", "x\r")];
    for (k, v) in bad_extras {
        let mut req = cat_request();
        req.extra.insert(k.to_owned(), v.to_owned());
        assert!(
            matches!(
                req.to_command_line(),
                Err(ControlError::InvalidRequest { .. })
            ),
            "{k:?}={v:?}"
        );
    }
    let mut cases = Vec::new();
    cases.push(("node", SubmitRequest::new("", "cat")));
    cases.push(("node", SubmitRequest::new("t\n1", "cat")));
    cases.push(("worktype", SubmitRequest::new("t1", "")));
    let mut r = cat_request();
    r.tlsclient = Some(String::new());
    cases.push(("tlsclient", r));
    let mut r = cat_request();
    r.ttl = Some("1s\n".into());
    cases.push(("ttl", r));
    for (field, req) in cases {
        let err = req.to_command_line().unwrap_err();
        assert!(
            matches!(err, ControlError::InvalidRequest { field: ref f, .. } if f == field),
            "{field}: {err:?}"
        );
        assert!(err.to_string().contains(field), "{err}");
    }
}

#[tokio::test]
async fn submit_streams_payload_and_reads_result_only_after_half_close() {
    within(async {
        let mut req = cat_request();
        req.extra.insert("tag".into(), "job-1".into());
        let mut want = minimal_json();
        want["tag"] = json!("job-1");
        let fake = Fake::unix(vec![
            greet(),
            Step::ExpectJson(want),
            line(CREATED),
            // Blocks until the client half-closes: an answer arrives only after EOF.
            Step::ReadToEof(b"hello world".to_vec()),
            line(r#"{"result":"Job Started","unitid":"WURYEcy6"}"#),
        ]);
        let c = connect(&fake).await;
        let mut s = c.work_submit(&req).await.unwrap();
        assert_eq!(s.unit_id, "WURYEcy6");
        s.write_all(b"hello").await.unwrap();
        let copied = s.copy_from(&mut &b" world"[..]).await.unwrap();
        assert_eq!((copied, s.bytes_sent()), (6, 11));
        let res = s.finish().await.unwrap();
        assert_eq!(res.unit_id, "WURYEcy6");
        assert!(res.is_started());
        fake.done().await;
    })
    .await;
}

#[tokio::test]
async fn submit_large_payload_through_async_write() {
    within(async {
        let payload: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let fake = Fake::unix(vec![
            greet(),
            Step::ExpectJson(minimal_json()),
            line(CREATED),
            Step::ReadToEof(payload.clone()),
            line(r#"{"result":"Job Submitted","unitid":"WURYEcy6"}"#),
        ]);
        let c = connect(&fake).await;
        let mut s = c.work_submit(&cat_request()).await.unwrap();
        tokio::io::copy(&mut &payload[..], &mut s).await.unwrap();
        s.shutdown().await.unwrap();
        assert_eq!(s.bytes_sent(), payload.len() as u64);
        let res = s.finish().await.unwrap();
        assert!(!res.is_started());
        assert_eq!(res.result, "Job Submitted");
        fake.done().await;
    })
    .await;
}

#[tokio::test]
async fn submit_refused_at_creation() {
    within(async {
        let fake = Fake::unix(vec![
            greet(),
            Step::ExpectJson(minimal_json()),
            line("ERROR: unknown work type nope"),
        ]);
        let c = connect(&fake).await;
        match c.work_submit(&cat_request()).await.unwrap_err() {
            ControlError::Receptor { command, message } => {
                assert_eq!(command, "work submit");
                assert_eq!(message, "unknown work type nope");
            }
            other => panic!("{other:?}"),
        }
        fake.done().await;
    })
    .await;
}

#[tokio::test]
async fn submit_refused_after_payload() {
    within(async {
        let fake = Fake::unix(vec![
            greet(),
            Step::ExpectJson(minimal_json()),
            line(CREATED),
            Step::ReadToEof(b"x".to_vec()),
            line("ERROR: Error starting worker: boom"),
        ]);
        let c = connect(&fake).await;
        let mut s = c.work_submit(&cat_request()).await.unwrap();
        s.write_all(b"x").await.unwrap();
        let err = s.finish().await.unwrap_err();
        assert!(
            matches!(err, ControlError::Receptor { ref message, .. } if message == "Error starting worker: boom"),
            "{err:?}"
        );
        fake.done().await;
    })
    .await;
}

#[tokio::test]
async fn hostile_created_lines_are_refused() {
    let lines = [
        "Work unit created with ID ../x. Send stdin data and EOF.",
        "Work unit created with ID . Send stdin data and EOF.",
        "Work unit created with ID a b. Send stdin data and EOF.",
        "Work unit created with ID WURYEcy6.",
        "Work unit created with ID WURYEcy6",
        "{\"unitid\":\"WURYEcy6\"}",
        "",
    ];
    let long = format!(
        "Work unit created with ID {}. Send stdin data and EOF.",
        "x".repeat(65)
    );
    for created in lines.iter().copied().chain([long.as_str()]) {
        within(async {
            let fake = Fake::unix(vec![greet(), Step::ExpectJson(minimal_json()), line(created)]);
            let c = connect(&fake).await;
            let err = c.work_submit(&cat_request()).await.unwrap_err();
            assert!(
                matches!(err, ControlError::UnexpectedReply { ref command, .. } if command == "work submit"),
                "{created:?}: {err:?}"
            );
            fake.done().await;
        })
        .await;
    }
}

#[tokio::test]
async fn bad_submit_results_never_echo_the_payload() {
    let cases: [(&[u8], &str); 4] = [
        (
            b"{\"result\":\"Job Started\",\"unitid\":\"OTHER\"}\n",
            "UnexpectedReply",
        ),
        (b"not json\n", "Json"),
        (b"{\"result\":\"Job Started\"}\n", "Json"),
        (b"", "ConnectionClosed"),
    ];
    for (reply, want) in cases {
        within(async {
            let fake = Fake::unix(vec![
                greet(),
                Step::ExpectJson(minimal_json()),
                line(CREATED),
                Step::ReadToEof(b"TOPSECRET".to_vec()),
                Step::Send(reply.to_vec()),
            ]);
            let c = connect(&fake).await;
            let mut s = c.work_submit(&cat_request()).await.unwrap();
            s.write_all(b"TOPSECRET").await.unwrap();
            let err = s.finish().await.unwrap_err();
            let kind = match err {
                ControlError::UnexpectedReply { .. } => "UnexpectedReply",
                ControlError::Json { .. } => "Json",
                ControlError::ConnectionClosed { .. } => "ConnectionClosed",
                ref other => panic!("{other:?}"),
            };
            assert_eq!(kind, want);
            let text = format!("{err} {err:?}");
            assert!(!text.contains("TOPSECRET"), "{text}");
            assert!(
                text.contains("WURYEcy6") || want != "ConnectionClosed",
                "{text}"
            );
            fake.done().await;
        })
        .await;
    }
}

#[tokio::test]
async fn payload_write_to_a_closed_socket_is_io_without_payload() {
    within(async {
        let fake = Fake::unix(vec![
            greet(),
            Step::ExpectJson(minimal_json()),
            line(CREATED),
        ]);
        let c = connect(&fake).await;
        let mut s = c.work_submit(&cat_request()).await.unwrap();
        fake.done().await;
        let chunk = vec![b'S'; 1 << 16];
        let mut last = Ok(());
        for _ in 0..64 {
            last = s.write_all(&chunk).await;
            if last.is_err() {
                break;
            }
        }
        let err = last.unwrap_err();
        assert!(
            matches!(err, ControlError::Io { ref during, .. } if during.contains("WURYEcy6")),
            "{err:?}"
        );
        assert!(!err.to_string().contains("SSSS"));
    })
    .await;
}
