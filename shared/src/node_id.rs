//! Receptor node ids as meshrun accepts them.
//!
//! Receptor itself only refuses `localhost`; everything else is a convention. meshrun is stricter
//! because a node id travels through places with their own rules: plaintext control commands split
//! on spaces, addresses print as `node:service`, the TLS client check splits on `:`, and the id is
//! also the instance hostname, a certificate name and part of container names. So a node id is
//! 1 to 63 characters from `[A-Za-z0-9._-]` and is never `localhost` in any case. Ids stay
//! case-sensitive, as in receptor.

use std::fmt;
use std::str::FromStr;

/// The longest node id accepted, in characters (a DNS label's limit).
pub const MAX_LEN: usize = 63;

/// How much of a refused id an error keeps, so hostile input cannot flood logs.
const SHOWN_LEN: usize = 80;

/// A node id that follows meshrun's rules; see the module docs.
///
/// Serialises as a plain string; deserialising checks the rules.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "String")]
pub struct NodeId(String);

/// Why a string is not a valid node id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NodeIdError {
    /// The id is the empty string.
    #[error("node id is empty: it must be 1-{MAX_LEN} characters from [A-Za-z0-9._-]")]
    Empty,
    /// The id has more than [`MAX_LEN`] characters.
    #[error("node id {id:?} is {len} characters long: at most {MAX_LEN} are allowed")]
    TooLong {
        /// Its length in characters.
        len: usize,
        /// The refused id, cut to its first 80 characters.
        id: String,
    },
    /// The id has a character outside `[A-Za-z0-9._-]`.
    #[error("node id {id:?} has {ch:?} at position {pos}: only [A-Za-z0-9._-] are allowed")]
    BadChar {
        /// The first offending character.
        ch: char,
        /// Its position, counted in characters from 0.
        pos: usize,
        /// The refused id, cut to its first 80 characters.
        id: String,
    },
    /// The id is `localhost` in some case, which receptor reserves for "this node".
    #[error(
        "node id {id:?} is reserved: receptor reads \"localhost\" (in any case) as the local node"
    )]
    Reserved {
        /// The refused id.
        id: String,
    },
    /// The id is only dots (`.`, `..`): as a directory or file name it would point elsewhere.
    #[error("node id {id:?} is only dots: it would name a directory, not a node")]
    DotsOnly {
        /// The refused id.
        id: String,
    },
}

fn shown(s: &str) -> String {
    s.chars().take(SHOWN_LEN).collect()
}

fn allowed(ch: char) -> bool {
    ch.is_ascii_alphanumeric() || matches!(ch, '.' | '_' | '-')
}

fn check(s: &str) -> Result<(), NodeIdError> {
    if s.is_empty() {
        return Err(NodeIdError::Empty);
    }
    let len = s.chars().count();
    if len > MAX_LEN {
        return Err(NodeIdError::TooLong { len, id: shown(s) });
    }
    if let Some((pos, ch)) = s.chars().enumerate().find(|&(_, ch)| !allowed(ch)) {
        return Err(NodeIdError::BadChar {
            ch,
            pos,
            id: shown(s),
        });
    }
    if s.eq_ignore_ascii_case("localhost") {
        return Err(NodeIdError::Reserved { id: s.to_string() });
    }
    if s.chars().all(|c| c == '.') {
        return Err(NodeIdError::DotsOnly { id: s.to_string() });
    }
    Ok(())
}

impl NodeId {
    /// Checks `s` against the rules and wraps it.
    pub fn new(s: impl Into<String>) -> Result<Self, NodeIdError> {
        let s = s.into();
        check(&s)?;
        Ok(NodeId(s))
    }

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The id as an owned string.
    pub fn into_string(self) -> String {
        self.0
    }
}

impl FromStr for NodeId {
    type Err = NodeIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        NodeId::new(s)
    }
}

impl TryFrom<String> for NodeId {
    type Error = NodeIdError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        NodeId::new(s)
    }
}

impl From<NodeId> for String {
    fn from(id: NodeId) -> Self {
        id.0
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for NodeId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl PartialEq<str> for NodeId {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for NodeId {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_allowed_alphabet_and_lengths() {
        for ok in [
            "a",
            "exec1.example.com",
            "awx-task-abc",
            "A_b.C-9",
            "0",
            ".a.",
            "-lead",
            "localhost1",
            "my.localhost",
        ] {
            let id = NodeId::new(ok).unwrap();
            assert_eq!(id.as_str(), ok);
            assert_eq!(id.to_string(), ok);
        }
        let max = "x".repeat(MAX_LEN);
        assert_eq!(NodeId::new(max.clone()).unwrap().as_ref(), max);
    }

    #[test]
    fn ids_stay_case_sensitive() {
        assert_ne!(NodeId::new("Node").unwrap(), NodeId::new("node").unwrap());
    }

    #[test]
    fn empty_is_refused() {
        let err = NodeId::new("").unwrap_err();
        assert_eq!(err, NodeIdError::Empty);
        assert!(err.to_string().contains("[A-Za-z0-9._-]"));
    }

    #[test]
    fn dots_only_are_refused_but_dots_inside_a_name_are_fine() {
        for id in [".", "..", "..."] {
            assert!(
                matches!(NodeId::new(id), Err(NodeIdError::DotsOnly { .. })),
                "{id}"
            );
        }
        assert!(NodeId::new("exec1.example.com").is_ok());
        assert!(NodeId::new(".hidden").is_ok());
    }

    #[test]
    fn too_long_is_refused_and_the_message_is_bounded() {
        let err = NodeId::new("y".repeat(MAX_LEN + 1)).unwrap_err();
        assert!(matches!(err, NodeIdError::TooLong { len: 64, .. }));
        assert!(err.to_string().contains("at most 63"));
        let huge = NodeId::new("z".repeat(1 << 20)).unwrap_err();
        assert!(huge.to_string().len() < 300, "{}", huge.to_string().len());
    }

    #[test]
    fn bad_characters_are_refused_with_their_position() {
        let cases = [
            ("has space", ' ', 3),
            ("node:svc", ':', 4),
            ("a/b", '/', 1),
            ("tab\there", '\t', 3),
            ("nul\0", '\0', 3),
            ("é", 'é', 0),
            ("ab\n", '\n', 2),
            ("x*", '*', 1),
        ];
        for (input, ch, pos) in cases {
            let err = NodeId::new(input).unwrap_err();
            assert_eq!(
                err,
                NodeIdError::BadChar {
                    ch,
                    pos,
                    id: input.to_string()
                },
                "{input:?}"
            );
            let msg = err.to_string();
            assert!(msg.contains(&format!("{input:?}")), "{msg}");
            assert!(msg.contains("[A-Za-z0-9._-]"), "{msg}");
        }
    }

    #[test]
    fn localhost_is_reserved_in_any_case() {
        for bad in ["localhost", "LOCALHOST", "LocalHost"] {
            let err = NodeId::new(bad).unwrap_err();
            assert_eq!(
                err,
                NodeIdError::Reserved {
                    id: bad.to_string()
                }
            );
            assert!(err.to_string().contains(bad));
        }
    }

    #[test]
    fn parses_and_converts() {
        let id: NodeId = "hop1".parse().unwrap();
        assert_eq!(id, "hop1");
        assert_eq!(NodeId::try_from("hop1".to_string()).unwrap(), id);
        assert_eq!(String::from(id.clone()), "hop1");
        assert_eq!(id.into_string(), "hop1");
        assert!("bad id".parse::<NodeId>().is_err());
    }

    #[test]
    fn serde_round_trips_and_validates() {
        let id = NodeId::new("exec-1").unwrap();
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, "\"exec-1\"");
        assert_eq!(serde_json::from_str::<NodeId>(&json).unwrap(), id);
        let err = serde_json::from_str::<NodeId>("\"localhost\"").unwrap_err();
        assert!(err.to_string().contains("reserved"), "{err}");
        assert!(serde_json::from_str::<NodeId>("\"\"").is_err());
        assert!(serde_json::from_str::<NodeId>("12").is_err());
    }
}
