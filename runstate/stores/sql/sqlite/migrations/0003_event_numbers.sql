-- Schema version 3: each run's events numbered from 0 with no gaps (sequence_number),
-- so that a follower can resume one run's stream after its n-th event; the run keeps
-- the count, and the next write numbers its events on from it.
ALTER TABLE runs ADD COLUMN event_count INTEGER NOT NULL DEFAULT 0;
ALTER TABLE run_events ADD COLUMN number INTEGER;
UPDATE run_events SET number = (
    SELECT count(*) FROM run_events AS earlier
    WHERE earlier.run_id = run_events.run_id AND earlier.seq < run_events.seq
);
UPDATE runs SET event_count = (SELECT count(*) FROM run_events WHERE run_id = runs.id);
CREATE UNIQUE INDEX run_events_by_number ON run_events (run_id, number);
