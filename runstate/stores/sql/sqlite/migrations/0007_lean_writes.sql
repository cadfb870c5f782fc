-- Schema version 7: a leaner write. The runs table loses AUTOINCREMENT (its seq only
-- breaks ties in a listing's order, and a cursor is an id: a reused seq of a deleted
-- row harms nothing), so a create no longer writes sqlite_sequence; the table is
-- rebuilt for it, keeping every row and its seq. Each event row was written to two
-- indexes: (run_id, seq) serves every read, and the unique (run_id, number) only
-- repeated what the compare-and-set already guarantees (a write numbers its events on
-- from the count at the version it won), so it goes. The event log keeps AUTOINCREMENT:
-- its seq is a cursor that readers hold (a follower, the feed of other processes'
-- commits), and must never be handed out twice, even after the newest events are
-- deleted.
CREATE TABLE runs_v7 (
    seq INTEGER PRIMARY KEY,
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
    input TEXT,
    ended_at INTEGER
);
INSERT INTO runs_v7 (seq, id, kind, group_id, status, active, created_at, expires_at,
    version, lease_owner, lease_expires_at, attempts, event_count, body, input, ended_at)
SELECT seq, id, kind, group_id, status, active, created_at, expires_at, version,
    lease_owner, lease_expires_at, attempts, event_count, body, input, ended_at
FROM runs;
DROP TABLE runs;
ALTER TABLE runs_v7 RENAME TO runs;
CREATE UNIQUE INDEX runs_one_active_per_group ON runs (group_id) WHERE active = 1;
CREATE INDEX runs_by_group ON runs (group_id, created_at, seq);
CREATE INDEX runs_by_created ON runs (kind, created_at, seq);
CREATE INDEX runs_due ON runs (kind, expires_at) WHERE active = 1;
CREATE INDEX runs_queue ON runs (kind, created_at, seq) WHERE status = 'queued';
CREATE INDEX runs_leases ON runs (kind, lease_expires_at) WHERE lease_owner IS NOT NULL;
CREATE INDEX runs_ended ON runs (kind, ended_at) WHERE active = 0;
DROP INDEX run_events_by_number;
