//! The kwargs object of a controller→worker stream, typed.
//!
//! The worker passes these keys straight to `ansible_runner.interface.run(**kwargs)`, which
//! hands them to `RunnerConfig`; an unknown key makes the worker fail with a Python `TypeError`.
//! The field names below are therefore exactly parameters of ansible-runner 2.4.3's
//! `RunnerConfig`/`BaseConfig`. Paths follow the streaming conventions: `playbook` is relative to
//! `<private data dir>/project`, `inventory` relative to the private data dir (the worker
//! prefixes it with its own dir).

use std::collections::BTreeMap;

use serde::{Serialize, Serializer};
use serde_json::{Map, Value};

/// Run parameters for one job. Absent (`None`) fields are not sent, so ansible-runner's
/// defaults apply.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunnerKwargs {
    /// Run identifier; names the artifacts directory on the worker, so it must be a plain file
    /// name (no `/`).
    pub ident: String,
    /// Playbook path relative to `project/`.
    pub playbook: Option<String>,
    /// Inventory path relative to the private data dir.
    pub inventory: Option<String>,
    /// `--limit` pattern.
    pub limit: Option<String>,
    /// `--forks`.
    pub forks: Option<u32>,
    /// Number of `-v`.
    pub verbosity: Option<u8>,
    /// Extra variables (`-e`).
    pub extravars: Option<Map<String, Value>>,
    /// Environment of the job. With `suppress_env_files` these travel only in the stream.
    pub envvars: Option<BTreeMap<String, String>>,
    /// Prompt regex → answer, for pexpect.
    pub passwords: Option<BTreeMap<String, String>>,
    /// ansible-runner settings (what `env/settings` would hold).
    pub settings: Option<Map<String, Value>>,
    /// Private key handed to ssh-agent.
    pub ssh_key: Option<String>,
    /// Extra command-line options for ansible.
    pub cmdline: Option<String>,
    /// `--tags`.
    pub tags: Option<String>,
    /// `--skip-tags`.
    pub skip_tags: Option<String>,
    /// Ad-hoc module name.
    pub module: Option<String>,
    /// Ad-hoc module arguments.
    pub module_args: Option<String>,
    /// Ad-hoc host pattern.
    pub host_pattern: Option<String>,
    /// Alternative ansible executable.
    pub binary: Option<String>,
    /// Do not write envvars/passwords/ssh_key into `env/` on the worker.
    pub suppress_env_files: Option<bool>,
    /// Job timeout in seconds.
    pub timeout: Option<u64>,
    /// `jsonfile` or empty.
    pub fact_cache_type: Option<String>,
    /// Fact cache sub-directory name inside the artifacts dir.
    pub fact_cache: Option<String>,
    /// Keep at most this many artifact dirs on the worker (0 = no rotation).
    pub rotate_artifacts: Option<u32>,
    /// Store event data instead of stdout on the console.
    pub json_mode: Option<bool>,
    /// Leave `event_data` out of events.
    pub omit_event_data: Option<bool>,
    /// Keep `event_data` only for failed events.
    pub only_failed_event_data: Option<bool>,
    /// Run inside a container.
    pub process_isolation: Option<bool>,
    /// Container engine (`podman`).
    pub process_isolation_executable: Option<String>,
    /// Execution environment image.
    pub container_image: Option<String>,
    /// Extra options for the container engine's `run`.
    pub container_options: Option<Vec<String>>,
    /// `src:dst[:opts]` bind mounts.
    pub container_volume_mounts: Option<Vec<String>>,
    /// Registry credentials (`host`, `username`, `password`, `verify_ssl`).
    pub container_auth_data: Option<Map<String, Value>>,
    /// Working directory inside the container.
    pub container_workdir: Option<String>,
    /// Any other keys; typed fields win over an extra key of the same name.
    pub extra: Map<String, Value>,
}

/// Inserts every `Some` field, converting with `Value::from`.
macro_rules! put_all {
    ($map:ident, $kw:ident, $($field:ident),* $(,)?) => {
        $( if let Some(value) = &$kw.$field {
            $map.insert(stringify!($field).to_owned(), Value::from(value.clone()));
        } )*
    };
}

impl RunnerKwargs {
    /// Kwargs with only `ident` set.
    pub fn new(ident: impl Into<String>) -> Self {
        Self {
            ident: ident.into(),
            ..Self::default()
        }
    }

    /// The JSON object sent as `{"kwargs": ...}`.
    pub fn to_map(&self) -> Map<String, Value> {
        let mut map = self.extra.clone();
        map.insert("ident".to_owned(), Value::from(self.ident.clone()));
        put_all!(
            map,
            self,
            playbook,
            inventory,
            limit,
            forks,
            verbosity,
            extravars,
            settings,
            ssh_key,
            cmdline,
            tags,
            skip_tags,
            module,
            module_args,
            host_pattern,
            binary,
            suppress_env_files,
            timeout,
            fact_cache_type,
            fact_cache,
            rotate_artifacts,
            json_mode,
            omit_event_data,
            only_failed_event_data,
            process_isolation,
            process_isolation_executable,
            container_image,
            container_options,
            container_volume_mounts,
            container_auth_data,
            container_workdir,
        );
        for (key, strings) in [("envvars", &self.envvars), ("passwords", &self.passwords)] {
            if let Some(strings) = strings {
                let object = strings
                    .iter()
                    .map(|(k, v)| (k.clone(), Value::from(v.clone())));
                map.insert(key.to_owned(), Value::Object(object.collect()));
            }
        }
        map
    }
}

impl Serialize for RunnerKwargs {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.to_map().serialize(serializer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Parameter names of ansible-runner 2.4.3 `RunnerConfig.__init__` and `BaseConfig.__init__`
    /// (the only names `interface.run` accepts besides the callbacks it pops).
    const ACCEPTED: &[&str] = &[
        "private_data_dir",
        "playbook",
        "inventory",
        "roles_path",
        "limit",
        "module",
        "module_args",
        "verbosity",
        "host_pattern",
        "binary",
        "extravars",
        "suppress_output_file",
        "suppress_ansible_output",
        "process_isolation_path",
        "process_isolation_hide_paths",
        "process_isolation_show_paths",
        "process_isolation_ro_paths",
        "tags",
        "skip_tags",
        "directory_isolation_base_path",
        "forks",
        "cmdline",
        "omit_event_data",
        "only_failed_event_data",
        "host_cwd",
        "envvars",
        "passwords",
        "settings",
        "project_dir",
        "artifact_dir",
        "fact_cache_type",
        "fact_cache",
        "process_isolation",
        "process_isolation_executable",
        "container_image",
        "container_volume_mounts",
        "container_options",
        "container_workdir",
        "container_auth_data",
        "ident",
        "rotate_artifacts",
        "timeout",
        "ssh_key",
        "quiet",
        "json_mode",
        "check_job_event_data",
        "suppress_env_files",
        "keepalive_seconds",
    ];

    fn full() -> RunnerKwargs {
        RunnerKwargs {
            ident: "42".into(),
            playbook: Some("site.yml".into()),
            inventory: Some("inventory/hosts".into()),
            limit: Some("web".into()),
            forks: Some(5),
            verbosity: Some(2),
            extravars: Some(Map::from_iter([("x".to_owned(), json!(1))])),
            envvars: Some(BTreeMap::from([("A".to_owned(), "b".to_owned())])),
            passwords: Some(BTreeMap::from([("^pw:".to_owned(), "s".to_owned())])),
            settings: Some(Map::from_iter([("job_timeout".to_owned(), json!(5))])),
            ssh_key: Some("KEY".into()),
            cmdline: Some("--diff".into()),
            tags: Some("t".into()),
            skip_tags: Some("s".into()),
            module: Some("ping".into()),
            module_args: Some("".into()),
            host_pattern: Some("all".into()),
            binary: Some("ansible-playbook".into()),
            suppress_env_files: Some(true),
            timeout: Some(60),
            fact_cache_type: Some("jsonfile".into()),
            fact_cache: Some("fact_cache".into()),
            rotate_artifacts: Some(0),
            json_mode: Some(false),
            omit_event_data: Some(false),
            only_failed_event_data: Some(false),
            process_isolation: Some(true),
            process_isolation_executable: Some("podman".into()),
            container_image: Some("quay.io/ansible/awx-ee".into()),
            container_options: Some(vec!["--user=root".into()]),
            container_volume_mounts: Some(vec!["/a:/b:z".into()]),
            container_auth_data: Some(Map::new()),
            container_workdir: Some("/runner".into()),
            extra: Map::new(),
        }
    }

    #[test]
    fn every_field_name_is_accepted_by_runner() {
        let map = full().to_map();
        assert_eq!(map.len(), 33, "a field is missing from to_map");
        for key in map.keys() {
            assert!(
                ACCEPTED.contains(&key.as_str()),
                "`{key}` is not a RunnerConfig parameter"
            );
        }
    }

    #[test]
    fn absent_fields_are_skipped() {
        let kw = RunnerKwargs {
            playbook: Some("p.yml".into()),
            forks: Some(3),
            ..RunnerKwargs::new("abc")
        };
        assert_eq!(
            Value::Object(kw.to_map()),
            json!({"ident": "abc", "playbook": "p.yml", "forks": 3})
        );
    }

    #[test]
    fn typed_values_and_string_maps_serialize_as_json() {
        let value = serde_json::to_value(full()).unwrap();
        assert_eq!(value["envvars"], json!({"A": "b"}));
        assert_eq!(value["passwords"], json!({"^pw:": "s"}));
        assert_eq!(value["container_options"], json!(["--user=root"]));
        assert_eq!(value["verbosity"], json!(2));
        assert_eq!(value["suppress_env_files"], json!(true));
    }

    #[test]
    fn typed_fields_override_extra_keys() {
        let mut kw = RunnerKwargs::new("real");
        kw.limit = Some("typed".into());
        kw.extra.insert("ident".into(), json!("fake"));
        kw.extra.insert("limit".into(), json!("extra"));
        kw.extra.insert("roles_path".into(), json!(["roles"]));
        let map = kw.to_map();
        assert_eq!(map["ident"], json!("real"));
        assert_eq!(map["limit"], json!("typed"));
        assert_eq!(map["roles_path"], json!(["roles"]));
    }
}
