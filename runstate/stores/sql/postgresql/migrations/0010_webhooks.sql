-- Schema version 10: webhooks. An endpoint is a URL, a name, its Standard Webhooks secret (kept
-- as given: signing needs it) and the event types it takes. A delivery is one event to
-- one endpoint, written in the same transaction as the transition that made the event
-- (the outbox). A pending delivery is due at next_at; a dispatcher that claims it (FOR
-- UPDATE SKIP LOCKED) moves next_at to the end of its lease, so a delivery whose
-- dispatcher died is due again once the lease ends. attempts counts the claims; a
-- settle names the attempt it settles.
CREATE TABLE webhook_endpoints (
    id text PRIMARY KEY,
    url text NOT NULL,
    name text NOT NULL,
    secret text NOT NULL,
    events jsonb NOT NULL,
    created_at bigint NOT NULL,
    seq bigserial NOT NULL  -- the order they were added in
);
CREATE TABLE webhook_deliveries (
    event_id text NOT NULL,
    endpoint_id text NOT NULL,
    object_id text NOT NULL,
    type text NOT NULL,
    created_at bigint NOT NULL,
    status text NOT NULL DEFAULT 'pending',
    attempts integer NOT NULL DEFAULT 0,
    next_at bigint NOT NULL,
    last_error text,
    ended_at bigint,
    PRIMARY KEY (event_id, endpoint_id)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_at) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_object ON webhook_deliveries (object_id);
CREATE INDEX webhook_deliveries_endpoint ON webhook_deliveries (endpoint_id);

-- runstate_write_v9, and for each write that won and names webhook events ("hooks":
-- [[event id, type, time], ...]), one pending delivery per endpoint that takes the
-- event's type, in the same transaction.
CREATE FUNCTION runstate_write_v10(p_writes jsonb) RETURNS jsonb
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
        IF w ? 'hooks' THEN
            INSERT INTO webhook_deliveries (event_id, endpoint_id, object_id, type,
                created_at, next_at)
            SELECT h.v->>0, ep.id, w->>'id', h.v->>1, (h.v->>2)::bigint, (h.v->>2)::bigint
            FROM jsonb_array_elements(w->'hooks') AS h(v)
            JOIN webhook_endpoints ep ON ep.events ? (h.v->>1);
        END IF;
        result := result || jsonb_build_array(placed);
    END LOOP;
    RETURN result;
END
$fn$;

-- The create with an idempotency key, as runstate_insert_v9 did, on runstate_write_v10:
-- one write path still.
CREATE FUNCTION runstate_insert_v10(p jsonb) RETURNS jsonb
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
    result := runstate_write_v10(jsonb_build_array(p->'write'));
    RETURN jsonb_build_object('seqs', result->0);
END
$fn$;
DROP FUNCTION runstate_insert_v9(jsonb);
DROP FUNCTION runstate_write_v9(jsonb);
UPDATE runstate_meta SET value = '10' WHERE key = 'schema_version';
