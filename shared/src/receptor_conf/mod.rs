//! `receptor.conf`: a typed model, a parser that reads files the way receptor does, a byte-stable
//! renderer, and the configs meshrun writes for each node type.
//!
//! The file is a YAML list of single-key maps, one per action (`- node: {id: exec1}`). receptor
//! (via `ghjm/cmdline` and go-yaml v2) reads it with rules this module reproduces, each checked
//! against receptor 1.4.8:
//! - action names are matched exactly and are lowercase (`- Node:` is refused); field names are
//!   case-insensitive (`workType` is `worktype`);
//! - an item may be a bare name (`- local-only`), and an action with a "bare value" field takes a
//!   **string** in place of its map (`- log-level: debug`, `- tcp-listener: "27199"`); a plain
//!   number there is refused, as receptor refuses it;
//! - scalars follow YAML 1.1: a plain `0660` is octal 432, `yes`/`on`/`y` are booleans, `1_000`
//!   is 1000; a quoted scalar is always a string;
//! - numbers in strings are read as Go does (`'0660'`, `'0o660'`, `'0x1b0'` are all 432), booleans
//!   in strings accept `1 t T Y true TRUE True yes Yes YES` and the matching false words, and a
//!   plain number for a boolean is refused (receptor refuses `redial: 1`);
//! - numbers and booleans given for a string field become their text (`id: yes` is the id `true`,
//!   `id: 0660` the id `432`): receptor does this too.
//!
//! Where receptor accepts something only by accident, the parser refuses it with a message:
//! floats given for string or integer fields (receptor formats or truncates them), numbers in
//! string lists or firewall rules (receptor turns them into runes or refuses them later),
//! duplicate keys, unknown actions, actions that make receptor exit (`version`, `cert-*`), YAML
//! anchors, aliases and tags.
//!
//! Rendering is by hand and byte-stable: the same model gives the same bytes, and
//! `parse(render(c)) == c`. Strings are written plain only when they are unambiguous in YAML 1.1
//! and 1.2 alike, otherwise double-quoted with escapes.

mod model;
mod node_config;
mod parse;
mod render;
mod yaml;

#[cfg(test)]
mod tests;

use std::fmt;

pub use model::{
    ControlService, Entry, FirewallAction, FirewallRule, LogLevel, Node, ReceptorConfig,
    TcpListener, TcpPeer, TlsClient, TlsServer, UnknownLogLevel, WorkCommand, WorkSigning,
    WorkVerification, YamlValue, action,
};
pub use node_config::{
    CONTROL_SERVICE_NAME, DEFAULT_SOCKET_PERMISSIONS, ListenSpec, MAX_SOCKET_PATH_LEN,
    NodeConfigSpec, TLS_CLIENT_NAME, TLS_SERVER_NAME, TOKEN_EXPIRATION, TlsFiles, node_config,
};
pub use parse::MAX_CONF_LEN;

/// Where in the file an action is: its position in the list (from 0), its line and its name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryAt {
    /// Position in the top-level list, from 0.
    pub index: usize,
    /// Line of the item, from 1.
    pub line: usize,
    /// The action name as written.
    pub action: String,
}

impl fmt::Display for EntryAt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown: String = self.action.chars().take(80).collect();
        write!(
            f,
            "item {} (`{}`, line {})",
            self.index + 1,
            shown,
            self.line
        )
    }
}

/// Why a `receptor.conf` could not be parsed, or a node config could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfError {
    /// The text is larger than [`MAX_CONF_LEN`].
    #[error("receptor.conf is {len} bytes; at most {max} are accepted")]
    TooLarge {
        /// Its size in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The text is not valid YAML.
    #[error("YAML syntax error at line {line}, column {col}: {message}")]
    Syntax {
        /// Line, from 1.
        line: usize,
        /// Column, from 1.
        col: usize,
        /// The YAML parser's explanation.
        message: String,
    },
    /// A YAML feature receptor configs never need and this parser refuses.
    #[error("line {line}: unsupported YAML: {what}")]
    Unsupported {
        /// Line, from 1.
        line: usize,
        /// The feature.
        what: &'static str,
    },
    /// Lists and maps nest too deeply.
    #[error("line {line}: lists and maps nest deeper than {max} levels")]
    TooDeep {
        /// Line, from 1.
        line: usize,
        /// The limit.
        max: usize,
    },
    /// The same key twice in one map (receptor would silently keep the last).
    #[error("line {line}: key {key:?} appears twice in the same map")]
    DuplicateKey {
        /// Line of the second occurrence, from 1.
        line: usize,
        /// The key.
        key: String,
    },
    /// A map key that YAML 1.1 reads as something other than a string.
    #[error("line {line}: map keys must be strings, found {found} (quote it)")]
    NonStringKey {
        /// Line, from 1.
        line: usize,
        /// What the key is.
        found: String,
    },
    /// The document is not a list.
    #[error("receptor.conf must be a YAML list of actions, found {found}")]
    NotAList {
        /// What the document is.
        found: String,
    },
    /// A list item is neither an action name nor a single-key map.
    #[error("item {} (line {line}): {problem}", index + 1)]
    BadItem {
        /// Position in the list, from 0.
        index: usize,
        /// Line, from 1.
        line: usize,
        /// What is wrong.
        problem: String,
    },
    /// An action receptor does not have.
    #[error("{at}: receptor has no such action (action names are lowercase, like `tcp-peer`)")]
    UnknownAction {
        /// Where.
        at: EntryAt,
    },
    /// An action that makes receptor run it and exit instead of running the node.
    #[error(
        "{at}: this action makes receptor do only that and exit; it has no place in a node's config"
    )]
    ExclusiveAction {
        /// Where.
        at: EntryAt,
    },
    /// A second copy of an action receptor allows once.
    #[error("{at}: only one `{}` is allowed and item {} already is one", at.action, first + 1)]
    DuplicateSingleton {
        /// Where the second copy is.
        at: EntryAt,
        /// Position of the first copy, from 0.
        first: usize,
    },
    /// The action's parameters are neither a map nor an allowed bare value.
    #[error("{at}: {problem}")]
    BadParams {
        /// Where.
        at: EntryAt,
        /// What is wrong.
        problem: String,
    },
    /// A field the action does not have.
    #[error("{at}: unknown field {field:?}; the fields are {expected}")]
    UnknownField {
        /// Where.
        at: EntryAt,
        /// The field as written.
        field: String,
        /// The fields the action has.
        expected: String,
    },
    /// The same field twice, possibly in different case.
    #[error("{at}: field `{field}` is given twice (field names are case-insensitive)")]
    DuplicateField {
        /// Where.
        at: EntryAt,
        /// The field, lowercase.
        field: String,
    },
    /// A required field is absent.
    #[error("{at}: required field `{field}` is missing")]
    MissingField {
        /// Where.
        at: EntryAt,
        /// The field.
        field: String,
    },
    /// A field's value has the wrong type or an invalid value.
    #[error("{at}: field `{field}`: {problem}")]
    BadValue {
        /// Where.
        at: EntryAt,
        /// The field (`firewallrules[1].tonode` inside rules).
        field: String,
        /// What is wrong.
        problem: String,
    },
    /// A [`NodeConfigSpec`] field is invalid.
    #[error("node config: `{field}`: {problem}")]
    Spec {
        /// The spec field.
        field: &'static str,
        /// What is wrong.
        problem: String,
    },
}
