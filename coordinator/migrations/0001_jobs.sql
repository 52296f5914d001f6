-- Jobs and their events. Written for SQLite; kept to SQL that PostgreSQL also accepts.
CREATE TABLE jobs (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    status TEXT NOT NULL,
    cancel_flag BOOLEAN NOT NULL DEFAULT FALSE,
    playbook TEXT NOT NULL,
    project_sha256 TEXT NOT NULL,
    inventory TEXT NOT NULL,
    extra_vars TEXT NOT NULL DEFAULT '{}',
    limit_hosts TEXT,
    forks INTEGER,
    verbosity INTEGER,
    requested_node TEXT,
    controller_node TEXT,
    execution_node TEXT,
    execution_route TEXT,
    work_unit_id TEXT,
    result_offset BIGINT NOT NULL DEFAULT 0,
    job_explanation TEXT NOT NULL DEFAULT '',
    result_traceback TEXT NOT NULL DEFAULT '',
    rc INTEGER,
    created TEXT NOT NULL,
    started TEXT,
    finished TEXT
);
CREATE INDEX jobs_status ON jobs (status);

CREATE TABLE job_events (
    job_id INTEGER NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    counter BIGINT NOT NULL,
    uuid TEXT NOT NULL,
    event TEXT NOT NULL,
    start_line BIGINT NOT NULL DEFAULT 0,
    end_line BIGINT NOT NULL DEFAULT 0,
    stdout TEXT NOT NULL DEFAULT '',
    created TEXT,
    data TEXT NOT NULL,
    PRIMARY KEY (job_id, counter)
);
