-- Schema version 1, as runstate 0.1.0 created it.
CREATE TABLE runstate_meta (key text PRIMARY KEY, value text NOT NULL);
CREATE TABLE runs (
    seq bigserial PRIMARY KEY,
    id text NOT NULL UNIQUE,
    thread_id text NOT NULL,
    status text NOT NULL,
    created_at bigint NOT NULL,
    expires_at bigint,
    version bigint NOT NULL,
    lease_owner text,
    lease_expires_at bigint,
    attempts integer NOT NULL DEFAULT 0,
    body text NOT NULL
);
CREATE TABLE run_events (
    seq bigint PRIMARY KEY,
    run_id text NOT NULL,
    event text NOT NULL,
    from_status text,
    to_status text NOT NULL,
    at bigint NOT NULL,
    data text NOT NULL
);

CREATE UNIQUE INDEX runs_one_active_per_thread ON runs (thread_id)
    WHERE status IN ('cancelling', 'in_progress', 'queued', 'requires_action');
CREATE INDEX runs_by_thread ON runs (thread_id, created_at, seq);
CREATE INDEX runs_by_created ON runs (created_at, seq);
CREATE INDEX runs_due ON runs (expires_at) WHERE status IN ('cancelling', 'in_progress', 'queued', 'requires_action');
CREATE INDEX runs_queue ON runs (created_at, seq) WHERE status = 'queued';
CREATE INDEX runs_leases ON runs (lease_expires_at) WHERE lease_owner IS NOT NULL;
CREATE INDEX run_events_by_run ON run_events (run_id, seq);

CREATE TABLE run_event_counter (one boolean PRIMARY KEY CHECK (one), last bigint NOT NULL);
INSERT INTO run_event_counter VALUES (true, 0);
-- One transition in one round trip: the compare-and-set, then (only if it won) the
-- history rows, numbered from the counter as the transaction's last lock. NULL if lost.
CREATE FUNCTION runstate_write(
    p_id text, p_expected bigint, p_status text, p_expires_at bigint, p_lease_owner text,
    p_lease_expires_at bigint, p_attempts integer, p_body text, p_events jsonb
) RETURNS bigint[] LANGUAGE plpgsql SET search_path FROM CURRENT AS $fn$
DECLARE
    n integer := jsonb_array_length(p_events);
    last_seq bigint;
BEGIN
    UPDATE runs SET status = p_status, expires_at = p_expires_at, version = version + 1,
        lease_owner = p_lease_owner, lease_expires_at = p_lease_expires_at,
        attempts = p_attempts, body = p_body
    WHERE id = p_id AND version = p_expected;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    IF n = 0 THEN
        RETURN ARRAY[]::bigint[];
    END IF;
    UPDATE run_event_counter SET last = last + n RETURNING last INTO last_seq;
    INSERT INTO run_events (seq, run_id, event, from_status, to_status, at, data)
    SELECT last_seq - n + e.i, p_id, e.v->>0, e.v->>1, e.v->>2, (e.v->>3)::bigint, p_body
    FROM jsonb_array_elements(p_events) WITH ORDINALITY AS e(v, i);
    RETURN ARRAY(SELECT generate_series(last_seq - n + 1, last_seq));
END
$fn$;
INSERT INTO runstate_meta VALUES ('schema_version', '1');
