//! # loadtest: a Rust Switchboard client and the synthetic load tester built on it
//!
//! Speaks Switchboard's real client contract (`docs/protocol.md`): HTTP sign-in, Socket.IO v4
//! signaling, and two WebRTC peer connections per participant to the SFU (webrtc-rs 0.21). The
//! integration tests use it to drive calls through an in-process server; the `loadtest` binary
//! uses it to run many publishers and subscribers against a running server (Switchboard, its
//! SFU in a separate `sfu-host` process, or Janus's VideoRoom for comparison) and to produce
//! docs/benchmarks.md (`scripts/bench`).
//!
//! ## Layout
//! - [`signaling`]: sign-in and a WebSocket-only Socket.IO v4 client with typed events and
//!   acknowledged, typed emitters. No WebRTC in it.
//! - [`peer`]: the publisher (offers; sends synthetic Opus/VP8 RTP) and subscriber (answers the
//!   SFU's offers, again on every renegotiation; counts received RTP) connections.
//! - [`clip`]: the real VP8 and Opus clips publishers loop (`media/`, made with ffmpeg).
//! - [`media`]: the probe trailer (sequence, RTP timestamp, send time) on every payload and
//!   the lock-free-per-packet counters both directions keep (loss, jitter, latency histogram,
//!   time to first packet).
//! - [`run`]: the load run (ramp, warm-up, measurement window, report) on any target, each
//!   room one group call through signaling, and the churn run.
//! - [`host`]: rooms of any shape on Switchboard's SFU without signaling (in process, or the
//!   `sfu-host` process), for fan-outs larger than one call may be.
//! - [`janus`]: the same members against Janus's VideoRoom over Janus's HTTP API.
//! - [`procstat`]: a server process's CPU time, RSS and threads from `/proc`.
//! - [`traffic`]: per-remote-address datagram counters on each peer connection's sockets,
//!   which is how a test proves media went through the SFU and not peer to peer.
//! - [`participant`]: glues the three into a user that does all media negotiation by itself;
//!   the caller only places (1:1 or group), accepts, invites into, leaves and ends calls and
//!   watches events, the others' announced tracks and stats.
//!
//! ## Threading model
//! Everything runs on the caller's tokio runtime: one driver task per signaling connection, one
//! dispatcher task per participant, one webrtc-rs driver task per peer connection, one sender
//! task per published track and one counting task per received track.
//!
//! ## Invariants
//! - Nothing the server sends makes the client panic: unknown or malformed events surface as
//!   [`signaling::ServerEvent::Unrecognized`], failed negotiations as
//!   [`participant::MediaEvent::Failed`].
//! - Per-packet work takes no lock and does not log.

//! ## Running
//! - `cargo test -p loadtest` — unit tests, the signaling client against an in-process server
//!   (`tests/signaling_client.rs`) and 1:1 voice and video calls through the SFU
//!   (`tests/call_through_sfu.rs`; `RUST_LOG=loadtest=debug` shows the negotiation), and
//!   group calls with leave, late join and the size limit (`tests/group_call.rs`).
//! - `cargo test -p loadtest --test smoke`: runs of a few seconds: 1 publisher and 3
//!   subscribers on the SFU, and a 3-publisher, 1-subscriber meeting through signaling.
//! - `cargo run --release -p loadtest -- --help`; examples in docs/loadtest.md. `--local-ip`
//!   must be an address the server can reach.
//! - `scripts/bench` regenerates docs/benchmarks.md.
//!
//! ## Example
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use loadtest::{CallKind, MediaKind, Participant, ParticipantConfig};
//! let http = reqwest::Client::new();
//! let url = "http://127.0.0.1:8080";
//! let (alice, _alice_events) = Participant::join(&http, url, "Alice", ParticipantConfig::default()).await?;
//! let (bob, _bob_events) = Participant::join(&http, url, "Bob", ParticipantConfig::default()).await?;
//! let call = alice.signaling().initiate_call(&bob.user().id, CallKind::Video).await?;
//! // ... Bob sees `incoming_call` on his events, then:
//! bob.signaling().accept_call(&call).await?;
//! // Both now publish and subscribe by themselves; later:
//! let got = bob.receive_stats().packets_from(alice.user().id.as_str(), MediaKind::Video);
//! # let _ = got;
//! alice.signaling().end_call(&call, None).await?;
//! # Ok(()) }
//! ```

pub mod clip;
pub mod host;
pub mod janus;
pub mod media;
pub mod participant;
pub mod peer;
pub mod procstat;
pub mod run;
pub mod signaling;
pub mod traffic;

pub use media::{MediaKind, ReceiveStats, SendStats, TrackKey, TrackSnapshot};
pub use participant::{
    CallMedia, MediaEvent, MediaFailure, Participant, ParticipantConfig, ParticipantError,
    ParticipantEvent, ParticipantEvents, RemoteTrack,
};
pub use peer::{PeerConfig, PeerError, PeerEvent, Publisher, Subscriber};
pub use signaling::{
    sign_in, CallId, CallKind, EndReason, IceCandidateInit, Identity, LeaveReason, PeerTarget,
    ServerEvent, SignalingClient, SignalingConfig, SignalingError, SignalingEvents, TrackId,
    TrackSource, UserId, UserInfo,
};
