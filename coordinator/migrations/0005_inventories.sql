-- Named inventories: hosts, groups and variables stored in the coordinator, optionally refreshed
-- from a source (a script or inventory-plugin file inside a stored project archive) by
-- inventory updates. Written for SQLite; kept to SQL that PostgreSQL also accepts.
CREATE TABLE inventories (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    description TEXT NOT NULL DEFAULT '',
    -- The source: sha256 of a project archive and a file path inside it (both or neither).
    source_project TEXT,
    source_path TEXT,
    -- The `all` group's variables (JSON object text).
    variables TEXT NOT NULL DEFAULT '{}',
    created TEXT NOT NULL,
    modified TEXT NOT NULL,
    -- The inventory update whose result the hosts are (NULL: static content).
    last_update_id BIGINT
);

CREATE TABLE inventory_hosts (
    id INTEGER PRIMARY KEY,
    inventory_id BIGINT NOT NULL REFERENCES inventories (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    variables TEXT NOT NULL DEFAULT '{}',
    UNIQUE (inventory_id, name)
);

-- Groups other than `all` and `ungrouped`; members and children as JSON arrays of names.
CREATE TABLE inventory_groups (
    id INTEGER PRIMARY KEY,
    inventory_id BIGINT NOT NULL REFERENCES inventories (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    variables TEXT NOT NULL DEFAULT '{}',
    hosts TEXT NOT NULL DEFAULT '[]',
    children TEXT NOT NULL DEFAULT '[]',
    UNIQUE (inventory_id, name)
);
CREATE INDEX jobs_inventory ON jobs (inventory_id);
