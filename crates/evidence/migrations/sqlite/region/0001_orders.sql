-- A region's durable records: orders and their transitions, inventory and reservations,
-- payment attempts, the transactional outbox and its consumer, carts, run metadata.
-- Timestamps are wall-clock microseconds since the Unix epoch.

-- stock: initial units; reserved: units held for open orders or sold to confirmed ones.
CREATE TABLE inventory (
    sku         TEXT PRIMARY KEY,
    price_cents INTEGER NOT NULL,
    stock       INTEGER NOT NULL,
    reserved    INTEGER NOT NULL DEFAULT 0 CHECK (reserved >= 0)
);

-- One row per order this region owns; status is the state machine's current state and
-- version counts its transitions.
CREATE TABLE orders (
    order_id      TEXT PRIMARY KEY,
    customer_id   TEXT NOT NULL,
    owner_region  TEXT NOT NULL,
    entry_region  TEXT NOT NULL,
    fingerprint   TEXT NOT NULL,
    items_json    TEXT NOT NULL,
    amount_cents  INTEGER NOT NULL,
    currency      TEXT NOT NULL,
    status        TEXT NOT NULL,
    reason        TEXT,
    version       INTEGER NOT NULL,
    created_at_us INTEGER NOT NULL,
    updated_at_us INTEGER NOT NULL
);
CREATE INDEX orders_by_status ON orders (status, updated_at_us);

-- Every transition, seq = the order's version after it. from_state is NULL for the first.
CREATE TABLE order_transitions (
    id         INTEGER PRIMARY KEY,
    order_id   TEXT NOT NULL,
    seq        INTEGER NOT NULL,
    from_state TEXT,
    to_state   TEXT NOT NULL,
    at_us      INTEGER NOT NULL,
    reason     TEXT,
    actor      TEXT NOT NULL,
    region     TEXT NOT NULL,
    UNIQUE (order_id, seq)
);

-- status: held (order open) | committed (order confirmed) | released (order failed).
CREATE TABLE reservations (
    order_id      TEXT NOT NULL,
    sku           TEXT NOT NULL,
    qty           INTEGER NOT NULL,
    status        TEXT NOT NULL,
    updated_at_us INTEGER NOT NULL,
    PRIMARY KEY (order_id, sku)
);

-- Every call to the provider. op: charge | lookup | void | refund.
-- outcome: authorized | declined | unknown | rejected | conflict | found | not_found | ...
CREATE TABLE payment_attempts (
    id              INTEGER PRIMARY KEY,
    order_id        TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    region          TEXT NOT NULL,
    op              TEXT NOT NULL,
    attempt_no      INTEGER NOT NULL,
    is_retry        INTEGER NOT NULL,
    started_at_us   INTEGER NOT NULL,
    finished_at_us  INTEGER NOT NULL,
    outcome         TEXT NOT NULL,
    http_status     INTEGER,
    detail          TEXT
);
CREATE INDEX payment_attempts_by_order ON payment_attempts (order_id);
CREATE INDEX payment_attempts_by_start ON payment_attempts (started_at_us);

-- The transactional outbox: written in the same transaction as the state change it reports.
CREATE TABLE outbox (
    id                INTEGER PRIMARY KEY,
    event_id          TEXT NOT NULL UNIQUE,
    order_id          TEXT NOT NULL,
    event_type        TEXT NOT NULL,
    payload           TEXT NOT NULL,
    created_at_us     INTEGER NOT NULL,
    published_at_us   INTEGER,
    delivery_attempts INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX outbox_unpublished ON outbox (id) WHERE published_at_us IS NULL;
CREATE INDEX outbox_by_order ON outbox (order_id);

-- The confirmation consumer: one dedup row per (consumer, event), one effect per event.
CREATE TABLE consumer_dedup (
    consumer TEXT NOT NULL,
    event_id TEXT NOT NULL,
    at_us    INTEGER NOT NULL,
    PRIMARY KEY (consumer, event_id)
);
CREATE TABLE fulfilments (
    id       INTEGER PRIMARY KEY,
    consumer TEXT NOT NULL,
    event_id TEXT NOT NULL,
    order_id TEXT NOT NULL,
    at_us    INTEGER NOT NULL
);
CREATE INDEX fulfilments_by_order ON fulfilments (order_id);

CREATE TABLE carts (
    cart_id       TEXT PRIMARY KEY,
    customer_id   TEXT NOT NULL,
    items_json    TEXT NOT NULL,
    version       INTEGER NOT NULL,
    updated_at_us INTEGER NOT NULL
);

-- Run metadata: region, effective parameters, defect switches.
CREATE TABLE run_meta (
    key           TEXT PRIMARY KEY,
    value         TEXT NOT NULL,
    updated_at_us INTEGER NOT NULL
);

-- Every change of the payment mode (normal / paused / degraded), with its time and cause.
CREATE TABLE mode_changes (
    id     INTEGER PRIMARY KEY,
    at_us  INTEGER NOT NULL,
    mode   TEXT NOT NULL,
    reason TEXT NOT NULL,
    actor  TEXT NOT NULL
);
