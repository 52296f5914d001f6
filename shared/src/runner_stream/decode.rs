//! Push-based decoder of an ansible-runner stream (either direction).
//!
//! Bytes arrive in arbitrary chunks; the decoder keeps only the current line (bounded by
//! [`DecoderLimits::max_line_bytes`]) and at most [`ZIP_DATA_CHUNK`] decoded zip bytes, and hands
//! complete [`Frame`]s to a sink in stream order. Frame boundaries never depend on how the input
//! was chunked, so a replay from [`StreamDecoder::resume_offset`] yields the same frames.
//!
//! Leniency, decided here and relied upon by callers:
//! - Blank (whitespace-only) lines are skipped and `\r\n` endings are accepted. Python's reader
//!   fails on a blank line; nothing legitimate produces one, but a stray newline should not kill
//!   a job whose data is otherwise intact.
//! - ASCII whitespace inside a zip blob is skipped, as Python's reader does; only non-whitespace
//!   characters count towards the `4*ceil(N/3)` expected.
//! - Non-canonical trailing bits in the last base64 quad are accepted (Python accepts them too).
//! - A JSON line containing an unpaired UTF-16 surrogate escape (`"\ud800"`, which Python's
//!   `json.dumps` emits for undecodable output) is accepted with that escape replaced by U+FFFD.
//!
//! A line is classified by the first of these keys it has: `kwargs`, `status`, `zipfile`, `eof`,
//! then `event == "keepalive"`, then any of `uuid`/`counter`/`event`, else [`Frame::Other`]. This
//! is the order both Python readers (worker and processor) use for the keys each knows.
//!
//! Strictness, also decided here: anything but whitespace after `{"eof": ...}` is an error
//! (Python stops reading there), `zipfile` must be a non-negative integer, `status` a string,
//! `kwargs` an object. Python's non-standard `NaN`/`Infinity` tokens are rejected as non-JSON.

use serde_json::{Map, Value};

/// Decoded zip bytes are handed out in pieces of exactly this size (the last one may be shorter).
/// A multiple of 3, so that a piece always ends on a base64 quad.
pub const ZIP_DATA_CHUNK: usize = 63 * 1024;

/// At most this many bytes of offending input are quoted in an error.
const PREVIEW_BYTES: usize = 200;

/// Size limits that protect the decoder's memory and the caller's disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecoderLimits {
    /// Longest JSON line accepted, excluding its `\n` (default 64 MiB).
    pub max_line_bytes: usize,
    /// Largest decoded zip a `{"zipfile": N}` frame may announce (default 8 GiB).
    pub max_zip_bytes: u64,
}

impl Default for DecoderLimits {
    fn default() -> Self {
        Self {
            max_line_bytes: 64 << 20,
            max_zip_bytes: 8 << 30,
        }
    }
}

/// One element of the stream, in the order it appeared.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    /// `{"kwargs": {...}}`: the run parameters (the inner object).
    Kwargs(Map<String, Value>),
    /// A line with a `status` key (the whole object).
    Status(Map<String, Value>),
    /// A job event: a line with `uuid`, `counter` or `event` (the whole object).
    Event(Map<String, Value>),
    /// `{"event": "keepalive", ...}`: carries nothing.
    Keepalive,
    /// `{"zipfile": N}`: a zip of `size` bytes follows as base64.
    ZipStart {
        /// Decoded size announced by the frame.
        size: u64,
    },
    /// A piece of the decoded zip; pieces concatenate to exactly `size` bytes.
    ZipData(Vec<u8>),
    /// The blob announced by the last `ZipStart` is complete.
    ZipEnd,
    /// `{"eof": ...}`: the end of the stream.
    Eof,
    /// Any other JSON object (ignored by ansible-runner's readers).
    Other(Map<String, Value>),
}

/// Where input ended before the stream was complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// Inside a JSON line holding `bytes` bytes so far.
    MidLine {
        /// Bytes of the unfinished line.
        bytes: u64,
    },
    /// Inside a zip blob after `chars` of `of` base64 characters.
    MidZip {
        /// Base64 characters received.
        chars: u64,
        /// Base64 characters announced.
        of: u64,
    },
    /// Between frames, but no `eof` frame was seen.
    NoEof,
}

impl std::fmt::Display for Cut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Cut::MidLine { bytes } => {
                write!(f, "in the middle of a line ({bytes} bytes, no newline)")
            }
            Cut::MidZip { chars, of } => {
                write!(
                    f,
                    "in the middle of a zip blob ({chars} of {of} base64 characters)"
                )
            }
            Cut::NoEof => write!(f, "without an eof frame"),
        }
    }
}

/// Something wrong with the stream bytes themselves. Every offset is a byte offset in the stream.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamError {
    /// A line that does not parse as JSON.
    #[error("line at offset {offset} is not JSON ({reason}): {preview:?}")]
    NotJson {
        /// Offset of the line's first byte.
        offset: u64,
        /// The parser's complaint.
        reason: String,
        /// Lossy start of the line.
        preview: String,
    },
    /// A JSON line whose value is not an object.
    #[error("line at offset {offset} is JSON {kind}, not an object: {preview:?}")]
    NotObject {
        /// Offset of the line's first byte.
        offset: u64,
        /// `array`, `string`, `number`, `boolean` or `null`.
        kind: &'static str,
        /// Lossy start of the line.
        preview: String,
    },
    /// A line longer than the limit.
    #[error("line at offset {offset} is longer than the limit of {limit} bytes")]
    LineTooLong {
        /// Offset of the line's first byte.
        offset: u64,
        /// `max_line_bytes`.
        limit: usize,
    },
    /// A known key whose value has the wrong type.
    #[error("line at offset {offset}: field `{field}` must be {expected}, found {found}")]
    BadField {
        /// Offset of the line's first byte.
        offset: u64,
        /// `zipfile`, `status` or `kwargs`.
        field: &'static str,
        /// What the field must be.
        expected: &'static str,
        /// The value found (JSON, shortened).
        found: String,
    },
    /// `{"zipfile": N}` with N above the limit.
    #[error("line at offset {offset}: zipfile size {size} exceeds the limit of {limit} bytes")]
    ZipTooLarge {
        /// Offset of the line's first byte.
        offset: u64,
        /// Announced size.
        size: u64,
        /// `max_zip_bytes`.
        limit: u64,
    },
    /// A byte inside a zip blob that is not valid at its position.
    #[error(
        "zip blob: byte {byte:#04x} ({shown:?}) at offset {offset} is character {index} of {total}, where {expected} is required"
    )]
    BadBase64 {
        /// Offset of the byte.
        offset: u64,
        /// The byte.
        byte: u8,
        /// The byte shown as a char (lossy).
        shown: char,
        /// 0-based index among the blob's non-whitespace characters.
        index: u64,
        /// Characters in the blob.
        total: u64,
        /// `a base64 character` or `padding '='`.
        expected: &'static str,
    },
    /// Non-whitespace bytes after the eof frame.
    #[error("data after the eof frame at offset {offset}: {preview:?}")]
    DataAfterEof {
        /// Offset of the first such byte.
        offset: u64,
        /// Lossy preview.
        preview: String,
    },
    /// Input ended before the stream was complete.
    #[error("stream truncated at offset {offset}: it ended {cut}")]
    Truncated {
        /// Offset where input ended (for a cut line: where the line started).
        offset: u64,
        /// What was cut.
        cut: Cut,
    },
    /// The decoder was used again after it had reported an error.
    #[error("decoder already failed at offset {offset}; start a new one from resume_offset()")]
    AlreadyFailed {
        /// Offset where it failed.
        offset: u64,
    },
}

/// Failure of [`StreamDecoder::push`]: bad input, or the sink refused a frame.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError<E> {
    /// The stream is malformed.
    #[error(transparent)]
    Stream(#[from] StreamError),
    /// The sink returned an error for the frame that ended at `offset`.
    #[error("frame ending at offset {offset} was rejected: {source}")]
    Sink {
        /// Stream offset just after the rejected frame (or the current chunk for zip data).
        offset: u64,
        /// The sink's error.
        source: E,
    },
}

#[derive(Debug)]
enum State {
    Line,
    Zip(ZipState),
    Done,
    Failed(u64),
}

#[derive(Debug)]
struct ZipState {
    total: u64,
    seen: u64,
    /// Characters from this index on must be `=`.
    pad_from: u64,
    quad: [u8; 4],
    quad_len: usize,
    out: Vec<u8>,
}

/// Incremental decoder; see the module docs for the accepted syntax.
#[derive(Debug)]
pub struct StreamDecoder {
    limits: DecoderLimits,
    state: State,
    line: Vec<u8>,
    line_start: u64,
    consumed: u64,
    resume: u64,
}

impl StreamDecoder {
    /// A decoder for a stream starting at offset 0.
    pub fn new(limits: DecoderLimits) -> Self {
        Self::resume_from(limits, 0)
    }

    /// A decoder for input that starts at stream offset `offset`, which must be a value that
    /// [`resume_offset`](Self::resume_offset) returned; offsets it reports are absolute.
    pub fn resume_from(limits: DecoderLimits, offset: u64) -> Self {
        Self {
            limits,
            state: State::Line,
            line: Vec::new(),
            line_start: offset,
            consumed: offset,
            resume: offset,
        }
    }

    /// Feeds `chunk`, calling `sink` for every frame it completes, in order. After an error
    /// the decoder refuses further input.
    pub fn push<E>(
        &mut self,
        chunk: &[u8],
        sink: &mut impl FnMut(Frame) -> Result<(), E>,
    ) -> Result<(), DecodeError<E>> {
        self.push_with_lines(chunk, &mut |frame, _| sink(frame))
    }

    /// Like [`push`](Self::push), but `sink` also gets the frame's JSON line as it was in the
    /// stream (without its `\n`; empty for `ZipData` and `ZipEnd`), so that a caller can store
    /// the line without serializing the parsed object again.
    pub fn push_with_lines<E>(
        &mut self,
        chunk: &[u8],
        sink: &mut impl FnMut(Frame, &[u8]) -> Result<(), E>,
    ) -> Result<(), DecodeError<E>> {
        if let State::Failed(offset) = self.state {
            return Err(StreamError::AlreadyFailed { offset }.into());
        }
        let result = self.push_inner(chunk, sink);
        if result.is_err() {
            self.state = State::Failed(self.consumed);
        }
        result
    }

    /// Checks, once input has ended, that the stream was complete.
    pub fn finish(&self) -> Result<(), StreamError> {
        let cut = match &self.state {
            State::Done => return Ok(()),
            State::Failed(offset) => return Err(StreamError::AlreadyFailed { offset: *offset }),
            State::Zip(z) => Cut::MidZip {
                chars: z.seen,
                of: z.total,
            },
            State::Line if self.line.iter().all(u8::is_ascii_whitespace) => Cut::NoEof,
            State::Line => {
                return Err(StreamError::Truncated {
                    offset: self.line_start,
                    cut: Cut::MidLine {
                        bytes: self.line.len() as u64,
                    },
                });
            }
        };
        Err(StreamError::Truncated {
            offset: self.consumed,
            cut,
        })
    }

    /// Bytes consumed so far (absolute stream offset).
    pub fn consumed(&self) -> u64 {
        self.consumed
    }

    /// Offset just after the last complete line or zip blob: a decoder started there with
    /// [`resume_from`](Self::resume_from) sees exactly the frames that follow it.
    pub fn resume_offset(&self) -> u64 {
        self.resume
    }

    /// Whether the eof frame has been decoded.
    pub fn saw_eof(&self) -> bool {
        matches!(self.state, State::Done)
    }

    fn push_inner<E>(
        &mut self,
        mut rest: &[u8],
        sink: &mut impl FnMut(Frame, &[u8]) -> Result<(), E>,
    ) -> Result<(), DecodeError<E>> {
        while !rest.is_empty() {
            let used = match &mut self.state {
                State::Line => self.feed_line(rest, sink)?,
                State::Zip(zip) => {
                    let (used, taken) = zip.feed(rest, self.consumed);
                    self.consumed += used as u64;
                    taken?;
                    self.flush_zip_if_full(sink)?;
                    used
                }
                State::Done => self.feed_after_eof(rest)?,
                State::Failed(offset) => {
                    return Err(StreamError::AlreadyFailed { offset: *offset }.into());
                }
            };
            rest = &rest[used..];
        }
        self.flush_zip_if_full(sink)
    }

    /// Consumes bytes of a JSON line; returns how many.
    fn feed_line<E>(
        &mut self,
        bytes: &[u8],
        sink: &mut impl FnMut(Frame, &[u8]) -> Result<(), E>,
    ) -> Result<usize, DecodeError<E>> {
        let newline = bytes.iter().position(|&b| b == b'\n');
        let take = newline.unwrap_or(bytes.len());
        if self.line.len() + take > self.limits.max_line_bytes {
            return Err(StreamError::LineTooLong {
                offset: self.line_start,
                limit: self.limits.max_line_bytes,
            }
            .into());
        }
        self.line.extend_from_slice(&bytes[..take]);
        self.consumed += take as u64;
        if newline.is_none() {
            return Ok(take);
        }
        self.consumed += 1;
        self.end_line(sink)?;
        Ok(take + 1)
    }

    fn end_line<E>(
        &mut self,
        sink: &mut impl FnMut(Frame, &[u8]) -> Result<(), E>,
    ) -> Result<(), DecodeError<E>> {
        let line = std::mem::take(&mut self.line);
        let offset = self.line_start;
        let frame = if line.iter().all(u8::is_ascii_whitespace) {
            None
        } else {
            Some(self.classify(parse_object(&line, offset)?, offset)?)
        };
        self.line_start = self.consumed;
        let result = match frame {
            Some(Frame::ZipStart { size }) => {
                self.state = State::Zip(ZipState::new(size));
                self.emit(Frame::ZipStart { size }, &line, sink)
                    // An empty zip has no characters: end it now so its ZipEnd is not lost.
                    .and_then(|()| self.flush_zip_if_full(sink))
            }
            Some(frame) => {
                if matches!(frame, Frame::Eof) {
                    self.state = State::Done;
                }
                self.resume = self.consumed;
                self.emit(frame, &line, sink)
            }
            None => {
                self.resume = self.consumed;
                Ok(())
            }
        };
        self.recycle_line(line);
        result
    }

    /// Keeps the allocation for the next line unless an unusually long line inflated it.
    fn recycle_line(&mut self, mut line: Vec<u8>) {
        if line.capacity() <= 1 << 20 {
            line.clear();
            self.line = line;
        }
    }

    fn classify(&self, mut map: Map<String, Value>, offset: u64) -> Result<Frame, StreamError> {
        if let Some(kwargs) = map.remove("kwargs") {
            return match kwargs {
                Value::Object(inner) => Ok(Frame::Kwargs(inner)),
                other => Err(bad_field(offset, "kwargs", "an object", &other)),
            };
        }
        if let Some(status) = map.get("status") {
            if !status.is_string() {
                return Err(bad_field(offset, "status", "a string", status));
            }
            return Ok(Frame::Status(map));
        }
        if let Some(size) = map.get("zipfile") {
            return self
                .zip_size(size, offset)
                .map(|size| Frame::ZipStart { size });
        }
        if map.contains_key("eof") {
            return Ok(Frame::Eof);
        }
        if map.get("event").and_then(Value::as_str) == Some("keepalive") {
            return Ok(Frame::Keepalive);
        }
        if ["uuid", "counter", "event"]
            .iter()
            .any(|k| map.contains_key(*k))
        {
            return Ok(Frame::Event(map));
        }
        Ok(Frame::Other(map))
    }

    fn zip_size(&self, value: &Value, offset: u64) -> Result<u64, StreamError> {
        let size = value
            .as_u64()
            .ok_or_else(|| bad_field(offset, "zipfile", "a non-negative integer", value))?;
        let limit = self.limits.max_zip_bytes;
        if size > limit || base64_len(size).is_none() {
            return Err(StreamError::ZipTooLarge {
                offset,
                size,
                limit,
            });
        }
        Ok(size)
    }

    /// Emits a full data chunk, and the blob's end once every character was seen.
    fn flush_zip_if_full<E>(
        &mut self,
        sink: &mut impl FnMut(Frame, &[u8]) -> Result<(), E>,
    ) -> Result<(), DecodeError<E>> {
        let State::Zip(zip) = &mut self.state else {
            return Ok(());
        };
        let done = zip.seen == zip.total;
        if zip.out.len() >= ZIP_DATA_CHUNK || (done && !zip.out.is_empty()) {
            let data = std::mem::take(&mut zip.out);
            self.emit(Frame::ZipData(data), &[], sink)?;
        }
        if done {
            self.state = State::Line;
            self.line_start = self.consumed;
            self.resume = self.consumed;
            self.emit(Frame::ZipEnd, &[], sink)?;
        }
        Ok(())
    }

    fn feed_after_eof<E>(&mut self, bytes: &[u8]) -> Result<usize, DecodeError<E>> {
        match bytes.iter().position(|b| !b.is_ascii_whitespace()) {
            None => {
                self.consumed += bytes.len() as u64;
                Ok(bytes.len())
            }
            Some(at) => {
                self.consumed += at as u64;
                Err(StreamError::DataAfterEof {
                    offset: self.consumed,
                    preview: preview(&bytes[at..]),
                }
                .into())
            }
        }
    }

    fn emit<E>(
        &self,
        frame: Frame,
        line: &[u8],
        sink: &mut impl FnMut(Frame, &[u8]) -> Result<(), E>,
    ) -> Result<(), DecodeError<E>> {
        sink(frame, line).map_err(|source| DecodeError::Sink {
            offset: self.consumed,
            source,
        })
    }
}

impl ZipState {
    fn new(size: u64) -> Self {
        let total = base64_len(size).unwrap_or(0);
        let pad = match size % 3 {
            0 => 0,
            1 => 2,
            _ => 1,
        };
        Self {
            total,
            seen: 0,
            pad_from: total - pad,
            quad: [0; 4],
            quad_len: 0,
            out: Vec::with_capacity(
                usize::try_from(size).map_or(ZIP_DATA_CHUNK, |s| s.min(ZIP_DATA_CHUNK)),
            ),
        }
    }

    /// Consumes blob bytes from `bytes` (which starts at stream offset `at`) until the blob is
    /// complete, a data chunk is full, or a byte is invalid. Returns the bytes consumed (up to,
    /// not including, an invalid one) and the error, if any.
    fn feed(&mut self, bytes: &[u8], at: u64) -> (usize, Result<(), StreamError>) {
        for (used, &byte) in bytes.iter().enumerate() {
            if self.seen == self.total || self.out.len() >= ZIP_DATA_CHUNK {
                return (used, Ok(()));
            }
            if !byte.is_ascii_whitespace()
                && let Err(err) = self.take(byte, at + used as u64)
            {
                return (used, Err(err));
            }
        }
        (bytes.len(), Ok(()))
    }

    /// Accepts the next non-whitespace character of the blob.
    fn take(&mut self, byte: u8, offset: u64) -> Result<(), StreamError> {
        let padding = self.seen >= self.pad_from;
        let value = match (padding, byte, sextet(byte)) {
            (true, b'=', _) => 0,
            (false, _, Some(v)) => v,
            _ => {
                return Err(StreamError::BadBase64 {
                    offset,
                    byte,
                    shown: char::from(byte),
                    index: self.seen,
                    total: self.total,
                    expected: if padding {
                        "padding '='"
                    } else {
                        "a base64 character"
                    },
                });
            }
        };
        self.quad[self.quad_len] = value;
        self.quad_len += 1;
        self.seen += 1;
        if self.quad_len == 4 {
            self.flush_quad();
        }
        Ok(())
    }

    fn flush_quad(&mut self) {
        let [a, b, c, d] = self.quad.map(u32::from);
        let bits = (a << 18) | (b << 12) | (c << 6) | d;
        let bytes = [(bits >> 16) as u8, (bits >> 8) as u8, bits as u8];
        let pad_here = if self.seen == self.total {
            self.total - self.pad_from
        } else {
            0
        };
        self.out.extend_from_slice(&bytes[..3 - pad_here as usize]);
        self.quad_len = 0;
    }
}

/// Number of base64 characters encoding `size` bytes, if it fits in a u64.
pub(crate) fn base64_len(size: u64) -> Option<u64> {
    size.div_ceil(3).checked_mul(4)
}

fn sextet(byte: u8) -> Option<u8> {
    match byte {
        b'A'..=b'Z' => Some(byte - b'A'),
        b'a'..=b'z' => Some(byte - b'a' + 26),
        b'0'..=b'9' => Some(byte - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    }
}

fn parse_object(line: &[u8], offset: u64) -> Result<Map<String, Value>, StreamError> {
    let value = match serde_json::from_slice::<Value>(line) {
        Ok(value) => value,
        Err(err) => match replace_lone_surrogates(line) {
            Some(fixed) => {
                serde_json::from_slice(&fixed).map_err(|_| not_json(line, offset, &err))?
            }
            None => return Err(not_json(line, offset, &err)),
        },
    };
    match value {
        Value::Object(map) => Ok(map),
        other => Err(StreamError::NotObject {
            offset,
            kind: json_kind(&other),
            preview: preview(line),
        }),
    }
}

fn not_json(line: &[u8], offset: u64, err: &serde_json::Error) -> StreamError {
    StreamError::NotJson {
        offset,
        reason: err.to_string(),
        preview: preview(line),
    }
}

/// Rewrites every `\uXXXX` escape of an unpaired UTF-16 surrogate to `\ufffd` (same length);
/// `None` when there is none, so that the original parse error is reported.
fn replace_lone_surrogates(line: &[u8]) -> Option<Vec<u8>> {
    let mut fixed: Option<Vec<u8>> = None;
    let mut i = 0;
    while i < line.len() {
        if line[i] != b'\\' {
            i += 1;
            continue;
        }
        let Some(unit) = hex_escape(line, i) else {
            i += 2;
            continue;
        };
        let paired = (0xD800..0xDC00).contains(&unit)
            && hex_escape(line, i + 6).is_some_and(|low| (0xDC00..0xE000).contains(&low));
        if paired {
            i += 12;
        } else if (0xD800..0xE000).contains(&unit) {
            fixed.get_or_insert_with(|| line.to_vec())[i..i + 6].copy_from_slice(b"\\ufffd");
            i += 6;
        } else {
            i += 6;
        }
    }
    fixed
}

/// The code unit of a `\uXXXX` escape starting at `at`.
fn hex_escape(line: &[u8], at: usize) -> Option<u16> {
    let esc = line.get(at..at + 6)?;
    if esc[0] != b'\\' || esc[1] != b'u' {
        return None;
    }
    let hex = std::str::from_utf8(&esc[2..]).ok()?;
    u16::from_str_radix(hex, 16).ok()
}

fn bad_field(
    offset: u64,
    field: &'static str,
    expected: &'static str,
    found: &Value,
) -> StreamError {
    let mut found = found.to_string();
    if found.len() > PREVIEW_BYTES {
        found = preview(found.as_bytes());
    }
    StreamError::BadField {
        offset,
        field,
        expected,
        found,
    }
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Lossy UTF-8 of at most [`PREVIEW_BYTES`] bytes.
pub(crate) fn preview(bytes: &[u8]) -> String {
    let cut = &bytes[..bytes.len().min(PREVIEW_BYTES)];
    let mut text = String::from_utf8_lossy(cut).into_owned();
    if bytes.len() > PREVIEW_BYTES {
        text.push('…');
    }
    text
}
