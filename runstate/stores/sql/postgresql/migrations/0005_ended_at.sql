-- Schema version 5: when each object ended (ended_at: the time of the step that took it
-- out of its active statuses; null while active), and an index of ended objects by it,
-- so that retention deletes the oldest ended objects in batches whose cost follows what
-- they delete. Objects that had ended are dated by their last event. The write function
-- becomes runstate_write_v5 (a write of an ended object keeps its first ended_at).
ALTER TABLE runs ADD COLUMN ended_at bigint;
UPDATE runs SET ended_at = (SELECT max(at) FROM run_events WHERE run_id = runs.id)
    WHERE NOT active;
CREATE INDEX runs_ended ON runs (kind, ended_at) WHERE NOT active;
DROP FUNCTION runstate_write_v3(jsonb);

CREATE FUNCTION runstate_write_v5(p_writes jsonb) RETURNS jsonb
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
UPDATE runstate_meta SET value = '5' WHERE key = 'schema_version';
