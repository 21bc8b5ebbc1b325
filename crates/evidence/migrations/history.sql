-- The client history of a checkout run: what every customer was told.
-- Timestamps are wall-clock microseconds since the Unix epoch, like the stores' *_at_us.
-- (SQLite gets INTEGER where this says BIGINT.)
CREATE TABLE IF NOT EXISTS history_arrivals (
    arrival_id     BIGINT PRIMARY KEY,   -- schedule index
    order_id       TEXT NOT NULL,        -- <run_tag>-<arrival_id>, also the Idempotency-Key
    customer_id    TEXT NOT NULL,
    entry_region   TEXT NOT NULL,        -- 'a' or 'b'
    phase          TEXT NOT NULL,        -- the schedule phase's name, e.g. 0-hold
    intended_at_us BIGINT NOT NULL,
    sent_at_us     BIGINT,               -- NULL when no request was sent (dropped)
    finished_at_us BIGINT,
    attempts       BIGINT NOT NULL,      -- checkout POSTs incl. retries and the double-click
    polls          BIGINT NOT NULL,
    last_status    BIGINT,               -- HTTP status of the last answer, NULL if none
    outcome        TEXT NOT NULL,        -- confirmed | failed | rejected | unknown | dropped
    detail         TEXT,                 -- e.g. the failed_safely reason, or the last error
    cart           TEXT,                 -- the items the customer sent: [{"sku","qty"}] (JSON); NULL if it sent nothing
    trace_id       TEXT                  -- the customer's W3C trace id (32 hex), sent in every request's traceparent
);
CREATE INDEX IF NOT EXISTS history_arrivals_by_order ON history_arrivals (order_id);
CREATE INDEX IF NOT EXISTS history_arrivals_by_trace ON history_arrivals (trace_id);
CREATE TABLE IF NOT EXISTS history_requests (
    arrival_id     BIGINT NOT NULL,
    seq            BIGINT NOT NULL,      -- order of sending within the arrival, from 0
    kind           TEXT NOT NULL,        -- checkout | retry | double_click | poll
    region         TEXT NOT NULL,
    sent_at_us     BIGINT NOT NULL,
    finished_at_us BIGINT NOT NULL,
    http_status    BIGINT,               -- NULL = no answer
    answer         TEXT NOT NULL,        -- confirmed | pending | failed | rejected | conflict | invalid | error | timeout | connect_error
    retry_after_ms BIGINT,
    order_id       TEXT NOT NULL,        -- the arrival's order id, so requests merge by order
    request_id     TEXT,                 -- this request's span id (16 hex): the systems' records carry it as their request id
    PRIMARY KEY (arrival_id, seq)
);
CREATE INDEX IF NOT EXISTS history_requests_by_order ON history_requests (order_id, arrival_id, seq);
