-- Schema version 9: webhooks. An endpoint is a URL, a name, its Standard Webhooks secret (kept
-- as given: signing needs it) and the event types it takes (a JSON array). A delivery is
-- one event to one endpoint, written in the same transaction as the transition that
-- made the event (the outbox). A pending delivery is due at next_at; a dispatcher that
-- claims it moves next_at to the end of its lease, so a delivery whose dispatcher died
-- is due again once the lease ends. attempts counts the claims; a settle names the
-- attempt it settles.
CREATE TABLE webhook_endpoints (
    id TEXT PRIMARY KEY,
    url TEXT NOT NULL,
    name TEXT NOT NULL,
    secret TEXT NOT NULL,
    events TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE TABLE webhook_deliveries (
    event_id TEXT NOT NULL,
    endpoint_id TEXT NOT NULL,
    object_id TEXT NOT NULL,
    type TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    next_at INTEGER NOT NULL,
    last_error TEXT,
    ended_at INTEGER,
    PRIMARY KEY (event_id, endpoint_id)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_at) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_object ON webhook_deliveries (object_id);
CREATE INDEX webhook_deliveries_endpoint ON webhook_deliveries (endpoint_id);
