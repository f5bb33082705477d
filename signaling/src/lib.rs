//! # switchboard-signaling: calls, identity and the Socket.IO protocol
//!
//! Implements docs/protocol.md. Owns:
//! - **identity** ([`identity`]): display names and HS256 access tokens with grants (the demo
//!   sign-in `POST /api/session`, or minted by an application backend), verified when a socket
//!   connects; grants and expiry are checked again on every event that needs them;
//! - **limits** (`limits`, [`sdp`]): per-socket and per-user token-bucket rate limits, strikes
//!   that disconnect abusive sockets, socket counts per user and IP, SDP size, published
//!   tracks and candidates per connection (docs/security.md);
//! - **presence** ([`presence`]): who is online, on which sockets, and who is busy;
//! - **calls** ([`call`]): the pure call state machine (ringing → active → ended);
//! - **payloads** ([`payload`]) and **errors** ([`error`]): every client event is parsed into a
//!   typed payload, and every refusal has a stable wire code;
//! - the bridge to the media plane: a call is a room on the [`Sfu`]; each participant is the
//!   SFU participant `"{call_id}/{user_id}"` whose stream label is the user id.
//! - **call history** ([`history`]): every call, its participants' quality and its recordings
//!   in SQL, fed by the hub through a non-blocking bridge (`history_bridge`), read back over
//!   HTTP (docs/history.md);
//! - **recording control** (`hub::recording`): `start_recording`/`stop_recording`, the call's
//!   REC state, `recording_started`/`recording_stopped` (docs/protocol.md §8).
//!
//! ## Threading model
//! Socket.IO handlers run as tokio tasks (socketioxide spawns one per event). They share one
//! `Hub` whose state sits behind a `std::sync::Mutex`: operations are short and synchronous
//! under the lock, and the lock is never held across an `.await` (SFU requests happen between
//! two critical sections, the second re-checking the call still exists). Events are emitted
//! under the lock, which only queues them, so each socket sees them in state order. One
//! extra task consumes [`SfuEvents`]; each ringing call has a timer task; one task writes the
//! call history, in the order the hub reported (the hub only queues, never waits on SQL).
//!
//! Events of one socket may be handled concurrently (each is its own task). The protocol makes
//! that safe: every operation re-validates the call under the lock, and a client cannot name a
//! call before the ack or event that told it the call id.
//!
//! ## Invariants
//! - A socket's user is fixed at connect; payloads never name their sender.
//! - A user is in at most one live call (`busy`). A call is bound to the caller's initiating
//!   socket and, once accepted, to the callee's accepting socket; only those sockets act on
//!   it, and their disconnect ends it.
//! - Nothing a client sends panics the server or affects another call: every failure is an
//!   error ack plus an `error` event, and the socket stays connected.
//! - Every ended call with media frees both SFU participants (`Sfu::leave`).

pub mod call;
pub mod config;
pub mod error;
#[doc(hidden)]
pub mod fuzz_targets;
pub mod history;
mod history_bridge;
mod http;
mod hub;
pub mod identity;
mod ids;
mod limits;
pub mod metrics;
mod namespace;
pub mod payload;
pub mod presence;

use std::sync::Arc;

use socketioxide::layer::SocketIoLayer;
use socketioxide::SocketIo;
use switchboard_sfu::{Sfu, SfuEvents};

pub use call::{CallKind, EndReason};
pub use config::{ConfigError, Limits, PresenceScope, SignalingConfig};
pub use error::{ErrorEvent, SignalingError};
pub use hub::recording::RecordingConfig;
pub use hub::SignalingStats;
pub use identity::{Claims, Grants, Identity, NameError, PublishSource, TokenError, User};
pub use ids::{CallId, UserId};

/// A handle on the running signaling service. Cheap to clone.
#[derive(Clone)]
pub struct Signaling {
    hub: Arc<hub::Hub>,
    io: SocketIo,
}

impl Signaling {
    /// Builds the Socket.IO layer (mount it on the HTTP router) and starts consuming the SFU's
    /// events. Must be called inside a tokio runtime.
    pub fn new(
        config: SignalingConfig,
        sfu: Sfu,
        sfu_events: SfuEvents,
    ) -> Result<(SocketIoLayer, Signaling), ConfigError> {
        Self::with_history(config, sfu, sfu_events, None, RecordingConfig::default())
    }

    /// Like [`Signaling::new`], and reports every call transition, quality summary and
    /// finished recording to `history` (when given; the caller has already run
    /// [`history::HistoryStore::close_interrupted`]), recording into `recording`.
    pub fn with_history(
        config: SignalingConfig,
        sfu: Sfu,
        sfu_events: SfuEvents,
        history: Option<history::HistoryStore>,
        recording: RecordingConfig,
    ) -> Result<(SocketIoLayer, Signaling), ConfigError> {
        config.validate()?;
        // Transport frames may be somewhat larger than the event limit so that an oversized
        // event gets a `payload_too_large` error instead of a dropped connection; beyond this
        // the transport closes the connection.
        let transport_limit = config.max_payload_bytes * 2 + 4096;
        let connect_timeout = config.connect_timeout;
        let bridge = match history {
            Some(store) => history_bridge::HistoryBridge::start(store),
            None => history_bridge::HistoryBridge::disabled(),
        };
        let send_queue = config.send_queue_packets;
        let hub = Arc::new(hub::Hub::new(config, sfu).with_persistence(bridge, recording));
        let (layer, io) = SocketIo::builder()
            .max_payload(transport_limit as u64)
            .max_buffer_size(send_queue)
            .ws_max_message_size(transport_limit)
            .connect_timeout(connect_timeout)
            .with_state(Arc::clone(&hub))
            .build_layer();
        namespace::register(&io);
        hub.start_background_tasks();
        tokio::spawn(Arc::clone(&hub).run_sfu_events_then_close(sfu_events));
        Ok((layer, Signaling { hub, io }))
    }

    /// The HTTP routes signaling owns: `POST /api/session` (the demo sign-in) unless
    /// [`SignalingConfig::demo_sign_in`] is off, in which case the router is empty.
    pub fn router(&self) -> axum::Router {
        if self.hub.config.demo_sign_in {
            http::router(Arc::clone(&self.hub))
        } else {
            axum::Router::new()
        }
    }

    /// The token issuer, e.g. for routes that authenticate with `Authorization: Bearer`.
    pub fn tokens(&self) -> identity::TokenIssuer {
        self.hub.tokens.clone()
    }

    /// Issues a session token, as `POST /api/session` does.
    pub fn issue_session(&self, name: &str) -> Result<(String, User), NameError> {
        self.hub.issue(name)
    }

    pub fn stats(&self) -> SignalingStats {
        self.hub.stats()
    }

    /// Ends every call with reason `shutdown`, frees their SFU participants, refuses new calls
    /// and disconnects every socket. Does not stop the SFU.
    pub async fn shutdown(&self) {
        self.hub.shutdown().await;
        self.io.close().await;
    }

    /// Waits until every call transition and finished recording reported so far has been
    /// written to the history (e.g. after the SFU stopped, before closing the store).
    pub async fn flush_history(&self) {
        self.hub.flush_history().await;
    }
}
