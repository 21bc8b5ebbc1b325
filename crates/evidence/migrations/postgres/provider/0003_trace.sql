-- Correlation ids as the caller sent them (traceparent's trace id; x-request-id, else the
-- caller's span id). A caller chooses them, so they join records for reading and never
-- attribute a request: the listener does that (caller).
ALTER TABLE provider_requests ADD COLUMN trace_id TEXT COLLATE "C";
ALTER TABLE provider_requests ADD COLUMN request_id TEXT COLLATE "C";
CREATE INDEX provider_requests_by_trace ON provider_requests (trace_id);
