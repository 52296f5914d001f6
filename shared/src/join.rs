//! The self-registration contract between `meshrun-agent join` and the coordinator.
//!
//! A join token is one line an admin pastes onto a new node. It carries everything the node needs
//! to reach the coordinator safely: the coordinator's HTTPS address, the SHA-256 fingerprint of the
//! mesh CA (so the first connection is pinned, with no prior trust) and a random secret (of which
//! the coordinator stores only a hash). The wire types of `POST /api/v2/join/` and
//! `POST /api/v2/join/renew/` live here so that both ends agree by construction.

use std::fmt;
use std::net::IpAddr;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use crate::node_type::NodeType;

/// The object identifier of receptor's node-name otherName SAN (`1.3.6.1.4.1.2312.19.1`); its
/// value is the node id as a UTF8String.
pub const RECEPTOR_NAME_OID: [u64; 9] = [1, 3, 6, 1, 4, 1, 2312, 19, 1];

/// What every join token starts with, so a pasted API token (or garbage) is told apart at once.
pub const TOKEN_PREFIX: &str = "mrjoin1.";

/// The longest token text accepted, in bytes.
pub const MAX_TOKEN_LEN: usize = 4096;

/// The join API path (open: the join token is the credential).
pub const JOIN_PATH: &str = "/api/v2/join/";
/// The CA certificate path (open: the client checks it against the token's fingerprint).
pub const CA_PATH: &str = "/api/v2/join/ca/";
/// The renewal path (authenticated by the node's current certificate over mutual TLS).
pub const RENEW_PATH: &str = "/api/v2/join/renew/";

/// Limits on a join request, checked by the coordinator before anything is parsed further.
pub mod limits {
    /// The largest CSR accepted, in bytes of PEM.
    pub const MAX_CSR_LEN: usize = 16 * 1024;
    /// The most DNS names (or IP addresses) a node may ask to be dialled at.
    pub const MAX_NAMES: usize = 16;
    /// The longest DNS name.
    pub const MAX_DNS_LEN: usize = 253;
    /// The largest join request body, in bytes.
    pub const MAX_BODY: usize = 64 * 1024;
}

/// The parts of a join token.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JoinToken {
    /// The coordinator's API base URL (`https://host:port`).
    #[serde(rename = "u")]
    pub url: String,
    /// Lowercase hex SHA-256 of the mesh CA certificate's DER.
    #[serde(rename = "f")]
    pub ca_fingerprint: String,
    /// The secret (URL-safe base64 of random bytes); the coordinator keeps only its SHA-256.
    #[serde(rename = "s")]
    pub secret: String,
}

/// The secret never reaches logs.
impl fmt::Debug for JoinToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinToken")
            .field("url", &self.url)
            .field("ca_fingerprint", &self.ca_fingerprint)
            .field("secret", &"***")
            .finish()
    }
}

/// Why a string is not a join token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JoinTokenError {
    /// Too long to be one.
    #[error("join token is {0} bytes long: at most {MAX_TOKEN_LEN} are allowed")]
    TooLong(usize),
    /// It does not start with the join-token prefix.
    #[error(
        "this is not a join token (join tokens start with \"{TOKEN_PREFIX}\"; make one with `meshrun token create`)"
    )]
    NotAJoinToken,
    /// The part after the prefix is not URL-safe base64 of the token JSON.
    #[error("join token is damaged: {0}")]
    Damaged(String),
    /// The URL is not an https URL.
    #[error("join token names coordinator {0:?}, which is not an https:// URL")]
    BadUrl(String),
    /// The fingerprint is not 64 lowercase hex digits.
    #[error("join token's CA fingerprint is not 64 lowercase hex digits")]
    BadFingerprint,
    /// The secret is too short to be one the coordinator made.
    #[error("join token's secret is too short")]
    BadSecret,
}

impl JoinToken {
    /// The token as one line of text.
    pub fn encode(&self) -> String {
        let json = serde_json::to_vec(self).expect("a token serialises");
        format!("{TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(json))
    }

    /// Parses and checks a token's text (surrounding whitespace is ignored).
    pub fn decode(text: &str) -> Result<JoinToken, JoinTokenError> {
        let text = text.trim();
        if text.len() > MAX_TOKEN_LEN {
            return Err(JoinTokenError::TooLong(text.len()));
        }
        let body = text
            .strip_prefix(TOKEN_PREFIX)
            .ok_or(JoinTokenError::NotAJoinToken)?;
        let json = URL_SAFE_NO_PAD
            .decode(body)
            .map_err(|e| JoinTokenError::Damaged(format!("not URL-safe base64 ({e})")))?;
        let token: JoinToken = serde_json::from_slice(&json)
            .map_err(|e| JoinTokenError::Damaged(format!("not the token's JSON ({e})")))?;
        token.check()?;
        Ok(token)
    }

    fn check(&self) -> Result<(), JoinTokenError> {
        let rest = self
            .url
            .strip_prefix("https://")
            .ok_or_else(|| JoinTokenError::BadUrl(shown(&self.url)))?;
        if rest.is_empty() || rest.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(JoinTokenError::BadUrl(shown(&self.url)));
        }
        if !is_fingerprint(&self.ca_fingerprint) {
            return Err(JoinTokenError::BadFingerprint);
        }
        if self.secret.len() < 22 || self.secret.len() > 128 {
            return Err(JoinTokenError::BadSecret);
        }
        Ok(())
    }
}

/// Whether `s` is 64 lowercase hex digits (a SHA-256 in the form meshrun prints).
pub fn is_fingerprint(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn shown(s: &str) -> String {
    s.chars().take(120).collect()
}

/// What a node sends to `POST /api/v2/join/`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JoinRequest {
    /// The whole join token text (the coordinator hashes its secret).
    pub token: String,
    /// The node id it asks for (also its hostname in the instances list).
    pub node_id: String,
    /// The node type it expects to be; refused when the token was made for another type.
    #[serde(default)]
    pub node_type: Option<NodeType>,
    /// A PKCS#10 CSR (PEM) made with the node's own key; its subject and SANs are ignored.
    pub csr_pem: String,
    /// DNS names other nodes dial it at (from `--advertise`), put in its certificate.
    #[serde(default)]
    pub dns_names: Vec<String>,
    /// IP addresses other nodes dial it at, put in its certificate.
    #[serde(default)]
    pub ip_addresses: Vec<IpAddr>,
    /// `host:port` other nodes dial, when it listens.
    #[serde(default)]
    pub advertise: Option<String>,
    /// `host:port` it will dial (else the coordinator names the listener).
    #[serde(default)]
    pub peer: Option<String>,
    /// The agent's version.
    #[serde(default)]
    pub agent_version: Option<String>,
}

/// The coordinator's answer to a successful join.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinResponse {
    /// The node id the certificate is bound to.
    pub node_id: String,
    /// The node type it was registered as (from the token).
    pub node_type: NodeType,
    /// The mesh CA certificate (PEM).
    pub ca_pem: String,
    /// The node's certificate (PEM), bound to its id.
    pub cert_pem: String,
    /// When the certificate expires (RFC 3339).
    pub not_after: String,
    /// The public key work is signed with (PEM), for `work-verification`.
    pub work_verification_pem: String,
    /// The listeners (`host:port`) the node dials, TLS with the mesh CA.
    pub peers: Vec<String>,
}

/// What a node sends to `POST /api/v2/join/renew/` over mutual TLS with its current certificate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenewRequest {
    /// A CSR (PEM) for the new key; the node id comes from the client certificate.
    pub csr_pem: String,
}

/// The coordinator's answer to a renewal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RenewResponse {
    /// The mesh CA certificate (PEM).
    pub ca_pem: String,
    /// The new certificate (PEM).
    pub cert_pem: String,
    /// When it expires (RFC 3339).
    pub not_after: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token() -> JoinToken {
        JoinToken {
            url: "https://coord.example:8052".into(),
            ca_fingerprint: "ab".repeat(32),
            secret: "s".repeat(43),
        }
    }

    #[test]
    fn a_token_round_trips_and_hides_its_secret_in_debug() {
        let t = token();
        let text = t.encode();
        assert!(text.starts_with(TOKEN_PREFIX));
        assert_eq!(JoinToken::decode(&format!("  {text}\n")).unwrap(), t);
        assert!(!format!("{t:?}").contains("sss"));
    }

    #[test]
    fn bad_tokens_say_what_is_wrong() {
        assert_eq!(
            JoinToken::decode("mrapi_abc"),
            Err(JoinTokenError::NotAJoinToken)
        );
        assert!(matches!(
            JoinToken::decode("mrjoin1.!!!"),
            Err(JoinTokenError::Damaged(_))
        ));
        let mut t = token();
        t.url = "http://coord:8052".into();
        assert!(matches!(
            JoinToken::decode(&t.encode()),
            Err(JoinTokenError::BadUrl(_))
        ));
        let mut t = token();
        t.ca_fingerprint = "AB".repeat(32);
        assert_eq!(
            JoinToken::decode(&t.encode()),
            Err(JoinTokenError::BadFingerprint)
        );
        let mut t = token();
        t.secret = "x".into();
        assert_eq!(
            JoinToken::decode(&t.encode()),
            Err(JoinTokenError::BadSecret)
        );
        let long = format!("{TOKEN_PREFIX}{}", "A".repeat(MAX_TOKEN_LEN));
        assert!(matches!(
            JoinToken::decode(&long),
            Err(JoinTokenError::TooLong(_))
        ));
        // Extra JSON fields are a damaged token, not silently ignored.
        let extra = format!(
            "{TOKEN_PREFIX}{}",
            URL_SAFE_NO_PAD.encode(br#"{"u":"https://a","f":"","s":"","x":1}"#)
        );
        assert!(matches!(
            JoinToken::decode(&extra),
            Err(JoinTokenError::Damaged(_))
        ));
    }
}
