-- Schema version 2: an "active" flag that the engine writes from the lifecycle's own
-- definition, so that the partial indexes name no status list; and one write path,
-- runstate_write_v2, for a single transition and for a batch alike.
ALTER TABLE runs ADD COLUMN active boolean NOT NULL DEFAULT false;
UPDATE runs SET active = true
    WHERE status IN ('cancelling', 'in_progress', 'queued', 'requires_action');
DROP INDEX runs_one_active_per_thread;
DROP INDEX runs_due;
CREATE UNIQUE INDEX runs_one_active_per_thread ON runs (thread_id) WHERE active;
CREATE INDEX runs_due ON runs (expires_at) WHERE active;
DROP FUNCTION runstate_write(text, bigint, text, bigint, text, bigint, integer, text, jsonb);

-- Every write in one round trip. p_writes is a JSON array of
--   {"id", "expected", "status", "active", "expires_at", "lease_owner",
--    "lease_expires_at", "attempts", "body", "events": [[event, from, to, at, data]]}
-- (an event's data is the JSON text of the run after its step, or null for the body).
-- First every compare-and-set, taking the runs' row locks; then the events of the
-- writes that won, numbered from the counter row, locked last so that event numbers
-- follow commit order. Returns, per write, the array of its events' numbers, or null
-- where the run was no longer at the expected version.
CREATE FUNCTION runstate_write_v2(p_writes jsonb) RETURNS jsonb
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
            attempts = (w->>'attempts')::integer, body = w->>'body'
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
        INSERT INTO run_events (seq, run_id, event, from_status, to_status, at, data)
        SELECT next_seq + e.i - 1, w->>'id', e.v->>0, e.v->>1, e.v->>2, (e.v->>3)::bigint,
            COALESCE(e.v->>4, w->>'body')
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
UPDATE runstate_meta SET value = '2' WHERE key = 'schema_version';
