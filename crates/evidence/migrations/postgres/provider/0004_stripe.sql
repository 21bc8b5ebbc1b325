-- PaymentIntents of the provider's Stripe-compatible face. A confirmed intent moves money
-- through a row of provider_charges (charge_id; the charge's idempotency_key is the
-- confirming request's Idempotency-Key, or the charge id without one, and its order_id the
-- intent's metadata[order_id]), so both faces are read the same way.
-- status: requires_payment_method | requires_confirmation | processing | requires_capture
--         | succeeded | canceled.
CREATE TABLE provider_payment_intents (
    intent_id           TEXT COLLATE "C" PRIMARY KEY,
    -- Whose secret key created it (the caller it was issued to).
    caller              TEXT COLLATE "C",
    -- metadata[order_id] when given, else NULL.
    order_id            TEXT COLLATE "C",
    amount_cents        BIGINT NOT NULL,
    currency            TEXT COLLATE "C" NOT NULL,
    status              TEXT COLLATE "C" NOT NULL,
    capture_method      TEXT COLLATE "C" NOT NULL,
    payment_method      TEXT COLLATE "C",
    -- The latest charge (provider_charges.charge_id), if it was ever confirmed.
    charge_id           TEXT COLLATE "C",
    amount_received     BIGINT NOT NULL DEFAULT 0,
    metadata_json       TEXT COLLATE "C" NOT NULL,
    description         TEXT COLLATE "C",
    last_error_json     TEXT COLLATE "C",
    cancellation_reason TEXT COLLATE "C",
    created_at_us       BIGINT NOT NULL,
    updated_at_us       BIGINT NOT NULL
);
CREATE INDEX provider_payment_intents_by_order ON provider_payment_intents (order_id, created_at_us);
CREATE INDEX provider_payment_intents_by_charge ON provider_payment_intents (charge_id);
CREATE INDEX provider_payment_intents_by_created ON provider_payment_intents (created_at_us);
