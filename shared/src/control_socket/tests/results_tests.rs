//! `work results`: the request, the header, and raw bytes with nothing lost to buffering.

use serde_json::json;
use tokio::io::AsyncReadExt;

use super::fake::{Fake, Step, greet, line};
use super::{connect, within};
use crate::control_socket::*;

fn results(id: &str, startpos: u64) -> Step {
    Step::ExpectJson(
        json!({"command": "work", "subcommand": "results", "unitid": id, "startpos": startpos}),
    )
}

async fn read_all(stream: &mut ResultsStream) -> Vec<u8> {
    let mut out = Vec::new();
    stream.read_to_end(&mut out).await.unwrap();
    out
}

#[tokio::test]
async fn header_and_data_in_one_packet_lose_nothing() {
    within(async {
        let fake = Fake::unix(vec![
            greet(),
            results("u1", 2),
            Step::Send(b"Streaming results for work unit u1\nllo".to_vec()),
        ]);
        let c = connect(&fake).await;
        let mut r = c.work_results("u1", 2).await.unwrap();
        assert_eq!((r.unit_id(), r.position()), ("u1", 2));
        assert_eq!(read_all(&mut r).await, b"llo");
        assert_eq!(r.position(), 5);
        fake.done().await;
    })
    .await;
}

#[tokio::test]
async fn greeting_header_and_data_together_before_the_command_is_read() {
    // The server may answer so fast that greeting, header and data sit in one buffer fill.
    within(async {
        let fake = Fake::unix(vec![
            Step::Send(
                b"Receptor Control, node t1\nStreaming results for work unit u1\nhello".to_vec(),
            ),
            results("u1", 0),
        ]);
        let c = connect(&fake).await;
        let mut r = c.work_results("u1", 0).await.unwrap();
        assert_eq!(read_all(&mut r).await, b"hello");
        fake.done().await;
    })
    .await;
}

#[tokio::test]
async fn fragmented_header_and_many_chunks() {
    within(async {
        let big: Vec<u8> = (0..200_000u32).map(|i| (i % 241) as u8).collect();
        let mut script = vec![
            greet(),
            results("u1", 0),
            Step::SendSlowly(b"Streaming results for work unit u1\nab".to_vec()),
            // Receptor tails a live file: data may pause for a while.
            Step::Sleep(std::time::Duration::from_millis(300)),
        ];
        for chunk in big.chunks(7_000) {
            script.push(Step::Send(chunk.to_vec()));
        }
        let fake = Fake::unix(script);
        let c = connect(&fake).await;
        let mut r = c.work_results("u1", 0).await.unwrap();
        let got = read_all(&mut r).await;
        assert_eq!(&got[..2], b"ab");
        assert!(got[2..] == big[..], "stream differs");
        assert_eq!(r.position(), big.len() as u64 + 2);
        fake.done().await;
    })
    .await;
}

#[tokio::test]
async fn empty_stream_past_the_end() {
    within(async {
        let fake = Fake::unix(vec![
            greet(),
            results("u1", 99),
            line("Streaming results for work unit u1"),
        ]);
        let c = connect(&fake).await;
        let mut r = c.work_results("u1", 99).await.unwrap();
        assert!(read_all(&mut r).await.is_empty());
        assert_eq!(r.position(), 99);
        fake.done().await;
    })
    .await;
}

#[tokio::test]
async fn results_errors() {
    let cases: [(&[u8], &str); 5] = [
        (b"ERROR: unknown work unit u1\n", "UnknownUnit"),
        (b"ERROR: work type did not expect a signature\n", "Receptor"),
        (
            b"Streaming results for work unit u2\nxyz",
            "UnexpectedReply",
        ),
        (b"Streaming results for work unit u1", "ConnectionClosed"),
        (b"", "ConnectionClosed"),
    ];
    for (reply, want) in cases {
        within(async {
            let fake = Fake::unix(vec![greet(), results("u1", 0), Step::Send(reply.to_vec())]);
            let c = connect(&fake).await;
            let err = c.work_results("u1", 0).await.unwrap_err();
            let kind = match err {
                ControlError::UnknownUnit(ref id) if id == "u1" => "UnknownUnit",
                ControlError::Receptor { ref command, .. } if command == "work results" => {
                    "Receptor"
                }
                ControlError::UnexpectedReply { .. } => "UnexpectedReply",
                ControlError::ConnectionClosed { .. } => "ConnectionClosed",
                ref other => panic!("{other:?}"),
            };
            assert_eq!(kind, want, "{:?}", String::from_utf8_lossy(reply));
            fake.done().await;
        })
        .await;
    }
}

#[tokio::test]
async fn offsets_beyond_float_precision_are_refused() {
    within(async {
        let fake = Fake::unix(vec![
            greet(),
            results("u1", 1 << 53),
            line("Streaming results for work unit u1"),
        ]);
        let c = connect(&fake).await;
        let r = c.work_results("u1", 1 << 53).await.unwrap();
        assert_eq!(r.position(), 1 << 53);
        fake.done().await;

        let fake = Fake::unix(vec![greet(), Step::ReadToEof(Vec::new())]);
        let c = connect(&fake).await;
        let err = c.work_results("u1", (1 << 53) + 1).await.unwrap_err();
        assert!(
            matches!(err, ControlError::InvalidRequest { ref field, .. } if field == "offset"),
            "{err:?}"
        );
        fake.done().await;
    })
    .await;
}
