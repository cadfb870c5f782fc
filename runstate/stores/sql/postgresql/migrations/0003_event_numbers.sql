-- Schema version 3: each run's events numbered from 0 with no gaps (sequence_number),
-- so that a follower can resume one run's stream after its n-th event; the run keeps
-- the count, and each write numbers its events on from it. The write function becomes
-- runstate_write_v3 (processes still calling runstate_write_v2 fail, rather than write
-- events without numbers).
ALTER TABLE runs ADD COLUMN event_count bigint NOT NULL DEFAULT 0;
ALTER TABLE run_events ADD COLUMN number bigint;
UPDATE run_events SET number = numbered.n
FROM (
    SELECT seq, row_number() OVER (PARTITION BY run_id ORDER BY seq) - 1 AS n
    FROM run_events
) AS numbered
WHERE run_events.seq = numbered.seq;
UPDATE runs SET event_count = (SELECT count(*) FROM run_events WHERE run_id = runs.id);
CREATE UNIQUE INDEX run_events_by_number ON run_events (run_id, number);
DROP FUNCTION runstate_write_v2(jsonb);

-- Every write in one round trip. p_writes is a JSON array of
--   {"id", "expected", "status", "active", "expires_at", "lease_owner",
--    "lease_expires_at", "attempts", "body", "event_count",
--    "events": [[event, from, to, at, data, number]]}
-- (an event's data is the JSON text of the run after its step, or null for the body;
-- its number counts the run's events from 0). First every compare-and-set, taking the
-- runs' row locks; then the events of the writes that won, their places in the log
-- taken from the counter row, locked last so that places follow commit order. Returns,
-- per write, the array of its events' places, or null where the run was no longer at
-- the expected version.
CREATE FUNCTION runstate_write_v3(p_writes jsonb) RETURNS jsonb
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
            event_count = (w->>'event_count')::bigint
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
UPDATE runstate_meta SET value = '3' WHERE key = 'schema_version';
