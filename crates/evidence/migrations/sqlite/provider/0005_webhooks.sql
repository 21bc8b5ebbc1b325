-- Webhook endpoints of the Stripe-compatible face: created through its API
-- (POST /v1/webhook_endpoints, every caller's events) or from the configuration
-- (provider.stripe_webhooks, one caller's events). enabled_events_json: a JSON array of
-- event types, "*" for all.
CREATE TABLE provider_webhook_endpoints (
    endpoint_id         TEXT PRIMARY KEY,
    url                 TEXT NOT NULL,
    secret              TEXT NOT NULL,
    caller              TEXT,
    enabled_events_json TEXT NOT NULL,
    created_at_us       INTEGER NOT NULL
);

-- One row per event and endpoint, written in the transaction that changed the intent (so
-- no committed change loses its event), delivered by the provider's webhook worker with
-- Stripe's signature and retried with backoff. status: pending | delivered | failed (gave
-- up) | dropped (a chaos fault lost it).
CREATE TABLE provider_webhook_deliveries (
    event_id           TEXT NOT NULL,
    endpoint_id        TEXT NOT NULL,
    event_type         TEXT NOT NULL,
    intent_id          TEXT NOT NULL,
    payload            TEXT NOT NULL,
    status             TEXT NOT NULL,
    attempts           INTEGER NOT NULL DEFAULT 0,
    created_at_us      INTEGER NOT NULL,
    next_attempt_at_us INTEGER NOT NULL,
    delivered_at_us    INTEGER,
    last_http_status   INTEGER,
    last_error         TEXT,
    PRIMARY KEY (event_id, endpoint_id)
);
CREATE INDEX provider_webhook_deliveries_due ON provider_webhook_deliveries (status, next_attempt_at_us);
CREATE INDEX provider_webhook_deliveries_by_intent ON provider_webhook_deliveries (intent_id);
