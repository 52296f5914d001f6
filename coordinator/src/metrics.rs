//! Counters the loops update and `GET /metrics` renders (Prometheus text format).

use std::sync::atomic::{AtomicU64, Ordering};

/// A running sum and count of durations, in microseconds (a Prometheus summary without
/// quantiles), plus the last value.
#[derive(Debug, Default)]
pub struct DurationStat {
    /// Sum of all observations, µs.
    pub sum_us: AtomicU64,
    /// Number of observations.
    pub count: AtomicU64,
    /// The last observation, µs.
    pub last_us: AtomicU64,
}

impl DurationStat {
    /// Records one duration.
    pub fn observe(&self, d: std::time::Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        self.last_us.store(us, Ordering::Relaxed);
    }
}

/// The coordinator's counters (node counts and capacity come from the store when rendering).
#[derive(Debug, Default)]
pub struct Metrics {
    /// One reading of receptor's status and its reconciliation with the store.
    pub discovery_cycle: DurationStat,
    /// Discovery cycles that failed (receptor unreachable, store error).
    pub discovery_failures: AtomicU64,
    /// Health checks, successful or not.
    pub health_check: DurationStat,
    /// Health checks that found the node unhealthy or could not run.
    pub health_check_failures: AtomicU64,
    /// Units the reaper released, by why.
    pub reaper: ReaperCounters,
}

/// Units the reaper released, by why (each counted once, when receptor confirmed it).
#[derive(Debug, Default)]
pub struct ReaperCounters {
    /// Units of jobs that had ended but were never released.
    pub ended_job: AtomicU64,
    /// Units tagged with a job id the store does not have.
    pub unknown_job: AtomicU64,
    /// Finished health-check units (and finished `local` units no job recorded).
    pub health_check: AtomicU64,
    /// Of the above, those that needed a force-release (their node could not be told).
    pub forced: AtomicU64,
    /// Reaper passes that could not read `work list` or the store.
    pub failures: AtomicU64,
}
