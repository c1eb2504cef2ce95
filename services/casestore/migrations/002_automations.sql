-- Automations: When/If rules with an outgoing-webhook action, per form.
CREATE TABLE automations (
    id          uuid PRIMARY KEY,
    form_id     text NOT NULL REFERENCES forms (id) ON DELETE CASCADE,
    definition  jsonb NOT NULL,          -- shared.automations.AutomationDefinition, as the API shows it
    enabled     boolean NOT NULL DEFAULT true,
    -- Standard Webhooks signing secret; kept in clear because the dispatcher signs with it.
    secret      text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX automations_form ON automations (form_id) WHERE enabled;

-- `once` automations: the first delivery to claim (automation, case) owns it; a redelivered event
-- carries the same delivery id and may go on, any other delivery may not.
CREATE TABLE automation_claims (
    automation_id  uuid NOT NULL REFERENCES automations (id) ON DELETE CASCADE,
    case_id        uuid NOT NULL,
    delivery_id    uuid NOT NULL,
    claimed_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (automation_id, case_id)
);

-- One row per (automation, firing event); outlives its case so the log stays readable.
CREATE TABLE deliveries (
    id             uuid PRIMARY KEY,
    automation_id  uuid NOT NULL REFERENCES automations (id) ON DELETE CASCADE,
    case_id        uuid NOT NULL,
    form_id        text NOT NULL,
    event_id       uuid NOT NULL,
    webhook_id     text NOT NULL,
    state          text NOT NULL CHECK (state IN ('succeeded', 'failed')),
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);
-- The log is read newest first and paged by (created_at, id); each filter has its index.
CREATE INDEX deliveries_created ON deliveries (created_at DESC, id DESC);
CREATE INDEX deliveries_automation ON deliveries (automation_id, created_at DESC, id DESC);
CREATE INDEX deliveries_case ON deliveries (case_id, created_at DESC, id DESC);
CREATE INDEX deliveries_state ON deliveries (state, created_at DESC, id DESC);

CREATE TABLE delivery_attempts (
    id                uuid PRIMARY KEY,
    delivery_id       uuid NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
    number            integer NOT NULL,
    started_at        timestamptz NOT NULL,
    duration_ms       double precision NOT NULL,
    request           jsonb NOT NULL,      -- method, url, headers (secrets masked), body
    response_status   integer,
    response_headers  jsonb NOT NULL DEFAULT '{}',
    response_body     text,                -- excerpt, at most CASEWIRE_RESPONSE_EXCERPT_BYTES
    error             text
);
CREATE INDEX delivery_attempts_delivery ON delivery_attempts (delivery_id, started_at, number);

-- Files attached to `file` fields; the case data holds [{id, name, content_type, size}, ...].
CREATE TABLE files (
    id            uuid PRIMARY KEY,
    case_id       uuid NOT NULL REFERENCES cases (id) ON DELETE CASCADE,
    field_id      text NOT NULL,
    name          text NOT NULL,
    content_type  text NOT NULL,
    size          bigint NOT NULL,
    content       bytea NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX files_case ON files (case_id);
