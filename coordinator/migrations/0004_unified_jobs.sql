-- Every kind of work is a row of `jobs` (AWX's unified jobs): playbook jobs, ad hoc commands,
-- inventory updates and project updates share status, placement, events and the runner.
ALTER TABLE jobs ADD COLUMN kind TEXT NOT NULL DEFAULT 'job';
-- Ad hoc commands: the module, its arguments and whether to become.
ALTER TABLE jobs ADD COLUMN module_name TEXT;
ALTER TABLE jobs ADD COLUMN module_args TEXT;
ALTER TABLE jobs ADD COLUMN become_enabled BOOLEAN NOT NULL DEFAULT FALSE;
-- A stored inventory the work uses (or, for an inventory update, refreshes).
ALTER TABLE jobs ADD COLUMN inventory_id BIGINT;
-- For an inventory update: the source inside the project (a script or plugin file).
ALTER TABLE jobs ADD COLUMN inventory_source TEXT;
-- A stored project the work uses (or, for a project update, refreshes), and the SCM revision
-- it ran (or checked out).
ALTER TABLE jobs ADD COLUMN project_id BIGINT;
ALTER TABLE jobs ADD COLUMN scm_revision TEXT;
CREATE INDEX jobs_kind ON jobs (kind);
