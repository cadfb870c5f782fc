-- Schema version 7: a claim and a create in one round trip each (a worker's step
-- already is one: runstate_write_v5 with the version the worker holds). Each event row
-- was written to two indexes: (run_id, seq) serves every read, and the unique
-- (run_id, number) only repeated what the compare-and-set guarantees (a write numbers
-- its events on from the count at the version it won), so it goes.
DROP INDEX run_events_by_number;

-- The claim: pick the oldest queued object of a kind that is not due, skipping rows
-- another transaction holds, and take the lifecycle's claim step on it, all in this one
-- statement. The step is the one the lifecycle's declaration makes of an event without
-- an argument (runstate's Lifecycle._fire): the status moves from queued (p.from) to p.to; the
-- field p.clear (if any) becomes null; the field p.stamp (if any) gets the time, which
-- never goes back before any of p.floors; the object is leased to p.owner until
-- p.lease_expires_at, and its claim count goes up. The body keeps its keys' order. One
-- event is numbered and placed in the log as runstate_write_v5 places them, and the
-- schema's listeners hear of it. Returns null when nothing is claimable, else what the
-- row was and what it became (the engine decides the same step on the old row, and
-- checks that it agrees).
CREATE FUNCTION runstate_claim_v7(p jsonb) RETURNS jsonb
LANGUAGE plpgsql SET search_path FROM CURRENT AS $fn$
DECLARE
    r record;
    at bigint := (p->>'now')::bigint;
    floor_field text;
    changes jsonb;
    new_body text;
    s bigint;
BEGIN
    SELECT id, body, version, lease_owner, lease_expires_at, attempts, event_count,
        expires_at INTO r
    FROM runs
    -- 'queued' written out: the partial index of queued objects serves only a query
    -- whose condition says so (a parameter would not, under a generic plan).
    WHERE kind = p->>'kind' AND status = 'queued' AND expires_at > (p->>'now')::bigint
    ORDER BY created_at, seq LIMIT 1 FOR UPDATE SKIP LOCKED;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    FOR floor_field IN SELECT jsonb_array_elements_text(p->'floors') LOOP
        at := GREATEST(at, (r.body::jsonb ->> floor_field)::bigint);
    END LOOP;
    changes := jsonb_build_object('status', p->>'to');
    IF p->>'clear' IS NOT NULL THEN
        changes := changes || jsonb_build_object(p->>'clear', NULL);
    END IF;
    IF p->>'stamp' IS NOT NULL THEN
        changes := changes || jsonb_build_object(p->>'stamp', at);
    END IF;
    SELECT json_object_agg(e.key,
            CASE WHEN changes ? e.key THEN (changes -> e.key)::json ELSE e.value END
            ORDER BY e.ord)::text
        INTO new_body
    FROM json_each(r.body::json) WITH ORDINALITY AS e(key, value, ord);
    UPDATE runs SET status = p->>'to', version = version + 1, lease_owner = p->>'owner',
        lease_expires_at = (p->>'lease_expires_at')::bigint, attempts = attempts + 1,
        body = new_body, event_count = event_count + 1
    WHERE id = r.id;
    UPDATE run_event_counter SET last = last + 1 RETURNING last INTO s;
    INSERT INTO run_events (seq, run_id, event, from_status, to_status, at, data, number)
    VALUES (s, r.id, p->>'event', p->>'from', p->>'to', at, new_body, r.event_count);
    PERFORM pg_notify(p->>'channel', r.id);
    RETURN jsonb_build_object(
        'old', r.body, 'body', new_body, 'version', r.version,
        'lease_owner', r.lease_owner, 'lease_expires_at', r.lease_expires_at,
        'attempts', r.attempts, 'event_count', r.event_count, 'expires_at', r.expires_at,
        'seq', s);
END
$fn$;

-- The create: remember its idempotency key (if any), insert the object at version 0,
-- and make its first write (its creation events) on the one write path, in this one
-- statement. Returns {"seqs": [...]} (the events' places in the log); {"taken":
-- [object_id, fingerprint]} when the key is remembered for an object that exists;
-- {"retry": true} when another transaction remembered the key first (this one waited
-- for it to commit: look again). A group that has an active object makes the insert
-- fail on the partial unique index, as before.
CREATE FUNCTION runstate_insert_v7(p jsonb) RETURNS jsonb
LANGUAGE plpgsql SET search_path FROM CURRENT AS $fn$
DECLARE
    k jsonb := p->'key';
    row_ jsonb := p->'row';
    known record;
    result jsonb;
BEGIN
    IF jsonb_typeof(k) = 'object' THEN
        SELECT fingerprint, object_id, created_at INTO known FROM idempotency_keys
        WHERE kind = k->>'kind' AND key = k->>'key' FOR UPDATE;
        IF FOUND THEN
            IF known.created_at >= (k->>'not_before')::bigint
                    AND EXISTS (SELECT 1 FROM runs WHERE id = known.object_id) THEN
                RETURN jsonb_build_object(
                    'taken', jsonb_build_array(known.object_id, known.fingerprint));
            END IF;
            UPDATE idempotency_keys SET fingerprint = k->>'fingerprint',
                object_id = k->>'object_id', created_at = (k->>'created_at')::bigint
            WHERE kind = k->>'kind' AND key = k->>'key';
        ELSE
            INSERT INTO idempotency_keys (kind, key, fingerprint, object_id, created_at)
            VALUES (k->>'kind', k->>'key', k->>'fingerprint', k->>'object_id',
                (k->>'created_at')::bigint)
            ON CONFLICT (kind, key) DO NOTHING;
            IF NOT FOUND THEN
                RETURN jsonb_build_object('retry', true);
            END IF;
        END IF;
    END IF;
    INSERT INTO runs (id, kind, group_id, status, active, created_at, expires_at, version,
        body, event_count, input)
    VALUES (row_->>'id', row_->>'kind', row_->>'group_id', row_->>'status',
        (row_->>'active')::boolean, (row_->>'created_at')::bigint,
        (row_->>'expires_at')::bigint, 0, row_->>'body', 0, row_->>'input');
    result := runstate_write_v5(jsonb_build_array(p->'write'));
    PERFORM pg_notify(p->>'channel', p->>'notify');
    RETURN jsonb_build_object('seqs', result->0);
END
$fn$;
UPDATE runstate_meta SET value = '7' WHERE key = 'schema_version';
