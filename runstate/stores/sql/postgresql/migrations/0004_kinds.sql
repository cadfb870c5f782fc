-- Schema version 4: one table for every lifecycle. Each row says which kind of object
-- it holds ("run", "response"); a run's thread becomes the generic group_id, null for
-- objects that are not grouped (one active object per group stays a partial unique
-- index: nulls never collide); "input" keeps what a worker needs that is not part of
-- the public object (a response's input). The sweeps' and the queue's indexes lead
-- with the kind.
ALTER TABLE runs RENAME COLUMN thread_id TO group_id;
ALTER TABLE runs ALTER COLUMN group_id DROP NOT NULL;
ALTER TABLE runs ADD COLUMN kind text NOT NULL DEFAULT 'run';
ALTER TABLE runs ADD COLUMN input text;
ALTER INDEX runs_one_active_per_thread RENAME TO runs_one_active_per_group;
ALTER INDEX runs_by_thread RENAME TO runs_by_group;
DROP INDEX runs_by_created;
DROP INDEX runs_due;
DROP INDEX runs_queue;
DROP INDEX runs_leases;
CREATE INDEX runs_by_created ON runs (kind, created_at, seq);
CREATE INDEX runs_due ON runs (kind, expires_at) WHERE active;
CREATE INDEX runs_queue ON runs (kind, created_at, seq) WHERE status = 'queued';
CREATE INDEX runs_leases ON runs (kind, lease_expires_at) WHERE lease_owner IS NOT NULL;
UPDATE runstate_meta SET value = '4' WHERE key = 'schema_version';
