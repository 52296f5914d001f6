//! A scripted stand-in for receptor's control service: it accepts one connection and plays a
//! list of steps, asserting on every line the client sends.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, UnixListener};
use tokio::task::JoinHandle;

pub const GREETING: &[u8] = b"Receptor Control, node t1\n";

/// One thing the fake server does.
pub enum Step {
    /// Write these bytes in one call.
    Send(Vec<u8>),
    /// Write these bytes one at a time with pauses, so the client sees them fragmented.
    SendSlowly(Vec<u8>),
    /// Read one line and assert it parses to this JSON value.
    ExpectJson(Value),
    /// Read until the client half-closes (or closes) and assert the bytes.
    ReadToEof(Vec<u8>),
    /// Wait.
    Sleep(Duration),
}

/// Shorthand for [`Step::Send`] of a text line.
pub fn line(text: &str) -> Step {
    Step::Send(format!("{text}\n").into_bytes())
}

/// Shorthand for the greeting.
pub fn greet() -> Step {
    Step::Send(GREETING.to_vec())
}

/// A running fake server.
pub struct Fake {
    _dir: Option<tempfile::TempDir>,
    path: PathBuf,
    addr: String,
    task: JoinHandle<()>,
}

impl Fake {
    /// Listens on a Unix socket in a fresh temp dir.
    pub fn unix(script: Vec<Step>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let task = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            play(stream, script).await;
        });
        Self {
            _dir: Some(dir),
            path,
            addr: String::new(),
            task,
        }
    }

    /// Listens on 127.0.0.1, any port.
    pub async fn tcp(script: Vec<Step>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let task = tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            play(stream, script).await;
        });
        Self {
            _dir: None,
            path: PathBuf::new(),
            addr,
            task,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Waits for the script to end; re-raises its assertion failures.
    pub async fn done(self) {
        match tokio::time::timeout(Duration::from_secs(10), self.task).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => std::panic::resume_unwind(e.into_panic()),
            Err(_) => panic!("fake server script did not finish"),
        }
    }
}

async fn play<S: AsyncRead + AsyncWrite + Unpin>(stream: S, script: Vec<Step>) {
    let (r, mut w) = tokio::io::split(stream);
    let mut r = BufReader::new(r);
    for step in script {
        match step {
            Step::Send(bytes) => w.write_all(&bytes).await.unwrap(),
            Step::SendSlowly(bytes) => {
                for b in bytes {
                    w.write_all(&[b]).await.unwrap();
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            }
            Step::ExpectJson(want) => {
                let mut got = Vec::new();
                r.read_until(b'\n', &mut got).await.unwrap();
                assert_eq!(got.pop(), Some(b'\n'), "client line not terminated");
                let got: Value = serde_json::from_slice(&got).unwrap();
                assert_eq!(got, want);
            }
            Step::ReadToEof(want) => {
                let mut got = Vec::new();
                r.read_to_end(&mut got).await.unwrap();
                assert!(got == want, "got {} bytes, want {}", got.len(), want.len());
            }
            Step::Sleep(d) => tokio::time::sleep(d).await,
        }
    }
}
