-- The SQLite store's statements. Format: a "-- name --" line, a line that says what
-- the statement does, then the statement, with :named parameters.

-- insert_run --
-- A new object (its creation events are inserted with it).
INSERT INTO runs (id, kind, group_id, status, active, waiting, created_at, expires_at, version,
    body, event_count, input)
VALUES (:id, :kind, :group_id, :status, :active, :waiting, :created_at, :expires_at, 1, :body,
    :event_count, :input);

-- active_of_group --
-- The group's active object (a thread's active run), if any.
SELECT id FROM runs WHERE group_id = :group_id AND active = 1;

-- get_run --
-- One run as stored.
SELECT kind, body, expires_at, version, lease_owner, lease_expires_at, attempts, event_count FROM runs WHERE id = :id;

-- update_run --
-- The compare-and-set: the new state, only if the run is still at :expected. {set} is
-- filled from fixed fragments with the columns the write changes (see _sqlite.py): an
-- index is written only when a column it reads is set.
UPDATE runs SET version = version + 1, body = :body, event_count = :event_count{set}
WHERE id = :id AND version = :expected;

-- insert_event --
-- One event of a run's history, :number counting the run's events from 0.
INSERT INTO run_events (run_id, event, from_status, to_status, at, data, number)
VALUES (:run_id, :event, :from_status, :to_status, :at, :data, :number);

-- claimable --
-- The oldest object waiting for a worker that is not due (through runs_queue).
SELECT kind, body, expires_at, version, lease_owner, lease_expires_at, attempts, event_count FROM runs
WHERE kind = :kind AND waiting = 1 AND expires_at > :now ORDER BY created_at, seq LIMIT 1;

-- due --
-- Active runs whose expires_at has come, soonest first.
SELECT kind, body, expires_at, version, lease_owner, lease_expires_at, attempts, event_count FROM runs
WHERE kind = :kind AND active = 1 AND expires_at <= :now ORDER BY expires_at LIMIT :limit;

-- stalled --
-- Leased runs whose lease has ended, oldest lease first.
SELECT kind, body, expires_at, version, lease_owner, lease_expires_at, attempts, event_count FROM runs
WHERE kind = :kind AND lease_owner IS NOT NULL AND lease_expires_at <= :now
ORDER BY lease_expires_at LIMIT :limit;

-- cursor --
-- Where a listing cursor (a run id) stands.
SELECT created_at, seq, group_id, kind FROM runs WHERE id = :id;

-- list_objects --
-- A page of one kind's objects; {where} and {direction} are filled from fixed fragments, never input.
SELECT kind, body, expires_at, version, lease_owner, lease_expires_at, attempts, event_count FROM runs WHERE kind = :kind {where} ORDER BY created_at {direction}, seq {direction} LIMIT :limit;

-- run_exists --
-- Whether a run exists.
SELECT 1 FROM runs WHERE id = :id;

-- history --
-- Every event of one run, oldest first.
SELECT seq, event, run_id, from_status, to_status, at, data, number FROM run_events
WHERE run_id = :run_id ORDER BY seq;

-- events --
-- Events after :after_seq, in order.
SELECT seq, event, run_id, from_status, to_status, at, data, number FROM run_events
WHERE seq > :after_seq ORDER BY seq LIMIT :limit;

-- events_of_run --
-- One run's events after :after_seq, in order.
SELECT seq, event, run_id, from_status, to_status, at, data, number FROM run_events
WHERE run_id = :run_id AND seq > :after_seq ORDER BY seq LIMIT :limit;

-- table_count --
-- How many tables and indexes the file holds (a new file holds none).
SELECT count(*) FROM sqlite_master;

-- input_of --
-- What an object keeps for its worker beside the public object (a response's input).
SELECT input FROM runs WHERE id = :id;

-- delete_events --
-- Every event of one object.
DELETE FROM run_events WHERE run_id = :id;

-- delete_run --
-- One object (its events first, in the same transaction).
DELETE FROM runs WHERE id = :id;

-- delete_keys --
-- The idempotency keys that name one object (deleted with it).
DELETE FROM idempotency_keys WHERE object_id = :id;

-- last_event --
-- Where the event log ends now (a feed of other processes' events starts there).
SELECT max(seq) FROM run_events;

-- events_since --
-- What other processes committed since the feed last looked: which objects, to what,
-- from what.
SELECT seq, run_id, to_status, from_status FROM run_events WHERE seq > :after_seq
ORDER BY seq LIMIT 1000;

-- ended --
-- The oldest ended objects of one kind that ended at or before :before, in any of the
-- statuses asked for ({statuses}: a fixed fragment of named parameters), through
-- runs_ended; locked on PostgreSQL (a row another transaction holds is left for later).
SELECT id FROM runs WHERE kind = :kind AND active = 0 AND ended_at <= :before
    {statuses} ORDER BY ended_at LIMIT :limit;

-- stats_statuses --
-- How many objects of each kind are in each status.
SELECT kind, status, count(*) FROM runs GROUP BY kind, status;

-- stats_waiting --
-- How many objects wait for a worker, and the oldest one's created_at, by kind (through
-- runs_queue).
SELECT kind, count(*), min(created_at) FROM runs WHERE waiting = 1 GROUP BY kind;

-- stats_due --
-- Active objects whose time has run out, by kind (through runs_due).
SELECT kind, count(*) FROM runs WHERE active = 1 AND expires_at <= :now GROUP BY kind;

-- stats_leases --
-- Leases held by workers, and how many of them have ended, by kind (through runs_leases).
SELECT kind, count(*), sum(CASE WHEN lease_expires_at <= :now THEN 1 ELSE 0 END) FROM runs
WHERE lease_owner IS NOT NULL GROUP BY kind;

-- stats_events --
-- How many events are stored.
SELECT count(*) FROM run_events;

-- key_of --
-- A remembered idempotency key: what its first create's parameters were, and what it made.
SELECT fingerprint, object_id, created_at FROM idempotency_keys
WHERE kind = :kind AND key = :key;

-- remember_key --
-- Remember an idempotency key (one that had been forgotten is replaced).
INSERT INTO idempotency_keys (kind, key, fingerprint, object_id, created_at)
VALUES (:kind, :key, :fingerprint, :object_id, :created_at)
ON CONFLICT (kind, key) DO UPDATE SET fingerprint = excluded.fingerprint,
    object_id = excluded.object_id, created_at = excluded.created_at;

-- trim_events --
-- The oldest events of one object, below event number :below (the store keeps at
-- most its max_events newest of each object's events).
DELETE FROM run_events WHERE run_id = :id AND number < :below;

-- add_endpoint --
-- A new webhook endpoint, with its secret and the event types it takes (a JSON array).
INSERT INTO webhook_endpoints (id, url, name, secret, events, created_at)
VALUES (:id, :url, :name, :secret, :events, :created_at);

-- list_endpoints --
-- Every webhook endpoint, in the order they were added, without its secret.
SELECT id, url, name, events, created_at FROM webhook_endpoints ORDER BY rowid;

-- delete_endpoint_deliveries --
-- The deliveries of one endpoint (removed with it).
DELETE FROM webhook_deliveries WHERE endpoint_id = :id;

-- delete_endpoint --
-- One webhook endpoint.
DELETE FROM webhook_endpoints WHERE id = :id;

-- hook --
-- The outbox: one webhook event a transition made, as one pending delivery per endpoint
-- that takes its type, due at once (in the transition's transaction).
INSERT INTO webhook_deliveries (event_id, endpoint_id, object_id, type, created_at, next_at)
SELECT :event_id, ep.id, :object_id, :type, :created_at, :created_at
FROM webhook_endpoints ep WHERE EXISTS (SELECT 1 FROM json_each(ep.events) WHERE value = :type);

-- claim_deliveries --
-- Up to :limit pending deliveries that are due, soonest first, leased to the
-- claimer: due again only when the lease ends; with what sending them needs.
UPDATE webhook_deliveries SET next_at = :now + :lease, attempts = attempts + 1
WHERE (rowid) IN (
    SELECT rowid FROM webhook_deliveries
    WHERE status = 'pending' AND next_at <= :now ORDER BY next_at LIMIT :limit
)
RETURNING event_id, endpoint_id,
    (SELECT url FROM webhook_endpoints ep WHERE ep.id = endpoint_id),
    (SELECT secret FROM webhook_endpoints ep WHERE ep.id = endpoint_id),
    type, object_id, created_at, attempts;

-- settle_deliveries --
-- How attempts ended (a JSON array of settles: event_id, endpoint_id, attempts,
-- status, next_at, error, now), each only if its delivery is still pending at that
-- attempt (a later claim took it otherwise); the deliveries settled.
UPDATE webhook_deliveries SET status = s.status, next_at = s.next_at, last_error = s.error,
    ended_at = CASE WHEN s.status = 'pending' THEN NULL ELSE s.now END
FROM (
    SELECT json_extract(value, '$.event_id') AS event_id,
        json_extract(value, '$.endpoint_id') AS endpoint_id,
        json_extract(value, '$.attempts') AS attempts,
        json_extract(value, '$.status') AS status,
        json_extract(value, '$.next_at') AS next_at,
        json_extract(value, '$.error') AS error,
        json_extract(value, '$.now') AS now
    FROM json_each(:settles)
) AS s
WHERE webhook_deliveries.event_id = s.event_id
    AND webhook_deliveries.endpoint_id = s.endpoint_id
    AND webhook_deliveries.attempts = s.attempts AND webhook_deliveries.status = 'pending'
RETURNING event_id, endpoint_id;

-- next_delivery --
-- When the soonest pending delivery is due (null when none is pending).
SELECT min(next_at) FROM webhook_deliveries WHERE status = 'pending';

-- stats_deliveries --
-- How many deliveries are pending and failed, and the oldest pending one's event time.
SELECT (SELECT count(*) FROM webhook_deliveries WHERE status = 'pending'),
    (SELECT count(*) FROM webhook_deliveries WHERE status = 'failed'),
    (SELECT min(created_at) FROM webhook_deliveries WHERE status = 'pending');

-- delete_deliveries --
-- The webhook deliveries of one object (deleted with it).
DELETE FROM webhook_deliveries WHERE object_id = :id;
