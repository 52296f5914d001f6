//! Which modules an ad hoc command may run (AWX's `AD_HOC_COMMANDS` setting): the default list,
//! the syntax of a module name, and matching a requested name against the configured list, where
//! a module of ansible-core may be named short (`ping`) or qualified (`ansible.builtin.ping`).

use std::collections::BTreeSet;

/// The modules allowed when the config names none (AWX's default list).
pub const DEFAULT_ALLOWED: [&str; 19] = [
    "command",
    "shell",
    "yum",
    "apt",
    "apt_key",
    "apt_repository",
    "apt_rpm",
    "service",
    "group",
    "user",
    "mount",
    "ping",
    "selinux",
    "setup",
    "win_ping",
    "win_service",
    "win_updates",
    "win_group",
    "win_user",
];

/// The collection ansible-core's own modules live in.
const BUILTIN_PREFIX: &str = "ansible.builtin.";

/// Modules shipped by ansible-core (as of 2.19, plus `yum`, which it still routes to `dnf`):
/// only these may also be written with the `ansible.builtin.` prefix.
const BUILTIN: &[&str] = &[
    "add_host",
    "apt",
    "apt_key",
    "apt_repository",
    "assemble",
    "assert",
    "async_status",
    "blockinfile",
    "command",
    "copy",
    "cron",
    "deb822_repository",
    "debconf",
    "debug",
    "dnf",
    "dnf5",
    "dpkg_selections",
    "expect",
    "fail",
    "fetch",
    "file",
    "find",
    "gather_facts",
    "get_url",
    "getent",
    "git",
    "group",
    "group_by",
    "hostname",
    "include_vars",
    "iptables",
    "known_hosts",
    "lineinfile",
    "meta",
    "mount_facts",
    "package",
    "package_facts",
    "pause",
    "ping",
    "pip",
    "raw",
    "reboot",
    "replace",
    "rpm_key",
    "script",
    "service",
    "service_facts",
    "set_fact",
    "set_stats",
    "setup",
    "shell",
    "slurp",
    "stat",
    "subversion",
    "systemd",
    "systemd_service",
    "sysvinit",
    "tempfile",
    "template",
    "unarchive",
    "uri",
    "user",
    "wait_for",
    "wait_for_connection",
    "yum",
    "yum_repository",
];

/// The default list as owned strings (the config's serde default).
pub fn default_allowed() -> Vec<String> {
    DEFAULT_ALLOWED.iter().map(|m| m.to_string()).collect()
}

/// Why a module name is not a module name.
pub fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 256
        && !name.starts_with('.')
        && !name.ends_with('.')
        && !name.contains("..")
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a module name (letters, digits, '_' and '.'-separated collection parts)"
        ))
    }
}

/// The short name of an ansible-core module written qualified; any other name unchanged.
fn canonical(name: &str) -> &str {
    match name.strip_prefix(BUILTIN_PREFIX) {
        Some(short) if BUILTIN.contains(&short) => short,
        _ => name,
    }
}

/// The configured allow-list.
#[derive(Debug, Clone)]
pub struct AllowedModules {
    /// As configured, in order, for messages.
    listed: Vec<String>,
    /// Canonical names, for matching.
    canonical: BTreeSet<String>,
}

impl AllowedModules {
    /// The list `names` (already checked with [`check_name`]).
    pub fn new(names: &[String]) -> Self {
        AllowedModules {
            listed: names.to_vec(),
            canonical: names.iter().map(|n| canonical(n).to_string()).collect(),
        }
    }

    /// Whether `module` may run as an ad hoc command.
    pub fn allows(&self, module: &str) -> bool {
        self.canonical.contains(canonical(module))
    }

    /// The allowed modules as configured, comma-separated (for a refusal's message).
    pub fn describe(&self) -> String {
        if self.listed.is_empty() {
            "none (ad hoc commands are disabled)".to_string()
        } else {
            self.listed.join(", ")
        }
    }
}

impl Default for AllowedModules {
    fn default() -> Self {
        AllowedModules::new(&default_allowed())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_list_allows_awx_modules_short_and_builtin_ones_qualified() {
        let allowed = AllowedModules::default();
        for m in [
            "command",
            "shell",
            "ping",
            "setup",
            "win_ping",
            "apt_rpm",
            "ansible.builtin.ping",
            "ansible.builtin.command",
            "ansible.builtin.shell",
            "ansible.builtin.yum",
        ] {
            assert!(allowed.allows(m), "{m}");
        }
        for m in [
            "raw",
            "script",
            "copy",
            "ansible.builtin.raw",
            "ansible.builtin.script",
            // Not an ansible-core module, so only its short name as listed matches.
            "ansible.builtin.win_ping",
            "ansible.builtin.mount",
            "community.general.ping",
            "",
            "Ping",
        ] {
            assert!(!allowed.allows(m), "{m}");
        }
    }

    #[test]
    fn a_qualified_entry_also_allows_the_short_name() {
        let allowed = AllowedModules::new(&["ansible.builtin.debug".into(), "ns.coll.mod".into()]);
        assert!(allowed.allows("debug"));
        assert!(allowed.allows("ansible.builtin.debug"));
        assert!(allowed.allows("ns.coll.mod"));
        assert!(!allowed.allows("mod"));
        assert_eq!(allowed.describe(), "ansible.builtin.debug, ns.coll.mod");
    }

    #[test]
    fn an_empty_list_allows_nothing_and_says_so() {
        let allowed = AllowedModules::new(&[]);
        assert!(!allowed.allows("ping"));
        assert!(allowed.describe().contains("disabled"));
    }

    #[test]
    fn module_names_are_checked() {
        for good in ["ping", "ansible.builtin.ping", "ns.coll.my_mod2"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in ["", ".ping", "ping.", "a..b", "ping -a", "a/b", "pi\0ng"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }
}
