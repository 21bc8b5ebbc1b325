-- The verifier walks the provider's log in (received_at_us, id) order: with id in the index
-- the order is the index's, not an index scan re-sorted per instant (SQLite's index already
-- ends in the rowid, which is id).
DROP INDEX IF EXISTS provider_requests_by_received;
CREATE INDEX provider_requests_by_received ON provider_requests (received_at_us, id);
