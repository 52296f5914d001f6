//! Writing the model as `receptor.conf` text, by hand and byte-stable.
//!
//! receptor compares non-reloadable entries textually, and meshrun restarts receptor when they
//! change, so the same model must always give the same bytes. Every entry is turned into a
//! [`YamlValue`] with its fields in a fixed order, then written in block style with two-space
//! steps (entry bodies at four spaces, as AWX writes them). A string is written plain only when it
//! cannot be read back as anything else by YAML 1.1 or 1.2; otherwise it is double-quoted with
//! escapes. File modes are written as quoted octal (`"0660"`), which receptor reads as octal and no
//! YAML version can misread.

use std::fmt::Write as _;

use super::model::{
    ControlService, Entry, FirewallRule, Node, ReceptorConfig, TcpListener, TcpPeer, TlsClient,
    TlsServer, WorkCommand, YamlValue,
};
use super::yaml::resolve_plain;

impl ReceptorConfig {
    /// Renders the config: `---`, then one `- action:` item per entry, in order.
    ///
    /// `ReceptorConfig::parse(&c.render()) == Ok(c)` for every `c` that `parse` can produce.
    pub fn render(&self) -> String {
        let mut out = String::from("---\n");
        for entry in &self.entries {
            let value = entry_value(entry);
            out.push_str("- ");
            write_key(&mut out, entry.action());
            if !matches!(value, YamlValue::Null) {
                out.push(':');
                write_after_key(&mut out, &value, 2);
            } else {
                out.push('\n');
            }
        }
        out
    }
}

/// Builds a map from `(name, value)` pairs, leaving out absent ones.
#[derive(Default)]
struct MapBuilder(Vec<(String, YamlValue)>);

impl MapBuilder {
    fn put(mut self, name: &str, value: impl Into<Option<YamlValue>>) -> Self {
        if let Some(v) = value.into() {
            self.0.push((name.to_string(), v));
        }
        self
    }

    fn text(self, name: &str, value: Option<&String>) -> Self {
        self.put(name, value.map(|s| YamlValue::String(s.clone())))
    }

    fn flag(self, name: &str, value: Option<bool>) -> Self {
        self.put(name, value.map(YamlValue::Bool))
    }

    fn list(self, name: &str, items: &[String]) -> Self {
        let value = (!items.is_empty())
            .then(|| YamlValue::List(items.iter().cloned().map(YamlValue::String).collect()));
        self.put(name, value)
    }

    fn cost(self, name: &str, value: Option<f64>) -> Self {
        self.put(name, value.map(YamlValue::Float))
    }

    fn build(self) -> YamlValue {
        YamlValue::Map(self.0)
    }
}

fn entry_value(entry: &Entry) -> YamlValue {
    match entry {
        Entry::Node(n) => node_value(n),
        Entry::LogLevel(level) => MapBuilder::default()
            .put("level", YamlValue::String(level.as_str().to_string()))
            .build(),
        Entry::LocalOnly => YamlValue::Null,
        Entry::TcpListener(l) => listener_value(l),
        Entry::TcpPeer(p) => peer_value(p),
        Entry::ControlService(c) => control_value(c),
        Entry::TlsServer(t) => tls_server_value(t),
        Entry::TlsClient(t) => tls_client_value(t),
        Entry::WorkCommand(w) => work_command_value(w),
        Entry::WorkSigning(w) => MapBuilder::default()
            .text("privatekey", Some(&w.privatekey))
            .text("tokenexpiration", w.tokenexpiration.as_ref())
            .build(),
        Entry::WorkVerification(w) => MapBuilder::default()
            .text("publickey", Some(&w.publickey))
            .build(),
        Entry::Other { value, .. } => value.clone(),
    }
}

fn node_value(n: &Node) -> YamlValue {
    let rules = (!n.firewallrules.is_empty())
        .then(|| YamlValue::List(n.firewallrules.iter().map(rule_value).collect()));
    MapBuilder::default()
        .put(
            "id",
            n.id.as_ref().map(|id| YamlValue::String(id.to_string())),
        )
        .text("datadir", n.datadir.as_ref())
        .text(
            "maxidleconnectiontimeout",
            n.maxidleconnectiontimeout.as_ref(),
        )
        .put("firewallrules", rules)
        .build()
}

fn rule_value(r: &FirewallRule) -> YamlValue {
    MapBuilder::default()
        .put("action", YamlValue::String(r.action.as_str().to_string()))
        .text("fromnode", r.fromnode.as_ref())
        .text("tonode", r.tonode.as_ref())
        .text("fromservice", r.fromservice.as_ref())
        .text("toservice", r.toservice.as_ref())
        .build()
}

fn listener_value(l: &TcpListener) -> YamlValue {
    let nodecost = (!l.nodecost.is_empty()).then(|| {
        YamlValue::Map(
            l.nodecost
                .iter()
                .map(|(node, cost)| (node.clone(), YamlValue::Float(*cost)))
                .collect(),
        )
    });
    MapBuilder::default()
        .put("port", YamlValue::Int(i128::from(l.port)))
        .text("bindaddr", l.bindaddr.as_ref())
        .text("tls", l.tls.as_ref())
        .cost("cost", l.cost)
        .put("nodecost", nodecost)
        .list("allowedpeers", &l.allowedpeers)
        .build()
}

fn peer_value(p: &TcpPeer) -> YamlValue {
    MapBuilder::default()
        .text("address", Some(&p.address))
        .flag("redial", p.redial)
        .text("tls", p.tls.as_ref())
        .cost("cost", p.cost)
        .list("allowedpeers", &p.allowedpeers)
        .build()
}

fn control_value(c: &ControlService) -> YamlValue {
    MapBuilder::default()
        .text("service", c.service.as_ref())
        .text("filename", c.filename.as_ref())
        .put(
            "permissions",
            c.permissions.map(|p| YamlValue::String(format!("0{p:o}"))),
        )
        .text("tls", c.tls.as_ref())
        .text("tcplisten", c.tcplisten.as_ref())
        .text("tcptls", c.tcptls.as_ref())
        .build()
}

fn tls_server_value(t: &TlsServer) -> YamlValue {
    MapBuilder::default()
        .text("name", Some(&t.name))
        .text("cert", Some(&t.cert))
        .text("key", Some(&t.key))
        .text("clientcas", t.clientcas.as_ref())
        .flag("requireclientcert", t.requireclientcert)
        .list("pinnedclientcert", &t.pinnedclientcert)
        .flag("skipreceptornamescheck", t.skipreceptornamescheck)
        .flag("mintls13", t.mintls13)
        .build()
}

fn tls_client_value(t: &TlsClient) -> YamlValue {
    MapBuilder::default()
        .text("name", Some(&t.name))
        .text("cert", t.cert.as_ref())
        .text("key", t.key.as_ref())
        .text("rootcas", t.rootcas.as_ref())
        .flag("insecureskipverify", t.insecureskipverify)
        .list("pinnedservercert", &t.pinnedservercert)
        .flag("skipreceptornamescheck", t.skipreceptornamescheck)
        .flag("mintls13", t.mintls13)
        .build()
}

fn work_command_value(w: &WorkCommand) -> YamlValue {
    MapBuilder::default()
        .text("worktype", Some(&w.worktype))
        .text("command", Some(&w.command))
        .text("params", w.params.as_ref())
        .flag("allowruntimeparams", w.allowruntimeparams)
        .flag("verifysignature", w.verifysignature)
        .build()
}

fn pad(out: &mut String, indent: usize) {
    out.extend(std::iter::repeat_n(' ', indent));
}

/// Writes what follows `key:` for a key at column `indent`, including the line end.
fn write_after_key(out: &mut String, value: &YamlValue, indent: usize) {
    match value {
        YamlValue::Map(entries) if !entries.is_empty() => {
            out.push('\n');
            write_map(out, entries, indent + 2, false);
        }
        YamlValue::List(items) if !items.is_empty() => {
            out.push('\n');
            write_seq(out, items, indent + 2, false);
        }
        _ => {
            out.push(' ');
            write_inline(out, value);
            out.push('\n');
        }
    }
}

/// Writes map entries at column `indent`; with `inline_first`, the first one continues the
/// current line (after a list dash).
fn write_map(out: &mut String, entries: &[(String, YamlValue)], indent: usize, inline_first: bool) {
    for (i, (key, value)) in entries.iter().enumerate() {
        if i > 0 || !inline_first {
            pad(out, indent);
        }
        write_key(out, key);
        out.push(':');
        write_after_key(out, value, indent);
    }
}

/// Writes list items with their dash at column `indent`.
fn write_seq(out: &mut String, items: &[YamlValue], indent: usize, inline_first: bool) {
    for (i, item) in items.iter().enumerate() {
        if i > 0 || !inline_first {
            pad(out, indent);
        }
        out.push_str("- ");
        match item {
            YamlValue::Map(entries) if !entries.is_empty() => {
                write_map(out, entries, indent + 2, true);
            }
            YamlValue::List(inner) if !inner.is_empty() => {
                write_seq(out, inner, indent + 2, true);
            }
            _ => {
                write_inline(out, item);
                out.push('\n');
            }
        }
    }
}

fn write_key(out: &mut String, key: &str) {
    write_string(out, key);
}

/// Scalars and empty collections.
fn write_inline(out: &mut String, value: &YamlValue) {
    match value {
        YamlValue::Null => out.push_str("null"),
        YamlValue::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        YamlValue::Int(i) => {
            let _ = write!(out, "{i}");
        }
        YamlValue::Float(f) => out.push_str(&float_text(*f)),
        YamlValue::String(s) => write_string(out, s),
        YamlValue::List(_) => out.push_str("[]"),
        YamlValue::Map(_) => out.push_str("{}"),
    }
}

/// A float as go-yaml reads it back bit for bit: Rust's shortest form always has a `.` or an
/// exponent, so it cannot be mistaken for an integer.
fn float_text(f: f64) -> String {
    if f.is_nan() {
        ".nan".to_string()
    } else if f == f64::INFINITY {
        ".inf".to_string()
    } else if f == f64::NEG_INFINITY {
        "-.inf".to_string()
    } else {
        format!("{f:?}")
    }
}

fn write_string(out: &mut String, s: &str) {
    if plain_is_safe(s) {
        out.push_str(s);
    } else {
        write_quoted(out, s);
    }
}

/// Plain only for a conservative alphabet, a first character that starts nothing special, no
/// trailing `:` (which would start a map), and text that YAML 1.1 resolves to itself (so not
/// `yes`, `null`, `on`, ...). Digits first are always quoted, so numbers are never ambiguous.
fn plain_is_safe(s: &str) -> bool {
    let Some(first) = s.chars().next() else {
        return false;
    };
    let starts_well = first.is_ascii_alphabetic() || first == '/' || first == '_';
    let body_ok = s.chars().all(|c| {
        c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '/' | '-' | ':' | '@' | '+' | '=')
    });
    starts_well && body_ok && !s.ends_with(':') && matches!(resolve_plain(s), YamlValue::String(_))
}

fn write_quoted(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if needs_escape(c) => {
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Characters YAML does not allow raw in a stream, or that readers treat as line breaks or BOMs.
/// All are in the Basic Multilingual Plane, so `\uXXXX` always fits.
fn needs_escape(c: char) -> bool {
    c < ' '
        || ('\u{7f}'..='\u{9f}').contains(&c)
        || matches!(
            c,
            '\u{2028}' | '\u{2029}' | '\u{feff}' | '\u{fffe}' | '\u{ffff}'
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quoted(s: &str) -> String {
        let mut out = String::new();
        write_string(&mut out, s);
        out
    }

    #[test]
    fn plain_when_unambiguous() {
        for s in [
            "exec1.example.com",
            "/etc/receptor/tls/receptor.crt",
            "tls_server",
            "ansible-runner",
            "exec1:27199",
            "a=b+c@d",
            "_x",
            "worker",
        ] {
            assert_eq!(quoted(s), s, "{s:?}");
        }
    }

    #[test]
    fn quoted_when_yaml_could_read_something_else() {
        let cases = [
            ("", "\"\""),
            ("yes", "\"yes\""),
            ("on", "\"on\""),
            ("y", "\"y\""),
            ("null", "\"null\""),
            ("Null", "\"Null\""),
            ("true", "\"true\""),
            ("0660", "\"0660\""),
            ("1e3", "\"1e3\""),
            ("27199", "\"27199\""),
            ("-x", "\"-x\""),
            (".inf", "\".inf\""),
            ("~", "\"~\""),
            ("a b", "\"a b\""),
            (" lead", "\" lead\""),
            ("trail ", "\"trail \""),
            ("a:", "\"a:\""),
            ("a: b", "\"a: b\""),
            ("#x", "\"#x\""),
            ("x #y", "\"x #y\""),
            ("[::1]:27199", "\"[::1]:27199\""),
            ("{a}", "\"{a}\""),
            ("*ref", "\"*ref\""),
            ("&a", "\"&a\""),
            ("!tag", "\"!tag\""),
            ("|", "\"|\""),
            ("'", "\"'\""),
            ("q\"uote", "\"q\\\"uote\""),
            ("back\\slash", "\"back\\\\slash\""),
            ("line\nbreak", "\"line\\nbreak\""),
            ("tab\there", "\"tab\\there\""),
            ("nul\0", "\"nul\\u0000\""),
            ("bell\u{7}", "\"bell\\u0007\""),
            ("del\u{7f}", "\"del\\u007F\""),
            ("nel\u{85}", "\"nel\\u0085\""),
            ("ls\u{2028}", "\"ls\\u2028\""),
            ("bom\u{feff}", "\"bom\\uFEFF\""),
            ("é", "\"é\""),
            ("--- x", "\"--- x\""),
            ("%x", "\"%x\""),
            ("@x", "\"@x\""),
            ("`x", "\"`x\""),
        ];
        for (input, expected) in cases {
            assert_eq!(quoted(input), expected, "{input:?}");
        }
    }

    #[test]
    fn floats_keep_their_bits() {
        for f in [
            1.0,
            0.5,
            1e21,
            1e-7,
            123456.789,
            f64::MAX,
            f64::MIN_POSITIVE,
            -0.0,
        ] {
            let text = float_text(f);
            assert!(
                matches!(resolve_plain(&text), YamlValue::Float(g) if g.to_bits() == f.to_bits()),
                "{text}"
            );
        }
        assert_eq!(float_text(f64::INFINITY), ".inf");
        assert_eq!(float_text(f64::NEG_INFINITY), "-.inf");
        assert_eq!(float_text(f64::NAN), ".nan");
        assert_eq!(float_text(1.0), "1.0");
    }

    #[test]
    fn empty_config_is_just_the_document_marker() {
        assert_eq!(ReceptorConfig::default().render(), "---\n");
    }

    #[test]
    fn nested_values_use_block_style() {
        let config = ReceptorConfig {
            entries: vec![
                Entry::Other {
                    key: "trace".into(),
                    value: YamlValue::Null,
                },
                Entry::Other {
                    key: "work-kubernetes".into(),
                    value: YamlValue::Map(vec![
                        ("worktype".into(), YamlValue::String("k8s".into())),
                        ("empty".into(), YamlValue::Map(vec![])),
                        ("none".into(), YamlValue::List(vec![])),
                        ("null".into(), YamlValue::Null),
                        (
                            "list".into(),
                            YamlValue::List(vec![
                                YamlValue::Int(1),
                                YamlValue::Map(vec![
                                    ("a".into(), YamlValue::Bool(true)),
                                    ("b".into(), YamlValue::List(vec![YamlValue::Float(0.5)])),
                                ]),
                                YamlValue::List(vec![
                                    YamlValue::String("x".into()),
                                    YamlValue::List(vec![YamlValue::String("z".into())]),
                                ]),
                                YamlValue::Map(vec![]),
                            ]),
                        ),
                    ]),
                },
            ],
        };
        let expected = "\
---
- trace
- work-kubernetes:
    worktype: k8s
    empty: {}
    none: []
    \"null\": null
    list:
      - 1
      - a: true
        b:
          - 0.5
      - - x
        - - z
      - {}
";
        assert_eq!(config.render(), expected);
    }
}
