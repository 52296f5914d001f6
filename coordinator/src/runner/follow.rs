//! Reads a unit's output with `work results` from the job's stored byte offset, decodes it,
//! stores events in batches together with the offset they were parsed up to, and collects the
//! artifacts zip. `work results` never ends for a canceled unit, so `work status` is polled
//! alongside, and so is the job's stored status: a job node-loss handling ended stops being
//! followed.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use meshrun_shared::control_socket::{ControlClient, UnitState};
use meshrun_shared::runner_stream::archive::{ExtractLimits, extract_zip};
use meshrun_shared::runner_stream::decode::{DecoderLimits, Frame, StreamDecoder};
use serde_json::{Map, Value};
use tokio::io::AsyncReadExt;

use super::outcome::StreamEnd;
use super::{JobFailure, JobRunner};
use crate::store::{EventRow, Job};

/// Store events once this many are waiting, or when the flush tick fires.
const BATCH: usize = 200;
const FLUSH_EVERY: Duration = Duration::from_millis(50);
const STATUS_POLL: Duration = Duration::from_secs(1);
/// How many times a broken results stream is reopened before the job is given up.
const MAX_RECONNECTS: u32 = 10;
/// Worker output kept for `result_traceback` when a stream goes wrong.
const TAIL_BYTES: usize = 1024;

/// What following a unit produced.
pub struct Followed {
    /// How the stream ended.
    pub end: StreamEnd,
    /// The playbook's rc from the artifacts, if they arrived.
    pub rc: Option<i64>,
    /// The last KiB of worker output, for `result_traceback` when the job errs.
    pub tail: String,
}

/// Turns a runner event into a stored row; events without counter or uuid are skipped, as
/// ansible-runner's own processor does.
pub fn event_row(map: &Map<String, Value>) -> Option<EventRow> {
    let counter = map.get("counter")?.as_i64().filter(|c| *c > 0)?;
    let uuid = map
        .get("uuid")?
        .as_str()
        .filter(|u| !u.is_empty())?
        .to_string();
    let text = |k: &str| map.get(k).and_then(Value::as_str).map(str::to_string);
    let num = |k: &str| map.get(k).and_then(Value::as_i64).unwrap_or(0);
    Some(EventRow {
        counter,
        uuid,
        event: text("event").unwrap_or_default(),
        start_line: num("start_line"),
        end_line: num("end_line"),
        stdout: text("stdout").unwrap_or_default(),
        created: text("created"),
        data: Value::Object(map.clone()).to_string(),
    })
}

struct State {
    end: StreamEnd,
    pending: Vec<EventRow>,
    zip: Option<std::fs::File>,
    zip_path: std::path::PathBuf,
    have_zip: bool,
}

impl State {
    fn on_frame(&mut self, frame: Frame) -> std::io::Result<()> {
        match frame {
            Frame::Event(map) => {
                if let Some(row) = event_row(&map) {
                    self.pending.push(row);
                }
            }
            Frame::Status(map) => {
                if let Some(s) = map.get("status").and_then(Value::as_str)
                    && !matches!(s, "starting" | "running")
                {
                    self.end.status = Some(s.to_string());
                }
                if let Some(e) = map.get("job_explanation").and_then(Value::as_str) {
                    self.end.job_explanation = Some(e.to_string());
                }
                if let Some(t) = map.get("result_traceback").and_then(Value::as_str) {
                    self.end.result_traceback = Some(t.to_string());
                }
            }
            Frame::ZipStart { .. } => {
                self.zip = Some(std::fs::File::create(&self.zip_path)?);
            }
            Frame::ZipData(bytes) => {
                if let Some(f) = self.zip.as_mut() {
                    f.write_all(&bytes)?;
                }
            }
            Frame::ZipEnd => {
                if let Some(mut f) = self.zip.take() {
                    f.flush()?;
                    self.have_zip = true;
                }
            }
            Frame::Eof => self.end.saw_eof = true,
            Frame::Kwargs(_) | Frame::Keepalive | Frame::Other(_) => {}
        }
        Ok(())
    }
}

/// A ring of the last bytes seen.
struct Tail(Vec<u8>);

impl Tail {
    fn push(&mut self, bytes: &[u8]) {
        self.0.extend_from_slice(bytes);
        if self.0.len() > TAIL_BYTES {
            let cut = self.0.len() - TAIL_BYTES;
            self.0.drain(..cut);
        }
    }
    fn text(&self) -> String {
        format!("Worker output:\n{}", String::from_utf8_lossy(&self.0))
    }
}

/// Follows `unit` of `job` until its stream ends.
pub async fn follow(
    runner: &JobRunner,
    job: &Job,
    unit: &str,
    job_dir: &Path,
) -> Result<Followed, JobFailure> {
    let inner = &runner.inner;
    std::fs::create_dir_all(job_dir)
        .map_err(|e| JobFailure::new(format!("cannot create {}: {e}", job_dir.display())))?;
    let base = u64::try_from(job.result_offset).unwrap_or(0);
    // Offsets the decoder reports are absolute: it starts where the stored offset says.
    let mut decoder = StreamDecoder::resume_from(DecoderLimits::default(), base);
    let mut state = State {
        end: StreamEnd::default(),
        pending: Vec::new(),
        zip: None,
        zip_path: job_dir.join("artifacts.zip"),
        have_zip: false,
    };
    let mut tail = Tail(Vec::new());
    let mut read_total: u64 = 0;
    let mut reconnects = 0;
    let mut buf = vec![0u8; 64 * 1024];
    let mut status_client: Option<ControlClient> = None;
    let mut cancel_watch = super::cancel::CancelWatch::default();
    'connect: loop {
        let mut results = match runner.connect().await {
            Ok(c) => match c.work_results(unit, base + read_total).await {
                Ok(r) => r,
                Err(e) => {
                    return Err(JobFailure::new(format!(
                        "receptor cannot stream unit {unit}'s results: {e}"
                    )));
                }
            },
            Err(f) => {
                reconnects += 1;
                if reconnects > MAX_RECONNECTS {
                    return Err(f);
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue 'connect;
            }
        };
        let mut poll = tokio::time::interval(STATUS_POLL);
        let mut flush = tokio::time::interval(FLUSH_EVERY);
        loop {
            tokio::select! {
                n = results.read(&mut buf) => match n {
                    Ok(0) => break 'connect,
                    Ok(n) => {
                        read_total += n as u64;
                        tail.push(&buf[..n]);
                        let mut sink = |f: Frame| state.on_frame(f);
                        if let Err(e) = decoder.push(&buf[..n], &mut sink) {
                            store_pending(runner, job.id, &mut state, decoder.resume_offset()).await?;
                            return Err(JobFailure { explanation: format!("the worker stream is not valid: {e}"), traceback: tail.text() });
                        }
                        if state.pending.len() >= BATCH {
                            store_pending(runner, job.id, &mut state, decoder.resume_offset()).await?;
                        }
                    }
                    Err(e) => {
                        reconnects += 1;
                        tracing::warn!(job_id = job.id, unit, error = %e, "results stream broke; reopening");
                        if reconnects > MAX_RECONNECTS {
                            return Err(JobFailure { explanation: format!("lost the results stream of unit {unit}: {e}"), traceback: tail.text() });
                        }
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue 'connect;
                    }
                },
                _ = flush.tick() => {
                    if !state.pending.is_empty() {
                        store_pending(runner, job.id, &mut state, decoder.resume_offset()).await?;
                    }
                }
                _ = poll.tick() => {
                    if ended_elsewhere(runner, job.id).await {
                        store_pending(runner, job.id, &mut state, decoder.resume_offset()).await?;
                        return Err(JobFailure::new("the job was ended while its output was being read"));
                    }
                    if status_client.is_none() {
                        status_client = runner.connect().await.ok();
                    }
                    if let Some(c) = status_client.as_mut() {
                        match c.work_status(unit).await {
                            Ok(st) if st.state == UnitState::Canceled => {
                                if base + read_total >= st.stdout_size || cancel_watch.tail_overdue() {
                                    break 'connect;
                                }
                            }
                            Ok(st) if !st.state.is_final() => cancel_watch.poll(runner, job.id, unit).await,
                            Ok(_) => {}
                            Err(_) => status_client = None,
                        }
                    }
                }
                _ = inner.shutdown.cancelled() => {
                    store_pending(runner, job.id, &mut state, decoder.resume_offset()).await?;
                    return Err(JobFailure::new("the coordinator is shutting down"));
                }
            }
        }
    }
    store_pending(runner, job.id, &mut state, decoder.resume_offset()).await?;
    if let Err(e) = decoder.finish() {
        return Err(JobFailure {
            explanation: format!("the worker stream ended early: {e}"),
            traceback: tail.text(),
        });
    }
    let rc = if state.have_zip {
        read_artifacts(&state.zip_path, &job_dir.join("artifacts")).await
    } else {
        None
    };
    Ok(Followed {
        end: state.end,
        rc,
        tail: tail.text(),
    })
}

/// Whether the job left `running` without this follower (node loss ended it).
async fn ended_elsewhere(runner: &JobRunner, job_id: i64) -> bool {
    match runner.inner.store.job(job_id).await {
        Ok(Some(j)) => j.status != crate::store::JobStatus::Running,
        Ok(None) => true,
        Err(_) => false,
    }
}

async fn store_pending(
    runner: &JobRunner,
    job_id: i64,
    state: &mut State,
    offset: u64,
) -> Result<(), JobFailure> {
    let events = std::mem::take(&mut state.pending);
    runner
        .inner
        .store
        .record_events(job_id, &events, offset)
        .await
        .map_err(|e| JobFailure::new(format!("cannot store job events: {e}")))?;
    if !events.is_empty() {
        runner.inner.bus.changed(job_id);
    }
    Ok(())
}

/// Extracts the artifacts zip and returns the playbook's rc from it.
async fn read_artifacts(zip: &Path, dest: &Path) -> Option<i64> {
    let (zip, dest) = (zip.to_path_buf(), dest.to_path_buf());
    tokio::task::spawn_blocking(move || {
        let file = std::fs::File::open(&zip).ok()?;
        if let Err(e) = extract_zip(
            std::io::BufReader::new(file),
            &dest,
            &ExtractLimits::default(),
        ) {
            tracing::warn!(error = %e, "cannot extract the job's artifacts");
            // Nothing of a refused archive (a zip bomb, an escaping name) is kept.
            if let Err(e) = std::fs::remove_dir_all(&dest) {
                tracing::warn!(error = %e, dir = %dest.display(), "cannot remove partial artifacts");
            }
            return None;
        }
        std::fs::read_to_string(dest.join("rc"))
            .ok()?
            .trim()
            .parse()
            .ok()
    })
    .await
    .ok()
    .flatten()
}
