//! Typed payloads of every client→server event, and their validation. Anything a client sends
//! goes through [`parse`] first; nothing here panics on input.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use switchboard_sfu::IceCandidate;

use crate::call::{CallKind, HangupReason};
use crate::{CallId, UserId};

/// Longest id (user or call) a client may send. Ids are UUIDs; this only bounds garbage.
const MAX_ID_LEN: usize = 128;

/// Why a payload was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    /// Wire code `invalid_payload`.
    #[error("invalid payload: {0}")]
    Invalid(String),
    /// Wire code `payload_too_large`.
    #[error("payload is {size} bytes, over the {limit} byte limit")]
    TooLarge { size: usize, limit: usize },
}

impl PayloadError {
    pub fn code(&self) -> &'static str {
        match self {
            PayloadError::Invalid(_) => "invalid_payload",
            PayloadError::TooLarge { .. } => "payload_too_large",
        }
    }
}

/// A payload that checks what serde cannot express (lengths, ranges).
pub trait Validate {
    fn validate(&self) -> Result<(), PayloadError>;
}

/// Parses one event payload: it must be a JSON object of at most `limit` bytes that
/// deserializes into `T` and passes `T`'s validation.
pub fn parse<T: DeserializeOwned + Validate>(
    value: &serde_json::Value,
    limit: usize,
) -> Result<T, PayloadError> {
    let size = json_size(value);
    if size > limit {
        return Err(PayloadError::TooLarge { size, limit });
    }
    if !value.is_object() {
        return Err(PayloadError::Invalid(format!(
            "expected a JSON object, got {}",
            json_type(value)
        )));
    }
    let parsed = T::deserialize(value).map_err(|e| PayloadError::Invalid(e.to_string()))?;
    parsed.validate()?;
    Ok(parsed)
}

/// The size of `value` serialized as JSON, without allocating it.
pub fn json_size(value: &serde_json::Value) -> usize {
    struct Counter(usize);
    impl std::io::Write for Counter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut counter = Counter(0);
    // Writing a `Value` into an infallible writer cannot fail.
    let _ = serde_json::to_writer(&mut counter, value);
    counter.0
}

fn json_type(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

fn check_id(field: &str, id: &str) -> Result<(), PayloadError> {
    if id.is_empty() || id.len() > MAX_ID_LEN {
        return Err(PayloadError::Invalid(format!(
            "{field} must be 1 to {MAX_ID_LEN} bytes"
        )));
    }
    Ok(())
}

fn check_sdp(sdp: &str) -> Result<(), PayloadError> {
    if sdp.trim().is_empty() {
        return Err(PayloadError::Invalid("sdp must not be empty".into()));
    }
    Ok(())
}

/// `target` of a `webrtc_offer`: the client only ever offers its publisher connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PublisherTarget {
    Publisher,
}

/// `target` of a `webrtc_answer`: the client only ever answers on its subscriber connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SubscriberTarget {
    Subscriber,
}

/// Longest list of invitees in one `initiate_call`. The call's participant limit is checked
/// later; this only bounds garbage.
const MAX_INVITEES: usize = 64;

/// Most tracks one `webrtc_offer` may declare sources for (more than any client publishes).
const MAX_DECLARED_TRACKS: usize = 16;

/// `initiate_call.to`: one user, or several for a group call.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum Invitees {
    One(UserId),
    Many(Vec<UserId>),
}

impl Invitees {
    pub fn ids(&self) -> &[UserId] {
        match self {
            Invitees::One(id) => std::slice::from_ref(id),
            Invitees::Many(ids) => ids,
        }
    }
}

/// `initiate_call`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct InitiateCall {
    pub to: Invitees,
    pub kind: CallKind,
}

/// `invite_participant`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct InviteParticipant {
    pub call_id: CallId,
    pub user_id: UserId,
}

/// What a published track carries (`webrtc_offer.tracks[].source`, `track_published.source`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrackSource {
    Microphone,
    Camera,
    Screen,
}

/// One entry of `webrtc_offer.tracks`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct DeclaredTrack {
    /// The publisher's `MediaStreamTrack.id` (its `a=msid` track id).
    pub track_id: String,
    pub source: TrackSource,
}

/// `accept_call` and `reject_call`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct CallRef {
    pub call_id: CallId,
}

/// `end_call`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct EndCall {
    pub call_id: CallId,
    #[serde(default)]
    pub reason: Option<HangupReason>,
}

/// `webrtc_offer`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct WebrtcOffer {
    pub call_id: CallId,
    pub target: PublisherTarget,
    pub sdp: String,
    /// Sources of the sending tracks; undeclared audio is the microphone, video the camera.
    #[serde(default)]
    pub tracks: Vec<DeclaredTrack>,
}

/// `webrtc_answer`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct WebrtcAnswer {
    pub call_id: CallId,
    pub target: SubscriberTarget,
    pub sdp: String,
}

/// `webrtc_ice_candidate`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct WebrtcIceCandidate {
    pub call_id: CallId,
    pub target: switchboard_sfu::PeerRole,
    pub candidate: IceCandidate,
}

/// `media_state`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct MediaState {
    pub call_id: CallId,
    pub audio: bool,
    pub video: bool,
    /// Sharing a screen (optional: older clients never do).
    #[serde(default)]
    pub screen: bool,
}

impl Validate for InitiateCall {
    fn validate(&self) -> Result<(), PayloadError> {
        let ids = self.to.ids();
        if ids.is_empty() || ids.len() > MAX_INVITEES {
            return Err(PayloadError::Invalid(format!(
                "to must name 1 to {MAX_INVITEES} users"
            )));
        }
        ids.iter().try_for_each(|id| check_id("to", id.as_str()))
    }
}
impl Validate for InviteParticipant {
    fn validate(&self) -> Result<(), PayloadError> {
        check_id("call_id", self.call_id.as_str())?;
        check_id("user_id", self.user_id.as_str())
    }
}
impl Validate for CallRef {
    fn validate(&self) -> Result<(), PayloadError> {
        check_id("call_id", self.call_id.as_str())
    }
}
impl Validate for EndCall {
    fn validate(&self) -> Result<(), PayloadError> {
        check_id("call_id", self.call_id.as_str())
    }
}
impl Validate for WebrtcOffer {
    fn validate(&self) -> Result<(), PayloadError> {
        check_id("call_id", self.call_id.as_str())?;
        if self.tracks.len() > MAX_DECLARED_TRACKS {
            return Err(PayloadError::Invalid(format!(
                "tracks may declare at most {MAX_DECLARED_TRACKS} tracks"
            )));
        }
        for track in &self.tracks {
            check_id("tracks[].track_id", &track.track_id)?;
        }
        check_sdp(&self.sdp)
    }
}
impl Validate for WebrtcAnswer {
    fn validate(&self) -> Result<(), PayloadError> {
        check_id("call_id", self.call_id.as_str())?;
        check_sdp(&self.sdp)
    }
}
impl Validate for WebrtcIceCandidate {
    fn validate(&self) -> Result<(), PayloadError> {
        check_id("call_id", self.call_id.as_str())
    }
}
impl Validate for MediaState {
    fn validate(&self) -> Result<(), PayloadError> {
        check_id("call_id", self.call_id.as_str())
    }
}

/// The `call_id` of a payload, if it has a string one: lets error events name the call even
/// when the rest of the payload is invalid.
pub fn call_id_hint(value: &serde_json::Value) -> Option<String> {
    value
        .get("call_id")
        .and_then(|v| v.as_str())
        .filter(|s| !s.is_empty() && s.len() <= MAX_ID_LEN)
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const LIMIT: usize = 64 * 1024;

    fn code<T: DeserializeOwned + Validate + std::fmt::Debug>(
        v: serde_json::Value,
    ) -> &'static str {
        parse::<T>(&v, LIMIT).unwrap_err().code()
    }

    #[test]
    fn initiate_call_parses() {
        let p: InitiateCall = parse(&json!({"to": "u1", "kind": "video"}), LIMIT).unwrap();
        assert_eq!(p.to.ids(), [UserId::new("u1")]);
        let p: InitiateCall = parse(&json!({"to": ["u1", "u2"], "kind": "video"}), LIMIT).unwrap();
        assert_eq!(p.to.ids(), [UserId::new("u1"), UserId::new("u2")]);
        assert_eq!(p.kind, CallKind::Video);
        // Unknown extra fields are ignored: clients may be newer than the server.
        let p: InitiateCall = parse(&json!({"to": "u1", "kind": "voice", "x": 1}), LIMIT).unwrap();
        assert_eq!(p.kind, CallKind::Voice);
    }

    #[test]
    fn initiate_call_refuses_bad_input() {
        assert_eq!(
            code::<InitiateCall>(json!({"kind": "video"})),
            "invalid_payload"
        );
        assert_eq!(
            code::<InitiateCall>(json!({"to": 5, "kind": "video"})),
            "invalid_payload"
        );
        assert_eq!(
            code::<InitiateCall>(json!({"to": "u", "kind": "fax"})),
            "invalid_payload"
        );
        assert_eq!(
            code::<InitiateCall>(json!({"to": "", "kind": "voice"})),
            "invalid_payload"
        );
        assert_eq!(
            code::<InitiateCall>(json!({"to": "u", "kind": null})),
            "invalid_payload"
        );
        let long = "x".repeat(MAX_ID_LEN + 1);
        assert_eq!(
            code::<InitiateCall>(json!({"to": long, "kind": "voice"})),
            "invalid_payload"
        );
        for to in [
            json!([]),
            json!(["u", 3]),
            json!(["u", ""]),
            json!(vec!["u"; 65]),
        ] {
            assert_eq!(
                code::<InitiateCall>(json!({"to": to, "kind": "voice"})),
                "invalid_payload",
                "{to}"
            );
        }
    }

    #[test]
    fn non_objects_are_invalid() {
        for v in [
            json!(null),
            json!(1),
            json!("call"),
            json!([1, 2]),
            json!(true),
        ] {
            assert_eq!(code::<CallRef>(v), "invalid_payload");
        }
    }

    #[test]
    fn end_call_reason_is_optional_and_checked() {
        let p: EndCall = parse(&json!({"call_id": "c"}), LIMIT).unwrap();
        assert_eq!(p.reason, None);
        let p: EndCall = parse(
            &json!({"call_id": "c", "reason": "media_unavailable"}),
            LIMIT,
        )
        .unwrap();
        assert_eq!(p.reason, Some(HangupReason::MediaUnavailable));
        assert_eq!(
            code::<EndCall>(json!({"call_id": "c", "reason": "shutdown"})),
            "invalid_payload"
        );
    }

    #[test]
    fn offers_and_answers_need_the_right_target() {
        let p: WebrtcOffer = parse(
            &json!({"call_id": "c", "target": "publisher", "sdp": "v=0"}),
            LIMIT,
        )
        .unwrap();
        assert_eq!(p.sdp, "v=0");
        assert_eq!(
            code::<WebrtcOffer>(json!({"call_id": "c", "target": "subscriber", "sdp": "v=0"})),
            "invalid_payload"
        );
        assert_eq!(
            code::<WebrtcAnswer>(json!({"call_id": "c", "target": "publisher", "sdp": "v=0"})),
            "invalid_payload"
        );
        assert_eq!(
            code::<WebrtcAnswer>(json!({"call_id": "c", "target": "subscriber", "sdp": ""})),
            "invalid_payload"
        );
        assert_eq!(
            code::<WebrtcOffer>(json!({"call_id": "c", "target": "publisher"})),
            "invalid_payload"
        );
    }

    #[test]
    fn offers_may_declare_track_sources() {
        let p: WebrtcOffer = parse(
            &json!({"call_id": "c", "target": "publisher", "sdp": "v=0",
                    "tracks": [{"track_id": "t1", "source": "screen"}]}),
            LIMIT,
        )
        .unwrap();
        assert_eq!(p.tracks[0].source, TrackSource::Screen);
        for tracks in [
            json!([{"track_id": "t1", "source": "window"}]),
            json!([{"track_id": "", "source": "camera"}]),
            json!([{"source": "camera"}]),
            json!(vec![json!({"track_id": "t", "source": "camera"}); 17]),
        ] {
            assert_eq!(
                code::<WebrtcOffer>(
                    json!({"call_id": "c", "target": "publisher", "sdp": "v=0", "tracks": tracks})
                ),
                "invalid_payload",
                "{tracks}"
            );
        }
    }

    #[test]
    fn oversized_sdp_is_too_large() {
        let sdp = "a".repeat(LIMIT);
        let v = json!({"call_id": "c", "target": "publisher", "sdp": sdp});
        assert_eq!(code::<WebrtcOffer>(v), "payload_too_large");
    }

    #[test]
    fn candidates_parse_like_browsers_send_them() {
        let p: WebrtcIceCandidate = parse(
            &json!({"call_id": "c", "target": "subscriber", "candidate": {
                "candidate": "candidate:1 1 udp 1 127.0.0.1 5000 typ host",
                "sdpMid": "0", "sdpMLineIndex": 0, "usernameFragment": null}}),
            LIMIT,
        )
        .unwrap();
        assert_eq!(p.target, switchboard_sfu::PeerRole::Subscriber);
        assert_eq!(p.candidate.sdp_mline_index, Some(0));
        assert_eq!(
            code::<WebrtcIceCandidate>(
                json!({"call_id": "c", "target": "both", "candidate": {"candidate": ""}})
            ),
            "invalid_payload"
        );
        assert_eq!(
            code::<WebrtcIceCandidate>(
                json!({"call_id": "c", "target": "publisher", "candidate": "x"})
            ),
            "invalid_payload"
        );
    }

    #[test]
    fn media_state_needs_booleans() {
        let p: MediaState = parse(
            &json!({"call_id": "c", "audio": true, "video": false}),
            LIMIT,
        )
        .unwrap();
        assert!(p.audio && !p.video);
        assert_eq!(
            code::<MediaState>(json!({"call_id": "c", "audio": "yes", "video": false})),
            "invalid_payload"
        );
        assert_eq!(
            code::<MediaState>(json!({"call_id": "c", "audio": true})),
            "invalid_payload"
        );
    }

    #[test]
    fn call_id_hint_is_lenient() {
        assert_eq!(call_id_hint(&json!({"call_id": "c"})), Some("c".into()));
        assert_eq!(call_id_hint(&json!({"call_id": 3})), None);
        assert_eq!(call_id_hint(&json!("c")), None);
    }

    #[test]
    fn json_size_matches_serialization() {
        let v = json!({"a": [1, 2, "three"], "b": null});
        assert_eq!(json_size(&v), serde_json::to_vec(&v).unwrap().len());
    }
}
