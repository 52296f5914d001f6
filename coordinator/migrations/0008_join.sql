-- Join tokens and the certificates the mesh CA issued to nodes.
-- A join token's secret is never stored: only the sha256 of the whole token text.
CREATE TABLE join_tokens (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    token_sha256 TEXT NOT NULL UNIQUE,
    -- 'execution' or 'hop': the node type a node joining with it is registered as.
    node_type TEXT NOT NULL CHECK (node_type IN ('execution', 'hop')),
    expires_at TEXT NOT NULL,
    uses_left BIGINT NOT NULL CHECK (uses_left >= 0),
    uses BIGINT NOT NULL CHECK (uses >= 1),
    name TEXT NOT NULL DEFAULT '',
    created_by TEXT NOT NULL DEFAULT '',
    created TEXT NOT NULL,
    revoked INTEGER NOT NULL DEFAULT 0 CHECK (revoked IN (0, 1))
);

-- Every certificate issued to a node (join or renewal); the newest row of an instance is its
-- current certificate. Removing the instance removes its certificates' records.
CREATE TABLE node_certs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    instance_id INTEGER NOT NULL REFERENCES instances (id) ON DELETE CASCADE,
    hostname TEXT NOT NULL,
    -- Hex sha256 of the certified public key (the node's key pair).
    key_sha256 TEXT NOT NULL,
    serial TEXT NOT NULL,
    not_after TEXT NOT NULL,
    issued_at TEXT NOT NULL,
    -- JSON arrays of the DNS names and IP addresses the certificate carries.
    dns_names TEXT NOT NULL DEFAULT '[]',
    ip_addresses TEXT NOT NULL DEFAULT '[]',
    token_id INTEGER REFERENCES join_tokens (id) ON DELETE SET NULL,
    kind TEXT NOT NULL CHECK (kind IN ('join', 'renew'))
);
CREATE INDEX node_certs_instance ON node_certs (instance_id, id);
