//! Reading `receptor.conf` into the model, with receptor's own rules (see the module docs of
//! [`super`]) and errors that name the item, the action and the field.

use std::collections::BTreeMap;

use super::model::action::{self, EXCLUSIVE, OTHER, SINGLETONS};
use super::model::{
    ControlService, Entry, FirewallAction, FirewallRule, LogLevel, Node, ReceptorConfig,
    TcpListener, TcpPeer, TlsClient, TlsServer, WorkCommand, WorkSigning, WorkVerification,
    YamlValue,
};
use super::yaml::{self, Kind};
use super::{ConfError, EntryAt};
use crate::node_id::NodeId;

/// The largest `receptor.conf` accepted, in bytes. Real ones are under 4 KiB.
pub const MAX_CONF_LEN: usize = 1 << 20;

impl ReceptorConfig {
    /// Parses `receptor.conf` text as receptor would, refusing what it would refuse.
    ///
    /// An empty document is an empty config (receptor then runs with defaults).
    pub fn parse(text: &str) -> Result<Self, ConfError> {
        if text.len() > MAX_CONF_LEN {
            return Err(ConfError::TooLarge {
                len: text.len(),
                max: MAX_CONF_LEN,
            });
        }
        let items = match yaml::load(text)? {
            None => return Ok(ReceptorConfig::default()),
            Some(root) => match root.kind {
                Kind::Seq(items) => items,
                Kind::Scalar(YamlValue::Null) => Vec::new(),
                _ => {
                    return Err(ConfError::NotAList {
                        found: root.describe(),
                    });
                }
            },
        };
        let mut entries = Vec::with_capacity(items.len());
        let mut seen: Vec<(&'static str, usize)> = Vec::new();
        for (index, item) in items.iter().enumerate() {
            let (name, params) = split_item(index, item)?;
            let at = EntryAt {
                index,
                line: item.line,
                action: name.to_string(),
            };
            check_singleton(&at, &mut seen)?;
            entries.push(parse_entry(&at, params)?);
        }
        Ok(ReceptorConfig { entries })
    }
}

/// An item is either a bare action name or a map with exactly one key, the action name.
fn split_item(index: usize, item: &yaml::Node) -> Result<(&str, Option<&yaml::Node>), ConfError> {
    let bad = |problem: String| ConfError::BadItem {
        index,
        line: item.line,
        problem,
    };
    match &item.kind {
        Kind::Scalar(YamlValue::String(name)) => Ok((name, None)),
        Kind::Map(entries) => match entries.as_slice() {
            [(name, params)] => Ok((name, Some(params))),
            _ => Err(bad(format!(
                "an action must be a map with exactly one key, its name; this one has {} keys",
                entries.len()
            ))),
        },
        _ => Err(bad(format!(
            "expected an action (a name, or a map from a name to its fields), found {}",
            item.describe()
        ))),
    }
}

fn check_singleton(at: &EntryAt, seen: &mut Vec<(&'static str, usize)>) -> Result<(), ConfError> {
    let Some(&name) = SINGLETONS.iter().find(|s| **s == at.action) else {
        return Ok(());
    };
    if let Some(&(_, first)) = seen.iter().find(|(n, _)| *n == name) {
        return Err(ConfError::DuplicateSingleton {
            at: at.clone(),
            first,
        });
    }
    seen.push((name, at.index));
    Ok(())
}

fn parse_entry(at: &EntryAt, params: Option<&yaml::Node>) -> Result<Entry, ConfError> {
    let entry = match at.action.as_str() {
        action::NODE => Entry::Node(node(&Fields::new(at, params, NODE_FIELDS)?)?),
        action::LOG_LEVEL => Entry::LogLevel(log_level(&Fields::new(at, params, LOG_FIELDS)?)?),
        action::LOCAL_ONLY => {
            Fields::new(at, params, NO_FIELDS)?;
            Entry::LocalOnly
        }
        action::TCP_LISTENER => {
            Entry::TcpListener(tcp_listener(&Fields::new(at, params, LISTENER_FIELDS)?)?)
        }
        action::TCP_PEER => Entry::TcpPeer(tcp_peer(&Fields::new(at, params, PEER_FIELDS)?)?),
        action::CONTROL_SERVICE => {
            Entry::ControlService(control_service(&Fields::new(at, params, CONTROL_FIELDS)?)?)
        }
        action::TLS_SERVER => {
            Entry::TlsServer(tls_server(&Fields::new(at, params, TLS_SERVER_FIELDS)?)?)
        }
        action::TLS_CLIENT => {
            Entry::TlsClient(tls_client(&Fields::new(at, params, TLS_CLIENT_FIELDS)?)?)
        }
        action::WORK_COMMAND => Entry::WorkCommand(work_command(&Fields::new(
            at,
            params,
            WORK_COMMAND_FIELDS,
        )?)?),
        action::WORK_SIGNING => {
            Entry::WorkSigning(work_signing(&Fields::new(at, params, SIGNING_FIELDS)?)?)
        }
        action::WORK_VERIFICATION => Entry::WorkVerification(WorkVerification {
            publickey: Fields::new(at, params, VERIFICATION_FIELDS)?.req_string("publickey")?,
        }),
        name if OTHER.contains(&name) => Entry::Other {
            key: name.to_string(),
            value: params.map_or(YamlValue::Null, yaml::Node::to_value),
        },
        name if EXCLUSIVE.contains(&name) => {
            return Err(ConfError::ExclusiveAction { at: at.clone() });
        }
        _ => return Err(ConfError::UnknownAction { at: at.clone() }),
    };
    Ok(entry)
}

/// The fields of one action: their names, lowercase, and which one takes a bare value.
struct FieldSet {
    names: &'static [&'static str],
    bare: Option<&'static str>,
}

const NODE_FIELDS: &FieldSet = &FieldSet {
    names: &["id", "datadir", "firewallrules", "maxidleconnectiontimeout"],
    bare: Some("id"),
};
const LOG_FIELDS: &FieldSet = &FieldSet {
    names: &["level"],
    bare: Some("level"),
};
const NO_FIELDS: &FieldSet = &FieldSet {
    names: &[],
    bare: None,
};
const LISTENER_FIELDS: &FieldSet = &FieldSet {
    names: &[
        "port",
        "bindaddr",
        "tls",
        "cost",
        "nodecost",
        "allowedpeers",
    ],
    bare: Some("port"),
};
const PEER_FIELDS: &FieldSet = &FieldSet {
    names: &["address", "redial", "tls", "cost", "allowedpeers"],
    bare: Some("address"),
};
const CONTROL_FIELDS: &FieldSet = &FieldSet {
    names: &[
        "service",
        "filename",
        "permissions",
        "tls",
        "tcplisten",
        "tcptls",
    ],
    bare: None,
};
const TLS_SERVER_FIELDS: &FieldSet = &FieldSet {
    names: &[
        "name",
        "cert",
        "key",
        "requireclientcert",
        "clientcas",
        "pinnedclientcert",
        "skipreceptornamescheck",
        "mintls13",
    ],
    bare: None,
};
const TLS_CLIENT_FIELDS: &FieldSet = &FieldSet {
    names: &[
        "name",
        "cert",
        "key",
        "rootcas",
        "insecureskipverify",
        "pinnedservercert",
        "skipreceptornamescheck",
        "mintls13",
    ],
    bare: None,
};
const WORK_COMMAND_FIELDS: &FieldSet = &FieldSet {
    names: &[
        "worktype",
        "command",
        "params",
        "allowruntimeparams",
        "verifysignature",
    ],
    bare: None,
};
const SIGNING_FIELDS: &FieldSet = &FieldSet {
    names: &["privatekey", "tokenexpiration"],
    bare: Some("privatekey"),
};
const VERIFICATION_FIELDS: &FieldSet = &FieldSet {
    names: &["publickey"],
    bare: Some("publickey"),
};

/// The fields given to one action, by canonical (lowercase) name.
struct Fields<'a> {
    at: &'a EntryAt,
    given: Vec<(&'static str, YamlValue)>,
}

impl<'a> Fields<'a> {
    fn new(
        at: &'a EntryAt,
        params: Option<&yaml::Node>,
        set: &FieldSet,
    ) -> Result<Self, ConfError> {
        let mut fields = Fields {
            at,
            given: Vec::new(),
        };
        let Some(params) = params else {
            return Ok(fields);
        };
        match &params.kind {
            Kind::Scalar(YamlValue::Null) => {}
            Kind::Scalar(YamlValue::String(s)) => match set.bare {
                Some(bare) => fields.given.push((bare, YamlValue::String(s.clone()))),
                None => return Err(fields.bad_params("takes a map of fields, not a bare value")),
            },
            Kind::Map(entries) => {
                for (name, value) in entries {
                    fields.add(set, name, value)?;
                }
            }
            _ => {
                let problem = match set.bare {
                    Some(bare) => format!(
                        "expected a map of fields or a string for `{bare}`, found {} \
                         (receptor only takes a bare value that is a string: quote it)",
                        params.describe()
                    ),
                    None => format!("expected a map of fields, found {}", params.describe()),
                };
                return Err(fields.bad_params(&problem));
            }
        }
        Ok(fields)
    }

    fn add(&mut self, set: &FieldSet, name: &str, value: &yaml::Node) -> Result<(), ConfError> {
        let lower = name.to_lowercase();
        let Some(&canonical) = set.names.iter().find(|n| **n == lower) else {
            return Err(ConfError::UnknownField {
                at: self.at.clone(),
                field: name.chars().take(80).collect(),
                expected: if set.names.is_empty() {
                    "none".to_string()
                } else {
                    set.names.join(", ")
                },
            });
        };
        if self.given.iter().any(|(n, _)| *n == canonical) {
            return Err(ConfError::DuplicateField {
                at: self.at.clone(),
                field: canonical.to_string(),
            });
        }
        self.given.push((canonical, value.to_value()));
        Ok(())
    }

    fn bad_params(&self, problem: &str) -> ConfError {
        ConfError::BadParams {
            at: self.at.clone(),
            problem: problem.to_string(),
        }
    }

    fn bad(&self, field: &str, problem: String) -> ConfError {
        ConfError::BadValue {
            at: self.at.clone(),
            field: field.to_string(),
            problem,
        }
    }

    fn get(&self, name: &str) -> Option<&YamlValue> {
        self.given.iter().find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    /// Converts a present field with `convert`, naming the field in any error.
    fn opt<T>(
        &self,
        name: &str,
        convert: impl FnOnce(&YamlValue) -> Result<T, String>,
    ) -> Result<Option<T>, ConfError> {
        self.get(name)
            .map(|v| convert(v).map_err(|problem| self.bad(name, problem)))
            .transpose()
    }

    fn req<T>(
        &self,
        name: &str,
        convert: impl FnOnce(&YamlValue) -> Result<T, String>,
    ) -> Result<T, ConfError> {
        self.opt(name, convert)?
            .ok_or_else(|| ConfError::MissingField {
                at: self.at.clone(),
                field: name.to_string(),
            })
    }

    fn opt_string(&self, name: &str) -> Result<Option<String>, ConfError> {
        self.opt(name, to_text)
    }

    fn req_string(&self, name: &str) -> Result<String, ConfError> {
        self.req(name, to_text)
    }

    fn opt_bool(&self, name: &str) -> Result<Option<bool>, ConfError> {
        self.opt(name, to_bool)
    }

    fn list(&self, name: &str) -> Result<Vec<String>, ConfError> {
        Ok(self.opt(name, to_text_list)?.unwrap_or_default())
    }

    fn opt_cost(&self, name: &str) -> Result<Option<f64>, ConfError> {
        self.opt(name, to_cost)
    }
}

fn node(f: &Fields) -> Result<Node, ConfError> {
    let id = f.opt("id", |v| {
        let text = to_text(v)?;
        NodeId::new(text).map_err(|e| e.to_string())
    })?;
    let firewallrules = match f.get("firewallrules") {
        None => Vec::new(),
        Some(v) => firewall_rules(f, v)?,
    };
    Ok(Node {
        id,
        datadir: f.opt_string("datadir")?,
        maxidleconnectiontimeout: f.opt_string("maxidleconnectiontimeout")?,
        firewallrules,
    })
}

fn log_level(f: &Fields) -> Result<LogLevel, ConfError> {
    let level = f.opt("level", |v| {
        to_text(v)?.parse::<LogLevel>().map_err(|e| e.to_string())
    })?;
    Ok(level.unwrap_or_default())
}

fn tcp_listener(f: &Fields) -> Result<TcpListener, ConfError> {
    Ok(TcpListener {
        port: f.req("port", to_port)?,
        bindaddr: f.opt_string("bindaddr")?,
        tls: f.opt_string("tls")?,
        cost: f.opt_cost("cost")?,
        nodecost: f.opt("nodecost", to_cost_map)?.unwrap_or_default(),
        allowedpeers: f.list("allowedpeers")?,
    })
}

fn tcp_peer(f: &Fields) -> Result<TcpPeer, ConfError> {
    Ok(TcpPeer {
        address: f.req_string("address")?,
        redial: f.opt_bool("redial")?,
        tls: f.opt_string("tls")?,
        cost: f.opt_cost("cost")?,
        allowedpeers: f.list("allowedpeers")?,
    })
}

fn control_service(f: &Fields) -> Result<ControlService, ConfError> {
    Ok(ControlService {
        service: f.opt_string("service")?,
        filename: f.opt_string("filename")?,
        permissions: f.opt("permissions", to_permissions)?,
        tls: f.opt_string("tls")?,
        tcplisten: f.opt_string("tcplisten")?,
        tcptls: f.opt_string("tcptls")?,
    })
}

fn tls_server(f: &Fields) -> Result<TlsServer, ConfError> {
    Ok(TlsServer {
        name: f.req_string("name")?,
        cert: f.req_string("cert")?,
        key: f.req_string("key")?,
        requireclientcert: f.opt_bool("requireclientcert")?,
        clientcas: f.opt_string("clientcas")?,
        pinnedclientcert: f.list("pinnedclientcert")?,
        skipreceptornamescheck: f.opt_bool("skipreceptornamescheck")?,
        mintls13: f.opt_bool("mintls13")?,
    })
}

fn tls_client(f: &Fields) -> Result<TlsClient, ConfError> {
    let cert = f.opt_string("cert")?;
    let key = f.opt_string("key")?;
    if cert.is_some() != key.is_some() {
        let missing = if cert.is_some() { "key" } else { "cert" };
        return Err(f.bad(
            missing,
            "cert and key must be given together (or neither)".to_string(),
        ));
    }
    Ok(TlsClient {
        name: f.req_string("name")?,
        cert,
        key,
        rootcas: f.opt_string("rootcas")?,
        insecureskipverify: f.opt_bool("insecureskipverify")?,
        pinnedservercert: f.list("pinnedservercert")?,
        skipreceptornamescheck: f.opt_bool("skipreceptornamescheck")?,
        mintls13: f.opt_bool("mintls13")?,
    })
}

fn work_command(f: &Fields) -> Result<WorkCommand, ConfError> {
    Ok(WorkCommand {
        worktype: f.req_string("worktype")?,
        command: f.req_string("command")?,
        params: f.opt_string("params")?,
        allowruntimeparams: f.opt_bool("allowruntimeparams")?,
        verifysignature: f.opt_bool("verifysignature")?,
    })
}

fn work_signing(f: &Fields) -> Result<WorkSigning, ConfError> {
    Ok(WorkSigning {
        privatekey: f.req_string("privatekey")?,
        tokenexpiration: f.opt_string("tokenexpiration")?,
    })
}

const RULE_FIELDS: [&str; 5] = ["action", "fromnode", "tonode", "fromservice", "toservice"];

fn firewall_rules(f: &Fields, value: &YamlValue) -> Result<Vec<FirewallRule>, ConfError> {
    match value {
        YamlValue::Null => Ok(Vec::new()),
        YamlValue::List(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| firewall_rule(f, i, item))
            .collect(),
        other => Err(f.bad(
            "firewallrules",
            format!("expected a list of rules, found {}", other.describe()),
        )),
    }
}

fn firewall_rule(f: &Fields, i: usize, item: &YamlValue) -> Result<FirewallRule, ConfError> {
    let YamlValue::Map(entries) = item else {
        return Err(f.bad(
            &format!("firewallrules[{i}]"),
            format!("expected a map, found {}", item.describe()),
        ));
    };
    let mut values: [Option<String>; 5] = Default::default();
    for (name, value) in entries {
        let lower = name.to_lowercase();
        let field = format!(
            "firewallrules[{i}].{}",
            name.chars().take(80).collect::<String>()
        );
        let Some(slot) = RULE_FIELDS.iter().position(|n| *n == lower) else {
            let problem = format!("unknown key; the keys are {}", RULE_FIELDS.join(", "));
            return Err(f.bad(&field, problem));
        };
        if values[slot].is_some() {
            return Err(f.bad(&field, "given twice (keys are case-insensitive)".into()));
        }
        let YamlValue::String(s) = value else {
            let problem = format!("must be a string, found {} (quote it)", value.describe());
            return Err(f.bad(&field, problem));
        };
        values[slot] = Some(s.clone());
    }
    let [action, fromnode, tonode, fromservice, toservice] = values;
    let field = format!("firewallrules[{i}].action");
    let action = action.ok_or_else(|| f.bad(&field, "is missing".to_string()))?;
    let action = FirewallAction::parse(&action)
        .ok_or_else(|| f.bad(&field, format!("{action:?} is not accept, reject or drop")))?;
    Ok(FirewallRule {
        action,
        fromnode,
        tonode,
        fromservice,
        toservice,
    })
}

/// A string field: receptor also takes integers and booleans and uses their text.
fn to_text(v: &YamlValue) -> Result<String, String> {
    match v {
        YamlValue::String(s) => Ok(s.clone()),
        YamlValue::Int(i) => Ok(i.to_string()),
        YamlValue::Bool(b) => Ok(b.to_string()),
        YamlValue::Null => Err("is empty (null); receptor refuses an empty value".to_string()),
        YamlValue::Float(_) => Err(format!(
            "expected text, found {}; receptor would reformat it as `%f`, quote it instead",
            v.describe()
        )),
        _ => Err(format!("expected text, found {}", v.describe())),
    }
}

/// receptor's boolean words for strings; YAML 1.1 booleans arrive already resolved.
fn receptor_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "Y" | "true" | "TRUE" | "True" | "yes" | "Yes" | "YES" => Some(true),
        "0" | "f" | "F" | "N" | "false" | "FALSE" | "False" | "no" | "No" | "NO" => Some(false),
        _ => None,
    }
}

fn to_bool(v: &YamlValue) -> Result<bool, String> {
    match v {
        YamlValue::Bool(b) => Ok(*b),
        YamlValue::String(s) => receptor_bool(s).ok_or_else(|| {
            format!(
                "{} is not a boolean; receptor accepts true/false, yes/no, 1/0, t/f, Y/N",
                v.describe()
            )
        }),
        YamlValue::Int(_) => Err(format!(
            "expected a boolean, found {}; receptor refuses a plain number here, write true or false",
            v.describe()
        )),
        _ => Err(format!("expected a boolean, found {}", v.describe())),
    }
}

fn to_int(v: &YamlValue) -> Result<i128, String> {
    match v {
        YamlValue::Int(i) => Ok(*i),
        YamlValue::String(s) => yaml::go_parse_int(s).map(i128::from).ok_or_else(|| {
            format!(
                "{} is not an integer (written like 27199, 0660, 0o660 or 0x1b0)",
                v.describe()
            )
        }),
        _ => Err(format!("expected an integer, found {}", v.describe())),
    }
}

fn to_port(v: &YamlValue) -> Result<u16, String> {
    let i = to_int(v)?;
    u16::try_from(i).map_err(|_| format!("port {i} is outside 0-65535"))
}

fn to_permissions(v: &YamlValue) -> Result<u32, String> {
    let i = to_int(v)?;
    u32::try_from(i)
        .ok()
        .filter(|p| *p <= 0o7777)
        .ok_or_else(|| format!("{i} is not a file mode (0 to 0o7777); write it like '0660'"))
}

fn to_cost(v: &YamlValue) -> Result<f64, String> {
    let f = match v {
        YamlValue::Int(i) => *i as f64,
        YamlValue::Float(f) => *f,
        YamlValue::String(s) => {
            yaml::go_parse_float(s).ok_or_else(|| format!("{} is not a number", v.describe()))?
        }
        _ => return Err(format!("expected a number, found {}", v.describe())),
    };
    if f.is_finite() && f > 0.0 {
        Ok(f)
    } else {
        Err(format!("cost {f} must be a positive finite number"))
    }
}

/// A `[]string` field: a list of strings, one string, or a JSON list in a string.
fn to_text_list(v: &YamlValue) -> Result<Vec<String>, String> {
    match v {
        YamlValue::Null => Ok(Vec::new()),
        YamlValue::String(s) if s.starts_with('[') => {
            let items: Vec<serde_json::Value> = serde_json::from_str(s)
                .map_err(|e| format!("a string starting with `[` must be a JSON list: {e}"))?;
            items
                .into_iter()
                .map(|item| match item {
                    serde_json::Value::String(s) => Ok(s),
                    other => Err(format!("JSON list items must be strings, found {other}")),
                })
                .collect()
        }
        YamlValue::String(s) => Ok(vec![s.clone()]),
        YamlValue::List(items) => items
            .iter()
            .map(|item| match item {
                YamlValue::String(s) => Ok(s.clone()),
                other => Err(format!(
                    "list items must be strings, found {} (quote it)",
                    other.describe()
                )),
            })
            .collect(),
        _ => Err(format!(
            "expected a list of strings, found {}",
            v.describe()
        )),
    }
}

/// A `map[string]float64` field: a map, or a JSON object in a string.
fn to_cost_map(v: &YamlValue) -> Result<BTreeMap<String, f64>, String> {
    let pairs: Vec<(String, YamlValue)> = match v {
        YamlValue::Null => Vec::new(),
        YamlValue::Map(entries) => entries.clone(),
        YamlValue::String(s) if s.starts_with('{') => {
            let map: serde_json::Map<String, serde_json::Value> = serde_json::from_str(s)
                .map_err(|e| format!("a string starting with `{{` must be a JSON object: {e}"))?;
            map.into_iter()
                .map(|(k, v)| match v.as_f64() {
                    Some(f) => Ok((k, YamlValue::Float(f))),
                    None => Err(format!("cost for {k:?} must be a number, found {v}")),
                })
                .collect::<Result<_, _>>()?
        }
        _ => {
            return Err(format!(
                "expected a map of node to cost, found {}",
                v.describe()
            ));
        }
    };
    pairs
        .into_iter()
        .map(|(node, cost)| {
            let cost = match cost {
                YamlValue::String(_) => Err(format!("cost for {node:?} must be a number")),
                other => to_cost(&other).map_err(|e| format!("node {node:?}: {e}")),
            }?;
            Ok((node, cost))
        })
        .collect()
}
