-- Named accounts with a role, their API tokens, and an audit log of every configuration change
-- (services/casestore/accounts.py, audit.py).

CREATE TABLE accounts (
    username       text PRIMARY KEY,
    role           text NOT NULL CHECK (role IN ('admin', 'editor', 'viewer')),
    -- argon2, for signing in to the console; null: the account uses API tokens only.
    password_hash  text,
    disabled_at    timestamptz,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE api_tokens (
    id            uuid PRIMARY KEY,
    username      text NOT NULL REFERENCES accounts (username) ON DELETE CASCADE,
    name          text NOT NULL,
    -- The token's first characters, shown so that tokens can be told apart; never the token.
    prefix        text NOT NULL,
    token_hash    bytea NOT NULL UNIQUE,  -- SHA-256: the token has 256 bits of randomness
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz,
    -- Written at most once a minute per token.
    last_used_at  timestamptz,
    revoked_at    timestamptz,
    UNIQUE (username, name)
);

-- One row per configuration change, written in the transaction that made it.
CREATE TABLE audit_log (
    id           bigserial PRIMARY KEY,
    at           timestamptz NOT NULL DEFAULT now(),
    -- An account's username, 'admin-token' (CASEWIRE_ADMIN_TOKEN) or 'system'.
    actor        text NOT NULL,
    -- How: 'api token cw_ab12…', 'admin token', 'console', with ' (cli: …)' when the CLI
    -- asked; for 'system', why (e.g. 'the receiver answered 410 Gone').
    via          text NOT NULL,
    action       text NOT NULL,
    target_type  text NOT NULL,
    target_id    text NOT NULL,
    -- {"before": ..., "after": ..., "changed": [paths]}, secrets masked.
    diff         jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_log_at ON audit_log (at);
CREATE INDEX audit_log_actor ON audit_log (actor, id);
CREATE INDEX audit_log_target ON audit_log (target_id, id);
