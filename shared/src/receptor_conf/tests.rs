//! Tests across the parser, the renderer and the node configs: AWX's real files, receptor's
//! coercions, every error, snapshots of each node type and generated round trips.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::*;
use crate::node_id::NodeId;
use crate::node_type::NodeType;

fn parse(text: &str) -> ReceptorConfig {
    match ReceptorConfig::parse(text) {
        Ok(c) => c,
        Err(e) => panic!("parse failed: {e}\n{text}"),
    }
}

fn parse_err(text: &str) -> ConfError {
    match ReceptorConfig::parse(text) {
        Ok(c) => panic!("parse accepted {text:?} as {c:?}"),
        Err(e) => e,
    }
}

fn assert_round_trips(config: &ReceptorConfig) {
    let text = config.render();
    let again = ReceptorConfig::parse(&text)
        .unwrap_or_else(|e| panic!("re-parse failed: {e}\n{text}\nmodel: {config:?}"));
    assert_eq!(&again, config, "round trip changed the model\n{text}");
    assert_eq!(again.render(), text, "rendering is not stable");
}

fn only(config: &ReceptorConfig) -> &Entry {
    assert_eq!(config.entries.len(), 1, "{config:?}");
    &config.entries[0]
}

// ---------------------------------------------------------------------------------------------
// AWX's real configs (reference/receptor.md §1.3)

const AWX_CONTROL: &str = r#"---
- local-only: null
- log-level: debug
- node:                       # k8s variant only; in the VM install node id defaults to hostname
    firewallrules:
      - action: reject
        tonode: awx-task-abc    # its own hostname: nobody on the mesh may use this node's control service
        toservice: control
- control-service:
    service: control
    filename: /var/run/receptor/receptor.sock
    permissions: '0660'
- work-command:               # "local" = run jobs on the control/hybrid node itself
    worktype: local
    command: ansible-runner
    params: worker
    allowruntimeparams: true
- work-signing:
    privatekey: /etc/receptor/signing/work-private-key.pem
    tokenexpiration: 1m
- work-kubernetes:
    worktype: kubernetes-runtime-auth
    authmethod: runtime
    allowruntimeauth: true
    allowruntimepod: true
    allowruntimeparams: true
- work-kubernetes:
    worktype: kubernetes-incluster-auth
    authmethod: incluster
    allowruntimeauth: true
    allowruntimepod: true
    allowruntimeparams: true
- tls-client:
    name: tlsclient
    rootcas: /etc/receptor/tls/ca/receptor-ca.crt
    cert: /etc/receptor/tls/receptor.crt
    key: /etc/receptor/tls/receptor.key
- tcp-peer:
    address: exec1.example.com:27199
    tls: tlsclient
- tcp-peer:
    address: hop1.example.com:27199
    tls: tlsclient
"#;

const AWX_EXECUTION: &str = r#"---
- node:
    id: exec1.example.com
- work-verification:
    publickey: /etc/receptor/work_public_key.pem
- log-level: info
- control-service:
    service: control
    filename: /var/run/receptor/receptor.sock
    permissions: 0660
    tls: tls_server                 # mesh-side control service is StreamTLS (ConnType 2)
- tls-server:
    name: tls_server
    cert: /etc/receptor/tls/receptor.crt   # SAN must carry otherName ReceptorName=exec1.example.com
    key: /etc/receptor/tls/receptor.key
    clientcas: /etc/receptor/tls/ca/mesh-CA.crt
    requireclientcert: true
    mintls13: false
- tls-client:
    name: tls_client
    cert: /etc/receptor/tls/receptor.crt
    key: /etc/receptor/tls/receptor.key
    rootcas: /etc/receptor/tls/ca/mesh-CA.crt
    insecureskipverify: false
    mintls13: false
- tcp-listener:                 # present when the instance has a listener_port
    port: 27199
    tls: tls_server
# - tcp-peer: {address: hop1.example.com:27199, redial: true, tls: tls_client}   # when this node dials out
- work-command:
    worktype: ansible-runner
    command: ansible-runner
    params: worker
    allowruntimeparams: true
    verifysignature: true
"#;

const AWX_HOP: &str = r#"---
- node: {id: hop1.example.com}
- work-verification: {publickey: /etc/receptor/work_public_key.pem}
- log-level: info
- control-service: {service: control, filename: /var/run/receptor/receptor.sock, permissions: 0660, tls: tls_server}
- tls-server: {name: tls_server, cert: /etc/receptor/tls/receptor.crt, key: /etc/receptor/tls/receptor.key,
               clientcas: /etc/receptor/tls/ca/mesh-CA.crt, requireclientcert: true, mintls13: false}
- tls-client: {name: tls_client, cert: /etc/receptor/tls/receptor.crt, key: /etc/receptor/tls/receptor.key,
               rootcas: /etc/receptor/tls/ca/mesh-CA.crt, insecureskipverify: false, mintls13: false}
- tcp-listener: {port: 27199, tls: tls_server}
# - tcp-peer: {address: upstream.example.com:27199, redial: true, tls: tls_client}
"#;

fn s(v: &str) -> Option<String> {
    Some(v.to_string())
}

#[test]
fn awx_control_config_parses_and_keeps_kubernetes_entries() {
    let c = parse(AWX_CONTROL);
    assert_eq!(c.entries.len(), 11);
    assert_eq!(c.entries[0], Entry::LocalOnly);
    assert_eq!(c.entries[1], Entry::LogLevel(LogLevel::Debug));
    assert_eq!(
        c.entries[2],
        Entry::Node(Node {
            id: None,
            datadir: None,
            maxidleconnectiontimeout: None,
            firewallrules: vec![FirewallRule {
                action: FirewallAction::Reject,
                fromnode: None,
                tonode: s("awx-task-abc"),
                fromservice: None,
                toservice: s("control"),
            }],
        })
    );
    assert_eq!(
        c.entries[3],
        Entry::ControlService(ControlService {
            service: s("control"),
            filename: s("/var/run/receptor/receptor.sock"),
            permissions: Some(0o660),
            ..Default::default()
        })
    );
    assert_eq!(
        c.entries[4],
        Entry::WorkCommand(WorkCommand {
            worktype: "local".into(),
            command: "ansible-runner".into(),
            params: s("worker"),
            allowruntimeparams: Some(true),
            verifysignature: None,
        })
    );
    assert_eq!(
        c.entries[5],
        Entry::WorkSigning(WorkSigning {
            privatekey: "/etc/receptor/signing/work-private-key.pem".into(),
            tokenexpiration: s("1m"),
        })
    );
    let Entry::Other { key, value } = &c.entries[6] else {
        panic!("{:?}", c.entries[6]);
    };
    assert_eq!(key, "work-kubernetes");
    assert_eq!(
        value,
        &YamlValue::Map(vec![
            (
                "worktype".into(),
                YamlValue::String("kubernetes-runtime-auth".into())
            ),
            ("authmethod".into(), YamlValue::String("runtime".into())),
            ("allowruntimeauth".into(), YamlValue::Bool(true)),
            ("allowruntimepod".into(), YamlValue::Bool(true)),
            ("allowruntimeparams".into(), YamlValue::Bool(true)),
        ])
    );
    assert_eq!(
        c.entries[8],
        Entry::TlsClient(TlsClient {
            name: "tlsclient".into(),
            cert: s("/etc/receptor/tls/receptor.crt"),
            key: s("/etc/receptor/tls/receptor.key"),
            rootcas: s("/etc/receptor/tls/ca/receptor-ca.crt"),
            insecureskipverify: None,
            pinnedservercert: vec![],
            skipreceptornamescheck: None,
            mintls13: None,
        })
    );
    assert_eq!(
        c.entries[10],
        Entry::TcpPeer(TcpPeer {
            address: "hop1.example.com:27199".into(),
            redial: None,
            tls: s("tlsclient"),
            cost: None,
            allowedpeers: vec![],
        })
    );
    assert_eq!(c.node().and_then(|n| n.id.clone()), None);
    assert_eq!(c.work_commands().count(), 1);
    assert_round_trips(&c);
    // The kubernetes entries survive as they were.
    let rendered = c.render();
    assert!(rendered.contains(
        "- work-kubernetes:\n    worktype: kubernetes-incluster-auth\n    authmethod: incluster\n"
    ));
}

#[test]
fn awx_execution_config_parses_with_yaml11_octal() {
    let c = parse(AWX_EXECUTION);
    assert_eq!(c.entries.len(), 8);
    assert_eq!(
        c.node().and_then(|n| n.id.clone()),
        Some(NodeId::new("exec1.example.com").unwrap())
    );
    let Entry::ControlService(cs) = &c.entries[3] else {
        panic!("{:?}", c.entries[3]);
    };
    // Plain 0660 is YAML 1.1 octal, as receptor's go-yaml reads it.
    assert_eq!(cs.permissions, Some(0o660));
    assert_eq!(cs.tls, s("tls_server"));
    assert_eq!(
        c.entries[4],
        Entry::TlsServer(TlsServer {
            name: "tls_server".into(),
            cert: "/etc/receptor/tls/receptor.crt".into(),
            key: "/etc/receptor/tls/receptor.key".into(),
            requireclientcert: Some(true),
            clientcas: s("/etc/receptor/tls/ca/mesh-CA.crt"),
            pinnedclientcert: vec![],
            skipreceptornamescheck: None,
            mintls13: Some(false),
        })
    );
    assert_eq!(
        c.entries[6],
        Entry::TcpListener(TcpListener {
            port: 27199,
            bindaddr: None,
            tls: s("tls_server"),
            cost: None,
            nodecost: BTreeMap::new(),
            allowedpeers: vec![],
        })
    );
    let wc = c.work_commands().next().unwrap();
    assert_eq!(wc.worktype, "ansible-runner");
    assert_eq!(wc.verifysignature, Some(true));
    assert_round_trips(&c);
}

#[test]
fn awx_hop_config_in_flow_style_equals_its_block_form() {
    let c = parse(AWX_HOP);
    assert_eq!(c.entries.len(), 7);
    assert!(c.work_commands().next().is_none());
    assert_eq!(
        c.entries[1],
        Entry::WorkVerification(WorkVerification {
            publickey: "/etc/receptor/work_public_key.pem".into()
        })
    );
    assert_round_trips(&c);
    // The same hop written in block style parses to the same model.
    assert_eq!(parse(&c.render()), c);
}

// ---------------------------------------------------------------------------------------------
// receptor's reading rules

#[test]
fn field_names_are_case_insensitive() {
    let c = parse(
        "- work-command: {WorkType: local, COMMAND: /bin/x, Params: worker, \
         AllowRuntimeParams: yes, verifySignature: \"False\"}\n",
    );
    assert_eq!(
        only(&c),
        &Entry::WorkCommand(WorkCommand {
            worktype: "local".into(),
            command: "/bin/x".into(),
            params: s("worker"),
            allowruntimeparams: Some(true),
            verifysignature: Some(false),
        })
    );
    let c = parse("- node: {ID: n1, DataDir: /d, FirewallRules: [{Action: DROP, FromNode: a}]}\n");
    let Entry::Node(n) = only(&c) else { panic!() };
    assert_eq!(n.id.as_ref().map(NodeId::as_str), Some("n1"));
    assert_eq!(n.firewallrules[0].action, FirewallAction::Drop);
    assert_eq!(n.firewallrules[0].fromnode, s("a"));
}

#[test]
fn action_names_are_exact_and_lowercase() {
    // receptor 1.4.8: "unknown config type Node".
    let err = parse_err("- Node: {id: a}\n");
    assert!(
        matches!(&err, ConfError::UnknownAction { at } if at.action == "Node"),
        "{err:?}"
    );
    assert!(err.to_string().contains("lowercase"), "{err}");
}

#[test]
fn bare_values_fill_the_bare_field() {
    let c = parse(
        "- node: n1\n- log-level: Warning\n- tcp-listener: \"27199\"\n- tcp-peer: hop:27199\n\
         - work-signing: /k.pem\n- work-verification: /p.pem\n",
    );
    let Entry::Node(n) = &c.entries[0] else {
        panic!()
    };
    assert_eq!(n.id.as_ref().map(NodeId::as_str), Some("n1"));
    assert_eq!(c.entries[1], Entry::LogLevel(LogLevel::Warning));
    assert!(matches!(&c.entries[2], Entry::TcpListener(l) if l.port == 27199));
    assert!(matches!(&c.entries[3], Entry::TcpPeer(p) if p.address == "hop:27199"));
    assert!(matches!(&c.entries[4], Entry::WorkSigning(w) if w.privatekey == "/k.pem"));
    assert!(matches!(&c.entries[5], Entry::WorkVerification(w) if w.publickey == "/p.pem"));
}

#[test]
fn bare_values_must_be_strings_as_in_receptor() {
    // receptor 1.4.8: "invalid config format for tcp-listener".
    let err = parse_err("- tcp-listener: 27199\n");
    assert!(matches!(err, ConfError::BadParams { .. }), "{err:?}");
    assert!(err.to_string().contains("quote it"), "{err}");
    assert!(matches!(
        parse_err("- node: yes\n"),
        ConfError::BadParams { .. }
    ));
    assert!(matches!(
        parse_err("- node: [a]\n"),
        ConfError::BadParams { .. }
    ));
    let err = parse_err("- control-service: /run/x.sock\n");
    assert!(err.to_string().contains("not a bare value"), "{err}");
    assert!(matches!(
        parse_err("- local-only: yes-please\n"),
        ConfError::BadParams { .. }
    ));
}

#[test]
fn local_only_in_every_written_form() {
    for text in [
        "- local-only\n",
        "- local-only:\n",
        "- local-only: null\n",
        "- local-only: ~\n",
        "- local-only: {}\n",
    ] {
        assert_eq!(only(&parse(text)), &Entry::LocalOnly, "{text:?}");
    }
    let err = parse_err("- local-only: {a: 1}\n");
    assert!(
        matches!(&err, ConfError::UnknownField { field, .. } if field == "a"),
        "{err:?}"
    );
}

#[test]
fn actions_without_fields_take_receptor_defaults() {
    let c = parse("- node\n- log-level\n- trace\n");
    assert_eq!(c.entries[0], Entry::Node(Node::default()));
    assert_eq!(c.entries[1], Entry::LogLevel(LogLevel::Error));
    assert_eq!(
        c.entries[2],
        Entry::Other {
            key: "trace".into(),
            value: YamlValue::Null
        }
    );
    assert_round_trips(&c);
}

fn permissions(value: &str) -> Result<Option<u32>, ConfError> {
    let c = ReceptorConfig::parse(&format!("- control-service: {{permissions: {value}}}\n"))?;
    match only(&c) {
        Entry::ControlService(cs) => Ok(cs.permissions),
        other => panic!("{other:?}"),
    }
}

#[test]
fn permissions_read_like_receptor() {
    // Each was checked with receptor 1.4.8 by the socket's resulting mode.
    let cases = [
        ("0660", 0o660),
        ("'0660'", 0o660),
        ("\"0660\"", 0o660),
        ("0o660", 0o660),
        ("'0o640'", 0o640),
        ("0x1a0", 0o640),
        ("'0x1b0'", 0o660),
        ("660", 660),
        ("4_20", 420),
        ("'0_660'", 0o660),
        ("0", 0),
        ("'00'", 0),
    ];
    for (text, mode) in cases {
        assert_eq!(permissions(text).unwrap(), Some(mode), "{text}");
    }
    for bad in [
        "'rw-rw----'",
        "0o7778",
        "-1",
        "0o10000",
        "6.6",
        "true",
        "[1]",
        "'1__0'",
        "''",
    ] {
        let err = permissions(bad).unwrap_err();
        assert!(
            matches!(&err, ConfError::BadValue { field, .. } if field == "permissions"),
            "{bad}: {err:?}"
        );
    }
    let err = permissions("~").unwrap_err();
    assert!(err.to_string().contains("null"), "{err}");
}

fn redial(value: &str) -> Result<Option<bool>, ConfError> {
    let c = ReceptorConfig::parse(&format!("- tcp-peer: {{address: a:1, redial: {value}}}\n"))?;
    match only(&c) {
        Entry::TcpPeer(p) => Ok(p.redial),
        other => panic!("{other:?}"),
    }
}

#[test]
fn booleans_read_like_receptor() {
    let truthy = [
        "true", "True", "TRUE", "yes", "Yes", "YES", "y", "Y", "on", "On", "ON", "'1'", "'t'",
        "'T'", "'Y'", "'true'", "'yes'", "\"Yes\"", "t", "T",
    ];
    let falsy = [
        "false", "False", "FALSE", "no", "No", "NO", "n", "N", "off", "OFF", "'0'", "'f'", "'F'",
        "'N'", "'false'", "'no'", "f", "F",
    ];
    for t in truthy {
        assert_eq!(redial(t).unwrap(), Some(true), "{t}");
    }
    for f in falsy {
        assert_eq!(redial(f).unwrap(), Some(false), "{f}");
    }
    // receptor 1.4.8 refuses these: a plain number is not a boolean, and its string words
    // do not include lowercase y/n or on/off (plain t/f are strings, then receptor's words).
    for bad in [
        "1", "0", "'y'", "'n'", "'on'", "'off'", "'yEs'", "2", "[]", "~", "1.0",
    ] {
        let err = redial(bad).unwrap_err();
        assert!(
            matches!(&err, ConfError::BadValue { field, .. } if field == "redial"),
            "{bad}: {err:?}"
        );
    }
    assert!(
        redial("1")
            .unwrap_err()
            .to_string()
            .contains("true or false")
    );
}

#[test]
fn text_fields_take_numbers_and_booleans_as_receptor_does() {
    // receptor formats them with %d / %t; checked with receptor 1.4.8 (`id: yes` → node "true").
    let c = parse("- node: {id: yes, datadir: 0660}\n- control-service: {tcplisten: 8080}\n");
    let Entry::Node(n) = &c.entries[0] else {
        panic!()
    };
    assert_eq!(n.id.as_ref().map(NodeId::as_str), Some("true"));
    assert_eq!(n.datadir, s("432"));
    assert!(matches!(&c.entries[1], Entry::ControlService(cs) if cs.tcplisten == s("8080")));
    let err = parse_err("- node: {datadir: 1.5}\n");
    assert!(err.to_string().contains("quote it"), "{err}");
    let err = parse_err("- node: {datadir: [a]}\n");
    assert!(
        matches!(&err, ConfError::BadValue { field, .. } if field == "datadir"),
        "{err:?}"
    );
    let err = parse_err("- node: {datadir: }\n");
    assert!(err.to_string().contains("null"), "{err}");
}

#[test]
fn ports_and_costs() {
    let c = parse(
        "- tcp-listener: {port: '0x6a3f', cost: '2.5', nodecost: {a: 1, b: 0.5}}\n\
         - tcp-listener: {port: 65535, cost: 3, nodecost: '{\"c\": 2}'}\n",
    );
    let Entry::TcpListener(l) = &c.entries[0] else {
        panic!()
    };
    assert_eq!(l.port, 0x6a3f);
    assert_eq!(l.cost, Some(2.5));
    assert_eq!(
        l.nodecost,
        BTreeMap::from([("a".into(), 1.0), ("b".into(), 0.5)])
    );
    let Entry::TcpListener(l) = &c.entries[1] else {
        panic!()
    };
    assert_eq!(l.cost, Some(3.0));
    assert_eq!(l.nodecost, BTreeMap::from([("c".into(), 2.0)]));
    assert_round_trips(&c);

    let bad = [
        ("- tcp-listener: {port: 65536}\n", "port"),
        ("- tcp-listener: {port: -1}\n", "port"),
        ("- tcp-listener: {port: '27199x'}\n", "port"),
        ("- tcp-listener: {port: 1.5}\n", "port"),
        ("- tcp-listener: {port: 1, cost: 0}\n", "cost"),
        ("- tcp-listener: {port: 1, cost: -2}\n", "cost"),
        ("- tcp-listener: {port: 1, cost: .inf}\n", "cost"),
        ("- tcp-listener: {port: 1, cost: .nan}\n", "cost"),
        ("- tcp-listener: {port: 1, cost: 'cheap'}\n", "cost"),
        ("- tcp-peer: {address: a:1, cost: true}\n", "cost"),
        ("- tcp-listener: {port: 1, nodecost: {a: 0}}\n", "nodecost"),
        (
            "- tcp-listener: {port: 1, nodecost: {a: '1'}}\n",
            "nodecost",
        ),
        (
            "- tcp-listener: {port: 1, nodecost: '{\"a\": \"x\"}'}\n",
            "nodecost",
        ),
        (
            "- tcp-listener: {port: 1, nodecost: '{bad json'}\n",
            "nodecost",
        ),
        ("- tcp-listener: {port: 1, nodecost: [a]}\n", "nodecost"),
    ];
    for (text, field) in bad {
        let err = parse_err(text);
        assert!(
            matches!(&err, ConfError::BadValue { field: f, .. } if f == field),
            "{text}: {err:?}"
        );
        assert!(err.to_string().contains(field), "{err}");
    }
}

#[test]
fn string_lists_take_a_list_one_string_or_json() {
    let c = parse(
        "- tcp-peer: {address: a:1, allowedpeers: [x, 'y']}\n\
         - tcp-peer: {address: a:2, allowedpeers: solo}\n\
         - tcp-peer: {address: a:3, allowedpeers: '[\"j1\", \"j2\"]'}\n\
         - tcp-peer: {address: a:4, allowedpeers: }\n\
         - tls-server: {name: s, cert: /c, key: /k, pinnedclientcert: [AB, CD]}\n",
    );
    let peers: Vec<Vec<String>> = c
        .entries
        .iter()
        .filter_map(|e| match e {
            Entry::TcpPeer(p) => Some(p.allowedpeers.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(
        peers,
        vec![
            vec!["x".to_string(), "y".into()],
            vec!["solo".into()],
            vec!["j1".into(), "j2".into()],
            vec![],
        ]
    );
    assert!(matches!(&c.entries[4], Entry::TlsServer(t) if t.pinnedclientcert == ["AB", "CD"]));
    for bad in [
        "- tcp-peer: {address: a:1, allowedpeers: [12]}\n",
        "- tcp-peer: {address: a:1, allowedpeers: [[x]]}\n",
        "- tcp-peer: {address: a:1, allowedpeers: '[1]'}\n",
        "- tcp-peer: {address: a:1, allowedpeers: '[oops'}\n",
        "- tcp-peer: {address: a:1, allowedpeers: {a: b}}\n",
        "- tcp-peer: {address: a:1, allowedpeers: 7}\n",
    ] {
        let err = parse_err(bad);
        assert!(
            matches!(&err, ConfError::BadValue { field, .. } if field == "allowedpeers"),
            "{bad}: {err:?}"
        );
    }
}

#[test]
fn firewall_rules_are_checked_like_receptor() {
    let c = parse(
        "- node:\n    firewallrules:\n      - {action: ACCEPT, fromnode: '/ctl-.*/'}\n      - action: drop\n",
    );
    let Entry::Node(n) = only(&c) else { panic!() };
    assert_eq!(n.firewallrules.len(), 2);
    assert_eq!(n.firewallrules[0].action, FirewallAction::Accept);
    assert_eq!(n.firewallrules[0].fromnode, s("/ctl-.*/"));
    assert_eq!(n.firewallrules[1].action, FirewallAction::Drop);
    assert_eq!(n.firewallrules[1].tonode, None);
    assert_round_trips(&c);

    let bad = [
        // receptor: "invalid firewall rule. tonode must be a string".
        (
            "[{action: reject, tonode: 12}]",
            "firewallrules[0].tonode",
            "must be a string",
        ),
        (
            "[{action: reject, tonode: yes}]",
            "firewallrules[0].tonode",
            "must be a string",
        ),
        (
            "[{action: reject}, {action: allow}]",
            "firewallrules[1].action",
            "\"allow\"",
        ),
        ("[{tonode: x}]", "firewallrules[0].action", "missing"),
        (
            "[{action: reject, port: 1}]",
            "firewallrules[0].port",
            "unknown key",
        ),
        (
            "[{action: reject, tonode: a, ToNode: b}]",
            "firewallrules[0].ToNode",
            "twice",
        ),
        ("[reject]", "firewallrules[0]", "expected a map"),
        ("{action: reject}", "firewallrules", "expected a list"),
        (
            "'[{\"action\": \"reject\"}]'",
            "firewallrules",
            "expected a list",
        ),
    ];
    for (rules, field, words) in bad {
        let err = parse_err(&format!("- node: {{firewallrules: {rules}}}\n"));
        assert!(
            matches!(&err, ConfError::BadValue { field: f, .. } if f == field),
            "{rules}: {err:?}"
        );
        assert!(err.to_string().contains(words), "{rules}: {err}");
    }
    assert_eq!(
        parse("- node: {firewallrules: ~}\n"),
        parse("- node: {}\n"),
        "a null list is an empty list"
    );
}

#[test]
fn tls_client_takes_cert_and_key_together_or_neither() {
    let c = parse("- tls-client: {name: c, rootcas: /ca}\n");
    assert!(matches!(only(&c), Entry::TlsClient(t) if t.cert.is_none() && t.key.is_none()));
    let err = parse_err("- tls-client: {name: c, cert: /c}\n");
    assert!(
        matches!(&err, ConfError::BadValue { field, .. } if field == "key"),
        "{err:?}"
    );
    let err = parse_err("- tls-client: {name: c, key: /k}\n");
    assert!(
        matches!(&err, ConfError::BadValue { field, .. } if field == "cert"),
        "{err:?}"
    );
}

#[test]
fn node_ids_follow_meshrun_rules() {
    for (text, words) in [
        ("- node: {id: localhost}\n", "reserved"),
        ("- node: {id: 'a b'}\n", "' '"),
        ("- node: {id: ''}\n", "empty"),
        ("- node: 'node:svc'\n", "':'"),
    ] {
        let err = parse_err(text);
        assert!(
            matches!(&err, ConfError::BadValue { field, .. } if field == "id"),
            "{err:?}"
        );
        assert!(err.to_string().contains(words), "{text}: {err}");
    }
}

#[test]
fn log_levels_are_case_insensitive() {
    for (text, level) in [
        ("ERROR", LogLevel::Error),
        ("warning", LogLevel::Warning),
        ("Info", LogLevel::Info),
        ("dEbUg", LogLevel::Debug),
    ] {
        assert_eq!(
            only(&parse(&format!("- log-level: {text}\n"))),
            &Entry::LogLevel(level)
        );
    }
    let err = parse_err("- log-level: verbose\n");
    assert!(err.to_string().contains("\"verbose\""), "{err}");
    assert!(matches!(
        parse_err("- log-level: {level: 3}\n"),
        ConfError::BadValue { .. }
    ));
}

#[test]
fn empty_documents_are_empty_configs() {
    for text in ["", "---\n", "# nothing\n", "[]\n", "---\n...\n"] {
        assert_eq!(parse(text), ReceptorConfig::default(), "{text:?}");
    }
}

#[test]
fn the_document_must_be_a_list_of_actions() {
    for (text, found) in [
        ("node: {id: a}\n", "a map"),
        ("just text\n", "the string"),
        ("42\n", "the integer 42"),
    ] {
        let err = parse_err(text);
        assert!(matches!(err, ConfError::NotAList { .. }), "{err:?}");
        assert!(err.to_string().contains(found), "{err}");
    }
}

#[test]
fn items_must_be_a_name_or_a_single_key_map() {
    for (text, words) in [
        ("- node: {id: a}\n  log-level: info\n", "has 2 keys"),
        ("- {}\n", "has 0 keys"),
        ("- 12\n", "the integer 12"),
        ("- ~\n", "null"),
        ("- [node]\n", "a list"),
        ("- yes\n", "boolean"),
    ] {
        let err = parse_err(text);
        assert!(
            matches!(
                err,
                ConfError::BadItem {
                    index: 0,
                    line: 1,
                    ..
                }
            ),
            "{text}: {err:?}"
        );
        assert!(err.to_string().contains(words), "{text}: {err}");
    }
}

#[test]
fn errors_name_the_item_line_action_and_field() {
    let text = "---\n- node: {id: a}\n- log-level: info\n- tcp-peer:\n    address: h:1\n    redial: maybe\n";
    let err = parse_err(text);
    let ConfError::BadValue { at, field, .. } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(
        at,
        &EntryAt {
            index: 2,
            line: 4,
            action: "tcp-peer".into()
        }
    );
    assert_eq!(field, "redial");
    let msg = err.to_string();
    for part in ["item 3", "`tcp-peer`", "line 4", "`redial`", "\"maybe\""] {
        assert!(msg.contains(part), "{part} missing from {msg}");
    }
}

#[test]
fn unknown_and_exclusive_actions_are_refused() {
    let err = parse_err("- tcp-listner: {port: 1}\n");
    assert!(matches!(&err, ConfError::UnknownAction { at } if at.action == "tcp-listner"));
    for exclusive in ["version", "cert-init: {commonname: x}", "command-runner"] {
        let err = parse_err(&format!("- {exclusive}\n"));
        assert!(
            matches!(err, ConfError::ExclusiveAction { .. }),
            "{exclusive}: {err:?}"
        );
    }
    // Hostile names are cut short in messages.
    let long = "x".repeat(100_000);
    let err = parse_err(&format!("- {long}\n"));
    assert!(err.to_string().len() < 400);
}

#[test]
fn unknown_and_duplicate_fields_are_refused() {
    let err = parse_err("- tcp-peer: {address: a:1, redail: true}\n");
    let ConfError::UnknownField {
        field, expected, ..
    } = &err
    else {
        panic!("{err:?}")
    };
    assert_eq!(field, "redail");
    assert!(expected.contains("redial"));
    let err = parse_err("- work-command: {worktype: a, workType: b, command: c}\n");
    assert!(matches!(&err, ConfError::DuplicateField { field, .. } if field == "worktype"));
    let err = parse_err("- node: {id: a, id: b}\n");
    assert!(matches!(err, ConfError::DuplicateKey { .. }), "{err:?}");
}

#[test]
fn required_fields_are_enforced() {
    let cases = [
        ("- tcp-listener: {bindaddr: 0.0.0.0}\n", "port"),
        ("- tcp-listener\n", "port"),
        ("- tcp-peer: {redial: true}\n", "address"),
        ("- tls-server: {cert: /c, key: /k}\n", "name"),
        ("- tls-server: {name: s, key: /k}\n", "cert"),
        ("- tls-server: {name: s, cert: /c}\n", "key"),
        ("- tls-client: {rootcas: /ca}\n", "name"),
        ("- work-command: {command: /x}\n", "worktype"),
        ("- work-command: {worktype: x}\n", "command"),
        ("- work-signing: {tokenexpiration: 1m}\n", "privatekey"),
        ("- work-verification\n", "publickey"),
    ];
    for (text, missing) in cases {
        let err = parse_err(text);
        assert!(
            matches!(&err, ConfError::MissingField { field, .. } if field == missing),
            "{text}: {err:?}"
        );
        assert!(err.to_string().contains(missing));
    }
}

#[test]
fn singletons_appear_once() {
    for action in [
        "node",
        "log-level",
        "local-only",
        "work-signing: /k",
        "work-verification: /p",
        "trace",
    ] {
        let text = format!("- {action}\n- tcp-peer: a:1\n- {action}\n");
        let err = parse_err(&text);
        assert!(
            matches!(&err, ConfError::DuplicateSingleton { at, first: 0 } if at.index == 2),
            "{action}: {err:?}"
        );
        assert!(err.to_string().contains("item 1"), "{err}");
    }
    // Repeatable actions may repeat.
    parse(
        "- tcp-peer: a:1\n- tcp-peer: b:1\n- work-command: {worktype: a, command: b}\n- work-command: {worktype: c, command: d}\n",
    );
}

#[test]
fn yaml_level_problems_are_refused() {
    let big = format!("- node: {{id: a}}\n#{}\n", "x".repeat(MAX_CONF_LEN));
    assert!(matches!(parse_err(&big), ConfError::TooLarge { .. }));
    let laughs = "- ws-peer: &a [x, x]\n- ws-peer: [*a, *a]\n";
    assert!(matches!(parse_err(laughs), ConfError::Unsupported { .. }));
    let deep = format!("- ws-peer: {}{}\n", "[".repeat(200), "]".repeat(200));
    assert!(matches!(parse_err(&deep), ConfError::TooDeep { .. }));
    assert!(matches!(
        parse_err("- node: {id: a\n"),
        ConfError::Syntax { .. }
    ));
    assert!(matches!(
        parse_err("- node\n---\n- node\n"),
        ConfError::Unsupported { .. }
    ));
    assert!(matches!(
        parse_err("- ws-peer: {1: a}\n"),
        ConfError::NonStringKey { .. }
    ));
    let err = parse_err("- node: {id: \"a\u{0}\"}\n");
    assert!(matches!(err, ConfError::Syntax { line: 1, .. }), "{err:?}");
}

#[test]
fn mangled_input_never_panics() {
    for fixture in [AWX_CONTROL, AWX_EXECUTION, AWX_HOP] {
        for (cut, _) in fixture.char_indices() {
            let _ = ReceptorConfig::parse(&fixture[..cut]);
        }
        let bytes = fixture.as_bytes();
        let mut rng = Rng(7);
        for _ in 0..500 {
            let mut mangled = bytes.to_vec();
            for _ in 0..3 {
                let at = rng.below(mangled.len());
                let noise = b"-:{}[]'\"#&*!|>%@` \n\t0yx,";
                mangled[at] = noise[rng.below(noise.len())];
            }
            if let Ok(text) = std::str::from_utf8(&mangled)
                && let Ok(c) = ReceptorConfig::parse(text)
            {
                assert_round_trips(&c);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Node configs

const TLS_DIR: &str = "/etc/meshrun/tls";

fn spec(node_type: NodeType, id: &str) -> NodeConfigSpec {
    NodeConfigSpec::new(
        node_type,
        NodeId::new(id).unwrap(),
        "/var/lib/meshrun/receptor",
        "/run/meshrun/receptor.sock",
        "/usr/bin/meshrun-agent",
    )
}

fn tls() -> Option<TlsFiles> {
    Some(TlsFiles {
        ca: format!("{TLS_DIR}/ca.crt").into(),
        cert: format!("{TLS_DIR}/node.crt").into(),
        key: format!("{TLS_DIR}/node.key").into(),
    })
}

fn render_spec(spec: &NodeConfigSpec) -> String {
    let config = node_config(spec).unwrap_or_else(|e| panic!("{e}"));
    assert_round_trips(&config);
    config.render()
}

#[test]
fn control_node_snapshot() {
    let mut sp = spec(NodeType::Control, "ctl1");
    sp.tls = tls();
    sp.listen = Some(ListenSpec {
        port: 27199,
        bindaddr: Some("[::]".into()),
    });
    sp.work_signing_key = Some("/etc/meshrun/work-private.pem".into());
    sp.work_verification_key = Some("/etc/meshrun/work-public.pem".into());
    let expected = r#"---
- node:
    id: ctl1
    datadir: /var/lib/meshrun/receptor
    firewallrules:
      - action: reject
        tonode: ctl1
        toservice: control
- log-level:
    level: info
- control-service:
    service: control
    filename: /run/meshrun/receptor.sock
    permissions: "0660"
- tls-server:
    name: tls_server
    cert: /etc/meshrun/tls/node.crt
    key: /etc/meshrun/tls/node.key
    clientcas: /etc/meshrun/tls/ca.crt
    requireclientcert: true
    mintls13: true
- tls-client:
    name: tls_client
    cert: /etc/meshrun/tls/node.crt
    key: /etc/meshrun/tls/node.key
    rootcas: /etc/meshrun/tls/ca.crt
    mintls13: true
- tcp-listener:
    port: 27199
    bindaddr: "[::]"
    tls: tls_server
- work-signing:
    privatekey: /etc/meshrun/work-private.pem
    tokenexpiration: "10m"
- work-verification:
    publickey: /etc/meshrun/work-public.pem
- work-command:
    worktype: local
    command: /usr/bin/meshrun-agent
    params: worker
    allowruntimeparams: true
    verifysignature: true
"#;
    assert_eq!(render_spec(&sp), expected);
}

#[test]
fn hybrid_node_snapshot_without_tls() {
    let mut sp = spec(NodeType::Hybrid, "hyb1");
    sp.listen = Some(ListenSpec {
        port: 27199,
        bindaddr: None,
    });
    sp.log_level = "DEBUG".into();
    sp.socket_permissions = 0o600;
    let expected = r#"---
- node:
    id: hyb1
    datadir: /var/lib/meshrun/receptor
    firewallrules:
      - action: reject
        tonode: hyb1
        toservice: control
- log-level:
    level: debug
- control-service:
    service: control
    filename: /run/meshrun/receptor.sock
    permissions: "0600"
- tcp-listener:
    port: 27199
- work-command:
    worktype: local
    command: /usr/bin/meshrun-agent
    params: worker
    allowruntimeparams: true
    verifysignature: false
"#;
    assert_eq!(render_spec(&sp), expected);
}

#[test]
fn execution_node_snapshot() {
    let mut sp = spec(NodeType::Execution, "exec1");
    sp.tls = tls();
    sp.peers = vec!["hop1.example.com:27199".into(), "[fd00::1]:27199".into()];
    sp.work_verification_key = Some("/etc/meshrun/work-public.pem".into());
    sp.worker_params = "worker --log-file /var/log/meshrun/worker.log".into();
    let expected = r#"---
- node:
    id: exec1
    datadir: /var/lib/meshrun/receptor
- log-level:
    level: info
- control-service:
    service: control
    filename: /run/meshrun/receptor.sock
    permissions: "0660"
    tls: tls_server
- tls-server:
    name: tls_server
    cert: /etc/meshrun/tls/node.crt
    key: /etc/meshrun/tls/node.key
    clientcas: /etc/meshrun/tls/ca.crt
    requireclientcert: true
    mintls13: true
- tls-client:
    name: tls_client
    cert: /etc/meshrun/tls/node.crt
    key: /etc/meshrun/tls/node.key
    rootcas: /etc/meshrun/tls/ca.crt
    mintls13: true
- tcp-peer:
    address: hop1.example.com:27199
    redial: true
    tls: tls_client
- tcp-peer:
    address: "[fd00::1]:27199"
    redial: true
    tls: tls_client
- work-verification:
    publickey: /etc/meshrun/work-public.pem
- work-command:
    worktype: ansible-runner
    command: /usr/bin/meshrun-agent
    params: "worker --log-file /var/log/meshrun/worker.log"
    allowruntimeparams: true
    verifysignature: true
"#;
    assert_eq!(render_spec(&sp), expected);
}

#[test]
fn hop_node_snapshot() {
    let mut sp = spec(NodeType::Hop, "hop1");
    sp.tls = tls();
    sp.listen = Some(ListenSpec {
        port: 27199,
        bindaddr: Some("0.0.0.0".into()),
    });
    sp.peers = vec!["ctl1:27199".into()];
    sp.work_verification_key = Some("/etc/meshrun/work-public.pem".into());
    sp.worker_command = PathBuf::from("not used by hops");
    let expected = r#"---
- node:
    id: hop1
    datadir: /var/lib/meshrun/receptor
- log-level:
    level: info
- control-service:
    service: control
    filename: /run/meshrun/receptor.sock
    permissions: "0660"
    tls: tls_server
- tls-server:
    name: tls_server
    cert: /etc/meshrun/tls/node.crt
    key: /etc/meshrun/tls/node.key
    clientcas: /etc/meshrun/tls/ca.crt
    requireclientcert: true
    mintls13: true
- tls-client:
    name: tls_client
    cert: /etc/meshrun/tls/node.crt
    key: /etc/meshrun/tls/node.key
    rootcas: /etc/meshrun/tls/ca.crt
    mintls13: true
- tcp-listener:
    port: 27199
    bindaddr: "0.0.0.0"
    tls: tls_server
- tcp-peer:
    address: ctl1:27199
    redial: true
    tls: tls_client
- work-verification:
    publickey: /etc/meshrun/work-public.pem
"#;
    assert_eq!(render_spec(&sp), expected);
}

#[test]
fn a_node_without_links_gets_local_only() {
    let expected = r#"---
- node:
    id: lonely
    datadir: /var/lib/meshrun/receptor
- log-level:
    level: info
- control-service:
    service: control
    filename: /run/meshrun/receptor.sock
    permissions: "0660"
- local-only
- work-command:
    worktype: ansible-runner
    command: /usr/bin/meshrun-agent
    params: worker
    allowruntimeparams: true
    verifysignature: false
"#;
    assert_eq!(render_spec(&spec(NodeType::Execution, "lonely")), expected);
    let mut linked = spec(NodeType::Execution, "linked");
    linked.peers = vec!["hop:1".into()];
    let c = node_config(&linked).unwrap();
    assert!(!c.entries.contains(&Entry::LocalOnly));
}

#[test]
fn node_config_rules_hold_for_every_type() {
    for t in NodeType::ALL {
        let mut sp = spec(t, "n1");
        sp.tls = tls();
        sp.peers = vec!["up:27199".into()];
        let c = node_config(&sp).unwrap();
        let node = c.node().unwrap();
        let control = matches!(t, NodeType::Control | NodeType::Hybrid);
        assert_eq!(!node.firewallrules.is_empty(), control, "{t}");
        let cs = c
            .entries
            .iter()
            .find_map(|e| match e {
                Entry::ControlService(cs) => Some(cs),
                _ => None,
            })
            .unwrap();
        assert_eq!(
            cs.tls.is_some(),
            !control,
            "{t}: mesh-side control service TLS"
        );
        let work: Vec<_> = c.work_commands().collect();
        match t.work_type() {
            Some(wt) => {
                assert_eq!(work.len(), 1, "{t}");
                assert_eq!(work[0].worktype, wt);
                assert_eq!(work[0].verifysignature, Some(false));
            }
            None => assert!(work.is_empty(), "hop nodes run no work"),
        }
        assert_round_trips(&c);
    }
}

fn spec_err(sp: &NodeConfigSpec) -> (&'static str, String) {
    match node_config(sp) {
        Ok(c) => panic!("accepted:\n{}", c.render()),
        Err(ConfError::Spec { field, problem }) => (field, problem),
        Err(other) => panic!("{other:?}"),
    }
}

#[test]
fn node_config_checks_every_field() {
    type Edit = fn(&mut NodeConfigSpec);
    let cases: &[(&str, Edit)] = &[
        ("data_dir", |s| s.data_dir = "relative/dir".into()),
        ("socket_path", |s| s.socket_path = "receptor.sock".into()),
        ("socket_path", |s| {
            s.socket_path = format!("/{}", "s".repeat(107)).into()
        }),
        ("socket_path", |s| {
            s.socket_path = "/run/bad\nname.sock".into()
        }),
        ("socket_permissions", |s| s.socket_permissions = 0o1777),
        ("log_level", |s| s.log_level = "verbose".into()),
        ("listen.port", |s| {
            s.listen = Some(ListenSpec {
                port: 0,
                bindaddr: None,
            })
        }),
        ("listen.bindaddr", |s| {
            s.listen = Some(ListenSpec {
                port: 1,
                bindaddr: Some("::".into()),
            })
        }),
        ("listen.bindaddr", |s| {
            s.listen = Some(ListenSpec {
                port: 1,
                bindaddr: Some("".into()),
            })
        }),
        ("listen.bindaddr", |s| {
            s.listen = Some(ListenSpec {
                port: 1,
                bindaddr: Some("a b".into()),
            })
        }),
        ("peers", |s| s.peers = vec!["no-port".into()]),
        ("peers", |s| s.peers = vec![":27199".into()]),
        ("peers", |s| s.peers = vec!["host:0".into()]),
        ("peers", |s| s.peers = vec!["host:65536".into()]),
        ("peers", |s| s.peers = vec!["host:+80".into()]),
        ("peers", |s| s.peers = vec!["host:".into()]),
        ("peers", |s| s.peers = vec!["::1:27199".into()]),
        ("peers", |s| s.peers = vec!["[zz]:27199".into()]),
        ("peers", |s| s.peers = vec!["[]:27199".into()]),
        ("peers", |s| s.peers = vec!["h st:1".into()]),
        ("peers", |s| s.peers = vec!["a:1".into(), "a:1".into()]),
        ("worker_command", |s| {
            s.worker_command = "meshrun-agent".into()
        }),
        ("tls.ca", |s| {
            s.tls = Some(TlsFiles {
                ca: "ca.crt".into(),
                cert: "/c".into(),
                key: "/k".into(),
            })
        }),
        ("tls.cert", |s| {
            s.tls = Some(TlsFiles {
                ca: "/ca".into(),
                cert: "c".into(),
                key: "/k".into(),
            })
        }),
        ("tls.key", |s| {
            s.tls = Some(TlsFiles {
                ca: "/ca".into(),
                cert: "/c".into(),
                key: "k".into(),
            })
        }),
        ("work_signing_key", |s| {
            s.work_signing_key = Some("/k.pem".into())
        }),
        ("work_verification_key", |s| {
            s.work_verification_key = Some("k.pem".into())
        }),
    ];
    for (field, edit) in cases {
        let mut sp = spec(NodeType::Execution, "n1");
        edit(&mut sp);
        let (got, problem) = spec_err(&sp);
        assert_eq!(got, *field, "{problem}");
        let message = node_config(&sp).unwrap_err().to_string();
        assert!(message.contains(field), "{message}");
    }
    let mut control = spec(NodeType::Control, "c1");
    control.work_signing_key = Some("signing.pem".into());
    assert_eq!(spec_err(&control).0, "work_signing_key");
}

#[test]
fn node_config_accepts_the_edges() {
    let mut sp = spec(NodeType::Execution, "n1");
    sp.socket_path = format!("/{}", "s".repeat(106)).into();
    sp.peers = vec![
        "[::1]:1".into(),
        "10.0.0.1:65535".into(),
        "host_name.example:27199".into(),
        "[::ffff:10.0.0.1]:27199".into(),
    ];
    sp.listen = Some(ListenSpec {
        port: 65535,
        bindaddr: Some("[::1]".into()),
    });
    sp.socket_permissions = 0;
    render_spec(&sp);
    let mut hop = spec(NodeType::Hop, "h1");
    hop.worker_command = PathBuf::new();
    render_spec(&hop);
}

#[cfg(unix)]
#[test]
fn node_config_refuses_non_utf8_paths() {
    use std::os::unix::ffi::OsStrExt;
    let mut sp = spec(NodeType::Execution, "n1");
    sp.data_dir = std::ffi::OsStr::from_bytes(b"/var/lib/\xff").into();
    let (field, problem) = spec_err(&sp);
    assert_eq!(field, "data_dir");
    assert!(problem.contains("UTF-8"), "{problem}");
}

// ---------------------------------------------------------------------------------------------
// Generated round trips

/// SplitMix64: small, deterministic, good enough to explore shapes.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    fn text(&mut self) -> String {
        const WORDS: &[&str] = &[
            "",
            "yes",
            "no",
            "on",
            "Off",
            "y",
            "N",
            "true",
            "null",
            "~",
            "0660",
            "0o660",
            "0x1b0",
            "1e3",
            ".inf",
            "-",
            "- x",
            "a: b",
            "a:",
            "#c",
            "[::1]:1",
            "{}",
            "[]",
            "'",
            "\"",
            "\\",
            "/etc/receptor/x.pem",
            "exec1:27199",
            "10m",
            "<<",
            "&a",
            "*a",
            "!t",
            "|",
            ">",
            "%",
            "@",
            "`",
            "2001-12-14",
            "1:30",
            "--- ",
            "...",
            "? k",
            " lead",
            "trail ",
        ];
        const CHARS: &[char] = &[
            'a', 'Z', '0', '9', '.', '-', '_', '/', ':', ' ', '#', '"', '\'', '\\', '\n', '\t',
            '\r', '\0', '\u{7}', '\u{7f}', '\u{85}', '\u{a0}', 'é', '\u{2028}', '\u{feff}', '😀',
            '{', '[', ',', '&', '*', '!', '|', '>', '%', '@', '`', '=', '+', '~', '?',
        ];
        if self.chance(30) {
            return self.pick(WORDS).to_string();
        }
        let len = self.below(12);
        (0..len).map(|_| *self.pick(CHARS)).collect()
    }

    fn opt_text(&mut self) -> Option<String> {
        self.chance(50).then(|| self.text())
    }

    fn opt_bool(&mut self) -> Option<bool> {
        match self.below(3) {
            0 => None,
            1 => Some(true),
            _ => Some(false),
        }
    }

    fn texts(&mut self) -> Vec<String> {
        let n = if self.chance(60) {
            0
        } else {
            1 + self.below(3)
        };
        (0..n).map(|_| self.text()).collect()
    }

    fn cost(&mut self) -> f64 {
        match self.below(6) {
            0 => 1.0,
            1 => f64::MIN_POSITIVE,
            2 => f64::MAX,
            3 => 1e-300,
            _ => (self.below(1_000_000) as f64 + 1.0) / 1000.0,
        }
    }

    fn node_id(&mut self) -> NodeId {
        const ID_CHARS: &[u8] = b"abcXYZ019._-";
        loop {
            let len = 1 + self.below(MAX_ID_GEN);
            let id: String = (0..len).map(|_| *self.pick(ID_CHARS) as char).collect();
            if let Ok(id) = NodeId::new(id) {
                return id;
            }
        }
    }

    fn value(&mut self, depth: usize) -> YamlValue {
        let kinds = if depth >= 3 { 5 } else { 7 };
        match self.below(kinds) {
            0 => YamlValue::Null,
            1 => YamlValue::Bool(self.chance(50)),
            2 => YamlValue::Int(match self.below(4) {
                0 => i128::from(i64::MIN),
                1 => i128::from(u64::MAX),
                2 => i128::from(self.next() as i64),
                _ => self.below(1000) as i128,
            }),
            3 => YamlValue::Float(match self.below(5) {
                0 => f64::NAN,
                1 => f64::NEG_INFINITY,
                2 => -0.0,
                _ => f64::from_bits(self.next()),
            }),
            4 => YamlValue::String(self.text()),
            5 => YamlValue::List((0..self.below(4)).map(|_| self.value(depth + 1)).collect()),
            _ => {
                let mut entries: Vec<(String, YamlValue)> = Vec::new();
                for _ in 0..self.below(4) {
                    let key = self.text();
                    if !entries.iter().any(|(k, _)| *k == key) {
                        entries.push((key, self.value(depth + 1)));
                    }
                }
                YamlValue::Map(entries)
            }
        }
    }

    fn rule(&mut self) -> FirewallRule {
        FirewallRule {
            action: *self.pick(&[
                FirewallAction::Accept,
                FirewallAction::Reject,
                FirewallAction::Drop,
            ]),
            fromnode: self.opt_text(),
            tonode: self.opt_text(),
            fromservice: self.opt_text(),
            toservice: self.opt_text(),
        }
    }

    fn entry(&mut self) -> Entry {
        match self.below(12) {
            0 => Entry::Node(Node {
                id: self.chance(70).then(|| self.node_id()),
                datadir: self.opt_text(),
                maxidleconnectiontimeout: self.opt_text(),
                firewallrules: (0..self.below(3)).map(|_| self.rule()).collect(),
            }),
            1 => Entry::LogLevel(*self.pick(&[
                LogLevel::Error,
                LogLevel::Warning,
                LogLevel::Info,
                LogLevel::Debug,
            ])),
            2 => Entry::LocalOnly,
            3 => Entry::TcpListener(TcpListener {
                port: self.next() as u16,
                bindaddr: self.opt_text(),
                tls: self.opt_text(),
                cost: self.chance(50).then(|| self.cost()),
                nodecost: (0..self.below(3))
                    .map(|_| (self.text(), self.cost()))
                    .collect(),
                allowedpeers: self.texts(),
            }),
            4 => Entry::TcpPeer(TcpPeer {
                address: self.text(),
                redial: self.opt_bool(),
                tls: self.opt_text(),
                cost: self.chance(50).then(|| self.cost()),
                allowedpeers: self.texts(),
            }),
            5 => Entry::ControlService(ControlService {
                service: self.opt_text(),
                filename: self.opt_text(),
                permissions: self.chance(50).then(|| self.below(0o10000) as u32),
                tls: self.opt_text(),
                tcplisten: self.opt_text(),
                tcptls: self.opt_text(),
            }),
            6 => Entry::TlsServer(TlsServer {
                name: self.text(),
                cert: self.text(),
                key: self.text(),
                requireclientcert: self.opt_bool(),
                clientcas: self.opt_text(),
                pinnedclientcert: self.texts(),
                skipreceptornamescheck: self.opt_bool(),
                mintls13: self.opt_bool(),
            }),
            7 => {
                let with_cert = self.chance(50);
                Entry::TlsClient(TlsClient {
                    name: self.text(),
                    cert: with_cert.then(|| self.text()),
                    key: with_cert.then(|| self.text()),
                    rootcas: self.opt_text(),
                    insecureskipverify: self.opt_bool(),
                    pinnedservercert: self.texts(),
                    skipreceptornamescheck: self.opt_bool(),
                    mintls13: self.opt_bool(),
                })
            }
            8 => Entry::WorkCommand(WorkCommand {
                worktype: self.text(),
                command: self.text(),
                params: self.opt_text(),
                allowruntimeparams: self.opt_bool(),
                verifysignature: self.opt_bool(),
            }),
            9 => Entry::WorkSigning(WorkSigning {
                privatekey: self.text(),
                tokenexpiration: self.opt_text(),
            }),
            10 => Entry::WorkVerification(WorkVerification {
                publickey: self.text(),
            }),
            _ => Entry::Other {
                key: self.pick(action::OTHER).to_string(),
                value: self.value(0),
            },
        }
    }

    fn config(&mut self) -> ReceptorConfig {
        let mut entries: Vec<Entry> = Vec::new();
        for _ in 0..self.below(14) {
            let entry = self.entry();
            let singleton = action::SINGLETONS.contains(&entry.action());
            if !singleton || !entries.iter().any(|e| e.action() == entry.action()) {
                entries.push(entry);
            }
        }
        ReceptorConfig { entries }
    }
}

const MAX_ID_GEN: usize = 20;

#[test]
fn generated_configs_round_trip() {
    let mut rng = Rng(0x5EED);
    for _ in 0..3000 {
        assert_round_trips(&rng.config());
    }
}

#[test]
fn generated_node_configs_round_trip() {
    let mut rng = Rng(42);
    for i in 0..300 {
        let t = NodeType::ALL[i % 4];
        let mut sp = spec(t, rng.node_id().as_str());
        if rng.chance(50) {
            sp.tls = tls();
        }
        if rng.chance(50) {
            sp.listen = Some(ListenSpec {
                port: 1 + rng.below(65535) as u16,
                bindaddr: None,
            });
        }
        sp.peers = (0..rng.below(3))
            .map(|j| format!("peer{j}.example:{}", 1 + rng.below(65535)))
            .collect();
        sp.worker_params = rng.text();
        if rng.chance(50) {
            sp.work_verification_key = Some("/k/pub.pem".into());
        }
        if matches!(t, NodeType::Control | NodeType::Hybrid) && rng.chance(50) {
            sp.work_signing_key = Some("/k/priv.pem".into());
        }
        let first = node_config(&sp).unwrap().render();
        assert_eq!(
            node_config(&sp).unwrap().render(),
            first,
            "same spec, same bytes"
        );
        assert_round_trips(&parse(&first));
    }
}
