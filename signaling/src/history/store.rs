//! [`HistoryStore`]: the SQL behind the call history.

use std::collections::HashMap;
use std::path::Path;

use sqlx::any::AnyPoolOptions;
use sqlx::migrate::Migrator;
use sqlx::{AnyPool, Row};

use super::rows::{
    call_from_row, kind_to_str, participant_from_row, recording_from_row, CALL_COLUMNS,
    PARTICIPANT_COLUMNS, RECORDING_COLUMNS,
};
use super::types::{
    CallRecord, Cursor, HistoryConfig, HistoryError, ListQuery, Outcome, Page, ParticipantRole,
    QualitySummary, Recording, RecordingId, Timestamp,
};
use crate::{CallId, CallKind, User, UserId};

/// The migrations of `signaling/migrations/`, embedded at compile time so the binary needs no
/// files beside it. They are written to run unchanged on SQLite and PostgreSQL.
static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// Pool size for a database file or server. Writes to SQLite serialize anyway; a few
/// connections let reads (the HTTP API) proceed during a write (WAL mode).
const MAX_CONNECTIONS: u32 = 4;

/// Who may see a recording `r` (finding 7): `me`, the viewer's participant row of its call,
/// must have joined, and their time in the call, `[joined_at, left_at]`, must overlap the
/// recording's `[started_at, created_at]` (open-ended while it is still recording). Someone
/// who declined, never answered, left before it started or joined after it finished does not
/// see it. The row keeps a member's first join and last leave, so someone who left and
/// rejoined is judged on that whole span.
const VISIBLE_TO_ME: &str = "me.joined_at IS NOT NULL \
     AND (r.state = 'recording' OR me.joined_at <= r.created_at) \
     AND (me.left_at IS NULL OR me.left_at >= COALESCE(r.started_at, r.created_at - r.duration_ms))";

/// The call history: a handle on a connection pool. Cheap to clone; clones share the pool.
#[derive(Clone, Debug)]
pub struct HistoryStore {
    pub(super) pool: AnyPool,
    /// The database URL when a second connection reaches the same database (not for an
    /// in-memory SQLite database), for [`HistoryStore::dedicated_writer`].
    url: Option<std::sync::Arc<str>>,
}

/// What the store knows about a call's progress, for turning "0 rows updated" into a precise
/// error.
struct CallStatus {
    answered: bool,
    ended: bool,
}

impl HistoryStore {
    /// Connects, creating the SQLite file (and its directory) when missing, and applies every
    /// migration not yet applied. Safe to call on every start: applied migrations are skipped
    /// (sqlx records them, with checksums, in `_sqlx_migrations`).
    pub async fn open(config: HistoryConfig) -> Result<Self, HistoryError> {
        config.validate()?;
        // Registers the SQLite and PostgreSQL drivers with `Any`; later calls do nothing.
        sqlx::any::install_default_drivers();
        let url = config.database_url.trim();
        let sqlite_path = sqlite_path(url);
        let in_memory = sqlite_path
            .is_some_and(|p| p.is_empty() || p.contains(":memory:") || url.contains("mode=memory"));
        if let Some(path) = sqlite_path.filter(|_| !in_memory) {
            create_parent_dir(path)?;
        }
        let options = if in_memory {
            // Every connection to `:memory:` is a separate, empty database: keep exactly one,
            // forever.
            AnyPoolOptions::new()
                .max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None)
        } else {
            AnyPoolOptions::new().max_connections(MAX_CONNECTIONS)
        };
        let pool = options.connect(url).await?;
        if sqlite_path.is_some() && !in_memory {
            // Readers do not block the writer and vice versa. Persistent in the file.
            sqlx::query("PRAGMA journal_mode = WAL")
                .execute(&pool)
                .await?;
        }
        MIGRATOR.run(&pool).await?;
        let url = (!in_memory).then(|| std::sync::Arc::from(url));
        Ok(Self { pool, url })
    }

    /// A store on one connection of its own to the same database, for the history writer:
    /// readers of the HTTP API then never hold up writes by taking every pooled connection
    /// (finding 15). An in-memory database has no second connection: the store itself.
    pub async fn dedicated_writer(&self) -> Result<Self, HistoryError> {
        let Some(url) = &self.url else {
            return Ok(self.clone());
        };
        let pool = AnyPoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .connect(url)
            .await?;
        Ok(Self {
            pool,
            url: Some(url.clone()),
        })
    }

    /// Waits for in-flight queries and closes every connection (graceful shutdown).
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Records a new, ringing call: `caller` calls `callees` (at least one; nobody twice).
    pub async fn call_started(
        &self,
        call_id: &CallId,
        kind: CallKind,
        caller: &User,
        callees: &[User],
        at: Timestamp,
    ) -> Result<(), HistoryError> {
        if callees.is_empty() {
            return Err(HistoryError::InvalidParticipants("a call needs a callee"));
        }
        let everyone: Vec<&User> = std::iter::once(caller).chain(callees).collect();
        for (i, user) in everyone.iter().enumerate() {
            if everyone[..i].iter().any(|earlier| earlier.id == user.id) {
                return Err(HistoryError::InvalidParticipants(
                    "a user appears twice in the call",
                ));
            }
        }

        let mut tx = self.pool.begin().await?;
        let inserted = sqlx::query(
            "INSERT INTO calls (id, kind, created_by, ringing_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(call_id.as_str())
        .bind(kind_to_str(kind))
        .bind(caller.id.as_str())
        .bind(at.as_millis())
        .execute(&mut *tx)
        .await;
        match inserted {
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                return Err(HistoryError::CallExists(call_id.clone()))
            }
            other => other?,
        };
        for (position, user) in everyone.iter().enumerate() {
            let role = if position == 0 {
                ParticipantRole::Caller
            } else {
                ParticipantRole::Callee
            };
            sqlx::query(
                "INSERT INTO call_participants \
                     (call_id, user_id, display_name, role, position, ringing_at) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(call_id.as_str())
            .bind(user.id.as_str())
            .bind(user.name.as_str())
            .bind(role.as_str())
            .bind(position as i64)
            .bind(at.as_millis())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Records that the call was accepted: it is now active and its duration counts from `at`.
    /// Answering an already answered call keeps the first answer time (and is not an error,
    /// so a retried report is harmless).
    pub async fn call_answered(&self, call_id: &CallId, at: Timestamp) -> Result<(), HistoryError> {
        let updated = sqlx::query(
            "UPDATE calls SET answered_at = $2 \
             WHERE id = $1 AND ended_at IS NULL AND answered_at IS NULL",
        )
        .bind(call_id.as_str())
        .bind(at.as_millis())
        .execute(&self.pool)
        .await?
        .rows_affected();
        if updated == 1 {
            return Ok(());
        }
        match self.call_status(call_id).await? {
            None => Err(HistoryError::UnknownCall(call_id.clone())),
            Some(CallStatus { ended: true, .. }) => Err(HistoryError::CallEnded(call_id.clone())),
            Some(_) => Ok(()),
        }
    }

    /// Adds `user` to a call that is still going (invited after it started). Inviting
    /// someone who already has a row (invited before, and left) keeps that row.
    pub async fn participant_invited(
        &self,
        call_id: &CallId,
        user: &User,
    ) -> Result<(), HistoryError> {
        let inserted = sqlx::query(
            "INSERT INTO call_participants \
                 (call_id, user_id, display_name, role, position, ringing_at) \
             SELECT $1, $2, $3, $4, COALESCE(MAX(p.position), 0) + 1, c.ringing_at \
               FROM calls c LEFT JOIN call_participants p ON p.call_id = c.id \
              WHERE c.id = $1 AND c.ended_at IS NULL \
              GROUP BY c.id, c.ringing_at \
             ON CONFLICT (call_id, user_id) DO NOTHING",
        )
        .bind(call_id.as_str())
        .bind(user.id.as_str())
        .bind(user.name.as_str())
        .bind(ParticipantRole::Callee.as_str())
        .execute(&self.pool)
        .await?
        .rows_affected();
        if inserted == 1 {
            return Ok(());
        }
        match self.call_status(call_id).await? {
            None => Err(HistoryError::UnknownCall(call_id.clone())),
            Some(CallStatus { ended: true, .. }) => Err(HistoryError::CallEnded(call_id.clone())),
            Some(_) => Ok(()),
        }
    }

    /// Records that `user_id`'s media joined the call. The first join time is kept; joining
    /// again after leaving clears `left_at`.
    pub async fn participant_joined(
        &self,
        call_id: &CallId,
        user_id: &UserId,
        at: Timestamp,
    ) -> Result<(), HistoryError> {
        let updated = sqlx::query(
            "UPDATE call_participants SET joined_at = COALESCE(joined_at, $3), left_at = NULL \
             WHERE call_id = $1 AND user_id = $2 \
               AND EXISTS (SELECT 1 FROM calls WHERE id = $1 AND ended_at IS NULL)",
        )
        .bind(call_id.as_str())
        .bind(user_id.as_str())
        .bind(at.as_millis())
        .execute(&self.pool)
        .await?
        .rows_affected();
        if updated == 1 {
            return Ok(());
        }
        match self.call_status(call_id).await? {
            None => Err(HistoryError::UnknownCall(call_id.clone())),
            Some(CallStatus { ended: true, .. }) => Err(HistoryError::CallEnded(call_id.clone())),
            Some(_) => Err(self.not_a_participant(call_id, user_id)),
        }
    }

    /// Records that `user_id`'s media left the call. A participant who never joined, or has
    /// already left, is left as is.
    pub async fn participant_left(
        &self,
        call_id: &CallId,
        user_id: &UserId,
        at: Timestamp,
    ) -> Result<(), HistoryError> {
        let updated = sqlx::query(
            "UPDATE call_participants SET left_at = $3 \
             WHERE call_id = $1 AND user_id = $2 AND joined_at IS NOT NULL AND left_at IS NULL",
        )
        .bind(call_id.as_str())
        .bind(user_id.as_str())
        .bind(at.as_millis())
        .execute(&self.pool)
        .await?
        .rows_affected();
        if updated == 1 {
            return Ok(());
        }
        self.require_participant(call_id, user_id).await
    }

    /// Ends the call with `outcome` at `at`: derives the duration from the answer time and
    /// marks every participant still in the call as having left at `at`.
    ///
    /// The outcome must fit the call: `completed` needs an answered call; `missed`,
    /// `rejected` and `cancelled` an unanswered one; `failed` fits both. Use
    /// [`Outcome::from_end_reason`] to classify signaling's end reasons.
    pub async fn call_ended(
        &self,
        call_id: &CallId,
        outcome: Outcome,
        at: Timestamp,
    ) -> Result<(), HistoryError> {
        let answered_filter = match outcome.requires_answered() {
            Some(true) => " AND answered_at IS NOT NULL",
            Some(false) => " AND answered_at IS NULL",
            None => "",
        };
        let mut tx = self.pool.begin().await?;
        // Written first, so SQLite takes the write lock before anything is read.
        let updated = sqlx::query(&format!(
            "UPDATE calls SET ended_at = $2, outcome = $3, duration_ms = CASE \
                 WHEN answered_at IS NULL THEN NULL \
                 WHEN answered_at < $2 THEN $2 - answered_at \
                 ELSE 0 END \
             WHERE id = $1 AND ended_at IS NULL{answered_filter}"
        ))
        .bind(call_id.as_str())
        .bind(at.as_millis())
        .bind(outcome.as_str())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if updated == 1 {
            sqlx::query(
                "UPDATE call_participants SET left_at = $2 \
                 WHERE call_id = $1 AND joined_at IS NOT NULL AND left_at IS NULL",
            )
            .bind(call_id.as_str())
            .bind(at.as_millis())
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            return Ok(());
        }
        tx.rollback().await?;
        match self.call_status(call_id).await? {
            None => Err(HistoryError::UnknownCall(call_id.clone())),
            Some(CallStatus { ended: true, .. }) => Err(HistoryError::CallEnded(call_id.clone())),
            Some(CallStatus { answered, .. }) => Err(HistoryError::OutcomeMismatch {
                call_id: call_id.clone(),
                outcome,
                answered,
            }),
        }
    }

    /// Stores (or replaces) `user_id`'s quality summary for the call. Allowed at any time,
    /// typically just after the call ended.
    pub async fn record_quality(
        &self,
        call_id: &CallId,
        user_id: &UserId,
        quality: QualitySummary,
    ) -> Result<(), HistoryError> {
        quality.validate()?;
        let updated = sqlx::query(
            "UPDATE call_participants SET loss_avg_pct = $3, loss_worst_pct = $4, \
                 jitter_avg_ms = $5, jitter_worst_ms = $6, rtt_avg_ms = $7, rtt_worst_ms = $8, \
                 mos_estimate = $9 \
             WHERE call_id = $1 AND user_id = $2",
        )
        .bind(call_id.as_str())
        .bind(user_id.as_str())
        .bind(quality.loss_avg_pct)
        .bind(quality.loss_worst_pct)
        .bind(quality.jitter_avg_ms)
        .bind(quality.jitter_worst_ms)
        .bind(quality.rtt_avg_ms)
        .bind(quality.rtt_worst_ms)
        .bind(quality.mos)
        .execute(&self.pool)
        .await?
        .rows_affected();
        if updated == 1 {
            return Ok(());
        }
        self.require_participant(call_id, user_id).await
    }

    /// Stores a recording of `recording.participant`'s media, who must be a participant of
    /// `recording.call_id`.
    pub async fn add_recording(&self, recording: &Recording) -> Result<(), HistoryError> {
        if recording.path.is_empty() {
            return Err(HistoryError::InvalidRecording("path must not be empty"));
        }
        let bytes = i64::try_from(recording.bytes)
            .map_err(|_| HistoryError::InvalidRecording("bytes out of range"))?;
        let duration_ms = i64::try_from(recording.duration_ms)
            .map_err(|_| HistoryError::InvalidRecording("duration out of range"))?;
        self.require_participant(&recording.call_id, &recording.participant)
            .await?;
        let inserted = sqlx::query(
            "INSERT INTO recordings \
                 (id, call_id, participant_user_id, path, bytes, duration_ms, started_by, \
                  created_at, started_at, state, session_id) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(recording.id.as_str())
        .bind(recording.call_id.as_str())
        .bind(recording.participant.as_str())
        .bind(recording.path.as_str())
        .bind(bytes)
        .bind(duration_ms)
        .bind(recording.started_by.as_str())
        .bind(recording.created_at.as_millis())
        .bind(recording.started_at.as_millis())
        .bind(recording.state.as_str())
        .bind(recording.session_id.as_deref())
        .execute(&self.pool)
        .await;
        match inserted {
            Ok(_) => Ok(()),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                Err(HistoryError::RecordingExists(recording.id.clone()))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The calls `user_id` took part in (as caller or callee), newest first, one page at a
    /// time.
    pub async fn list_for_user(
        &self,
        user_id: &UserId,
        query: &ListQuery,
    ) -> Result<Page, HistoryError> {
        if !(1..=ListQuery::MAX_LIMIT).contains(&query.limit) {
            return Err(HistoryError::InvalidLimit(query.limit));
        }
        // Placeholders are numbered as they are added; the SQL text only depends on which
        // filters are present, never on their values.
        // Filter, order and cursor on `me` (the viewer's participant rows, which carry
        // their call's ringing_at): the index (user_id, ringing_at, call_id) serves them all,
        // so a page costs its size, not the user's whole history.
        let mut sql = format!(
            "SELECT {CALL_COLUMNS} FROM call_participants me \
             JOIN calls c ON c.id = me.call_id WHERE me.user_id = $1"
        );
        let mut next = 2;
        if query.outcome.is_some() {
            sql.push_str(&format!(" AND c.outcome = ${next}"));
            next += 1;
        }
        if query.before.is_some() {
            let (at, id) = (next, next + 1);
            sql.push_str(&format!(
                " AND (me.ringing_at < ${at} OR (me.ringing_at = ${at} AND me.call_id < ${id}))"
            ));
            next += 2;
        }
        sql.push_str(&format!(
            " ORDER BY me.ringing_at DESC, me.call_id DESC LIMIT ${next}"
        ));

        let mut select = sqlx::query(&sql).bind(user_id.as_str());
        if let Some(outcome) = query.outcome {
            select = select.bind(outcome.as_str());
        }
        if let Some(cursor) = &query.before {
            select = select
                .bind(cursor.ringing_at.as_millis())
                .bind(cursor.call_id.as_str());
        }
        // One more than asked for tells whether there is a next page.
        let rows = select
            .bind(i64::from(query.limit) + 1)
            .fetch_all(&self.pool)
            .await?;

        let has_more = rows.len() > query.limit as usize;
        let mut calls = rows
            .iter()
            .take(query.limit as usize)
            .map(call_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        self.attach_children(user_id, &mut calls).await?;
        let next_cursor = if has_more {
            calls.last().map(Cursor::after)
        } else {
            None
        };
        Ok(Page { calls, next_cursor })
    }

    /// One call, only if `user_id` took part in it. Someone else's call and a call that does
    /// not exist both give `None`, so the answer never reveals that a call exists.
    pub async fn get_for_user(
        &self,
        user_id: &UserId,
        call_id: &CallId,
    ) -> Result<Option<CallRecord>, HistoryError> {
        let row = sqlx::query(&format!(
            "SELECT {CALL_COLUMNS} FROM calls c \
             JOIN call_participants me ON me.call_id = c.id AND me.user_id = $1 \
             WHERE c.id = $2"
        ))
        .bind(user_id.as_str())
        .bind(call_id.as_str())
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let mut calls = vec![call_from_row(&row)?];
        self.attach_children(user_id, &mut calls).await?;
        Ok(calls.pop())
    }

    /// One recording, only if `user_id` was in its call while it was recorded (whoever's media
    /// it holds; see `VISIBLE_TO_ME`).
    pub async fn recording_for_user(
        &self,
        user_id: &UserId,
        recording_id: &RecordingId,
    ) -> Result<Option<Recording>, HistoryError> {
        let row = sqlx::query(&format!(
            "SELECT {RECORDING_COLUMNS} FROM recordings r \
             JOIN call_participants me ON me.call_id = r.call_id AND me.user_id = $1 \
             WHERE r.id = $2 AND {VISIBLE_TO_ME}"
        ))
        .bind(user_id.as_str())
        .bind(recording_id.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(recording_from_row).transpose()
    }

    /// Closes every call that was still ringing or active when the server last stopped, so
    /// nothing stays "live" forever. Call once at start, before any call is placed: it closes
    /// *every* unended call in the database.
    ///
    /// - An answered (active) call becomes `completed`, ended at `now`, its duration counted
    ///   to `now`.
    /// - A call still ringing becomes `failed`: nobody declined or gave up, the server did.
    /// - Both are flagged `interrupted`, because `now` is when the server came back, not when
    ///   the call really stopped; participants still in the call leave at `now`.
    ///
    /// Returns how many calls were closed.
    pub async fn close_interrupted(&self, now: Timestamp) -> Result<u64, HistoryError> {
        let now = now.as_millis();
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "UPDATE call_participants SET left_at = $1 \
             WHERE joined_at IS NOT NULL AND left_at IS NULL \
               AND call_id IN (SELECT id FROM calls WHERE ended_at IS NULL)",
        )
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let ringing = sqlx::query(
            "UPDATE calls SET ended_at = $1, outcome = 'failed', interrupted = 1 \
             WHERE ended_at IS NULL AND answered_at IS NULL",
        )
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let active = sqlx::query(
            "UPDATE calls SET ended_at = $1, outcome = 'completed', interrupted = 1, \
                 duration_ms = CASE WHEN answered_at < $1 THEN $1 - answered_at ELSE 0 END \
             WHERE ended_at IS NULL AND answered_at IS NOT NULL",
        )
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(ringing + active)
    }

    /// Fills in the participants of `calls`, and the recordings `viewer` may see, with one
    /// query each.
    async fn attach_children(
        &self,
        viewer: &UserId,
        calls: &mut [CallRecord],
    ) -> Result<(), HistoryError> {
        if calls.is_empty() {
            return Ok(());
        }
        let count = calls.len();
        let placeholders = |first: usize| {
            (first..first + count)
                .map(|i| format!("${i}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let index: HashMap<CallId, usize> = calls
            .iter()
            .enumerate()
            .map(|(i, call)| (call.id.clone(), i))
            .collect();

        let sql = format!(
            "SELECT {PARTICIPANT_COLUMNS} FROM call_participants \
             WHERE call_id IN ({}) ORDER BY call_id, position",
            placeholders(1)
        );
        let mut select = sqlx::query(&sql);
        for call in calls.iter() {
            select = select.bind(call.id.as_str());
        }
        for row in select.fetch_all(&self.pool).await? {
            let call_id = CallId::new(row.try_get::<String, _>("call_id")?);
            if let Some(&i) = index.get(&call_id) {
                calls[i].participants.push(participant_from_row(&row)?);
            }
        }

        let sql = format!(
            "SELECT {RECORDING_COLUMNS} FROM recordings r \
             JOIN call_participants me ON me.call_id = r.call_id AND me.user_id = $1 \
             WHERE r.call_id IN ({}) AND {VISIBLE_TO_ME} \
             ORDER BY r.created_at, r.id",
            placeholders(2)
        );
        let mut select = sqlx::query(&sql).bind(viewer.as_str());
        for call in calls.iter() {
            select = select.bind(call.id.as_str());
        }
        for row in select.fetch_all(&self.pool).await? {
            let recording = recording_from_row(&row)?;
            if let Some(&i) = index.get(&recording.call_id) {
                calls[i].recordings.push(recording);
            }
        }
        Ok(())
    }

    async fn call_status(&self, call_id: &CallId) -> Result<Option<CallStatus>, HistoryError> {
        let row = sqlx::query("SELECT answered_at, ended_at FROM calls WHERE id = $1")
            .bind(call_id.as_str())
            .fetch_optional(&self.pool)
            .await?;
        row.map(|row| {
            Ok(CallStatus {
                answered: row.try_get::<Option<i64>, _>("answered_at")?.is_some(),
                ended: row.try_get::<Option<i64>, _>("ended_at")?.is_some(),
            })
        })
        .transpose()
    }

    /// `Ok` if `user_id` is a participant of `call_id`; otherwise the precise error.
    async fn require_participant(
        &self,
        call_id: &CallId,
        user_id: &UserId,
    ) -> Result<(), HistoryError> {
        let found = sqlx::query(
            "SELECT user_id FROM call_participants WHERE call_id = $1 AND user_id = $2",
        )
        .bind(call_id.as_str())
        .bind(user_id.as_str())
        .fetch_optional(&self.pool)
        .await?;
        if found.is_some() {
            return Ok(());
        }
        match self.call_status(call_id).await? {
            None => Err(HistoryError::UnknownCall(call_id.clone())),
            Some(_) => Err(self.not_a_participant(call_id, user_id)),
        }
    }

    fn not_a_participant(&self, call_id: &CallId, user_id: &UserId) -> HistoryError {
        HistoryError::NotAParticipant {
            call_id: call_id.clone(),
            user_id: user_id.clone(),
        }
    }
}

/// The file path in a `sqlite:` URL (`""` for a bare `sqlite:`), or `None` for other databases.
fn sqlite_path(url: &str) -> Option<&str> {
    let rest = url.strip_prefix("sqlite:")?;
    let rest = rest.strip_prefix("//").unwrap_or(rest);
    Some(rest.split_once('?').map_or(rest, |(path, _)| path))
}

/// SQLite creates a missing file (`mode=rwc`) but not a missing directory.
fn create_parent_dir(path: &str) -> Result<(), HistoryError> {
    match Path::new(path).parent() {
        Some(dir) if !dir.as_os_str().is_empty() => std::fs::create_dir_all(dir).map_err(|e| {
            HistoryError::InvalidConfig(format!(
                "cannot create the directory of the history database {}: {e}",
                dir.display()
            ))
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_paths_are_found_in_urls() {
        assert_eq!(
            sqlite_path("sqlite://switchboard.sqlite?mode=rwc"),
            Some("switchboard.sqlite")
        );
        assert_eq!(
            sqlite_path("sqlite:///var/lib/sb/h.db"),
            Some("/var/lib/sb/h.db")
        );
        assert_eq!(sqlite_path("sqlite::memory:"), Some(":memory:"));
        assert_eq!(sqlite_path("postgres://db/x"), None);
    }
}
