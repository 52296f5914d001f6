-- What the scheduler needs on jobs: their impact, group and why they wait.
ALTER TABLE jobs ADD COLUMN task_impact BIGINT NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN instance_group TEXT NOT NULL DEFAULT 'default';
ALTER TABLE jobs ADD COLUMN host_count BIGINT;
ALTER TABLE jobs ADD COLUMN execution_environment TEXT;
CREATE INDEX jobs_execution_node ON jobs (execution_node);
CREATE INDEX jobs_controller_node ON jobs (controller_node);
