//! The bridge from the live call state ([`crate::hub`]) to the durable call history
//! ([`crate::history`]).
//!
//! The hub changes state under a `std::sync::Mutex` and must never wait on a database there.
//! So each transition becomes a [`Transition`] record, stamped with the time it happened,
//! pushed into an unbounded channel (a non-blocking send, fine under the lock), and written by
//! **one** task, in order. One writer keeps the reports of a call ordered (`call_started`
//! before `call_answered` before `call_ended`) without any further coordination, and a slow
//! database only delays the history, never a call.
//!
//! The writer also keeps what only matters until the call ends:
//! - per-participant quality aggregates, fed by every [`SfuEvent::Quality`] report and
//!   written with `record_quality` when the call ends;
//! - who started each call's recording, so a finished file can be attributed
//!   (`add_recording`), even though files finish after the call ended.
//!
//! A history write that fails is logged and dropped: the call goes on.
//!
//! [`SfuEvent::Quality`]: switchboard_sfu::SfuEvent::Quality

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use switchboard_sfu::quality::Quality;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, warn};

use crate::history::{HistoryStore, Outcome, QualitySummary, Recording, RecordingId, Timestamp};
use crate::{CallId, CallKind, EndReason, User, UserId};

/// Who started recordings of a call is forgotten after this long (files of a call normally
/// finish within seconds of its end).
const RECORDING_OWNER_TTL: Duration = Duration::from_secs(6 * 3600);

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
        call_id: CallId,
        by: UserId,
    },
    RecordingFinished {
        call_id: CallId,
        user_id: UserId,
        path: PathBuf,
        bytes: u64,
        duration: Duration,
        at: Timestamp,
    },
    /// Answered once everything sent before it has been written.
    Flush(oneshot::Sender<()>),
}

/// The hub's handle: every method is a non-blocking send, safe under the hub's lock. A bridge
/// built with [`HistoryBridge::disabled`] drops every report.
#[derive(Clone, Debug)]
pub(crate) struct HistoryBridge {
    tx: Option<mpsc::UnboundedSender<Transition>>,
    /// Set once the SFU's event stream has ended: no more finished recordings can come.
    sfu_events_ended: Arc<(AtomicBool, tokio::sync::Notify)>,
}

impl HistoryBridge {
    /// No history: every report is dropped.
    pub fn disabled() -> Self {
        Self {
            tx: None,
            sfu_events_ended: Arc::default(),
        }
    }

    /// Starts the writer task on the current tokio runtime.
    pub fn start(store: HistoryStore) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(Writer::new(store).run(rx));
        Self {
            tx: Some(tx),
            sfu_events_ended: Arc::default(),
        }
    }

    fn send(&self, transition: Transition) {
        if let Some(tx) = &self.tx {
            if tx.send(transition).is_err() {
                debug!("history writer gone; report dropped");
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

    pub fn recording_started(&self, call_id: &CallId, by: &UserId) {
        self.send(Transition::RecordingStarted {
            call_id: call_id.clone(),
            by: by.clone(),
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
        if tx.send(Transition::Flush(done)).is_ok() {
            let _ = wait.await;
        }
    }
}

/// Running quality aggregate of one participant over one call.
#[derive(Debug, Default, Clone)]
pub(crate) struct QualityAggregate {
    reports: u32,
    /// Reports with a known RTT (the SFU reports 0 until it has one).
    rtt_reports: u32,
    loss_sum: f64,
    loss_worst: f64,
    jitter_sum: f64,
    jitter_worst: f64,
    rtt_sum: f64,
    rtt_worst: f64,
    mos_sum: f64,
}

impl QualityAggregate {
    /// Adds one report. Non-finite values (a bug upstream) are ignored whole, and so are
    /// `lost` intervals: nothing arrived, which is what muting looks like too, so they say
    /// nothing about the network.
    pub fn add(&mut self, q: &Quality) {
        if q.level == switchboard_sfu::quality::QualityLevel::Lost {
            return;
        }
        let values = [q.loss_percent, q.jitter_ms, q.rtt_ms, q.mos].map(f64::from);
        if values.iter().any(|v| !v.is_finite()) {
            return;
        }
        let [loss, jitter, rtt, mos] = values;
        let (loss, jitter, rtt) = (loss.clamp(0.0, 100.0), jitter.max(0.0), rtt.max(0.0));
        self.reports += 1;
        self.loss_sum += loss;
        self.loss_worst = self.loss_worst.max(loss);
        self.jitter_sum += jitter;
        self.jitter_worst = self.jitter_worst.max(jitter);
        if rtt > 0.0 {
            self.rtt_reports += 1;
            self.rtt_sum += rtt;
            self.rtt_worst = self.rtt_worst.max(rtt);
        }
        self.mos_sum += mos.clamp(1.0, 5.0);
    }

    /// Averages and worst values; `None` without a single report.
    pub fn summary(&self) -> Option<QualitySummary> {
        if self.reports == 0 {
            return None;
        }
        let n = f64::from(self.reports);
        Some(QualitySummary {
            loss_avg_pct: Some(self.loss_sum / n),
            loss_worst_pct: Some(self.loss_worst),
            jitter_avg_ms: Some(self.jitter_sum / n),
            jitter_worst_ms: Some(self.jitter_worst),
            rtt_avg_ms: (self.rtt_reports > 0).then(|| self.rtt_sum / f64::from(self.rtt_reports)),
            rtt_worst_ms: (self.rtt_reports > 0).then_some(self.rtt_worst),
            mos: Some(self.mos_sum / n),
        })
    }
}

struct Writer {
    store: HistoryStore,
    quality: HashMap<CallId, HashMap<UserId, QualityAggregate>>,
    recording_owner: HashMap<CallId, (UserId, Instant)>,
}

impl Writer {
    fn new(store: HistoryStore) -> Self {
        Self {
            store,
            quality: HashMap::new(),
            recording_owner: HashMap::new(),
        }
    }

    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Transition>) {
        while let Some(transition) = rx.recv().await {
            self.write(transition).await;
        }
        debug!("history writer stopped");
    }

    async fn write(&mut self, transition: Transition) {
        let (what, result) = match transition {
            Transition::Started {
                call_id,
                kind,
                caller,
                callees,
                at,
            } => (
                "call_started",
                self.store
                    .call_started(&call_id, kind, &caller, &callees, at)
                    .await,
            ),
            Transition::Invited { call_id, user } => (
                "participant_invited",
                self.store.participant_invited(&call_id, &user).await,
            ),
            Transition::Answered { call_id, at } => (
                "call_answered",
                self.store.call_answered(&call_id, at).await,
            ),
            Transition::Joined {
                call_id,
                user_id,
                at,
            } => (
                "participant_joined",
                self.store.participant_joined(&call_id, &user_id, at).await,
            ),
            Transition::Left {
                call_id,
                user_id,
                at,
            } => (
                "participant_left",
                self.store.participant_left(&call_id, &user_id, at).await,
            ),
            Transition::Ended {
                call_id,
                reason,
                answered,
                at,
            } => {
                // Quality summaries first: a reader that sees the call ended must also see
                // them (the HTTP API is read while this writer works).
                for (user_id, aggregate) in self.quality.remove(&call_id).unwrap_or_default() {
                    if let Some(summary) = aggregate.summary() {
                        if let Err(error) =
                            self.store.record_quality(&call_id, &user_id, summary).await
                        {
                            warn!(%call_id, %user_id, %error, "history: record_quality failed");
                        }
                    }
                }
                let outcome = Outcome::from_end_reason(reason, answered);
                (
                    "call_ended",
                    self.store.call_ended(&call_id, outcome, at).await,
                )
            }
            Transition::Quality {
                call_id,
                user_id,
                quality,
            } => {
                tracing::trace!(%call_id, %user_id, ?quality, "quality report");
                self.quality
                    .entry(call_id)
                    .or_default()
                    .entry(user_id)
                    .or_default()
                    .add(&quality);
                return;
            }
            Transition::RecordingStarted { call_id, by } => {
                let now = Instant::now();
                self.recording_owner
                    .retain(|_, (_, since)| now.duration_since(*since) < RECORDING_OWNER_TTL);
                self.recording_owner.insert(call_id, (by, now));
                return;
            }
            Transition::RecordingFinished {
                call_id,
                user_id,
                path,
                bytes,
                duration,
                at,
            } => {
                let started_by = self
                    .recording_owner
                    .get(&call_id)
                    .map(|(by, _)| by.clone())
                    .unwrap_or_else(|| user_id.clone());
                let recording = Recording {
                    id: RecordingId::random(),
                    call_id: call_id.clone(),
                    participant: user_id,
                    path: path.to_string_lossy().into_owned(),
                    bytes,
                    duration_ms: u64::try_from(duration.as_millis()).unwrap_or(u64::MAX),
                    started_by,
                    created_at: at,
                    started_at: Timestamp::from_millis(
                        at.as_millis()
                            .saturating_sub(i64::try_from(duration.as_millis()).unwrap_or(0)),
                    ),
                    state: crate::history::RecordingState::Finished,
                    session_id: None,
                };
                ("add_recording", self.store.add_recording(&recording).await)
            }
            Transition::Flush(done) => {
                let _ = done.send(());
                return;
            }
        };
        if let Err(error) = result {
            warn!(%error, report = what, "history: report not written");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_sfu::quality::QualityLevel;

    fn q(loss: f32, jitter: f32, rtt: f32, mos: f32) -> Quality {
        Quality {
            level: QualityLevel::Good,
            mos,
            r_factor: 80.0,
            loss_percent: loss,
            jitter_ms: jitter,
            rtt_ms: rtt,
            bitrate_bps: 0,
            expected_bitrate_bps: None,
        }
    }

    #[test]
    fn aggregate_averages_and_worst() {
        let mut a = QualityAggregate::default();
        assert_eq!(a.summary(), None);
        a.add(&q(0.0, 2.0, 40.0, 4.4));
        a.add(&q(4.0, 10.0, 120.0, 3.6));
        a.add(&q(f32::NAN, 1.0, 1.0, 4.0)); // ignored
        let mut lost = q(100.0, 0.0, 0.0, 1.0);
        lost.level = QualityLevel::Lost;
        a.add(&lost); // ignored: nothing arrived (muted, or not started)
        let s = a.summary().unwrap();
        assert_eq!(s.loss_avg_pct, Some(2.0));
        assert_eq!(s.loss_worst_pct, Some(4.0));
        assert_eq!(s.jitter_avg_ms, Some(6.0));
        assert_eq!(s.jitter_worst_ms, Some(10.0));
        assert_eq!(s.rtt_avg_ms, Some(80.0));
        assert_eq!(s.rtt_worst_ms, Some(120.0));
        assert!((s.mos.unwrap() - 4.0).abs() < 1e-6);
        s.validate().unwrap();

        // RTT 0 means "not known yet": no RTT rather than a perfect one.
        let mut b = QualityAggregate::default();
        b.add(&q(0.0, 1.0, 0.0, 4.4));
        let s = b.summary().unwrap();
        assert_eq!((s.rtt_avg_ms, s.rtt_worst_ms), (None, None));
        assert_eq!(s.jitter_avg_ms, Some(1.0));
    }
}
