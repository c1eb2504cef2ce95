-- Idempotency-Keys of incoming webhooks. casestore writes a key's row in the transaction that
-- creates its case, and creates no case for a key whose row has not expired: a retry, however
-- late and through whichever ingest, makes nothing. An expired row is taken over by the next
-- use of its key, which makes a new case. ingest reads the rows to answer a reused key with a
-- different body with 422.
CREATE TABLE idempotency_keys (
    scope       text PRIMARY KEY,  -- JSON [webhook id, username or null, key as sent]
    event_id    uuid NOT NULL,     -- the command that holds the key, and so its case's id
    body_hash   text NOT NULL,     -- sha256 of the validated data and options
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL
);
