-- Schema version 2: an "active" flag that the engine writes from the lifecycle's own
-- definition, so that the partial indexes name no status list (a new lifecycle adds
-- statuses without touching them).
ALTER TABLE runs ADD COLUMN active INTEGER NOT NULL DEFAULT 0;
UPDATE runs SET active = 1
    WHERE status IN ('cancelling', 'in_progress', 'queued', 'requires_action');
DROP INDEX runs_one_active_per_thread;
DROP INDEX runs_due;
CREATE UNIQUE INDEX runs_one_active_per_thread ON runs (thread_id) WHERE active = 1;
CREATE INDEX runs_due ON runs (expires_at) WHERE active = 1;
