//! Maps what the worker stream said to the job's final status, as AWX does.

use crate::store::JobStatus;

/// What the end of a job looked like.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamEnd {
    /// The last final status line (`successful`, `failed`, `timeout`, `canceled`, `error`).
    pub status: Option<String>,
    /// `job_explanation` of the last status line that had one.
    pub job_explanation: Option<String>,
    /// `result_traceback` of the last status line that had one.
    pub result_traceback: Option<String>,
    /// Whether `{"eof": true}` arrived.
    pub saw_eof: bool,
}

/// The job's final status with its explanation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Final status.
    pub status: JobStatus,
    /// For people.
    pub explanation: String,
    /// Detail.
    pub traceback: String,
}

/// Decides the final status. `cancel_flag`: a cancel was requested for this job.
pub fn decide(end: &StreamEnd, cancel_flag: bool) -> Outcome {
    let explanation = end.job_explanation.clone().unwrap_or_default();
    let traceback = end.result_traceback.clone().unwrap_or_default();
    let outcome = |status, explanation: String| Outcome {
        status,
        explanation,
        traceback: traceback.clone(),
    };
    match end.status.as_deref() {
        Some("successful") => outcome(JobStatus::Successful, explanation),
        Some("failed") => outcome(JobStatus::Failed, explanation),
        Some("timeout") => outcome(JobStatus::Failed, "Job terminated due to timeout".into()),
        Some("canceled") if cancel_flag => outcome(JobStatus::Canceled, explanation),
        Some("canceled") => outcome(
            JobStatus::Failed,
            "The job was canceled on the execution node without a cancel request.".into(),
        ),
        Some("error") => outcome(
            JobStatus::Error,
            if explanation.is_empty() {
                "Job terminated due to error".into()
            } else {
                explanation
            },
        ),
        Some(other) => outcome(
            JobStatus::Error,
            format!("the worker reported an unknown final status {other:?}"),
        ),
        None => outcome(
            JobStatus::Error,
            "the worker stream ended without a final status".into(),
        ),
    }
}

/// `job_explanation` of a job whose cancel ended it.
pub const CANCELED_ON_REQUEST: &str = "The job was canceled on request.";

/// A job whose cancel flag is set ends `canceled`, unless it had already ended on its own
/// (`successful` or `failed`) before the cancel reached it: what the worker reported as a
/// cancel, an error from the unit being stopped, or a stream cut by the stop all mean the
/// requested cancel took effect.
pub fn apply_cancel_flag(outcome: Outcome, cancel_flag: bool) -> Outcome {
    if !cancel_flag || matches!(outcome.status, JobStatus::Successful | JobStatus::Failed) {
        return outcome;
    }
    let explanation = if outcome.status == JobStatus::Canceled && !outcome.explanation.is_empty() {
        outcome.explanation
    } else {
        CANCELED_ON_REQUEST.to_string()
    };
    Outcome {
        status: JobStatus::Canceled,
        explanation,
        traceback: outcome.traceback,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn end(status: &str) -> StreamEnd {
        StreamEnd {
            status: Some(status.into()),
            saw_eof: true,
            ..StreamEnd::default()
        }
    }

    #[test]
    fn awx_mapping() {
        assert_eq!(
            decide(&end("successful"), false).status,
            JobStatus::Successful
        );
        assert_eq!(decide(&end("failed"), false).status, JobStatus::Failed);
        let t = decide(&end("timeout"), false);
        assert_eq!(
            (t.status, t.explanation.as_str()),
            (JobStatus::Failed, "Job terminated due to timeout")
        );
        assert_eq!(decide(&end("canceled"), true).status, JobStatus::Canceled);
        assert_eq!(decide(&end("canceled"), false).status, JobStatus::Failed);
        let mut e = end("error");
        e.job_explanation = Some("Failed to extract private data directory on worker.".into());
        let o = decide(&e, false);
        assert_eq!(o.status, JobStatus::Error);
        assert_eq!(
            o.explanation,
            "Failed to extract private data directory on worker."
        );
        assert_eq!(
            decide(&StreamEnd::default(), false).status,
            JobStatus::Error
        );
    }

    #[test]
    fn the_cancel_flag_turns_an_interrupted_end_into_canceled() {
        let flagged = |e: &StreamEnd| apply_cancel_flag(decide(e, true), true).status;
        assert_eq!(flagged(&end("canceled")), JobStatus::Canceled);
        assert_eq!(flagged(&end("error")), JobStatus::Canceled);
        assert_eq!(flagged(&end("timeout")), JobStatus::Failed);
        assert_eq!(flagged(&StreamEnd::default()), JobStatus::Canceled);
        // Ended on its own before the cancel reached it.
        assert_eq!(flagged(&end("successful")), JobStatus::Successful);
        assert_eq!(flagged(&end("failed")), JobStatus::Failed);
        // Without the flag nothing changes: a canceled unit is `failed`, as AWX.
        let o = apply_cancel_flag(decide(&end("canceled"), false), false);
        assert_eq!(o.status, JobStatus::Failed);
        let e = apply_cancel_flag(decide(&end("error"), false), false);
        assert_eq!(e.status, JobStatus::Error);
    }
}
