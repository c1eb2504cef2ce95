-- Time-based triggers: each form has a time zone, and every case has one timer per time trigger
-- of each enabled automation of its form, written in the same transaction as the case change
-- that sets, moves or removes it.
ALTER TABLE forms ADD COLUMN time_zone text NOT NULL DEFAULT 'UTC';

CREATE TABLE timers (
    id             bigserial PRIMARY KEY,
    automation_id  uuid NOT NULL REFERENCES automations (id) ON DELETE CASCADE,
    case_id        uuid NOT NULL REFERENCES cases (id) ON DELETE CASCADE,
    trigger_index  integer NOT NULL,     -- which entry of the automation's `when`
    due_at         timestamptz NOT NULL,
    occurrence     integer NOT NULL DEFAULT 0,  -- 0 the first time, then one per repetition
    UNIQUE (automation_id, case_id, trigger_index)
);
-- The scheduler claims the earliest due; the API lists per case and per automation.
CREATE INDEX timers_due ON timers (due_at);
CREATE INDEX timers_case ON timers (case_id);

-- An automation created, changed or enabled: its timers for the form's existing cases are
-- (re)computed in batches, case by case in number order, by any casestore replica.
CREATE TABLE timer_rebuilds (
    automation_id  uuid PRIMARY KEY REFERENCES automations (id) ON DELETE CASCADE,
    after_number   bigint NOT NULL DEFAULT 0,
    requested_at   timestamptz NOT NULL DEFAULT now()
);

-- A case created through `/skiptriggers` gets no timers, also from automations made later.
ALTER TABLE cases ADD COLUMN skip_triggers boolean NOT NULL DEFAULT false;
