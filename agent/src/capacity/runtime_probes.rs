//! Whether jobs can start here, and which ansible-runner they get: in host mode the
//! configured `ansible-runner` and its `--version`; in podman mode `podman info`, the default
//! image's presence and id, and `ansible-runner --version` inside that image. Every result
//! goes through the [`ProbeCache`]: podman checks for `capacity.probe_ttl_secs`, versions for
//! as long as the binary (path + mtime + size) or the image id is unchanged.

use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::command;
use super::probe_cache::{Keep, ProbeCache};
use crate::settings::{AgentSettings, PodmanSettings};

/// Limit for `podman info` and `podman image inspect`.
const PODMAN_QUERY_TIMEOUT: Duration = Duration::from_secs(5);
/// Limit for `ansible-runner --version` (host) and the container that runs it.
const VERSION_TIMEOUT: Duration = Duration::from_secs(8);

/// What the runtime probes found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuntimeReport {
    /// The ansible-runner version jobs run with, when known.
    pub runner_version: Option<String>,
    /// Everything that stops jobs from running.
    pub errors: Vec<String>,
}

/// Host mode: the configured ansible-runner's version.
pub fn host(settings: &AgentSettings, cache: &ProbeCache, now: SystemTime) -> RuntimeReport {
    let runner = &settings.worker.ansible_runner;
    let meta = match std::fs::metadata(runner) {
        Ok(m) if m.is_file() => m,
        Ok(_) => {
            return missing_runner(format!("ansible-runner {} is not a file", runner.display()));
        }
        Err(e) => {
            return missing_runner(format!(
                "ansible-runner not found at {} (worker.ansible_runner): {e}",
                runner.display()
            ));
        }
    };
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let key = format!("{}|{mtime}|{}", runner.display(), meta.len());
    let version = cache.get_or_run(
        "host-runner-version",
        &key,
        Keep::WhileKeyHolds,
        now,
        || {
            let out = command::run(Command::new(runner).arg("--version"), VERSION_TIMEOUT)
                .map_err(|e| e.to_string())?;
            parse_version(&out.stdout)
        },
    );
    match version {
        Ok(v) => RuntimeReport {
            runner_version: Some(v),
            errors: Vec::new(),
        },
        Err(e) => missing_runner(format!(
            "ansible-runner {} is not usable: {e}",
            runner.display()
        )),
    }
}

fn missing_runner(error: String) -> RuntimeReport {
    RuntimeReport {
        runner_version: None,
        errors: vec![error],
    }
}

/// Podman mode: podman usable, the default image present, and the runner version in it.
pub fn podman(settings: &AgentSettings, cache: &ProbeCache, now: SystemTime) -> RuntimeReport {
    let p = &settings.podman;
    let ttl = Keep::For(Duration::from_secs(settings.capacity.probe_ttl_secs));
    let mut report = RuntimeReport::default();
    let unknown_version = |why: &str| format!("ansible-runner version unknown: {why}");

    if !p.executable.is_file() {
        report.errors.push(format!(
            "podman not found at {} (podman.executable)",
            p.executable.display()
        ));
        report.errors.push(unknown_version("podman is missing"));
        return report;
    }
    let base_key = format!(
        "{}|{}",
        p.executable.display(),
        p.containers_conf
            .as_deref()
            .map(|c| c.display().to_string())
            .unwrap_or_default()
    );
    let usable = cache.get_or_run("podman-info", &base_key, ttl, now, || {
        command::run(
            podman_command(p).args(["info", "--format", "{{.Host.OCIRuntime.Name}}"]),
            PODMAN_QUERY_TIMEOUT,
        )
        .map(|out| out.stdout.trim().to_string())
        .map_err(|e| e.to_string())
    });
    if let Err(e) = usable {
        report.errors.push(format!(
            "podman {} is not usable: {e}",
            p.executable.display()
        ));
        report.errors.push(unknown_version("podman is not usable"));
        return report;
    }
    let Some(image) = p.default_image.as_deref() else {
        report.errors.push(unknown_version(
            "podman.default_image is not set, so there is no image to ask",
        ));
        return report;
    };
    let image_key = format!("{base_key}|{image}");
    let image_id = cache.get_or_run("podman-default-image", &image_key, ttl, now, || {
        command::run(
            podman_command(p).args(["image", "inspect", "--format", "{{.Id}}", image]),
            PODMAN_QUERY_TIMEOUT,
        )
        .map_err(|e| e.to_string())
        .and_then(|out| {
            let id = out.stdout.trim();
            if id.is_empty() || id.contains(char::is_whitespace) {
                Err(format!("podman image inspect printed {id:?}"))
            } else {
                Ok(id.to_string())
            }
        })
    });
    let image_id = match image_id {
        Ok(id) => id,
        Err(e) => {
            report.errors.push(format!(
                "default image {image} is not present on this node (podman.default_image): {e}"
            ));
            report
                .errors
                .push(unknown_version("the default image is missing"));
            return report;
        }
    };
    let version = cache.get_or_run(
        "podman-image-runner-version",
        &image_id,
        Keep::WhileKeyHolds,
        now,
        || {
            let out = command::run(
                podman_command(p).args([
                    "run",
                    "--rm",
                    "--pull=never",
                    "--network=none",
                    image_id.as_str(),
                    "ansible-runner",
                    "--version",
                ]),
                VERSION_TIMEOUT,
            )
            .map_err(|e| e.to_string())?;
            parse_version(&out.stdout)
        },
    );
    match version {
        Ok(v) => report.runner_version = Some(v),
        Err(e) => report.errors.push(unknown_version(&format!(
            "cannot run ansible-runner in the default image {image}: {e}"
        ))),
    }
    report
}

fn podman_command(p: &PodmanSettings) -> Command {
    let mut cmd = Command::new(&p.executable);
    if let Some(conf) = &p.containers_conf {
        cmd.env("CONTAINERS_CONF", conf);
    }
    cmd
}

/// The version from `ansible-runner --version` output: its last non-empty line, one word.
pub fn parse_version(stdout: &str) -> Result<String, String> {
    let line = stdout
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("");
    let ok = !line.is_empty()
        && line.len() <= 64
        && line
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '+' | '_'));
    if ok {
        Ok(line.to_string())
    } else {
        let shown: String = stdout.chars().take(80).collect();
        Err(format!(
            "`ansible-runner --version` printed {shown:?}, not a version"
        ))
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;
    use std::path::Path;

    use super::*;

    fn settings_with(state: &Path, runner: &Path) -> AgentSettings {
        let mut s = AgentSettings {
            state_dir: state.to_path_buf(),
            ..AgentSettings::default()
        };
        s.worker.ansible_runner = runner.to_path_buf();
        s
    }

    fn script(path: &Path, body: &str) {
        std::fs::write(path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    #[test]
    fn versions_parse() {
        assert_eq!(parse_version("2.4.3\n"), Ok("2.4.3".into()));
        assert_eq!(
            parse_version("warning\n2.5.0.dev1+g123\n\n"),
            Ok("2.5.0.dev1+g123".into())
        );
        assert!(parse_version("").is_err());
        assert!(parse_version("Traceback (most recent call last):").is_err());
    }

    #[test]
    fn host_version_is_cached_until_the_binary_changes() {
        let dir = tempfile::tempdir().unwrap();
        let runner = dir.path().join("ansible-runner");
        let count = dir.path().join("count");
        script(
            &runner,
            &format!("echo x >> {}; echo 2.4.3", count.display()),
        );
        let s = settings_with(&dir.path().join("state"), &runner);
        let cache = ProbeCache::new(&s.state_dir);
        let now = SystemTime::now();
        for _ in 0..3 {
            assert_eq!(
                host(&s, &cache, now).runner_version.as_deref(),
                Some("2.4.3")
            );
        }
        assert_eq!(std::fs::read_to_string(&count).unwrap().lines().count(), 1);
        // Upgrading the runner changes its size (and mtime): asked again.
        script(
            &runner,
            &format!("echo x >> {}; echo 2.5.0   ", count.display()),
        );
        let report = host(&s, &cache, now);
        assert_eq!(report.runner_version.as_deref(), Some("2.5.0"));
        assert_eq!(std::fs::read_to_string(&count).unwrap().lines().count(), 2);
    }

    #[test]
    fn a_missing_or_broken_host_runner_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let s = settings_with(dir.path(), &dir.path().join("nope"));
        let cache = ProbeCache::new(dir.path());
        let r = host(&s, &cache, SystemTime::now());
        assert_eq!(r.runner_version, None);
        assert!(
            r.errors[0].starts_with("ansible-runner not found at"),
            "{r:?}"
        );
        let broken = dir.path().join("broken");
        script(&broken, "echo 'ImportError: no module' >&2; exit 1");
        let s = settings_with(dir.path(), &broken);
        let r = host(&s, &cache, SystemTime::now());
        assert!(r.errors[0].contains("ImportError: no module"), "{r:?}");
    }

    #[test]
    fn podman_mode_reports_each_missing_piece_without_running_absent_tools() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = settings_with(dir.path(), Path::new("/unused"));
        s.podman.executable = dir.path().join("no-podman");
        let cache = ProbeCache::new(dir.path());
        let r = podman(&s, &cache, SystemTime::now());
        assert_eq!(r.errors.len(), 2, "{r:?}");
        assert!(r.errors[0].starts_with("podman not found at"), "{r:?}");

        // A fake podman stands in for the real one only here, in a unit test: it logs each
        // call so the test can see that a warm call runs nothing.
        let fake = dir.path().join("podman");
        let log = dir.path().join("calls");
        script(
            &fake,
            &format!(
                "echo \"$*\" >> {log}\ncase \"$1\" in\n info) echo runc;;\n image) [ \"$5\" = ee:1 ] && echo sha256abc || {{ echo 'Error: ee:2: image not known' >&2; exit 125; }};;\n run) echo 2.4.3;;\nesac",
                log = log.display()
            ),
        );
        s.podman.executable = fake.clone();
        s.podman.default_image = Some("ee:1".into());
        let now = SystemTime::now();
        let r = podman(&s, &cache, now);
        assert_eq!(
            r,
            RuntimeReport {
                runner_version: Some("2.4.3".into()),
                errors: vec![]
            }
        );
        let calls = std::fs::read_to_string(&log).unwrap();
        assert_eq!(calls.lines().count(), 3, "{calls}");
        assert!(
            calls.contains(
                "run --rm --pull=never --network=none sha256abc ansible-runner --version"
            ),
            "{calls}"
        );
        assert_eq!(podman(&s, &cache, now + Duration::from_secs(30)), r);
        assert_eq!(
            std::fs::read_to_string(&log).unwrap(),
            calls,
            "a warm call ran podman"
        );

        s.podman.default_image = Some("ee:2".into());
        let r = podman(&s, &cache, now);
        assert_eq!(r.runner_version, None);
        assert!(
            r.errors[0].starts_with("default image ee:2 is not present"),
            "{r:?}"
        );
        assert!(r.errors[0].ends_with("image not known"), "{r:?}");

        s.podman.default_image = None;
        let r = podman(&s, &cache, now);
        assert!(
            r.errors[0].contains("podman.default_image is not set"),
            "{r:?}"
        );
    }
}
