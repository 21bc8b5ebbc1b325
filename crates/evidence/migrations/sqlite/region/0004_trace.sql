-- Correlation ids (W3C trace id, 32 hex; the customer's request id): every record written
-- while serving a request carries the ones it came with; work of the system's own (repair,
-- relay, an operator's decision) carries the order's trace and a request id of its own.
-- Correlation, never evidence: the verifier judges nothing from them. NULL: written by a
-- version without them, or by a caller that sent none.
ALTER TABLE orders ADD COLUMN trace_id TEXT;
CREATE INDEX orders_by_trace ON orders (trace_id);
ALTER TABLE order_transitions ADD COLUMN trace_id TEXT;
ALTER TABLE order_transitions ADD COLUMN request_id TEXT;
ALTER TABLE payment_attempts ADD COLUMN trace_id TEXT;
ALTER TABLE payment_attempts ADD COLUMN request_id TEXT;
ALTER TABLE outbox ADD COLUMN trace_id TEXT;
ALTER TABLE outbox ADD COLUMN request_id TEXT;
ALTER TABLE forward_outbox ADD COLUMN trace_id TEXT;
ALTER TABLE forward_outbox ADD COLUMN request_id TEXT;
ALTER TABLE operator_decisions ADD COLUMN trace_id TEXT;
ALTER TABLE operator_decisions ADD COLUMN request_id TEXT;
