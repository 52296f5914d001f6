//! The ansible-runner streaming protocol (`transmit` → `worker` → `process`).
//!
//! Both directions are newline-terminated JSON objects, except that a `{"zipfile": N}` line is
//! followed by exactly `4*ceil(N/3)` base64 characters of a zip, with no newline, and the next
//! object starts right after them. This module owns:
//! - [`decode`]: a push-based, bounded-memory decoder yielding [`Frame`]s with resumable offsets;
//! - [`encode`]: writers for the controller→worker stream and for zip frames;
//! - [`kwargs`]: the typed run parameters sent to the worker;
//! - [`process`]: the equivalent of `ansible-runner process` (event files and artifacts), with
//!   `canonical` recognising event lines it can store without serializing them again;
//! - [`archive`]: zipping and safe extraction of the directories carried in zip frames.

pub mod archive;
mod canonical;
pub mod decode;
pub mod encode;
pub mod kwargs;
pub mod process;
mod scratch;

#[cfg(test)]
mod tests;

pub use decode::{Cut, DecodeError, DecoderLimits, Frame, StreamDecoder, StreamError};
pub use encode::{EncodeError, write_eof, write_json_line, write_transmit_stream, write_zip_frame};
pub use kwargs::RunnerKwargs;
pub use process::{
    ProcessError, ProcessErrorKind, ProcessOutcome, artifact_dir_for, process_stream,
};
