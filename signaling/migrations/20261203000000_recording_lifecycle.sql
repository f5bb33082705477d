-- Recording lifecycle (security review findings 7, 14, 28), portable to SQLite and PostgreSQL.
--
-- A recording row is now written when its file is *started* (state 'recording') and finalised
-- when the file is finished ('finished'). A row still 'recording' when the server starts again
-- belongs to a run that crashed: reconciliation marks it 'interrupted' (see docs/history.md).
-- `started_at` is when the file started (rows from before this migration: their finish time
-- minus their duration), so access can require the viewer to have been in the call during
-- the recording. `session_id` names one start_recording..stop run (who started it is exact,
-- even when another run starts before the files of the previous one finish).

ALTER TABLE recordings ADD COLUMN started_at BIGINT;
UPDATE recordings SET started_at = created_at - duration_ms;
ALTER TABLE recordings ADD COLUMN state TEXT NOT NULL DEFAULT 'finished'
    CHECK (state IN ('recording', 'finished', 'interrupted'));
ALTER TABLE recordings ADD COLUMN session_id TEXT;

-- Reconciliation looks for rows left 'recording'; retention for the oldest rows.
CREATE INDEX recordings_state ON recordings (state);
CREATE INDEX recordings_created_at ON recordings (created_at);
CREATE INDEX recordings_path ON recordings (path);
-- Per-user quota: bytes of recordings someone started.
CREATE INDEX recordings_started_by ON recordings (started_by);
