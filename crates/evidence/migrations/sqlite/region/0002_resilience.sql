-- Admission decisions per wall-clock second (second_us = the second's start, in microseconds).
CREATE TABLE admission_stats (
    second_us INTEGER NOT NULL,
    decision  TEXT NOT NULL,
    count     INTEGER NOT NULL,
    PRIMARY KEY (second_us, decision)
);

-- Intents a gateway could not hand to the order's owner region (partition, owner down):
-- held durably and re-sent (same key) until the owner answers.
-- state: held | delivered | abandoned.
CREATE TABLE forward_outbox (
    order_id           TEXT PRIMARY KEY,
    owner_region       TEXT NOT NULL,
    fingerprint        TEXT NOT NULL,
    body               TEXT NOT NULL,
    state              TEXT NOT NULL,
    attempts           INTEGER NOT NULL DEFAULT 0,
    created_at_us      INTEGER NOT NULL,
    last_attempt_at_us INTEGER,
    delivered_at_us    INTEGER,
    answer_status      INTEGER,
    answer_body        TEXT
);
CREATE INDEX forward_outbox_held ON forward_outbox (created_at_us) WHERE state = 'held';
