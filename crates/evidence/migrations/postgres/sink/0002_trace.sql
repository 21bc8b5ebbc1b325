-- Correlation ids as the relay sent them (traceparent's trace id; x-request-id).
ALTER TABLE sink_deliveries ADD COLUMN trace_id TEXT COLLATE "C";
ALTER TABLE sink_deliveries ADD COLUMN request_id TEXT COLLATE "C";
CREATE INDEX sink_deliveries_by_trace ON sink_deliveries (trace_id);
