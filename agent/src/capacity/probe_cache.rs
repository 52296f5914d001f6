//! Results of slow probes (`podman info`, image look-ups, `ansible-runner --version`) kept in
//! `<state_dir>/probe-cache/<name>.json`, so a warm health check runs no external command.
//!
//! Each entry records the key it was computed for (executable, config and image, or a
//! binary's path + mtime + size, or an image id) and when; a different key is a miss. The
//! clock is passed in, so the TTL is tested without waiting. Writes are atomic (temp file +
//! rename); a cache that cannot be written only costs speed, never correctness.

use std::fs;
use std::io::Write;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// How long an entry stays good.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    /// Successes and failures alike, for this long (zero: never cached).
    For(Duration),
    /// Successes only, for as long as the key is unchanged.
    WhileKeyHolds,
}

#[derive(Debug, Serialize, Deserialize)]
struct Entry {
    key: String,
    checked_at_ms: u64,
    outcome: Result<String, String>,
}

/// The cache directory.
#[derive(Debug, Clone)]
pub struct ProbeCache {
    dir: PathBuf,
}

fn millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis().min(u64::MAX as u128) as u64)
        .unwrap_or(0)
}

impl ProbeCache {
    /// The cache of the agent whose state lives in `state_dir`.
    pub fn new(state_dir: &Path) -> Self {
        ProbeCache {
            dir: state_dir.join("probe-cache"),
        }
    }

    /// The cached outcome of probe `name` for `key`, or `probe`'s, stored as `keep` says.
    pub fn get_or_run(
        &self,
        name: &str,
        key: &str,
        keep: Keep,
        now: SystemTime,
        probe: impl FnOnce() -> Result<String, String>,
    ) -> Result<String, String> {
        if let Some(outcome) = self.lookup(name, key, keep, now) {
            tracing::debug!(probe = name, "probe cache hit");
            return outcome;
        }
        let outcome = probe();
        let store = match keep {
            Keep::For(ttl) => !ttl.is_zero(),
            Keep::WhileKeyHolds => outcome.is_ok(),
        };
        if store {
            let entry = Entry {
                key: key.to_string(),
                checked_at_ms: millis(now),
                outcome: outcome.clone(),
            };
            if let Err(e) = self.store(name, &entry) {
                tracing::warn!(probe = name, dir = %self.dir.display(), error = %e, "cannot cache a probe result");
            }
        }
        outcome
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.json"))
    }

    fn lookup(
        &self,
        name: &str,
        key: &str,
        keep: Keep,
        now: SystemTime,
    ) -> Option<Result<String, String>> {
        let text = fs::read(self.path(name)).ok()?;
        let entry: Entry = serde_json::from_slice(&text).ok()?;
        if entry.key != key {
            return None;
        }
        match keep {
            Keep::WhileKeyHolds => entry.outcome.is_ok().then_some(entry.outcome),
            Keep::For(ttl) => {
                let now = millis(now);
                // A clock that went backwards makes the entry stale rather than eternal.
                let age = now.checked_sub(entry.checked_at_ms)?;
                (u128::from(age) < ttl.as_millis()).then_some(entry.outcome)
            }
        }
    }

    fn store(&self, name: &str, entry: &Entry) -> std::io::Result<()> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)?;
        let tmp = self
            .dir
            .join(format!(".{name}.json.tmp-{}", std::process::id()));
        let body = serde_json::to_vec(entry).map_err(std::io::Error::other)?;
        let written = fs::File::create(&tmp).and_then(|mut f| f.write_all(&body));
        let renamed = written.and_then(|()| fs::rename(&tmp, self.path(name)));
        if renamed.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        renamed
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    const TTL: Keep = Keep::For(Duration::from_secs(60));

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
    }

    #[test]
    fn ttl_entries_are_reused_until_they_expire_failures_included() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ProbeCache::new(dir.path());
        let runs = Cell::new(0);
        let probe = |result: Result<String, String>| {
            let runs = &runs;
            move || {
                runs.set(runs.get() + 1);
                result
            }
        };
        assert_eq!(
            cache.get_or_run("podman-info", "k", TTL, at(0), probe(Err("down".into()))),
            Err("down".into())
        );
        assert_eq!(
            cache.get_or_run("podman-info", "k", TTL, at(59), probe(Ok("x".into()))),
            Err("down".into())
        );
        assert_eq!(runs.get(), 1);
        assert_eq!(
            cache.get_or_run("podman-info", "k", TTL, at(60), probe(Ok("up".into()))),
            Ok("up".into())
        );
        assert_eq!(runs.get(), 2);
        // Another key (other podman or image) is a miss; so is a clock that went backwards.
        cache
            .get_or_run("podman-info", "k2", TTL, at(61), probe(Ok("up2".into())))
            .unwrap();
        cache
            .get_or_run("podman-info", "k2", TTL, at(10), probe(Ok("up3".into())))
            .unwrap();
        assert_eq!(runs.get(), 4);
    }

    #[test]
    fn zero_ttl_never_caches() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ProbeCache::new(dir.path());
        let runs = Cell::new(0);
        for _ in 0..2 {
            cache
                .get_or_run("p", "k", Keep::For(Duration::ZERO), at(0), || {
                    runs.set(runs.get() + 1);
                    Ok(String::new())
                })
                .unwrap();
        }
        assert_eq!(runs.get(), 2);
    }

    #[test]
    fn key_bound_entries_keep_successes_only() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ProbeCache::new(dir.path());
        let keep = Keep::WhileKeyHolds;
        assert!(
            cache
                .get_or_run("v", "bin|1|2", keep, at(0), || Err("no".into()))
                .is_err()
        );
        assert_eq!(
            cache.get_or_run("v", "bin|1|2", keep, at(0), || Ok("2.4.3".into())),
            Ok("2.4.3".into())
        );
        assert_eq!(
            cache.get_or_run("v", "bin|1|2", keep, at(999_999), || Ok("other".into())),
            Ok("2.4.3".into())
        );
        assert_eq!(
            cache.get_or_run("v", "bin|3|2", keep, at(0), || Ok("2.5.0".into())),
            Ok("2.5.0".into())
        );
    }

    #[test]
    fn a_corrupt_or_unwritable_cache_only_means_probing_again() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ProbeCache::new(dir.path());
        fs::create_dir_all(dir.path().join("probe-cache")).unwrap();
        fs::write(dir.path().join("probe-cache/p.json"), "{not json").unwrap();
        assert_eq!(
            cache.get_or_run("p", "k", TTL, at(0), || Ok("fresh".into())),
            Ok("fresh".into())
        );
        let file = dir.path().join("file");
        fs::write(&file, "").unwrap();
        let cache = ProbeCache::new(&file);
        assert_eq!(
            cache.get_or_run("p", "k", TTL, at(0), || Ok("fresh".into())),
            Ok("fresh".into())
        );
    }
}
