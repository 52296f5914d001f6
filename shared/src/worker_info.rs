//! Reads the one-line YAML flow mapping `worker --worker-info` prints (ansible-runner's, or
//! meshrun-agent's superset with `boot_id`, `agent_version`, ...), as a health check receives it.

use yaml_rust2::{Yaml, YamlLoader};

/// What a node reported about itself.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct WorkerInfo {
    /// CPUs jobs may use.
    pub cpu_count: f64,
    /// Bytes of memory jobs may use.
    pub mem_in_bytes: u64,
    /// ansible-runner's version.
    pub runner_version: String,
    /// The node's persistent uuid.
    pub uuid: Option<String>,
    /// Problems the node reports; healthy iff empty.
    pub errors: Vec<String>,
    /// The kernel boot id (meshrun-agent only).
    pub boot_id: Option<String>,
    /// meshrun-agent's version (meshrun-agent only).
    pub agent_version: Option<String>,
}

/// A worker-info answer that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WorkerInfoError {
    /// Not YAML, or not one mapping.
    #[error("worker-info is not a YAML mapping: {0}")]
    NotAMapping(String),
    /// A key that a healthy report must have is missing or has the wrong type.
    #[error("worker failed to return key {0} (or it has the wrong type)")]
    MissingKey(&'static str),
}

fn text(y: &Yaml) -> Option<String> {
    match y {
        Yaml::String(s) => Some(s.clone()),
        // "2.4" would be read as a number; keep the version text.
        Yaml::Real(r) => Some(r.clone()),
        Yaml::Integer(i) => Some(i.to_string()),
        _ => None,
    }
}

/// Parses a worker-info answer. Errors the node reports are returned in the value, not as an
/// `Err`; an `Err` means the answer itself is unusable.
pub fn parse(output: &str) -> Result<WorkerInfo, WorkerInfoError> {
    let docs = YamlLoader::load_from_str(output)
        .map_err(|e| WorkerInfoError::NotAMapping(e.to_string()))?;
    let Some(Yaml::Hash(map)) = docs.first() else {
        let preview: String = output.chars().take(200).collect();
        return Err(WorkerInfoError::NotAMapping(format!("got {preview:?}")));
    };
    let get = |k: &str| map.get(&Yaml::String(k.to_string()));
    let known = ["cpu_count", "mem_in_bytes", "runner_version", "errors"];
    if known.iter().all(|k| get(k).is_none()) {
        let preview: String = output.chars().take(200).collect();
        return Err(WorkerInfoError::NotAMapping(format!(
            "none of cpu_count, mem_in_bytes, runner_version, errors in {preview:?}"
        )));
    }
    let errors: Vec<String> = match get("errors") {
        Some(Yaml::Array(items)) => items
            .iter()
            .map(|i| text(i).unwrap_or_else(|| format!("{i:?}")))
            .collect(),
        Some(Yaml::String(s)) if !s.is_empty() => vec![s.clone()],
        _ => Vec::new(),
    };
    let cpu = match get("cpu_count") {
        Some(Yaml::Integer(i)) => Some(*i as f64),
        Some(Yaml::Real(r)) => r.parse::<f64>().ok(),
        _ => None,
    };
    let mem = match get("mem_in_bytes") {
        Some(Yaml::Integer(i)) => u64::try_from(*i).ok(),
        _ => None,
    };
    let version = get("runner_version").and_then(text);
    let healthy = errors.is_empty();
    let info = WorkerInfo {
        cpu_count: match (cpu, healthy) {
            (Some(c), _) => c,
            (None, true) => return Err(WorkerInfoError::MissingKey("cpu_count")),
            (None, false) => 0.0,
        },
        mem_in_bytes: match (mem, healthy) {
            (Some(m), _) => m,
            (None, true) => return Err(WorkerInfoError::MissingKey("mem_in_bytes")),
            (None, false) => 0,
        },
        runner_version: match (version, healthy) {
            (Some(v), _) => v,
            (None, true) => return Err(WorkerInfoError::MissingKey("runner_version")),
            (None, false) => String::new(),
        },
        uuid: get("uuid").and_then(text),
        errors,
        boot_id: get("boot_id").and_then(text),
        agent_version: get("agent_version").and_then(text),
    };
    Ok(info)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ansible_runners_exact_output() {
        let info = parse("{cpu_count: 2, errors: [], mem_in_bytes: 25276502016, runner_version: 2.4.3, uuid: a5d4c78d-9ee6-4d16-bb5d-cfe1afb6427d}\n\n").unwrap();
        assert_eq!(info.cpu_count, 2.0);
        assert_eq!(info.mem_in_bytes, 25_276_502_016);
        assert_eq!(info.runner_version, "2.4.3");
        assert_eq!(
            info.uuid.as_deref(),
            Some("a5d4c78d-9ee6-4d16-bb5d-cfe1afb6427d")
        );
        assert!(info.errors.is_empty() && info.boot_id.is_none());
    }

    #[test]
    fn meshrun_agents_superset() {
        let info = parse("{agent_version: 0.1.0, boot_id: af4c2fe1-5f86-4545-97c6-f62b291f287b, cpu_count: 1.5, errors: ['podman is missing: x', \"image: y\"], mem_in_bytes: 536870912, mode: podman, reserved_cpus: 0.5, reserved_memory: 0, runner_version: '2.4', uuid: u}\n").unwrap();
        assert_eq!(info.cpu_count, 1.5);
        assert_eq!(info.runner_version, "2.4");
        assert_eq!(info.errors, ["podman is missing: x", "image: y"]);
        assert_eq!(
            info.boot_id.as_deref(),
            Some("af4c2fe1-5f86-4545-97c6-f62b291f287b")
        );
        assert_eq!(info.agent_version.as_deref(), Some("0.1.0"));
    }

    #[test]
    fn unusable_answers_are_errors() {
        assert!(matches!(
            parse("Traceback (most recent call last):"),
            Err(WorkerInfoError::NotAMapping(_))
        ));
        assert!(matches!(
            parse("{a: [}"),
            Err(WorkerInfoError::NotAMapping(_))
        ));
        assert_eq!(
            parse("{cpu_count: 2, errors: [], runner_version: 2.4.3}"),
            Err(WorkerInfoError::MissingKey("mem_in_bytes"))
        );
        // An unhealthy node may leave figures out.
        let sick = parse("{errors: [podman is not usable], uuid: u}").unwrap();
        assert_eq!(sick.errors, ["podman is not usable"]);
        assert_eq!(sick.mem_in_bytes, 0);
    }
}
