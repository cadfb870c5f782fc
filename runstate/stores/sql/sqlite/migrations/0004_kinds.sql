-- Schema version 4: one table for every lifecycle. Each row says which kind of object
-- it holds ("run", "response"); a run's thread becomes the generic group_id, null for
-- objects that are not grouped (one active object per group stays a partial unique
-- index: nulls never collide); "input" keeps what a worker needs that is not part of
-- the public object (a response's input). SQLite cannot drop NOT NULL or rename in
-- place with the indexes, so the table is rebuilt, keeping every row and its seq.
CREATE TABLE runs_v4 (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL DEFAULT 'run',
    group_id TEXT,
    status TEXT NOT NULL,
    active INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    expires_at INTEGER,
    version INTEGER NOT NULL,
    lease_owner TEXT,
    lease_expires_at INTEGER,
    attempts INTEGER NOT NULL DEFAULT 0,
    event_count INTEGER NOT NULL DEFAULT 0,
    body TEXT NOT NULL,
    input TEXT
);
INSERT INTO runs_v4 (seq, id, kind, group_id, status, active, created_at, expires_at,
    version, lease_owner, lease_expires_at, attempts, event_count, body)
SELECT seq, id, 'run', thread_id, status, active, created_at, expires_at, version,
    lease_owner, lease_expires_at, attempts, event_count, body
FROM runs;
DROP TABLE runs;
ALTER TABLE runs_v4 RENAME TO runs;
CREATE UNIQUE INDEX runs_one_active_per_group ON runs (group_id) WHERE active = 1;
CREATE INDEX runs_by_group ON runs (group_id, created_at, seq);
CREATE INDEX runs_by_created ON runs (kind, created_at, seq);
CREATE INDEX runs_due ON runs (kind, expires_at) WHERE active = 1;
CREATE INDEX runs_queue ON runs (kind, created_at, seq) WHERE status = 'queued';
CREATE INDEX runs_leases ON runs (kind, lease_expires_at) WHERE lease_owner IS NOT NULL;
