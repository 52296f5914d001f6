//! CPU and memory jobs may use: the machine's totals (from sysinfo), cut down to the
//! cgroup's limits, minus the node's configured reservation.

use sysinfo::{CpuRefreshKind, MemoryRefreshKind, System};

use super::cgroup::Limits;

/// What the machine has, before any cgroup limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MachineTotals {
    /// Online logical CPUs (what ansible-runner's `cpu_count` counts).
    pub logical_cpus: usize,
    /// `MemTotal` in bytes (what ansible-runner's `mem_in_bytes` counts).
    pub mem_total: u64,
}

/// What is left for jobs.
#[derive(Debug, Clone, PartialEq)]
pub struct Available {
    /// CPUs, possibly fractional (a CFS quota of 1.5 CPUs, a reservation of 0.5).
    pub cpus: f64,
    /// Bytes of memory; `None` when the machine's memory could not be read.
    pub mem_bytes: Option<u64>,
    /// Why the numbers cannot be trusted or leave nothing for jobs.
    pub problems: Vec<Shortfall>,
}

/// A reason the node cannot offer what it reports.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Shortfall {
    /// sysinfo found no CPUs.
    #[error("cannot count this node's CPUs (/proc/stat lists none)")]
    NoCpus,
    /// sysinfo found no memory.
    #[error("cannot read this node's memory size (MemTotal in /proc/meminfo)")]
    NoMemory,
    /// The CPU reservation is at least what there is.
    #[error(
        "capacity.reserved_cpus = {reserved} leaves no CPU for jobs: only {available} CPUs are available to them{cgroup_note}"
    )]
    CpusReserved {
        /// The reservation.
        reserved: f64,
        /// CPUs before the reservation.
        available: f64,
        /// Names the cgroup limit when one applied.
        cgroup_note: &'static str,
    },
    /// The memory reservation is at least what there is.
    #[error(
        "capacity.reserved_memory = {reserved} bytes leaves no memory for jobs: only {available} bytes are available to them{cgroup_note}"
    )]
    MemoryReserved {
        /// The reservation.
        reserved: u64,
        /// Bytes before the reservation.
        available: u64,
        /// Names the cgroup limit when one applied.
        cgroup_note: &'static str,
    },
}

const CGROUP_NOTE: &str = " (limited by the cgroup)";

/// Reads the machine's totals; zeros mean sysinfo could not read them.
pub fn machine_totals() -> MachineTotals {
    let mut sys = System::new();
    sys.refresh_cpu_list(CpuRefreshKind::nothing());
    sys.refresh_memory_specifics(MemoryRefreshKind::nothing().with_ram());
    MachineTotals {
        logical_cpus: sys.cpus().len(),
        mem_total: sys.total_memory(),
    }
}

/// Applies the cgroup limits and the reservation. Results never go below zero; a
/// reservation that leaves nothing is a [`Shortfall`].
pub fn available(
    totals: MachineTotals,
    limits: Limits,
    reserved_cpus: f64,
    reserved_memory: u64,
) -> Available {
    let mut problems = Vec::new();

    let mut cpus = totals.logical_cpus as f64;
    let mut cpu_limited = false;
    if let Some(n) = limits.cpuset_cpus
        && (n as f64) < cpus
    {
        cpus = n as f64;
        cpu_limited = true;
    }
    if let Some(q) = limits.cpu_quota
        && q < cpus
    {
        cpus = q;
        cpu_limited = true;
    }
    if totals.logical_cpus == 0 {
        problems.push(Shortfall::NoCpus);
    } else if reserved_cpus > 0.0 && reserved_cpus >= cpus {
        problems.push(Shortfall::CpusReserved {
            reserved: reserved_cpus,
            available: cpus,
            cgroup_note: if cpu_limited { CGROUP_NOTE } else { "" },
        });
    }
    let cpus = (cpus - reserved_cpus).max(0.0);

    let mem_bytes = if totals.mem_total == 0 {
        problems.push(Shortfall::NoMemory);
        None
    } else {
        let (mem, limited) = match limits.memory {
            Some(limit) if limit < totals.mem_total => (limit, true),
            _ => (totals.mem_total, false),
        };
        if reserved_memory > 0 && reserved_memory >= mem {
            problems.push(Shortfall::MemoryReserved {
                reserved: reserved_memory,
                available: mem,
                cgroup_note: if limited { CGROUP_NOTE } else { "" },
            });
        }
        Some(mem.saturating_sub(reserved_memory))
    };

    Available {
        cpus,
        mem_bytes,
        problems,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NODE: MachineTotals = MachineTotals {
        logical_cpus: 8,
        mem_total: 16 << 30,
    };

    #[test]
    fn no_limits_no_reservation_is_the_machine() {
        let a = available(NODE, Limits::default(), 0.0, 0);
        assert_eq!(a.cpus, 8.0);
        assert_eq!(a.mem_bytes, Some(16 << 30));
        assert!(a.problems.is_empty());
    }

    #[test]
    fn the_narrowest_cpu_limit_applies_then_the_reservation() {
        let quota = Limits {
            cpu_quota: Some(2.5),
            cpuset_cpus: Some(4),
            memory: None,
        };
        assert_eq!(available(NODE, quota, 0.5, 0).cpus, 2.0);
        let cpuset = Limits {
            cpu_quota: Some(6.0),
            cpuset_cpus: Some(3),
            memory: None,
        };
        assert_eq!(available(NODE, cpuset, 1.0, 0).cpus, 2.0);
        let above_machine = Limits {
            cpu_quota: Some(64.0),
            cpuset_cpus: None,
            memory: Some(1 << 40),
        };
        let a = available(NODE, above_machine, 0.0, 0);
        assert_eq!((a.cpus, a.mem_bytes), (8.0, Some(16 << 30)));
    }

    #[test]
    fn memory_is_the_cgroup_limit_minus_the_reservation() {
        let limits = Limits {
            memory: Some(512 << 20),
            ..Limits::default()
        };
        let a = available(NODE, limits, 0.0, 256 << 20);
        assert_eq!(a.mem_bytes, Some(256 << 20));
        assert!(a.problems.is_empty());
    }

    #[test]
    fn reservations_that_eat_everything_are_errors_and_clamp_to_zero() {
        let limits = Limits {
            cpu_quota: Some(1.0),
            cpuset_cpus: None,
            memory: Some(1 << 30),
        };
        let a = available(NODE, limits, 1.0, 2 << 30);
        assert_eq!(a.cpus, 0.0);
        assert_eq!(a.mem_bytes, Some(0));
        assert_eq!(a.problems.len(), 2);
        let text: Vec<String> = a.problems.iter().map(ToString::to_string).collect();
        assert!(
            text[0].contains("reserved_cpus = 1 leaves no CPU"),
            "{}",
            text[0]
        );
        assert!(text[0].ends_with("(limited by the cgroup)"), "{}", text[0]);
        assert!(
            text[1].contains("reserved_memory = 2147483648 bytes"),
            "{}",
            text[1]
        );
        let a = available(NODE, Limits::default(), 9.5, 0);
        assert_eq!(a.cpus, 0.0);
        assert!(!a.problems[0].to_string().contains("cgroup"));
    }

    #[test]
    fn unreadable_totals_are_reported() {
        let a = available(
            MachineTotals {
                logical_cpus: 0,
                mem_total: 0,
            },
            Limits::default(),
            0.0,
            0,
        );
        assert_eq!(a.mem_bytes, None);
        assert_eq!(a.problems, vec![Shortfall::NoCpus, Shortfall::NoMemory]);
    }
}
