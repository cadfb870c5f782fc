-- Schema version 5: when each object ended (ended_at: the time of the step that took it
-- out of its active statuses; null while active), and an index of ended objects by it,
-- so that retention deletes the oldest ended objects in batches whose cost follows what
-- they delete. Objects that had ended are dated by their last event.
ALTER TABLE runs ADD COLUMN ended_at INTEGER;
UPDATE runs SET ended_at = (SELECT max(at) FROM run_events WHERE run_id = runs.id)
    WHERE active = 0;
CREATE INDEX runs_ended ON runs (kind, ended_at) WHERE active = 0;
