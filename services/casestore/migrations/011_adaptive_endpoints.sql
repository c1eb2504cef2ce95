-- Endpoints whose limit adapts (services/dispatcher/limits.py) and a circuit breaker that counts
-- only what was begun under its current state.

ALTER TABLE endpoint_health
    -- When the circuit entered its state: a failure of an attempt handed out before then (in
    -- flight as it opened, or before the probe) neither counts toward it nor opens it again.
    ADD COLUMN state_since        timestamptz NOT NULL DEFAULT now(),
    -- The limit of requests in flight a dispatcher last reported for this endpoint (null: none
    -- yet): casestore hands out attempts ahead by it, so its window never caps the endpoint.
    ADD COLUMN concurrency_limit  integer;
