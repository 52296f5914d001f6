-- Instances (mesh nodes), their links, instance groups and health-check history.
-- Every instance write goes through an optimistic read-modify-write on `revision`.
CREATE TABLE instances (
    id INTEGER PRIMARY KEY,
    hostname TEXT NOT NULL UNIQUE,
    uuid TEXT,
    node_type TEXT NOT NULL,
    node_state TEXT NOT NULL,
    enabled BOOLEAN NOT NULL DEFAULT TRUE,
    cpu DOUBLE PRECISION NOT NULL DEFAULT 0,
    memory BIGINT NOT NULL DEFAULT 0,
    cpu_capacity BIGINT NOT NULL DEFAULT 0,
    mem_capacity BIGINT NOT NULL DEFAULT 0,
    capacity BIGINT NOT NULL DEFAULT 0,
    capacity_adjustment DOUBLE PRECISION NOT NULL DEFAULT 1.0,
    version TEXT NOT NULL DEFAULT '',
    boot_id TEXT,
    errors TEXT NOT NULL DEFAULT '',
    last_seen TEXT,
    unroutable_since TEXT,
    last_health_check TEXT,
    health_check_started TEXT,
    listener_address TEXT,
    registered_by TEXT NOT NULL,
    secure_work BOOLEAN NOT NULL DEFAULT FALSE,
    control_tls BOOLEAN NOT NULL DEFAULT FALSE,
    revision BIGINT NOT NULL DEFAULT 0,
    created TEXT NOT NULL,
    modified TEXT NOT NULL
);

CREATE TABLE instance_links (
    source TEXT NOT NULL,
    target TEXT NOT NULL,
    link_state TEXT NOT NULL,
    cost DOUBLE PRECISION NOT NULL DEFAULT 1.0,
    PRIMARY KEY (source, target)
);

CREATE TABLE instance_groups (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    max_concurrent_jobs BIGINT NOT NULL DEFAULT 0,
    max_forks BIGINT NOT NULL DEFAULT 0,
    created TEXT NOT NULL
);

CREATE TABLE instance_group_members (
    group_id INTEGER NOT NULL REFERENCES instance_groups (id) ON DELETE CASCADE,
    instance_id INTEGER NOT NULL REFERENCES instances (id) ON DELETE CASCADE,
    PRIMARY KEY (group_id, instance_id)
);

CREATE TABLE health_checks (
    id INTEGER PRIMARY KEY,
    instance_id INTEGER NOT NULL REFERENCES instances (id) ON DELETE CASCADE,
    started TEXT NOT NULL,
    finished TEXT NOT NULL,
    duration_ms BIGINT NOT NULL,
    ok BOOLEAN NOT NULL,
    cpu DOUBLE PRECISION,
    memory BIGINT,
    version TEXT,
    boot_id TEXT,
    errors TEXT NOT NULL DEFAULT ''
);
CREATE INDEX health_checks_instance ON health_checks (instance_id, id);

INSERT INTO instance_groups (name, created) VALUES ('default', '1970-01-01T00:00:00Z');
