//! Following any kind of job live from the CLI: a spinner while it waits to be placed (with the
//! scheduler's reason), its output as it arrives, and a summary at the end.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::bail;
use futures::StreamExt;
use serde_json::Value;

use super::client::Client;
use super::sse;

/// Spinner frames, drawn on stderr while the job has no output yet.
const FRAMES: [char; 10] = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];

/// A one-line status on stderr that redraws itself; silent when stderr is not a terminal
/// (status changes are then printed as plain lines instead).
struct Spinner {
    tty: bool,
    frame: usize,
    text: Option<String>,
    since: Instant,
}

impl Spinner {
    fn new() -> Self {
        Spinner {
            tty: std::io::stderr().is_terminal(),
            frame: 0,
            text: None,
            since: Instant::now(),
        }
    }

    /// Shows `text` (a waiting state) from now on.
    fn set(&mut self, text: String) {
        if !self.tty {
            eprintln!("{text}");
        }
        self.text = Some(text);
        self.since = Instant::now();
        self.draw();
    }

    fn draw(&mut self) {
        let Some(text) = &self.text else { return };
        if !self.tty {
            return;
        }
        self.frame = (self.frame + 1) % FRAMES.len();
        let mut err = std::io::stderr().lock();
        let _ = write!(
            err,
            "\r\x1b[2K{} {text} ({}s)",
            FRAMES[self.frame],
            self.since.elapsed().as_secs()
        );
        let _ = err.flush();
    }

    /// Removes the spinner line (before output or a final message).
    fn clear(&mut self) {
        if self.text.take().is_some() && self.tty {
            let _ = write!(std::io::stderr().lock(), "\r\x1b[2K");
        }
    }
}

/// Prints the events of `/api/v2/<collection>/<id>/` live until it ends; returns the time from
/// `t0` to the first event.
pub(super) async fn follow(
    client: &Client,
    collection: &str,
    id: i64,
    t0: Instant,
) -> anyhow::Result<Option<Duration>> {
    let mut after = 0i64;
    let mut first_event = None;
    let mut last_status = String::new();
    let mut last_reason = String::new();
    let mut attempts = 0;
    let mut spinner = Spinner::new();
    let mut tick = tokio::time::interval(Duration::from_millis(120));
    loop {
        let url = client.url(&format!(
            "/api/v2/{collection}/{id}/events/stream/?after={after}"
        ));
        let resp = match client.http().get(&url).send().await {
            Ok(r) if r.status().is_success() => r,
            Ok(r) => bail!(
                "cannot follow {id}: {}{}",
                r.status(),
                super::client::auth_hint(r.status())
            ),
            Err(e) if attempts < 5 => {
                attempts += 1;
                spinner.clear();
                eprintln!("lost the coordinator ({e}); retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            Err(e) => bail!("cannot follow {id}: {e}"),
        };
        let mut parser = sse::Parser::default();
        let mut body = resp.bytes_stream();
        let mut ended = false;
        loop {
            let chunk = tokio::select! {
                c = body.next() => c,
                _ = tick.tick() => {
                    spinner.draw();
                    continue;
                }
            };
            let Some(Ok(chunk)) = chunk else { break };
            for msg in parser.push(&chunk) {
                let data: Value = serde_json::from_str(&msg.data).unwrap_or(Value::Null);
                match msg.event.as_str() {
                    "job_event" => {
                        first_event.get_or_insert_with(|| t0.elapsed());
                        after = data["counter"].as_i64().unwrap_or(after);
                        if let Some(text) = data["stdout"].as_str().filter(|t| !t.is_empty()) {
                            spinner.clear();
                            let mut out = std::io::stdout().lock();
                            let _ = writeln!(out, "{}", text.replace("\r\n", "\n"));
                            let _ = out.flush();
                        }
                    }
                    "status" => {
                        let status = data["status"].as_str().unwrap_or("?").to_string();
                        let why = data["job_explanation"].as_str().unwrap_or("").to_string();
                        let changed =
                            status != last_status || (status == "pending" && why != last_reason);
                        if !changed {
                            continue;
                        }
                        match status.as_str() {
                            "pending" if !why.is_empty() => {
                                spinner.set(format!("{id} pending: {why}"));
                            }
                            "pending" | "waiting" | "submitting" => {
                                spinner.set(format!("{id} {status}"));
                            }
                            "running" => {
                                spinner.clear();
                                eprintln!(
                                    "{id} running on {} (route {})",
                                    data["execution_node"].as_str().unwrap_or("?"),
                                    data["execution_route"].as_str().unwrap_or("?")
                                );
                            }
                            _ => {
                                spinner.clear();
                                ended = true;
                            }
                        }
                        last_reason = why;
                        last_status = status;
                    }
                    _ => {}
                }
            }
        }
        if ended {
            return Ok(first_event);
        }
        attempts += 1;
        if attempts > 5 {
            spinner.clear();
            bail!("the live stream of {id} kept breaking; see `meshrun jobs`");
        }
    }
}

/// A job's final summary on stderr.
pub(super) fn print_summary(job: &Value, first_event: Option<Duration>) {
    let s = |k: &str| job[k].as_str().unwrap_or("-").to_string();
    eprintln!();
    eprintln!(
        "{} {}: {}",
        s("type").replace('_', " "),
        job["id"],
        s("status")
    );
    eprintln!("  controller node: {}", s("controller_node"));
    eprintln!("  execution node:  {}", s("execution_node"));
    eprintln!("  route:           {}", s("execution_route"));
    eprintln!("  work unit:       {}", s("work_unit_id"));
    eprintln!(
        "  elapsed:         {:.2} s",
        job["elapsed"].as_f64().unwrap_or(0.0)
    );
    if let Some(d) = first_event {
        eprintln!("  first event:     {} ms after the request", d.as_millis());
    }
    let explanation = s("job_explanation");
    if !explanation.is_empty() && explanation != "-" {
        eprintln!("  explanation:     {explanation}");
    }
    let traceback = s("result_traceback");
    if !traceback.is_empty() && traceback != "-" {
        eprintln!("  traceback:\n{traceback}");
    }
}

/// The CLI's exit code for a job: 0 successful, 3 still active, 1 otherwise.
pub(super) fn exit_for(job: &Value) -> ExitCode {
    match job["status"].as_str() {
        Some("successful") => ExitCode::SUCCESS,
        Some("pending" | "waiting" | "submitting" | "running") => ExitCode::from(3),
        _ => ExitCode::FAILURE,
    }
}
