-- Projects: an uploaded archive, or a git repository whose revisions project updates check out
-- and store as archives (content-addressed, like uploads).
CREATE TABLE projects (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    -- 'git' or 'archive'.
    scm_type TEXT NOT NULL CHECK (scm_type IN ('git', 'archive')),
    scm_url TEXT NOT NULL DEFAULT '',
    -- A branch, tag or commit; empty means the remote's HEAD.
    scm_branch TEXT NOT NULL DEFAULT '',
    -- sha256 of the stored archive of the current revision (empty until the first update).
    archive_sha256 TEXT NOT NULL DEFAULT '',
    -- The commit that archive holds.
    scm_revision TEXT NOT NULL DEFAULT '',
    -- The latest project update started for it (a jobs row of kind project_update).
    last_update_id BIGINT,
    -- When a project update last stored a revision.
    last_updated TEXT,
    -- Seconds a stored revision stays fresh for jobs; 0 updates before every job.
    update_cache_timeout BIGINT NOT NULL DEFAULT 0,
    created TEXT NOT NULL,
    modified TEXT NOT NULL
);
