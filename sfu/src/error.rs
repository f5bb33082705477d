use crate::{ParticipantId, RoomId};

/// Why an SFU operation was refused. Every variant is caused by the caller's input, by the SFU
/// being shut down, or (`Internal`, `Recording`, `Bind`) by the server; none of them affects
/// other participants. [`SfuError::is_input`] tells which are the client's doing.
#[derive(Debug, thiserror::Error)]
pub enum SfuError {
    #[error("could not bind the media UDP socket on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("room {0} does not exist")]
    UnknownRoom(RoomId),
    #[error("participant {0} does not exist")]
    UnknownParticipant(ParticipantId),
    #[error("participant {0} already exists")]
    DuplicateParticipant(ParticipantId),
    #[error("room {room} is full ({limit} participants)")]
    RoomFull { room: RoomId, limit: usize },
    #[error("too many tracks: at most {limit} per participant")]
    TooManyTracks { limit: usize },
    /// The offer would receive a kind of track the participant may not publish.
    #[error("publishing {kind} is not allowed for this participant")]
    KindNotAllowed { kind: crate::TrackKind },
    /// The offer has an `m=application` section: the SFU carries no data channels.
    #[error("data channels (m=application) are not supported")]
    DataChannelRefused,
    #[error("session description rejected: {0}")]
    InvalidSdp(String),
    #[error("ICE candidate rejected: {0}")]
    InvalidCandidate(String),
    #[error("no subscriber offer is waiting for an answer")]
    NoPendingOffer,
    #[error("invalid SFU configuration: {0}")]
    InvalidConfig(String),
    #[error("room {0} is already being recorded")]
    AlreadyRecording(RoomId),
    #[error("room {0} is not being recorded")]
    NotRecording(RoomId),
    #[error("recording refused: {0}")]
    Recording(String),
    #[error("internal media error: {0}")]
    Internal(String),
    #[error("the SFU is shutting down")]
    ShuttingDown,
}

impl SfuError {
    /// Whether the refusal was caused by what the participant sent (its SDP, candidates, track
    /// count or kinds), as opposed to the server's state or a fault.
    pub fn is_input(&self) -> bool {
        matches!(
            self,
            SfuError::TooManyTracks { .. }
                | SfuError::KindNotAllowed { .. }
                | SfuError::DataChannelRefused
                | SfuError::InvalidSdp(_)
                | SfuError::InvalidCandidate(_)
                | SfuError::NoPendingOffer
        )
    }
}
