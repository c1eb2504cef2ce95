-- The delivery engine: every delivery is casestore's durable work, waiting in this table for its
-- next attempt; a scheduler hands attempts out (at most so many in flight per automation) and
-- records what came of them.

-- The log outlives its automation: it keeps the id and the name the automation had.
ALTER TABLE deliveries DROP CONSTRAINT deliveries_automation_id_fkey;
ALTER TABLE deliveries DROP CONSTRAINT deliveries_state_check;
ALTER TABLE deliveries
    ADD COLUMN automation_name   text NOT NULL DEFAULT '',
    ADD COLUMN schedule          text NOT NULL DEFAULT 'standard'
                                 CHECK (schedule IN ('standard', 'extended')),
    -- The case as it was when the automation fired (shared.events.CaseChanged).
    ADD COLUMN case_snapshot     jsonb,
    ADD COLUMN attempts_made     integer NOT NULL DEFAULT 0,
    ADD COLUMN attempts_allowed  integer NOT NULL DEFAULT 1,
    ADD COLUMN next_attempt_at   timestamptz,
    -- While `sending`: when the attempt handed out counts as lost and goes out again.
    ADD COLUMN lease_until       timestamptz,
    ADD CONSTRAINT deliveries_state_check
        CHECK (state IN ('pending', 'sending', 'retrying', 'succeeded', 'failed'));

UPDATE deliveries d SET automation_name = a.definition->>'name'
    FROM automations a WHERE a.id = d.automation_id;
UPDATE deliveries d SET attempts_made = n.count, attempts_allowed = n.count
    FROM (SELECT delivery_id, count(*) AS count FROM delivery_attempts GROUP BY delivery_id) n
    WHERE n.delivery_id = d.id;

-- What the scheduler reads: due work per automation, and attempts in flight per automation.
CREATE INDEX deliveries_waiting ON deliveries (automation_id, next_attempt_at)
    WHERE state IN ('pending', 'retrying');
CREATE INDEX deliveries_in_flight ON deliveries (automation_id, lease_until)
    WHERE state = 'sending';
CREATE INDEX deliveries_automation_updated ON deliveries (automation_id, updated_at);

-- One row per automation: its circuit breaker and what the API shows as its health. Kept apart
-- from `automations`, whose every update bumps the form's revision (migration 003).
CREATE TABLE endpoint_health (
    automation_id         uuid PRIMARY KEY REFERENCES automations (id) ON DELETE CASCADE,
    state                 text NOT NULL DEFAULT 'closed'
                          CHECK (state IN ('closed', 'open', 'half_open')),
    consecutive_failures  integer NOT NULL DEFAULT 0,
    times_opened          integer NOT NULL DEFAULT 0,
    open_until            timestamptz,
    -- The first failure since the last success: all failing since then disables it in the end.
    failing_since         timestamptz,
    last_success_at       timestamptz,
    last_failure_at       timestamptz,
    -- Attempts handed out in the current second, for `max_per_second`.
    window_start          timestamptz,
    window_count          integer NOT NULL DEFAULT 0
);
INSERT INTO endpoint_health (automation_id) SELECT id FROM automations;

ALTER TABLE automations
    -- The secret a rotation replaced keeps signing beside the new one until then.
    ADD COLUMN previous_secret        text,
    ADD COLUMN previous_secret_until  timestamptz,
    ADD COLUMN disabled_reason        text,
    ADD COLUMN disabled_at            timestamptz;
