-- PaymentIntents of the provider's Stripe-compatible face. A confirmed intent moves money
-- through a row of provider_charges (charge_id; the charge's idempotency_key is the
-- confirming request's Idempotency-Key, or the charge id without one, and its order_id the
-- intent's metadata[order_id]), so both faces are read the same way.
-- status: requires_payment_method | requires_confirmation | processing | requires_capture
--         | succeeded | canceled.
CREATE TABLE provider_payment_intents (
    intent_id           TEXT PRIMARY KEY,
    -- Whose secret key created it (the caller it was issued to).
    caller              TEXT,
    -- metadata[order_id] when given, else NULL.
    order_id            TEXT,
    amount_cents        INTEGER NOT NULL,
    currency            TEXT NOT NULL,
    status              TEXT NOT NULL,
    capture_method      TEXT NOT NULL,
    payment_method      TEXT,
    -- The latest charge (provider_charges.charge_id), if it was ever confirmed.
    charge_id           TEXT,
    amount_received     INTEGER NOT NULL DEFAULT 0,
    metadata_json       TEXT NOT NULL,
    description         TEXT,
    last_error_json     TEXT,
    cancellation_reason TEXT,
    created_at_us       INTEGER NOT NULL,
    updated_at_us       INTEGER NOT NULL
);
CREATE INDEX provider_payment_intents_by_order ON provider_payment_intents (order_id, created_at_us);
CREATE INDEX provider_payment_intents_by_charge ON provider_payment_intents (charge_id);
CREATE INDEX provider_payment_intents_by_created ON provider_payment_intents (created_at_us);
