//! The pure half of deprovisioning: from what is known about one node being removed (the time,
//! its deadline, the jobs bound to it, the work units it holds) the next step. No I/O, so the
//! rules are unit-tested directly:
//! - pending jobs pinned to the node can never run: they end `error`, saying why;
//! - jobs placed on it run on until the deadline; then every one not already flagged is
//!   canceled (through the job runner's cancel path, which also tells the unit);
//! - units of meshrun's on the node that no active job owns (ended jobs, unknown jobs, health
//!   checks) are released; units nothing marks as meshrun's are left alone;
//! - the node is removed once no job is bound to it and none of meshrun's units is left.

use chrono::{DateTime, Utc};

/// A job placed on the node that has not ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActiveJob {
    /// Its id.
    pub id: i64,
    /// A cancel was already requested (by the removal or by someone else).
    pub cancel_flag: bool,
}

/// Who a unit on the node belongs to, with what the store says about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnitOwner {
    /// A job that has not ended: its runner owns the unit.
    ActiveJob(i64),
    /// A job that has ended, or a job id the store does not know.
    EndedJob(i64),
    /// A health check of the node.
    HealthCheck,
    /// Nothing marks it as meshrun's.
    Foreign,
}

/// A unit of the node as the control node lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeUnit {
    /// The unit id on the control node.
    pub id: String,
    /// Who it belongs to.
    pub owner: UnitOwner,
}

/// Everything the next step is decided from.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// Now.
    pub now: DateTime<Utc>,
    /// When running jobs are canceled.
    pub deadline: DateTime<Utc>,
    /// Pending jobs pinned to the node.
    pub pinned_pending: Vec<i64>,
    /// Jobs placed on the node that have not ended.
    pub active: Vec<ActiveJob>,
    /// The node's units on the control node.
    pub units: Vec<NodeUnit>,
}

/// What to do now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Step {
    /// Pending jobs to end `error`.
    pub fail_pending: Vec<i64>,
    /// Jobs to cancel (the deadline passed).
    pub cancel: Vec<i64>,
    /// Units to release.
    pub release: Vec<String>,
    /// Delete the instance and write its tombstone.
    pub finish: bool,
    /// Jobs still running before the deadline (for the log).
    pub draining: Vec<i64>,
}

/// Decides the next step for one node.
pub fn step(s: &Snapshot) -> Step {
    let past_deadline = s.now >= s.deadline;
    let mut out = Step {
        fail_pending: s.pinned_pending.clone(),
        ..Step::default()
    };
    for job in &s.active {
        if !past_deadline {
            out.draining.push(job.id);
        } else if !job.cancel_flag {
            out.cancel.push(job.id);
        }
    }
    let mut left = 0;
    for unit in &s.units {
        match unit.owner {
            UnitOwner::ActiveJob(_) => left += 1,
            UnitOwner::EndedJob(_) | UnitOwner::HealthCheck => {
                out.release.push(unit.id.clone());
                left += 1;
            }
            UnitOwner::Foreign => {}
        }
    }
    // A pinned job failed in this step no longer binds the node, but a unit released in it
    // must be seen gone first: a release can stay pending while the node cannot be told.
    out.finish = s.active.is_empty() && left == 0;
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeDelta;

    fn snapshot(before_deadline: bool) -> Snapshot {
        let now = DateTime::parse_from_rfc3339("2030-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let offset = TimeDelta::seconds(if before_deadline { 30 } else { -1 });
        Snapshot {
            now,
            deadline: now + offset,
            pinned_pending: Vec::new(),
            active: Vec::new(),
            units: Vec::new(),
        }
    }

    fn unit(id: &str, owner: UnitOwner) -> NodeUnit {
        NodeUnit {
            id: id.into(),
            owner,
        }
    }

    #[test]
    fn running_jobs_finish_until_the_deadline_then_are_canceled_once() {
        let mut s = snapshot(true);
        s.active = vec![
            ActiveJob {
                id: 1,
                cancel_flag: false,
            },
            ActiveJob {
                id: 2,
                cancel_flag: true,
            },
        ];
        s.units = vec![unit("u1", UnitOwner::ActiveJob(1))];
        let before = step(&s);
        assert_eq!(before.draining, [1, 2]);
        assert!(before.cancel.is_empty() && before.release.is_empty() && !before.finish);

        s.deadline = s.now;
        let at = step(&s);
        assert_eq!(
            at.cancel,
            [1],
            "a job already flagged is not canceled again"
        );
        assert!(
            at.release.is_empty(),
            "an active job's unit is its runner's"
        );
        assert!(!at.finish);
    }

    #[test]
    fn pinned_pending_jobs_fail_at_once() {
        let mut s = snapshot(true);
        s.pinned_pending = vec![7, 8];
        let st = step(&s);
        assert_eq!(st.fail_pending, [7, 8]);
        assert!(st.finish, "nothing else binds the node");
    }

    #[test]
    fn units_are_released_and_the_node_removed_once_they_are_gone() {
        let mut s = snapshot(false);
        s.units = vec![
            unit("ended", UnitOwner::EndedJob(3)),
            unit("check", UnitOwner::HealthCheck),
            unit("someone-elses", UnitOwner::Foreign),
        ];
        let st = step(&s);
        assert_eq!(st.release, ["ended", "check"]);
        assert!(!st.finish, "released units must be seen gone first");

        s.units = vec![unit("someone-elses", UnitOwner::Foreign)];
        let st = step(&s);
        assert!(st.release.is_empty());
        assert!(st.finish, "a foreign unit does not hold the removal up");
    }

    #[test]
    fn a_job_that_finished_before_the_deadline_lets_the_removal_end_early() {
        let mut s = snapshot(true);
        s.units = vec![unit("u1", UnitOwner::EndedJob(1))];
        let st = step(&s);
        assert_eq!(st.release, ["u1"]);
        s.units.clear();
        let st = step(&s);
        assert!(st.finish && st.cancel.is_empty());
    }
}
