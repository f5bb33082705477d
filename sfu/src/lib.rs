//! # switchboard-sfu: the media plane
//!
//! Owns rooms, participants, publications (published tracks), subscriptions (a publication
//! delivered to one participant) and the forwarding of RTP/RTCP between them. It knows nothing
//! about Socket.IO, HTTP or JSON payloads: signaling drives it through [`Sfu`] and hears back
//! through [`SfuEvent`]s.
//!
//! ## Threading model
//! One tokio task (the *media task*) owns every peer connection and the one UDP socket all
//! media uses. Peer connections are webrtc-rs's sans-I/O `rtc` state machines: the task feeds
//! them datagrams and timeouts and drains what they want to send. Nothing is shared, so there
//! is no lock at all on the packet path, and no await between reading a packet and forwarding
//! it except the socket sends themselves.
//!
//! ## Invariants
//! - A datagram is routed to a peer connection by its source address, learned from the first
//!   STUN connectivity check (whose USERNAME names the connection's ICE ufrag). Datagrams from
//!   unknown sources are counted and dropped.
//! - Bad input from one participant (SDP, candidates, packets) fails that request or that
//!   connection only.

mod api;
mod config;
mod error;
mod ids;
pub mod metrics;

pub use api::{
    IceCandidate, MediaPolicy, PeerRole, RecordingStopReason, Sfu, SfuEvent, SfuEvents, SfuStats,
    TrackKind,
};
pub use config::SfuConfig;
pub use error::SfuError;
pub use ids::{ParticipantId, PublicationId, RoomId};
mod engine;
pub mod quality;
pub mod recording;
pub mod speaker;

impl Sfu {
    /// Binds the media UDP socket and starts the media task.
    pub async fn start(config: SfuConfig) -> Result<(Sfu, SfuEvents), SfuError> {
        engine::start(config).await
    }
}

/// Entry points for the fuzz targets in `fuzz/` (not part of the API).
#[doc(hidden)]
pub mod fuzzing {
    /// The media demuxer's STUN USERNAME reader, run on every datagram from an unknown source.
    pub fn stun_local_ufrag(datagram: &[u8]) -> Option<&str> {
        crate::engine::stun_local_ufrag(datagram)
    }

    /// A publisher offer applied to a real publisher connection, checked against the
    /// negotiated-transceiver policy and differentially against rtc's own result.
    pub fn publisher_offer(data: &[u8]) {
        crate::engine::fuzz_publisher_offer(data)
    }
}
