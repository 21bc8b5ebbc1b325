-- Text columns use the "C" collation: byte order, as the verifier merges stores (and as
-- SQLite sorts), and indexes usable for keyset paging by order id.
-- A region's durable records: orders and their transitions, inventory and reservations,
-- payment attempts, the transactional outbox and its consumer, carts, run metadata.
-- Timestamps are wall-clock microseconds since the Unix epoch.

-- stock: initial units; reserved: units held for open orders or sold to confirmed ones.
CREATE TABLE inventory (
    sku         TEXT COLLATE "C" PRIMARY KEY,
    price_cents BIGINT NOT NULL,
    stock       BIGINT NOT NULL,
    reserved    BIGINT NOT NULL DEFAULT 0 CHECK (reserved >= 0)
);

-- One row per order this region owns; status is the state machine's current state and
-- version counts its transitions.
CREATE TABLE orders (
    order_id      TEXT COLLATE "C" PRIMARY KEY,
    customer_id   TEXT COLLATE "C" NOT NULL,
    owner_region  TEXT COLLATE "C" NOT NULL,
    entry_region  TEXT COLLATE "C" NOT NULL,
    fingerprint   TEXT COLLATE "C" NOT NULL,
    items_json    TEXT COLLATE "C" NOT NULL,
    amount_cents  BIGINT NOT NULL,
    currency      TEXT COLLATE "C" NOT NULL,
    status        TEXT COLLATE "C" NOT NULL,
    reason        TEXT COLLATE "C",
    version       BIGINT NOT NULL,
    created_at_us BIGINT NOT NULL,
    updated_at_us BIGINT NOT NULL
);
CREATE INDEX orders_by_status ON orders (status, updated_at_us);

-- Every transition, seq = the order's version after it. from_state is NULL for the first.
CREATE TABLE order_transitions (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    order_id   TEXT COLLATE "C" NOT NULL,
    seq        BIGINT NOT NULL,
    from_state TEXT COLLATE "C",
    to_state   TEXT COLLATE "C" NOT NULL,
    at_us      BIGINT NOT NULL,
    reason     TEXT COLLATE "C",
    actor      TEXT COLLATE "C" NOT NULL,
    region     TEXT COLLATE "C" NOT NULL,
    UNIQUE (order_id, seq)
);

-- status: held (order open) | committed (order confirmed) | released (order failed).
CREATE TABLE reservations (
    order_id      TEXT COLLATE "C" NOT NULL,
    sku           TEXT COLLATE "C" NOT NULL,
    qty           BIGINT NOT NULL,
    status        TEXT COLLATE "C" NOT NULL,
    updated_at_us BIGINT NOT NULL,
    PRIMARY KEY (order_id, sku)
);

-- Every call to the provider. op: charge | lookup | void | refund.
-- outcome: authorized | declined | unknown | rejected | conflict | found | not_found | ...
CREATE TABLE payment_attempts (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    order_id        TEXT COLLATE "C" NOT NULL,
    idempotency_key TEXT COLLATE "C" NOT NULL,
    region          TEXT COLLATE "C" NOT NULL,
    op              TEXT COLLATE "C" NOT NULL,
    attempt_no      BIGINT NOT NULL,
    is_retry        BIGINT NOT NULL,
    started_at_us   BIGINT NOT NULL,
    finished_at_us  BIGINT NOT NULL,
    outcome         TEXT COLLATE "C" NOT NULL,
    http_status     BIGINT,
    detail          TEXT COLLATE "C"
);
CREATE INDEX payment_attempts_by_order ON payment_attempts (order_id);
CREATE INDEX payment_attempts_by_start ON payment_attempts (started_at_us);

-- The transactional outbox: written in the same transaction as the state change it reports.
CREATE TABLE outbox (
    id                BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id          TEXT COLLATE "C" NOT NULL UNIQUE,
    order_id          TEXT COLLATE "C" NOT NULL,
    event_type        TEXT COLLATE "C" NOT NULL,
    payload           TEXT COLLATE "C" NOT NULL,
    created_at_us     BIGINT NOT NULL,
    published_at_us   BIGINT,
    delivery_attempts BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX outbox_unpublished ON outbox (id) WHERE published_at_us IS NULL;
CREATE INDEX outbox_by_order ON outbox (order_id);

-- The confirmation consumer: one dedup row per (consumer, event), one effect per event.
CREATE TABLE consumer_dedup (
    consumer TEXT COLLATE "C" NOT NULL,
    event_id TEXT COLLATE "C" NOT NULL,
    at_us    BIGINT NOT NULL,
    PRIMARY KEY (consumer, event_id)
);
CREATE TABLE fulfilments (
    id       BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    consumer TEXT COLLATE "C" NOT NULL,
    event_id TEXT COLLATE "C" NOT NULL,
    order_id TEXT COLLATE "C" NOT NULL,
    at_us    BIGINT NOT NULL
);
CREATE INDEX fulfilments_by_order ON fulfilments (order_id);

CREATE TABLE carts (
    cart_id       TEXT COLLATE "C" PRIMARY KEY,
    customer_id   TEXT COLLATE "C" NOT NULL,
    items_json    TEXT COLLATE "C" NOT NULL,
    version       BIGINT NOT NULL,
    updated_at_us BIGINT NOT NULL
);

-- Run metadata: region, effective parameters, defect switches.
CREATE TABLE run_meta (
    key           TEXT COLLATE "C" PRIMARY KEY,
    value         TEXT COLLATE "C" NOT NULL,
    updated_at_us BIGINT NOT NULL
);

-- Every change of the payment mode (normal / paused / degraded), with its time and cause.
CREATE TABLE mode_changes (
    id     BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at_us  BIGINT NOT NULL,
    mode   TEXT COLLATE "C" NOT NULL,
    reason TEXT COLLATE "C" NOT NULL,
    actor  TEXT COLLATE "C" NOT NULL
);
