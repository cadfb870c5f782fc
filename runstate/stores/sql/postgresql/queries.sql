-- The PostgreSQL store's statements. Format: a "-- name --" line, a line that says
-- what the statement does, then the statement, with %(named)s parameters.

-- insert --
-- A new object with an idempotency key, the key and the object's first write, in one
-- round trip: see runstate_insert_v10.
SELECT runstate_insert_v10(%(p)s);

-- insert_one --
-- A create without an idempotency key as one plain statement: the object at version 1,
-- written by this transaction, with its creation events at this transaction's places
-- (runstate_place_v9), and the events' places. A group that has an active object makes
-- the insert fail on the partial unique index.
WITH r AS (
    INSERT INTO runs (id, kind, group_id, status, active, waiting, created_at, expires_at,
        version, body, event_count, input, writer_xid)
    VALUES (%(id)s, %(kind)s, %(group_id)s, %(status)s, %(active)s, %(waiting)s,
        %(created_at)s, %(expires_at)s, 1, %(body)s, %(event_count)s, %(input)s,
        pg_current_xact_id())
    RETURNING id
), e AS (
    INSERT INTO run_events (seq, run_id, event, from_status, to_status, at, data, number)
    SELECT runstate_place_v9(), r.id, x.event, x.from_status, x.to_status, x.at,
        COALESCE(x.data, %(body)s), x.i - 1
    FROM r, ROWS FROM (jsonb_to_recordset(%(events)s::jsonb)
        AS (event text, from_status text, to_status text, at bigint, data text))
        WITH ORDINALITY AS x(event, from_status, to_status, at, data, i)
    ORDER BY x.i
    RETURNING seq
)
SELECT ARRAY(SELECT seq FROM e ORDER BY seq);

-- claim --
-- The claim in one plain statement, one round trip: pick the oldest object of a kind
-- that waits for a worker and is not due (through runs_queue), skipping rows another
-- transaction holds, and take the lifecycle's claim step on it (see ClaimStep, and Lifecycle._fire, which it
-- does as data): the status moves to %(to)s; the field %(clear)s (if any) becomes null;
-- the field %(stamp)s (if any) gets the time, never before any of the fields in
-- %(floors)s (comma-separated); the object no longer waits (a claim's step goes to a
-- status that a worker holds), is leased to %(owner)s, and its claim count goes up. The
-- body keeps its keys' order. Its one event takes this transaction's next place. The
-- write, as every write, requires the row's last writer to be an older transaction (see
-- migration 9: one object's places follow its commits); a row written by a younger one
-- after this statement took its id is left as it is (the check is in the write, not in
-- the pick: a filter there changes the pick's plan). No row when nothing is claimable; else
-- what the row was, what its body became and the event's place (the engine decides the
-- same step on the old row and checks that it agrees).
WITH picked AS (
    SELECT id, body, version, lease_owner, lease_expires_at, attempts, event_count, expires_at,
        GREATEST(%(now)s, (
            SELECT max((body::jsonb ->> floor_field)::bigint)
            FROM unnest(string_to_array(%(floors)s, ',')) AS floor_field
        )) AS at
    FROM runs
    WHERE kind = %(kind)s AND waiting AND expires_at > %(now)s
    ORDER BY created_at, seq LIMIT 1 FOR UPDATE SKIP LOCKED
), made AS (
    SELECT picked.*, (
        SELECT json_object_agg(e.key, CASE
            WHEN e.key = 'status' THEN to_json(%(to)s::text)
            WHEN e.key = %(stamp)s THEN to_json(picked.at)
            WHEN e.key = %(clear)s THEN 'null'::json
            ELSE e.value END ORDER BY e.ord)
        FROM json_each(picked.body::json) WITH ORDINALITY AS e(key, value, ord)
    )::text AS new_body
    FROM picked
), u AS (
    UPDATE runs SET status = %(to)s, waiting = false, version = runs.version + 1,
        lease_owner = %(owner)s,
        lease_expires_at = %(lease_expires_at)s, attempts = runs.attempts + 1,
        body = made.new_body, event_count = runs.event_count + 1,
        writer_xid = pg_current_xact_id()
    FROM made WHERE runs.id = made.id AND runs.writer_xid < pg_current_xact_id()
    RETURNING runs.id
), ev AS (
    INSERT INTO run_events (seq, run_id, event, from_status, to_status, at, data, number)
    SELECT runstate_place_v9(), u.id, %(event)s, %(from)s, %(to)s, made.at, made.new_body,
        made.event_count
    FROM made, u
    RETURNING seq
)
SELECT made.body, made.new_body, made.version, made.lease_owner, made.lease_expires_at,
    made.attempts, made.event_count, made.expires_at, (SELECT seq FROM ev)
FROM made, u;

-- active_of_group --
-- The group's active object (a thread's active run), if any.
SELECT id FROM runs WHERE group_id = %(group_id)s AND active;

-- get_run --
-- One run as stored.
SELECT kind, body, expires_at, version, lease_owner, lease_expires_at, attempts, event_count FROM runs WHERE id = %(id)s;

-- write --
-- Every write of a batch (one or many) in one round trip; see runstate_write_v10.
SELECT runstate_write_v10(%(writes)s);

-- write_one --
-- One write of one step (a worker's step: the common case) as one plain statement,
-- without the write function's PL/pgSQL: the compare-and-set (which, as the function's,
-- also requires the row's last writer to be an older transaction, and records this one);
-- then, only if it won, its event at this transaction's next place; the event's place
-- (none if the write lost).
WITH w AS (
    UPDATE runs SET status = %(status)s, active = %(active)s, waiting = %(waiting)s,
        expires_at = %(expires_at)s,
        version = version + 1, lease_owner = %(lease_owner)s,
        lease_expires_at = %(lease_expires_at)s, attempts = %(attempts)s, body = %(body)s,
        event_count = %(event_count)s,
        ended_at = CASE WHEN %(active)s THEN NULL ELSE COALESCE(ended_at, %(ended_at)s) END,
        writer_xid = pg_current_xact_id()
    WHERE id = %(id)s AND version = %(expected)s AND writer_xid < pg_current_xact_id()
    RETURNING id
), e AS (
    INSERT INTO run_events (seq, run_id, event, from_status, to_status, at, data, number)
    SELECT runstate_place_v9(), w.id, %(event)s, %(from_status)s, %(to_status)s, %(at)s,
        COALESCE(%(data)s, %(body)s), %(number)s
    FROM w
    RETURNING seq
)
SELECT (SELECT seq FROM e);

-- claimable --
-- The oldest object waiting for a worker that is not due, locked; one another worker
-- holds is skipped.
SELECT kind, body, expires_at, version, lease_owner, lease_expires_at, attempts, event_count FROM runs
WHERE kind = %(kind)s AND waiting AND expires_at > %(now)s ORDER BY created_at, seq LIMIT 1
FOR UPDATE SKIP LOCKED;

-- due --
-- Active runs whose expires_at has come, soonest first, locked (a row a writer holds is
-- left for the next sweep): nothing changes a picked run before its write (whose check
-- of the row's last writer may still refuse it: see migration 9).
SELECT kind, body, expires_at, version, lease_owner, lease_expires_at, attempts, event_count FROM runs
WHERE kind = %(kind)s AND active AND expires_at <= %(now)s ORDER BY expires_at LIMIT %(limit)s
FOR UPDATE SKIP LOCKED;

-- stalled --
-- Leased runs whose lease has ended, oldest lease first, locked likewise.
SELECT kind, body, expires_at, version, lease_owner, lease_expires_at, attempts, event_count FROM runs
WHERE kind = %(kind)s AND lease_owner IS NOT NULL AND lease_expires_at <= %(now)s
ORDER BY lease_expires_at LIMIT %(limit)s FOR UPDATE SKIP LOCKED;

-- cursor --
-- Where a listing cursor (a run id) stands.
SELECT created_at, seq, group_id, kind FROM runs WHERE id = %(id)s;

-- list_objects --
-- A page of one kind's objects; {where} and {direction} are filled from fixed fragments, never input.
SELECT kind, body, expires_at, version, lease_owner, lease_expires_at, attempts, event_count FROM runs WHERE kind = %(kind)s {where} ORDER BY created_at {direction}, seq {direction}
LIMIT %(limit)s;

-- run_exists --
-- Whether a run exists.
SELECT 1 FROM runs WHERE id = %(id)s;

-- history --
-- Every event of one run, oldest first.
SELECT seq, event, run_id, from_status, to_status, at, data, number FROM run_events
WHERE run_id = %(run_id)s ORDER BY seq;

-- events --
-- Events after %(after_seq)s, in order, up to the places of the oldest transaction
-- still running (runstate_feed_below_v9): an event below that can no longer commit.
SELECT seq, event, run_id, from_status, to_status, at, data, number FROM run_events
WHERE seq > %(after_seq)s AND seq < runstate_feed_below_v9() ORDER BY seq LIMIT %(limit)s;

-- events_of_run --
-- One run's events after %(after_seq)s, in order (one object's places follow its
-- commits: no bound is needed).
SELECT seq, event, run_id, from_status, to_status, at, data, number FROM run_events
WHERE run_id = %(run_id)s AND seq > %(after_seq)s ORDER BY seq LIMIT %(limit)s;

-- lock_schema --
-- Serialises creating and upgrading the schema between processes.
SELECT pg_advisory_xact_lock(%(key)s);

-- table_exists --
-- Whether a table exists (a qualified name).
SELECT to_regclass(%(name)s) IS NOT NULL;

-- schema_version --
-- The schema's version, as runstate wrote it.
SELECT value FROM runstate_meta WHERE key = 'schema_version';

-- input_of --
-- What an object keeps for its worker beside the public object (a response's input).
SELECT input FROM runs WHERE id = %(id)s;

-- delete_events --
-- Every event of one object.
DELETE FROM run_events WHERE run_id = %(id)s;

-- delete_run --
-- One object (its events first, in the same transaction).
DELETE FROM runs WHERE id = %(id)s;

-- delete_keys --
-- The idempotency keys that name one object (deleted with it).
DELETE FROM idempotency_keys WHERE object_id = %(id)s;

-- ended --
-- The oldest ended objects of one kind that ended at or before %(before)s, in any of the
-- statuses asked for ({statuses}: a fixed fragment of named parameters), through
-- runs_ended; locked on PostgreSQL (a row another transaction holds is left for later).
SELECT id FROM runs WHERE kind = %(kind)s AND NOT active AND ended_at <= %(before)s
    {statuses} ORDER BY ended_at LIMIT %(limit)s FOR UPDATE SKIP LOCKED;

-- stats_statuses --
-- How many objects of each kind are in each status.
SELECT kind, status, count(*) FROM runs GROUP BY kind, status;

-- stats_waiting --
-- How many objects wait for a worker, and the oldest one's created_at, by kind (through
-- runs_queue).
SELECT kind, count(*), min(created_at) FROM runs WHERE waiting GROUP BY kind;

-- stats_due --
-- Active objects whose time has run out, by kind (through runs_due).
SELECT kind, count(*) FROM runs WHERE active AND expires_at <= %(now)s GROUP BY kind;

-- stats_leases --
-- Leases held by workers, and how many of them have ended, by kind (through runs_leases).
SELECT kind, count(*), sum(CASE WHEN lease_expires_at <= %(now)s THEN 1 ELSE 0 END) FROM runs
WHERE lease_owner IS NOT NULL GROUP BY kind;

-- stats_events --
-- How many events are stored.
SELECT count(*) FROM run_events;

-- key_of --
-- A remembered idempotency key: what its first create's parameters were, and what it made.
SELECT fingerprint, object_id, created_at FROM idempotency_keys
WHERE kind = %(kind)s AND key = %(key)s;

-- trim_events --
-- The oldest events of one object, below event number %(below)s (the store keeps at
-- most its max_events newest of each object's events).
DELETE FROM run_events WHERE run_id = %(id)s AND number < %(below)s;

-- add_endpoint --
-- A new webhook endpoint, with its secret and the event types it takes (a JSON array).
INSERT INTO webhook_endpoints (id, url, name, secret, events, created_at)
VALUES (%(id)s, %(url)s, %(name)s, %(secret)s, %(events)s, %(created_at)s);

-- list_endpoints --
-- Every webhook endpoint, in the order they were added, without its secret.
SELECT id, url, name, events, created_at FROM webhook_endpoints ORDER BY seq;

-- delete_endpoint_deliveries --
-- The deliveries of one endpoint (removed with it).
DELETE FROM webhook_deliveries WHERE endpoint_id = %(id)s;

-- delete_endpoint --
-- One webhook endpoint.
DELETE FROM webhook_endpoints WHERE id = %(id)s;

-- claim_deliveries --
-- Up to %(limit)s pending deliveries that are due, soonest first, skipping rows another
-- dispatcher holds (picked once, in a CTE), leased to the claimer: due again only when
-- the lease ends; with what sending them needs.
WITH picked AS (
    SELECT event_id, endpoint_id FROM webhook_deliveries
    WHERE status = 'pending' AND next_at <= %(now)s ORDER BY next_at LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
UPDATE webhook_deliveries d SET next_at = %(now)s + %(lease)s, attempts = d.attempts + 1
FROM picked
WHERE d.event_id = picked.event_id AND d.endpoint_id = picked.endpoint_id
RETURNING d.event_id, d.endpoint_id,
    (SELECT url FROM webhook_endpoints ep WHERE ep.id = d.endpoint_id),
    (SELECT secret FROM webhook_endpoints ep WHERE ep.id = d.endpoint_id),
    d.type, d.object_id, d.created_at, d.attempts;

-- settle_deliveries --
-- How attempts ended (a JSON array of settles: event_id, endpoint_id, attempts,
-- status, next_at, error, now), each only if its delivery is still pending at that
-- attempt (a later claim took it otherwise); the deliveries settled.
UPDATE webhook_deliveries d SET status = s.status, next_at = s.next_at, last_error = s.error,
    ended_at = CASE WHEN s.status = 'pending' THEN NULL ELSE s.now END
FROM jsonb_to_recordset(%(settles)s::jsonb) AS s(event_id text, endpoint_id text,
    attempts integer, status text, next_at bigint, error text, now bigint)
WHERE d.event_id = s.event_id AND d.endpoint_id = s.endpoint_id AND d.attempts = s.attempts
    AND d.status = 'pending'
RETURNING d.event_id, d.endpoint_id;

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
DELETE FROM webhook_deliveries WHERE object_id = %(id)s;
