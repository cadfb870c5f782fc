-- Schema version 7: a create in one round trip (a worker's step and a claim are one
-- plain statement each: queries.sql, write_one and claim). Each event row
-- was written to two indexes: (run_id, seq) serves every read, and the unique
-- (run_id, number) only repeated what the compare-and-set guarantees (a write numbers
-- its events on from the count at the version it won), so it goes.
DROP INDEX run_events_by_number;

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
