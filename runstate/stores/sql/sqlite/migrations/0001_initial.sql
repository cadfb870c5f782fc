-- Schema version 1, as runstate 0.1.0 created it.
CREATE TABLE runs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    thread_id TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER,
    version INTEGER NOT NULL,
    lease_owner TEXT,
    lease_expires_at INTEGER,
    attempts INTEGER NOT NULL DEFAULT 0,
    body TEXT NOT NULL
);
CREATE TABLE run_events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL,
    event TEXT NOT NULL,
    from_status TEXT,
    to_status TEXT NOT NULL,
    at INTEGER NOT NULL,
    data TEXT NOT NULL
);
CREATE UNIQUE INDEX runs_one_active_per_thread ON runs (thread_id)
    WHERE status IN ('cancelling', 'in_progress', 'queued', 'requires_action');
CREATE INDEX runs_by_thread ON runs (thread_id, created_at, seq);
CREATE INDEX runs_by_created ON runs (created_at, seq);
CREATE INDEX runs_due ON runs (expires_at)
    WHERE status IN ('cancelling', 'in_progress', 'queued', 'requires_action');
CREATE INDEX runs_queue ON runs (created_at, seq) WHERE status = 'queued';
CREATE INDEX runs_leases ON runs (lease_expires_at) WHERE lease_owner IS NOT NULL;
CREATE INDEX run_events_by_run ON run_events (run_id, seq);
