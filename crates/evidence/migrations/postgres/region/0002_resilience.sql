-- Text columns use the "C" collation: byte order, as the verifier merges stores (and as
-- SQLite sorts), and indexes usable for keyset paging by order id.
-- Admission decisions per wall-clock second (second_us = the second's start, in microseconds).
CREATE TABLE admission_stats (
    second_us BIGINT NOT NULL,
    decision  TEXT COLLATE "C" NOT NULL,
    count     BIGINT NOT NULL,
    PRIMARY KEY (second_us, decision)
);

-- Intents a gateway could not hand to the order's owner region (partition, owner down):
-- held durably and re-sent (same key) until the owner answers.
-- state: held | delivered | abandoned.
CREATE TABLE forward_outbox (
    order_id           TEXT COLLATE "C" PRIMARY KEY,
    owner_region       TEXT COLLATE "C" NOT NULL,
    fingerprint        TEXT COLLATE "C" NOT NULL,
    body               TEXT COLLATE "C" NOT NULL,
    state              TEXT COLLATE "C" NOT NULL,
    attempts           BIGINT NOT NULL DEFAULT 0,
    created_at_us      BIGINT NOT NULL,
    last_attempt_at_us BIGINT,
    delivered_at_us    BIGINT,
    answer_status      BIGINT,
    answer_body        TEXT COLLATE "C"
);
CREATE INDEX forward_outbox_held ON forward_outbox (created_at_us) WHERE state = 'held';
