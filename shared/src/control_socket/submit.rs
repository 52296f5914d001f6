//! `work submit`: the request, and the session that streams the payload after the unit exists.

use std::collections::BTreeMap;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use serde::Deserialize;
use serde_json::{Map, Value};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::client::ControlOptions;
use super::error::ControlError;
use super::wire::{Conn, check_arg, read_line, reject_error_line, timed};

/// Keys of a submit that receptor interprets itself; extra keys must not use them.
pub const RESERVED_SUBMIT_KEYS: [&str; 9] = [
    "command",
    "subcommand",
    "node",
    "worktype",
    "params",
    "tlsclient",
    "ttl",
    "signwork",
    "signature",
];

const COMMAND: &str = "work submit";
/// Read size when copying a payload from a reader.
const COPY_CHUNK: usize = 64 * 1024;

/// A `work submit` request. Sent as one JSON line whose values are all strings, as receptor
/// requires; absent options are left out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubmitRequest {
    /// Target node id (this node's own id or `localhost` runs it here).
    pub node: String,
    /// Work type on the target node.
    pub worktype: String,
    /// Runtime params appended to the work command's configured params (shlex-split, no shell).
    pub params: Option<String>,
    /// Name of the TLS client config for reaching a remote node's control service.
    pub tlsclient: Option<String>,
    /// Give up starting a remote unit after this long (Go duration, e.g. `20s`); remote only.
    pub ttl: Option<String>,
    /// Sign the remote requests; set exactly when the target advertises the work type `Secure`.
    pub signwork: bool,
    /// Extra string keys. Receptor forwards them to a remote node and shows them in `work list`
    /// under `ExtraData.RemoteParams` of the `remote` unit; for a unit run locally it drops them.
    pub extra: BTreeMap<String, String>,
}

impl SubmitRequest {
    /// A request with no options.
    pub fn new(node: impl Into<String>, worktype: impl Into<String>) -> Self {
        Self {
            node: node.into(),
            worktype: worktype.into(),
            ..Self::default()
        }
    }

    /// The JSON command line (without its newline), after checking every field.
    pub fn to_command_line(&self) -> Result<Vec<u8>, ControlError> {
        let map = self.to_command()?;
        serde_json::to_vec(&Value::Object(map)).map_err(|source| ControlError::Json {
            command: COMMAND.into(),
            source,
        })
    }

    /// The JSON command object, after checking every field.
    pub fn to_command(&self) -> Result<Map<String, Value>, ControlError> {
        check_arg("node", &self.node)?;
        check_arg("worktype", &self.worktype)?;
        let mut map = Map::new();
        let mut put = |k: &str, v: &str| map.insert(k.to_owned(), Value::String(v.to_owned()));
        put("command", "work");
        put("subcommand", "submit");
        put("node", &self.node);
        put("worktype", &self.worktype);
        if let Some(params) = &self.params {
            put("params", params);
        }
        for (key, value) in [("tlsclient", &self.tlsclient), ("ttl", &self.ttl)] {
            if let Some(value) = value {
                check_arg(key, value)?;
                put(key, value);
            }
        }
        if self.signwork {
            put("signwork", "true");
        }
        for (key, value) in &self.extra {
            check_extra(key, value)?;
            put(key, value);
        }
        Ok(map)
    }
}

fn check_extra(key: &str, value: &str) -> Result<(), ControlError> {
    let refuse = |reason: &str| {
        Err(ControlError::InvalidRequest {
            field: format!("extra key {key:?}"),
            reason: reason.to_owned(),
        })
    };
    if RESERVED_SUBMIT_KEYS.contains(&key) {
        return refuse("is a key receptor interprets itself");
    }
    if key.is_empty() || key.chars().any(char::is_control) {
        return refuse("must be non-empty, without control characters");
    }
    if value.contains(['\n', '\r']) {
        return refuse("value contains a line break");
    }
    Ok(())
}

/// What receptor said once the payload was in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubmitResult {
    /// The unit id (same as the session's).
    pub unit_id: String,
    /// `Job Started`, or `Job Submitted` when a remote start is still pending.
    pub result: String,
}

impl SubmitResult {
    /// True for `Job Started`.
    pub fn is_started(&self) -> bool {
        self.result == "Job Started"
    }
}

#[derive(Deserialize)]
struct RawSubmitResult {
    unitid: String,
    result: String,
}

/// A submit whose unit exists: stream the payload (also via [`AsyncWrite`]), then
/// [`finish`](Self::finish).
///
/// Receptor cannot tell a half-close from a dropped connection: if the session is dropped (or
/// the process dies) mid-payload, receptor starts the unit with the bytes it got. The unit then
/// fails on its own truncated input and, like every unit, stays until released.
pub struct SubmitSession {
    /// The unit receptor created for this submit.
    pub unit_id: String,
    conn: Conn,
    options: ControlOptions,
    bytes_sent: u64,
    write_closed: bool,
}

impl std::fmt::Debug for SubmitSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SubmitSession")
            .field("unit_id", &self.unit_id)
            .field("bytes_sent", &self.bytes_sent)
            .finish_non_exhaustive()
    }
}

impl SubmitSession {
    pub(crate) fn new(conn: Conn, unit_id: String, options: ControlOptions) -> Self {
        Self {
            unit_id,
            conn,
            options,
            bytes_sent: 0,
            write_closed: false,
        }
    }

    /// Payload bytes sent so far.
    pub fn bytes_sent(&self) -> u64 {
        self.bytes_sent
    }

    /// Sends payload bytes.
    pub async fn write_all(&mut self, buf: &[u8]) -> Result<(), ControlError> {
        self.conn
            .write_all(buf)
            .await
            .map_err(|e| ControlError::io(self.sending(), e))?;
        self.bytes_sent += buf.len() as u64;
        Ok(())
    }

    /// Sends everything `reader` yields until its EOF; returns the byte count.
    pub async fn copy_from<R: AsyncRead + Unpin + ?Sized>(
        &mut self,
        reader: &mut R,
    ) -> Result<u64, ControlError> {
        let mut buf = vec![0u8; COPY_CHUNK];
        let mut copied = 0u64;
        loop {
            let n = reader.read(&mut buf).await.map_err(|e| {
                ControlError::io(format!("reading the payload for unit {}", self.unit_id), e)
            })?;
            if n == 0 {
                return Ok(copied);
            }
            self.write_all(&buf[..n]).await?;
            copied += n as u64;
        }
    }

    /// Half-closes the write side (receptor reads the payload until EOF) and reads the result.
    /// An `ERROR:` here means the unit exists but failed to start: it still needs a release.
    pub async fn finish(mut self) -> Result<SubmitResult, ControlError> {
        if !self.write_closed {
            let during = format!("closing the payload of unit {}", self.unit_id);
            self.conn
                .shutdown()
                .await
                .map_err(|e| ControlError::io(during, e))?;
        }
        let during = format!("waiting for the submit result of unit {}", self.unit_id);
        let max = self.options.max_line;
        let line = timed(
            self.options.reply_timeout,
            &during,
            read_line(&mut self.conn, max, &during),
        )
        .await?;
        let line = reject_error_line(COMMAND, line)?;
        let raw: RawSubmitResult =
            serde_json::from_slice(&line).map_err(|source| ControlError::Json {
                command: COMMAND.into(),
                source,
            })?;
        if raw.unitid != self.unit_id {
            return Err(ControlError::unexpected(COMMAND, &line));
        }
        tracing::debug!(unit = %self.unit_id, result = %raw.result, bytes = self.bytes_sent, "work submitted");
        Ok(SubmitResult {
            unit_id: raw.unitid,
            result: raw.result,
        })
    }

    fn sending(&self) -> String {
        format!("sending the payload of unit {}", self.unit_id)
    }
}

impl AsyncWrite for SubmitSession {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.conn).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = polled {
            this.bytes_sent += n as u64;
        }
        polled
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().conn).poll_flush(cx)
    }

    /// Half-closes the write side; [`SubmitSession::finish`] then skips doing it again.
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.conn).poll_shutdown(cx);
        if let Poll::Ready(Ok(())) = polled {
            this.write_closed = true;
        }
        polled
    }
}
