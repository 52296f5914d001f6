//! The worker-info report and its one-line rendering, a superset of `ansible-runner worker
//! --worker-info`: the same five keys with the same meaning and format (AWX maps
//! `runner_version`, `cpu_count`, `mem_in_bytes`, `uuid` and `errors` onto the instance),
//! plus the agent's own keys, all in one sorted YAML flow mapping followed by an empty line.

use super::flow_yaml::{Value, render_mapping};
use crate::settings::WorkerMode;

/// What `meshrun-agent worker --worker-info` reports.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerInfo {
    /// meshrun-agent's version.
    pub agent_version: String,
    /// The kernel's boot id; changes on reboot.
    pub boot_id: Option<String>,
    /// CPUs jobs may use: logical CPUs, cut to the cgroup quota/cpuset, minus the
    /// reservation. Written as an integer when whole (as ansible-runner does), else with up
    /// to three decimals, rounded down.
    pub cpu_count: f64,
    /// Everything that stops jobs from running here; the node is healthy iff empty.
    pub errors: Vec<String>,
    /// Bytes of memory jobs may use: MemTotal, cut to the cgroup limit, minus the reservation.
    pub mem_in_bytes: Option<u64>,
    /// How jobs run.
    pub mode: WorkerMode,
    /// `capacity.reserved_cpus`, already subtracted from `cpu_count`.
    pub reserved_cpus: f64,
    /// `capacity.reserved_memory` in bytes, already subtracted from `mem_in_bytes`.
    pub reserved_memory: u64,
    /// The ansible-runner version jobs run with.
    pub runner_version: Option<String>,
    /// The node's persistent uuid.
    pub uuid: Option<String>,
}

fn opt_str(s: &Option<String>) -> Value {
    s.as_ref().map_or(Value::Null, |s| Value::Str(s.clone()))
}

impl WorkerInfo {
    /// The exact text to print: the mapping, a newline, and an empty line.
    pub fn render(&self) -> String {
        let mode = match self.mode {
            WorkerMode::Podman => "podman",
            WorkerMode::Host => "host",
        };
        let line = render_mapping(&[
            ("agent_version", Value::Str(self.agent_version.clone())),
            ("boot_id", opt_str(&self.boot_id)),
            ("cpu_count", Value::Decimal(self.cpu_count)),
            ("errors", Value::StrList(self.errors.clone())),
            (
                "mem_in_bytes",
                self.mem_in_bytes.map_or(Value::Null, Value::Int),
            ),
            ("mode", Value::Str(mode.to_string())),
            ("reserved_cpus", Value::Decimal(self.reserved_cpus)),
            ("reserved_memory", Value::Int(self.reserved_memory)),
            ("runner_version", opt_str(&self.runner_version)),
            ("uuid", opt_str(&self.uuid)),
        ]);
        format!("{line}\n\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> WorkerInfo {
        WorkerInfo {
            agent_version: "0.1.0".into(),
            boot_id: Some("af4c2fe1-5f86-4545-97c6-f62b291f287b".into()),
            cpu_count: 2.0,
            errors: vec![],
            mem_in_bytes: Some(25276502016),
            mode: WorkerMode::Host,
            reserved_cpus: 0.0,
            reserved_memory: 0,
            runner_version: Some("2.4.3".into()),
            uuid: Some("a5d4c78d-9ee6-4d16-bb5d-cfe1afb6427d".into()),
        }
    }

    #[test]
    fn healthy_report_renders_exactly() {
        assert_eq!(
            sample().render(),
            "{agent_version: 0.1.0, boot_id: af4c2fe1-5f86-4545-97c6-f62b291f287b, cpu_count: 2, \
             errors: [], mem_in_bytes: 25276502016, mode: host, reserved_cpus: 0, \
             reserved_memory: 0, runner_version: 2.4.3, uuid: a5d4c78d-9ee6-4d16-bb5d-cfe1afb6427d}\n\n"
        );
    }

    #[test]
    fn unhealthy_report_renders_nulls_fractions_and_quoted_errors() {
        let info = WorkerInfo {
            boot_id: None,
            cpu_count: 1.5,
            errors: vec![
                "podman /usr/bin/podman is not usable: `podman info` failed".into(),
                "ansible-runner version unknown: podman is not usable".into(),
            ],
            mem_in_bytes: None,
            mode: WorkerMode::Podman,
            reserved_cpus: 0.5,
            reserved_memory: 1 << 30,
            runner_version: None,
            uuid: None,
            ..sample()
        };
        assert_eq!(
            info.render(),
            "{agent_version: 0.1.0, boot_id: null, cpu_count: 1.5, errors: ['podman /usr/bin/podman \
             is not usable: `podman info` failed', 'ansible-runner version unknown: podman is not \
             usable'], mem_in_bytes: null, mode: podman, reserved_cpus: 0.5, reserved_memory: \
             1073741824, runner_version: null, uuid: null}\n\n"
        );
    }
}
