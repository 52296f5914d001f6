//! Client tests against a scripted fake server that speaks receptor's exact protocol, plus an
//! opt-in test against a real receptor binary.

mod fake;
mod real_receptor;
mod results_tests;
mod submit_tests;

use std::future::Future;
use std::time::Duration;

use serde_json::json;

use super::*;
use fake::{Fake, Step, greet, line};

/// Short limits so failure cases finish fast.
fn opts() -> ControlOptions {
    ControlOptions {
        connect_timeout: Duration::from_secs(2),
        reply_timeout: Duration::from_secs(2),
        max_line: 1 << 20,
    }
}

/// Fails the test instead of hanging it.
async fn within<T>(fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), fut)
        .await
        .expect("test took too long")
}

async fn connect(fake: &Fake) -> ControlClient {
    ControlClient::connect_unix_with(fake.path(), opts())
        .await
        .unwrap()
}

fn work(sub: &str, id: &str) -> Step {
    Step::ExpectJson(json!({"command": "work", "subcommand": sub, "unitid": id}))
}

const DONE_UNIT: &str = r#"{"Detail":"exit status 0","ExtraData":null,"State":2,"StateName":"Succeeded","StdoutSize":5,"WorkType":"cat"}"#;
const REAL_STATUS: &str = r#"{"Advertisements":[{"NodeID":"t1","Service":"control","Time":"2026-11-27T20:29:47.346050088Z","ConnType":1,"Tags":{"type":"Control Service"},"WorkCommands":[{"WorkType":"cat","Secure":false}]}],"Connections":[],"KnownConnectionCosts":{},"NodeID":"t1","RoutingTable":{},"SystemCPUCount":2,"SystemMemoryMiB":24105,"Version":"1.4.8"}"#;

#[tokio::test]
async fn greeting_gives_node_id() {
    within(async {
        let fake = Fake::unix(vec![Step::Send(b"Receptor Control, node t1\r\n".to_vec())]);
        let client = connect(&fake).await;
        assert_eq!(client.node_id(), "t1");
        fake.done().await;
    })
    .await;
}

#[tokio::test]
async fn bad_greetings_are_refused() {
    let long = vec![b'A'; 5000];
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (b"Hello\n".to_vec(), "BadGreeting"),
        (b"Receptor Control, node \n".to_vec(), "BadGreeting"),
        (b"Receptor Control, node a b\n".to_vec(), "BadGreeting"),
        (b"Receptor Control, node \xff\n".to_vec(), "BadGreeting"),
        (b"ERROR: nope\n".to_vec(), "BadGreeting"),
        (long, "BadGreeting"),
        (b"Receptor Control, node t1".to_vec(), "ConnectionClosed"),
        (Vec::new(), "ConnectionClosed"),
    ];
    for (sent, want) in cases {
        within(async {
            let fake = Fake::unix(vec![Step::Send(sent.clone())]);
            let err = ControlClient::connect_unix_with(fake.path(), opts())
                .await
                .unwrap_err();
            let kind = match err {
                ControlError::BadGreeting(_) => "BadGreeting",
                ControlError::ConnectionClosed { .. } => "ConnectionClosed",
                ref other => panic!("{other:?}"),
            };
            assert_eq!(kind, want, "for {:?}", String::from_utf8_lossy(&sent));
            assert!(err.to_string().len() < 400, "error text not cut: {err}");
            fake.done().await;
        })
        .await;
    }
}

#[tokio::test]
async fn silent_server_times_out_and_missing_socket_is_io() {
    within(async {
        let fake = Fake::unix(vec![Step::ReadToEof(Vec::new())]);
        let mut o = opts();
        o.connect_timeout = Duration::from_millis(200);
        let err = ControlClient::connect_unix_with(fake.path(), o)
            .await
            .unwrap_err();
        assert!(
            matches!(err, ControlError::Timeout { after, .. } if after == Duration::from_millis(200)),
            "{err:?}"
        );
        fake.done().await;

        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("none.sock");
        let err = ControlClient::connect_unix(&missing).await.unwrap_err();
        assert!(matches!(err, ControlError::Io { .. }), "{err:?}");
        assert!(err.to_string().contains("none.sock"), "{err}");
    })
    .await;
}

#[tokio::test]
async fn status_ping_and_list_share_one_connection() {
    within(async {
        let fake = Fake::unix(vec![
            greet(),
            Step::ExpectJson(json!({"command": "status"})),
            line(REAL_STATUS),
            Step::ExpectJson(json!({"command": "ping", "target": "t1"})),
            line(r#"{"From":"t1","Success":true,"Time":13159,"TimeStr":"13.159µs"}"#),
            Step::ExpectJson(json!({"command": "ping", "target": "t9"})),
            line(r#"{"Error":"no route to node","Success":false}"#),
            Step::ExpectJson(json!({"command": "work", "subcommand": "list"})),
            line(&format!(
                r#"{{"a1":{DONE_UNIT},"b2":{{"State":1,"ExtraData":{{"Pid":7,"Params":""}}}}}}"#
            )),
            Step::ExpectJson(json!({"command": "work", "subcommand": "list"})),
            line("{}"),
        ]);
        let mut c = connect(&fake).await;
        let s = c.status().await.unwrap();
        assert_eq!((s.node_id.as_str(), s.version.as_str()), ("t1", "1.4.8"));
        assert_eq!(s.advertisements[0].work_commands[0].work_type, "cat");
        assert_eq!(
            c.ping("t1").await.unwrap(),
            PingReply::Reached {
                from: "t1".into(),
                elapsed: Duration::from_nanos(13159)
            }
        );
        assert_eq!(
            c.ping("t9").await.unwrap(),
            PingReply::Failed {
                error: "no route to node".into()
            }
        );
        let list = c.work_list().await.unwrap();
        assert_eq!(list.keys().collect::<Vec<_>>(), ["a1", "b2"]);
        assert_eq!(list["a1"].state, UnitState::Succeeded);
        assert_eq!(list["b2"].state, UnitState::Running);
        assert!(c.work_list().await.unwrap().is_empty());
        fake.done().await;
    })
    .await;
}

#[tokio::test]
async fn work_status_cancel_release_replies() {
    within(async {
        let fake = Fake::unix(vec![
            greet(),
            work("status", "u1"),
            line(DONE_UNIT),
            work("cancel", "u1"),
            line(r#"{"cancelled":"u1"}"#),
            work("cancel", "u2"),
            line(r#"{"cancel pending":"u2"}"#),
            work("release", "u1"),
            line(r#"{"released":"u1"}"#),
            work("release", "u2"),
            line(r#"{"release pending":"u2"}"#),
            work("force-release", "u2"),
            line(r#"{"released":"u2"}"#),
        ]);
        let mut c = connect(&fake).await;
        let st = c.work_status("u1").await.unwrap();
        assert_eq!((st.state, st.stdout_size), (UnitState::Succeeded, 5));
        assert_eq!(c.work_cancel("u1").await.unwrap(), CancelOutcome::Cancelled);
        assert_eq!(c.work_cancel("u2").await.unwrap(), CancelOutcome::Pending);
        assert_eq!(
            c.work_release("u1").await.unwrap(),
            ReleaseOutcome::Released
        );
        assert_eq!(c.work_release("u2").await.unwrap(), ReleaseOutcome::Pending);
        assert_eq!(
            c.work_force_release("u2").await.unwrap(),
            ReleaseOutcome::Released
        );
        fake.done().await;
    })
    .await;
}

#[tokio::test]
async fn unit_ids_are_sent_json_quoted() {
    within(async {
        let odd = "a b\"c\\d";
        let fake = Fake::unix(vec![greet(), work("status", odd), line(DONE_UNIT)]);
        let mut c = connect(&fake).await;
        c.work_status(odd).await.unwrap();
        fake.done().await;
    })
    .await;
}

#[tokio::test]
async fn error_replies_become_typed_errors_and_keep_the_connection() {
    within(async {
        let fake = Fake::unix(vec![
            greet(),
            work("status", "nosuch"),
            line("ERROR: unknown work unit nosuch"),
            work("cancel", "nosuch"),
            line("ERROR: unknown work unit nosuch"),
            work("release", "nosuch"),
            line("ERROR: unknown work unit nosuch"),
            work("force-release", "nosuch"),
            line("ERROR: unknown work unit nosuch"),
            Step::ExpectJson(json!({"command": "ping", "target": "x"})),
            line("ERROR: Unknown command"),
            Step::ExpectJson(json!({"command": "status"})),
            line("ERROR:"),
            Step::ExpectJson(json!({"command": "status"})),
            line(REAL_STATUS),
        ]);
        let mut c = connect(&fake).await;
        let unknown =
            |e: ControlError| matches!(e, ControlError::UnknownUnit(ref id) if id == "nosuch");
        assert!(unknown(c.work_status("nosuch").await.unwrap_err()));
        assert!(unknown(c.work_cancel("nosuch").await.unwrap_err()));
        assert!(unknown(c.work_release("nosuch").await.unwrap_err()));
        assert!(unknown(c.work_force_release("nosuch").await.unwrap_err()));
        match c.ping("x").await.unwrap_err() {
            ControlError::Receptor { command, message } => {
                assert_eq!(
                    (command.as_str(), message.as_str()),
                    ("ping", "Unknown command")
                );
            }
            other => panic!("{other:?}"),
        }
        let err = c.status().await.unwrap_err();
        assert!(matches!(err, ControlError::Receptor { ref message, .. } if message.is_empty()));
        assert_eq!(c.status().await.unwrap().node_id, "t1");
        fake.done().await;
    })
    .await;
}

#[tokio::test]
async fn bad_json_replies_are_json_errors_and_keep_the_connection() {
    within(async {
        let fake = Fake::unix(vec![
            greet(),
            work("status", "u1"),
            line("hello"),
            work("status", "u1"),
            Step::Send(b"{\"State\":\"\xff\"}\n".to_vec()),
            Step::ExpectJson(json!({"command": "work", "subcommand": "list"})),
            line(r#"{"u1":{"State":"two"}}"#),
            Step::ExpectJson(json!({"command": "status"})),
            line("[]"),
            work("status", "u1"),
            line(DONE_UNIT),
        ]);
        let mut c = connect(&fake).await;
        for _ in 0..2 {
            let err = c.work_status("u1").await.unwrap_err();
            assert!(
                matches!(err, ControlError::Json { ref command, .. } if command == "work status"),
                "{err:?}"
            );
        }
        let err = c.work_list().await.unwrap_err();
        assert!(matches!(err, ControlError::Json { .. }), "{err:?}");
        assert!(err.to_string().contains("work list"), "{err}");
        assert!(matches!(
            c.status().await.unwrap_err(),
            ControlError::Json { .. }
        ));
        assert_eq!(c.work_status("u1").await.unwrap().stdout_size, 5);
        fake.done().await;
    })
    .await;
}

#[tokio::test]
async fn odd_cancel_and_release_replies_are_unexpected() {
    let replies = [
        r#"{"released":"other"}"#,
        r#"{"released":"u1","extra":"u1"}"#,
        r#"{"unit not found":"u1"}"#,
        r#"{"released":5}"#,
        r#"{}"#,
    ];
    for reply in replies {
        within(async {
            let fake = Fake::unix(vec![greet(), work("release", "u1"), line(reply)]);
            let mut c = connect(&fake).await;
            let err = c.work_release("u1").await.unwrap_err();
            assert!(
                matches!(err, ControlError::UnexpectedReply { ref command, ref line } if command == "work release" && line == reply),
                "{reply}: {err:?}"
            );
            // Not a JSON object of strings, or the wrong id: the connection is no longer trusted.
            assert!(matches!(c.work_list().await.unwrap_err(), ControlError::ConnectionUnusable { .. }));
            fake.done().await;
        })
        .await;
    }
}

#[tokio::test]
async fn connection_closed_mid_reply_then_unusable() {
    within(async {
        let fake = Fake::unix(vec![greet(), work("status", "u1"), Step::Send(b"{\"State\":".to_vec())]);
        let mut c = connect(&fake).await;
        let err = c.work_status("u1").await.unwrap_err();
        assert!(matches!(err, ControlError::ConnectionClosed { .. }), "{err:?}");
        fake.done().await;
        let again = c.work_status("u1").await.unwrap_err();
        assert!(
            matches!(again, ControlError::ConnectionUnusable { ref cause } if cause.contains("closed")),
            "{again:?}"
        );
    })
    .await;
}

#[tokio::test]
async fn reply_timeout_then_nothing_more_is_sent() {
    within(async {
        let fake = Fake::unix(vec![
            greet(),
            Step::ExpectJson(json!({"command": "status"})),
            // The client must send nothing after timing out: a late reply would be misread.
            Step::ReadToEof(Vec::new()),
        ]);
        let mut o = opts();
        o.reply_timeout = Duration::from_millis(200);
        let mut c = ControlClient::connect_unix_with(fake.path(), o)
            .await
            .unwrap();
        let err = c.status().await.unwrap_err();
        assert!(matches!(err, ControlError::Timeout { .. }), "{err:?}");
        assert!(matches!(
            c.status().await.unwrap_err(),
            ControlError::ConnectionUnusable { .. }
        ));
        let err = c.work_results("u1", 0).await.unwrap_err();
        assert!(
            matches!(err, ControlError::ConnectionUnusable { .. }),
            "{err:?}"
        );
        fake.done().await;
    })
    .await;
}

#[tokio::test]
async fn overlong_reply_line_is_refused() {
    within(async {
        let mut big = vec![b'x'; 3000];
        big.push(b'\n');
        let fake = Fake::unix(vec![
            greet(),
            Step::ExpectJson(json!({"command": "status"})),
            Step::Send(big),
        ]);
        let mut o = opts();
        o.max_line = 1024;
        let mut c = ControlClient::connect_unix_with(fake.path(), o)
            .await
            .unwrap();
        let err = c.status().await.unwrap_err();
        assert!(
            matches!(err, ControlError::LineTooLong { limit: 1024, .. }),
            "{err:?}"
        );
        fake.done().await;
    })
    .await;
}

#[tokio::test]
async fn invalid_arguments_are_refused_before_sending() {
    within(async {
        let fake = Fake::unix(vec![greet(), Step::ReadToEof(Vec::new())]);
        let mut c = connect(&fake).await;
        let long = "u".repeat(2000);
        for id in ["", "a\nb", "a\rb", "a\0b", long.as_str()] {
            let err = c.work_status(id).await.unwrap_err();
            assert!(
                matches!(err, ControlError::InvalidRequest { ref field, .. } if field == "unit id"),
                "{id:?}: {err:?}"
            );
            assert!(c.work_cancel(id).await.is_err());
            assert!(c.work_release(id).await.is_err());
        }
        let err = c.ping("").await.unwrap_err();
        assert!(matches!(err, ControlError::InvalidRequest { ref field, .. } if field == "node"));
        // Refusals are not protocol failures: the connection stays usable.
        drop(c);
        fake.done().await;
    })
    .await;
}

#[tokio::test]
async fn tcp_transport_speaks_the_same_protocol() {
    within(async {
        let fake = Fake::tcp(vec![
            greet(),
            Step::ExpectJson(json!({"command": "status"})),
            line(REAL_STATUS),
        ])
        .await;
        let mut c = ControlClient::connect_tcp_with(fake.addr(), opts())
            .await
            .unwrap();
        assert_eq!(c.node_id(), "t1");
        assert_eq!(c.status().await.unwrap().system_memory_mib, 24105);
        fake.done().await;
        let err = ControlClient::connect_tcp("127.0.0.1:1").await.unwrap_err();
        assert!(matches!(err, ControlError::Io { .. }), "{err:?}");
    })
    .await;
}

#[test]
fn unit_id_shape() {
    for ok in ["WURYEcy6", "a", "A-b_9", &"x".repeat(64)] {
        assert!(is_valid_unit_id(ok), "{ok}");
    }
    for bad in [
        "",
        "../x",
        "a/b",
        "a b",
        ".",
        "..",
        "a.b",
        "é",
        &"x".repeat(65),
    ] {
        assert!(!is_valid_unit_id(bad), "{bad}");
    }
}
