-- The verifier reads a region's provider calls in (started_at_us, id) order: with id in the
-- index the order is the index's, not an index scan re-sorted per instant (SQLite's index
-- already ends in the rowid, which is id).
DROP INDEX IF EXISTS payment_attempts_by_start;
CREATE INDEX payment_attempts_by_start ON payment_attempts (started_at_us, id);
