-- Call history: one row per call, one per participant, one per recording.
--
-- This file runs unchanged on SQLite and PostgreSQL (through sqlx's `Any` driver), so it only
-- uses types and syntax both understand: TEXT ids, BIGINT timestamps in milliseconds since the
-- Unix epoch (UTC), DOUBLE PRECISION measurements, no BOOLEAN (flags are BIGINT 0/1), no
-- dialect-specific defaults. Enumerations are TEXT with CHECK constraints so that a bad value
-- is refused by the database whichever process wrote it.

CREATE TABLE calls (
    id          TEXT PRIMARY KEY NOT NULL,
    kind        TEXT NOT NULL CHECK (kind IN ('voice', 'video')),
    created_by  TEXT NOT NULL,
    ringing_at  BIGINT NOT NULL,
    answered_at BIGINT,
    ended_at    BIGINT,
    -- answered_at → ended_at; NULL for a call that was never answered (or is still live).
    duration_ms BIGINT,
    outcome     TEXT CHECK (outcome IN ('completed', 'missed', 'rejected', 'cancelled', 'failed')),
    -- 1 when the call was still ringing or active when the server stopped, and was closed by
    -- `close_interrupted` on the next start: its ended_at is the restart time, not the real end.
    interrupted BIGINT NOT NULL DEFAULT 0 CHECK (interrupted IN (0, 1)),
    -- A call has an outcome exactly when it has ended.
    CHECK ((ended_at IS NULL) = (outcome IS NULL))
);

-- Newest-first keyset pagination orders by (ringing_at, id).
CREATE INDEX calls_ringing_at_id ON calls (ringing_at, id);
-- `close_interrupted` looks for calls that never ended.
CREATE INDEX calls_ended_at ON calls (ended_at);

CREATE TABLE call_participants (
    call_id         TEXT NOT NULL REFERENCES calls (id) ON DELETE CASCADE,
    user_id         TEXT NOT NULL,
    display_name    TEXT NOT NULL,
    role            TEXT NOT NULL CHECK (role IN ('caller', 'callee')),
    -- 0 for the caller, then the callees in the order they were called.
    position        BIGINT NOT NULL CHECK (position >= 0),
    -- When this participant's media joined / left; NULL if it never did.
    joined_at       BIGINT,
    left_at         BIGINT,
    -- Quality summary over the participant's time in the call, filled in after the fact.
    loss_avg_pct    DOUBLE PRECISION,
    loss_worst_pct  DOUBLE PRECISION,
    jitter_avg_ms   DOUBLE PRECISION,
    jitter_worst_ms DOUBLE PRECISION,
    rtt_avg_ms      DOUBLE PRECISION,
    rtt_worst_ms    DOUBLE PRECISION,
    mos_estimate    DOUBLE PRECISION,
    PRIMARY KEY (call_id, user_id)
);

-- Every read is "the calls this user took part in".
CREATE INDEX call_participants_user ON call_participants (user_id, call_id);

CREATE TABLE recordings (
    id                  TEXT PRIMARY KEY NOT NULL,
    call_id             TEXT NOT NULL REFERENCES calls (id) ON DELETE CASCADE,
    -- Whose media this recording holds.
    participant_user_id TEXT NOT NULL,
    path                TEXT NOT NULL,
    bytes               BIGINT NOT NULL CHECK (bytes >= 0),
    duration_ms         BIGINT NOT NULL CHECK (duration_ms >= 0),
    started_by          TEXT NOT NULL,
    created_at          BIGINT NOT NULL,
    FOREIGN KEY (call_id, participant_user_id)
        REFERENCES call_participants (call_id, user_id) ON DELETE CASCADE
);

CREATE INDEX recordings_call ON recordings (call_id);
