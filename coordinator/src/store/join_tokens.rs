//! Join tokens (only the sha256 of a token's text is stored) and the certificates the mesh CA
//! issued to nodes (`node_certs`). A join consumes one use of its token, registers the instance
//! and records its certificate in ONE transaction, so a refused or failed join stores nothing.

use chrono::{DateTime, Utc};
use meshrun_shared::node_type::NodeType;
use serde::Serialize;
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use super::{Store, StoreError, now};

/// A stored join token (never its secret).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JoinTokenRow {
    /// Integer id.
    pub id: i64,
    /// The node type a node joining with it is registered as.
    pub node_type: NodeType,
    /// When it stops being accepted (RFC 3339).
    pub expires_at: String,
    /// Joins it still allows.
    pub uses_left: i64,
    /// Joins it allowed when made.
    pub uses: i64,
    /// A label for people.
    pub name: String,
    /// Who made it (the API token's name).
    pub created_by: String,
    /// When it was made.
    pub created: String,
    /// Refused from now on.
    pub revoked: bool,
}

impl JoinTokenRow {
    /// Whether it has expired at `at`.
    pub fn expired_at(&self, at: DateTime<Utc>) -> bool {
        DateTime::parse_from_rfc3339(&self.expires_at).map_or(true, |e| e <= at)
    }
}

/// What a new join token is.
#[derive(Debug, Clone)]
pub struct NewJoinToken {
    /// Hex sha256 of the token text.
    pub token_sha256: String,
    /// execution or hop.
    pub node_type: NodeType,
    /// Expiry.
    pub expires_at: DateTime<Utc>,
    /// Joins allowed.
    pub uses: i64,
    /// A label.
    pub name: String,
    /// Who made it.
    pub created_by: String,
}

/// A certificate issued to a node.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodeCert {
    /// The node (instance hostname).
    pub hostname: String,
    /// Hex sha256 of the certified public key.
    pub key_sha256: String,
    /// Hex serial.
    pub serial: String,
    /// Expiry (RFC 3339).
    pub not_after: String,
    /// When it was issued.
    pub issued_at: String,
    /// DNS names it carries.
    pub dns_names: Vec<String>,
    /// IP addresses it carries.
    pub ip_addresses: Vec<std::net::IpAddr>,
    /// `join` or `renew`.
    pub kind: String,
}

/// A certificate to record.
#[derive(Debug, Clone)]
pub struct NewNodeCert {
    /// Hex sha256 of the certified public key.
    pub key_sha256: String,
    /// Hex serial.
    pub serial: String,
    /// Expiry.
    pub not_after: DateTime<Utc>,
    /// DNS names it carries.
    pub dns_names: Vec<String>,
    /// IP addresses it carries.
    pub ip_addresses: Vec<std::net::IpAddr>,
}

/// A join to record.
#[derive(Debug, Clone)]
pub struct JoinRecord {
    /// The token's id.
    pub token_id: i64,
    /// The node id.
    pub hostname: String,
    /// The node type (the token's).
    pub node_type: NodeType,
    /// Where other nodes dial it, if it listens.
    pub listener_address: Option<String>,
    /// Its new certificate.
    pub cert: NewNodeCert,
}

/// What became of a join.
#[derive(Debug, Clone, PartialEq)]
pub enum JoinOutcome {
    /// A new instance was registered (one use of the token consumed).
    Joined {
        /// The instance id.
        instance_id: i64,
    },
    /// The node re-joined with the key of its current certificate (no use consumed).
    Rejoined {
        /// The instance id.
        instance_id: i64,
    },
    /// The token was revoked meanwhile.
    Revoked,
    /// The token expired meanwhile.
    Expired,
    /// The token has no uses left.
    UsedUp,
    /// The id belongs to an instance whose current certificate has another key (or none).
    Taken {
        /// How that instance was registered.
        registered_by: String,
        /// Whether it holds a certificate at all.
        has_cert: bool,
    },
    /// The token vanished.
    UnknownToken,
    /// The id belongs to an instance that is being removed (`meshrun instances remove`).
    BeingRemoved,
}

/// What became of a renewal.
#[derive(Debug, Clone, PartialEq)]
pub enum RenewOutcome {
    /// Recorded.
    Renewed,
    /// The instance no longer exists.
    Gone,
    /// The instance is being removed.
    Deprovisioning,
}

fn token_from_row(row: &SqliteRow) -> Result<JoinTokenRow, StoreError> {
    let node_type: String = row.try_get("node_type")?;
    Ok(JoinTokenRow {
        id: row.try_get("id")?,
        node_type: node_type.parse().map_err(|_| StoreError::Invalid {
            what: "join token node type",
            value: node_type,
        })?,
        expires_at: row.try_get("expires_at")?,
        uses_left: row.try_get("uses_left")?,
        uses: row.try_get("uses")?,
        name: row.try_get("name")?,
        created_by: row.try_get("created_by")?,
        created: row.try_get("created")?,
        revoked: row.try_get::<i64, _>("revoked")? != 0,
    })
}

fn cert_from_row(row: &SqliteRow) -> Result<NodeCert, StoreError> {
    let dns: String = row.try_get("dns_names")?;
    let ips: String = row.try_get("ip_addresses")?;
    Ok(NodeCert {
        hostname: row.try_get("hostname")?,
        key_sha256: row.try_get("key_sha256")?,
        serial: row.try_get("serial")?,
        not_after: row.try_get("not_after")?,
        issued_at: row.try_get("issued_at")?,
        dns_names: serde_json::from_str(&dns).map_err(|_| StoreError::Invalid {
            what: "node certificate DNS names",
            value: dns,
        })?,
        ip_addresses: serde_json::from_str(&ips).map_err(|_| StoreError::Invalid {
            what: "node certificate IP addresses",
            value: ips,
        })?,
        kind: row.try_get("kind")?,
    })
}

fn stamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// The newest certificate of the instance named `hostname`, inside `conn`.
const CURRENT_CERT_SQL: &str = "SELECT c.* FROM node_certs c JOIN instances i ON i.id = c.instance_id \
     WHERE i.hostname = $1 ORDER BY c.id DESC LIMIT 1";

async fn insert_cert(
    conn: &mut sqlx::SqliteConnection,
    instance_id: i64,
    hostname: &str,
    cert: &NewNodeCert,
    token_id: Option<i64>,
    kind: &str,
) -> Result<(), StoreError> {
    let dns = serde_json::to_string(&cert.dns_names).unwrap_or_else(|_| "[]".into());
    let ips = serde_json::to_string(&cert.ip_addresses).unwrap_or_else(|_| "[]".into());
    sqlx::query(
        "INSERT INTO node_certs (instance_id, hostname, key_sha256, serial, not_after, issued_at, \
         dns_names, ip_addresses, token_id, kind) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(instance_id)
    .bind(hostname)
    .bind(&cert.key_sha256)
    .bind(&cert.serial)
    .bind(stamp(cert.not_after))
    .bind(now())
    .bind(dns)
    .bind(ips)
    .bind(token_id)
    .bind(kind)
    .execute(conn)
    .await?;
    Ok(())
}

impl Store {
    /// Stores a join token (its hash only).
    pub async fn create_join_token(&self, new: &NewJoinToken) -> Result<JoinTokenRow, StoreError> {
        let row = sqlx::query(
            "INSERT INTO join_tokens (token_sha256, node_type, expires_at, uses_left, uses, name, \
             created_by, created) VALUES ($1, $2, $3, $4, $4, $5, $6, $7) RETURNING *",
        )
        .bind(&new.token_sha256)
        .bind(new.node_type.as_str())
        .bind(
            new.expires_at
                .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        )
        .bind(new.uses)
        .bind(&new.name)
        .bind(&new.created_by)
        .bind(now())
        .fetch_one(&self.pool)
        .await?;
        token_from_row(&row)
    }

    /// The join token whose text hashes to `hash`.
    pub async fn join_token_by_hash(&self, hash: &str) -> Result<Option<JoinTokenRow>, StoreError> {
        let row = sqlx::query("SELECT * FROM join_tokens WHERE token_sha256 = $1")
            .bind(hash)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(token_from_row).transpose()
    }

    /// Every join token, oldest first.
    pub async fn list_join_tokens(&self) -> Result<Vec<JoinTokenRow>, StoreError> {
        let rows = sqlx::query("SELECT * FROM join_tokens ORDER BY id")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(token_from_row).collect()
    }

    /// Revokes join token `id`; false when there is no such token.
    pub async fn revoke_join_token(&self, id: i64) -> Result<bool, StoreError> {
        let done = sqlx::query("UPDATE join_tokens SET revoked = 1 WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// The current (newest) certificate of instance `hostname`, if it has one.
    pub async fn current_node_cert(&self, hostname: &str) -> Result<Option<NodeCert>, StoreError> {
        let row = sqlx::query(CURRENT_CERT_SQL)
            .bind(hostname)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(cert_from_row).transpose()
    }

    /// Every certificate recorded for instance `hostname`, oldest first.
    pub async fn node_certs_of(&self, hostname: &str) -> Result<Vec<NodeCert>, StoreError> {
        let rows = sqlx::query(
            "SELECT c.* FROM node_certs c JOIN instances i ON i.id = c.instance_id \
             WHERE i.hostname = $1 ORDER BY c.id",
        )
        .bind(hostname)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(cert_from_row).collect()
    }

    /// The current certificate of every existing instance that has one, by hostname.
    pub async fn current_node_certs(&self) -> Result<Vec<NodeCert>, StoreError> {
        let rows = sqlx::query(
            "SELECT c.* FROM node_certs c JOIN instances i ON i.id = c.instance_id \
             WHERE c.id = (SELECT MAX(id) FROM node_certs WHERE instance_id = i.id) \
             ORDER BY i.hostname",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(cert_from_row).collect()
    }

    /// Records a join in one transaction: re-checks the token, decides between a new instance
    /// (one use consumed) and an idempotent re-join (same key as the current certificate), and
    /// records the certificate. Nothing is written unless the outcome is `Joined`/`Rejoined`.
    pub async fn record_join(&self, join: &JoinRecord) -> Result<JoinOutcome, StoreError> {
        let mut tx = self.pool.begin().await?;
        let Some(token) = sqlx::query("SELECT * FROM join_tokens WHERE id = $1")
            .bind(join.token_id)
            .fetch_optional(&mut *tx)
            .await?
        else {
            return Ok(JoinOutcome::UnknownToken);
        };
        let token = token_from_row(&token)?;
        if token.revoked {
            return Ok(JoinOutcome::Revoked);
        }
        if token.expired_at(Utc::now()) {
            return Ok(JoinOutcome::Expired);
        }
        let existing: Option<(i64, String, String)> = sqlx::query_as(
            "SELECT id, registered_by, node_state FROM instances WHERE hostname = $1",
        )
        .bind(&join.hostname)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some((instance_id, registered_by, node_state)) = existing {
            if node_state == "deprovisioning" {
                return Ok(JoinOutcome::BeingRemoved);
            }
            let current = sqlx::query(CURRENT_CERT_SQL)
                .bind(&join.hostname)
                .fetch_optional(&mut *tx)
                .await?
                .as_ref()
                .map(cert_from_row)
                .transpose()?;
            return match current {
                Some(c) if c.key_sha256 == join.cert.key_sha256 => {
                    insert_cert(
                        &mut tx,
                        instance_id,
                        &join.hostname,
                        &join.cert,
                        Some(token.id),
                        "join",
                    )
                    .await?;
                    tx.commit().await?;
                    Ok(JoinOutcome::Rejoined { instance_id })
                }
                other => Ok(JoinOutcome::Taken {
                    registered_by,
                    has_cert: other.is_some(),
                }),
            };
        }
        let used = sqlx::query(
            "UPDATE join_tokens SET uses_left = uses_left - 1 WHERE id = $1 AND uses_left > 0",
        )
        .bind(token.id)
        .execute(&mut *tx)
        .await?;
        if used.rows_affected() != 1 {
            return Ok(JoinOutcome::UsedUp);
        }
        // A fresh token is an admin's deliberate act: a node removed earlier may come back.
        if super::deprovision::lift_tombstone(&mut tx, &join.hostname).await? {
            tracing::info!(node = %join.hostname, "a removed node joins again with a fresh token");
        }
        let new = super::NewInstance {
            hostname: join.hostname.clone(),
            node_type: join.node_type,
            registered_by: "join".into(),
            listener_address: join.listener_address.clone(),
        };
        // The row was looked for in this transaction, so the insert cannot conflict.
        let instance_id = super::instances::insert_instance(&mut tx, &new)
            .await?
            .ok_or_else(|| StoreError::Invalid {
                what: "instance registered meanwhile",
                value: join.hostname.clone(),
            })?;
        insert_cert(
            &mut tx,
            instance_id,
            &join.hostname,
            &join.cert,
            Some(token.id),
            "join",
        )
        .await?;
        tx.commit().await?;
        Ok(JoinOutcome::Joined { instance_id })
    }

    /// Records a renewed certificate of `hostname`, unless the instance is gone or being
    /// removed.
    pub async fn record_renewal(
        &self,
        hostname: &str,
        cert: &NewNodeCert,
    ) -> Result<RenewOutcome, StoreError> {
        let mut tx = self.pool.begin().await?;
        let found: Option<(i64, String)> =
            sqlx::query_as("SELECT id, node_state FROM instances WHERE hostname = $1")
                .bind(hostname)
                .fetch_optional(&mut *tx)
                .await?;
        let Some((instance_id, state)) = found else {
            return Ok(RenewOutcome::Gone);
        };
        if state == "deprovisioning" {
            return Ok(RenewOutcome::Deprovisioning);
        }
        insert_cert(&mut tx, instance_id, hostname, cert, None, "renew").await?;
        tx.commit().await?;
        Ok(RenewOutcome::Renewed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("db")).await.unwrap();
        (dir, store)
    }

    fn cert(key: &str) -> NewNodeCert {
        NewNodeCert {
            key_sha256: key.into(),
            serial: "01".into(),
            not_after: Utc::now() + chrono::Duration::days(7),
            dns_names: vec!["exec1.example".into()],
            ip_addresses: vec!["10.0.0.1".parse().unwrap()],
        }
    }

    async fn token(store: &Store, uses: i64, ttl_secs: i64) -> JoinTokenRow {
        store
            .create_join_token(&NewJoinToken {
                token_sha256: format!("hash{uses}{ttl_secs}"),
                node_type: NodeType::Execution,
                expires_at: Utc::now() + chrono::Duration::seconds(ttl_secs),
                uses,
                name: "t".into(),
                created_by: "adm".into(),
            })
            .await
            .unwrap()
    }

    fn join(token_id: i64, host: &str, key: &str) -> JoinRecord {
        JoinRecord {
            token_id,
            hostname: host.into(),
            node_type: NodeType::Execution,
            listener_address: None,
            cert: cert(key),
        }
    }

    async fn counts(store: &Store) -> (i64, i64) {
        let i: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM instances")
            .fetch_one(&store.pool)
            .await
            .unwrap();
        let c: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM node_certs")
            .fetch_one(&store.pool)
            .await
            .unwrap();
        (i, c)
    }

    #[tokio::test]
    async fn a_join_consumes_a_use_and_a_rejoin_with_the_same_key_does_not() {
        let (_d, store) = store().await;
        let t = token(&store, 1, 3600).await;
        let out = store.record_join(&join(t.id, "exec1", "k1")).await.unwrap();
        assert!(matches!(out, JoinOutcome::Joined { .. }), "{out:?}");
        let inst = store.instance_by_hostname("exec1").await.unwrap().unwrap();
        assert_eq!(inst.registered_by, "join");
        assert_eq!(inst.node_state.as_str(), "installed");
        assert_eq!(store.list_join_tokens().await.unwrap()[0].uses_left, 0);
        // Same id, same key: idempotent, even with the token used up.
        let out = store.record_join(&join(t.id, "exec1", "k1")).await.unwrap();
        assert!(matches!(out, JoinOutcome::Rejoined { .. }), "{out:?}");
        // Same id, another key: taken; nothing stored.
        let before = counts(&store).await;
        let out = store.record_join(&join(t.id, "exec1", "k2")).await.unwrap();
        assert!(
            matches!(out, JoinOutcome::Taken { has_cert: true, .. }),
            "{out:?}"
        );
        // Another id with the used-up token: refused, nothing stored.
        let out = store.record_join(&join(t.id, "exec2", "k3")).await.unwrap();
        assert_eq!(out, JoinOutcome::UsedUp);
        assert_eq!(counts(&store).await, before);
        assert_eq!(
            store
                .current_node_cert("exec1")
                .await
                .unwrap()
                .unwrap()
                .key_sha256,
            "k1"
        );
    }

    #[tokio::test]
    async fn revoked_and_expired_tokens_store_nothing() {
        let (_d, store) = store().await;
        let t = token(&store, 5, 3600).await;
        store.revoke_join_token(t.id).await.unwrap();
        assert_eq!(
            store.record_join(&join(t.id, "a", "k")).await.unwrap(),
            JoinOutcome::Revoked
        );
        let old = token(&store, 5, -1).await;
        assert_eq!(
            store.record_join(&join(old.id, "a", "k")).await.unwrap(),
            JoinOutcome::Expired
        );
        assert_eq!(counts(&store).await, (0, 0));
    }

    #[tokio::test]
    async fn renewals_need_a_live_instance_and_become_current() {
        let (_d, store) = store().await;
        let t = token(&store, 1, 3600).await;
        store.record_join(&join(t.id, "exec1", "k1")).await.unwrap();
        assert_eq!(
            store.record_renewal("exec1", &cert("k2")).await.unwrap(),
            RenewOutcome::Renewed
        );
        let current = store.current_node_certs().await.unwrap();
        assert_eq!(current.len(), 1);
        assert_eq!(current[0].key_sha256, "k2");
        assert_eq!(current[0].kind, "renew");
        assert_eq!(
            store.record_renewal("ghost", &cert("k")).await.unwrap(),
            RenewOutcome::Gone
        );
        sqlx::query("UPDATE instances SET node_state = 'deprovisioning'")
            .execute(&store.pool)
            .await
            .unwrap();
        assert_eq!(
            store.record_renewal("exec1", &cert("k3")).await.unwrap(),
            RenewOutcome::Deprovisioning
        );
        sqlx::query("DELETE FROM instances")
            .execute(&store.pool)
            .await
            .unwrap();
        assert_eq!(counts(&store).await, (0, 0));
    }
}
