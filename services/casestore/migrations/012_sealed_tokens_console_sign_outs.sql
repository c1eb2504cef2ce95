-- Incoming-webhook tokens at rest: `token_sealed` is the token encrypted with
-- CASEWIRE_ENCRYPTION_KEY (Fernet, like automation secrets), `token_index` an HMAC-SHA256 of it
-- under a key derived from CASEWIRE_SIGNING_KEY, which ingest looks a request's token up by
-- (services/casestore/webhook_tokens.py). SQL cannot encrypt without the key, so rows written
-- before this keep their clear `token` until casestore, starting with the key, seals them all
-- in one transaction (the clear column is then NULL) and ingest finds both meanwhile.
ALTER TABLE incoming_webhooks
    ALTER COLUMN token DROP NOT NULL,
    ADD COLUMN token_sealed text,
    ADD COLUMN token_index bytea UNIQUE,
    ADD CONSTRAINT incoming_webhooks_token_kept
        CHECK (token IS NOT NULL OR (token_sealed IS NOT NULL AND token_index IS NOT NULL));

-- Console sessions that signed out (services/casestore/console/session.py): a signed cookie
-- names its session by a random nonce, stored here as its SHA-256 until the cookie would have
-- expired anyway (retention deletes the row then), so a copied cookie no longer works.
CREATE TABLE console_sessions_ended (
    nonce_hash  bytea PRIMARY KEY,
    expires_at  timestamptz NOT NULL
);
CREATE INDEX console_sessions_ended_expires ON console_sessions_ended (expires_at);
