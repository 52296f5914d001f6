//! Tells live followers (the SSE endpoint) that a job has new events or a new status.

use tokio::sync::broadcast;

/// A cheap-to-clone broadcaster of job ids that changed.
#[derive(Debug, Clone)]
pub struct EventsBus {
    tx: broadcast::Sender<i64>,
}

impl Default for EventsBus {
    fn default() -> Self {
        let (tx, _) = broadcast::channel(1024);
        EventsBus { tx }
    }
}

impl EventsBus {
    /// Announces that `job_id` changed. Nobody listening is fine.
    pub fn changed(&self, job_id: i64) {
        let _ = self.tx.send(job_id);
    }

    /// A receiver of change notices. A lagging receiver should simply re-read the store.
    pub fn subscribe(&self) -> broadcast::Receiver<i64> {
        self.tx.subscribe()
    }
}
