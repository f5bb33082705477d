//! Everything a client request can fail with, and how failures look on the wire.

use serde::Serialize;
use switchboard_sfu::SfuError;

use crate::call::CallError;
use crate::payload::PayloadError;

/// A refused client event. Each variant has a stable wire code (docs/protocol.md §5) and a
/// readable message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignalingError {
    #[error("{0}")]
    InvalidPayload(String),
    #[error("payload is {size} bytes, over the {limit} byte limit")]
    PayloadTooLarge { size: usize, limit: usize },
    #[error("the user is not online")]
    UserOffline,
    #[error("you cannot call yourself")]
    SelfCall,
    /// Names who is busy: "you are", "Carol is".
    #[error("{0} already in a call")]
    Busy(String),
    #[error("no such call (or it already ended)")]
    UnknownCall,
    #[error("you are not a participant of this call")]
    NotAParticipant,
    #[error("{0}")]
    InvalidState(String),
    #[error("{0}")]
    NotPermitted(String),
    #[error("{0}")]
    MediaRejected(String),
    #[error("the call is already being recorded")]
    AlreadyRecording,
    #[error("the call is not being recorded")]
    NotRecording,
    #[error("too many events: slow down")]
    RateLimited,
    #[error("{0}")]
    LimitExceeded(String),
    #[error("your token does not grant this: {0}")]
    MissingGrant(&'static str),
    #[error("your token has expired: reconnect with a new one to start anything new")]
    ExpiredToken,
    #[error("too many refused events: disconnecting")]
    TooManyViolations,
    #[error("internal error: {0}")]
    Internal(String),
}

impl SignalingError {
    /// The stable wire code.
    pub fn code(&self) -> &'static str {
        match self {
            SignalingError::InvalidPayload(_) => "invalid_payload",
            SignalingError::PayloadTooLarge { .. } => "payload_too_large",
            SignalingError::UserOffline => "user_offline",
            SignalingError::SelfCall => "self_call",
            SignalingError::Busy(_) => "busy",
            SignalingError::UnknownCall => "unknown_call",
            SignalingError::NotAParticipant => "not_a_participant",
            SignalingError::InvalidState(_) => "invalid_state",
            SignalingError::NotPermitted(_) => "not_permitted",
            SignalingError::MediaRejected(_) => "media_rejected",
            SignalingError::AlreadyRecording => "already_recording",
            SignalingError::NotRecording => "not_recording",
            SignalingError::RateLimited => "rate_limited",
            SignalingError::LimitExceeded(_) => "limit_exceeded",
            SignalingError::MissingGrant(_) => "missing_grant",
            SignalingError::ExpiredToken => "expired_token",
            SignalingError::TooManyViolations => "too_many_violations",
            SignalingError::Internal(_) => "internal",
        }
    }

    /// The `error` event for this failure.
    pub fn event(&self, event: &str, call_id: Option<String>) -> ErrorEvent {
        ErrorEvent {
            code: self.code(),
            message: self.to_string(),
            event: Some(event.to_owned()),
            call_id,
        }
    }

    /// The acknowledgement for this failure.
    pub fn ack(&self) -> serde_json::Value {
        serde_json::json!({
            "ok": false,
            "error": { "code": self.code(), "message": self.to_string() },
        })
    }
}

impl From<PayloadError> for SignalingError {
    fn from(e: PayloadError) -> Self {
        match e {
            PayloadError::Invalid(message) => SignalingError::InvalidPayload(message),
            PayloadError::TooLarge { size, limit } => {
                SignalingError::PayloadTooLarge { size, limit }
            }
        }
    }
}

impl From<CallError> for SignalingError {
    fn from(e: CallError) -> Self {
        match e {
            CallError::SelfCall => SignalingError::SelfCall,
            CallError::NotAParticipant => SignalingError::NotAParticipant,
            CallError::AlreadyEnded => SignalingError::UnknownCall,
            CallError::InvalidState { .. } => SignalingError::InvalidState(e.to_string()),
            CallError::NotPermitted(_) => SignalingError::NotPermitted(e.to_string()),
            CallError::AlreadyInCall(name) => SignalingError::Busy(format!("{name} is")),
            CallError::NobodyInvited => SignalingError::InvalidPayload(e.to_string()),
            CallError::Full(_) => SignalingError::LimitExceeded(e.to_string()),
        }
    }
}

impl From<SfuError> for SignalingError {
    /// Refusals caused by the client's input get client codes (and so count as strikes): a
    /// track kind its token does not grant is `missing_grant`, too many tracks
    /// `limit_exceeded`, anything else about its SDP, candidates or data channels
    /// `media_rejected`. Only the server's own failures are `internal`.
    fn from(e: SfuError) -> Self {
        match e {
            SfuError::KindNotAllowed { kind } => SignalingError::MissingGrant(match kind {
                switchboard_sfu::TrackKind::Audio => "publish audio",
                switchboard_sfu::TrackKind::Video => "publish video or screen",
            }),
            SfuError::TooManyTracks { .. } => SignalingError::LimitExceeded(e.to_string()),
            SfuError::InvalidSdp(_)
            | SfuError::InvalidCandidate(_)
            | SfuError::NoPendingOffer
            | SfuError::DataChannelRefused
            | SfuError::RoomFull { .. } => SignalingError::MediaRejected(e.to_string()),
            // The member's SFU session is gone (it failed, or the member is leaving) while
            // signaling still had it: the client's request comes too late, not a server fault.
            SfuError::UnknownParticipant(_) | SfuError::DuplicateParticipant(_) => {
                SignalingError::InvalidState(
                    "the call's media session is not available (it ended or is being set up)"
                        .into(),
                )
            }
            other => SignalingError::Internal(other.to_string()),
        }
    }
}

/// Payload of the `error` event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ErrorEvent {
    pub code: &'static str,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub call_id: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_stable() {
        assert_eq!(SignalingError::Busy("callee is".into()).code(), "busy");
        assert_eq!(
            SignalingError::from(CallError::AlreadyEnded).code(),
            "unknown_call"
        );
        assert_eq!(
            SignalingError::from(PayloadError::TooLarge { size: 2, limit: 1 }).code(),
            "payload_too_large"
        );
        assert_eq!(
            SignalingError::from(SfuError::InvalidSdp("x".into())).code(),
            "media_rejected"
        );
        assert_eq!(
            SignalingError::from(SfuError::ShuttingDown).code(),
            "internal"
        );
        assert_eq!(
            SignalingError::from(SfuError::TooManyTracks { limit: 4 }).code(),
            "limit_exceeded"
        );
        assert_eq!(
            SignalingError::from(SfuError::KindNotAllowed {
                kind: switchboard_sfu::TrackKind::Video
            })
            .code(),
            "missing_grant"
        );
        assert_eq!(
            SignalingError::from(SfuError::DataChannelRefused).code(),
            "media_rejected"
        );
        assert_eq!(
            SignalingError::from(SfuError::UnknownParticipant(
                switchboard_sfu::ParticipantId::new("c/u/1")
            ))
            .code(),
            "invalid_state"
        );
        assert_eq!(SignalingError::RateLimited.code(), "rate_limited");
        assert_eq!(
            SignalingError::LimitExceeded("x".into()).code(),
            "limit_exceeded"
        );
        assert_eq!(SignalingError::MissingGrant("call").code(), "missing_grant");
        assert_eq!(SignalingError::ExpiredToken.code(), "expired_token");
        assert_eq!(
            SignalingError::TooManyViolations.code(),
            "too_many_violations"
        );
    }

    #[test]
    fn wire_shapes() {
        let e = SignalingError::UnknownCall;
        let event = serde_json::to_value(e.event("accept_call", Some("c1".into()))).unwrap();
        assert_eq!(event["code"], "unknown_call");
        assert_eq!(event["event"], "accept_call");
        assert_eq!(event["call_id"], "c1");
        let event = serde_json::to_value(e.event("accept_call", None)).unwrap();
        assert!(event.get("call_id").is_none());
        let ack = e.ack();
        assert_eq!(ack["ok"], false);
        assert_eq!(ack["error"]["code"], "unknown_call");
        assert!(ack["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no such call"));
    }
}
