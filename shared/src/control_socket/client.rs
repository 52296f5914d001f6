//! [`ControlClient`]: one connection to receptor's control service, carrying any number of
//! one-line commands until a streaming command (`work submit`, `work results`) takes it over.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::io::BufReader;
use tokio::net::{TcpStream, UnixStream};

use super::error::{ControlError, quote};
use super::results::ResultsStream;
use super::submit::{SubmitRequest, SubmitSession};
use super::types::{CancelOutcome, PingReply, RawPing, ReleaseOutcome, Status, UnitStatus};
use super::wire::{
    Conn, Transport, check_arg, is_valid_unit_id, read_line, reject_error_line, send_line, timed,
};

/// Default limit for connecting and reading the greeting.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default limit for one command's reply. Receptor's own `ping` gives up after 10 s, and a local
/// release retries deleting the unit dir for about 3 s.
pub const DEFAULT_REPLY_TIMEOUT: Duration = Duration::from_secs(60);
/// Default limit for one reply line; `work list` on a node with thousands of units is a few MB.
pub const DEFAULT_MAX_LINE: usize = 64 * 1024 * 1024;

/// Greetings are short; a longer first line is not receptor.
const MAX_GREETING: usize = 4096;
const GREETING_PREFIX: &str = "Receptor Control, node ";
const CREATED_PREFIX: &str = "Work unit created with ID ";
const CREATED_SUFFIX: &str = ". Send stdin data and EOF.";
const RESULTS_PREFIX: &str = "Streaming results for work unit ";
/// `startpos` travels as a JSON number, which receptor reads as a float64: exact up to 2^53.
const MAX_RESULTS_OFFSET: u64 = 1 << 53;

/// Limits used by a [`ControlClient`] and the sessions it turns into.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlOptions {
    /// Limit for connecting plus reading the greeting.
    pub connect_timeout: Duration,
    /// Limit for each one-line reply (also the submit's "created" and result lines and the
    /// results header). Never applied to streaming payload or results.
    pub reply_timeout: Duration,
    /// Longest reply line accepted.
    pub max_line: usize,
}

impl Default for ControlOptions {
    fn default() -> Self {
        Self {
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            reply_timeout: DEFAULT_REPLY_TIMEOUT,
            max_line: DEFAULT_MAX_LINE,
        }
    }
}

/// One connection to receptor's control service, greeting already read.
pub struct ControlClient {
    conn: Conn,
    node_id: String,
    options: ControlOptions,
    /// Set once an error leaves the connection out of step with the server.
    broken: Option<String>,
}

impl std::fmt::Debug for ControlClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlClient")
            .field("node_id", &self.node_id)
            .field("broken", &self.broken)
            .finish_non_exhaustive()
    }
}

impl ControlClient {
    /// Connects to a Unix socket with default [`ControlOptions`].
    pub async fn connect_unix(path: &Path) -> Result<Self, ControlError> {
        Self::connect_unix_with(path, ControlOptions::default()).await
    }

    /// Connects to a Unix socket; `options.connect_timeout` covers connect and greeting.
    pub async fn connect_unix_with(
        path: &Path,
        options: ControlOptions,
    ) -> Result<Self, ControlError> {
        let during = format!("connecting to control socket {}", path.display());
        let limit = options.connect_timeout;
        timed(limit, &during, async {
            let stream = UnixStream::connect(path)
                .await
                .map_err(|e| ControlError::io(during.as_str(), e))?;
            Self::handshake(Box::new(stream), options).await
        })
        .await
    }

    /// Connects over plain TCP (`host:port`) with default [`ControlOptions`].
    pub async fn connect_tcp(addr: &str) -> Result<Self, ControlError> {
        Self::connect_tcp_with(addr, ControlOptions::default()).await
    }

    /// Connects over plain TCP; `options.connect_timeout` covers connect and greeting.
    pub async fn connect_tcp_with(
        addr: &str,
        options: ControlOptions,
    ) -> Result<Self, ControlError> {
        let during = format!("connecting to control service at {addr}");
        let limit = options.connect_timeout;
        timed(limit, &during, async {
            let stream = TcpStream::connect(addr)
                .await
                .map_err(|e| ControlError::io(during.as_str(), e))?;
            // Commands are single small writes; Nagle would only add latency.
            stream
                .set_nodelay(true)
                .map_err(|e| ControlError::io(during.as_str(), e))?;
            Self::handshake(Box::new(stream), options).await
        })
        .await
    }

    async fn handshake(
        stream: Box<dyn Transport>,
        options: ControlOptions,
    ) -> Result<Self, ControlError> {
        let mut conn = BufReader::new(stream);
        let limit = MAX_GREETING.min(options.max_line);
        let line = match read_line(&mut conn, limit, "reading the greeting").await {
            Err(ControlError::LineTooLong { .. }) => {
                return Err(ControlError::BadGreeting(format!(
                    "first line longer than {limit} bytes"
                )));
            }
            other => other?,
        };
        let node_id = parse_greeting(&line)?;
        tracing::debug!(node = %node_id, "connected to receptor control service");
        Ok(Self {
            conn,
            node_id,
            options,
            broken: None,
        })
    }

    /// The node id from the greeting.
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// `status`: the node's view of the mesh.
    pub async fn status(&mut self) -> Result<Status, ControlError> {
        self.call("status", &json!({"command": "status"})).await
    }

    /// `ping <node>`. An unreachable node is [`PingReply::Failed`], not an error.
    pub async fn ping(&mut self, node: &str) -> Result<PingReply, ControlError> {
        check_arg("node", node)?;
        let raw: RawPing = self
            .call("ping", &json!({"command": "ping", "target": node}))
            .await?;
        Ok(raw.into())
    }

    /// `work status <unit_id>`.
    pub async fn work_status(&mut self, unit_id: &str) -> Result<UnitStatus, ControlError> {
        check_arg("unit id", unit_id)?;
        self.call("work status", &work_json("status", unit_id))
            .await
    }

    /// `work list`: every unit the node knows, by id (keys exactly as receptor sent them).
    pub async fn work_list(&mut self) -> Result<BTreeMap<String, UnitStatus>, ControlError> {
        let request = json!({"command": "work", "subcommand": "list"});
        self.call("work list", &request).await
    }

    /// `work cancel <unit_id>`.
    pub async fn work_cancel(&mut self, unit_id: &str) -> Result<CancelOutcome, ControlError> {
        let pending = self
            .done_or_pending("cancel", unit_id, "cancelled", "cancel pending")
            .await?;
        Ok(if pending {
            CancelOutcome::Pending
        } else {
            CancelOutcome::Cancelled
        })
    }

    /// `reload`: receptor re-reads its config file and restarts its link backends (every link
    /// of the node drops and redials). Only links and `local-only` can be reloaded; a change to
    /// anything else makes receptor refuse, and needs a restart.
    pub async fn reload(&mut self) -> Result<(), ControlError> {
        #[derive(serde::Deserialize)]
        struct Reply {
            #[serde(rename = "Success")]
            success: bool,
            #[serde(rename = "Error", default)]
            error: Option<String>,
        }
        let reply: Reply = self.call("reload", &json!({ "command": "reload" })).await?;
        if reply.success {
            Ok(())
        } else {
            Err(ControlError::Receptor {
                command: "reload".into(),
                message: reply.error.unwrap_or_else(|| "no reason given".into()),
            })
        }
    }

    /// `work release <unit_id>`: cancels the unit and deletes its files (for a remote unit, once
    /// its node confirms).
    pub async fn work_release(&mut self, unit_id: &str) -> Result<ReleaseOutcome, ControlError> {
        self.release("release", unit_id).await
    }

    /// `work force-release <unit_id>`: like release, but deletes locally even if the remote node
    /// cannot be told.
    pub async fn work_force_release(
        &mut self,
        unit_id: &str,
    ) -> Result<ReleaseOutcome, ControlError> {
        self.release("force-release", unit_id).await
    }

    /// Starts `work submit`: sends the request and reads the "created" line, so the returned
    /// session knows the unit id before any payload is sent (store it first: crash safety).
    pub async fn work_submit(mut self, req: &SubmitRequest) -> Result<SubmitSession, ControlError> {
        const COMMAND: &str = "work submit";
        let line = req.to_command_line()?;
        self.ensure_usable()?;
        let during = "waiting for the work unit id";
        let reply = timed(self.options.reply_timeout, during, async {
            send_line(&mut self.conn, &line, "sending work submit").await?;
            read_line(&mut self.conn, self.options.max_line, during).await
        })
        .await?;
        let unit_id = parse_created(&reject_error_line(COMMAND, reply)?)?;
        tracing::debug!(unit = %unit_id, node = %req.node, worktype = %req.worktype, "work unit created");
        Ok(SubmitSession::new(self.conn, unit_id, self.options))
    }

    /// `work results <unit_id> <offset>`: reads the header and returns the raw stdout from byte
    /// `offset`. The stream ends only when the unit is Succeeded or Failed (never for Canceled),
    /// so poll [`work_status`](Self::work_status) on another connection alongside.
    pub async fn work_results(
        mut self,
        unit_id: &str,
        offset: u64,
    ) -> Result<ResultsStream, ControlError> {
        const COMMAND: &str = "work results";
        check_arg("unit id", unit_id)?;
        if offset > MAX_RESULTS_OFFSET {
            return Err(ControlError::InvalidRequest {
                field: "offset".into(),
                reason: format!("{offset} is above 2^53, which receptor cannot read exactly"),
            });
        }
        self.ensure_usable()?;
        let request = json!({
            "command": "work", "subcommand": "results", "unitid": unit_id, "startpos": offset,
        });
        let during = "waiting for the results header";
        let reply = timed(self.options.reply_timeout, during, async {
            send_line(
                &mut self.conn,
                request.to_string().as_bytes(),
                "sending work results",
            )
            .await?;
            read_line(&mut self.conn, self.options.max_line, during).await
        })
        .await?;
        let header = reject_error_line(COMMAND, reply)?;
        if header != format!("{RESULTS_PREFIX}{unit_id}").as_bytes() {
            return Err(ControlError::unexpected(COMMAND, &header));
        }
        Ok(ResultsStream::new(self.conn, unit_id.to_owned(), offset))
    }

    async fn release(
        &mut self,
        subcommand: &str,
        unit_id: &str,
    ) -> Result<ReleaseOutcome, ControlError> {
        let pending = self
            .done_or_pending(subcommand, unit_id, "released", "release pending")
            .await?;
        Ok(if pending {
            ReleaseOutcome::Pending
        } else {
            ReleaseOutcome::Released
        })
    }

    /// Sends a cancel/release style command and reads `{"<done>": id}` (false) or
    /// `{"<pending>": id}` (true). Any other answer, say for another unit, means replies and
    /// commands may no longer match up, so it also retires the connection.
    async fn done_or_pending(
        &mut self,
        subcommand: &str,
        unit_id: &str,
        done: &str,
        pending: &str,
    ) -> Result<bool, ControlError> {
        check_arg("unit id", unit_id)?;
        let command = format!("work {subcommand}");
        let line = self
            .exchange(&command, &work_json(subcommand, unit_id))
            .await?;
        let reply: BTreeMap<String, Value> = parse_json(&command, &line)?;
        let mut entries = reply.iter();
        let outcome = match (entries.next(), entries.next()) {
            (Some((key, Value::String(id))), None) if id == unit_id && key == done => Some(false),
            (Some((key, Value::String(id))), None) if id == unit_id && key == pending => Some(true),
            _ => None,
        };
        outcome.ok_or_else(|| self.retire(ControlError::unexpected(&command, &line)))
    }

    /// Sends one JSON command and parses its one-line JSON reply.
    pub(crate) async fn call<T: DeserializeOwned>(
        &mut self,
        command: &str,
        request: &Value,
    ) -> Result<T, ControlError> {
        let line = self.exchange(command, request).await?;
        parse_json(command, &line)
    }

    /// Sends one JSON command and returns its reply line, `ERROR:` lines turned into errors.
    /// Marks the connection unusable when the failure leaves it out of step.
    async fn exchange(&mut self, command: &str, request: &Value) -> Result<Vec<u8>, ControlError> {
        self.ensure_usable()?;
        tracing::trace!(command, "control request");
        self.exchange_once(command, request)
            .await
            .map_err(|e| self.retire(e))
    }

    /// Passes `e` through, first marking the connection unusable if `e` leaves it out of step.
    fn retire(&mut self, e: ControlError) -> ControlError {
        if e.breaks_connection() {
            self.broken = Some(e.to_string());
        }
        e
    }

    async fn exchange_once(
        &mut self,
        command: &str,
        request: &Value,
    ) -> Result<Vec<u8>, ControlError> {
        let during = format!("waiting for the reply to {command}");
        let max = self.options.max_line;
        let line = timed(self.options.reply_timeout, &during, async {
            let sending = format!("sending {command}");
            send_line(&mut self.conn, request.to_string().as_bytes(), &sending).await?;
            read_line(&mut self.conn, max, &during).await
        })
        .await?;
        reject_error_line(command, line)
    }

    fn ensure_usable(&self) -> Result<(), ControlError> {
        match &self.broken {
            Some(cause) => Err(ControlError::ConnectionUnusable {
                cause: cause.clone(),
            }),
            None => Ok(()),
        }
    }
}

fn work_json(subcommand: &str, unit_id: &str) -> Value {
    json!({"command": "work", "subcommand": subcommand, "unitid": unit_id})
}

/// Parses a reply line. Every receptor reply is a JSON object; anything else is refused here,
/// because serde would read e.g. `[]` as a struct whose fields all have defaults.
fn parse_json<T: DeserializeOwned>(command: &str, line: &[u8]) -> Result<T, ControlError> {
    let json_error = |source| ControlError::Json {
        command: command.to_owned(),
        source,
    };
    if line.trim_ascii_start().first() != Some(&b'{') {
        let not_object =
            <serde_json::Error as serde::de::Error>::custom("reply is not a JSON object");
        return Err(json_error(not_object));
    }
    serde_json::from_slice(line).map_err(json_error)
}

/// Takes the node id out of `Receptor Control, node <id>`.
fn parse_greeting(line: &[u8]) -> Result<String, ControlError> {
    let bad = || ControlError::BadGreeting(quote(line));
    let text = std::str::from_utf8(line).map_err(|_| bad())?;
    let id = text.strip_prefix(GREETING_PREFIX).ok_or_else(bad)?;
    if id.is_empty() || id.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad());
    }
    Ok(id.to_owned())
}

/// Takes the unit id out of `Work unit created with ID <id>. Send stdin data and EOF.`
fn parse_created(line: &[u8]) -> Result<String, ControlError> {
    let bad = || ControlError::unexpected("work submit", line);
    let text = std::str::from_utf8(line).map_err(|_| bad())?;
    let id = text
        .strip_prefix(CREATED_PREFIX)
        .and_then(|rest| rest.strip_suffix(CREATED_SUFFIX))
        .ok_or_else(bad)?;
    if !is_valid_unit_id(id) {
        return Err(bad());
    }
    Ok(id.to_owned())
}
