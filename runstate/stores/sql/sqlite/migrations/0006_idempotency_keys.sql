-- Schema version 6: idempotency keys. A create given a key stores it here, in the same
-- transaction as the object, with a fingerprint of its parameters: the same key again
-- finds the object made first (or, with other parameters, a conflict), for as long as
-- the engine's window says the key is remembered (and its object exists).
CREATE TABLE idempotency_keys (
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    object_id TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (kind, key)
);
-- A key goes with its object when the object is deleted (pruned): the table stays as
-- big as what it remembers.
CREATE INDEX idempotency_keys_by_object ON idempotency_keys (object_id);
