use crate::{ParticipantId, RoomId};

/// Why an SFU operation was refused. Every variant is caused by the caller's input or by the
/// SFU being shut down; none of them affects other participants.
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
