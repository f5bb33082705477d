//! What the SFU reports, turned into call transitions and events for the call's members.

use std::sync::Arc;

use serde_json::json;
use switchboard_sfu::{ParticipantId, SfuEvent, SfuEvents, TrackKind};
use tracing::{debug, warn};

use super::recording::{self, user_of};
use super::{Hub, PublishedTrack, State};
use crate::payload::TrackSource;
use crate::CallId;

impl Hub {
    /// Consumes the SFU's events until the SFU stops.
    pub async fn run_sfu_events(self: Arc<Self>, mut events: SfuEvents) {
        while let Some(event) = events.recv().await {
            self.on_sfu_event(event);
        }
        debug!("SFU event stream closed");
    }

    fn on_sfu_event(&self, event: SfuEvent) {
        let mut state = self.lock();
        match event {
            SfuEvent::SubscriberOffer { participant, sdp } => {
                let Some((call_id, _, seat)) = state.seat_of(&participant) else {
                    debug!(%participant, "subscriber offer for a participant no longer in a call");
                    return;
                };
                // A late joiner is offered the call's tracks as soon as the SFU has it, which
                // can be before `accept` has sent `call_accepted`: hold the offer until then.
                if !seat.media_ready {
                    seat.held_offer = Some(sdp);
                    return;
                }
                let offer = json!({ "call_id": call_id, "target": "subscriber", "sdp": sdp });
                let sid = seat.socket;
                state.send(sid, "webrtc_offer", &offer);
            }
            SfuEvent::ParticipantFailed {
                participant,
                reason,
            } => self.on_participant_failed(&mut state, &participant, &reason),
            SfuEvent::Connected { participant, role } => {
                debug!(%participant, ?role, "media connected");
                if let Some((call_id, user_id, _)) = state.seat_of(&participant) {
                    self.history.joined(&call_id, &user_id);
                }
            }
            SfuEvent::PublicationAdded {
                participant,
                publication,
                kind,
                client_track_id,
                ..
            } => {
                debug!(%participant, ?kind, %client_track_id, "publication added");
                // Only the member's current join (a stale report is followed by its removal).
                let Some((call_id, user_id, _)) = state.seat_of(&participant) else {
                    return;
                };
                let Some(entry) = state.calls.get_mut(&call_id) else {
                    return; // published as the call ended
                };
                let declared = entry
                    .seats
                    .get(&user_id)
                    .and_then(|seat| seat.sources.get(&client_track_id).copied());
                let source = declared.unwrap_or(match kind {
                    TrackKind::Audio => TrackSource::Microphone,
                    TrackKind::Video => TrackSource::Camera,
                });
                entry.tracks.insert(
                    publication.to_string(),
                    PublishedTrack {
                        user_id,
                        kind,
                        source,
                    },
                );
                self.relay_to_call(
                    &state,
                    &participant,
                    "track_published",
                    json!({ "track_id": publication.as_str(), "kind": kind, "source": source }),
                );
            }
            SfuEvent::PublicationRemoved {
                participant,
                publication,
                ..
            } => {
                if let Some((call_id, _)) = user_of(&participant) {
                    if let Some(entry) = state.calls.get_mut(&call_id) {
                        entry.tracks.remove(publication.as_str());
                    }
                }
                self.relay_to_call(
                    &state,
                    &participant,
                    "track_unpublished",
                    json!({ "track_id": publication.as_str() }),
                )
            }
            SfuEvent::MediaFlowing { room } => {
                if let Some(entry) = state.calls.get(&CallId::new(room.as_str())) {
                    crate::metrics::call_media_started(entry.initiated_at.elapsed());
                }
            }
            SfuEvent::Quality {
                participant,
                quality,
                ..
            } => {
                // Aggregated per participant for the history; reports after the end are late.
                if let Some((call_id, user_id, _)) = state.seat_of(&participant) {
                    self.history.quality(&call_id, &user_id, quality);
                    self.relay_to_call(
                        &state,
                        &participant,
                        "participant_quality",
                        json!({ "quality": quality }),
                    );
                }
            }
            SfuEvent::ActiveSpeaker { participant, .. } => {
                if state.seat_of(&participant).is_some() {
                    self.relay_to_call(&state, &participant, "active_speaker", json!({}))
                }
            }
            SfuEvent::RecordingStopped { room, reason } => {
                self.on_recording_stopped(&mut state, &room, &reason);
            }
            SfuEvent::RecordingFileStarted {
                room,
                participant,
                session,
                path,
            } => self.on_recording_file_started(&room, &participant, &session, &path),
            SfuEvent::RecordingFinished {
                room,
                participant,
                result,
            } => self.on_recording_finished(&room, &participant, &result),
        }
    }

    /// A member's media connection failed: they leave the call (which ends it if too few
    /// remain).
    fn on_participant_failed(&self, state: &mut State, participant: &ParticipantId, reason: &str) {
        let Some((call_id, user_id, _)) = state.seat_of(participant) else {
            return;
        };
        warn!(%call_id, %participant, %reason, "media connection failed; the member leaves the call");
        let Some(entry) = state.calls.get_mut(&call_id) else {
            return;
        };
        let Some(user) = entry.call.member(&user_id).map(|m| m.user.clone()) else {
            return;
        };
        if let Ok(departure) = entry.call.fail(&user_id) {
            self.apply_departure(state, &call_id, &user, departure, None);
        }
    }

    /// Tells everyone in `participant`'s call something about that participant: `body` gains
    /// the `call_id` and the `user_id` it is about.
    fn relay_to_call(
        &self,
        state: &State,
        participant: &ParticipantId,
        event: &str,
        mut body: serde_json::Value,
    ) {
        let Some((call_id, user_id)) = user_of(participant) else {
            return;
        };
        let Some(entry) = state.calls.get(&call_id) else {
            return; // reports racing the call's end
        };
        body["call_id"] = json!(call_id);
        body["user_id"] = json!(user_id);
        recording::to_participants(state, entry, event, &body);
    }
}
