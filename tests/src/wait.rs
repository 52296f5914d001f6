//! Waiting for a condition with a deadline, instead of fixed sleeps.

use std::time::{Duration, Instant};

/// Polls `check` every 100 ms until it returns `Some` or `patience` runs out; panics then,
/// naming `what`.
pub fn eventually<T>(what: &str, patience: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + patience;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {patience:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
