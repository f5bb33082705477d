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

/// Test-only fault injection (cargo feature `fault-injection`, enabled only by dev-dependencies,
/// never in a release build). The media-path faults are magic RTP payloads (engine isolation);
/// this module holds the ones a test sets from outside.
#[cfg(feature = "fault-injection")]
pub mod fault {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::Duration;

    static LEAVE_DELAY_MS: AtomicU64 = AtomicU64::new(0);

    /// Holds every later [`crate::Sfu::leave`] for `delay` before it reaches the media task:
    /// how a test reproduces a busy runtime in which a member's background leave lands after
    /// that member's next join (security review finding 12).
    pub fn delay_leaves(delay: Duration) {
        let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        LEAVE_DELAY_MS.store(ms, Ordering::Relaxed);
    }

    pub(crate) async fn before_leave() {
        let ms = LEAVE_DELAY_MS.load(Ordering::Relaxed);
        if ms > 0 {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
    }
}

/// Entry points for the fuzz targets in `fuzz/` (not part of the API).
#[doc(hidden)]
pub mod fuzzing {
    /// The media demuxer's STUN USERNAME reader, run on every datagram from an unknown source.
    pub fn stun_local_ufrag(datagram: &[u8]) -> Option<&str> {
        crate::engine::stun_local_ufrag(datagram)
    }

    /// The media demuxer's route-verify-learn step over a sequence of datagrams (finding 11).
    pub fn demux_routing(data: &[u8]) {
        crate::engine::fuzz_demux_routing(data)
    }

    /// A publisher offer applied to a real publisher connection, checked against the
    /// negotiated-transceiver policy and differentially against rtc's own result.
    pub fn publisher_offer(data: &[u8]) {
        crate::engine::fuzz_publisher_offer(data)
    }
}
