//! [`ResultsStream`]: the raw stdout bytes `work results` sends after its header line.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, ReadBuf};

use super::wire::Conn;

/// A unit's stdout from the requested offset, as receptor streams it. Reads first return any
/// bytes that arrived with the header (kept in the connection's buffer), then the socket.
/// EOF means receptor closed the stream: the unit completed and everything was sent, or the
/// stdout file went away (released).
pub struct ResultsStream {
    conn: Conn,
    unit_id: String,
    position: u64,
}

impl std::fmt::Debug for ResultsStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResultsStream")
            .field("unit_id", &self.unit_id)
            .field("position", &self.position)
            .finish_non_exhaustive()
    }
}

impl ResultsStream {
    pub(crate) fn new(conn: Conn, unit_id: String, offset: u64) -> Self {
        Self {
            conn,
            unit_id,
            position: offset,
        }
    }

    /// The unit being streamed.
    pub fn unit_id(&self) -> &str {
        &self.unit_id
    }

    /// Byte offset in the unit's stdout of the next byte to be read: the requested offset plus
    /// what has been read. Store it with what was processed to resume later.
    pub fn position(&self) -> u64 {
        self.position
    }
}

impl AsyncRead for ResultsStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.conn).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            this.position += (buf.filled().len() - before) as u64;
        }
        polled
    }
}
