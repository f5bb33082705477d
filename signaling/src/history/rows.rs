//! Rows to records: the column lists the store selects and how each row becomes a
//! [`CallRecord`], [`ParticipantRecord`] or [`Recording`]. Kept apart from the queries
//! (`store.rs`) so that a schema change touches one small file.

use sqlx::any::AnyRow;
use sqlx::Row;

use super::types::{
    CallRecord, CallState, HistoryError, Outcome, ParticipantRecord, ParticipantRole,
    QualitySummary, Recording, RecordingId, RecordingState, Timestamp,
};
use crate::{CallId, CallKind, UserId};

pub(super) const CALL_COLUMNS: &str = "c.id, c.kind, c.created_by, c.ringing_at, c.answered_at, \
     c.ended_at, c.duration_ms, c.outcome, c.interrupted";

pub(super) const PARTICIPANT_COLUMNS: &str =
    "call_id, user_id, display_name, role, joined_at, left_at, \
     loss_avg_pct, loss_worst_pct, jitter_avg_ms, jitter_worst_ms, rtt_avg_ms, rtt_worst_ms, \
     mos_estimate";

pub(super) const RECORDING_COLUMNS: &str =
    "r.id, r.call_id, r.participant_user_id, r.path, r.bytes, r.duration_ms, r.started_by, \
     r.created_at, COALESCE(r.started_at, r.created_at - r.duration_ms) AS started_at, r.state, \
     r.session_id";

pub(super) fn kind_to_str(kind: CallKind) -> &'static str {
    match kind {
        CallKind::Voice => "voice",
        CallKind::Video => "video",
    }
}

/// A value the schema's CHECK constraints should have made impossible.
pub(super) fn corrupt(what: String) -> HistoryError {
    HistoryError::Database(sqlx::Error::Decode(what.into()))
}

pub(super) fn opt_ts(row: &AnyRow, column: &str) -> Result<Option<Timestamp>, HistoryError> {
    Ok(row
        .try_get::<Option<i64>, _>(column)?
        .map(Timestamp::from_millis))
}

pub(super) fn call_from_row(row: &AnyRow) -> Result<CallRecord, HistoryError> {
    let id = CallId::new(row.try_get::<String, _>("id")?);
    let kind = match row.try_get::<String, _>("kind")?.as_str() {
        "voice" => CallKind::Voice,
        "video" => CallKind::Video,
        other => return Err(corrupt(format!("call {id}: unknown kind {other:?}"))),
    };
    let outcome = row
        .try_get::<Option<String>, _>("outcome")?
        .map(|o| {
            o.parse::<Outcome>()
                .map_err(|e| corrupt(format!("call {id}: {e}")))
        })
        .transpose()?;
    let answered_at = opt_ts(row, "answered_at")?;
    let ended_at = opt_ts(row, "ended_at")?;
    let state = match (answered_at, ended_at) {
        (_, Some(_)) => CallState::Ended,
        (Some(_), None) => CallState::Active,
        (None, None) => CallState::Ringing,
    };
    Ok(CallRecord {
        kind,
        created_by: UserId::new(row.try_get::<String, _>("created_by")?),
        state,
        ringing_at: Timestamp::from_millis(row.try_get("ringing_at")?),
        answered_at,
        ended_at,
        duration_ms: row.try_get("duration_ms")?,
        outcome,
        interrupted: row.try_get::<i64, _>("interrupted")? != 0,
        participants: Vec::new(),
        recordings: Vec::new(),
        id,
    })
}

pub(super) fn participant_from_row(row: &AnyRow) -> Result<ParticipantRecord, HistoryError> {
    let user_id = UserId::new(row.try_get::<String, _>("user_id")?);
    let role = match row.try_get::<String, _>("role")?.as_str() {
        "caller" => ParticipantRole::Caller,
        "callee" => ParticipantRole::Callee,
        other => return Err(corrupt(format!("participant {user_id}: role {other:?}"))),
    };
    let quality = QualitySummary {
        loss_avg_pct: row.try_get("loss_avg_pct")?,
        loss_worst_pct: row.try_get("loss_worst_pct")?,
        jitter_avg_ms: row.try_get("jitter_avg_ms")?,
        jitter_worst_ms: row.try_get("jitter_worst_ms")?,
        rtt_avg_ms: row.try_get("rtt_avg_ms")?,
        rtt_worst_ms: row.try_get("rtt_worst_ms")?,
        mos: row.try_get("mos_estimate")?,
    };
    Ok(ParticipantRecord {
        name: row.try_get("display_name")?,
        role,
        joined_at: opt_ts(row, "joined_at")?,
        left_at: opt_ts(row, "left_at")?,
        quality: (!quality.is_empty()).then_some(quality),
        user_id,
    })
}

pub(super) fn recording_from_row(row: &AnyRow) -> Result<Recording, HistoryError> {
    let id = RecordingId::new(row.try_get::<String, _>("id")?);
    let unsigned = |column: &str| -> Result<u64, HistoryError> {
        let value: i64 = row.try_get(column)?;
        u64::try_from(value).map_err(|_| corrupt(format!("recording {id}: negative {column}")))
    };
    Ok(Recording {
        call_id: CallId::new(row.try_get::<String, _>("call_id")?),
        participant: UserId::new(row.try_get::<String, _>("participant_user_id")?),
        path: row.try_get("path")?,
        bytes: unsigned("bytes")?,
        duration_ms: unsigned("duration_ms")?,
        started_by: UserId::new(row.try_get::<String, _>("started_by")?),
        created_at: Timestamp::from_millis(row.try_get("created_at")?),
        started_at: Timestamp::from_millis(row.try_get("started_at")?),
        state: {
            let state: String = row.try_get("state")?;
            RecordingState::parse(&state)
                .ok_or_else(|| corrupt(format!("recording {id}: state {state:?}")))?
        },
        session_id: row.try_get("session_id")?,
        id,
    })
}
