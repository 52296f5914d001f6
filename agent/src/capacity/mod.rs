//! The node's capacity report, `meshrun-agent worker --worker-info`: what receptor runs as
//! the health check. It answers like `ansible-runner worker --worker-info` (same keys, same
//! one-line YAML), but truthfully for where jobs really run: CPUs and memory are cut to the
//! cgroup's limits and the configured reservation, the runner version is the one jobs get
//! (inside the default image in podman mode), and anything that would stop a job — podman
//! unusable, image missing, directories unwritable or full, reservations larger than the node
//! — is an entry in `errors`. Slow probes are cached in the state dir, so a warm call runs no
//! external command.
//!
//! # Layout
//! - [`cgroup`]: which cgroup, its directories, the limits along its path.
//! - [`resources`]: machine totals (sysinfo), limits and reservation arithmetic.
//! - [`identity`]: the persistent node uuid and the boot id.
//! - [`disk`]: writable directories with enough free space.
//! - [`runtime_probes`]: ansible-runner / podman / default image, through [`probe_cache`].
//! - [`command`]: running a probe command with a deadline.
//! - [`report`] and [`flow_yaml`]: the report and its YAML line.

pub mod cgroup;
pub mod command;
pub mod disk;
pub mod flow_yaml;
pub mod identity;
pub mod probe_cache;
pub mod report;
pub mod resources;
pub mod runtime_probes;

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::settings::{AgentSettings, WorkerMode};
use crate::worker::unit::ids_from_stdin_path;
use probe_cache::ProbeCache;
pub use report::WorkerInfo;

/// The worker-info text to print on stdout, exactly (a YAML line and an empty line). Never
/// fails and writes nothing to stderr: every problem is an entry in its `errors`.
pub fn worker_info(settings: &AgentSettings) -> String {
    collect(settings, SystemTime::now()).render()
}

/// Measures and probes everything; `now` is the clock the probe cache judges ages by.
pub fn collect(settings: &AgentSettings, now: SystemTime) -> WorkerInfo {
    let mut errors = Vec::new();
    let cap = &settings.capacity;

    let (hierarchies, cgroup_error) = cgroup::locate(cap.cgroup.as_deref());
    errors.extend(cgroup_error.map(|e| e.to_string()));
    let limits = hierarchies.limits(&|p: &Path| std::fs::read_to_string(p).ok());
    let totals = resources::machine_totals();
    let available = resources::available(totals, limits, cap.reserved_cpus, cap.reserved_memory.0);
    errors.extend(available.problems.iter().map(ToString::to_string));
    tracing::info!(?totals, ?limits, cpus = available.cpus, mem = ?available.mem_bytes, "capacity measured");

    let uuid = match identity::ensure_uuid(&settings.state_dir) {
        Ok(u) => {
            if let Some(old) = &u.replaced {
                errors.push(format!(
                    "the node uuid file {} held {old:?}, not a uuid; it now holds the new uuid {}",
                    settings.state_dir.join("uuid").display(),
                    u.uuid
                ));
            }
            Some(u.uuid)
        }
        Err(e) => {
            errors.push(e.to_string());
            None
        }
    };
    let boot_id = identity::read_boot_id(&settings.capacity.boot_id_file)
        .map_err(|e| errors.push(e))
        .ok();

    let min_free = cap.min_free_disk.0;
    errors.extend(
        disk::check_dir("state dir", &settings.state_dir, min_free)
            .iter()
            .map(ToString::to_string),
    );
    if let Some(data_dir) = receptor_data_dir(settings) {
        errors.extend(
            disk::check_dir("receptor data dir", &data_dir, min_free)
                .iter()
                .map(ToString::to_string),
        );
    }

    let cache = ProbeCache::new(&settings.state_dir);
    let runtime = match settings.worker.mode {
        WorkerMode::Host => runtime_probes::host(settings, &cache, now),
        WorkerMode::Podman => runtime_probes::podman(settings, &cache, now),
    };
    errors.extend(runtime.errors);

    if !errors.is_empty() {
        tracing::warn!(?errors, "worker info reports errors");
    }
    WorkerInfo {
        agent_version: env!("CARGO_PKG_VERSION").to_string(),
        boot_id,
        cpu_count: available.cpus,
        errors,
        mem_in_bytes: available.mem_bytes,
        mode: settings.worker.mode,
        reserved_cpus: cap.reserved_cpus,
        reserved_memory: cap.reserved_memory.0,
        runner_version: runtime.runner_version,
        uuid,
    }
}

/// receptor's data dir, which holds every unit's output: known for sure when stdin is a
/// unit's `<datadir>/<node>/<unit>/stdin` (receptor ran us), else `receptor.data_dir` if it
/// exists (a manual run on a node without receptor has none to check).
fn receptor_data_dir(settings: &AgentSettings) -> Option<PathBuf> {
    let stdin = std::fs::read_link("/proc/self/fd/0").ok();
    if let Some(stdin) = stdin
        && ids_from_stdin_path(&stdin).is_some()
    {
        return stdin.ancestors().nth(3).map(Path::to_path_buf);
    }
    let configured = &settings.receptor.data_dir;
    configured.is_dir().then(|| configured.clone())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;
    use crate::byte_size::ByteSize;

    fn host_settings(dir: &Path) -> AgentSettings {
        let runner = dir.join("ansible-runner");
        std::fs::write(&runner, "#!/bin/sh\necho 2.4.3\n").unwrap();
        std::fs::set_permissions(&runner, std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut s = AgentSettings {
            state_dir: dir.join("state"),
            ..AgentSettings::default()
        };
        s.worker.mode = WorkerMode::Host;
        s.worker.ansible_runner = runner;
        s.receptor.data_dir = dir.join("no-receptor-here");
        s.capacity.min_free_disk = ByteSize(1);
        s
    }

    #[test]
    fn a_healthy_host_node_reports_no_errors_and_a_stable_uuid() {
        let dir = tempfile::tempdir().unwrap();
        let s = host_settings(dir.path());
        let first = collect(&s, SystemTime::now());
        assert_eq!(first.errors, Vec::<String>::new());
        assert_eq!(first.runner_version.as_deref(), Some("2.4.3"));
        assert!(first.cpu_count >= 1.0 && first.mem_in_bytes.unwrap() > 0);
        assert!(first.boot_id.is_some());
        let second = collect(&s, SystemTime::now());
        assert_eq!(first.uuid, second.uuid);
        assert!(first.uuid.is_some());
    }

    #[test]
    fn reservations_lower_the_report_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = host_settings(dir.path());
        let base = collect(&s, SystemTime::now());
        s.capacity.reserved_cpus = 0.5;
        s.capacity.reserved_memory = ByteSize(1 << 30);
        let reserved = collect(&s, SystemTime::now());
        assert_eq!(reserved.cpu_count, base.cpu_count - 0.5);
        assert_eq!(
            reserved.mem_in_bytes,
            base.mem_in_bytes.map(|m| m - (1 << 30))
        );
        s.capacity.reserved_cpus = 4096.0;
        let starved = collect(&s, SystemTime::now());
        assert_eq!(starved.cpu_count, 0.0);
        assert!(
            starved.errors.iter().any(|e| e.contains("leaves no CPU")),
            "{:?}",
            starved.errors
        );
    }

    #[test]
    fn an_unusable_state_dir_and_missing_configured_cgroup_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = host_settings(dir.path());
        let file = dir.path().join("file");
        std::fs::write(&file, "").unwrap();
        s.state_dir = file.join("state");
        s.capacity.cgroup = Some(PathBuf::from("/meshrun-no-such-cgroup-for-tests"));
        let info = collect(&s, SystemTime::now());
        assert_eq!(info.uuid, None);
        let all = info.errors.join("\n");
        assert!(all.contains("cannot keep the node uuid in"), "{all}");
        assert!(
            all.contains("state dir") && all.contains("is not writable"),
            "{all}"
        );
        assert!(
            all.contains("capacity.cgroup /meshrun-no-such-cgroup-for-tests does not exist"),
            "{all}"
        );
        // Still a report AWX can read.
        assert!(info.render().starts_with("{agent_version: "));
    }
}
