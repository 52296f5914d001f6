-- API bearer tokens. Only the sha256 of a token is kept; the token itself is shown once when it
-- is created and cannot be recovered from the store.
CREATE TABLE api_tokens (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    -- Hex sha256 of the whole token text (`mrt_...`).
    token_sha256 TEXT NOT NULL UNIQUE,
    -- 'admin' (everything) or 'read_only' (GET and HEAD only).
    role TEXT NOT NULL CHECK (role IN ('admin', 'read_only')),
    name TEXT NOT NULL DEFAULT '',
    description TEXT NOT NULL DEFAULT '',
    created TEXT NOT NULL,
    last_used TEXT,
    revoked INTEGER NOT NULL DEFAULT 0 CHECK (revoked IN (0, 1))
);
