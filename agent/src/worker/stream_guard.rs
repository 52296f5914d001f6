//! Keeps a unit's output a well-formed ansible-runner stream, whatever the worker does.
//!
//! Bytes pass through unchanged, except that only complete lines are forwarded (so a worker that
//! dies mid-line leaves no half line), lines that are not JSON objects are dropped (a stray print
//! would break every reader), and a zip blob is tracked by its declared length. When the worker
//! ends without `{"eof": true}`, [`StreamGuard::finish`] completes the framing and appends an
//! `error` (or `canceled`) status and the eof line.

use serde_json::{Map, Value, json};

/// How the stream must end when the worker did not end it itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// The unit was canceled (receptor sent SIGINT/SIGTERM).
    Canceled,
    /// The worker failed; the explanation and traceback go into the error status.
    Error {
        /// One line saying what happened.
        explanation: String,
        /// Detail, such as the last lines the worker wrote to stderr.
        traceback: String,
    },
}

/// The worker broke a limit the guard cannot pass through.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GuardError {
    /// A line grew past the configured maximum before its newline arrived.
    #[error("the worker emitted a line longer than {limit} bytes")]
    LineTooLong {
        /// The limit in bytes.
        limit: usize,
    },
}

/// Tracks the framing of a worker's stdout.
#[derive(Debug)]
pub struct StreamGuard {
    max_line: usize,
    line: Vec<u8>,
    blob_remaining: u64,
    blob_padding: u64,
    saw_eof: bool,
    final_status: Option<String>,
    dropped_lines: u64,
}

/// Statuses that end a run (anything after them is artifacts and eof).
const FINAL_STATUSES: [&str; 5] = ["successful", "failed", "timeout", "canceled", "error"];

impl StreamGuard {
    /// A guard that refuses lines longer than `max_line` bytes.
    pub fn new(max_line: usize) -> Self {
        StreamGuard {
            max_line,
            line: Vec::new(),
            blob_remaining: 0,
            blob_padding: 0,
            saw_eof: false,
            final_status: None,
            dropped_lines: 0,
        }
    }

    /// Whether the worker has ended its stream itself.
    pub fn saw_eof(&self) -> bool {
        self.saw_eof
    }

    /// The last final status the worker reported, if any.
    pub fn final_status(&self) -> Option<&str> {
        self.final_status.as_deref()
    }

    /// How many lines were dropped because they were not JSON objects or came after eof.
    pub fn dropped_lines(&self) -> u64 {
        self.dropped_lines
    }

    /// Feeds worker output; appends to `out` the bytes that may be forwarded now.
    pub fn push(&mut self, mut chunk: &[u8], out: &mut Vec<u8>) -> Result<(), GuardError> {
        while !chunk.is_empty() {
            if self.blob_remaining > 0 {
                let n = chunk
                    .len()
                    .min(usize::try_from(self.blob_remaining).unwrap_or(usize::MAX));
                out.extend_from_slice(&chunk[..n]);
                self.blob_remaining -= n as u64;
                chunk = &chunk[n..];
                continue;
            }
            match chunk.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    self.append_line(&chunk[..=i])?;
                    let line = std::mem::take(&mut self.line);
                    if self.accept_line(&line) {
                        out.extend_from_slice(&line);
                    }
                    chunk = &chunk[i + 1..];
                }
                None => {
                    self.append_line(chunk)?;
                    chunk = &[];
                }
            }
        }
        Ok(())
    }

    fn append_line(&mut self, bytes: &[u8]) -> Result<(), GuardError> {
        if self.line.len() + bytes.len() > self.max_line {
            return Err(GuardError::LineTooLong {
                limit: self.max_line,
            });
        }
        self.line.extend_from_slice(bytes);
        Ok(())
    }

    /// Decides whether a complete line is forwarded, and learns the framing from it.
    fn accept_line(&mut self, line: &[u8]) -> bool {
        if line.iter().all(u8::is_ascii_whitespace) {
            return !self.saw_eof;
        }
        if self.saw_eof {
            self.dropped_lines += 1;
            return false;
        }
        let Ok(obj) = serde_json::from_slice::<Map<String, Value>>(line) else {
            self.dropped_lines += 1;
            tracing::warn!(
                bytes = line.len(),
                "dropped a worker output line that is not a JSON object"
            );
            return false;
        };
        if let Some(size) = obj.get("zipfile") {
            let Some(size) = size.as_u64() else {
                self.dropped_lines += 1;
                tracing::warn!("dropped a zipfile line whose size is not a non-negative integer");
                return false;
            };
            self.blob_remaining = size.div_ceil(3) * 4;
            self.blob_padding = (3 - size % 3) % 3;
        } else if obj.contains_key("eof") {
            self.saw_eof = true;
        } else if let Some(status) = obj.get("status").and_then(Value::as_str)
            && FINAL_STATUSES.contains(&status)
        {
            self.final_status = Some(status.to_string());
        }
        true
    }

    /// The bytes that end the stream well-formed; empty when the worker ended it itself.
    pub fn finish(&mut self, ending: Ending) -> Vec<u8> {
        let mut out = Vec::new();
        if self.saw_eof && self.blob_remaining == 0 {
            return out;
        }
        if self.blob_remaining > 0 {
            // Complete the blob so readers stay in step; its content is lost anyway.
            let pad = self.blob_padding.min(self.blob_remaining);
            let filler = self.blob_remaining - pad;
            out.extend(std::iter::repeat_n(b'A', filler as usize));
            out.extend(std::iter::repeat_n(b'=', pad as usize));
            self.blob_remaining = 0;
        }
        if !self.line.is_empty() {
            tracing::warn!(
                bytes = self.line.len(),
                "dropped the worker's unfinished last line"
            );
            self.line.clear();
        }
        let status = match ending {
            Ending::Canceled => json!({
                "status": "canceled",
                "job_explanation": "The job was canceled on the execution node.",
            }),
            Ending::Error {
                explanation,
                traceback,
            } => json!({
                "status": "error",
                "job_explanation": explanation,
                "result_traceback": traceback,
            }),
        };
        out.extend_from_slice(status.to_string().as_bytes());
        out.push(b'\n');
        out.extend_from_slice(b"{\"eof\": true}\n");
        self.saw_eof = true;
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(input: &[u8], chunk: usize) -> (Vec<u8>, StreamGuard) {
        let mut g = StreamGuard::new(1 << 20);
        let mut out = Vec::new();
        for c in input.chunks(chunk.max(1)) {
            g.push(c, &mut out).unwrap();
        }
        (out, g)
    }

    const GOOD: &[u8] =
        b"{\"status\": \"running\"}\n{\"uuid\": \"u\", \"counter\": 1, \"event\": \"x\"}\n\
{\"status\": \"successful\"}\n{\"zipfile\": 4}\nAAAAAA=={\"eof\": true}\n";

    #[test]
    fn a_good_stream_passes_unchanged_at_any_chunking() {
        for chunk in [1, 2, 3, 7, 64, 4096] {
            let (out, mut g) = run(GOOD, chunk);
            assert_eq!(out, GOOD, "chunk {chunk}");
            assert!(g.saw_eof());
            assert_eq!(g.final_status(), Some("successful"));
            assert!(g.finish(Ending::Canceled).is_empty());
        }
    }

    #[test]
    fn garbage_and_after_eof_lines_are_dropped() {
        let input = b"Traceback (most recent call last):\n{\"status\": \"running\"}\n[1,2]\n{\"eof\": true}\nlate\n";
        let (out, g) = run(input, 5);
        assert_eq!(out, b"{\"status\": \"running\"}\n{\"eof\": true}\n");
        assert_eq!(g.dropped_lines(), 3);
    }

    #[test]
    fn a_worker_dying_mid_line_gets_an_error_ending() {
        let (mut out, mut g) = run(b"{\"status\": \"running\"}\n{\"uuid\": \"u\", \"coun", 4);
        out.extend(g.finish(Ending::Error {
            explanation: "worker died".into(),
            traceback: "boom".into(),
        }));
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        let status: Value = serde_json::from_str(lines[1]).unwrap();
        assert_eq!(status["status"], "error");
        assert_eq!(status["job_explanation"], "worker died");
        assert_eq!(status["result_traceback"], "boom");
        assert_eq!(lines[2], "{\"eof\": true}");
    }

    #[test]
    fn a_worker_dying_mid_blob_gets_a_padded_blob_then_the_ending() {
        // 5 bytes → 8 base64 chars, the last one '=' padding.
        let (mut out, mut g) = run(b"{\"zipfile\": 5}\nAAA", 2);
        out.extend(g.finish(Ending::Canceled));
        let text = String::from_utf8(out).unwrap();
        let rest = text
            .strip_prefix("{\"zipfile\": 5}\nAAAAAAA=")
            .unwrap_or_else(|| panic!("blob not completed to 8 chars: {text}"));
        let (status, eof) = rest.split_once('\n').unwrap();
        let status: Value = serde_json::from_str(status).unwrap();
        assert_eq!(status["status"], "canceled");
        assert_eq!(eof, "{\"eof\": true}\n");
    }

    #[test]
    fn long_lines_are_refused_and_bad_zip_sizes_dropped() {
        let mut g = StreamGuard::new(8);
        let mut out = Vec::new();
        assert_eq!(
            g.push(b"0123456789", &mut out),
            Err(GuardError::LineTooLong { limit: 8 })
        );
        let (out, g) = run(b"{\"zipfile\": -3}\n{\"zipfile\": \"x\"}\n", 3);
        assert!(out.is_empty());
        assert_eq!(g.dropped_lines(), 2);
    }
}
