-- Integration reach (issue 27): the delivery log searched by the status receivers answered,
-- and incoming webhooks that check who signed a request.

-- GET /api/deliveries?status=401: deliveries with an attempt answered so. The index finds the
-- attempts of a rare status without walking the log; a common one is checked per delivery
-- through delivery_attempts_delivery.
CREATE INDEX delivery_attempts_response_status ON delivery_attempts (response_status, delivery_id);

-- How a form's incoming webhook checks a sender's signature (services/ingest/signatures.py):
-- null, or {"scheme": "standard-webhooks" | "hmac-sha256", "header", "prefix",
-- "tolerance_seconds"}. The secret it checks with is a Fernet token (shared/crypto.py).
ALTER TABLE incoming_webhooks
    ADD COLUMN verify         jsonb,
    ADD COLUMN verify_secret  text;
