-- Operational events (services/casestore/operational.py): what operators must hear about, sent
-- to one configured URL by the same delivery engine as every outgoing webhook. Its endpoint is
-- an automation of kind 'operational', of no form; its deliveries carry their payload instead
-- of a case.

ALTER TABLE automations
    ADD COLUMN kind text NOT NULL DEFAULT 'case' CHECK (kind IN ('case', 'operational')),
    ALTER COLUMN form_id DROP NOT NULL,
    ADD CONSTRAINT automations_form_by_kind CHECK ((kind = 'case') = (form_id IS NOT NULL));

-- The one operational webhook: which events it takes, and how many dead letters it has been
-- told of (replicas compare and set it, so each increase is announced once).
CREATE TABLE operational_webhook (
    singleton          boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    automation_id      uuid NOT NULL UNIQUE REFERENCES automations (id) ON DELETE CASCADE,
    events             text[] NOT NULL,
    dead_letters_seen  bigint NOT NULL DEFAULT 0
);

ALTER TABLE deliveries
    ALTER COLUMN case_id DROP NOT NULL,
    -- The exact JSON an operational delivery sends (null: built from the case snapshot).
    ADD COLUMN payload jsonb;
