-- Retention (services/casestore/retention.py) deletes old rows in small batches, oldest first:
-- each table it purges has an index on the time it purges by, so a batch never scans the table.
CREATE INDEX processed_events_processed_at ON processed_events (processed_at);
CREATE INDEX delivery_attempts_started_at ON delivery_attempts (started_at);
CREATE INDEX deliveries_finished_updated_at ON deliveries (updated_at)
    WHERE state IN ('succeeded', 'failed');
CREATE INDEX idempotency_keys_expires_at ON idempotency_keys (expires_at);
CREATE INDEX outbox_parked_parked_at ON outbox_parked (parked_at);
