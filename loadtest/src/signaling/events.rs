//! The server → client half of the protocol (docs/protocol.md §4): [`ServerEvent`] and the
//! types its payloads carry, parsed leniently so that nothing a server sends can make the
//! client fail — an unknown event or a payload that does not match is kept as
//! [`ServerEvent::Unrecognized`], an unknown reason or source as an `Unknown` variant.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{CallId, CallKind, PeerTarget, TrackId, UserId, UserInfo};
use crate::media::MediaKind;

/// Why a call ended (`call_ended.reason`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    /// Someone ended it.
    Hangup,
    /// The callee rejected it.
    Rejected,
    /// The caller ended it while ringing.
    Cancelled,
    /// Ring timeout.
    NoAnswer,
    /// A participant's last socket went away.
    Disconnected,
    /// A participant could not access camera/microphone.
    MediaUnavailable,
    /// The media connection failed or never connected.
    Failed,
    /// The server is stopping.
    Shutdown,
    /// A reason this client does not know yet; kept so a newer server does not break it.
    #[serde(other)]
    Unknown,
}

/// Why someone left a call that goes on without them (`participant_left.reason`, protocol §7.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeaveReason {
    /// They sent `leave_call` (or `end_call`).
    Left,
    /// An invitee declined.
    Rejected,
    /// An invitee stopped ringing (ring timeout).
    NoAnswer,
    /// Their last socket went away.
    Disconnected,
    /// They could not access camera/microphone.
    MediaUnavailable,
    /// Their media connection failed.
    Failed,
    /// A reason this client does not know yet; kept so a newer server does not break it.
    #[serde(other)]
    Unknown,
}

/// What a published track carries (`track_published.source`, protocol §3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TrackSource {
    /// Audio from a microphone.
    Microphone,
    /// Video from a camera.
    Camera,
    /// A shared screen.
    Screen,
    /// A source this client does not know yet.
    #[serde(other)]
    Unknown,
}

/// One entry of a `presence` event.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct PresenceUser {
    /// User id.
    pub id: UserId,
    /// Display name.
    pub name: String,
    /// Whether the user is in a call.
    pub busy: bool,
}

/// An `error` event: a refused client event (protocol §2).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct ErrorEvent {
    /// Stable error code (protocol §5).
    pub code: String,
    /// Human-readable detail.
    pub message: String,
    /// The client event that failed.
    #[serde(default)]
    pub event: Option<String>,
    /// The call it concerned, if any.
    #[serde(default)]
    pub call_id: Option<CallId>,
}

/// Everything the server can tell a client (protocol §4), plus the end of the connection.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum ServerEvent {
    /// Everyone online the receiver may see, the receiver included: once, at connect.
    Presence {
        /// Online users.
        users: Vec<PresenceUser>,
    },
    /// Presence changes since the last update (protocol §10).
    PresenceUpdate {
        /// Users who came online or whose `busy` changed (their whole entry).
        users: Vec<PresenceUser>,
        /// Ids who went offline.
        offline: Vec<UserId>,
    },
    /// Our `initiate_call` succeeded; the callee is ringing.
    CallRinging {
        /// The call.
        call_id: CallId,
        /// Voice or video.
        kind: CallKind,
        /// The callee.
        to: UserInfo,
    },
    /// Someone is calling us, or inviting us into a call (protocol §7.1).
    IncomingCall {
        /// The call.
        call_id: CallId,
        /// Voice or video.
        kind: CallKind,
        /// Who called or invited us.
        from: UserInfo,
        /// Who is in the call now (joined); empty from a server that does not say.
        participants: Vec<UserInfo>,
    },
    /// The call is active: start media now.
    CallAccepted {
        /// The call.
        call_id: CallId,
        /// Voice or video.
        kind: CallKind,
        /// Everyone in the call, us included.
        participants: Vec<UserInfo>,
    },
    /// The callee rejected our call.
    CallRejected {
        /// The call.
        call_id: CallId,
        /// Who rejected it.
        by: UserInfo,
    },
    /// The call is over.
    CallEnded {
        /// The call.
        call_id: CallId,
        /// Why.
        reason: EndReason,
        /// Who ended it, when someone did.
        by: Option<UserInfo>,
    },
    /// The SFU's answer to our publisher offer.
    WebrtcAnswer {
        /// The call.
        call_id: CallId,
        /// Always [`PeerTarget::Publisher`] per protocol.
        target: PeerTarget,
        /// SDP answer.
        sdp: String,
    },
    /// The SFU (re)offers our subscriber connection.
    WebrtcOffer {
        /// The call.
        call_id: CallId,
        /// Always [`PeerTarget::Subscriber`] per protocol.
        target: PeerTarget,
        /// SDP offer.
        sdp: String,
    },
    /// Someone was invited into a call we are in (for each callee of our own group call too).
    ParticipantInvited {
        /// The call.
        call_id: CallId,
        /// The invitee.
        user: UserInfo,
        /// Who invited them.
        by: UserInfo,
    },
    /// Someone accepted and is now in the call with us.
    ParticipantJoined {
        /// The call.
        call_id: CallId,
        /// Who joined.
        user: UserInfo,
    },
    /// Someone left, declined or stopped ringing, and the call goes on.
    ParticipantLeft {
        /// The call.
        call_id: CallId,
        /// Who left.
        user: UserInfo,
        /// How.
        reason: LeaveReason,
    },
    /// A participant's track reached the SFU; our subscriber connection is (re)offered with it.
    TrackPublished {
        /// The call.
        call_id: CallId,
        /// Whose track: also the track's `a=msid` stream id.
        user_id: UserId,
        /// The track's `a=msid` track id on our subscriber connection.
        track_id: TrackId,
        /// Audio or video.
        kind: MediaKind,
        /// Microphone, camera or screen; `None` from a server that does not say.
        source: Option<TrackSource>,
    },
    /// A track announced by [`ServerEvent::TrackPublished`] ended.
    TrackUnpublished {
        /// The call.
        call_id: CallId,
        /// Whose track.
        user_id: UserId,
        /// Which one.
        track_id: TrackId,
    },
    /// Another participant's `media_state`.
    ParticipantMediaState {
        /// The call.
        call_id: CallId,
        /// Whose state.
        user_id: UserId,
        /// Sending audio.
        audio: bool,
        /// Sending video.
        video: bool,
    },
    /// One of our events was refused.
    Error(ErrorEvent),
    /// An event this client does not know, or a known one whose payload did not parse.
    /// Kept rather than dropped so protocol drift is visible in tests.
    Unrecognized {
        /// Event name.
        event: String,
        /// Raw payload.
        payload: Value,
        /// Why it was not recognised (`None` = unknown event name).
        parse_error: Option<String>,
    },
    /// The connection is gone (last event on the stream).
    Disconnected {
        /// What ended it.
        reason: String,
    },
}

impl ServerEvent {
    /// Parses one event the server emitted; never fails (see the module doc).
    pub(super) fn parse(event: &str, payload: Value) -> ServerEvent {
        #[derive(Deserialize)]
        struct Presence {
            users: Vec<PresenceUser>,
        }
        #[derive(Deserialize)]
        struct PresenceUpdate {
            users: Vec<PresenceUser>,
            offline: Vec<UserId>,
        }
        #[derive(Deserialize)]
        struct Ringing {
            call_id: CallId,
            kind: CallKind,
            to: UserInfo,
        }
        #[derive(Deserialize)]
        struct Incoming {
            call_id: CallId,
            kind: CallKind,
            from: UserInfo,
            #[serde(default)]
            participants: Vec<UserInfo>,
        }
        #[derive(Deserialize)]
        struct Accepted {
            call_id: CallId,
            kind: CallKind,
            participants: Vec<UserInfo>,
        }
        #[derive(Deserialize)]
        struct Rejected {
            call_id: CallId,
            by: UserInfo,
        }
        #[derive(Deserialize)]
        struct Ended {
            call_id: CallId,
            reason: EndReason,
            #[serde(default)]
            by: Option<UserInfo>,
        }
        #[derive(Deserialize)]
        struct Sdp {
            call_id: CallId,
            target: PeerTarget,
            sdp: String,
        }
        #[derive(Deserialize)]
        struct Invited {
            call_id: CallId,
            user: UserInfo,
            by: UserInfo,
        }
        #[derive(Deserialize)]
        struct Joined {
            call_id: CallId,
            user: UserInfo,
        }
        #[derive(Deserialize)]
        struct Left {
            call_id: CallId,
            user: UserInfo,
            reason: LeaveReason,
        }
        #[derive(Deserialize)]
        struct Published {
            call_id: CallId,
            user_id: UserId,
            track_id: TrackId,
            kind: MediaKind,
            #[serde(default)]
            source: Option<TrackSource>,
        }
        #[derive(Deserialize)]
        struct Unpublished {
            call_id: CallId,
            user_id: UserId,
            track_id: TrackId,
        }
        #[derive(Deserialize)]
        struct MediaState {
            call_id: CallId,
            user_id: UserId,
            audio: bool,
            video: bool,
        }

        fn de<T: serde::de::DeserializeOwned>(v: &Value) -> Result<T, serde_json::Error> {
            T::deserialize(v)
        }

        let parsed: Result<ServerEvent, serde_json::Error> = match event {
            "presence" => {
                de::<Presence>(&payload).map(|p| ServerEvent::Presence { users: p.users })
            }
            "presence_update" => {
                de::<PresenceUpdate>(&payload).map(|p| ServerEvent::PresenceUpdate {
                    users: p.users,
                    offline: p.offline,
                })
            }
            "call_ringing" => de::<Ringing>(&payload).map(|p| ServerEvent::CallRinging {
                call_id: p.call_id,
                kind: p.kind,
                to: p.to,
            }),
            "incoming_call" => de::<Incoming>(&payload).map(|p| ServerEvent::IncomingCall {
                call_id: p.call_id,
                kind: p.kind,
                from: p.from,
                participants: p.participants,
            }),
            "call_accepted" => de::<Accepted>(&payload).map(|p| ServerEvent::CallAccepted {
                call_id: p.call_id,
                kind: p.kind,
                participants: p.participants,
            }),
            "call_rejected" => de::<Rejected>(&payload).map(|p| ServerEvent::CallRejected {
                call_id: p.call_id,
                by: p.by,
            }),
            "call_ended" => de::<Ended>(&payload).map(|p| ServerEvent::CallEnded {
                call_id: p.call_id,
                reason: p.reason,
                by: p.by,
            }),
            "webrtc_answer" => de::<Sdp>(&payload).map(|p| ServerEvent::WebrtcAnswer {
                call_id: p.call_id,
                target: p.target,
                sdp: p.sdp,
            }),
            "webrtc_offer" => de::<Sdp>(&payload).map(|p| ServerEvent::WebrtcOffer {
                call_id: p.call_id,
                target: p.target,
                sdp: p.sdp,
            }),
            "participant_invited" => {
                de::<Invited>(&payload).map(|p| ServerEvent::ParticipantInvited {
                    call_id: p.call_id,
                    user: p.user,
                    by: p.by,
                })
            }
            "participant_joined" => {
                de::<Joined>(&payload).map(|p| ServerEvent::ParticipantJoined {
                    call_id: p.call_id,
                    user: p.user,
                })
            }
            "participant_left" => de::<Left>(&payload).map(|p| ServerEvent::ParticipantLeft {
                call_id: p.call_id,
                user: p.user,
                reason: p.reason,
            }),
            "track_published" => de::<Published>(&payload).map(|p| ServerEvent::TrackPublished {
                call_id: p.call_id,
                user_id: p.user_id,
                track_id: p.track_id,
                kind: p.kind,
                source: p.source,
            }),
            "track_unpublished" => {
                de::<Unpublished>(&payload).map(|p| ServerEvent::TrackUnpublished {
                    call_id: p.call_id,
                    user_id: p.user_id,
                    track_id: p.track_id,
                })
            }
            "participant_media_state" => {
                de::<MediaState>(&payload).map(|p| ServerEvent::ParticipantMediaState {
                    call_id: p.call_id,
                    user_id: p.user_id,
                    audio: p.audio,
                    video: p.video,
                })
            }
            "error" => de::<ErrorEvent>(&payload).map(ServerEvent::Error),
            _ => {
                return ServerEvent::Unrecognized {
                    event: event.to_owned(),
                    payload,
                    parse_error: None,
                }
            }
        };
        parsed.unwrap_or_else(|e| ServerEvent::Unrecognized {
            event: event.to_owned(),
            payload,
            parse_error: Some(e.to_string()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_and_malformed_events_are_kept() {
        match ServerEvent::parse("call_ended", serde_json::json!({"reason": "hangup"})) {
            ServerEvent::Unrecognized {
                parse_error: Some(_),
                ..
            } => {}
            other => panic!("unexpected {other:?}"),
        }
        match ServerEvent::parse("future_event", Value::Null) {
            ServerEvent::Unrecognized {
                parse_error: None, ..
            } => {}
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(
            ServerEvent::parse(
                "call_ended",
                serde_json::json!({"call_id": "c", "reason": "brand_new"})
            ),
            ServerEvent::CallEnded {
                call_id: CallId("c".into()),
                reason: EndReason::Unknown,
                by: None
            }
        );
    }

    #[test]
    fn parses_group_call_events() {
        let user = |id: &str| UserInfo {
            id: UserId(id.into()),
            name: id.to_uppercase(),
        };
        let call_id = CallId("c".into());
        assert_eq!(
            ServerEvent::parse(
                "incoming_call",
                serde_json::json!({"call_id": "c", "kind": "video", "from": {"id": "a", "name": "A"},
                    "participants": [{"id": "a", "name": "A"}, {"id": "b", "name": "B"}]})
            ),
            ServerEvent::IncomingCall {
                call_id: call_id.clone(),
                kind: CallKind::Video,
                from: user("a"),
                participants: vec![user("a"), user("b")],
            }
        );
        assert_eq!(
            ServerEvent::parse(
                "participant_left",
                serde_json::json!({"call_id": "c", "user": {"id": "d", "name": "D"}, "reason": "left"})
            ),
            ServerEvent::ParticipantLeft {
                call_id: call_id.clone(),
                user: user("d"),
                reason: LeaveReason::Left,
            }
        );
        assert_eq!(
            ServerEvent::parse(
                "participant_invited",
                serde_json::json!({"call_id": "c", "user": {"id": "e", "name": "E"},
                    "by": {"id": "a", "name": "A"}})
            ),
            ServerEvent::ParticipantInvited {
                call_id: call_id.clone(),
                user: user("e"),
                by: user("a"),
            }
        );
        assert_eq!(
            ServerEvent::parse(
                "track_published",
                serde_json::json!({"call_id": "c", "user_id": "b", "track_id": "t1",
                    "kind": "video", "source": "screen"})
            ),
            ServerEvent::TrackPublished {
                call_id: call_id.clone(),
                user_id: UserId("b".into()),
                track_id: TrackId("t1".into()),
                kind: MediaKind::Video,
                source: Some(TrackSource::Screen),
            }
        );
        // A server from before sources were announced.
        assert!(matches!(
            ServerEvent::parse(
                "track_published",
                serde_json::json!({"call_id": "c", "user_id": "b", "track_id": "t2", "kind": "audio"})
            ),
            ServerEvent::TrackPublished {
                source: None,
                kind: MediaKind::Audio,
                ..
            }
        ));
        assert!(matches!(
            ServerEvent::parse(
                "track_unpublished",
                serde_json::json!({"call_id": "c", "user_id": "b"})
            ),
            ServerEvent::Unrecognized {
                parse_error: Some(_),
                ..
            }
        ));
    }
}
