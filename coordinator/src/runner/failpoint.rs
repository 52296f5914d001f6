//! Test-only crash points in the submit protocol, chosen by the environment variable
//! `MESHRUN_FAILPOINT` of the coordinator process (read once, at the first check).
//!
//! They exist so that the restart tests can kill the coordinator at the two moments a plain
//! SIGKILL cannot hit reliably:
//! - `abort_after_submit`: receptor has named the unit, the store has not recorded it yet;
//! - `abort_mid_payload`: half of the job payload has been streamed to receptor.
//!
//! The process aborts (SIGABRT: no destructors, no flush), as a crash would. Nothing else sets
//! a failpoint: no API call, config key or CLI flag reaches this module, so only whoever starts
//! the process can arm one. Unset (the normal case), every check is a no-op.

use std::sync::OnceLock;

/// Where the coordinator may be told to crash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failpoint {
    /// After `work submit` named the unit, before `set_work_unit` stores it.
    AbortAfterSubmit,
    /// After half of the payload was streamed.
    AbortMidPayload,
}

/// The environment variable that arms a failpoint.
pub const ENV: &str = "MESHRUN_FAILPOINT";

impl Failpoint {
    fn parse(text: &str) -> Option<Failpoint> {
        match text.trim() {
            "abort_after_submit" => Some(Failpoint::AbortAfterSubmit),
            "abort_mid_payload" => Some(Failpoint::AbortMidPayload),
            _ => None,
        }
    }
}

/// The armed failpoint, if any (read from the environment once).
pub fn armed() -> Option<Failpoint> {
    static ARMED: OnceLock<Option<Failpoint>> = OnceLock::new();
    *ARMED.get_or_init(|| {
        let value = std::env::var(ENV).ok()?;
        let point = Failpoint::parse(&value);
        match point {
            Some(p) => {
                tracing::warn!(failpoint = ?p, "test failpoint armed: this process will abort")
            }
            None => tracing::warn!(value = %value, "unknown {ENV} value ignored"),
        }
        point
    })
}

/// Aborts the process if `point` is armed.
pub fn hit(point: Failpoint) {
    if armed() == Some(point) {
        tracing::error!(failpoint = ?point, "failpoint hit: aborting");
        std::process::abort();
    }
}

/// With `abort_mid_payload` armed: streams the first half of the payload at `path` and
/// aborts. Otherwise does nothing.
pub async fn half_payload_then_abort(
    session: &mut meshrun_shared::control_socket::SubmitSession,
    path: &std::path::Path,
) {
    if armed() != Some(Failpoint::AbortMidPayload) {
        return;
    }
    if let Ok(bytes) = tokio::fs::read(path).await {
        let _ = session.write_all(&bytes[..bytes.len() / 2]).await;
        // Let receptor read what was sent before the connection drops.
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    hit(Failpoint::AbortMidPayload);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_two_names_arm_a_failpoint() {
        assert_eq!(
            Failpoint::parse("abort_after_submit"),
            Some(Failpoint::AbortAfterSubmit)
        );
        assert_eq!(
            Failpoint::parse(" abort_mid_payload\n"),
            Some(Failpoint::AbortMidPayload)
        );
        assert_eq!(Failpoint::parse(""), None);
        assert_eq!(Failpoint::parse("abort"), None);
    }
}
