//! The scheduler: places pending jobs on a controller and an execution node, and starts them.
//!
//! `placement` is the pure decision over a snapshot (AWX's rules). A cycle here loads the
//! snapshot (ready, enabled instances with their load; groups; pending jobs, oldest first), runs
//! it, and applies each decision with a conditional store transition (`pending` → `waiting`), so a
//! job changed meanwhile (canceled, placed by another cycle) is never started twice. It runs on
//! every submit, finish and capacity change, plus a safety tick. Jobs waiting for their
//! project's update are not placed until it succeeded (`project_wait`).

pub mod placement;
pub mod project_wait;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::runner::JobRunner;
use crate::store::{JobStatus, NodeState, StatusChange, Store, StoreError};
use placement::{Decision, GroupView, JobView, NodeView};

/// The safety tick: a cycle runs at least this often.
const TICK: Duration = Duration::from_secs(5);

/// Runs scheduling cycles when woken.
#[derive(Debug, Clone)]
pub struct Scheduler {
    store: Store,
    runner: JobRunner,
    wake: Arc<Notify>,
}

impl Scheduler {
    /// A scheduler that starts placed jobs with `runner`; `wake` triggers a cycle.
    pub fn new(store: Store, runner: JobRunner, wake: Arc<Notify>) -> Self {
        Scheduler {
            store,
            runner,
            wake,
        }
    }

    /// Runs cycles until `shutdown`.
    pub fn spawn(self, shutdown: CancellationToken) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            loop {
                if let Err(e) = self.cycle().await {
                    tracing::error!(error = %e, "scheduling cycle failed");
                }
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = self.wake.notified() => {}
                    _ = tokio::time::sleep(TICK) => {}
                }
            }
        })
    }

    /// One cycle; returns how many jobs were started.
    pub async fn cycle(&self) -> Result<usize, StoreError> {
        let pending = self.store.jobs_in(&[JobStatus::Pending]).await?;
        let pending = project_wait::resolve(&self.store, &self.runner, pending).await?;
        if pending.is_empty() {
            return Ok(0);
        }
        let loads = self.store.node_loads().await?;
        let nodes: Vec<NodeView> = self
            .store
            .all_instances()
            .await?
            .into_iter()
            // A node that left the mesh is not chosen even before discovery marks it
            // unavailable: a job placed there would only fail.
            .filter(|i| {
                i.node_state == NodeState::Ready && i.enabled && i.unroutable_since.is_none()
            })
            .map(|i| {
                let load = loads.get(&i.hostname).copied().unwrap_or_default();
                NodeView {
                    consumed: load.consumed(i.node_type),
                    jobs: load.running + load.controlled,
                    capacity: i.capacity,
                    node_type: i.node_type,
                    hostname: i.hostname,
                }
            })
            .collect();
        let groups: Vec<GroupView> = self
            .store
            .instance_groups()
            .await?
            .into_iter()
            .map(|g| GroupView {
                name: g.name,
                members: g.instances,
                max_concurrent_jobs: g.max_concurrent_jobs,
                max_forks: g.max_forks,
                jobs: g.jobs_running,
                forks: g.forks_running,
            })
            .collect();
        let jobs: Vec<JobView> = pending
            .iter()
            .map(|j| JobView {
                id: j.id,
                task_impact: j.task_impact,
                forks: j.forks.filter(|f| *f > 0).unwrap_or(5),
                group: j.instance_group.clone(),
                control_only: j.kind.is_control_work(),
                only_node: j.requested_node.clone(),
            })
            .collect();
        let mut started = 0;
        for (decision, job) in placement::place(&nodes, &groups, &jobs)
            .into_iter()
            .zip(&pending)
        {
            match decision {
                Decision::Placed {
                    controller,
                    execution_node,
                    ..
                } => {
                    let moved = self
                        .store
                        .transition(
                            job.id,
                            &[JobStatus::Pending],
                            JobStatus::Waiting,
                            &StatusChange {
                                controller_node: Some(&controller),
                                execution_node: Some(&execution_node),
                                job_explanation: Some(""),
                                ..StatusChange::default()
                            },
                        )
                        .await?;
                    if moved {
                        tracing::info!(job_id = job.id, %controller, %execution_node, "job placed");
                        self.runner.spawn(job.id);
                        started += 1;
                    }
                }
                Decision::Pending { reason, .. } => {
                    if job.job_explanation != reason {
                        self.store.set_pending_reason(job.id, &reason).await?;
                    }
                }
            }
        }
        Ok(started)
    }
}
