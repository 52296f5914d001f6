//! The one error type of the control-socket client, and the rules for quoting server text in it.

use std::time::Duration;

/// Longest piece of server text quoted in an error; the rest is cut so a hostile or confused
/// server cannot make errors (and the logs they end up in) arbitrarily large.
const MAX_QUOTED: usize = 200;
/// Longest `ERROR:` message kept; receptor's own are one sentence, Go error chains a few more.
const MAX_MESSAGE: usize = 1000;

/// Everything that can go wrong while talking to receptor's control socket.
///
/// Errors never quote submitted payload or streamed results: only command names, unit ids and
/// receptor's own reply lines (cut to a few hundred characters).
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// An I/O call failed; `during` says what the client was doing.
    #[error("I/O error while {during}: {source}")]
    Io {
        /// What the client was doing, e.g. `connecting to /run/receptor.sock`.
        during: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The server did not answer in time.
    #[error("timed out after {after:?} while {during}")]
    Timeout {
        /// What the client was waiting for.
        during: String,
        /// The limit that ran out.
        after: Duration,
    },
    /// The first line was not `Receptor Control, node <id>`.
    #[error("bad greeting from control socket: {0:?} (expected \"Receptor Control, node <id>\")")]
    BadGreeting(String),
    /// Receptor answered `ERROR: <message>`.
    #[error("receptor refused {command}: {message}")]
    Receptor {
        /// The command that was refused, e.g. `work submit`.
        command: String,
        /// The text after `ERROR: `.
        message: String,
    },
    /// Receptor answered `ERROR: unknown work unit <id>`; the field is that id.
    #[error("unknown work unit {0:?}")]
    UnknownUnit(String),
    /// A reply line that does not fit the protocol for this command.
    #[error("unexpected reply to {command}: {line:?}")]
    UnexpectedReply {
        /// The command being answered.
        command: String,
        /// The offending line (cut, lossily decoded).
        line: String,
    },
    /// A reply line was not the JSON this command returns.
    #[error("reply to {command} is not the expected JSON: {source}")]
    Json {
        /// The command being answered.
        command: String,
        /// The parse error, naming line, column and field.
        #[source]
        source: serde_json::Error,
    },
    /// The server closed the connection before a complete reply line.
    #[error("connection closed by receptor while {during}")]
    ConnectionClosed {
        /// What the client was waiting for.
        during: String,
    },
    /// A reply line exceeded the configured limit before its newline.
    #[error("reply line longer than {limit} bytes while {during}")]
    LineTooLong {
        /// What the client was reading.
        during: String,
        /// The limit in bytes.
        limit: usize,
    },
    /// The caller's request was refused before anything was sent.
    #[error("invalid request: {field}: {reason}")]
    InvalidRequest {
        /// The offending argument or key.
        field: String,
        /// Why it was refused.
        reason: String,
    },
    /// An earlier failure left the connection at an unknown point of the protocol (a late reply
    /// could be taken for the answer to the next command), so it refuses further commands.
    #[error("control connection unusable after an earlier error: {cause}")]
    ConnectionUnusable {
        /// The earlier error, as text.
        cause: String,
    },
}

impl ControlError {
    /// True when the connection can no longer be trusted to be in step with the server.
    pub(crate) fn breaks_connection(&self) -> bool {
        matches!(
            self,
            Self::Io { .. }
                | Self::Timeout { .. }
                | Self::UnexpectedReply { .. }
                | Self::ConnectionClosed { .. }
                | Self::LineTooLong { .. }
                | Self::ConnectionUnusable { .. }
        )
    }

    pub(crate) fn io(during: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            during: during.into(),
            source,
        }
    }

    pub(crate) fn unexpected(command: &str, line: &[u8]) -> Self {
        Self::UnexpectedReply {
            command: command.to_owned(),
            line: quote(line),
        }
    }

    /// Maps the bytes after `ERROR:` to a typed error.
    pub(crate) fn from_receptor(command: &str, rest: &[u8]) -> Self {
        let message = cut(rest, MAX_MESSAGE);
        let message = message.trim_start();
        // Receptor's exact wording (workceptor `findUnit`); used by status, list <id>, cancel,
        // release, force-release and results alike.
        match message.strip_prefix("unknown work unit ") {
            Some(id) => Self::UnknownUnit(id.to_owned()),
            None => Self::Receptor {
                command: command.to_owned(),
                message: message.to_owned(),
            },
        }
    }
}

/// Lossily decodes server bytes for an error message, cutting them to [`MAX_QUOTED`] characters.
pub(crate) fn quote(bytes: &[u8]) -> String {
    cut(bytes, MAX_QUOTED)
}

/// Lossily decodes at most `max` characters of `bytes`, marking a cut with `...`.
fn cut(bytes: &[u8], max: usize) -> String {
    // A character takes at most 4 bytes: decoding more of a huge line is wasted work.
    let head = &bytes[..bytes.len().min(max.saturating_mul(4))];
    let text = String::from_utf8_lossy(head);
    let mut chars = text.chars();
    let mut out: String = chars.by_ref().take(max).collect();
    if chars.next().is_some() || head.len() < bytes.len() {
        out.push_str("...");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_lines_map_to_variants() {
        let e = ControlError::from_receptor("work status", b" unknown work unit WURYEcy6");
        assert!(matches!(e, ControlError::UnknownUnit(ref id) if id == "WURYEcy6"));
        let e = ControlError::from_receptor("ping", b" Unknown command");
        assert_eq!(e.to_string(), "receptor refused ping: Unknown command");
        // Near misses stay generic.
        let e = ControlError::from_receptor("work status", b" unknown work type nope");
        assert!(matches!(e, ControlError::Receptor { .. }));
    }

    #[test]
    fn server_text_is_cut() {
        let huge = vec![b'e'; 10_000_000];
        let e = ControlError::from_receptor("status", &huge);
        let ControlError::Receptor { message, .. } = &e else {
            panic!("{e:?}")
        };
        assert_eq!(message.len(), MAX_MESSAGE + 3);
        assert!(message.ends_with("..."));
        let e = ControlError::unexpected("status", &huge);
        assert!(e.to_string().len() < 300, "{e}");
        assert_eq!(quote(b"short"), "short");
        assert_eq!(quote(&[b'x'; MAX_QUOTED]), "x".repeat(MAX_QUOTED));
        assert_eq!(
            quote(&[b'x'; MAX_QUOTED + 1]),
            format!("{}...", "x".repeat(MAX_QUOTED))
        );
        assert_eq!(quote(b"a\xffb"), "a\u{fffd}b");
        let multibyte = "é".repeat(MAX_QUOTED + 5);
        assert_eq!(quote(multibyte.as_bytes()).chars().count(), MAX_QUOTED + 3);
    }

    #[test]
    fn which_errors_retire_the_connection() {
        let closed = ControlError::ConnectionClosed { during: "x".into() };
        assert!(closed.breaks_connection());
        assert!(!ControlError::UnknownUnit("u".into()).breaks_connection());
        let refused = ControlError::from_receptor("status", b" nope");
        assert!(!refused.breaks_connection());
    }
}
