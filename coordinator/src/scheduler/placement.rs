//! Placement as a pure function over a snapshot, following AWX's task manager: each pending job
//! (oldest first) needs a controller (a control or hybrid node with room for the control
//! impact) and, for user-space work, an execution node from its instance group — the one with
//! the most capacity left after the job's impact, else the largest idle node, within the
//! group's `max_concurrent_jobs` and `max_forks`. Control-only nodes never run user-space jobs;
//! a hybrid chosen to execute also controls. A job that cannot be placed gets a reason that
//! names the group and how much capacity is missing (AWX only says "not enough capacity").

use std::collections::HashMap;

use meshrun_shared::capacity::CONTROL_TASK_IMPACT;
use meshrun_shared::node_type::NodeType;

/// A node as the scheduler sees it.
#[derive(Debug, Clone)]
pub struct NodeView {
    /// Its hostname.
    pub hostname: String,
    /// Its role.
    pub node_type: NodeType,
    /// Its capacity (0 unless ready and enabled).
    pub capacity: i64,
    /// Capacity used by jobs already waiting or running on it (execution impact plus control
    /// impact of the jobs it controls).
    pub consumed: i64,
    /// Jobs running or waiting on it (to find idle nodes).
    pub jobs: i64,
}

/// An instance group as the scheduler sees it.
#[derive(Debug, Clone)]
pub struct GroupView {
    /// Its name.
    pub name: String,
    /// Member hostnames.
    pub members: Vec<String>,
    /// 0 means unlimited.
    pub max_concurrent_jobs: i64,
    /// 0 means unlimited.
    pub max_forks: i64,
    /// Jobs of this group running or waiting.
    pub jobs: i64,
    /// Forks of those jobs.
    pub forks: i64,
}

/// A pending job.
#[derive(Debug, Clone)]
pub struct JobView {
    /// Its id.
    pub id: i64,
    /// Its execution impact.
    pub task_impact: i64,
    /// Its forks (for `max_forks`).
    pub forks: i64,
    /// Its instance group.
    pub group: String,
    /// Control-plane work (project updates) runs on the controller itself.
    pub control_only: bool,
    /// The execution node the job asked for, if any (it must still be in the job's group).
    pub only_node: Option<String>,
}

/// What happens to a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// It goes to `execution_node`, controlled by `controller`.
    Placed {
        /// The job.
        job: i64,
        /// The controller.
        controller: String,
        /// The execution node.
        execution_node: String,
    },
    /// It stays pending, for this reason.
    Pending {
        /// The job.
        job: i64,
        /// Why, for people.
        reason: String,
    },
}

/// Places `jobs` (in order) on `nodes` within `groups`.
pub fn place(nodes: &[NodeView], groups: &[GroupView], jobs: &[JobView]) -> Vec<Decision> {
    let mut nodes: Vec<NodeView> = nodes.to_vec();
    let by_name: HashMap<String, usize> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.hostname.clone(), i))
        .collect();
    let mut groups: HashMap<String, GroupView> =
        groups.iter().map(|g| (g.name.clone(), g.clone())).collect();
    let group_members: HashMap<String, Vec<usize>> = groups
        .values()
        .map(|g| {
            let members = g
                .members
                .iter()
                .filter_map(|m| by_name.get(m).copied())
                .collect();
            (g.name.clone(), members)
        })
        .collect();
    let controllers: Vec<usize> = nodes
        .iter()
        .enumerate()
        .filter(|(_, n)| matches!(n.node_type, NodeType::Control | NodeType::Hybrid))
        .map(|(i, _)| i)
        .collect();
    let mut out = Vec::with_capacity(jobs.len());
    for job in jobs {
        let decision = place_one(&mut nodes, &mut groups, &group_members, &controllers, job);
        out.push(decision);
    }
    out
}

fn remaining(n: &NodeView) -> i64 {
    n.capacity - n.consumed
}

fn place_one(
    nodes: &mut [NodeView],
    groups: &mut HashMap<String, GroupView>,
    members: &HashMap<String, Vec<usize>>,
    controllers: &[usize],
    job: &JobView,
) -> Decision {
    let pending = |reason: String| Decision::Pending {
        job: job.id,
        reason,
    };
    // The controller with the most room for the control impact (control work needs its own impact).
    let control_need = if job.control_only {
        job.task_impact
    } else {
        CONTROL_TASK_IMPACT
    };
    let controller = controllers
        .iter()
        .copied()
        .filter(|&i| nodes[i].capacity > 0 && remaining(&nodes[i]) >= control_need)
        .max_by_key(|&i| (remaining(&nodes[i]), std::cmp::Reverse(i)));
    if job.control_only {
        let Some(c) = controller else {
            return pending(format!(
                "no control node has {control_need} capacity left for this control-plane job"
            ));
        };
        nodes[c].consumed += job.task_impact;
        nodes[c].jobs += 1;
        let name = nodes[c].hostname.clone();
        return Decision::Placed {
            job: job.id,
            controller: name.clone(),
            execution_node: name,
        };
    }
    let Some(group) = groups.get(&job.group) else {
        return pending(format!("instance group {:?} does not exist", job.group));
    };
    if group.max_concurrent_jobs > 0 && group.jobs >= group.max_concurrent_jobs {
        return pending(format!(
            "instance group {:?} already runs its max_concurrent_jobs ({})",
            group.name, group.max_concurrent_jobs
        ));
    }
    if group.max_forks > 0 && group.forks + job.forks > group.max_forks {
        return pending(format!(
            "instance group {:?} would exceed its max_forks ({}): {} in use, this job needs {}",
            group.name, group.max_forks, group.forks, job.forks
        ));
    }
    let candidates: Vec<usize> = members
        .get(&job.group)
        .map(|m| {
            m.iter()
                .copied()
                .filter(|&i| nodes[i].node_type.runs_user_jobs() && nodes[i].capacity > 0)
                .filter(|&i| {
                    job.only_node
                        .as_ref()
                        .is_none_or(|n| *n == nodes[i].hostname)
                })
                .collect()
        })
        .unwrap_or_default();
    if let (true, Some(node)) = (candidates.is_empty(), &job.only_node) {
        return pending(format!(
            "the requested node {node} is not a ready, enabled execution or hybrid node of instance group {:?}",
            job.group
        ));
    }
    if candidates.is_empty() {
        return pending(format!(
            "instance group {:?} has no ready, enabled execution or hybrid node",
            job.group
        ));
    }
    // A hybrid that executes also controls: it must fit both impacts.
    let need = |i: usize| {
        job.task_impact
            + if nodes[i].node_type == NodeType::Hybrid {
                CONTROL_TASK_IMPACT
            } else {
                0
            }
    };
    let best_fit = candidates
        .iter()
        .copied()
        .filter(|&i| remaining(&nodes[i]) - need(i) >= 0)
        .max_by_key(|&i| (remaining(&nodes[i]) - need(i), std::cmp::Reverse(i)));
    let chosen = best_fit.or_else(|| {
        candidates
            .iter()
            .copied()
            .filter(|&i| nodes[i].jobs == 0)
            .max_by_key(|&i| (nodes[i].capacity, std::cmp::Reverse(i)))
    });
    let Some(exec) = chosen else {
        let (most, host) = candidates
            .iter()
            .map(|&i| (remaining(&nodes[i]), nodes[i].hostname.as_str()))
            .max()
            .unwrap_or((0, "-"));
        return pending(format!(
            "no instance in group {:?} has {} capacity left (most remaining: {host} with {most}) and none is idle",
            job.group, job.task_impact
        ));
    };
    let controller = if nodes[exec].node_type == NodeType::Hybrid {
        exec
    } else {
        match controller {
            Some(c) => c,
            None => {
                return pending(format!(
                    "no control node has {CONTROL_TASK_IMPACT} capacity left to control this job"
                ));
            }
        }
    };
    nodes[exec].consumed += job.task_impact;
    nodes[exec].jobs += 1;
    nodes[controller].consumed += CONTROL_TASK_IMPACT;
    if controller != exec {
        nodes[controller].jobs += 1;
    }
    if let Some(g) = groups.get_mut(&job.group) {
        g.jobs += 1;
        g.forks += job.forks;
    }
    Decision::Placed {
        job: job.id,
        controller: nodes[controller].hostname.clone(),
        execution_node: nodes[exec].hostname.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(h: &str, t: NodeType, capacity: i64) -> NodeView {
        NodeView {
            hostname: h.into(),
            node_type: t,
            capacity,
            consumed: 0,
            jobs: 0,
        }
    }

    fn group(members: &[&str]) -> GroupView {
        GroupView {
            name: "default".into(),
            members: members.iter().map(|s| s.to_string()).collect(),
            max_concurrent_jobs: 0,
            max_forks: 0,
            jobs: 0,
            forks: 0,
        }
    }

    fn job(id: i64, impact: i64) -> JobView {
        JobView {
            id,
            task_impact: impact,
            forks: 5,
            group: "default".into(),
            control_only: false,
            only_node: None,
        }
    }

    fn placed(d: &Decision) -> (&str, &str) {
        match d {
            Decision::Placed {
                controller,
                execution_node,
                ..
            } => (controller, execution_node),
            Decision::Pending { reason, .. } => panic!("pending: {reason}"),
        }
    }

    #[test]
    fn most_remaining_capacity_wins_and_flips() {
        let nodes = vec![
            node("control", NodeType::Control, 10),
            node("small", NodeType::Execution, 20),
            node("big", NodeType::Execution, 50),
        ];
        let d = place(&nodes, &[group(&["small", "big"])], &[job(1, 6)]);
        assert_eq!(placed(&d[0]), ("control", "big"));
        let mut flipped = nodes.clone();
        flipped[1].capacity = 80;
        let d = place(&flipped, &[group(&["small", "big"])], &[job(1, 6)]);
        assert_eq!(placed(&d[0]).1, "small");
        // Consumption within one run spreads jobs.
        let d = place(
            &nodes,
            &[group(&["small", "big"])],
            &[job(1, 20), job(2, 20), job(3, 6)],
        );
        assert_eq!(placed(&d[0]).1, "big");
        assert_eq!(placed(&d[1]).1, "big");
        assert_eq!(placed(&d[2]).1, "small");
    }

    #[test]
    fn a_job_bigger_than_any_node_runs_on_an_idle_one() {
        let mut nodes = vec![
            node("control", NodeType::Control, 10),
            node("a", NodeType::Execution, 20),
            node("b", NodeType::Execution, 30),
        ];
        nodes[2].jobs = 1;
        nodes[2].consumed = 1;
        let d = place(&nodes, &[group(&["a", "b"])], &[job(1, 100), job(2, 100)]);
        assert_eq!(
            placed(&d[0]).1,
            "a",
            "b is busy; a is the largest idle node"
        );
        match &d[1] {
            Decision::Pending { reason, .. } => assert!(
                reason.contains("100 capacity left") && reason.contains("most remaining"),
                "{reason}"
            ),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn control_only_nodes_never_execute_and_hybrids_control_themselves() {
        let nodes = vec![node("control", NodeType::Control, 100)];
        let d = place(&nodes, &[group(&["control"])], &[job(1, 2)]);
        assert!(
            matches!(&d[0], Decision::Pending { reason, .. } if reason.contains("no ready, enabled execution or hybrid"))
        );
        let nodes = vec![node("hy", NodeType::Hybrid, 100)];
        let d = place(&nodes, &[group(&["hy"])], &[job(1, 2)]);
        assert_eq!(placed(&d[0]), ("hy", "hy"));
        let mut cj = job(2, 1);
        cj.control_only = true;
        let nodes = vec![node("control", NodeType::Control, 3)];
        assert_eq!(
            placed(&place(&nodes, &[], &[cj])[0]),
            ("control", "control")
        );
    }

    #[test]
    fn group_limits_hold() {
        let nodes = vec![
            node("control", NodeType::Control, 100),
            node("e", NodeType::Execution, 100),
        ];
        let mut g = group(&["e"]);
        g.max_concurrent_jobs = 2;
        let d = place(&nodes, &[g.clone()], &[job(1, 2), job(2, 2), job(3, 2)]);
        assert!(
            matches!(&d[2], Decision::Pending { reason, .. } if reason.contains("max_concurrent_jobs (2)"))
        );
        g.max_concurrent_jobs = 0;
        g.max_forks = 12;
        let d = place(&nodes, &[g], &[job(1, 2), job(2, 2), job(3, 2)]);
        assert!(
            matches!(&d[2], Decision::Pending { reason, .. } if reason.contains("max_forks (12)"))
        );
        let d = place(&nodes, &[], &[job(1, 2)]);
        assert!(
            matches!(&d[0], Decision::Pending { reason, .. } if reason.contains("does not exist"))
        );
    }

    #[test]
    fn a_requested_node_is_honoured_or_explained() {
        let nodes = vec![
            node("control", NodeType::Control, 10),
            node("small", NodeType::Execution, 20),
            node("big", NodeType::Execution, 50),
        ];
        let mut j = job(1, 2);
        j.only_node = Some("small".into());
        assert_eq!(
            placed(&place(&nodes, &[group(&["small", "big"])], &[j.clone()])[0]).1,
            "small"
        );
        j.only_node = Some("gone".into());
        let d = place(&nodes, &[group(&["small", "big"])], &[j]);
        assert!(
            matches!(&d[0], Decision::Pending { reason, .. } if reason.contains("requested node gone"))
        );
    }

    #[test]
    fn no_controller_room_keeps_jobs_pending() {
        let mut control = node("control", NodeType::Control, 2);
        control.consumed = 2;
        let nodes = vec![control, node("e", NodeType::Execution, 100)];
        let d = place(&nodes, &[group(&["e"])], &[job(1, 2)]);
        assert!(matches!(&d[0], Decision::Pending { reason, .. } if reason.contains("control")));
    }
}
