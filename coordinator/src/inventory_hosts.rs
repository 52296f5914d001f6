//! Counts the hosts of a static inventory (INI or YAML), for a job's `task_impact`. When the
//! hosts cannot be counted (a script, a plugin file, unparseable text) the answer is `None` and
//! the job's forks stand in, as AWX does.

use std::collections::BTreeSet;

use yaml_rust2::{Yaml, YamlLoader};

/// Hosts in `text`, or None when it is not a static inventory this can read.
pub fn count_hosts(text: &str) -> Option<i64> {
    let trimmed = text.trim_start();
    if trimmed.starts_with("#!") {
        return None;
    }
    let hosts = match YamlLoader::load_from_str(text) {
        // A YAML mapping is a YAML inventory or something else (a plugin file): never INI.
        Ok(docs) if matches!(docs.first(), Some(Yaml::Hash(_))) => yaml_hosts(&docs[0])?,
        _ => ini_hosts(text)?,
    };
    i64::try_from(hosts.len()).ok()
}

fn yaml_hosts(doc: &Yaml) -> Option<BTreeSet<String>> {
    let Yaml::Hash(top) = doc else {
        return None;
    };
    // A YAML inventory's top level maps group names to group bodies.
    if !top
        .values()
        .all(|v| matches!(v, Yaml::Hash(_) | Yaml::Null))
    {
        return None;
    }
    let mut hosts = BTreeSet::new();
    for body in top.values() {
        collect_group(body, &mut hosts, 0);
    }
    Some(hosts)
}

fn collect_group(body: &Yaml, hosts: &mut BTreeSet<String>, depth: usize) {
    if depth > 64 {
        return;
    }
    let Yaml::Hash(map) = body else { return };
    if let Some(Yaml::Hash(h)) = map.get(&Yaml::String("hosts".into())) {
        for name in h.keys() {
            if let Some(n) = name.as_str() {
                hosts.extend(expand_range(n));
            }
        }
    }
    if let Some(Yaml::Hash(children)) = map.get(&Yaml::String("children".into())) {
        for child in children.values() {
            collect_group(child, hosts, depth + 1);
        }
    }
}

fn ini_hosts(text: &str) -> Option<BTreeSet<String>> {
    let mut hosts = BTreeSet::new();
    let mut section_kind = "hosts";
    for raw in text.lines() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section_kind = match name.rsplit_once(':') {
                Some((_, "vars")) => "vars",
                Some((_, "children")) => "children",
                _ => "hosts",
            };
            continue;
        }
        if section_kind != "hosts" {
            continue;
        }
        let name = line.split_whitespace().next()?;
        if name.contains('=') {
            return None;
        }
        hosts.extend(expand_range(name));
    }
    Some(hosts)
}

/// Expands one `[a:b]` numeric or alphabetic range (`web[01:03]` → web01, web02, web03).
fn expand_range(name: &str) -> Vec<String> {
    let (Some(open), Some(close)) = (name.find('['), name.find(']')) else {
        return vec![name.to_string()];
    };
    if close < open {
        return vec![name.to_string()];
    }
    let (head, inner, tail) = (&name[..open], &name[open + 1..close], &name[close + 1..]);
    let mut parts = inner.split(':');
    let (Some(a), Some(b)) = (parts.next(), parts.next()) else {
        return vec![name.to_string()];
    };
    let step: usize = parts
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1)
        .max(1);
    let mut out = Vec::new();
    if let (Ok(x), Ok(y)) = (a.parse::<u64>(), b.parse::<u64>()) {
        let width = if a.starts_with('0') { a.len() } else { 0 };
        for n in (x..=y).step_by(step).take(100_000) {
            out.push(format!("{head}{n:0width$}{tail}"));
        }
    } else if let (Some(x), Some(y)) = (single_char(a), single_char(b)) {
        for c in (x..=y).step_by(step) {
            out.push(format!("{head}{}{tail}", c as char));
        }
    } else {
        out.push(name.to_string());
    }
    out
}

fn single_char(s: &str) -> Option<u8> {
    match s.as_bytes() {
        [c] if c.is_ascii_alphabetic() => Some(*c),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ini_groups_vars_children_and_ranges() {
        let ini = "localhost ansible_connection=local\n\n[web]\nweb[01:03].example.com\nshared\n\n\
                   [db]\nshared\ndb-a\n\n[db:vars]\nport=5432\n\n[all:children]\nweb\ndb\n";
        assert_eq!(count_hosts(ini), Some(6));
        assert_eq!(count_hosts("[g]\nh[a:c]\n"), Some(3));
        assert_eq!(count_hosts(""), Some(0));
    }

    #[test]
    fn yaml_inventories() {
        let y = "all:\n  hosts:\n    a:\n    b:\n  children:\n    web:\n      hosts:\n        w[1:2]:\n        a:\n";
        assert_eq!(count_hosts(y), Some(4));
    }

    #[test]
    fn scripts_and_plugins_are_not_counted() {
        assert_eq!(count_hosts("#!/usr/bin/env python3\nprint('{}')\n"), None);
        assert_eq!(
            count_hosts("plugin: amazon.aws.aws_ec2\nregions: [eu-west-1]\n"),
            None
        );
    }
}
