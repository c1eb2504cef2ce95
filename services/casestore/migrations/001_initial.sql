-- Forms: sections and fields are validated by shared.forms.FormDefinition before they land here.
CREATE TABLE forms (
    id          text PRIMARY KEY,
    name        text NOT NULL,
    sections    jsonb NOT NULL,
    fields      jsonb NOT NULL,
    statuses    text[] NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- One counter row per form, bumped in the case's own transaction: gapless and concurrency-safe.
CREATE TABLE case_counters (
    form_id      text PRIMARY KEY REFERENCES forms (id) ON DELETE CASCADE,
    last_number  bigint NOT NULL DEFAULT 0
);

CREATE TABLE cases (
    id           uuid PRIMARY KEY,
    form_id      text NOT NULL REFERENCES forms (id) ON DELETE CASCADE,
    case_number  bigint NOT NULL,
    status       text NOT NULL,
    data         jsonb NOT NULL,
    creator      text NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    version      integer NOT NULL DEFAULT 1,
    UNIQUE (form_id, case_number)
);

CREATE TABLE case_history (
    id          bigserial PRIMARY KEY,
    case_id     uuid NOT NULL REFERENCES cases (id) ON DELETE CASCADE,
    version     integer NOT NULL,
    author      text NOT NULL,
    changed_at  timestamptz NOT NULL DEFAULT now(),
    changes     jsonb NOT NULL
);
CREATE INDEX case_history_case ON case_history (case_id, id);

CREATE TABLE incoming_webhooks (
    id                 uuid PRIMARY KEY,
    form_id            text NOT NULL UNIQUE REFERENCES forms (id) ON DELETE CASCADE,
    token              text NOT NULL UNIQUE,
    enabled            boolean NOT NULL DEFAULT true,
    authenticate_user  boolean NOT NULL DEFAULT false,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE users (
    username       text PRIMARY KEY,
    password_hash  text NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now()
);

-- The forms a user may register cases in through an authenticated incoming webhook.
CREATE TABLE user_forms (
    username  text NOT NULL REFERENCES users (username) ON DELETE CASCADE,
    form_id   text NOT NULL REFERENCES forms (id) ON DELETE CASCADE,
    PRIMARY KEY (username, form_id)
);

-- Auth keys are 256-bit random values: a SHA-256 of the key is enough to store them safely.
CREATE TABLE auth_keys (
    key_hash    bytea PRIMARY KEY,
    username    text NOT NULL REFERENCES users (username) ON DELETE CASCADE,
    webhook_id  uuid NOT NULL REFERENCES incoming_webhooks (id) ON DELETE CASCADE,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX auth_keys_user ON auth_keys (webhook_id, username);

-- Transactional outbox: written in the same transaction as the change it announces.
CREATE TABLE outbox (
    id           bigserial PRIMARY KEY,
    event_id     uuid NOT NULL,
    routing_key  text NOT NULL,
    envelope     jsonb NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);

CREATE FUNCTION outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('casewire_outbox', '');
    RETURN NULL;
END $$;

CREATE TRIGGER outbox_notify AFTER INSERT ON outbox
    FOR EACH STATEMENT EXECUTE FUNCTION outbox_notify();

-- Consumer-side deduplication: an event id recorded here was applied once and is never applied again.
CREATE TABLE processed_events (
    event_id      uuid NOT NULL,
    consumer      text NOT NULL,
    processed_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, event_id)
);
