-- Schema version 9: no row that every write takes. Up to version 8 each event's place
-- in the store-wide log came from the one-row run_event_counter, locked from the write
-- to its commit, so every writer of every process waited in one line. Now an event's
-- place is made from its own transaction's id:
--
--   place = transaction id * 65536 + the event's ordinal within its transaction
--
-- (runstate_place_v9, which counts a transaction's events 0, 1, 2... in a setting local
-- to the transaction, over all its statements, and refuses a 65,537th). Places are
-- unique, and a transaction's own follow the order it wrote them in.
--
-- Why this keeps the counter's guarantees:
-- - One object's places follow its commits. Each write of an object is a
--   compare-and-set on its row that also requires the row's last writer to be an older
--   transaction (writer_xid < this transaction's id) and records itself there. A
--   transaction that took its id before another one wrote the object and committed
--   (possible only when it locks several rows) loses the compare-and-set, or skips the
--   row in a pick; it is never written with an older place.
-- - The store-wide feed never misses a late commit: it reads only places below
--   runstate_feed_below_v9(), the oldest transaction id still running times 65536.
--   Every transaction below it has ended (committed or rolled back), and any event not
--   yet visible belongs to a transaction at or above it, so its place is above every
--   place read so far (the transactional-outbox technique).
--
-- The events written up to version 8 keep their places (1, 2, 3...), all below the first
-- new place; the migration checks that.
ALTER TABLE runs ADD COLUMN writer_xid xid8 NOT NULL DEFAULT '0';
DROP FUNCTION runstate_insert_v8(jsonb);
DROP FUNCTION runstate_write_v8(jsonb);

-- The place of this transaction's next event: its id times 65536, plus how many events it
-- placed before (counted in the transaction-local setting runstate.placed; the domain
-- refuses a 65,537th). One expression, so that the planner inlines it.
CREATE DOMAIN runstate_ordinal_v9 AS integer CHECK (VALUE < 65536);
CREATE FUNCTION runstate_place_v9() RETURNS bigint
LANGUAGE sql VOLATILE AS $fn$
    SELECT pg_current_xact_id()::text::bigint * 65536 + set_config('runstate.placed',
        (COALESCE(NULLIF(current_setting('runstate.placed', true), '')::integer, -1) + 1)::text,
        true)::runstate_ordinal_v9
$fn$;

-- The events stored before must lie below every new place (the first is checked here).
DO $check$
BEGIN
    IF (SELECT last FROM run_event_counter) >= runstate_place_v9() THEN
        RAISE EXCEPTION 'runstate: the event counter is ahead of this database''s transaction ids; the store cannot move to schema 9';
    END IF;
END
$check$;
DROP TABLE run_event_counter;

-- The store-wide feed reads places below this: every transaction under it has ended.
CREATE FUNCTION runstate_feed_below_v9() RETURNS bigint
LANGUAGE sql STABLE AS $fn$
    SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint * 65536
$fn$;

-- Every write of a batch in one statement, as runstate_write_v8 did, without the counter:
-- each compare-and-set also requires the row's last writer to be older than this
-- transaction, and records this one; the events of the writes that won take this
-- transaction's next places, in the batch's order. Returns, per write, its events'
-- places, or null where the compare-and-set lost.
CREATE FUNCTION runstate_write_v9(p_writes jsonb) RETURNS jsonb
LANGUAGE plpgsql SET search_path FROM CURRENT AS $fn$
DECLARE
    w jsonb;
    placed jsonb;
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
                ELSE COALESCE(ended_at, (w->>'ended_at')::bigint) END,
            writer_xid = pg_current_xact_id()
        WHERE id = w->>'id' AND version = (w->>'expected')::bigint
            AND writer_xid < pg_current_xact_id();
        IF NOT FOUND THEN
            result := result || jsonb_build_array(NULL::jsonb);
            CONTINUE;
        END IF;
        WITH e AS (
            INSERT INTO run_events (seq, run_id, event, from_status, to_status, at, data, number)
            SELECT runstate_place_v9(), w->>'id', x.v->>0, x.v->>1, x.v->>2,
                (x.v->>3)::bigint, COALESCE(x.v->>4, w->>'body'), (x.v->>5)::bigint
            FROM jsonb_array_elements(w->'events') WITH ORDINALITY AS x(v, i)
            ORDER BY x.i
            RETURNING seq
        )
        SELECT COALESCE(jsonb_agg(seq ORDER BY seq), '[]'::jsonb) INTO placed FROM e;
        result := result || jsonb_build_array(placed);
    END LOOP;
    RETURN result;
END
$fn$;

-- The create with an idempotency key, as runstate_insert_v8 did, on runstate_write_v9
-- and without a notification (the store sends those after its writes commit).
CREATE FUNCTION runstate_insert_v9(p jsonb) RETURNS jsonb
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
    result := runstate_write_v9(jsonb_build_array(p->'write'));
    RETURN jsonb_build_object('seqs', result->0);
END
$fn$;
UPDATE runstate_meta SET value = '9' WHERE key = 'schema_version';
