-- When a live event's publisher was last seen on air by the reconciler (Unix
-- microseconds), refreshed every few seconds. After a crash nobody reported the publisher
-- leaving; its reconnect grace then counts from this time, not from the restart.
ALTER TABLE events ADD COLUMN publisher_seen_at BIGINT;
