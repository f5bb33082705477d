//! The history's vocabulary: configuration, errors, timestamps, outcomes and the records read
//! back. Nothing here touches the database.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::{CallId, CallKind, EndReason, UserId};

/// Where the history lives.
#[derive(Clone, PartialEq, Eq)]
pub struct HistoryConfig {
    /// `sqlite://<path>?mode=rwc` (the file is created when missing) or
    /// `postgres://user:password@host/database` (the database must exist; its tables are
    /// created by the migrations).
    pub database_url: String,
}

impl HistoryConfig {
    /// The default: a SQLite file in the working directory, created on first start.
    pub const DEFAULT_DATABASE_URL: &'static str = "sqlite://switchboard.sqlite?mode=rwc";

    pub fn validate(&self) -> Result<(), HistoryError> {
        let url = self.database_url.trim();
        if url.starts_with("sqlite:")
            || url.starts_with("postgres://")
            || url.starts_with("postgresql://")
        {
            Ok(())
        } else {
            Err(HistoryError::InvalidConfig(
                "database_url must start with sqlite:, postgres:// or postgresql://".into(),
            ))
        }
    }
}

impl Default for HistoryConfig {
    fn default() -> Self {
        Self {
            database_url: Self::DEFAULT_DATABASE_URL.to_owned(),
        }
    }
}

impl fmt::Debug for HistoryConfig {
    // Hand-written so a PostgreSQL password never ends up in logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HistoryConfig")
            .field("database_url", &redact_url(&self.database_url))
            .finish()
    }
}

/// `scheme://user:secret@host/...` → `scheme://user:<redacted>@host/...`.
fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some((userinfo, host)) = rest.split_once('@') else {
        return url.to_owned();
    };
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:<redacted>@{host}"),
        None => url.to_owned(),
    }
}

/// Everything the history can refuse or fail at. The caller-facing variants (all but
/// `Database`, `Migrate` and `InvalidConfig`) mean the caller reported something that does not
/// fit the recorded call, which is a wiring bug worth logging, not a reason to end the call.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("invalid history configuration: {0}")]
    InvalidConfig(String),
    #[error("history database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("history migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("no call {0} in the history")]
    UnknownCall(CallId),
    #[error("call {0} is already in the history")]
    CallExists(CallId),
    #[error("call {0} has already ended")]
    CallEnded(CallId),
    #[error("{user_id} is not a participant of call {call_id}")]
    NotAParticipant { call_id: CallId, user_id: UserId },
    #[error("invalid participants: {0}")]
    InvalidParticipants(&'static str),
    #[error("outcome {outcome} does not fit call {call_id} (answered: {answered})")]
    OutcomeMismatch {
        call_id: CallId,
        outcome: Outcome,
        answered: bool,
    },
    #[error("invalid quality summary: {0}")]
    InvalidQuality(&'static str),
    #[error("limit must be between 1 and {max}, got {0}", max = ListQuery::MAX_LIMIT)]
    InvalidLimit(u32),
    #[error("recording {0} is already in the history")]
    RecordingExists(RecordingId),
    #[error("invalid recording: {0}")]
    InvalidRecording(&'static str),
}

/// A moment, in milliseconds since the Unix epoch (UTC). Stored as BIGINT, shown in JSON as a
/// plain integer: both databases and every client understand it without a date library.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(i64);

impl Timestamp {
    pub const fn from_millis(millis: i64) -> Self {
        Self(millis)
    }

    pub const fn as_millis(self) -> i64 {
        self.0
    }

    pub fn now() -> Self {
        Self::from(SystemTime::now())
    }

    /// Milliseconds from `earlier` to `self`, zero if `earlier` is later (clock steps must not
    /// produce negative durations).
    pub fn millis_since(self, earlier: Timestamp) -> i64 {
        self.0.saturating_sub(earlier.0).max(0)
    }
}

impl From<SystemTime> for Timestamp {
    fn from(time: SystemTime) -> Self {
        let millis = match time.duration_since(UNIX_EPOCH) {
            Ok(after) => i64::try_from(after.as_millis()).unwrap_or(i64::MAX),
            Err(before) => i64::try_from(before.duration().as_millis())
                .map(|m| -m)
                .unwrap_or(i64::MIN),
        };
        Self(millis)
    }
}

impl From<Timestamp> for SystemTime {
    fn from(ts: Timestamp) -> Self {
        if ts.0 >= 0 {
            UNIX_EPOCH + Duration::from_millis(ts.0 as u64)
        } else {
            UNIX_EPOCH - Duration::from_millis(ts.0.unsigned_abs())
        }
    }
}

/// How a call turned out, from the point of view of the call as a whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Answered, then ended normally (hang-up, disconnect, server shutdown…).
    Completed,
    /// Rang until the ring timeout; nobody answered.
    Missed,
    /// The callee declined.
    Rejected,
    /// The caller gave up while it was ringing.
    Cancelled,
    /// Media could not be established or broke, or the call was cut short while still
    /// ringing by something other than the people in it (e.g. a server restart).
    Failed,
}

impl Outcome {
    pub const ALL: [Outcome; 5] = [
        Outcome::Completed,
        Outcome::Missed,
        Outcome::Rejected,
        Outcome::Cancelled,
        Outcome::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Completed => "completed",
            Outcome::Missed => "missed",
            Outcome::Rejected => "rejected",
            Outcome::Cancelled => "cancelled",
            Outcome::Failed => "failed",
        }
    }

    /// The outcome of a call that signaling ended with `reason`; `answered` says whether the
    /// call had been accepted. The one mapping to use when wiring `call_ended`, so every
    /// caller classifies calls the same way:
    ///
    /// | reason | answered | not answered |
    /// |---|---|---|
    /// | `hangup`, `disconnected` | completed | cancelled (someone left before it was answered) |
    /// | `shutdown` | completed | failed (matches [`HistoryStore::close_interrupted`]) |
    /// | `media_unavailable`, `failed` | failed | failed |
    /// | `rejected` | — | rejected |
    /// | `cancelled` | — | cancelled |
    /// | `no_answer` | — | missed |
    ///
    /// A `rejected`, `cancelled` or `no_answer` call is never answered; should one be, it
    /// maps to `completed` rather than to an outcome the store would refuse.
    ///
    /// [`HistoryStore::close_interrupted`]: super::HistoryStore::close_interrupted
    pub fn from_end_reason(reason: EndReason, answered: bool) -> Outcome {
        match (reason, answered) {
            (EndReason::Failed | EndReason::MediaUnavailable, _) => Outcome::Failed,
            (_, true) => Outcome::Completed,
            (EndReason::Rejected, false) => Outcome::Rejected,
            (EndReason::NoAnswer, false) => Outcome::Missed,
            (EndReason::Shutdown, false) => Outcome::Failed,
            (EndReason::Cancelled | EndReason::Hangup | EndReason::Disconnected, false) => {
                Outcome::Cancelled
            }
        }
    }

    /// Whether a call with this outcome may (`Some(true)`), must not (`Some(false)`), or
    /// either way (`None`) have been answered.
    pub(crate) fn requires_answered(self) -> Option<bool> {
        match self {
            Outcome::Completed => Some(true),
            Outcome::Missed | Outcome::Rejected | Outcome::Cancelled => Some(false),
            Outcome::Failed => None,
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Outcome {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Outcome::ALL
            .into_iter()
            .find(|o| o.as_str() == s)
            .ok_or_else(|| {
                format!("unknown outcome {s:?}; expected one of completed, missed, rejected, cancelled, failed")
            })
    }
}

/// Where a recorded call is now, derived from its timestamps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CallState {
    Ringing,
    Active,
    Ended,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ParticipantRole {
    Caller,
    Callee,
}

impl ParticipantRole {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            ParticipantRole::Caller => "caller",
            ParticipantRole::Callee => "callee",
        }
    }
}

/// One participant's media quality over the call, as measured by the SFU. Every field is
/// optional: a participant whose media never flowed has nothing to report, and the summary is
/// written after the call (or not at all).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct QualitySummary {
    /// Packet loss, percent (0–100).
    pub loss_avg_pct: Option<f64>,
    pub loss_worst_pct: Option<f64>,
    /// Interarrival jitter, milliseconds.
    pub jitter_avg_ms: Option<f64>,
    pub jitter_worst_ms: Option<f64>,
    /// Round-trip time, milliseconds.
    pub rtt_avg_ms: Option<f64>,
    pub rtt_worst_ms: Option<f64>,
    /// Estimated mean opinion score (1–5, E-model style).
    pub mos: Option<f64>,
}

impl QualitySummary {
    pub fn is_empty(&self) -> bool {
        *self == QualitySummary::default()
    }

    /// Refuses values no measurement can produce, so a bug upstream cannot fill the history
    /// with NaNs or negative latencies.
    pub fn validate(&self) -> Result<(), HistoryError> {
        fn check(v: Option<f64>, lo: f64, hi: f64, what: &'static str) -> Result<(), HistoryError> {
            match v {
                Some(v) if !(v.is_finite() && (lo..=hi).contains(&v)) => {
                    Err(HistoryError::InvalidQuality(what))
                }
                _ => Ok(()),
            }
        }
        const LOSS: &str = "loss must be a percentage between 0 and 100";
        const TIME: &str = "jitter and RTT must be finite and non-negative";
        check(self.loss_avg_pct, 0.0, 100.0, LOSS)?;
        check(self.loss_worst_pct, 0.0, 100.0, LOSS)?;
        check(self.jitter_avg_ms, 0.0, f64::MAX, TIME)?;
        check(self.jitter_worst_ms, 0.0, f64::MAX, TIME)?;
        check(self.rtt_avg_ms, 0.0, f64::MAX, TIME)?;
        check(self.rtt_worst_ms, 0.0, f64::MAX, TIME)?;
        check(self.mos, 1.0, 5.0, "MOS must be between 1 and 5")
    }
}

/// One participant of a recorded call.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ParticipantRecord {
    pub user_id: UserId,
    /// The display name they had during the call (names are not stable across sessions).
    pub name: String,
    pub role: ParticipantRole,
    pub joined_at: Option<Timestamp>,
    pub left_at: Option<Timestamp>,
    /// `None` until a summary has been recorded.
    pub quality: Option<QualitySummary>,
}

/// A recording id. Opaque, like every id in Switchboard.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RecordingId(Arc<str>);

impl RecordingId {
    pub fn new(id: impl AsRef<str>) -> Self {
        Self(Arc::from(id.as_ref()))
    }

    /// A fresh random (v4 UUID) id.
    pub fn random() -> Self {
        Self::new(uuid::Uuid::new_v4().to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RecordingId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for RecordingId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RecordingId({})", self.0)
    }
}

/// A recording file of one participant's media in one call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Recording {
    pub id: RecordingId,
    pub call_id: CallId,
    /// Whose media the recording holds. Must be a participant of the call.
    pub participant: UserId,
    /// Where the file is on the server. Never serialized: clients get recordings through the
    /// recordings endpoint, not through server paths.
    #[serde(skip_serializing)]
    pub path: String,
    pub bytes: u64,
    pub duration_ms: u64,
    pub started_by: UserId,
    /// When the file was finished (`finished`), found interrupted (`interrupted`), or
    /// started (`recording`).
    pub created_at: Timestamp,
    /// When the file started.
    pub started_at: Timestamp,
    pub state: RecordingState,
    /// The recording run (one `start_recording`) this file belongs to; `None` for files
    /// recorded before sessions existed.
    #[serde(skip_serializing)]
    pub session_id: Option<String>,
}

/// Where a recording file is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordingState {
    /// Being written; not downloadable yet.
    Recording,
    /// Complete and finalised.
    Finished,
    /// The server stopped without finishing it (crash, kill): the file is playable up to
    /// about its last cluster, its duration and size are what was on disk.
    Interrupted,
}

impl RecordingState {
    pub fn as_str(self) -> &'static str {
        match self {
            RecordingState::Recording => "recording",
            RecordingState::Finished => "finished",
            RecordingState::Interrupted => "interrupted",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "recording" => Some(RecordingState::Recording),
            "finished" => Some(RecordingState::Finished),
            "interrupted" => Some(RecordingState::Interrupted),
            _ => None,
        }
    }
}

/// What [`HistoryStore::add_recording`](super::HistoryStore::add_recording) stores.
pub type NewRecording = Recording;

/// A call as the history knows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CallRecord {
    pub id: CallId,
    pub kind: CallKind,
    pub created_by: UserId,
    pub state: CallState,
    pub ringing_at: Timestamp,
    pub answered_at: Option<Timestamp>,
    pub ended_at: Option<Timestamp>,
    /// Answered → ended, in milliseconds; `None` if never answered or not yet ended.
    pub duration_ms: Option<i64>,
    /// `None` while the call is live.
    pub outcome: Option<Outcome>,
    /// The server stopped while this call was live; it was closed on the next start, so
    /// `ended_at` (and `duration_ms`) are upper bounds.
    pub interrupted: bool,
    /// The caller first, then the callees in the order they were called.
    pub participants: Vec<ParticipantRecord>,
    /// Oldest first.
    pub recordings: Vec<Recording>,
}

/// Where a page of a user's calls starts: strictly older than this call. Keyset pagination
/// (rather than page numbers) so that calls placed while someone pages do not shift rows
/// between pages, which would show one call twice or skip one.
///
/// On the wire it is an opaque string (`"<ringing_at>.<call id>"` today).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub(crate) ringing_at: Timestamp,
    pub(crate) call_id: CallId,
}

impl Cursor {
    /// The cursor that continues after `call`.
    pub fn after(call: &CallRecord) -> Self {
        Self {
            ringing_at: call.ringing_at,
            call_id: call.id.clone(),
        }
    }
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.ringing_at.as_millis(), self.call_id)
    }
}

/// A `before` cursor that this server did not produce.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed cursor")]
pub struct CursorError;

impl FromStr for Cursor {
    type Err = CursorError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (millis, id) = s.split_once('.').ok_or(CursorError)?;
        if id.is_empty() || millis.is_empty() || !millis.bytes().all(|b| b.is_ascii_digit()) {
            return Err(CursorError);
        }
        let millis = millis.parse::<i64>().map_err(|_| CursorError)?;
        Ok(Cursor {
            ringing_at: Timestamp::from_millis(millis),
            call_id: CallId::new(id),
        })
    }
}

impl Serialize for Cursor {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// Which of a user's calls to list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListQuery {
    /// 1..=[`ListQuery::MAX_LIMIT`].
    pub limit: u32,
    /// Only calls older than this (the previous page's `next_cursor`).
    pub before: Option<Cursor>,
    /// Only calls that ended with this outcome.
    pub outcome: Option<Outcome>,
}

impl ListQuery {
    pub const DEFAULT_LIMIT: u32 = 20;
    pub const MAX_LIMIT: u32 = 100;
}

impl Default for ListQuery {
    fn default() -> Self {
        Self {
            limit: Self::DEFAULT_LIMIT,
            before: None,
            outcome: None,
        }
    }
}

/// One page of a user's calls, newest first.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Page {
    pub calls: Vec<CallRecord>,
    /// Pass as `before` to get the next page; `None` on the last page.
    pub next_cursor: Option<Cursor>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        let cursor = Cursor {
            ringing_at: Timestamp::from_millis(1_700_000_000_123),
            call_id: CallId::new("a.b-c"),
        };
        assert_eq!(cursor.to_string().parse::<Cursor>().unwrap(), cursor);
        for bad in [
            "",
            ".",
            "12",
            "12.",
            ".abc",
            "-1.abc",
            "x1.abc",
            "99999999999999999999.a",
        ] {
            assert_eq!(bad.parse::<Cursor>(), Err(CursorError), "{bad:?}");
        }
    }

    #[test]
    fn end_reasons_map_to_outcomes_the_store_accepts() {
        let reasons = [
            EndReason::Hangup,
            EndReason::Rejected,
            EndReason::Cancelled,
            EndReason::NoAnswer,
            EndReason::Disconnected,
            EndReason::MediaUnavailable,
            EndReason::Failed,
            EndReason::Shutdown,
        ];
        for reason in reasons {
            for answered in [false, true] {
                let outcome = Outcome::from_end_reason(reason, answered);
                if let Some(required) = outcome.requires_answered() {
                    assert_eq!(required, answered, "{reason:?} answered={answered}");
                }
            }
        }
        assert_eq!(
            Outcome::from_end_reason(EndReason::NoAnswer, false),
            Outcome::Missed
        );
        assert_eq!(
            Outcome::from_end_reason(EndReason::Hangup, true),
            Outcome::Completed
        );
    }

    #[test]
    fn quality_is_range_checked() {
        assert!(QualitySummary::default().validate().is_ok());
        let ok = QualitySummary {
            loss_avg_pct: Some(0.5),
            loss_worst_pct: Some(100.0),
            jitter_avg_ms: Some(3.0),
            jitter_worst_ms: Some(30.0),
            rtt_avg_ms: Some(40.0),
            rtt_worst_ms: Some(120.0),
            mos: Some(4.2),
        };
        assert!(ok.validate().is_ok());
        for bad in [
            QualitySummary {
                loss_avg_pct: Some(101.0),
                ..ok
            },
            QualitySummary {
                jitter_avg_ms: Some(-1.0),
                ..ok
            },
            QualitySummary {
                rtt_worst_ms: Some(f64::NAN),
                ..ok
            },
            QualitySummary {
                mos: Some(0.5),
                ..ok
            },
        ] {
            assert!(bad.validate().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn config_debug_hides_passwords() {
        let config = HistoryConfig {
            database_url: "postgres://sb:hunter2@db/switchboard".into(),
        };
        let shown = format!("{config:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(config.validate().is_ok());
        assert!(HistoryConfig::default().validate().is_ok());
        assert!(HistoryConfig {
            database_url: "mysql://x".into()
        }
        .validate()
        .is_err());
    }
}
