//! API bearer tokens: creation (the secret is returned once, only its sha256 is stored), lookup
//! by hash, listing and revocation.

use std::fmt;
use std::str::FromStr;

use base64::Engine;
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use super::{Store, StoreError, now};

/// Every token starts with this, so a leaked one is easy to recognise (and grep for).
pub const TOKEN_PREFIX: &str = "mrt_";

/// Random bytes behind a token.
const SECRET_BYTES: usize = 32;

/// Seconds between two writes of a token's `last_used` (so reads do not all become writes).
const LAST_USED_EVERY_SECS: i64 = 60;

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenRole {
    /// Everything.
    Admin,
    /// GET and HEAD only.
    ReadOnly,
}

impl TokenRole {
    /// The stored and API name.
    pub fn as_str(self) -> &'static str {
        match self {
            TokenRole::Admin => "admin",
            TokenRole::ReadOnly => "read_only",
        }
    }
}

impl fmt::Display for TokenRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TokenRole {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "admin" => Ok(TokenRole::Admin),
            "read_only" | "read-only" => Ok(TokenRole::ReadOnly),
            _ => Err(format!(
                "unknown token role {s:?} (one of: admin, read-only)"
            )),
        }
    }
}

/// A stored token (never its secret).
#[derive(Debug, Clone, Serialize)]
pub struct ApiToken {
    /// Integer id.
    pub id: i64,
    /// What it may do.
    pub role: TokenRole,
    /// A label for people and logs.
    pub name: String,
    /// Free text.
    pub description: String,
    /// When it was made.
    pub created: String,
    /// When it was last accepted (to within a minute), if ever.
    pub last_used: Option<String>,
    /// Refused from now on.
    pub revoked: bool,
}

/// Why a token could not be made.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The OS gave no random bytes.
    #[error("cannot read random bytes for a token: {0}")]
    Random(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The stored form of a token: hex sha256 of its whole text.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Whether `token` has the shape of one this store makes (prefix and 43 base64url characters).
pub fn well_formed(token: &str) -> bool {
    token.strip_prefix(TOKEN_PREFIX).is_some_and(|rest| {
        rest.len() == 43
            && rest
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    })
}

fn new_secret() -> Result<String, TokenError> {
    let mut bytes = [0u8; SECRET_BYTES];
    getrandom::getrandom(&mut bytes).map_err(|e| TokenError::Random(e.to_string()))?;
    Ok(format!(
        "{TOKEN_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    ))
}

fn token_from_row(row: &SqliteRow) -> Result<ApiToken, StoreError> {
    let role: String = row.try_get("role")?;
    Ok(ApiToken {
        id: row.try_get("id")?,
        role: role.parse().map_err(|_| StoreError::Invalid {
            what: "token role",
            value: role,
        })?,
        name: row.try_get("name")?,
        description: row.try_get("description")?,
        created: row.try_get("created")?,
        last_used: row.try_get("last_used")?,
        revoked: row.try_get::<i64, _>("revoked")? != 0,
    })
}

impl Store {
    /// Makes a token; the returned text is the only copy of the secret.
    pub async fn create_api_token(
        &self,
        role: TokenRole,
        name: &str,
        description: &str,
    ) -> Result<(ApiToken, String), TokenError> {
        let secret = new_secret()?;
        let row = sqlx::query(
            "INSERT INTO api_tokens (token_sha256, role, name, description, created) \
             VALUES (?, ?, ?, ?, ?) RETURNING *",
        )
        .bind(token_hash(&secret))
        .bind(role.as_str())
        .bind(name)
        .bind(description)
        .bind(now())
        .fetch_one(&self.pool)
        .await
        .map_err(StoreError::from)?;
        Ok((token_from_row(&row)?, secret))
    }

    /// The token whose text hashes to `hash`, revoked or not.
    pub async fn api_token_by_hash(&self, hash: &str) -> Result<Option<ApiToken>, StoreError> {
        let row = sqlx::query("SELECT * FROM api_tokens WHERE token_sha256 = ?")
            .bind(hash)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(token_from_row).transpose()
    }

    /// Records that token `id` was just accepted (at most once a minute).
    pub async fn touch_api_token(&self, id: i64) -> Result<(), StoreError> {
        let stamp = now();
        let cutoff = (chrono::Utc::now() - chrono::Duration::seconds(LAST_USED_EVERY_SECS))
            .to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        sqlx::query(
            "UPDATE api_tokens SET last_used = ? \
             WHERE id = ? AND (last_used IS NULL OR last_used < ?)",
        )
        .bind(stamp)
        .bind(id)
        .bind(cutoff)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Every token, oldest first.
    pub async fn list_api_tokens(&self) -> Result<Vec<ApiToken>, StoreError> {
        let rows = sqlx::query("SELECT * FROM api_tokens ORDER BY id")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(token_from_row).collect()
    }

    /// Revokes token `id`; false when there is no such token.
    pub async fn revoke_api_token(&self, id: i64) -> Result<bool, StoreError> {
        let done = sqlx::query("UPDATE api_tokens SET revoked = 1 WHERE id = ?")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn tokens_are_stored_as_hashes_and_found_by_them() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db")).await.unwrap();
        let (made, secret) = store
            .create_api_token(TokenRole::ReadOnly, "ci", "")
            .await
            .unwrap();
        assert!(well_formed(&secret), "{secret}");
        let stored: Vec<String> = sqlx::query_scalar("SELECT token_sha256 FROM api_tokens")
            .fetch_all(&store.pool)
            .await
            .unwrap();
        assert_eq!(stored, vec![token_hash(&secret)]);
        assert!(!stored[0].contains(&secret[TOKEN_PREFIX.len()..]));
        let found = store
            .api_token_by_hash(&token_hash(&secret))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(found.id, made.id);
        assert_eq!(found.role, TokenRole::ReadOnly);
        store.touch_api_token(made.id).await.unwrap();
        assert!(
            store.list_api_tokens().await.unwrap()[0]
                .last_used
                .is_some()
        );
        assert!(store.revoke_api_token(made.id).await.unwrap());
        assert!(store.list_api_tokens().await.unwrap()[0].revoked);
        assert!(!store.revoke_api_token(made.id + 1).await.unwrap());
    }

    #[test]
    fn token_shape() {
        assert!(!well_formed("mrt_short"));
        assert!(!well_formed(&format!("xyz_{}", "a".repeat(43))));
        assert!(well_formed(&format!("mrt_{}", "a".repeat(43))));
        assert!(!well_formed(&format!("mrt_{}", "a".repeat(42) + "=")));
    }
}
