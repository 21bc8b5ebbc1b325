-- Text columns use the "C" collation: byte order, as the verifier merges stores (and as
-- SQLite sorts), and indexes usable for keyset paging by order id.
-- The simulated payment provider's ledger: the ground truth for "was the customer charged".
-- Timestamps are wall-clock microseconds since the Unix epoch.

-- One row per idempotency key: the first request's fingerprint and its stored answer.
-- state: processing (first request in flight) | completed | voided (tombstone: refused forever).
CREATE TABLE provider_keys (
    idempotency_key TEXT COLLATE "C" PRIMARY KEY,
    fingerprint     TEXT COLLATE "C" NOT NULL,
    state           TEXT COLLATE "C" NOT NULL,
    charge_id       TEXT COLLATE "C",
    response_status BIGINT,
    response_body   TEXT COLLATE "C",
    created_at_us   BIGINT NOT NULL,
    updated_at_us   BIGINT NOT NULL
);

-- status: authorized | declined | voided. Net charged = amount - refunded for authorized, else 0.
CREATE TABLE provider_charges (
    charge_id       TEXT COLLATE "C" PRIMARY KEY,
    idempotency_key TEXT COLLATE "C" NOT NULL,
    order_id        TEXT COLLATE "C" NOT NULL,
    amount_cents    BIGINT NOT NULL,
    currency        TEXT COLLATE "C" NOT NULL,
    status          TEXT COLLATE "C" NOT NULL,
    refunded_cents  BIGINT NOT NULL DEFAULT 0,
    created_at_us   BIGINT NOT NULL,
    updated_at_us   BIGINT NOT NULL
);
CREATE INDEX provider_charges_by_order ON provider_charges (order_id, created_at_us);
CREATE INDEX provider_charges_by_key ON provider_charges (idempotency_key);

CREATE TABLE provider_refunds (
    refund_id     TEXT COLLATE "C" PRIMARY KEY,
    charge_id     TEXT COLLATE "C" NOT NULL,
    amount_cents  BIGINT NOT NULL,
    created_at_us BIGINT NOT NULL
);
CREATE INDEX provider_refunds_by_charge ON provider_refunds (charge_id);

-- Every request the provider answered (or dropped on purpose), with its own clock readings.
-- op: charge | lookup | refund | void. outcome: see the provider module docs.
CREATE TABLE provider_requests (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    op              TEXT COLLATE "C" NOT NULL,
    idempotency_key TEXT COLLATE "C",
    charge_id       TEXT COLLATE "C",
    received_at_us  BIGINT NOT NULL,
    finished_at_us  BIGINT NOT NULL,
    http_status     BIGINT,
    outcome         TEXT COLLATE "C" NOT NULL
);
CREATE INDEX provider_requests_by_key ON provider_requests (idempotency_key);
CREATE INDEX provider_requests_by_received ON provider_requests (received_at_us);

-- Every change of the active fault set, so fault windows are evidence too.
CREATE TABLE provider_fault_changes (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at_us       BIGINT NOT NULL,
    faults_json TEXT COLLATE "C" NOT NULL
);

CREATE TABLE provider_meta (
    key           TEXT COLLATE "C" PRIMARY KEY,
    value         TEXT COLLATE "C" NOT NULL,
    updated_at_us BIGINT NOT NULL
);
