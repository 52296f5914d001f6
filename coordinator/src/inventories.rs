//! Stored inventories' content: reading `ansible-inventory --list --export` output (what an
//! inventory update brings back, and the shape static content is given in) with strict checks,
//! and rendering stored content into inventory text a job's private data dir can carry.
//!
//! The rendered text is a YAML inventory written as JSON (JSON is YAML), which ansible's `yaml`
//! inventory plugin reads from a file without extension such as `inventory/hosts`.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value, json};

/// Largest `--list` output accepted.
pub const MAX_LIST_BYTES: usize = 32 << 20;
/// Most hosts one inventory may hold.
pub const MAX_HOSTS: usize = 100_000;
/// Most groups one inventory may hold.
pub const MAX_GROUPS: usize = 10_000;
/// Longest host or group name.
pub const MAX_NAME_LEN: usize = 255;

/// One group: its own variables, the hosts directly in it, and its child groups.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GroupContent {
    /// The group's variables.
    pub variables: Map<String, Value>,
    /// Hosts directly in the group.
    pub hosts: BTreeSet<String>,
    /// Child group names.
    pub children: BTreeSet<String>,
}

/// An inventory's hosts, groups and variables. Every host is in `all` implicitly; `groups`
/// never holds `all` or `ungrouped` (ansible derives both).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct InventoryContent {
    /// The `all` group's variables.
    pub variables: Map<String, Value>,
    /// Every host with its own variables.
    pub hosts: BTreeMap<String, Map<String, Value>>,
    /// Groups by name.
    pub groups: BTreeMap<String, GroupContent>,
}

/// Why inventory content was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContentError {
    /// Larger than [`MAX_LIST_BYTES`].
    #[error("the inventory is {0} bytes; at most {MAX_LIST_BYTES} are accepted")]
    TooLarge(usize),
    /// Not JSON.
    #[error("the inventory is not valid JSON: {0}")]
    NotJson(String),
    /// JSON, but not the `--list` shape.
    #[error("the inventory does not have the `ansible-inventory --list` shape: {0}")]
    Shape(String),
    /// A host or group name that cannot be stored or rendered safely.
    #[error("invalid {what} name {name:?}: {why}")]
    BadName {
        /// `host` or `group`.
        what: &'static str,
        /// The name (cut to 80 characters).
        name: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// Too many hosts or groups.
    #[error("the inventory has more than {limit} {what}")]
    TooMany {
        /// `hosts` or `groups`.
        what: &'static str,
        /// The limit.
        limit: usize,
    },
    /// Groups that are their own ancestors.
    #[error("group {0:?} is its own ancestor (a cycle of children)")]
    Cycle(String),
}

fn cut(name: &str) -> String {
    name.chars().take(80).collect()
}

/// Checks a host name: it ends up as a key of the rendered inventory, and the `yaml` plugin
/// would expand `[a:b]` ranges, so brackets, commas and whitespace are refused.
pub fn check_host_name(name: &str) -> Result<(), ContentError> {
    let bad = |why| {
        Err(ContentError::BadName {
            what: "host",
            name: cut(name),
            why,
        })
    };
    if name.is_empty() {
        return bad("it is empty");
    }
    if name.len() > MAX_NAME_LEN {
        return bad("it is longer than 255 bytes");
    }
    if name
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '[' | ']' | ',' | '#'))
    {
        return bad("it contains whitespace, a control character, '[', ']', ',' or '#'");
    }
    Ok(())
}

/// Checks a group name: letters, digits, `_`, `-` and `.`, not `all` or `ungrouped`'s
/// reserved roles (the caller handles those two).
pub fn check_group_name(name: &str) -> Result<(), ContentError> {
    let bad = |why| {
        Err(ContentError::BadName {
            what: "group",
            name: cut(name),
            why,
        })
    };
    if name.is_empty() {
        return bad("it is empty");
    }
    if name.len() > MAX_NAME_LEN {
        return bad("it is longer than 255 bytes");
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    {
        return bad("only letters, digits, '_', '-' and '.' are allowed");
    }
    Ok(())
}

fn shape(msg: impl Into<String>) -> ContentError {
    ContentError::Shape(msg.into())
}

fn names(value: Option<&Value>, what: &str) -> Result<Vec<String>, ContentError> {
    match value {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| shape(format!("{what} must list names (strings)")))
            })
            .collect(),
        Some(_) => Err(shape(format!("{what} must be a list of names"))),
    }
}

fn vars(value: Option<&Value>, what: &str) -> Result<Map<String, Value>, ContentError> {
    match value {
        None | Some(Value::Null) => Ok(Map::new()),
        Some(Value::Object(m)) => Ok(m.clone()),
        Some(_) => Err(shape(format!("{what} must be an object"))),
    }
}

/// Reads `ansible-inventory --list [--export]` output: an object of groups (each with only
/// `hosts` and `children` name lists and a `vars` object) and `_meta.hostvars`.
pub fn parse_list(bytes: &[u8]) -> Result<InventoryContent, ContentError> {
    if bytes.len() > MAX_LIST_BYTES {
        return Err(ContentError::TooLarge(bytes.len()));
    }
    let value: Value =
        serde_json::from_slice(bytes).map_err(|e| ContentError::NotJson(e.to_string()))?;
    from_list_value(&value)
}

/// [`parse_list`] for an already decoded value.
pub fn from_list_value(value: &Value) -> Result<InventoryContent, ContentError> {
    let Value::Object(top) = value else {
        return Err(shape("the top level must be an object"));
    };
    let mut content = InventoryContent::default();
    let add_host = |content: &mut InventoryContent, name: &str| -> Result<(), ContentError> {
        check_host_name(name)?;
        if !content.hosts.contains_key(name) {
            if content.hosts.len() >= MAX_HOSTS {
                return Err(ContentError::TooMany {
                    what: "hosts",
                    limit: MAX_HOSTS,
                });
            }
            content.hosts.insert(name.to_string(), Map::new());
        }
        Ok(())
    };
    if let Some(meta) = top.get("_meta") {
        let Value::Object(meta) = meta else {
            return Err(shape("_meta must be an object"));
        };
        if let Some(k) = meta
            .keys()
            .find(|k| !matches!(k.as_str(), "hostvars" | "profile"))
        {
            return Err(shape(format!("_meta has an unexpected key {:?}", cut(k))));
        }
        match meta.get("hostvars") {
            None | Some(Value::Null) => {}
            Some(Value::Object(hostvars)) => {
                for (host, hv) in hostvars {
                    add_host(&mut content, host)?;
                    let hv = vars(Some(hv), &format!("_meta.hostvars[{:?}]", cut(host)))?;
                    content.hosts.insert(host.clone(), hv);
                }
            }
            Some(_) => return Err(shape("_meta.hostvars must be an object")),
        }
    }
    // Children first collected by name, then resolved, so order in the object does not matter.
    let mut referenced: BTreeSet<String> = BTreeSet::new();
    for (name, body) in top {
        if name == "_meta" {
            continue;
        }
        let Value::Object(body) = body else {
            return Err(shape(format!("group {:?} must be an object", cut(name))));
        };
        if let Some(k) = body
            .keys()
            .find(|k| !matches!(k.as_str(), "hosts" | "children" | "vars"))
        {
            return Err(shape(format!(
                "group {:?} has an unexpected key {:?} (only hosts, children and vars)",
                cut(name),
                cut(k)
            )));
        }
        let hosts = names(body.get("hosts"), &format!("{:?}.hosts", cut(name)))?;
        let children = names(body.get("children"), &format!("{:?}.children", cut(name)))?;
        let group_vars = vars(body.get("vars"), &format!("{:?}.vars", cut(name)))?;
        for h in &hosts {
            add_host(&mut content, h)?;
        }
        match name.as_str() {
            // Every group is a child of `all` anyway; its hosts and vars are the inventory's.
            "all" => content.variables = group_vars,
            "ungrouped" => {
                if !children.is_empty() || !group_vars.is_empty() {
                    return Err(shape("ungrouped can hold hosts only"));
                }
            }
            _ => {
                check_group_name(name)?;
                for c in &children {
                    if c == "all" {
                        return Err(shape(format!("group {:?} names all as a child", cut(name))));
                    }
                    if c != "ungrouped" {
                        check_group_name(c)?;
                        referenced.insert(c.clone());
                    }
                }
                let group = content.groups.entry(name.clone()).or_default();
                group.variables = group_vars;
                group.hosts.extend(hosts);
                group
                    .children
                    .extend(children.into_iter().filter(|c| c != "ungrouped"));
            }
        }
        if content.groups.len() > MAX_GROUPS {
            return Err(ContentError::TooMany {
                what: "groups",
                limit: MAX_GROUPS,
            });
        }
    }
    // A child listed without a body of its own is an empty group.
    for name in referenced {
        content.groups.entry(name).or_default();
    }
    if content.groups.len() > MAX_GROUPS {
        return Err(ContentError::TooMany {
            what: "groups",
            limit: MAX_GROUPS,
        });
    }
    check_acyclic(&content.groups)?;
    Ok(content)
}

fn check_acyclic(groups: &BTreeMap<String, GroupContent>) -> Result<(), ContentError> {
    // Iterative depth-first search: 0 unseen, 1 on the path, 2 done.
    let mut mark: BTreeMap<&str, u8> = BTreeMap::new();
    for start in groups.keys() {
        if mark.get(start.as_str()).copied().unwrap_or(0) != 0 {
            continue;
        }
        let mut stack: Vec<(&str, Vec<&str>)> = vec![(start, children_of(groups, start))];
        mark.insert(start, 1);
        while let Some((node, pending)) = stack.last_mut() {
            match pending.pop() {
                Some(child) => match mark.get(child).copied().unwrap_or(0) {
                    0 => {
                        mark.insert(child, 1);
                        let next = children_of(groups, child);
                        stack.push((child, next));
                    }
                    1 => return Err(ContentError::Cycle(cut(child))),
                    _ => {}
                },
                None => {
                    mark.insert(node, 2);
                    stack.pop();
                }
            }
        }
    }
    Ok(())
}

fn children_of<'a>(groups: &'a BTreeMap<String, GroupContent>, name: &str) -> Vec<&'a str> {
    groups
        .get(name)
        .map(|g| g.children.iter().map(String::as_str).collect())
        .unwrap_or_default()
}

/// Inventory text for a job and the number of hosts in it.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    /// A YAML inventory written as JSON.
    pub text: String,
    /// Distinct hosts.
    pub host_count: i64,
}

/// Renders stored content as a YAML inventory (in JSON syntax): every host with its variables
/// under `all.hosts`, every group under `all.children` with its variables, its direct hosts and
/// its children by name (the `yaml` plugin merges a group's mentions).
pub fn render(content: &InventoryContent) -> Rendered {
    let mut all = Map::new();
    if !content.variables.is_empty() {
        all.insert("vars".into(), Value::Object(content.variables.clone()));
    }
    if !content.hosts.is_empty() {
        let hosts: Map<String, Value> = content
            .hosts
            .iter()
            .map(|(h, v)| (h.clone(), Value::Object(v.clone())))
            .collect();
        all.insert("hosts".into(), Value::Object(hosts));
    }
    if !content.groups.is_empty() {
        let mut children = Map::new();
        for (name, g) in &content.groups {
            let mut body = Map::new();
            if !g.variables.is_empty() {
                body.insert("vars".into(), Value::Object(g.variables.clone()));
            }
            if !g.hosts.is_empty() {
                let hosts: Map<String, Value> =
                    g.hosts.iter().map(|h| (h.clone(), json!({}))).collect();
                body.insert("hosts".into(), Value::Object(hosts));
            }
            if !g.children.is_empty() {
                let kids: Map<String, Value> =
                    g.children.iter().map(|c| (c.clone(), json!({}))).collect();
                body.insert("children".into(), Value::Object(kids));
            }
            children.insert(name.clone(), Value::Object(body));
        }
        all.insert("children".into(), Value::Object(children));
    }
    let doc = json!({ "all": Value::Object(all) });
    Rendered {
        text: format!("{doc:#}\n"),
        host_count: i64::try_from(content.hosts.len()).unwrap_or(i64::MAX),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCRIPT_OUTPUT: &str = r#"{
        "_meta": {"hostvars": {"web1": {"ansible_connection": "local"},
                               "web2": {"ansible_connection": "local", "port": 8080}},
                  "profile": "inventory_legacy"},
        "all": {"children": ["ungrouped", "web", "dc"], "vars": {"env": "test"}},
        "ungrouped": {"hosts": ["lonely"]},
        "web": {"hosts": ["web1", "web2"], "vars": {"greeting": "hi"}},
        "dc": {"children": ["web", "empty"]}
    }"#;

    #[test]
    fn list_output_is_read_into_hosts_groups_and_vars() {
        let c = parse_list(SCRIPT_OUTPUT.as_bytes()).unwrap();
        assert_eq!(
            c.hosts.keys().collect::<Vec<_>>(),
            ["lonely", "web1", "web2"]
        );
        assert_eq!(c.hosts["web2"]["port"], 8080);
        assert!(c.hosts["lonely"].is_empty());
        assert_eq!(c.variables["env"], "test");
        assert_eq!(c.groups.keys().collect::<Vec<_>>(), ["dc", "empty", "web"]);
        assert_eq!(c.groups["web"].variables["greeting"], "hi");
        assert_eq!(
            c.groups["web"].hosts.iter().collect::<Vec<_>>(),
            ["web1", "web2"]
        );
        assert_eq!(
            c.groups["dc"].children.iter().collect::<Vec<_>>(),
            ["empty", "web"]
        );
        assert_eq!(c.groups["empty"], GroupContent::default());
    }

    #[test]
    fn an_empty_list_is_an_empty_inventory() {
        let c = parse_list(br#"{"_meta": {"hostvars": {}}, "all": {"children": ["ungrouped"]}}"#)
            .unwrap();
        assert_eq!(c, InventoryContent::default());
    }

    #[test]
    fn wrong_shapes_are_refused_with_a_reason() {
        let refused = |text: &str| parse_list(text.as_bytes()).unwrap_err().to_string();
        assert!(refused("not json").contains("not valid JSON"));
        assert!(refused("[1, 2]").contains("top level must be an object"));
        assert!(refused(r#"{"web": ["a", "b"]}"#).contains("must be an object"));
        assert!(refused(r#"{"web": {"hosts": "a"}}"#).contains("list of names"));
        assert!(refused(r#"{"web": {"hosts": [1]}}"#).contains("names (strings)"));
        assert!(refused(r#"{"web": {"vars": []}}"#).contains("must be an object"));
        assert!(refused(r#"{"web": {"hostz": []}}"#).contains("unexpected key"));
        assert!(refused(r#"{"_meta": {"hostvars": {"a": 1}}}"#).contains("must be an object"));
        assert!(refused(r#"{"_meta": {"hostvars": []}}"#).contains("hostvars must be"));
        assert!(refused(r#"{"_meta": {"other": 1}}"#).contains("unexpected key"));
        assert!(refused(r#"{"web": {"children": ["all"]}}"#).contains("names all"));
        assert!(refused(r#"{"ungrouped": {"vars": {"a": 1}}}"#).contains("hosts only"));
    }

    #[test]
    fn hostile_names_are_refused() {
        for host in [
            "",
            "web[1:3]",
            "a b",
            "a,b",
            "a\nb",
            "x#y",
            &"h".repeat(256),
        ] {
            let text = json!({"g": {"hosts": [host]}}).to_string();
            let e = parse_list(text.as_bytes()).unwrap_err();
            assert!(
                matches!(e, ContentError::BadName { what: "host", .. }),
                "{host:?}: {e}"
            );
        }
        for group in ["we b", "../x", "g/h", "g:children", ""] {
            let text = json!({ group: {"hosts": ["h"]} }).to_string();
            let e = parse_list(text.as_bytes()).unwrap_err();
            assert!(
                matches!(e, ContentError::BadName { what: "group", .. }),
                "{group:?}: {e}"
            );
        }
        // IPv6 addresses and dotted names are ordinary hosts.
        parse_list(br#"{"g": {"hosts": ["fe80::1", "db.example.com", "host-1_x"]}}"#).unwrap();
    }

    #[test]
    fn cycles_and_oversize_input_are_refused() {
        let e = parse_list(
            br#"{"a": {"children": ["b"]}, "b": {"children": ["c"]}, "c": {"children": ["a"]}}"#,
        )
        .unwrap_err();
        assert!(matches!(e, ContentError::Cycle(_)), "{e}");
        let e = parse_list(br#"{"a": {"children": ["a"]}}"#).unwrap_err();
        assert!(matches!(e, ContentError::Cycle(_)), "{e}");
        // A diamond is not a cycle.
        parse_list(br#"{"a": {"children": ["b", "c"]}, "b": {"children": ["d"]}, "c": {"children": ["d"]}}"#)
            .unwrap();
        let big = vec![b' '; MAX_LIST_BYTES + 1];
        assert!(matches!(parse_list(&big), Err(ContentError::TooLarge(_))));
        let many: Vec<String> = (0..=MAX_HOSTS).map(|i| format!("h{i}")).collect();
        let text = json!({"g": {"hosts": many}}).to_string();
        assert!(matches!(
            parse_list(text.as_bytes()),
            Err(ContentError::TooMany { what: "hosts", .. })
        ));
    }

    #[test]
    fn render_gives_every_host_its_vars_and_every_group_its_members() {
        let c = parse_list(SCRIPT_OUTPUT.as_bytes()).unwrap();
        let r = render(&c);
        assert_eq!(r.host_count, 3);
        let doc: Value = serde_json::from_str(&r.text).unwrap();
        let all = &doc["all"];
        assert_eq!(all["vars"], json!({"env": "test"}));
        assert_eq!(
            all["hosts"]["web2"],
            json!({"ansible_connection": "local", "port": 8080})
        );
        assert_eq!(all["hosts"]["lonely"], json!({}));
        assert_eq!(
            all["children"]["web"],
            json!({"vars": {"greeting": "hi"}, "hosts": {"web1": {}, "web2": {}}})
        );
        assert_eq!(
            all["children"]["dc"],
            json!({"children": {"empty": {}, "web": {}}})
        );
        assert_eq!(all["children"]["empty"], json!({}));
        assert_eq!(doc.as_object().unwrap().len(), 1, "only `all` at the top");
    }

    #[test]
    fn render_of_an_empty_inventory_is_valid() {
        let r = render(&InventoryContent::default());
        assert_eq!(r.host_count, 0);
        assert_eq!(
            serde_json::from_str::<Value>(&r.text).unwrap(),
            json!({"all": {}})
        );
    }
}
