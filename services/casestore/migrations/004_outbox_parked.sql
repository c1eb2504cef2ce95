-- Outbox events the broker refuses for good (e.g. a property over AMQP's 255-byte limit): moved
-- here by the relay with the error, so they neither block nor repeat the rows behind them.
CREATE TABLE outbox_parked (
    id           bigint PRIMARY KEY,
    event_id     uuid NOT NULL,
    routing_key  text NOT NULL,
    envelope     jsonb NOT NULL,
    created_at   timestamptz NOT NULL,
    parked_at    timestamptz NOT NULL DEFAULT now(),
    error        text NOT NULL
);
