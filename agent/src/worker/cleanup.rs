//! `meshrun-agent worker cleanup ...`: the node clean-up AWX runs every few hours, with the
//! options and output of `ansible-runner worker cleanup` (`--file-pattern`, `--exclude-strings`,
//! `--remove-images`, `--grace-period`, `--image-prune`, last line `(changed: True|False)`).
//! Stricter than the original: relative patterns and patterns reaching system folders or the
//! agent's own state are refused, a folder whose `pid` file names a live process is kept, and the
//! node's default execution-environment image is never removed.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, SystemTime};

use nix::errno::Errno;
use nix::sys::signal::kill;
use nix::unistd::Pid;

use super::podman::podman;
use crate::settings::AgentSettings;

/// Folders no pattern may reach.
const SYSTEM_DIRS: [&str; 17] = [
    "/", "/bin", "/boot", "/dev", "/etc", "/home", "/lib", "/lib64", "/mnt", "/opt", "/proc",
    "/root", "/run", "/sbin", "/sys", "/tmp", "/usr",
];

/// Parsed `cleanup` options.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CleanupArgs {
    /// Glob of private data dirs to remove.
    pub file_pattern: Option<String>,
    /// Paths containing any of these are kept.
    pub exclude_strings: Vec<String>,
    /// Image tags to untag.
    pub remove_images: Vec<String>,
    /// Folders modified more recently than this many minutes are kept (0: none kept).
    pub grace_period_minutes: u64,
    /// Run `podman image prune -f` at the end.
    pub image_prune: bool,
}

/// A cleanup request the agent refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CleanupError {
    /// An option the agent does not know.
    #[error("unknown cleanup option {0:?}")]
    Unknown(String),
    /// A value that cannot be used.
    #[error("cleanup option {option}: {why}")]
    Bad {
        /// The option.
        option: &'static str,
        /// Why.
        why: String,
    },
}

/// Parses the arguments after `cleanup`.
pub fn parse(args: &[String]) -> Result<CleanupArgs, CleanupError> {
    let mut out = CleanupArgs {
        grace_period_minutes: 60,
        ..CleanupArgs::default()
    };
    let mut i = 0;
    while i < args.len() {
        let (name, inline) = match args[i].split_once('=') {
            Some((n, v)) => (n.to_string(), Some(v.to_string())),
            None => (args[i].clone(), None),
        };
        i += 1;
        // Options that take one value, or several (argparse nargs='*').
        let mut values = |multi: bool| -> Vec<String> {
            let mut v: Vec<String> = inline.iter().cloned().collect();
            while i < args.len() && !args[i].starts_with("--") && (multi || v.is_empty()) {
                v.push(args[i].clone());
                i += 1;
            }
            v
        };
        match name.as_str() {
            "--file-pattern" => {
                out.file_pattern = values(false).pop();
                if out.file_pattern.is_none() {
                    return Err(CleanupError::Bad {
                        option: "--file-pattern",
                        why: "needs a pattern".into(),
                    });
                }
            }
            "--exclude-strings" => out
                .exclude_strings
                .extend(values(true).iter().flat_map(|s| split_list(s))),
            "--remove-images" => out
                .remove_images
                .extend(values(true).iter().flat_map(|s| split_list(s))),
            "--grace-period" => {
                let v = values(false).pop().unwrap_or_default();
                out.grace_period_minutes = v.parse().map_err(|_| CleanupError::Bad {
                    option: "--grace-period",
                    why: format!("expected whole minutes, got {v:?}"),
                })?;
            }
            "--image-prune" if inline.is_none() => out.image_prune = true,
            "--process-isolation-executable" => {
                let v = values(false).pop().unwrap_or_default();
                if v != "podman" {
                    return Err(CleanupError::Bad {
                        option: "--process-isolation-executable",
                        why: format!("this node runs podman, not {v:?}"),
                    });
                }
            }
            _ => return Err(CleanupError::Unknown(args[i - 1].clone())),
        }
    }
    Ok(out)
}

fn split_list(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// Checks a pattern and returns the folders it matches, or why it is refused.
pub fn matching_dirs(pattern: &str, protected: &[PathBuf]) -> Result<Vec<PathBuf>, CleanupError> {
    let bad = |why: String| CleanupError::Bad {
        option: "--file-pattern",
        why,
    };
    if !pattern.starts_with('/') {
        return Err(bad(format!("{pattern:?} must be an absolute pattern")));
    }
    if pattern.split('/').any(|c| c == "..") {
        return Err(bad(format!("{pattern:?} must not contain '..'")));
    }
    let paths =
        glob::glob(pattern).map_err(|e| bad(format!("{pattern:?} is not a valid pattern: {e}")))?;
    let mut dirs = Vec::new();
    for p in paths.flatten() {
        let meta = match std::fs::symlink_metadata(&p) {
            Ok(m) => m,
            Err(_) => continue,
        };
        if !meta.is_dir() {
            continue;
        }
        let real = std::fs::canonicalize(&p).unwrap_or_else(|_| p.clone());
        let system = SYSTEM_DIRS
            .iter()
            .any(|s| Path::new(s) == real || Path::new(s) == p);
        let agent_owned = protected
            .iter()
            .any(|prot| prot.starts_with(&real) || real.starts_with(prot));
        if system || agent_owned {
            return Err(bad(format!(
                "{pattern:?} matches {}, which must never be deleted; refusing to clean up",
                p.display()
            )));
        }
        dirs.push(p);
    }
    Ok(dirs)
}

/// Whether a folder's `pid` file names a process that is alive.
fn has_live_process(dir: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string(dir.join("pid")) else {
        return false;
    };
    let Ok(pid) = text.trim().parse::<i32>() else {
        return false;
    };
    pid > 0 && !matches!(kill(Pid::from_raw(pid), None), Err(Errno::ESRCH))
}

fn recently_modified(dir: &Path, grace: Duration) -> bool {
    if grace.is_zero() {
        return false;
    }
    std::fs::metadata(dir)
        .and_then(|m| m.modified())
        .map(|t| {
            SystemTime::now()
                .duration_since(t)
                .map(|age| age < grace)
                .unwrap_or(true)
        })
        .unwrap_or(true)
}

/// Runs the cleanup; returns the text to print (last line `(changed: ...)`) or the refusal.
pub async fn run(settings: &AgentSettings, args: &CleanupArgs) -> Result<String, CleanupError> {
    let mut report = Vec::new();
    let mut changed = false;
    if let Some(pattern) = &args.file_pattern {
        let protected = [
            settings.state_dir.clone(),
            settings.receptor.data_dir.clone(),
        ];
        let grace = Duration::from_secs(args.grace_period_minutes.saturating_mul(60));
        let mut removed = 0;
        for dir in matching_dirs(pattern, &protected)? {
            let path = dir.display().to_string();
            if args
                .exclude_strings
                .iter()
                .any(|s| path.contains(s.as_str()))
                || recently_modified(&dir, grace)
            {
                continue;
            }
            if has_live_process(&dir) {
                report.push(format!("Excluding running project {path} from cleanup"));
                continue;
            }
            match std::fs::remove_dir_all(&dir) {
                Ok(()) => removed += 1,
                Err(e) => report.push(format!("Could not remove {path}: {e}")),
            }
        }
        if removed > 0 {
            changed = true;
            report.push(format!(
                "Removed {removed} private data dir(s) in pattern {pattern}"
            ));
        }
    }
    let default_image = settings.podman.default_image.as_deref();
    let mut untagged = 0;
    for image in &args.remove_images {
        if Some(image.as_str()) == default_image {
            report.push(format!(
                "Keeping {image}: it is this node's default execution environment"
            ));
            continue;
        }
        let ok = podman(&settings.podman)
            .args(["untag", image])
            .stdin(Stdio::null())
            .output()
            .await
            .is_ok_and(|o| o.status.success());
        if ok {
            untagged += 1;
        }
    }
    if untagged > 0 {
        changed = true;
        report.push(format!("Removed {untagged} image(s)"));
    }
    if args.image_prune {
        let out = podman(&settings.podman)
            .args(["image", "prune", "--force"])
            .stdin(Stdio::null())
            .output()
            .await;
        if let Ok(o) = out
            && o.status.success()
            && !String::from_utf8_lossy(&o.stdout).trim().is_empty()
        {
            changed = true;
            report.push("Pruned images".to_string());
        }
    }
    report.push(format!(
        "(changed: {})",
        if changed { "True" } else { "False" }
    ));
    Ok(report.join("\n") + "\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn awx_cleanup_command_parses() {
        let got = parse(&a(&[
            "--exclude-strings=awx_1_ awx_2_",
            "awx_3_",
            "--file-pattern=/tmp/awx_*_*",
            "--image-prune",
            "--process-isolation-executable=podman",
            "--grace-period=60",
        ]))
        .unwrap();
        assert_eq!(got.file_pattern.as_deref(), Some("/tmp/awx_*_*"));
        assert_eq!(got.exclude_strings, ["awx_1_ awx_2_", "awx_3_"]);
        assert!(got.image_prune);
        assert_eq!(got.grace_period_minutes, 60);
        assert!(parse(&a(&["--rm-rf"])).is_err());
        assert!(parse(&a(&["--grace-period=soon"])).is_err());
        assert!(parse(&a(&["--process-isolation-executable=docker"])).is_err());
    }

    #[test]
    fn dangerous_patterns_are_refused() {
        let state = tempfile::tempdir().unwrap();
        for p in ["/*", "/tm?", "/etc", "relative/*", "/tmp/../etc"] {
            assert!(matching_dirs(p, &[]).is_err(), "{p}");
        }
        let inside = state.path().join("units");
        std::fs::create_dir(&inside).unwrap();
        let pattern = format!("{}*", state.path().display());
        let inner = format!("{}/*", inside.display());
        std::fs::create_dir(inside.join("u1")).unwrap();
        assert!(
            matching_dirs(&inner, std::slice::from_ref(&inside)).is_err(),
            "nor what is inside it"
        );
        assert!(
            matching_dirs(&pattern, std::slice::from_ref(&inside)).is_err(),
            "the agent's own state is protected"
        );
    }

    #[test]
    fn live_pid_files_keep_a_folder() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("pid"), std::process::id().to_string()).unwrap();
        assert!(has_live_process(d.path()));
        std::fs::write(d.path().join("pid"), "2147483646").unwrap();
        assert!(!has_live_process(d.path()));
    }
}
