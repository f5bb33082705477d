//! Recording control (`start_recording` / `stop_recording`, docs/protocol.md §8) and the REC
//! state of each call.
//!
//! A child module of the hub so it works on the hub's state under the same lock and with the
//! same rules: short critical sections, no `.await` under the lock, SFU requests in between,
//! and a re-check that the call still exists afterwards. While an SFU request is in flight the
//! call's [`RecState`] is `Starting`/`Stopping`, so two concurrent requests cannot both pass.
//!
//! The SFU records each participant to their own WebM file and finalises the files when
//! recording stops or the participant leaves, i.e. when the call ends; the finished files are
//! reported as [`SfuEvent::RecordingFinished`](switchboard_sfu::SfuEvent::RecordingFinished)
//! and go to the call history through the history bridge.

use std::path::PathBuf;

use serde_json::json;
use socketioxide::extract::AckSender;
use switchboard_sfu::recording::RecordingSummary;
use switchboard_sfu::{ParticipantId, RecordingStopReason, RoomId, SfuError};
use tracing::{info, warn};

use super::{ok_ack, user_json, CallEntry, Hub, Me, State};
use crate::call::CallState;
use crate::payload::{self, CallRef};
use crate::{CallId, CallKind, EndReason, SignalingError, User, UserId};

/// Where recordings go, and how much recording one server and one user may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordingConfig {
    /// Directory the SFU writes WebM files into (created when missing). One file per
    /// participant per recording: `{call_id}-{user_id}-{started_ms}-{random}.webm`.
    pub directory: PathBuf,
    /// Calls recorded at once on this server (each records up to one file per member, and a
    /// recorder costs a thread and ~24 MB); more is `limit_exceeded`.
    pub max_concurrent: usize,
    /// Calls one user may be recording at once (recordings they started).
    pub max_per_user: usize,
    /// Bytes of recordings one user may have started and still stored (0: no quota); a new
    /// `start_recording` beyond it is `limit_exceeded`.
    pub quota_bytes_per_user: u64,
    /// Recordings (files and rows) older than this many days are deleted at start and then
    /// daily (0: kept forever).
    pub retention_days: u32,
}

impl RecordingConfig {
    pub const DEFAULT_MAX_CONCURRENT: usize = 20;
    pub const DEFAULT_MAX_PER_USER: usize = 2;
    pub const DEFAULT_QUOTA_BYTES_PER_USER: u64 = 10 * 1024 * 1024 * 1024;
    pub const DEFAULT_RETENTION_DAYS: u32 = 90;
}

impl Default for RecordingConfig {
    fn default() -> Self {
        Self {
            directory: PathBuf::from("recordings"),
            max_concurrent: Self::DEFAULT_MAX_CONCURRENT,
            max_per_user: Self::DEFAULT_MAX_PER_USER,
            quota_bytes_per_user: Self::DEFAULT_QUOTA_BYTES_PER_USER,
            retention_days: Self::DEFAULT_RETENTION_DAYS,
        }
    }
}

/// Whether a call is being recorded.
#[derive(Debug, Clone)]
pub(crate) enum RecState {
    /// `start_recording` by `by` is waiting for the SFU.
    Starting { by: UserId },
    /// Recording; `by` started it.
    Active { by: User },
    /// `stop_recording` is waiting for the SFU; `by` started the recording.
    Stopping { by: UserId },
}

/// `recording_stopped.reason` on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StopReason {
    Requested,
    CallEnded,
    DiskFull,
    Shutdown,
}

impl StopReason {
    fn as_str(self) -> &'static str {
        match self {
            StopReason::Requested => "requested",
            StopReason::CallEnded => "call_ended",
            StopReason::DiskFull => "disk_full",
            StopReason::Shutdown => "shutdown",
        }
    }
}

/// The user of an SFU participant id (`"{call_id}/{user_id}"`, see `participant_id`).
pub(crate) fn user_of(participant: &ParticipantId) -> Option<(CallId, UserId)> {
    // `"{call}/{user}/{join}"` (see `participant_id`).
    let (call, rest) = participant.as_str().split_once('/')?;
    let (user, _join) = rest.rsplit_once('/')?;
    Some((CallId::new(call), UserId::new(user)))
}

/// Emits `event` to everyone who joined the call.
pub(super) fn to_participants(
    state: &State,
    entry: &CallEntry,
    event: &str,
    body: &serde_json::Value,
) {
    state.send(entry.joined_sockets(), event, body);
}

fn stopped_body(call_id: &CallId, reason: StopReason) -> serde_json::Value {
    json!({ "call_id": call_id, "reason": reason.as_str() })
}

impl Hub {
    /// Reports call transitions to `history` and records into `recording_config`.
    pub(crate) fn with_persistence(
        mut self,
        history: crate::history_bridge::HistoryBridge,
        recording_config: RecordingConfig,
    ) -> Self {
        self.history = history;
        self.recording_config = recording_config;
        self
    }

    /// Consumes the SFU's events until the SFU stops, then tells the history bridge.
    pub(crate) async fn run_sfu_events_then_close(
        self: std::sync::Arc<Self>,
        events: switchboard_sfu::SfuEvents,
    ) {
        std::sync::Arc::clone(&self).run_sfu_events(events).await;
        self.history.sfu_events_ended();
    }

    /// For graceful shutdown, once the SFU has stopped: waits until every call transition and
    /// finished recording is in the history (bounded).
    pub(crate) async fn flush_history(&self) {
        self.history
            .flush_after_sfu(std::time::Duration::from_secs(5))
            .await;
    }

    pub async fn start_recording(
        &self,
        me: &Me,
        value: &serde_json::Value,
        ack: &mut Option<AckSender>,
    ) -> Result<(), SignalingError> {
        let p: CallRef = payload::parse(value, self.config.max_payload_bytes)?;
        let call_id = p.call_id;
        let kind = {
            let mut state = self.lock();
            let entry = state.call_of_mut(me, &call_id)?;
            if !me.identity.grants.record {
                return Err(SignalingError::MissingGrant("record"));
            }
            if me.identity.is_expired() {
                return Err(SignalingError::ExpiredToken);
            }
            let media_ready = entry.seats.get(&me.user.id).is_some_and(|s| s.media_ready);
            if entry.call.state() != CallState::Active || !media_ready {
                return Err(SignalingError::InvalidState(
                    "only an active call can be recorded".into(),
                ));
            }
            if entry.recording.is_some() {
                return Err(SignalingError::AlreadyRecording);
            }
            self.check_recording_caps(&state, &me.user.id)?;
            let entry = state.calls.get_mut(&call_id).expect("found above");
            entry.recording = Some(RecState::Starting {
                by: me.user.id.clone(),
            });
            entry.call.kind()
        };
        if let Err(e) = self.check_recording_quota(&me.user.id).await {
            if let Some(entry) = self.lock().calls.get_mut(&call_id) {
                entry.recording = None;
            }
            return Err(e);
        }

        let room = RoomId::new(call_id.as_str());
        let video = kind == CallKind::Video;
        // One id per run, carried by the SFU into every file of it (finding 28). Reported
        // before the SFU can create a file, so every file finds who started its run.
        let session = crate::history::RecordingId::random().to_string();
        self.history
            .recording_started(&call_id, &me.user.id, &session);
        let result = self
            .sfu
            .start_recording(
                room,
                self.recording_config.directory.clone(),
                video,
                &*session,
            )
            .await;

        let mut state = self.lock();
        let Some(entry) = state.calls.get_mut(&call_id) else {
            // Ended meanwhile: the participants left the room, which finalised any file.
            return Err(SignalingError::UnknownCall);
        };
        match result {
            Err(e) => {
                entry.recording = None;
                warn!(%call_id, user_id = %me.user.id, error = %e, "recording not started");
                Err(match e {
                    SfuError::AlreadyRecording(_) => SignalingError::AlreadyRecording,
                    other => other.into(),
                })
            }
            Ok(files) => {
                entry.recording = Some(RecState::Active {
                    by: me.user.clone(),
                });
                info!(%call_id, user_id = %me.user.id, files = files.len(), video, "recording started");
                ok_ack(ack, json!({}));
                let state = &*state;
                let entry = &state.calls[&call_id];
                let body = json!({ "call_id": call_id, "by": user_json(&me.user) });
                to_participants(state, entry, "recording_started", &body);
                Ok(())
            }
        }
    }

    pub async fn stop_recording(
        &self,
        me: &Me,
        value: &serde_json::Value,
        ack: &mut Option<AckSender>,
    ) -> Result<(), SignalingError> {
        let p: CallRef = payload::parse(value, self.config.max_payload_bytes)?;
        let call_id = p.call_id;
        let by = {
            let mut state = self.lock();
            let entry = state.call_of_mut(me, &call_id)?;
            // The same rule as starting (docs/security.md): the `record` grant, and a member
            // who joined the call. A ringing invitee's socket passes `call_of_mut` (its seat
            // is not bound yet), so membership is checked here, not assumed.
            if !me.identity.grants.record {
                return Err(SignalingError::MissingGrant("record"));
            }
            if entry.call.check_media(&me.user.id).is_err() {
                return Err(SignalingError::InvalidState(
                    "only a member who joined the call can stop its recording".into(),
                ));
            }
            let Some(RecState::Active { by }) = entry.recording.clone() else {
                return Err(SignalingError::NotRecording);
            };
            entry.recording = Some(RecState::Stopping { by: by.id.clone() });
            by
        };

        let result = self.sfu.stop_recording(RoomId::new(call_id.as_str())).await;

        let mut state = self.lock();
        let Some(entry) = state.calls.get_mut(&call_id) else {
            // Ended meanwhile: `recording_stopped{call_ended}` was sent with `call_ended`.
            ok_ack(ack, json!({}));
            return Ok(());
        };
        if !matches!(entry.recording, Some(RecState::Stopping { .. })) {
            // The SFU stopped it on its own meanwhile (disk full) and that was announced.
            ok_ack(ack, json!({}));
            return Ok(());
        }
        match result {
            Ok(()) | Err(SfuError::NotRecording(_)) => {
                entry.recording = None;
                info!(%call_id, user_id = %me.user.id, "recording stopped");
                ok_ack(ack, json!({}));
                let state = &*state;
                let entry = &state.calls[&call_id];
                let body = stopped_body(&call_id, StopReason::Requested);
                to_participants(state, entry, "recording_stopped", &body);
                Ok(())
            }
            Err(e) => {
                entry.recording = Some(RecState::Active { by });
                warn!(%call_id, user_id = %me.user.id, error = %e, "recording not stopped");
                Err(e.into())
            }
        }
    }

    /// The call is ending (its entry already removed from `state.calls`): a running recording
    /// stops with it. Sent before `call_ended`.
    pub(super) fn recording_ends_with_call(
        &self,
        state: &State,
        entry: &mut CallEntry,
        call_id: &CallId,
        reason: EndReason,
    ) {
        if let Some(RecState::Active { .. } | RecState::Stopping { .. }) = entry.recording.take() {
            let reason = if reason == EndReason::Shutdown {
                StopReason::Shutdown
            } else {
                StopReason::CallEnded
            };
            to_participants(
                state,
                entry,
                "recording_stopped",
                &stopped_body(call_id, reason),
            );
        }
    }

    /// The SFU stopped a room's recording. Stops it asked for (requested) or caused (the
    /// room closed when the call ended) were announced already; disk full and SFU shutdown
    /// are news to the participants.
    pub(super) fn on_recording_stopped(
        &self,
        state: &mut State,
        room: &RoomId,
        reason: &RecordingStopReason,
    ) {
        let reason = match reason {
            RecordingStopReason::DiskFull => StopReason::DiskFull,
            RecordingStopReason::Shutdown => StopReason::Shutdown,
            _ => return,
        };
        let call_id = CallId::new(room.as_str());
        let Some(entry) = state.calls.get_mut(&call_id) else {
            return;
        };
        if !matches!(
            entry.recording,
            Some(RecState::Active { .. } | RecState::Stopping { .. })
        ) {
            return;
        }
        entry.recording = None;
        warn!(%call_id, reason = reason.as_str(), "recording stopped by the SFU");
        let entry = &state.calls[&call_id];
        to_participants(
            state,
            entry,
            "recording_stopped",
            &stopped_body(&call_id, reason),
        );
    }

    /// `limit_exceeded` when the server, or `user`, already records as many calls as allowed
    /// (finding 16). Counts calls whose recording is starting, running or stopping.
    fn check_recording_caps(&self, state: &State, user: &UserId) -> Result<(), SignalingError> {
        let config = &self.recording_config;
        let (mut total, mut mine) = (0usize, 0usize);
        for entry in state.calls.values() {
            let by = match &entry.recording {
                None => continue,
                Some(RecState::Starting { by } | RecState::Stopping { by }) => by,
                Some(RecState::Active { by }) => &by.id,
            };
            total += 1;
            if by == user {
                mine += 1;
            }
        }
        if total >= config.max_concurrent {
            return Err(SignalingError::LimitExceeded(format!(
                "the server is already recording {total} calls (limit {})",
                config.max_concurrent
            )));
        }
        if mine >= config.max_per_user {
            return Err(SignalingError::LimitExceeded(format!(
                "you are already recording {mine} calls (limit {})",
                config.max_per_user
            )));
        }
        Ok(())
    }

    /// `limit_exceeded` when `user`'s stored recordings already reach the quota. Without a
    /// history there is nothing to count; a history that cannot answer refuses (fail closed).
    async fn check_recording_quota(&self, user: &UserId) -> Result<(), SignalingError> {
        let quota = self.recording_config.quota_bytes_per_user;
        if quota == 0 {
            return Ok(());
        }
        match self.history.recorded_bytes_by(user).await {
            Ok(Some(used)) if used >= quota => Err(SignalingError::LimitExceeded(format!(
                "your recordings use {used} bytes (quota {quota})"
            ))),
            Ok(_) => Ok(()),
            Err(error) => {
                warn!(user_id = %user, %error, "recording quota unknown; refusing");
                Err(SignalingError::Internal(
                    "the recording quota cannot be checked".into(),
                ))
            }
        }
    }

    /// A participant's file was created: it enters the history as `recording` at once, so a
    /// crash cannot lose it (finding 14).
    pub(super) fn on_recording_file_started(
        &self,
        room: &RoomId,
        participant: &ParticipantId,
        session: &str,
        path: &std::path::Path,
    ) {
        let Some((call_id, user_id)) = user_of(participant) else {
            warn!(%participant, "recording file of an unknown participant id");
            return;
        };
        if call_id.as_str() != room.as_str() {
            warn!(%participant, %room, "recording file in an unexpected room");
            return;
        }
        self.history
            .recording_file_started(&call_id, &user_id, session, path);
    }

    /// One participant's file is complete: it goes to the call's history.
    pub(super) fn on_recording_finished(
        &self,
        room: &RoomId,
        participant: &ParticipantId,
        result: &Result<RecordingSummary, String>,
    ) {
        let Some((call_id, user_id)) = user_of(participant) else {
            warn!(%participant, "finished recording of an unknown participant id");
            return;
        };
        if call_id.as_str() != room.as_str() {
            warn!(%participant, %room, "finished recording in an unexpected room");
            return;
        }
        match result {
            Ok(summary) => {
                info!(%call_id, %user_id, bytes = summary.bytes, duration_ms = summary.duration.as_millis() as u64, "recording finished");
                self.history.recording_finished(&call_id, &user_id, summary);
            }
            Err(error) => {
                warn!(%call_id, %user_id, %error, "recording failed; kept as interrupted");
                self.history.recording_failed(&call_id, &user_id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn participant_ids_name_call_and_user() {
        let pid = super::super::participant_id(&CallId::new("c1"), &UserId::new("u1"));
        assert_eq!(user_of(&pid), Some((CallId::new("c1"), UserId::new("u1"))));
        // A user id with a slash still parses (the join number is after the last one).
        let pid = ParticipantId::new("c1/a/b/7");
        assert_eq!(user_of(&pid), Some((CallId::new("c1"), UserId::new("a/b"))));
        assert_eq!(user_of(&ParticipantId::new("nope")), None);
    }
}
