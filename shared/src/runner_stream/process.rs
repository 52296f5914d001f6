//! The equivalent of `ansible-runner process`: reads a worker's output stream and leaves the
//! same files in the artifacts directory that ansible-runner 2.4.3's `Processor` leaves.
//!
//! Files written, as the real one does:
//! - `job_events/` (mode 0700) is created before anything is read;
//! - each event whose `counter` and `uuid` are truthy goes to `job_events/<counter>-<uuid>.json`
//!   (mode 0600, the event object as JSON); keepalives and events with a falsy counter or uuid
//!   are dropped;
//! - each artifacts zip is extracted into the artifacts directory (that is where `rc`,
//!   `status`, `stdout`, `stderr`, `command` and `fact_cache/` come from; the processor itself
//!   writes no status file).
//!
//! Deliberate differences:
//! - A file name is only made from a positive integer counter and a uuid string without `/` or
//!   NUL (at most 200 bytes); Python formats any truthy value into the path, which lets a hostile
//!   worker write outside `job_events/`. Events refused for this are counted as dropped.
//! - An existing file (or symlink) at an event's path is replaced, never written through.
//! - A line that is already in `json.dumps` form (as a real worker's are) is stored as it came,
//!   which is what Python's `json.dumps(json.loads(line))` gives; any other line is serialized
//!   again (see [`super::canonical`]), so keys are then sorted where Python keeps their order.
//! - A truncated or malformed stream is an error ([`ProcessError`], carrying the outcome so far
//!   with status `error` and a `job_explanation`), where Python records status `error` and exits
//!   0 (or, for a cut zip, crashes with a traceback in `daemon.log` and exits 1). The files
//!   already written stay, as with Python; no status file is invented.
//! - Input is read to its end after the eof frame, so trailing garbage is reported; Python
//!   stops reading at eof.
//!
//! The `<private data dir>/daemon.log` that the CLI creates is left to the caller.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::archive::{self, ArchiveError, ExtractLimits};
use super::canonical::dumps_form;
use super::decode::{DecodeError, DecoderLimits, Frame, StreamDecoder, StreamError};
use super::encode::to_python_json;
use super::scratch;

/// Input is read in pieces of this size.
const READ_CHUNK: usize = 64 * 1024;

/// Longest uuid accepted in an event file name (keeps the name under NAME_MAX).
const MAX_UUID_BYTES: usize = 200;

/// What a processed stream reported.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcessOutcome {
    /// The last status line's `status` (`successful`, `failed`, `error`, ...).
    pub status: Option<String>,
    /// The `rc` file extracted from the artifacts zip, if it holds an integer.
    pub rc: Option<i32>,
    /// Event files written.
    pub events: u64,
    /// Events not written: falsy counter/uuid (as Python), or unsafe file name.
    pub dropped_events: u64,
    /// `job_explanation` of the last status line that had one.
    pub job_explanation: Option<String>,
    /// `result_traceback` of the last status line that had one.
    pub result_traceback: Option<String>,
    /// Zip entries extracted, over all artifacts zips.
    pub artifact_entries: u64,
}

/// Why processing stopped.
#[derive(Debug, thiserror::Error)]
pub enum ProcessErrorKind {
    /// The stream is malformed or truncated.
    #[error("worker stream: {0}")]
    Stream(#[from] StreamError),
    /// Reading the input failed.
    #[error("reading the worker stream at offset {offset}: {source}")]
    Read {
        /// Bytes consumed before the failure.
        offset: u64,
        /// The I/O error.
        source: io::Error,
    },
    /// Preparing the artifacts directory failed.
    #[error("preparing artifacts dir: {0}")]
    Setup(FrameError),
    /// Acting on a frame failed.
    #[error("handling the frame ending at stream offset {offset}: {source}")]
    Frame {
        /// Stream offset just after the frame.
        offset: u64,
        /// What failed.
        source: FrameError,
    },
}

/// A failure to write what a frame carries.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// A file system operation failed.
    #[error("{what} {}: {source}", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// On which path.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// `job_events` exists but is not a plain directory (a symlink from a zip, say).
    #[error("{} is not a directory; refusing to write events through it", .0.display())]
    EventsDirNotDir(PathBuf),
    /// The artifacts zip could not be extracted.
    #[error("extracting artifacts into {}: {source}", dir.display())]
    Extract {
        /// The artifacts dir.
        dir: PathBuf,
        /// The archive error.
        source: ArchiveError,
    },
}

/// Processing failed; `partial` is what had been seen, with status `error` and an explanation
/// (the worker's own, if it had already reported an error).
#[derive(Debug, thiserror::Error)]
#[error("{kind}")]
pub struct ProcessError {
    /// What went wrong.
    pub kind: ProcessErrorKind,
    /// The outcome up to the failure.
    pub partial: Box<ProcessOutcome>,
}

/// Where `ansible-runner process` puts artifacts: `<pdd>/artifacts/<ident>`, or
/// `<pdd>/artifacts` without (or with an empty) ident. `None` when `ident` is not a plain file
/// name (contains `/` or NUL, or is `.` or `..`).
pub fn artifact_dir_for(private_data_dir: &Path, ident: Option<&str>) -> Option<PathBuf> {
    let base = private_data_dir.join("artifacts");
    match ident {
        None | Some("") => Some(base),
        Some("." | "..") => None,
        Some(id) if id.contains(['/', '\0']) => None,
        Some(id) => Some(base.join(id)),
    }
}

/// Reads a worker stream from `input` to its end, writing event files and extracting artifacts
/// into `artifacts_dir` (created if missing). `on_event` sees every frame except zip data,
/// keepalives and dropped events, after its files are written.
pub fn process_stream<R: Read>(
    mut input: R,
    artifacts_dir: &Path,
    limits: &DecoderLimits,
    extract: &ExtractLimits,
    on_event: impl FnMut(&Frame),
) -> Result<ProcessOutcome, ProcessError> {
    let events_dir = artifacts_dir.join("job_events");
    let mut sink = Sink {
        dir: artifacts_dir,
        event_path: events_dir.clone(),
        events_dir_checked: false,
        events_dir,
        extract,
        outcome: ProcessOutcome::default(),
        zip: None,
        on_event,
    };
    if let Err(e) = sink.prepare() {
        return Err(sink.fail(ProcessErrorKind::Setup(e)));
    }
    let mut decoder = StreamDecoder::new(*limits);
    let mut buf = vec![0u8; READ_CHUNK];
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(source) => {
                let offset = decoder.consumed();
                return Err(sink.fail(ProcessErrorKind::Read { offset, source }));
            }
        };
        let pushed =
            decoder.push_with_lines(&buf[..n], &mut |frame, line| sink.handle(frame, line));
        if let Err(e) = pushed {
            let kind = match e {
                DecodeError::Stream(e) => ProcessErrorKind::Stream(e),
                DecodeError::Sink { offset, source } => ProcessErrorKind::Frame { offset, source },
            };
            return Err(sink.fail(kind));
        }
    }
    match decoder.finish() {
        Ok(()) => Ok(sink.outcome),
        Err(e) => Err(sink.fail(e.into())),
    }
}

struct Sink<'a, F> {
    dir: &'a Path,
    events_dir: PathBuf,
    /// Reused buffer for `events_dir/<name>`.
    event_path: PathBuf,
    /// `events_dir` was found to be a real directory and nothing has changed the tree since.
    events_dir_checked: bool,
    extract: &'a ExtractLimits,
    outcome: ProcessOutcome,
    zip: Option<File>,
    on_event: F,
}

impl<F: FnMut(&Frame)> Sink<'_, F> {
    fn prepare(&self) -> Result<(), FrameError> {
        fs::create_dir_all(self.dir).map_err(io_at("creating", self.dir))?;
        match DirBuilder::new().mode(0o700).create(&self.events_dir) {
            Err(e) if e.kind() != io::ErrorKind::AlreadyExists => {
                Err(io_at("creating", &self.events_dir)(e))
            }
            _ => self.check_events_dir(),
        }
    }

    fn fail(self, kind: ProcessErrorKind) -> ProcessError {
        let mut partial = self.outcome;
        let explained =
            partial.status.as_deref() == Some("error") && partial.job_explanation.is_some();
        if !explained {
            partial.status = Some("error".to_owned());
            partial.job_explanation = Some(kind.to_string());
        }
        ProcessError {
            kind,
            partial: Box::new(partial),
        }
    }

    fn handle(&mut self, frame: Frame, line: &[u8]) -> Result<(), FrameError> {
        match &frame {
            Frame::Status(status) => self.record_status(status),
            Frame::Event(event) => {
                if !self.write_event(event, line)? {
                    return Ok(());
                }
            }
            Frame::ZipStart { .. } => self.start_zip()?,
            Frame::ZipData(data) => return self.append_zip(data),
            Frame::ZipEnd => self.finish_zip()?,
            Frame::Keepalive => return Ok(()),
            Frame::Kwargs(_) | Frame::Eof | Frame::Other(_) => {}
        }
        (self.on_event)(&frame);
        Ok(())
    }

    fn record_status(&mut self, status: &Map<String, Value>) {
        let text = |key: &str| status.get(key).and_then(Value::as_str).map(str::to_owned);
        self.outcome.status = text("status");
        if let Some(explanation) = text("job_explanation") {
            self.outcome.job_explanation = Some(explanation);
        }
        if let Some(traceback) = text("result_traceback") {
            self.outcome.result_traceback = Some(traceback);
        }
    }

    /// Writes the event's file; `false` when the event is dropped.
    ///
    /// `job_events` is checked to be a real directory before the first event and again after
    /// each artifacts zip (the only thing in this process that changes the tree), not per event.
    fn write_event(&mut self, event: &Map<String, Value>, line: &[u8]) -> Result<bool, FrameError> {
        let Some(name) = event_file_name(event) else {
            self.outcome.dropped_events += 1;
            return Ok(false);
        };
        if !self.events_dir_checked {
            self.check_events_dir()?;
            self.events_dir_checked = true;
        }
        self.event_path.push(&name);
        let written = self.write_event_file(event, line);
        self.event_path.pop();
        written?;
        self.outcome.events += 1;
        Ok(true)
    }

    fn write_event_file(&self, event: &Map<String, Value>, line: &[u8]) -> Result<(), FrameError> {
        let path = &self.event_path;
        let serialized;
        let json = match dumps_form(line, event) {
            Some(raw) => raw,
            None => {
                serialized = to_python_json(event).map_err(io_at("serializing event for", path))?;
                &serialized[..]
            }
        };
        // `create_new` never follows a symlink; whatever is in the way is replaced, which
        // costs a syscall only when something is there.
        let create = || {
            OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
        };
        let mut file = match create() {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                fs::remove_file(path).map_err(io_at("replacing", path))?;
                create()
            }
            other => other,
        }
        .map_err(io_at("creating", path))?;
        file.write_all(json).map_err(io_at("writing", path))
    }

    fn check_events_dir(&self) -> Result<(), FrameError> {
        let meta = fs::symlink_metadata(&self.events_dir)
            .map_err(io_at("inspecting", &self.events_dir))?;
        if meta.is_dir() {
            Ok(())
        } else {
            Err(FrameError::EventsDirNotDir(self.events_dir.clone()))
        }
    }

    fn start_zip(&mut self) -> Result<(), FrameError> {
        let file = scratch::anonymous_file(self.dir)
            .map_err(io_at("creating a scratch zip in", self.dir))?;
        self.zip = Some(file);
        Ok(())
    }

    fn append_zip(&mut self, data: &[u8]) -> Result<(), FrameError> {
        match &mut self.zip {
            Some(file) => file
                .write_all(data)
                .map_err(io_at("writing a scratch zip in", self.dir)),
            None => Ok(()),
        }
    }

    fn finish_zip(&mut self) -> Result<(), FrameError> {
        let Some(mut file) = self.zip.take() else {
            return Ok(());
        };
        file.seek(SeekFrom::Start(0))
            .map_err(io_at("rewinding a scratch zip in", self.dir))?;
        let summary = archive::extract_zip(file, self.dir, self.extract).map_err(|source| {
            FrameError::Extract {
                dir: self.dir.to_path_buf(),
                source,
            }
        })?;
        self.outcome.artifact_entries += summary.entries;
        self.outcome.rc = read_rc(&self.dir.join("rc"));
        // Checked again before the next event: the zip may have changed the tree.
        self.events_dir_checked = false;
        Ok(())
    }
}

/// `<counter>-<uuid>.json`, or `None` when the real processor would drop the event (falsy
/// counter or uuid) or the values cannot safely form a file name.
fn event_file_name(event: &Map<String, Value>) -> Option<String> {
    let counter = event.get("counter");
    let uuid = event.get("uuid");
    if !truthy(counter) || !truthy(uuid) {
        return None;
    }
    let safe = match (
        counter.and_then(Value::as_u64),
        uuid.and_then(Value::as_str),
    ) {
        (Some(n), Some(id)) if id.len() <= MAX_UUID_BYTES && !id.contains(['/', '\0']) => {
            Some(format!("{n}-{id}.json"))
        }
        _ => None,
    };
    if safe.is_none() {
        tracing::warn!(
            ?counter,
            ?uuid,
            "event dropped: counter/uuid cannot form a safe file name"
        );
    }
    safe
}

/// Python truthiness of a JSON value (a missing key is falsy).
fn truthy(value: Option<&Value>) -> bool {
    match value {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(Value::Number(n)) => n.as_f64().is_some_and(|f| f != 0.0),
        Some(Value::String(s)) => !s.is_empty(),
        Some(Value::Array(a)) => !a.is_empty(),
        Some(Value::Object(o)) => !o.is_empty(),
    }
}

/// The integer in a regular `rc` file of at most a few bytes.
fn read_rc(path: &Path) -> Option<i32> {
    let meta = fs::symlink_metadata(path).ok()?;
    if !meta.is_file() {
        return None;
    }
    let mut text = String::new();
    File::open(path)
        .ok()?
        .take(64)
        .read_to_string(&mut text)
        .ok()?;
    text.trim().parse().ok()
}

fn io_at<'p>(what: &'static str, path: &'p Path) -> impl FnOnce(io::Error) -> FrameError + 'p {
    move |source| FrameError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}
