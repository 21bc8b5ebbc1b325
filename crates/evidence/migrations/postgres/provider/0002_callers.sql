-- Who sent each request, told by the listener it arrived on (one per caller, each reached
-- through that caller's proxy), never by anything the caller sends. NULL: the provider's
-- own listener (operators, tests, an unattributed caller).
ALTER TABLE provider_requests ADD COLUMN caller TEXT COLLATE "C";
-- When the caller went away before its answer was sent (it timed out or its connection
-- broke), if it did: from the caller's side the call ended then, even if the provider went
-- on processing it.
ALTER TABLE provider_requests ADD COLUMN abandoned_at_us BIGINT;
CREATE INDEX provider_requests_by_caller ON provider_requests (caller, received_at_us);
