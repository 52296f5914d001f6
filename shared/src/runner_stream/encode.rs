//! Writers for ansible-runner streams: the controller→worker stream (kwargs, zipped private
//! data dir, eof) and the frames it is made of, which the worker side reuses for artifacts.
//!
//! JSON is written the way Python's `json.dumps` writes it (`", "` and `": "` separators,
//! non-ASCII escaped as `\uXXXX`), so that lines and event files look like ansible-runner's.
//! Readers do not depend on it; key order follows `serde_json::Map` and floats use Rust's
//! shortest form, so bytes can still differ from Python's.

use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::Serialize;
use serde_json::{Map, Value};

use super::archive::{self, ArchiveError};
use super::scratch;

/// Raw zip bytes read per base64 piece; a multiple of 3 so that only the last piece is padded.
const RAW_PIECE: usize = 48 * 1024;

/// Keys a transmitted kwargs object must not carry: the worker picks its own private data dir,
/// the others are transmit-side options or Python callables that would break or hijack
/// `ansible_runner.interface.run` on the worker.
pub const RESERVED_KWARGS: &[&str] = &[
    "private_data_dir",
    "only_transmit_kwargs",
    "keepalive_seconds",
    "streamer",
    "_input",
    "_output",
    "event_handler",
    "status_handler",
    "artifacts_handler",
    "cancel_callback",
    "finished_callback",
];

/// Failure while writing a stream.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    /// The kwargs contain a key the worker must not receive.
    #[error("kwargs must not contain `{key}` (reserved for the transmit/worker machinery)")]
    ReservedKwarg {
        /// The offending key.
        key: String,
    },
    /// Writing to the output or the scratch file failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The I/O error.
        source: io::Error,
    },
    /// Zipping the private data dir failed.
    #[error("zipping {dir}: {source}")]
    Archive {
        /// The directory.
        dir: String,
        /// The archive error.
        source: ArchiveError,
    },
    /// The zip source returned fewer bytes than its length said.
    #[error("zip source ended after {read} of {expected} bytes")]
    ZipShort {
        /// Bytes announced in the zipfile frame.
        expected: u64,
        /// Bytes actually read.
        read: u64,
    },
}

fn io_err(what: &'static str) -> impl FnOnce(io::Error) -> EncodeError {
    move |source| EncodeError::Io { what, source }
}

/// Writes a complete controller→worker stream: `{"kwargs": ...}`, then, when
/// `private_data_dir` is given, the directory zipped (at deflate `level`) into an anonymous
/// scratch file under the system temp dir and sent as a zip frame, then `{"eof": true}`.
/// Returns the bytes written.
pub fn write_transmit_stream<W: Write>(
    out: W,
    kwargs: &Map<String, Value>,
    private_data_dir: Option<&Path>,
    level: Option<i64>,
) -> Result<u64, EncodeError> {
    if let Some(key) = RESERVED_KWARGS.iter().find(|k| kwargs.contains_key(**k)) {
        return Err(EncodeError::ReservedKwarg {
            key: (*key).to_owned(),
        });
    }
    let mut out = Counting {
        inner: out,
        written: 0,
    };
    write_json_line(&mut out, &KwargsLine { kwargs })?;
    if let Some(dir) = private_data_dir {
        let mut zip = zip_to_scratch(dir, level)?;
        write_zip_frame(&mut out, &mut zip)?;
    }
    write_eof(&mut out)?;
    out.flush().map_err(io_err("flushing the stream"))?;
    Ok(out.written)
}

#[derive(Serialize)]
struct KwargsLine<'a> {
    kwargs: &'a Map<String, Value>,
}

fn zip_to_scratch(dir: &Path, level: Option<i64>) -> Result<std::fs::File, EncodeError> {
    let file = scratch::anonymous_file(&std::env::temp_dir())
        .map_err(io_err("creating a scratch file for the zip"))?;
    archive::zip_dir(dir, file, level).map_err(|source| EncodeError::Archive {
        dir: dir.display().to_string(),
        source,
    })
}

/// Writes `value` as one Python-style JSON line. Returns the bytes written.
pub fn write_json_line<W: Write, T: Serialize + ?Sized>(
    out: &mut W,
    value: &T,
) -> Result<u64, EncodeError> {
    let mut line = to_python_json(value).map_err(io_err("serializing a JSON line"))?;
    line.push(b'\n');
    out.write_all(&line)
        .map_err(io_err("writing a JSON line"))?;
    Ok(line.len() as u64)
}

/// Writes `{"eof": true}`. Returns the bytes written.
pub fn write_eof<W: Write>(out: &mut W) -> Result<u64, EncodeError> {
    write_json_line(out, &serde_json::json!({ "eof": true }))
}

/// Writes `{"zipfile": N}` and the base64 of the whole of `zip` (from its start; N is its
/// length), with no newline after the blob, streaming in pieces. Returns the bytes written.
pub fn write_zip_frame<W: Write, R: Read + Seek>(
    out: &mut W,
    zip: &mut R,
) -> Result<u64, EncodeError> {
    let size = zip
        .seek(SeekFrom::End(0))
        .map_err(io_err("measuring the zip"))?;
    zip.seek(SeekFrom::Start(0))
        .map_err(io_err("rewinding the zip"))?;
    let mut written = write_json_line(out, &serde_json::json!({ "zipfile": size }))?;
    let mut source = zip.take(size);
    let mut raw = vec![0u8; RAW_PIECE];
    let mut encoded = vec![0u8; RAW_PIECE / 3 * 4];
    let mut read = 0u64;
    loop {
        let n = fill(&mut source, &mut raw).map_err(io_err("reading the zip"))?;
        if n == 0 {
            break;
        }
        read += n as u64;
        let len = STANDARD
            .encode_slice(&raw[..n], &mut encoded)
            .map_err(|e| EncodeError::Io {
                what: "encoding base64",
                source: io::Error::other(e),
            })?;
        out.write_all(&encoded[..len])
            .map_err(io_err("writing the zip blob"))?;
        written += len as u64;
    }
    if read != size {
        return Err(EncodeError::ZipShort {
            expected: size,
            read,
        });
    }
    Ok(written)
}

/// Reads until `buf` is full or the source ends, so that every piece but the last is a
/// multiple of 3 bytes long.
fn fill(source: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match source.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Serializes `value` the way Python's `json.dumps` does by default (see the module docs).
pub fn to_python_json<T: Serialize + ?Sized>(value: &T) -> io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, PythonFormatter);
    value.serialize(&mut ser).map_err(io::Error::other)?;
    Ok(buf)
}

/// `json.dumps` defaults: `", "`, `": "`, and `ensure_ascii` (everything outside printable
/// ASCII escaped, astral characters as surrogate pairs).
struct PythonFormatter;

impl serde_json::ser::Formatter for PythonFormatter {
    fn begin_array_value<W: ?Sized + Write>(&mut self, w: &mut W, first: bool) -> io::Result<()> {
        if first { Ok(()) } else { w.write_all(b", ") }
    }

    fn begin_object_key<W: ?Sized + Write>(&mut self, w: &mut W, first: bool) -> io::Result<()> {
        if first { Ok(()) } else { w.write_all(b", ") }
    }

    fn begin_object_value<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        w.write_all(b": ")
    }

    fn write_string_fragment<W: ?Sized + Write>(
        &mut self,
        w: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        let mut start = 0;
        for (at, ch) in fragment.char_indices() {
            if (' '..='~').contains(&ch) {
                continue;
            }
            w.write_all(&fragment.as_bytes()[start..at])?;
            let mut units = [0u16; 2];
            for unit in ch.encode_utf16(&mut units) {
                write!(w, "\\u{unit:04x}")?;
            }
            start = at + ch.len_utf8();
        }
        w.write_all(&fragment.as_bytes()[start..])
    }
}

/// Counts what passes through, for the byte totals the writers return.
struct Counting<W> {
    inner: W,
    written: u64,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}
