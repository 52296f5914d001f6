//! AWX's capacity arithmetic, so meshrun's numbers mean what AWX users expect.
//!
//! `cpu_capacity = max(1, int(cpu × 4))`; `mem_capacity = max(1, ((mem − 2 GiB) // MiB) // 100)`;
//! `capacity = min + (max − min) × capacity_adjustment`, truncated; hop and disabled nodes have
//! capacity 0. A job's `task_impact = min(hosts, forks or 5) + 1`, with forks standing in for
//! hosts when the host count is unknown. A job also costs its controller 1.

use crate::node_type::NodeType;

/// Forks per CPU (AWX `SYSTEM_TASK_FORKS_CPU`).
pub const FORKS_PER_CPU: f64 = 4.0;
/// MiB of memory per fork (AWX `SYSTEM_TASK_FORKS_MEM`).
pub const MIB_PER_FORK: i64 = 100;
/// Memory AWX keeps back for the system before counting forks.
pub const MEM_PENALTY_BYTES: i64 = 2 << 30;
/// What one controlled job costs its controller (AWX `AWX_CONTROL_NODE_TASK_IMPACT`).
pub const CONTROL_TASK_IMPACT: i64 = 1;
/// Forks when a job gives none (AWX's default of 5).
pub const DEFAULT_FORKS: i64 = 5;

/// An instance's capacity figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct Capacity {
    /// Forks the CPUs allow.
    pub cpu_capacity: i64,
    /// Forks the memory allows.
    pub mem_capacity: i64,
    /// What the scheduler may use.
    pub capacity: i64,
}

/// `max(1, int(cpu × 4))`.
pub fn cpu_capacity(cpu: f64) -> i64 {
    if !cpu.is_finite() || cpu <= 0.0 {
        return 1;
    }
    ((cpu * FORKS_PER_CPU) as i64).max(1)
}

/// `max(1, ((mem − 2 GiB) // MiB) // 100)`, with Python's floor division.
pub fn mem_capacity(mem_bytes: u64) -> i64 {
    let mem = i64::try_from(mem_bytes).unwrap_or(i64::MAX);
    let mib = (mem - MEM_PENALTY_BYTES).div_euclid(1 << 20);
    mib.div_euclid(MIB_PER_FORK).max(1)
}

/// The capacity of an instance of `node_type` with `cpu` CPUs and `mem_bytes` of memory.
/// `adjustment` (0.0 to 1.0) slides between the smaller and the larger of the two.
pub fn instance_capacity(
    node_type: NodeType,
    enabled: bool,
    cpu: f64,
    mem_bytes: u64,
    adjustment: f64,
) -> Capacity {
    if node_type == NodeType::Hop {
        return Capacity::default();
    }
    let cpu_capacity = cpu_capacity(cpu);
    let mem_capacity = mem_capacity(mem_bytes);
    let (lower, higher) = (
        cpu_capacity.min(mem_capacity),
        cpu_capacity.max(mem_capacity),
    );
    let adjustment = if adjustment.is_finite() {
        adjustment.clamp(0.0, 1.0)
    } else {
        1.0
    };
    let capacity = if enabled {
        lower + ((higher - lower) as f64 * adjustment) as i64
    } else {
        0
    };
    Capacity {
        cpu_capacity,
        mem_capacity,
        capacity,
    }
}

/// A job's impact on its execution node: `min(hosts, forks) + 1`, forks defaulting to 5 (also
/// for 0) and standing in for hosts when the count is unknown.
pub fn task_impact(hosts: Option<i64>, forks: Option<i64>) -> i64 {
    let forks = forks.filter(|f| *f > 0).unwrap_or(DEFAULT_FORKS);
    let hosts = hosts.filter(|h| *h >= 0).unwrap_or(forks);
    hosts.min(forks) + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;

    #[test]
    fn awx_worked_example() {
        // 8 CPUs, 16 GiB: cpu 32, mem (16384 - 2048) // 100 = 143.
        let c = instance_capacity(NodeType::Execution, true, 8.0, 16 * GIB, 1.0);
        assert_eq!(
            c,
            Capacity {
                cpu_capacity: 32,
                mem_capacity: 143,
                capacity: 143
            }
        );
        assert_eq!(
            instance_capacity(NodeType::Execution, true, 8.0, 16 * GIB, 0.0).capacity,
            32
        );
        assert_eq!(
            instance_capacity(NodeType::Execution, true, 8.0, 16 * GIB, 0.5).capacity,
            87
        );
    }

    #[test]
    fn small_hop_and_disabled_nodes() {
        assert_eq!(mem_capacity(GIB), 1, "below the penalty floors at 1");
        assert_eq!(mem_capacity(0), 1);
        assert_eq!(cpu_capacity(0.1), 1);
        assert_eq!(cpu_capacity(1.5), 6);
        assert_eq!(
            instance_capacity(NodeType::Hop, true, 8.0, 16 * GIB, 1.0),
            Capacity::default()
        );
        let off = instance_capacity(NodeType::Execution, false, 8.0, 16 * GIB, 1.0);
        assert_eq!((off.cpu_capacity, off.capacity), (32, 0));
        // This machine's worker-info: 2 CPUs, 25276502016 bytes.
        let here = instance_capacity(NodeType::Execution, true, 2.0, 25_276_502_016, 1.0);
        assert_eq!(
            (here.cpu_capacity, here.mem_capacity, here.capacity),
            (8, 220, 220)
        );
    }

    #[test]
    fn task_impact_like_awx() {
        assert_eq!(task_impact(Some(1), None), 2);
        assert_eq!(task_impact(Some(100), Some(10)), 11);
        assert_eq!(task_impact(Some(3), Some(10)), 4);
        assert_eq!(task_impact(None, None), 6);
        assert_eq!(task_impact(None, Some(0)), 6);
        assert_eq!(task_impact(None, Some(20)), 21);
    }
}
