-- Schema version 8: whether an object waits for a worker's claim is a flag of the row,
-- kept by the store from the object's declaration (the status its claim starts from),
-- as the active flag is. The queue's partial index reads the flag, so a lifecycle whose
-- waiting status has another name is served by the same statements. Up to version 7
-- the claim took objects whose status was 'queued', whatever their kind: the rows that
-- were claimable then are the ones flagged now.
ALTER TABLE runs ADD COLUMN waiting INTEGER NOT NULL DEFAULT 0;
UPDATE runs SET waiting = 1 WHERE status = 'queued';
DROP INDEX runs_queue;
CREATE INDEX runs_queue ON runs (kind, created_at, seq) WHERE waiting = 1;
