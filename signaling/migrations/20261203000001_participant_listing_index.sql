-- "The calls of one user, newest first" (security review finding 15) without sorting all of
-- that user's calls: each participant row carries its call's ringing_at, and one index
-- serves the filter, the order and the keyset cursor. Portable to SQLite and PostgreSQL.

ALTER TABLE call_participants ADD COLUMN ringing_at BIGINT;
UPDATE call_participants
   SET ringing_at = (SELECT c.ringing_at FROM calls c WHERE c.id = call_participants.call_id);
CREATE INDEX call_participants_user_ringing ON call_participants (user_id, ringing_at, call_id);
