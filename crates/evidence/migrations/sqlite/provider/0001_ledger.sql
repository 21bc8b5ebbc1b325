-- The simulated payment provider's ledger: the ground truth for "was the customer charged".
-- Timestamps are wall-clock microseconds since the Unix epoch.

-- One row per idempotency key: the first request's fingerprint and its stored answer.
-- state: processing (first request in flight) | completed | voided (tombstone: refused forever).
CREATE TABLE provider_keys (
    idempotency_key TEXT PRIMARY KEY,
    fingerprint     TEXT NOT NULL,
    state           TEXT NOT NULL,
    charge_id       TEXT,
    response_status INTEGER,
    response_body   TEXT,
    created_at_us   INTEGER NOT NULL,
    updated_at_us   INTEGER NOT NULL
);

-- status: authorized | declined | voided. Net charged = amount - refunded for authorized, else 0.
CREATE TABLE provider_charges (
    charge_id       TEXT PRIMARY KEY,
    idempotency_key TEXT NOT NULL,
    order_id        TEXT NOT NULL,
    amount_cents    INTEGER NOT NULL,
    currency        TEXT NOT NULL,
    status          TEXT NOT NULL,
    refunded_cents  INTEGER NOT NULL DEFAULT 0,
    created_at_us   INTEGER NOT NULL,
    updated_at_us   INTEGER NOT NULL
);
CREATE INDEX provider_charges_by_order ON provider_charges (order_id, created_at_us);
CREATE INDEX provider_charges_by_key ON provider_charges (idempotency_key);

CREATE TABLE provider_refunds (
    refund_id     TEXT PRIMARY KEY,
    charge_id     TEXT NOT NULL,
    amount_cents  INTEGER NOT NULL,
    created_at_us INTEGER NOT NULL
);
CREATE INDEX provider_refunds_by_charge ON provider_refunds (charge_id);

-- Every request the provider answered (or dropped on purpose), with its own clock readings.
-- op: charge | lookup | refund | void. outcome: see the provider module docs.
CREATE TABLE provider_requests (
    id              INTEGER PRIMARY KEY,
    op              TEXT NOT NULL,
    idempotency_key TEXT,
    charge_id       TEXT,
    received_at_us  INTEGER NOT NULL,
    finished_at_us  INTEGER NOT NULL,
    http_status     INTEGER,
    outcome         TEXT NOT NULL
);
CREATE INDEX provider_requests_by_key ON provider_requests (idempotency_key);
CREATE INDEX provider_requests_by_received ON provider_requests (received_at_us);

-- Every change of the active fault set, so fault windows are evidence too.
CREATE TABLE provider_fault_changes (
    id          INTEGER PRIMARY KEY,
    at_us       INTEGER NOT NULL,
    faults_json TEXT NOT NULL
);

CREATE TABLE provider_meta (
    key           TEXT PRIMARY KEY,
    value         TEXT NOT NULL,
    updated_at_us INTEGER NOT NULL
);
