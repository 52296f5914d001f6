//! An async client for receptor's control service (Unix socket or plain TCP): `status`, `ping`
//! and the `work` commands, with typed replies and errors.
//!
//! The protocol (receptor 1.4.x): the server greets with `Receptor Control, node <id>`; each
//! command is one line (this client always sends JSON, so any unit id is safely quoted) and gets
//! one line back, a JSON object or `ERROR: <message>`. A connection carries commands one after
//! another until `work submit` or `work results`, which take it over: those methods consume the
//! [`ControlClient`] and return a [`SubmitSession`] or a [`ResultsStream`]. Every reply line is
//! read under a timeout and a length limit; after a timeout or a broken reply the connection
//! refuses further commands rather than risk reading a late reply as the next one's.
//!
//! # Layout
//! - `client`: [`ControlClient`], [`ControlOptions`] and the one-line commands.
//! - `submit`: [`SubmitRequest`], [`SubmitSession`], [`SubmitResult`].
//! - `results`: [`ResultsStream`].
//! - `types`: the reply types ([`Status`], [`UnitStatus`], ...).
//! - `error`: [`ControlError`].
//! - `wire`: line framing, timeouts and argument checks shared by the above.

mod client;
mod error;
mod results;
mod submit;
mod types;
mod wire;

#[cfg(test)]
mod tests;

pub use client::{
    ControlClient, ControlOptions, DEFAULT_CONNECT_TIMEOUT, DEFAULT_MAX_LINE, DEFAULT_REPLY_TIMEOUT,
};
pub use error::ControlError;
pub use results::ResultsStream;
pub use submit::{RESERVED_SUBMIT_KEYS, SubmitRequest, SubmitResult, SubmitSession};
pub use types::{
    Advertisement, CancelOutcome, Connection, PingReply, ReleaseOutcome, Status, UnitState,
    UnitStatus, WorkCommandAd,
};
pub use wire::is_valid_unit_id;
