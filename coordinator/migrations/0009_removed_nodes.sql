-- Deprovisioning (`meshrun instances remove`): nodes being removed, with the deadline after
-- which their running jobs are canceled, and tombstones of removed nodes, so that discovery
-- does not register a node again that is still running but was removed on purpose. Jobs keep
-- the reason a cancel was requested for them, which becomes their explanation.
CREATE TABLE deprovisions (
    hostname TEXT PRIMARY KEY,
    instance_id INTEGER NOT NULL REFERENCES instances (id) ON DELETE CASCADE,
    node_type TEXT NOT NULL,
    requested_at TEXT NOT NULL,
    deadline TEXT NOT NULL,
    pending_failed BIGINT NOT NULL DEFAULT 0,
    jobs_canceled BIGINT NOT NULL DEFAULT 0,
    units_released BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE removed_nodes (
    hostname TEXT PRIMARY KEY,
    node_type TEXT NOT NULL,
    requested_at TEXT NOT NULL,
    removed_at TEXT NOT NULL,
    pending_failed BIGINT NOT NULL DEFAULT 0,
    jobs_canceled BIGINT NOT NULL DEFAULT 0,
    units_released BIGINT NOT NULL DEFAULT 0
);

ALTER TABLE jobs ADD COLUMN cancel_reason TEXT;
