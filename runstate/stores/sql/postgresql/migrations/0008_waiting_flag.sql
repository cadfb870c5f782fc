-- Schema version 8: whether an object waits for a worker's claim is a flag of the row,
-- kept by the store from the object's declaration (the status its claim starts from),
-- as the active flag is. The queue's partial index reads the flag, so a lifecycle whose
-- waiting status has another name is served by the same statements. Up to version 7
-- the claim took objects whose status was 'queued', whatever their kind: the rows that
-- were claimable then are the ones flagged now. The write and insert functions set the
-- flag: runstate_write_v8 and runstate_insert_v8 replace v5 and v7.
ALTER TABLE runs ADD COLUMN waiting boolean NOT NULL DEFAULT false;
UPDATE runs SET waiting = true WHERE status = 'queued';
DROP INDEX runs_queue;
CREATE INDEX runs_queue ON runs (kind, created_at, seq) WHERE waiting;
DROP FUNCTION runstate_insert_v7(jsonb);
DROP FUNCTION runstate_write_v5(jsonb);

CREATE FUNCTION runstate_write_v8(p_writes jsonb) RETURNS jsonb
LANGUAGE plpgsql SET search_path FROM CURRENT AS $fn$
DECLARE
    w jsonb;
    won boolean[] := ARRAY[]::boolean[];
    n bigint := 0;
    next_seq bigint;
    k integer;
    result jsonb := '[]'::jsonb;
BEGIN
    FOR w IN SELECT value FROM jsonb_array_elements(p_writes) LOOP
        UPDATE runs SET status = w->>'status', active = (w->>'active')::boolean,
            waiting = (w->>'waiting')::boolean,
            expires_at = (w->>'expires_at')::bigint, version = version + 1,
            lease_owner = w->>'lease_owner',
            lease_expires_at = (w->>'lease_expires_at')::bigint,
            attempts = (w->>'attempts')::integer, body = w->>'body',
            event_count = (w->>'event_count')::bigint,
            ended_at = CASE WHEN (w->>'active')::boolean THEN NULL
                ELSE COALESCE(ended_at, (w->>'ended_at')::bigint) END
        WHERE id = w->>'id' AND version = (w->>'expected')::bigint;
        won := won || FOUND;
        IF FOUND THEN
            n := n + jsonb_array_length(w->'events');
        END IF;
    END LOOP;
    IF n > 0 THEN
        UPDATE run_event_counter SET last = last + n RETURNING last - n + 1 INTO next_seq;
    END IF;
    k := 0;
    FOR w IN SELECT value FROM jsonb_array_elements(p_writes) LOOP
        k := k + 1;
        IF NOT won[k] THEN
            result := result || jsonb_build_array(NULL::jsonb);
            CONTINUE;
        END IF;
        INSERT INTO run_events (seq, run_id, event, from_status, to_status, at, data, number)
        SELECT next_seq + e.i - 1, w->>'id', e.v->>0, e.v->>1, e.v->>2, (e.v->>3)::bigint,
            COALESCE(e.v->>4, w->>'body'), (e.v->>5)::bigint
        FROM jsonb_array_elements(w->'events') WITH ORDINALITY AS e(v, i);
        result := result || jsonb_build_array(COALESCE(
            (SELECT jsonb_agg(s) FROM generate_series(
                next_seq, next_seq + jsonb_array_length(w->'events') - 1) AS s),
            '[]'::jsonb));
        next_seq := next_seq + jsonb_array_length(w->'events');
    END LOOP;
    RETURN result;
END
$fn$;

CREATE FUNCTION runstate_insert_v8(p jsonb) RETURNS jsonb
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
    INSERT INTO runs (id, kind, group_id, status, active, waiting, created_at, expires_at,
        version, body, event_count, input)
    VALUES (row_->>'id', row_->>'kind', row_->>'group_id', row_->>'status',
        (row_->>'active')::boolean, (row_->>'waiting')::boolean, (row_->>'created_at')::bigint,
        (row_->>'expires_at')::bigint, 0, row_->>'body', 0, row_->>'input');
    result := runstate_write_v8(jsonb_build_array(p->'write'));
    PERFORM pg_notify(p->>'channel', p->>'notify');
    RETURN jsonb_build_object('seqs', result->0);
END
$fn$;
UPDATE runstate_meta SET value = '8' WHERE key = 'schema_version';
