-- Manual repairs: one row per operator decision on an order (POST /admin/orders/{id}/resolve),
-- applied or refused, with the provider's record it relied on. An applied decision is
-- written in the transaction of its transition (actor 'operator').
-- decision: confirm | fail. outcome: applied | refused.
CREATE TABLE operator_decisions (
    id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    order_id     TEXT COLLATE "C" NOT NULL,
    operator     TEXT COLLATE "C" NOT NULL,
    decision     TEXT COLLATE "C" NOT NULL,
    note         TEXT COLLATE "C" NOT NULL,
    outcome      TEXT COLLATE "C" NOT NULL,
    from_state   TEXT COLLATE "C",
    provider_ref TEXT COLLATE "C",
    detail       TEXT COLLATE "C",
    at_us        BIGINT NOT NULL
);
CREATE INDEX operator_decisions_by_order ON operator_decisions (order_id);
