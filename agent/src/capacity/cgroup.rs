//! Which cgroup bounds the node's jobs, where its directories are, and the CPU and memory
//! limits that hold along its path to the root.
//!
//! Handles cgroup v1 (one mount per controller, possibly co-mounted like `cpu,cpuacct`),
//! v2 (one unified mount) and the hybrid layout (v1 controllers plus a controller-less
//! cgroup2 at `/sys/fs/cgroup/unified`). The kernel enforces every ancestor's limit, so the
//! effective limit is the smallest one found from the cgroup up to its hierarchy's root.
//!
//! `capacity.cgroup` names the cgroup either as a cgroup path (`/meshrun/jobs`, the same in
//! every hierarchy, as `/proc/<pid>/cgroup` shows it) or as a directory under a cgroup mount
//! (`/sys/fs/cgroup/memory/meshrun/jobs`, which means the cgroup path `/meshrun/jobs` in every
//! hierarchy). A hierarchy in which that cgroup does not exist is measured from its nearest
//! existing ancestor.
//!
//! Parsing and limit arithmetic are pure; files are read through a caller-given function so
//! fixtures can stand in for `/proc` and `/sys`.

use std::path::{Component, Path, PathBuf};

/// v1 memory limits at or above this are the kernel's "unlimited" (`LONG_MAX` rounded down to
/// a page), not a real limit.
const V1_MEMORY_UNLIMITED: u64 = 1 << 62;

/// A cgroup filesystem mount, from `/proc/self/mountinfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupMount {
    /// The cgroup path mounted there (`/` unless the mount shows a sub-tree).
    pub root: String,
    /// Where it is mounted.
    pub mount_point: PathBuf,
    /// v1 controllers of this hierarchy; `None` for the v2 unified hierarchy.
    pub v1_controllers: Option<Vec<String>>,
}

/// One line of `/proc/self/cgroup`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    /// The hierarchy's controllers (`cpu`, `cpuacct`, `name=systemd`; empty only for v2's
    /// `0::` line).
    pub controllers: Vec<String>,
    /// The cgroup path within that hierarchy.
    pub path: String,
}

/// The directories to read for each kind of limit, each list running from the cgroup itself
/// up to its hierarchy's mount point.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hierarchies {
    /// v1 `cpu` controller.
    pub cpu: Vec<PathBuf>,
    /// v1 `cpuset` controller.
    pub cpuset: Vec<PathBuf>,
    /// v1 `memory` controller.
    pub memory: Vec<PathBuf>,
    /// The v2 unified hierarchy (any controller enabled there).
    pub unified: Vec<PathBuf>,
}

/// The limits in force for a cgroup; `None` means no limit of that kind.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Limits {
    /// CPU bandwidth quota in CPUs (quota / period).
    pub cpu_quota: Option<f64>,
    /// Number of CPUs in the cpuset.
    pub cpuset_cpus: Option<usize>,
    /// Memory limit in bytes.
    pub memory: Option<u64>,
}

/// Why the cgroup to measure could not be found.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// A `/proc` file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: &'static str,
        /// The I/O error.
        source: std::io::Error,
    },
    /// `capacity.cgroup` names a cgroup that exists in no hierarchy.
    #[error(
        "capacity.cgroup {configured} does not exist (looked for {looked}); limits are read from its nearest existing ancestors"
    )]
    ConfiguredMissing {
        /// The setting.
        configured: String,
        /// The directories tried.
        looked: String,
    },
}

/// The hierarchies of the configured cgroup, or of this process's own cgroup, read from this
/// process's `/proc/self/{mountinfo,cgroup}`. A configured cgroup that exists nowhere is an
/// error, but its hierarchies come with it so the ancestors' limits still count.
pub fn locate(configured: Option<&Path>) -> (Hierarchies, Option<CgroupError>) {
    let read = |path: &'static str| {
        std::fs::read_to_string(path).map_err(|source| CgroupError::Read { path, source })
    };
    let mounts = match read("/proc/self/mountinfo") {
        Ok(text) => parse_mountinfo(&text),
        Err(e) => return (Hierarchies::default(), Some(e)),
    };
    match configured {
        Some(path) => {
            let h = configured_hierarchies(&mounts, path);
            let leaves: Vec<&PathBuf> = h.leaves().collect();
            if !leaves.is_empty() && !leaves.iter().any(|d| d.is_dir()) {
                let looked = leaves
                    .iter()
                    .map(|d| d.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ");
                let e = CgroupError::ConfiguredMissing {
                    configured: path.display().to_string(),
                    looked,
                };
                return (h, Some(e));
            }
            (h, None)
        }
        None => match read("/proc/self/cgroup") {
            Ok(text) => (own_hierarchies(&mounts, &parse_proc_cgroup(&text)), None),
            Err(e) => (Hierarchies::default(), Some(e)),
        },
    }
}

/// Reads the cgroup mounts out of `/proc/self/mountinfo` text.
pub fn parse_mountinfo(text: &str) -> Vec<CgroupMount> {
    let mut mounts = Vec::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let Some(sep) = fields.iter().position(|f| *f == "-") else {
            continue;
        };
        if sep < 5 || fields.len() < sep + 4 {
            continue;
        }
        let (root, mount_point) = (fields[3], fields[4]);
        let (fstype, super_opts) = (fields[sep + 1], fields[sep + 3]);
        let v1_controllers = match fstype {
            "cgroup2" => None,
            "cgroup" => Some(
                super_opts
                    .split(',')
                    .filter(|o| !matches!(*o, "rw" | "ro") && !o.contains('='))
                    .map(str::to_string)
                    .collect(),
            ),
            _ => continue,
        };
        mounts.push(CgroupMount {
            root: unescape_octal(root),
            mount_point: PathBuf::from(unescape_octal(mount_point)),
            v1_controllers,
        });
    }
    mounts
}

/// mountinfo writes space, tab, newline and backslash in paths as `\ooo`.
fn unescape_octal(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && bytes[i + 1..i + 4]
                .iter()
                .all(|b| (b'0'..=b'7').contains(b))
        {
            let v = (bytes[i + 1] - b'0') as u32 * 64
                + (bytes[i + 2] - b'0') as u32 * 8
                + (bytes[i + 3] - b'0') as u32;
            out.push(v as u8);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Reads `/proc/self/cgroup` text.
pub fn parse_proc_cgroup(text: &str) -> Vec<Membership> {
    text.lines()
        .filter_map(|line| {
            let mut parts = line.splitn(3, ':');
            let _id = parts.next()?;
            let controllers = parts.next()?;
            let path = parts.next()?;
            Some(Membership {
                controllers: controllers
                    .split(',')
                    .filter(|c| !c.is_empty())
                    .map(str::to_string)
                    .collect(),
                path: path.to_string(),
            })
        })
        .collect()
}

fn v1_mount<'a>(mounts: &'a [CgroupMount], controller: &str) -> Option<&'a CgroupMount> {
    mounts.iter().find(|m| {
        m.v1_controllers
            .as_ref()
            .is_some_and(|cs| cs.iter().any(|c| c == controller))
    })
}

fn unified_mount(mounts: &[CgroupMount]) -> Option<&CgroupMount> {
    mounts.iter().find(|m| m.v1_controllers.is_none())
}

/// The directories of the cgroup this process is in.
pub fn own_hierarchies(mounts: &[CgroupMount], memberships: &[Membership]) -> Hierarchies {
    let v1 = |controller: &str| -> Vec<PathBuf> {
        let Some(mount) = v1_mount(mounts, controller) else {
            return Vec::new();
        };
        memberships
            .iter()
            .find(|m| m.controllers.iter().any(|c| c == controller))
            .map(|m| chain(mount, &m.path))
            .unwrap_or_default()
    };
    let unified = match (
        unified_mount(mounts),
        memberships.iter().find(|m| m.controllers.is_empty()),
    ) {
        (Some(mount), Some(m)) => chain(mount, &m.path),
        _ => Vec::new(),
    };
    Hierarchies {
        cpu: v1("cpu"),
        cpuset: v1("cpuset"),
        memory: v1("memory"),
        unified,
    }
}

/// The directories of a configured cgroup (see the module docs for the two forms).
pub fn configured_hierarchies(mounts: &[CgroupMount], configured: &Path) -> Hierarchies {
    let cgroup_path = cgroup_path_of(mounts, configured);
    let v1 = |controller: &str| {
        v1_mount(mounts, controller)
            .map(|m| chain(m, &cgroup_path))
            .unwrap_or_default()
    };
    Hierarchies {
        cpu: v1("cpu"),
        cpuset: v1("cpuset"),
        memory: v1("memory"),
        unified: unified_mount(mounts)
            .map(|m| chain(m, &cgroup_path))
            .unwrap_or_default(),
    }
}

/// `configured` as a cgroup path: a directory under a cgroup mount is translated (the
/// longest matching mount point wins), anything else already is one.
fn cgroup_path_of(mounts: &[CgroupMount], configured: &Path) -> String {
    let best = mounts
        .iter()
        .filter(|m| configured.starts_with(&m.mount_point))
        .max_by_key(|m| m.mount_point.components().count());
    match best {
        Some(m) => {
            let rest = configured
                .strip_prefix(&m.mount_point)
                .unwrap_or(Path::new(""));
            Path::new(&m.root).join(rest).to_string_lossy().into_owned()
        }
        None => configured.to_string_lossy().into_owned(),
    }
}

/// The directory of cgroup `path` in `mount` and each ancestor up to the mount point.
fn chain(mount: &CgroupMount, path: &str) -> Vec<PathBuf> {
    let relative = Path::new(path)
        .strip_prefix(&mount.root)
        .unwrap_or(Path::new(path));
    // Paths outside our cgroup namespace show as `/..`; the mount point is all we can see.
    let normal: Vec<_> = relative
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            _ => None,
        })
        .collect();
    if relative.components().any(|c| c == Component::ParentDir) {
        return vec![mount.mount_point.clone()];
    }
    let mut dirs = Vec::with_capacity(normal.len() + 1);
    let mut dir = mount.mount_point.clone();
    dirs.push(dir.clone());
    for n in normal {
        dir.push(n);
        dirs.push(dir.clone());
    }
    dirs.reverse();
    dirs
}

impl Hierarchies {
    /// The cgroup's own directory in every hierarchy that has one.
    pub fn leaves(&self) -> impl Iterator<Item = &PathBuf> {
        [&self.cpu, &self.cpuset, &self.memory, &self.unified]
            .into_iter()
            .filter_map(|dirs| dirs.first())
    }

    /// The limits in force: the smallest of each kind along every path. `read` returns a
    /// file's text, or `None` when it is absent or unreadable (no limit at that level).
    pub fn limits(&self, read: &dyn Fn(&Path) -> Option<String>) -> Limits {
        let mut limits = Limits::default();
        let file = |dir: &Path, name: &str| read(&dir.join(name));
        for dir in &self.cpu {
            if let (Some(q), Some(p)) = (
                file(dir, "cpu.cfs_quota_us"),
                file(dir, "cpu.cfs_period_us"),
            ) {
                limits.cpu_quota = min_f(limits.cpu_quota, parse_v1_quota(&q, &p));
            }
        }
        for dir in &self.cpuset {
            let cpus = file(dir, "cpuset.effective_cpus").or_else(|| file(dir, "cpuset.cpus"));
            limits.cpuset_cpus = min_opt(limits.cpuset_cpus, cpus.and_then(|c| parse_cpu_list(&c)));
        }
        for dir in &self.memory {
            let limit = file(dir, "memory.limit_in_bytes").and_then(|t| parse_v1_memory(&t));
            limits.memory = min_opt(limits.memory, limit);
        }
        for dir in &self.unified {
            let quota = file(dir, "cpu.max").and_then(|t| parse_cpu_max(&t));
            limits.cpu_quota = min_f(limits.cpu_quota, quota);
            let cpus = file(dir, "cpuset.cpus.effective").and_then(|t| parse_cpu_list(&t));
            limits.cpuset_cpus = min_opt(limits.cpuset_cpus, cpus);
            let memory = file(dir, "memory.max").and_then(|t| parse_memory_max(&t));
            limits.memory = min_opt(limits.memory, memory);
        }
        limits
    }
}

fn min_opt<T: Ord>(a: Option<T>, b: Option<T>) -> Option<T> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn min_f(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// v1 `cpu.cfs_quota_us` / `cpu.cfs_period_us`; a quota of -1 means none.
pub fn parse_v1_quota(quota: &str, period: &str) -> Option<f64> {
    let quota: i64 = quota.trim().parse().ok()?;
    let period: u64 = period.trim().parse().ok()?;
    (quota > 0 && period > 0).then(|| quota as f64 / period as f64)
}

/// v2 `cpu.max`: `"$MAX $PERIOD"`, `max` meaning none.
pub fn parse_cpu_max(text: &str) -> Option<f64> {
    let mut parts = text.split_whitespace();
    let quota: u64 = parts.next()?.parse().ok()?;
    let period: u64 = match parts.next() {
        Some(p) => p.parse().ok()?,
        None => 100_000,
    };
    (quota > 0 && period > 0).then(|| quota as f64 / period as f64)
}

/// A CPU list such as `0-3,6` → 5. Empty (a cpuset not yet configured) → `None`.
pub fn parse_cpu_list(text: &str) -> Option<usize> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    let mut count = 0usize;
    for part in text.split(',') {
        match part.split_once('-') {
            Some((a, b)) => {
                let a: usize = a.trim().parse().ok()?;
                let b: usize = b.trim().parse().ok()?;
                count += b.checked_sub(a)? + 1;
            }
            None => {
                part.trim().parse::<usize>().ok()?;
                count += 1;
            }
        }
    }
    Some(count)
}

/// v1 `memory.limit_in_bytes`; huge values are the "unlimited" marker.
pub fn parse_v1_memory(text: &str) -> Option<u64> {
    let v: u64 = text.trim().parse().ok()?;
    (v < V1_MEMORY_UNLIMITED).then_some(v)
}

/// v2 `memory.max`; `max` means none.
pub fn parse_memory_max(text: &str) -> Option<u64> {
    text.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    const HYBRID_MOUNTINFO: &str = "\
24 1 254:0 / / rw,relatime - ext4 /dev/vda rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
    const HYBRID_CGROUP: &str = "\
9:name=systemd:/
4:memory:/process_api/ea19
3:cpuset:/
1:cpu:/jobs/a
0::/
";
    const V1_COMOUNTED_MOUNTINFO: &str = "\
30 25 0:26 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid shared:11 - cgroup cgroup rw,cpu,cpuacct
31 25 0:27 / /sys/fs/cgroup/memory rw,nosuid shared:12 - cgroup cgroup rw,memory
";
    const V1_COMOUNTED_CGROUP: &str = "\
5:cpu,cpuacct:/system.slice/x.service
3:memory:/system.slice/x.service
";
    const V2_MOUNTINFO: &str = "\
35 24 0:30 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
";
    const V2_CGROUP: &str = "0::/system.slice/meshrun-agent.service\n";

    fn p(s: &str) -> PathBuf {
        PathBuf::from(s)
    }

    #[test]
    fn hybrid_layout_finds_v1_controllers_and_the_unified_mount() {
        let mounts = parse_mountinfo(HYBRID_MOUNTINFO);
        assert_eq!(mounts.len(), 6, "{mounts:?}");
        let h = own_hierarchies(&mounts, &parse_proc_cgroup(HYBRID_CGROUP));
        assert_eq!(
            h.memory,
            vec![
                p("/sys/fs/cgroup/memory/process_api/ea19"),
                p("/sys/fs/cgroup/memory/process_api"),
                p("/sys/fs/cgroup/memory"),
            ]
        );
        assert_eq!(
            h.cpu,
            vec![
                p("/sys/fs/cgroup/cpu/jobs/a"),
                p("/sys/fs/cgroup/cpu/jobs"),
                p("/sys/fs/cgroup/cpu")
            ]
        );
        assert_eq!(h.cpuset, vec![p("/sys/fs/cgroup/cpuset")]);
        assert_eq!(h.unified, vec![p("/sys/fs/cgroup/unified")]);
    }

    #[test]
    fn comounted_v1_controllers_are_found() {
        let mounts = parse_mountinfo(V1_COMOUNTED_MOUNTINFO);
        let h = own_hierarchies(&mounts, &parse_proc_cgroup(V1_COMOUNTED_CGROUP));
        assert_eq!(
            h.cpu[0],
            p("/sys/fs/cgroup/cpu,cpuacct/system.slice/x.service")
        );
        assert_eq!(h.memory.len(), 3);
        assert!(h.cpuset.is_empty() && h.unified.is_empty());
    }

    #[test]
    fn pure_v2_uses_the_unified_hierarchy_only() {
        let mounts = parse_mountinfo(V2_MOUNTINFO);
        let h = own_hierarchies(&mounts, &parse_proc_cgroup(V2_CGROUP));
        assert!(h.cpu.is_empty() && h.memory.is_empty());
        assert_eq!(
            h.unified,
            vec![
                p("/sys/fs/cgroup/system.slice/meshrun-agent.service"),
                p("/sys/fs/cgroup/system.slice"),
                p("/sys/fs/cgroup"),
            ]
        );
    }

    #[test]
    fn escaped_mount_points_and_namespaced_paths() {
        let mounts =
            parse_mountinfo("41 31 0:38 /outer /sys/fs/my\\040cg rw - cgroup2 cgroup2 rw\n");
        assert_eq!(mounts[0].mount_point, p("/sys/fs/my cg"));
        assert_eq!(mounts[0].root, "/outer");
        let h = own_hierarchies(&mounts, &parse_proc_cgroup("0::/outer/inner\n"));
        assert_eq!(
            h.unified,
            vec![p("/sys/fs/my cg/inner"), p("/sys/fs/my cg")]
        );
        let h = own_hierarchies(&mounts, &parse_proc_cgroup("0::/../elsewhere\n"));
        assert_eq!(h.unified, vec![p("/sys/fs/my cg")]);
    }

    #[test]
    fn configured_cgroup_in_both_forms_maps_to_every_hierarchy() {
        let mounts = parse_mountinfo(HYBRID_MOUNTINFO);
        for configured in ["/meshrun/jobs", "/sys/fs/cgroup/memory/meshrun/jobs"] {
            let h = configured_hierarchies(&mounts, Path::new(configured));
            assert_eq!(
                h.memory[0],
                p("/sys/fs/cgroup/memory/meshrun/jobs"),
                "{configured}"
            );
            assert_eq!(
                h.cpu[0],
                p("/sys/fs/cgroup/cpu/meshrun/jobs"),
                "{configured}"
            );
            assert_eq!(h.cpuset[0], p("/sys/fs/cgroup/cpuset/meshrun/jobs"));
            assert_eq!(h.unified[0], p("/sys/fs/cgroup/unified/meshrun/jobs"));
            assert_eq!(h.memory.len(), 3);
        }
        let v2 = parse_mountinfo(V2_MOUNTINFO);
        let h = configured_hierarchies(&v2, Path::new("/sys/fs/cgroup/meshrun.slice"));
        assert_eq!(
            h.unified,
            vec![p("/sys/fs/cgroup/meshrun.slice"), p("/sys/fs/cgroup")]
        );
    }

    #[test]
    fn limit_files_parse() {
        assert_eq!(parse_v1_quota("150000\n", "100000\n"), Some(1.5));
        assert_eq!(parse_v1_quota("-1", "100000"), None);
        assert_eq!(parse_cpu_max("max 100000\n"), None);
        assert_eq!(parse_cpu_max("50000 100000\n"), Some(0.5));
        assert_eq!(parse_cpu_max("200000"), Some(2.0));
        assert_eq!(parse_cpu_list("0-3,6\n"), Some(5));
        assert_eq!(parse_cpu_list("1"), Some(1));
        assert_eq!(parse_cpu_list("0-1,4-7,9"), Some(7));
        assert_eq!(parse_cpu_list("\n"), None);
        assert_eq!(parse_cpu_list("3-1"), None);
        assert_eq!(parse_v1_memory("9223372036854771712\n"), None);
        assert_eq!(parse_v1_memory("536870912\n"), Some(512 << 20));
        assert_eq!(parse_memory_max("max\n"), None);
        assert_eq!(parse_memory_max("1073741824\n"), Some(1 << 30));
    }

    fn fixture(files: &[(&str, &str)]) -> impl Fn(&Path) -> Option<String> {
        let map: HashMap<PathBuf, String> = files
            .iter()
            .map(|(k, v)| (PathBuf::from(k), v.to_string()))
            .collect();
        move |path: &Path| map.get(path).cloned()
    }

    #[test]
    fn the_smallest_limit_along_the_path_wins() {
        let mounts = parse_mountinfo(HYBRID_MOUNTINFO);
        let h = configured_hierarchies(&mounts, Path::new("/a/b"));
        let read = fixture(&[
            (
                "/sys/fs/cgroup/memory/memory.limit_in_bytes",
                "9223372036854771712",
            ),
            ("/sys/fs/cgroup/memory/a/memory.limit_in_bytes", "536870912"),
            (
                "/sys/fs/cgroup/memory/a/b/memory.limit_in_bytes",
                "1073741824",
            ),
            ("/sys/fs/cgroup/cpu/cpu.cfs_quota_us", "-1"),
            ("/sys/fs/cgroup/cpu/cpu.cfs_period_us", "100000"),
            ("/sys/fs/cgroup/cpu/a/cpu.cfs_quota_us", "100000"),
            ("/sys/fs/cgroup/cpu/a/cpu.cfs_period_us", "100000"),
            ("/sys/fs/cgroup/cpu/a/b/cpu.cfs_quota_us", "-1"),
            ("/sys/fs/cgroup/cpu/a/b/cpu.cfs_period_us", "100000"),
            ("/sys/fs/cgroup/cpuset/cpuset.effective_cpus", "0-7"),
            ("/sys/fs/cgroup/cpuset/a/b/cpuset.cpus", "2-4"),
        ]);
        let limits = h.limits(&read);
        assert_eq!(limits.memory, Some(512 << 20));
        assert_eq!(limits.cpu_quota, Some(1.0));
        assert_eq!(limits.cpuset_cpus, Some(3));
    }

    #[test]
    fn unlimited_everywhere_is_no_limit() {
        let mounts = parse_mountinfo(HYBRID_MOUNTINFO);
        let h = own_hierarchies(&mounts, &parse_proc_cgroup(HYBRID_CGROUP));
        let read = fixture(&[
            (
                "/sys/fs/cgroup/memory/memory.limit_in_bytes",
                "9223372036854771712",
            ),
            ("/sys/fs/cgroup/cpu/cpu.cfs_quota_us", "-1"),
            ("/sys/fs/cgroup/cpu/cpu.cfs_period_us", "100000"),
        ]);
        assert_eq!(h.limits(&read), Limits::default());
    }

    #[test]
    fn v2_limits_are_read_from_the_unified_hierarchy() {
        let mounts = parse_mountinfo(V2_MOUNTINFO);
        let h = own_hierarchies(&mounts, &parse_proc_cgroup(V2_CGROUP));
        let read = fixture(&[
            ("/sys/fs/cgroup/cpuset.cpus.effective", "0-3"),
            ("/sys/fs/cgroup/system.slice/cpu.max", "250000 100000"),
            ("/sys/fs/cgroup/system.slice/memory.max", "2147483648"),
            (
                "/sys/fs/cgroup/system.slice/meshrun-agent.service/cpu.max",
                "max 100000",
            ),
            (
                "/sys/fs/cgroup/system.slice/meshrun-agent.service/memory.max",
                "max",
            ),
        ]);
        let limits = h.limits(&read);
        assert_eq!(limits.cpu_quota, Some(2.5));
        assert_eq!(limits.cpuset_cpus, Some(4));
        assert_eq!(limits.memory, Some(2 << 30));
    }
}
