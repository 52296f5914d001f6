//! Framing shared by the client, the submit session and the results stream: the transport type,
//! bounded line reads, timeouts, and the checks on arguments and ids that go on the wire.

use std::future::Future;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};

use super::error::ControlError;

/// Any byte stream the control protocol can run over (Unix socket, TCP).
pub(crate) trait Transport: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Transport for T {}

/// A connection. Reads go through one buffer that is handed on to the submit session and the
/// results stream, so bytes that arrive together with a reply line are never lost.
pub(crate) type Conn = BufReader<Box<dyn Transport>>;

/// Longest unit or node id, or other short argument, the client sends.
const MAX_ARG_LEN: usize = 1024;

/// Longest unit id accepted from receptor (it makes 8-character ones).
const MAX_UNIT_ID_LEN: usize = 64;

/// Runs `fut` with a time limit, turning expiry into [`ControlError::Timeout`].
pub(crate) async fn timed<T>(
    limit: Duration,
    during: &str,
    fut: impl Future<Output = Result<T, ControlError>>,
) -> Result<T, ControlError> {
    tokio::time::timeout(limit, fut)
        .await
        .map_err(|_| ControlError::Timeout {
            during: during.to_owned(),
            after: limit,
        })?
}

/// Reads one `\n`-terminated line (without the `\n` and a trailing `\r`), refusing to buffer
/// more than `max` bytes, and consuming nothing past the newline.
pub(crate) async fn read_line(
    conn: &mut Conn,
    max: usize,
    during: &str,
) -> Result<Vec<u8>, ControlError> {
    let mut line = Vec::new();
    loop {
        let buf = conn
            .fill_buf()
            .await
            .map_err(|e| ControlError::io(during, e))?;
        if buf.is_empty() {
            return Err(ControlError::ConnectionClosed {
                during: during.to_owned(),
            });
        }
        let (take, done) = match buf.iter().position(|&b| b == b'\n') {
            Some(pos) => (pos, true),
            None => (buf.len(), false),
        };
        if line.len() + take > max {
            return Err(ControlError::LineTooLong {
                during: during.to_owned(),
                limit: max,
            });
        }
        line.extend_from_slice(&buf[..take]);
        conn.consume(if done { take + 1 } else { take });
        if done {
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            return Ok(line);
        }
    }
}

/// Writes one command line and flushes it.
pub(crate) async fn send_line(
    conn: &mut Conn,
    line: &[u8],
    during: &str,
) -> Result<(), ControlError> {
    let mut framed = Vec::with_capacity(line.len() + 1);
    framed.extend_from_slice(line);
    framed.push(b'\n');
    conn.write_all(&framed)
        .await
        .map_err(|e| ControlError::io(during, e))?;
    conn.flush().await.map_err(|e| ControlError::io(during, e))
}

/// Turns an `ERROR: ...` line into the matching error; passes any other line through.
pub(crate) fn reject_error_line(command: &str, line: Vec<u8>) -> Result<Vec<u8>, ControlError> {
    match line.strip_prefix(b"ERROR:") {
        Some(rest) => Err(ControlError::from_receptor(command, rest)),
        None => Ok(line),
    }
}

/// Checks a short caller-supplied argument (node, unit id, work type): non-empty, bounded, and
/// free of control characters, which no receptor name contains.
pub(crate) fn check_arg(field: &str, value: &str) -> Result<(), ControlError> {
    let reason = if value.is_empty() {
        "must not be empty".to_owned()
    } else if value.len() > MAX_ARG_LEN {
        format!("longer than {MAX_ARG_LEN} bytes")
    } else if value.chars().any(char::is_control) {
        "contains a control character".to_owned()
    } else {
        return Ok(());
    };
    Err(ControlError::InvalidRequest {
        field: field.to_owned(),
        reason,
    })
}

/// True for an id receptor could have made: it uses 8 characters of `[0-9A-Za-z]`; `-` and `_`
/// are allowed for headroom. Anything else (slashes, dots, spaces) is refused, because callers
/// store the id and may build names from it.
pub fn is_valid_unit_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_UNIT_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}
