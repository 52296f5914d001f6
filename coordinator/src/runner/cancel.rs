//! Canceling a job: set its cancel flag (a job not submitted yet ends `canceled` at once, and no
//! unit is ever created for it), and send `work cancel` for its unit through the control node's
//! receptor (which forwards it to a remote unit's node). The follower keeps watching the flag
//! while the unit runs and sends the cancel again if the unit is still not final after a
//! while, so a cancel requested while the unit id was not yet known, or whose first `work
//! cancel` was lost, still reaches the unit. The job ends `canceled` once its unit ended
//! (see `outcome::apply_cancel_flag`).

use std::time::{Duration, Instant};

use meshrun_shared::control_socket::CancelOutcome;

use super::JobRunner;
use crate::store::{CancelRequest, Job, StoreError};

/// `job_explanation` of a job canceled before anything was submitted.
pub const CANCELED_BEFORE_SUBMIT: &str =
    "The job was canceled before it was submitted; no work unit was created.";
/// How long after a `work cancel` the follower sends it again if the unit is still not final
/// (receptor itself gives a canceled worker 10 s before killing it).
const RESEND_AFTER: Duration = Duration::from_secs(15);

/// What a cancel request did.
#[derive(Debug)]
pub enum Canceled {
    /// The job had not been submitted: it is `canceled` now.
    Ended(Job),
    /// The flag is set and the unit (if it exists yet) was told to cancel; the job ends
    /// `canceled` when the unit does.
    Requested(Job),
    /// The job had already ended.
    AlreadyEnded(Job),
    /// No such job.
    NotFound,
}

impl JobRunner {
    /// Cancels job `id`.
    pub async fn cancel(&self, id: i64) -> Result<Canceled, StoreError> {
        self.request(id, CANCELED_BEFORE_SUBMIT).await
    }

    /// Cancels job `id` for `reason`, which becomes the job's explanation however the cancel
    /// ends it (deprovisioning uses it to name the removal).
    pub async fn cancel_because(&self, id: i64, reason: &str) -> Result<Canceled, StoreError> {
        self.inner.store.set_cancel_reason(id, reason).await?;
        self.request(id, reason).await
    }

    async fn request(&self, id: i64, before_submit: &str) -> Result<Canceled, StoreError> {
        let inner = &self.inner;
        let Some(request) = inner.store.request_cancel(id, before_submit).await? else {
            return Ok(Canceled::NotFound);
        };
        Ok(match request {
            CancelRequest::EndedBeforeSubmit(job) => {
                tracing::info!(job_id = id, "job canceled before it was submitted");
                inner.bus.changed(id);
                inner.scheduler_wake.notify_one();
                Canceled::Ended(job)
            }
            CancelRequest::Flagged(job) => {
                tracing::info!(job_id = id, unit = ?job.work_unit_id, status = %job.status, "cancel requested");
                inner.bus.changed(id);
                if let Some(unit) = &job.work_unit_id {
                    self.cancel_unit(id, unit).await;
                }
                Canceled::Requested(job)
            }
            CancelRequest::AlreadyEnded(job) => Canceled::AlreadyEnded(job),
        })
    }

    /// Sends `work cancel` for `unit` of job `job_id`; failures are logged (the follower sends
    /// it again).
    pub(super) async fn cancel_unit(&self, job_id: i64, unit: &str) {
        match self.connect().await {
            Ok(mut c) => match c.work_cancel(unit).await {
                Ok(CancelOutcome::Cancelled) => {
                    tracing::info!(job_id, unit, "work unit canceled");
                }
                Ok(CancelOutcome::Pending) => {
                    tracing::warn!(
                        job_id,
                        unit,
                        "work cancel pending: the unit's node cannot be told yet"
                    );
                }
                Err(e) => tracing::warn!(job_id, unit, error = %e, "work cancel failed"),
            },
            Err(f) => tracing::warn!(job_id, unit, error = %f.explanation, "work cancel failed"),
        }
    }
}

/// How long the follower waits for the rest of a canceled unit's output (a remote unit's size
/// is the remote node's, and receptor may stop copying output once the unit is canceled).
const CANCELED_TAIL_WAIT: Duration = Duration::from_secs(5);

/// The follower's view of a job's cancel flag while its unit runs.
#[derive(Debug, Default)]
pub(super) struct CancelWatch {
    sent: Option<Instant>,
    canceled_seen: Option<Instant>,
}

impl CancelWatch {
    /// Called on each status poll that finds the unit Canceled with output still unread:
    /// true once that has lasted [`CANCELED_TAIL_WAIT`], when the follower stops waiting.
    pub(super) fn tail_overdue(&mut self) -> bool {
        let since = *self.canceled_seen.get_or_insert_with(Instant::now);
        let overdue = since.elapsed() >= CANCELED_TAIL_WAIT;
        if overdue {
            tracing::info!("the canceled unit's output did not arrive in full; stopping there");
        }
        overdue
    }

    /// Called on every status poll while `unit` is not final: sends `work cancel` when the
    /// flag is set and none was sent from here yet, or the last one is overdue.
    pub(super) async fn poll(&mut self, runner: &JobRunner, job_id: i64, unit: &str) {
        let due = self.sent.is_none_or(|t| t.elapsed() >= RESEND_AFTER);
        if !due {
            return;
        }
        match runner.inner.store.cancel_requested(job_id).await {
            Ok(true) => {
                self.sent = Some(Instant::now());
                runner.cancel_unit(job_id, unit).await;
            }
            Ok(false) => {}
            Err(e) => tracing::warn!(job_id, error = %e, "cannot read the job's cancel flag"),
        }
    }
}
