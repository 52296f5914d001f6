//! The pure half of node-loss handling: from a job, its node as stored and the time, decide
//! whether the job's unit is dead and say why in words people can act on.

use chrono::{DateTime, TimeDelta, Utc};

use crate::discovery::reconcile::parse_stamp;
use crate::store::{Instance, Job, JobStatus};

/// Why a job's unit is taken for dead.
#[derive(Debug, Clone, PartialEq)]
pub enum Loss {
    /// The node has been unroutable for longer than the grace period.
    Lost {
        /// The node.
        node: String,
        /// `unroutable_since` as stored.
        since: String,
        /// The grace period in seconds.
        grace_secs: f64,
    },
    /// The node reported a new boot id: whatever ran there before is gone.
    Rebooted {
        /// The node.
        node: String,
        /// The boot id seen before.
        old: String,
        /// The boot id it reports now.
        new: String,
    },
    /// The unit's output stopped growing although the worker was asked for keepalive lines.
    Stalled {
        /// The node.
        node: String,
        /// Seconds without new output.
        silent_secs: f64,
        /// The keepalive interval the worker was asked for.
        keepalive_secs: u32,
    },
    /// The unit's output stopped growing and receptor no longer knows the unit.
    UnitGone {
        /// The node.
        node: String,
        /// The controller's unit id.
        unit: String,
        /// Seconds without new output.
        silent_secs: f64,
    },
}

impl Loss {
    /// The job explanation, naming the node and the last event stored (`(counter, type)`).
    pub fn explain(&self, last_event: Option<&(i64, String)>) -> String {
        let last = match last_event {
            Some((counter, event)) => format!("the last event received was #{counter} ({event})"),
            None => "no event had been received yet".to_string(),
        };
        match self {
            Loss::Lost {
                node,
                since,
                grace_secs,
            } => format!(
                "Instance {node} was lost: not routable since {since}, longer than the {grace_secs} s \
                 grace period; {last}"
            ),
            Loss::Rebooted { node, old, new } => format!(
                "Instance {node} rebooted (boot id changed from {old} to {new}) while the job was \
                 running; {last}"
            ),
            Loss::Stalled {
                node,
                silent_secs,
                keepalive_secs,
            } => format!(
                "The job stalled on instance {node}: no output for {silent_secs:.0} s although the \
                 worker sends a keepalive line every {keepalive_secs} s; {last}"
            ),
            Loss::UnitGone {
                node,
                unit,
                silent_secs,
            } => format!(
                "The job's work unit {unit} on instance {node} is gone from receptor and its output \
                 stopped {silent_secs:.0} s ago; {last}"
            ),
        }
    }

    /// The node the loss is about.
    pub fn node(&self) -> &str {
        match self {
            Loss::Lost { node, .. }
            | Loss::Rebooted { node, .. }
            | Loss::Stalled { node, .. }
            | Loss::UnitGone { node, .. } => node,
        }
    }
}

/// Whether `inst` is routable as discovery last saw it.
pub fn routable(inst: &Instance) -> bool {
    inst.last_seen.is_some() && inst.unroutable_since.is_none()
}

/// `Lost` when `inst` has been unroutable for longer than `grace` at `now`.
pub fn lost(inst: &Instance, now: DateTime<Utc>, grace: TimeDelta) -> Option<Loss> {
    let text = inst.unroutable_since.as_deref()?;
    let since = parse_stamp(text)?;
    (now - since > grace).then(|| Loss::Lost {
        node: inst.hostname.clone(),
        since: text.to_string(),
        grace_secs: grace.as_seconds_f64(),
    })
}

/// Whether a reboot noticed by the check that ended at `checked` killed `job`'s unit: the job
/// had a unit (running, or submitting) and started before that check ended. A job submitted
/// between the reboot and the check is misjudged as dead; the window is one health check.
pub fn killed_by_reboot(job: &Job, checked: Option<DateTime<Utc>>) -> bool {
    match job.status {
        JobStatus::Running => {}
        JobStatus::Submitting if job.work_unit_id.is_some() => {}
        _ => return false,
    }
    let started = job.started.as_deref().and_then(parse_stamp);
    match (started, checked) {
        (Some(s), Some(c)) => s < c,
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discovery::reconcile::stamp;
    use crate::store::NodeState;
    use meshrun_shared::node_type::NodeType;

    fn at(secs: i64) -> DateTime<Utc> {
        parse_stamp("2026-11-27T10:00:00Z").unwrap() + TimeDelta::seconds(secs)
    }

    fn node(unroutable_since: Option<i64>) -> Instance {
        Instance {
            id: 1,
            hostname: "exec1".into(),
            uuid: None,
            node_type: NodeType::Execution,
            node_state: NodeState::Ready,
            enabled: true,
            cpu: 2.0,
            memory: 0,
            cpu_capacity: 0,
            mem_capacity: 0,
            capacity: 0,
            capacity_adjustment: 1.0,
            version: String::new(),
            boot_id: None,
            errors: String::new(),
            last_seen: Some(stamp(at(0))),
            unroutable_since: unroutable_since.map(|s| stamp(at(s))),
            last_health_check: None,
            health_check_started: None,
            listener_address: None,
            registered_by: "discovery".into(),
            secure_work: false,
            control_tls: false,
            revision: 0,
            created: stamp(at(0)),
            modified: stamp(at(0)),
        }
    }

    #[test]
    fn a_node_is_lost_only_after_the_grace() {
        let grace = TimeDelta::seconds(10);
        assert_eq!(lost(&node(None), at(100), grace), None);
        assert!(routable(&node(None)));
        let away = node(Some(5));
        assert!(!routable(&away));
        assert_eq!(lost(&away, at(15), grace), None, "exactly the grace");
        let l = lost(&away, at(16), grace).expect("lost");
        assert_eq!(l.node(), "exec1");
        let text = l.explain(Some(&(12, "runner_on_ok".into())));
        assert!(text.contains("Instance exec1 was lost"), "{text}");
        assert!(
            text.contains("the last event received was #12 (runner_on_ok)"),
            "{text}"
        );
        assert!(
            l.explain(None).ends_with("no event had been received yet"),
            "{}",
            l.explain(None)
        );
    }

    #[test]
    fn explanations_name_the_cause() {
        let r = Loss::Rebooted {
            node: "exec2".into(),
            old: "b1".into(),
            new: "b2".into(),
        };
        assert!(r.explain(None).starts_with(
            "Instance exec2 rebooted (boot id changed from b1 to b2) while the job was running"
        ));
        let s = Loss::Stalled {
            node: "exec2".into(),
            silent_secs: 9.4,
            keepalive_secs: 2,
        };
        assert!(
            s.explain(None)
                .contains("stalled on instance exec2: no output for 9 s")
        );
        let g = Loss::UnitGone {
            node: "exec2".into(),
            unit: "u1".into(),
            silent_secs: 700.0,
        };
        assert!(
            g.explain(None)
                .contains("work unit u1 on instance exec2 is gone")
        );
    }
}
