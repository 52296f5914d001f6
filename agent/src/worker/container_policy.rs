//! Decides what a job may ask of its container. AWX sends `container_options` (podman flags) and
//! `container_volume_mounts` (`src:dst[:opts]`) in the job's kwargs; the node's config says what
//! is allowed. Flags are taken only from an allow-list; `--network` and `--pull` are mapped to
//! the node's policy; privileges, host namespaces, devices and mounts outside the allowed roots
//! are refused with a message naming the option.

use std::path::{Component, Path, PathBuf};

use crate::settings::{PodmanSettings, PullPolicy};

/// What the job's container gets, after policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerPlan {
    /// `--network` value.
    pub network: String,
    /// `--pull` value.
    pub pull: &'static str,
    /// Other allowed flags, each as one `--flag=value` argument.
    pub flags: Vec<String>,
    /// `-v` values (`src:dst[:opts]`).
    pub mounts: Vec<String>,
    /// Notes for the log: requests that were mapped to the node's policy.
    pub notes: Vec<String>,
}

/// A request the node refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// A flag outside the allow-list.
    #[error("container option {0:?} is not allowed on this node")]
    Forbidden(String),
    /// A flag that needs a value got none.
    #[error("container option {0} needs a value")]
    MissingValue(String),
    /// A flag with a value this node refuses.
    #[error("container option {flag}={value} is not allowed on this node: {why}")]
    BadValue {
        /// The flag.
        flag: String,
        /// Its value.
        value: String,
        /// Why.
        why: &'static str,
    },
    /// A volume mount this node refuses.
    #[error("volume mount {mount:?} is not allowed on this node: {why}")]
    Mount {
        /// The mount as given.
        mount: String,
        /// Why.
        why: String,
    },
}

/// Flags a job may pass with any value.
const VALUE_FLAGS: [&str; 7] = [
    "--user",
    "--env",
    "--workdir",
    "--hostname",
    "--add-host",
    "--cap-drop",
    "--tmpfs",
];
/// Flags a job may pass without a value.
const BARE_FLAGS: [&str; 1] = ["--read-only"];
/// Mount options a job may give.
const MOUNT_OPTIONS: [&str; 4] = ["ro", "rw", "z", "Z"];

fn canonical_flag(name: &str) -> &str {
    match name {
        "-e" => "--env",
        "-u" => "--user",
        "-w" => "--workdir",
        "--net" => "--network",
        other => other,
    }
}

/// Applies the node's policy to a job's options and mounts.
pub fn plan(
    options: &[String],
    mounts: &[String],
    podman: &PodmanSettings,
) -> Result<ContainerPlan, PolicyError> {
    let mut plan = ContainerPlan {
        network: podman.default_network.clone(),
        pull: pull_for(podman.pull, None),
        flags: Vec::new(),
        mounts: Vec::new(),
        notes: Vec::new(),
    };
    let mut it = options.iter();
    while let Some(opt) = it.next() {
        let (raw_name, inline) = match opt.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (opt.as_str(), None),
        };
        let name = canonical_flag(raw_name);
        if BARE_FLAGS.contains(&name) && inline.is_none() {
            plan.flags.push(name.to_string());
            continue;
        }
        let known = VALUE_FLAGS.contains(&name) || name == "--network" || name == "--pull";
        if !known {
            return Err(PolicyError::Forbidden(opt.clone()));
        }
        let value = match inline {
            Some(v) => v,
            None => it
                .next()
                .cloned()
                .ok_or_else(|| PolicyError::MissingValue(name.to_string()))?,
        };
        match name {
            "--network" => {
                if podman.allowed_networks.iter().any(|n| n == &value) {
                    plan.network = value;
                } else {
                    plan.notes.push(format!(
                        "network {value:?} is not allowed here; using {:?}",
                        podman.default_network
                    ));
                }
            }
            "--pull" => {
                let wanted = match value.as_str() {
                    "always" | "missing" | "never" | "newer" => value.as_str(),
                    _ => {
                        return Err(PolicyError::BadValue {
                            flag: name.into(),
                            value,
                            why: "expected always, missing, newer or never",
                        });
                    }
                };
                let pull = pull_for(podman.pull, Some(wanted));
                if pull != wanted {
                    plan.notes
                        .push(format!("pull {wanted:?} mapped to the node's {pull:?}"));
                }
                plan.pull = pull;
            }
            "--user" if value.is_empty() => {
                return Err(PolicyError::MissingValue(name.to_string()));
            }
            _ => plan.flags.push(format!("{name}={value}")),
        }
    }
    for m in mounts {
        plan.mounts.push(check_mount(m, &podman.volume_roots)?);
    }
    Ok(plan)
}

/// The `--pull` value for a node policy and what the job asked.
fn pull_for(node: PullPolicy, wanted: Option<&str>) -> &'static str {
    match (node, wanted) {
        (PullPolicy::Never, _) => "never",
        (PullPolicy::Missing, Some("never")) => "never",
        (PullPolicy::Missing, _) => "missing",
        (PullPolicy::Always, Some("always")) => "always",
        (PullPolicy::Always, Some("never")) => "never",
        (PullPolicy::Always, Some("newer")) => "newer",
        (PullPolicy::Always, _) => "missing",
    }
}

/// Checks `src:dst[:opts]`: `src` must be an absolute path without `..` inside an allowed root
/// (after resolving symlinks), `dst` absolute, options from the allow-list.
fn check_mount(mount: &str, roots: &[PathBuf]) -> Result<String, PolicyError> {
    let refuse = |why: String| PolicyError::Mount {
        mount: mount.to_string(),
        why,
    };
    let parts: Vec<&str> = mount.split(':').collect();
    let (src, dst, opts) = match parts.as_slice() {
        [s, d] => (*s, *d, None),
        [s, d, o] => (*s, *d, Some(*o)),
        _ => return Err(refuse("expected SRC:DST or SRC:DST:OPTIONS".into())),
    };
    let src_path = Path::new(src);
    let clean =
        |p: &Path| p.is_absolute() && p.components().all(|c| !matches!(c, Component::ParentDir));
    if !clean(src_path) || !clean(Path::new(dst)) {
        return Err(refuse(
            "both paths must be absolute and must not contain '..'".into(),
        ));
    }
    if let Some(opts) = opts
        && let Some(bad) = opts.split(',').find(|o| !MOUNT_OPTIONS.contains(o))
    {
        return Err(refuse(format!(
            "mount option {bad:?} is not one of ro, rw, z, Z"
        )));
    }
    if roots.is_empty() {
        return Err(refuse(
            "this node allows no volume mounts (podman.volume_roots is empty)".into(),
        ));
    }
    let real = std::fs::canonicalize(src_path)
        .map_err(|e| refuse(format!("{src} cannot be resolved: {e}")))?;
    let inside = roots.iter().any(|root| {
        std::fs::canonicalize(root)
            .map(|r| real.starts_with(r))
            .unwrap_or(false)
    });
    if !inside {
        return Err(refuse(format!(
            "{} is not below an allowed root ({})",
            real.display(),
            roots
                .iter()
                .map(|r| r.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    Ok(match opts {
        Some(o) => format!("{}:{dst}:{o}", real.display()),
        None => format!("{}:{dst}", real.display()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn node() -> PodmanSettings {
        PodmanSettings::default()
    }

    #[test]
    fn awx_default_options_are_mapped_not_refused() {
        let p = plan(
            &strings(&[
                "--user=root",
                "--network",
                "slirp4netns:enable_ipv6=true",
                "--pull=missing",
            ]),
            &[],
            &node(),
        )
        .unwrap();
        assert_eq!(p.flags, ["--user=root"]);
        assert_eq!(p.network, "host");
        assert_eq!(p.pull, "never");
        assert_eq!(p.notes.len(), 2, "{:?}", p.notes);
    }

    #[test]
    fn allowed_values_pass() {
        let mut n = node();
        n.pull = PullPolicy::Always;
        let p = plan(
            &strings(&[
                "--network=none",
                "--pull",
                "always",
                "-e",
                "A=1",
                "--read-only",
            ]),
            &[],
            &n,
        )
        .unwrap();
        assert_eq!(p.network, "none");
        assert_eq!(p.pull, "always");
        assert_eq!(p.flags, ["--env=A=1", "--read-only"]);
    }

    #[test]
    fn privileges_namespaces_and_devices_are_refused() {
        for bad in [
            "--privileged",
            "--pid=host",
            "--ipc=host",
            "--uts=host",
            "--userns=host",
            "--cgroupns=host",
            "--cap-add=SYS_ADMIN",
            "--device=/dev/sda",
            "-v=/:/host",
            "--volume=/etc:/etc",
            "--mount=type=bind,src=/,dst=/h",
            "--security-opt=seccomp=unconfined",
            "--entrypoint=/bin/sh",
            "--read-only=false",
        ] {
            let e = plan(&strings(&[bad]), &[], &node()).unwrap_err();
            assert!(
                matches!(e, PolicyError::Forbidden(ref o) if o == bad),
                "{bad}: {e}"
            );
        }
        assert_eq!(
            plan(&strings(&["--user"]), &[], &node()).unwrap_err(),
            PolicyError::MissingValue("--user".into())
        );
        assert!(plan(&strings(&["--pull=sometimes"]), &[], &node()).is_err());
    }

    #[test]
    fn mounts_stay_inside_allowed_roots() {
        let root = tempfile::tempdir().unwrap();
        let share = root.path().join("share");
        std::fs::create_dir(&share).unwrap();
        std::os::unix::fs::symlink("/etc", share.join("escape")).unwrap();
        let mut n = node();
        n.volume_roots = vec![root.path().to_path_buf()];
        let ok = plan(&[], &[format!("{}:/data:ro,Z", share.display())], &n).unwrap();
        assert!(
            ok.mounts[0].ends_with("/share:/data:ro,Z"),
            "{:?}",
            ok.mounts
        );
        for bad in [
            format!("{}:/data", share.join("escape").display()),
            "/etc:/etc".to_string(),
            format!("{}/../x:/d", share.display()),
            format!("{}:relative", share.display()),
            format!("{}:/d:exec", share.display()),
            "nocolon".to_string(),
            format!("{}/missing:/d", share.display()),
        ] {
            assert!(
                matches!(
                    plan(&[], std::slice::from_ref(&bad), &n),
                    Err(PolicyError::Mount { .. })
                ),
                "{bad}"
            );
        }
        assert!(
            plan(&[], &[format!("{}:/d", share.display())], &node()).is_err(),
            "no roots, no mounts"
        );
    }
}
