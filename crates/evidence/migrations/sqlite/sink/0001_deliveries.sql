-- The event sink's delivery log, written by the rig, never by the system under test: every
-- confirmation event a region's outbox relay delivered, with the sink's own clock reading.
-- caller is told by the listener the delivery arrived on (one per region, each reached
-- through that region's proxy). Timestamps are wall-clock microseconds since the Unix epoch.
-- outcome: accepted (first delivery of the event id) | duplicate (a redelivery, answered
-- 200 like a consumer that deduplicates) | injected_error | outage | invalid.
CREATE TABLE sink_deliveries (
    id             INTEGER PRIMARY KEY,
    event_id       TEXT,
    order_id       TEXT,
    event_type     TEXT,
    version        INTEGER,
    caller         TEXT,
    received_at_us INTEGER NOT NULL,
    http_status    INTEGER NOT NULL,
    outcome        TEXT NOT NULL
);
CREATE INDEX sink_deliveries_by_event ON sink_deliveries (event_id);
CREATE INDEX sink_deliveries_by_order ON sink_deliveries (order_id, received_at_us);

-- Every change of the active fault set (latency, errors, outage), so fault windows are
-- evidence too.
CREATE TABLE sink_fault_changes (
    id          INTEGER PRIMARY KEY,
    at_us       INTEGER NOT NULL,
    faults_json TEXT NOT NULL
);
