//! The bridge from the live call state ([`crate::hub`]) to the durable call history
//! ([`crate::history`]).
//!
//! The hub changes state under a `std::sync::Mutex` and must never wait on a database there.
//! So each transition becomes a [`Transition`] record, stamped with the time it happened,
//! pushed into a **bounded** queue (a non-blocking `try_send`, fine under the lock), and
//! written by **one** task, in order, on its own database connection. One writer keeps the
//! reports of a call ordered (`call_started` before `call_answered` before `call_ended`)
//! without any further coordination, and a slow database only delays the history, never a
//! call.
//!
//! Failure handling (security review finding 15):
//! - A write that fails for a transient reason (SQLite busy/locked, a pool or I/O error) is
//!   retried with exponential backoff for up to [`RETRY_BUDGET`]; only then is it logged at
//!   error level and dropped. The queue holds what arrives meanwhile.
//! - The queue is bounded ([`QUEUE_CAPACITY`]): when a stalled database lets it fill up,
//!   quality reports (aggregates, nothing lost but precision) are dropped first; other
//!   reports are dropped and logged at error level. Memory never grows without bound.
//! - The writer runs on its own connection, so the HTTP API's readers cannot starve it.
//! - If the writer task dies, that is logged at error level, once.
//!
//! The writer also keeps what only matters until the call ends:
//! - per-participant quality aggregates, fed by every [`SfuEvent::Quality`] report and
//!   written with `record_quality` when the call ends;
//! - who started each recording session, so every file of a session is attributed to
//!   exactly that person (finding 28), and which file each participant is recording, so a
//!   file that fails to finish is marked `interrupted` rather than left `recording`.
//!
//! [`SfuEvent::Quality`]: switchboard_sfu::SfuEvent::Quality

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use switchboard_sfu::quality::Quality;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, error, warn};

use crate::history::{
    HistoryError, HistoryStore, Outcome, QualitySummary, Recording, RecordingId, RecordingState,
    Timestamp,
};
use crate::{CallId, CallKind, EndReason, User, UserId};

mod quality_aggregate;
pub(crate) use quality_aggregate::QualityAggregate;

/// Who started a recording session is forgotten after this long (files of a session
/// normally finish within seconds of its end).
const RECORDING_SESSION_TTL: Duration = Duration::from_secs(6 * 3600);

/// Reports waiting for the writer. At a few hundred bytes each, the most a stalled database
/// can cost in memory is a few tens of MB.
pub(crate) const QUEUE_CAPACITY: usize = 65_536;

/// How long one report is retried before it is given up.
const RETRY_BUDGET: Duration = Duration::from_secs(60);
const RETRY_FIRST_DELAY: Duration = Duration::from_millis(100);
const RETRY_MAX_DELAY: Duration = Duration::from_secs(5);

/// One report for the history, in the order the hub made it.
#[derive(Debug)]
enum Transition {
    Started {
        call_id: CallId,
        kind: CallKind,
        caller: User,
        callees: Vec<User>,
        at: Timestamp,
    },
    Invited {
        call_id: CallId,
        user: User,
    },
    Answered {
        call_id: CallId,
        at: Timestamp,
    },
    Joined {
        call_id: CallId,
        user_id: UserId,
        at: Timestamp,
    },
    Left {
        call_id: CallId,
        user_id: UserId,
        at: Timestamp,
    },
    Ended {
        call_id: CallId,
        reason: EndReason,
        answered: bool,
        at: Timestamp,
    },
    Quality {
        call_id: CallId,
        user_id: UserId,
        quality: Quality,
    },
    RecordingStarted {
        by: UserId,
        session: String,
    },
    RecordingFileStarted {
        call_id: CallId,
        user_id: UserId,
        session: String,
        path: PathBuf,
        at: Timestamp,
    },
    RecordingFinished {
        call_id: CallId,
        user_id: UserId,
        path: PathBuf,
        bytes: u64,
        duration: Duration,
        at: Timestamp,
    },
    RecordingFailed {
        call_id: CallId,
        user_id: UserId,
        at: Timestamp,
    },
    /// Answered once everything sent before it has been written.
    Flush(oneshot::Sender<()>),
}

/// Counters shared by the bridge's handles.
#[derive(Debug, Default)]
struct Health {
    /// Reports dropped because the queue was full.
    dropped: AtomicU64,
    /// The writer is gone (logged once).
    writer_gone: AtomicBool,
}

/// The hub's handle: every method is a non-blocking send, safe under the hub's lock. A bridge
/// built with [`HistoryBridge::disabled`] drops every report.
#[derive(Clone, Debug)]
pub(crate) struct HistoryBridge {
    tx: Option<mpsc::Sender<Transition>>,
    /// For reads the hub needs (the recording quota); shares the API's pool.
    store: Option<HistoryStore>,
    health: Arc<Health>,
    /// Set once the SFU's event stream has ended: no more finished recordings can come.
    sfu_events_ended: Arc<(AtomicBool, tokio::sync::Notify)>,
}

impl HistoryBridge {
    /// No history: every report is dropped.
    pub fn disabled() -> Self {
        Self {
            tx: None,
            store: None,
            health: Arc::default(),
            sfu_events_ended: Arc::default(),
        }
    }

    /// Starts the writer task on the current tokio runtime, on a connection of its own.
    pub fn start(store: HistoryStore) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
        let health = Arc::new(Health::default());
        let reader = store.clone();
        let writer = tokio::spawn(async move {
            let store = match store.dedicated_writer().await {
                Ok(store) => store,
                Err(error) => {
                    warn!(%error, "history: no dedicated writer connection; sharing the pool");
                    store
                }
            };
            Writer::new(store).run(rx).await;
        });
        let watched = health.clone();
        tokio::spawn(async move {
            if let Err(e) = writer.await {
                watched.writer_gone.store(true, Ordering::Release);
                error!(error = %e, "history writer died: no more calls or recordings will be written");
            }
        });
        Self {
            tx: Some(tx),
            store: Some(reader),
            health,
            sfu_events_ended: Arc::default(),
        }
    }

    fn send(&self, transition: Transition) {
        let Some(tx) = &self.tx else { return };
        match tx.try_send(transition) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(Transition::Quality { .. })) => {
                // An aggregate loses one sample: not worth a log line.
                self.health.dropped.fetch_add(1, Ordering::Relaxed);
            }
            Err(mpsc::error::TrySendError::Full(transition)) => {
                let dropped = self.health.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                // Once per 1000, so a stalled database does not also flood the log.
                if dropped % 1000 == 1 {
                    error!(
                        dropped,
                        ?transition,
                        "history queue full (database stalled?): report dropped"
                    );
                }
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                if !self.health.writer_gone.swap(true, Ordering::AcqRel) {
                    error!("history writer gone: reports are dropped");
                }
            }
        }
    }

    pub fn started(&self, call_id: &CallId, kind: CallKind, caller: &User, callees: &[User]) {
        self.send(Transition::Started {
            call_id: call_id.clone(),
            kind,
            caller: caller.clone(),
            callees: callees.to_vec(),
            at: Timestamp::now(),
        });
    }

    /// `user` was invited to a call already started.
    pub fn invited(&self, call_id: &CallId, user: &User) {
        self.send(Transition::Invited {
            call_id: call_id.clone(),
            user: user.clone(),
        });
    }

    pub fn answered(&self, call_id: &CallId) {
        self.send(Transition::Answered {
            call_id: call_id.clone(),
            at: Timestamp::now(),
        });
    }

    pub fn joined(&self, call_id: &CallId, user_id: &UserId) {
        self.send(Transition::Joined {
            call_id: call_id.clone(),
            user_id: user_id.clone(),
            at: Timestamp::now(),
        });
    }

    pub fn left(&self, call_id: &CallId, user_id: &UserId) {
        self.send(Transition::Left {
            call_id: call_id.clone(),
            user_id: user_id.clone(),
            at: Timestamp::now(),
        });
    }

    /// The call ended with `reason`; `answered` says whether it was ever accepted.
    pub fn ended(&self, call_id: &CallId, reason: EndReason, answered: bool) {
        self.send(Transition::Ended {
            call_id: call_id.clone(),
            reason,
            answered,
            at: Timestamp::now(),
        });
    }

    pub fn quality(&self, call_id: &CallId, user_id: &UserId, quality: Quality) {
        self.send(Transition::Quality {
            call_id: call_id.clone(),
            user_id: user_id.clone(),
            quality,
        });
    }

    /// `by` is starting recording session `session` of `call_id` (sent before the SFU is
    /// asked, so it precedes every file of the session).
    pub fn recording_started(&self, _call_id: &CallId, by: &UserId, session: &str) {
        self.send(Transition::RecordingStarted {
            by: by.clone(),
            session: session.to_owned(),
        });
    }

    /// The SFU created `path` for `user_id`'s media in session `session`.
    pub fn recording_file_started(
        &self,
        call_id: &CallId,
        user_id: &UserId,
        session: &str,
        path: &std::path::Path,
    ) {
        self.send(Transition::RecordingFileStarted {
            call_id: call_id.clone(),
            user_id: user_id.clone(),
            session: session.to_owned(),
            path: path.to_path_buf(),
            at: Timestamp::now(),
        });
    }

    pub fn recording_finished(
        &self,
        call_id: &CallId,
        user_id: &UserId,
        summary: &switchboard_sfu::recording::RecordingSummary,
    ) {
        self.send(Transition::RecordingFinished {
            call_id: call_id.clone(),
            user_id: user_id.clone(),
            path: summary.path.clone(),
            bytes: summary.bytes,
            duration: summary.duration,
            at: Timestamp::now(),
        });
    }

    /// `user_id`'s file in `call_id` could not be finished cleanly.
    pub fn recording_failed(&self, call_id: &CallId, user_id: &UserId) {
        self.send(Transition::RecordingFailed {
            call_id: call_id.clone(),
            user_id: user_id.clone(),
            at: Timestamp::now(),
        });
    }

    /// Bytes of stored recordings `user` started (`None` without a history).
    pub async fn recorded_bytes_by(&self, user: &UserId) -> Result<Option<u64>, HistoryError> {
        match &self.store {
            None => Ok(None),
            Some(store) => store.recorded_bytes_started_by(user).await.map(Some),
        }
    }

    /// The SFU's event stream ended (the SFU stopped): every report it could cause was sent.
    pub fn sfu_events_ended(&self) {
        let (ended, notify) = &*self.sfu_events_ended;
        ended.store(true, Ordering::Release);
        notify.notify_waiters();
    }

    /// For graceful shutdown, after the SFU was stopped: waits (at most `timeout`) for the
    /// SFU's last events (finished recordings) to be handed over, then for everything to be
    /// written.
    pub async fn flush_after_sfu(&self, timeout: Duration) {
        let (ended, notify) = &*self.sfu_events_ended;
        let notified = notify.notified();
        if !ended.load(Ordering::Acquire) && tokio::time::timeout(timeout, notified).await.is_err()
        {
            warn!("the SFU's events did not end in time; writing the history without them");
        }
        self.flush().await;
    }

    /// Waits until every report sent so far is written (or the writer is gone).
    pub async fn flush(&self) {
        let Some(tx) = &self.tx else { return };
        let (done, wait) = oneshot::channel();
        if tx.send(Transition::Flush(done)).await.is_ok() {
            let _ = wait.await;
        }
    }
}

struct Writer {
    store: HistoryStore,
    quality: HashMap<CallId, HashMap<UserId, QualityAggregate>>,
    /// Who started each recording session, and when we heard of it.
    sessions: HashMap<String, (UserId, Instant)>,
    /// The file each participant is recording now.
    open_files: HashMap<(CallId, UserId), PathBuf>,
}

/// Worth retrying: the database is busy, locked or briefly unreachable.
fn is_transient(error: &HistoryError) -> bool {
    let HistoryError::Database(error) = error else {
        return false;
    };
    match error {
        sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) => true,
        sqlx::Error::Database(e) => {
            // SQLite: SQLITE_BUSY (5), SQLITE_LOCKED (6) and their extended codes;
            // PostgreSQL: serialization failures, deadlocks, too many connections.
            let code = e.code().unwrap_or_default();
            let message = e.message();
            message.contains("locked")
                || message.contains("busy")
                || matches!(
                    &*code,
                    "5" | "6" | "517" | "261" | "262" | "40001" | "40P01" | "53300"
                )
        }
        _ => false,
    }
}

impl Writer {
    fn new(store: HistoryStore) -> Self {
        Self {
            store,
            quality: HashMap::new(),
            sessions: HashMap::new(),
            open_files: HashMap::new(),
        }
    }

    async fn run(mut self, mut rx: mpsc::Receiver<Transition>) {
        while let Some(transition) = rx.recv().await {
            match transition {
                Transition::Flush(done) => {
                    let _ = done.send(());
                }
                transition => self.write_with_retry(transition).await,
            }
        }
        debug!("history writer stopped");
    }

    async fn write_with_retry(&mut self, transition: Transition) {
        let deadline = Instant::now() + RETRY_BUDGET;
        let mut delay = RETRY_FIRST_DELAY;
        loop {
            let (what, result) = self.write(&transition).await;
            match result {
                Ok(()) => return,
                Err(error) if is_transient(&error) && Instant::now() + delay < deadline => {
                    warn!(%error, report = what, retry_in_ms = delay.as_millis() as u64, "history: write failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(RETRY_MAX_DELAY);
                }
                Err(error) => {
                    error!(%error, report = what, ?transition, "history: report not written");
                    return;
                }
            }
        }
    }

    /// Writes one report once. Idempotent enough to retry: every statement either fully
    /// happened (a transaction) or not at all.
    async fn write(&mut self, transition: &Transition) -> (&'static str, Result<(), HistoryError>) {
        match transition {
            Transition::Started {
                call_id,
                kind,
                caller,
                callees,
                at,
            } => (
                "call_started",
                self.store
                    .call_started(call_id, *kind, caller, callees, *at)
                    .await,
            ),
            Transition::Invited { call_id, user } => (
                "participant_invited",
                self.store.participant_invited(call_id, user).await,
            ),
            Transition::Answered { call_id, at } => (
                "call_answered",
                self.store.call_answered(call_id, *at).await,
            ),
            Transition::Joined {
                call_id,
                user_id,
                at,
            } => (
                "participant_joined",
                self.store.participant_joined(call_id, user_id, *at).await,
            ),
            Transition::Left {
                call_id,
                user_id,
                at,
            } => (
                "participant_left",
                self.store.participant_left(call_id, user_id, *at).await,
            ),
            Transition::Ended {
                call_id,
                reason,
                answered,
                at,
            } => {
                // Quality summaries first: a reader that sees the call ended must also see
                // them (the HTTP API is read while this writer works).
                let summaries: Vec<(UserId, QualitySummary)> = self
                    .quality
                    .get(call_id)
                    .into_iter()
                    .flatten()
                    .filter_map(|(user, a)| Some((user.clone(), a.summary()?)))
                    .collect();
                for (user_id, summary) in summaries {
                    let result = self.store.record_quality(call_id, &user_id, summary).await;
                    if let Err(error) = result {
                        if is_transient(&error) {
                            return ("record_quality", Err(error));
                        }
                        warn!(%call_id, %user_id, %error, "history: record_quality failed");
                    }
                }
                let outcome = Outcome::from_end_reason(*reason, *answered);
                let result = self.store.call_ended(call_id, outcome, *at).await;
                if result.is_ok() || !result.as_ref().is_err_and(is_transient) {
                    self.quality.remove(call_id);
                }
                ("call_ended", result)
            }
            Transition::Quality {
                call_id,
                user_id,
                quality,
            } => {
                tracing::trace!(%call_id, %user_id, ?quality, "quality report");
                self.quality
                    .entry(call_id.clone())
                    .or_default()
                    .entry(user_id.clone())
                    .or_default()
                    .add(quality);
                ("quality", Ok(()))
            }
            Transition::RecordingStarted { by, session } => {
                let now = Instant::now();
                self.sessions
                    .retain(|_, (_, since)| now.duration_since(*since) < RECORDING_SESSION_TTL);
                self.sessions.insert(session.clone(), (by.clone(), now));
                ("recording_started", Ok(()))
            }
            Transition::RecordingFileStarted {
                call_id,
                user_id,
                session,
                path,
                at,
            } => {
                self.open_files
                    .insert((call_id.clone(), user_id.clone()), path.clone());
                let started_by = self
                    .sessions
                    .get(session)
                    .map(|(by, _)| by.clone())
                    .unwrap_or_else(|| user_id.clone());
                let recording = Recording {
                    id: RecordingId::random(),
                    call_id: call_id.clone(),
                    participant: user_id.clone(),
                    path: path.to_string_lossy().into_owned(),
                    bytes: 0,
                    duration_ms: 0,
                    started_by,
                    created_at: *at,
                    started_at: *at,
                    state: RecordingState::Recording,
                    session_id: Some(session.clone()),
                };
                (
                    "recording_file_started",
                    self.store.add_recording(&recording).await,
                )
            }
            Transition::RecordingFinished {
                call_id,
                user_id,
                path,
                bytes,
                duration,
                at,
            } => {
                let key = (call_id.clone(), user_id.clone());
                if self.open_files.get(&key) == Some(path) {
                    self.open_files.remove(&key);
                }
                let duration_ms = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
                let path_text = path.to_string_lossy().into_owned();
                let result = self
                    .store
                    .recording_file_finished(&path_text, *bytes, duration_ms, *at)
                    .await;
                match result {
                    // No row for it (its start was never written): add it whole, as before.
                    Ok(false) if *bytes > 0 => {
                        let recording = Recording {
                            id: RecordingId::random(),
                            call_id: call_id.clone(),
                            participant: user_id.clone(),
                            path: path_text,
                            bytes: *bytes,
                            duration_ms,
                            started_by: user_id.clone(),
                            created_at: *at,
                            started_at: Timestamp::from_millis(
                                at.as_millis()
                                    .saturating_sub(i64::try_from(duration_ms).unwrap_or(0)),
                            ),
                            state: RecordingState::Finished,
                            session_id: None,
                        };
                        ("add_recording", self.store.add_recording(&recording).await)
                    }
                    other => ("recording_finished", other.map(drop)),
                }
            }
            Transition::RecordingFailed {
                call_id,
                user_id,
                at,
            } => {
                let Some(path) = self
                    .open_files
                    .get(&(call_id.clone(), user_id.clone()))
                    .cloned()
                else {
                    return ("recording_failed", Ok(()));
                };
                let bytes = tokio::fs::metadata(&path)
                    .await
                    .map(|m| m.len())
                    .unwrap_or(0);
                let result = self
                    .store
                    .recording_file_interrupted(&path.to_string_lossy(), bytes, *at)
                    .await;
                if result.is_ok() {
                    self.open_files.remove(&(call_id.clone(), user_id.clone()));
                }
                ("recording_failed", result)
            }
            Transition::Flush(_) => ("flush", Ok(())),
        }
    }
}
