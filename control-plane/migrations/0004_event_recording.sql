-- Recording an event to a VOD asset when it ends (issue 11).
--
-- Portable SQL, as in 0001: BIGINT booleans (0/1).

-- 1 (the default): when the event ends after going live, a whole-event asset is made
-- of its archive; 0: it is not ("record": false).
ALTER TABLE events ADD COLUMN record BIGINT NOT NULL DEFAULT 1;
-- 1 from the moment a live event with record = 1 ends (set in the transition's own
-- transaction) until its recording asset and build job are inserted (which clears it in
-- theirs): a durable to-do, so a crash between the two loses nothing.
ALTER TABLE events ADD COLUMN recording_owed BIGINT NOT NULL DEFAULT 0;

CREATE INDEX events_recording_owed ON events (recording_owed);
