//! Media messages between a joined member and the SFU: publisher offers, subscriber answers,
//! trickled candidates, and mute/camera/screen state (docs/protocol.md §6).
//!
//! SFU requests are made without the hub's lock; afterwards [`Hub::still_in_call`] re-checks
//! that the member is still in the call before anything is acknowledged.

use super::StateGuard;

use serde_json::{json, Value};
use socketioxide::extract::AckSender;
use switchboard_sfu::{MediaPolicy, ParticipantId, PeerRole, SfuError};
use tracing::{debug, warn};

use super::{ok_ack, Hub, Me, Seat};
use crate::identity::PublishSource;
use crate::payload::{
    self, MediaState, TrackSource, WebrtcAnswer, WebrtcIceCandidate, WebrtcOffer,
};
use crate::{CallId, SignalingError};

impl Hub {
    /// Checks that `me` may send media messages in `call_id`; gives its SFU participant and
    /// lets `with_seat` update its seat under the same lock.
    fn media_participant(
        &self,
        me: &Me,
        call_id: &CallId,
        with_seat: impl FnOnce(&mut Seat) -> Result<(), SignalingError>,
    ) -> Result<ParticipantId, SignalingError> {
        let mut state = self.lock();
        let entry = state.call_of_mut(me, call_id)?;
        entry.call.check_media(&me.user.id)?;
        let seat = entry
            .seats
            .get_mut(&me.user.id)
            .filter(|seat| seat.media_ready)
            .ok_or_else(|| {
                SignalingError::InvalidState("the call's media is still being set up".into())
            })?;
        let participant = seat.participant.clone().ok_or_else(|| {
            SignalingError::InvalidState("the call's media is still being set up".into())
        })?;
        with_seat(seat)?;
        Ok(participant)
    }

    fn check_sdp_size(&self, sdp: &str) -> Result<(), SignalingError> {
        let limit = self.config.limits.max_sdp_bytes;
        if sdp.len() > limit {
            return Err(SignalingError::PayloadTooLarge {
                size: sdp.len(),
                limit,
            });
        }
        Ok(())
    }

    /// Re-checks after an SFU request that `me` is still in the call.
    fn still_in_call(&self, me: &Me, call_id: &CallId) -> Result<StateGuard<'_>, SignalingError> {
        let state = self.lock();
        state.call_of(me, call_id)?;
        Ok(state)
    }

    /// What a member on a socket with `me`'s token may do with media. The SFU enforces it on
    /// what webrtc-rs negotiates from each offer (kinds of the receiving transceivers, their
    /// count), so no spelling of the SDP gets around it.
    pub(super) fn media_policy(&self, me: &Me) -> MediaPolicy {
        let grants = &me.identity.grants;
        MediaPolicy {
            publish_audio: grants.may_publish(PublishSource::Audio),
            publish_video: grants.may_publish_video(),
            subscribe: grants.subscribe,
            max_tracks: self.config.limits.max_tracks_per_participant,
        }
    }

    /// For a seat that was never bound to a token (cannot happen for a joining member).
    pub(super) const NO_MEDIA: MediaPolicy = MediaPolicy {
        publish_audio: false,
        publish_video: false,
        subscribe: false,
        max_tracks: 0,
    };

    /// Refuses declaring a screen track without the screen grant. What the offer really
    /// publishes (audio, video, how many) is the SFU's check, on the negotiated result.
    fn check_publishing(&self, me: &Me, offer: &WebrtcOffer) -> Result<(), SignalingError> {
        let grants = &me.identity.grants;
        let screens = offer
            .tracks
            .iter()
            .filter(|t| t.source == TrackSource::Screen)
            .count();
        if screens > 0 && !grants.may_publish(PublishSource::Screen) {
            return Err(SignalingError::MissingGrant("publish screen"));
        }
        Ok(())
    }

    pub async fn offer(
        &self,
        me: &Me,
        value: &Value,
        ack: &mut Option<AckSender>,
    ) -> Result<(), SignalingError> {
        let p: WebrtcOffer = payload::parse(value, self.config.max_payload_bytes)?;
        self.check_sdp_size(&p.sdp)?;
        self.check_publishing(me, &p)?;
        // Sources are known before the SFU can report the tracks as published.
        let pid = self.media_participant(me, &p.call_id, |seat| {
            seat.sources = p
                .tracks
                .iter()
                .map(|t| (t.track_id.clone(), t.source))
                .collect();
            Ok(())
        })?;
        let answer = self
            .sfu
            .publish(pid, p.sdp)
            .await
            .inspect_err(|e| log_refusal(me, &p.call_id, "publisher offer", e))?;
        let _state = self.still_in_call(me, &p.call_id)?;
        ok_ack(ack, json!({}));
        super::emit(
            &me.socket,
            "webrtc_answer",
            &json!({ "call_id": p.call_id, "target": "publisher", "sdp": answer }),
        );
        Ok(())
    }

    pub async fn answer(
        &self,
        me: &Me,
        value: &Value,
        ack: &mut Option<AckSender>,
    ) -> Result<(), SignalingError> {
        let p: WebrtcAnswer = payload::parse(value, self.config.max_payload_bytes)?;
        self.check_sdp_size(&p.sdp)?;
        if !me.identity.grants.subscribe {
            return Err(SignalingError::MissingGrant("subscribe"));
        }
        let pid = self.media_participant(me, &p.call_id, |_| Ok(()))?;
        self.sfu
            .subscriber_answer(pid, p.sdp)
            .await
            .inspect_err(|e| log_refusal(me, &p.call_id, "subscriber answer", e))?;
        let _state = self.still_in_call(me, &p.call_id)?;
        ok_ack(ack, json!({}));
        Ok(())
    }

    pub async fn candidate(
        &self,
        me: &Me,
        value: &Value,
        ack: &mut Option<AckSender>,
    ) -> Result<(), SignalingError> {
        let p: WebrtcIceCandidate = payload::parse(value, self.config.max_payload_bytes)?;
        let limit = self.config.limits.max_candidates_per_connection;
        let pid = self.media_participant(me, &p.call_id, |seat| {
            let count = &mut seat.candidates[match p.target {
                PeerRole::Publisher => 0,
                PeerRole::Subscriber => 1,
            }];
            if *count >= limit {
                return Err(SignalingError::LimitExceeded(format!(
                    "at most {limit} ICE candidates per connection"
                )));
            }
            *count += 1;
            Ok(())
        })?;
        self.sfu
            .add_remote_candidate(pid, p.target, p.candidate)
            .await?;
        let _state = self.still_in_call(me, &p.call_id)?;
        ok_ack(ack, json!({}));
        Ok(())
    }

    pub fn media_state(
        &self,
        me: &Me,
        value: &Value,
        ack: &mut Option<AckSender>,
    ) -> Result<(), SignalingError> {
        let p: MediaState = payload::parse(value, self.config.max_payload_bytes)?;
        let mut state = self.lock();
        let entry = state.call_of_mut(me, &p.call_id)?;
        entry.call.check_media(&me.user.id)?;
        if let Some(seat) = entry.seats.get_mut(&me.user.id) {
            seat.media_state = Some([p.audio, p.video, p.screen]);
        }
        let entry = &state.calls[&p.call_id];
        ok_ack(ack, json!({}));
        let others: Vec<_> = entry
            .joined_sockets()
            .into_iter()
            .filter(|sid| *sid != me.sid())
            .collect();
        state.send(
            others,
            "participant_media_state",
            &json!({
                "call_id": p.call_id,
                "user_id": me.user.id,
                "audio": p.audio,
                "video": p.video,
                "screen": p.screen,
            }),
        );
        Ok(())
    }
}

/// Logs an SFU refusal. Refusals the client caused (its SDP, track kinds or count) are its
/// business and may carry its SDP in the message: `debug`, so a client cannot flood the logs
/// (the refusal still counts as a strike). Only the server's own failures are warnings.
fn log_refusal(me: &Me, call_id: &CallId, what: &str, error: &SfuError) {
    if error.is_input() {
        debug!(%call_id, user_id = %me.user.id, %error, "{what} refused");
    } else {
        warn!(%call_id, user_id = %me.user.id, %error, "{what} failed");
    }
}
