-- Manual repairs: one row per operator decision on an order (POST /admin/orders/{id}/resolve),
-- applied or refused, with the provider's record it relied on. An applied decision is
-- written in the transaction of its transition (actor 'operator').
-- decision: confirm | fail. outcome: applied | refused.
CREATE TABLE operator_decisions (
    id           INTEGER PRIMARY KEY,
    order_id     TEXT NOT NULL,
    operator     TEXT NOT NULL,
    decision     TEXT NOT NULL,
    note         TEXT NOT NULL,
    outcome      TEXT NOT NULL,
    from_state   TEXT,
    provider_ref TEXT,
    detail       TEXT,
    at_us        INTEGER NOT NULL
);
CREATE INDEX operator_decisions_by_order ON operator_decisions (order_id);
