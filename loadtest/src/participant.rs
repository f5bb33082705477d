//! A complete synthetic participant: signed in, connected, and doing protocol §6–7 media on its
//! own, so a caller (a test or the load tester) only places, accepts and ends calls.
//!
//! ## What the participant does by itself
//! A dispatcher task reads the signaling events and, for the participant's current call:
//! - `call_accepted` → builds the publisher (audio, plus video for video calls) and subscriber
//!   connections, sends the publisher offer and starts the synthetic senders; a receive-only
//!   participant ([`ParticipantConfig::publish`] off) builds the subscriber connection only;
//! - `webrtc_answer{publisher}` → applies it;
//! - `webrtc_offer{subscriber}` → answers it, every time (renegotiation);
//! - `track_published` / `track_unpublished` → keeps the call's list of the others' tracks
//!   ([`Participant::remote_tracks`]; not our own, which the server announces to us too);
//! - `call_ended` (also ours after `leave_call`) / disconnect → closes both connections;
//! - local ICE candidates → `webrtc_ice_candidate` (if [`ParticipantConfig::trickle_ice`]).
//!
//! Every signaling event is then passed on, in order, as [`ParticipantEvent::Signal`]; media
//! progress and failures arrive as [`ParticipantEvent::Media`], so a test can fail with the
//! real reason instead of a timeout.
//!
//! Handling is sequential on purpose: an SDP exchange finishes before the next event is looked
//! at, so a subscriber re-offer can never overtake the connection it is for, and candidates are
//! only sent after the description they belong to.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use webrtc::peer_connection::RTCPeerConnectionState;

use crate::media::{MediaKind, ReceiveStats};
use crate::peer::{PeerConfig, PeerError, PeerEvent, Publisher, Subscriber};
use crate::signaling::{
    self, CallId, CallKind, Identity, PeerTarget, ServerEvent, SignalingClient, SignalingConfig,
    SignalingError, SignalingEvents, TrackId, TrackSource, UserId, UserInfo,
};

/// Errors of [`Participant::join`].
#[derive(Debug, thiserror::Error)]
pub enum ParticipantError {
    /// Sign-in or Socket.IO connection failed.
    #[error(transparent)]
    Signaling(#[from] SignalingError),
    /// Connected, but the server never listed us as online.
    #[error("the server did not report us online within {0:?}")]
    NotOnline(std::time::Duration),
}

/// How long `join` waits for the server to list us online.
const ONLINE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Why the media of a call failed, as reported in [`MediaEvent::Failed`].
#[derive(Debug, thiserror::Error)]
pub enum MediaFailure {
    /// A peer-connection operation failed.
    #[error(transparent)]
    Peer(#[from] PeerError),
    /// The server refused or did not acknowledge an SDP.
    #[error(transparent)]
    Signaling(#[from] SignalingError),
    /// A media event arrived for a call we have no media for.
    #[error("{event} for call {call_id}, which has no media here")]
    NoMedia {
        /// The event.
        event: &'static str,
        /// Its call.
        call_id: CallId,
    },
}

/// Tunables of a participant.
#[derive(Clone, Debug)]
pub struct ParticipantConfig {
    /// Socket.IO client settings.
    pub signaling: SignalingConfig,
    /// Peer connection settings.
    pub peer: PeerConfig,
    /// Send local candidates with `webrtc_ice_candidate`. Optional per protocol (the SFU is
    /// ICE-lite and our SDPs already carry them); on by default because browsers do it, so the
    /// server path gets exercised.
    pub trickle_ice: bool,
    /// Publish audio (and video in video calls) in every call. `false` makes a receive-only
    /// participant, which opens no publisher connection and offers nothing: the SFU arms a
    /// publisher connection's connect timeout only at its first offer.
    pub publish: bool,
}

impl Default for ParticipantConfig {
    fn default() -> Self {
        Self {
            signaling: SignalingConfig::default(),
            peer: PeerConfig::default(),
            trickle_ice: true,
            publish: true,
        }
    }
}

/// Media progress of the current call.
#[derive(Debug)]
#[non_exhaustive]
pub enum MediaEvent {
    /// Both connections exist and the publisher offer was accepted by the server (not sent by
    /// a receive-only participant, which has no publisher connection).
    PublisherOffered {
        /// The call.
        call_id: CallId,
    },
    /// The SFU's publisher answer was applied.
    PublisherAnswered {
        /// The call.
        call_id: CallId,
    },
    /// A subscriber (re)offer was answered; `count` starts at 1.
    SubscriberAnswered {
        /// The call.
        call_id: CallId,
        /// How many subscriber offers this call has had.
        count: u32,
    },
    /// A connection changed state.
    PeerState {
        /// Which connection.
        target: PeerTarget,
        /// New state.
        state: RTCPeerConnectionState,
    },
    /// Something in the media setup failed; the call is left to the caller to end.
    Failed {
        /// The call.
        call_id: CallId,
        /// What failed.
        error: MediaFailure,
    },
}

/// What a participant reports.
#[derive(Debug)]
pub enum ParticipantEvent {
    /// A server event, after the participant acted on it.
    Signal(ServerEvent),
    /// Media progress.
    Media(MediaEvent),
}

/// Another participant's track in our call, as `track_published` announced it. (The server
/// announces our own tracks to us too; those are not remote and not kept.)
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteTrack {
    /// Whose track: also its `a=msid` stream id, the [`crate::TrackKey::stream_id`] it is
    /// counted under in [`Participant::receive_stats`].
    pub user_id: UserId,
    /// Its `a=msid` track id ([`crate::TrackKey::track_id`]).
    pub track_id: TrackId,
    /// Audio or video.
    pub kind: MediaKind,
    /// Microphone, camera or screen, when the server says.
    pub source: Option<TrackSource>,
}

/// The two connections of one call.
pub struct CallMedia {
    /// The call they belong to.
    pub call_id: CallId,
    /// Our media going up.
    pub publisher: Option<Publisher>,
    /// The others' media coming down.
    pub subscriber: Subscriber,
    subscriber_offers: Mutex<u32>,
    // std Mutex: one insert or remove per track event, never held across an await.
    remote_tracks: Mutex<BTreeMap<TrackId, RemoteTrack>>,
}

impl CallMedia {
    /// The others' tracks in this call: announced by `track_published` and not yet by
    /// `track_unpublished`, ordered by track id.
    pub fn remote_tracks(&self) -> Vec<RemoteTrack> {
        self.remote_tracks
            .lock()
            .expect("remote-tracks lock poisoned")
            .values()
            .cloned()
            .collect()
    }

    /// The addresses the publisher and subscriber connections receive from; both should be
    /// the SFU's media address.
    pub fn remote_addrs(&self) -> (Option<SocketAddr>, Option<SocketAddr>) {
        (
            self.publisher.as_ref().and_then(Publisher::remote_addr),
            self.subscriber.remote_addr(),
        )
    }

    async fn close(&self) {
        if let Some(publisher) = &self.publisher {
            if let Err(e) = publisher.close().await {
                tracing::debug!(error = %e, "closing publisher");
            }
        }
        if let Err(e) = self.subscriber.close().await {
            tracing::debug!(error = %e, "closing subscriber");
        }
    }
}

struct Shared {
    // std Mutex: only swapped or cloned, never held across an await.
    media: Mutex<Option<Arc<CallMedia>>>,
    receive: Arc<ReceiveStats>,
}

/// A signed-in, connected synthetic user.
pub struct Participant {
    identity: Identity,
    signaling: SignalingClient,
    shared: Arc<Shared>,
    dispatcher: JoinHandle<()>,
}

/// The receiving half of a participant: everything it saw and did, in order.
pub type ParticipantEvents = mpsc::UnboundedReceiver<ParticipantEvent>;

impl Participant {
    /// Signs in as `name` on `base_url` (e.g. `http://127.0.0.1:8080`) and connects.
    pub async fn join(
        http: &reqwest::Client,
        base_url: &str,
        name: &str,
        config: ParticipantConfig,
    ) -> Result<(Participant, ParticipantEvents), ParticipantError> {
        let identity = signaling::sign_in(http, base_url, name).await?;
        let (signaling, mut events) =
            SignalingClient::connect(base_url, &identity.token, config.signaling.clone()).await?;
        // Socket.IO acknowledges the connection before the server has registered the socket
        // (presence, event handlers): wait until a `presence` lists us, so that nobody who calls
        // us, and nothing we send, can race that registration. Events seen meanwhile are kept.
        let mut early = Vec::new();
        let online = tokio::time::timeout(ONLINE_TIMEOUT, async {
            while let Some(event) = events.recv().await {
                let listed = matches!(&event, ServerEvent::Presence { users }
                    if users.iter().any(|u| u.id == identity.user.id));
                early.push(event);
                if listed {
                    return true;
                }
            }
            false
        })
        .await;
        if online != Ok(true) {
            return Err(ParticipantError::NotOnline(ONLINE_TIMEOUT));
        }
        let shared = Arc::new(Shared {
            media: Mutex::new(None),
            receive: Arc::default(),
        });
        let (out_tx, out_rx) = mpsc::unbounded_channel();
        for event in early {
            let _ = out_tx.send(ParticipantEvent::Signal(event));
        }
        let dispatcher = tokio::spawn(
            Dispatcher {
                identity: identity.clone(),
                signaling: signaling.clone(),
                shared: Arc::clone(&shared),
                config,
                out: out_tx,
            }
            .run(events),
        );
        Ok((
            Participant {
                identity,
                signaling,
                shared,
                dispatcher,
            },
            out_rx,
        ))
    }

    /// Who we are.
    pub fn user(&self) -> &UserInfo {
        &self.identity.user
    }

    /// The signaling connection, for placing, accepting and ending calls.
    pub fn signaling(&self) -> &SignalingClient {
        &self.signaling
    }

    /// Everything our subscriber connections have received, across calls.
    pub fn receive_stats(&self) -> &Arc<ReceiveStats> {
        &self.shared.receive
    }

    /// The current call's connections, if a call is active.
    pub fn media(&self) -> Option<Arc<CallMedia>> {
        self.shared
            .media
            .lock()
            .expect("media lock poisoned")
            .clone()
    }

    /// The others' tracks in the current call (see [`CallMedia::remote_tracks`]); empty
    /// outside a call.
    pub fn remote_tracks(&self) -> Vec<RemoteTrack> {
        self.media()
            .map(|media| media.remote_tracks())
            .unwrap_or_default()
    }

    /// Disconnects and closes any media.
    pub async fn close(self) {
        self.signaling.close();
        self.dispatcher.abort();
        let media = self
            .shared
            .media
            .lock()
            .expect("media lock poisoned")
            .take();
        if let Some(media) = media {
            media.close().await;
        }
    }
}

struct Dispatcher {
    identity: Identity,
    signaling: SignalingClient,
    shared: Arc<Shared>,
    config: ParticipantConfig,
    out: mpsc::UnboundedSender<ParticipantEvent>,
}

impl Dispatcher {
    async fn run(self, mut signals: SignalingEvents) {
        let (peer_tx, mut peer_rx) = mpsc::unbounded_channel::<PeerEvent>();
        loop {
            tokio::select! {
                signal = signals.recv() => {
                    let Some(signal) = signal else { break };
                    let disconnected = matches!(signal, ServerEvent::Disconnected { .. });
                    self.on_signal(&signal, &peer_tx).await;
                    let _ = self.out.send(ParticipantEvent::Signal(signal));
                    if disconnected {
                        break;
                    }
                }
                Some(event) = peer_rx.recv() => self.on_peer_event(event),
            }
        }
    }

    fn current(&self, call_id: &CallId) -> Option<Arc<CallMedia>> {
        self.shared
            .media
            .lock()
            .expect("media lock poisoned")
            .as_ref()
            .filter(|m| &m.call_id == call_id)
            .cloned()
    }

    fn media_event(&self, event: MediaEvent) {
        if let MediaEvent::Failed { call_id, error } = &event {
            let user = &self.identity.user.name;
            // In a group call the others keep joining and leaving, so a subscriber re-offer
            // may be answered just after we left or the call ended: the server then refuses
            // the answer because the call is over for us, which our `call_ended` (already
            // queued) says anyway. Not a media failure; the `error` event is still passed on.
            if matches!(error, MediaFailure::Signaling(SignalingError::Refused { code, .. })
                if code == "not_a_participant" || code == "unknown_call")
            {
                tracing::debug!(%user, %call_id, %error, "negotiation crossed the end of our call");
                return;
            }
            tracing::warn!(%user, %call_id, %error, "media failed");
        }
        let _ = self.out.send(ParticipantEvent::Media(event));
    }

    async fn on_signal(&self, signal: &ServerEvent, peer_tx: &mpsc::UnboundedSender<PeerEvent>) {
        match signal {
            ServerEvent::CallAccepted { call_id, kind, .. } => {
                match self.start_media(call_id, *kind, peer_tx).await {
                    Err(error) => self.media_event(MediaEvent::Failed {
                        call_id: call_id.clone(),
                        error,
                    }),
                    Ok(true) => self.media_event(MediaEvent::PublisherOffered {
                        call_id: call_id.clone(),
                    }),
                    Ok(false) => {}
                }
            }
            ServerEvent::WebrtcAnswer {
                call_id,
                target: PeerTarget::Publisher,
                sdp,
            } => {
                let media = self.current(call_id);
                let result = match media.as_ref().and_then(|m| m.publisher.as_ref()) {
                    Some(publisher) => publisher.set_answer(sdp.clone()).await.map_err(Into::into),
                    None => Err(MediaFailure::NoMedia {
                        event: "webrtc_answer",
                        call_id: call_id.clone(),
                    }),
                };
                self.media_event(match result {
                    Ok(()) => MediaEvent::PublisherAnswered {
                        call_id: call_id.clone(),
                    },
                    Err(error) => MediaEvent::Failed {
                        call_id: call_id.clone(),
                        error,
                    },
                });
            }
            ServerEvent::WebrtcOffer {
                call_id,
                target: PeerTarget::Subscriber,
                sdp,
            } => {
                let event = match self.answer_subscriber(call_id, sdp).await {
                    Ok(count) => MediaEvent::SubscriberAnswered {
                        call_id: call_id.clone(),
                        count,
                    },
                    Err(error) => MediaEvent::Failed {
                        call_id: call_id.clone(),
                        error,
                    },
                };
                self.media_event(event);
            }
            ServerEvent::TrackPublished {
                call_id,
                user_id,
                track_id,
                kind,
                source,
            } if *user_id != self.identity.user.id => {
                if let Some(media) = self.current(call_id) {
                    let track = RemoteTrack {
                        user_id: user_id.clone(),
                        track_id: track_id.clone(),
                        kind: *kind,
                        source: *source,
                    };
                    media
                        .remote_tracks
                        .lock()
                        .expect("remote-tracks lock poisoned")
                        .insert(track_id.clone(), track);
                }
            }
            ServerEvent::TrackUnpublished {
                call_id, track_id, ..
            } => {
                if let Some(media) = self.current(call_id) {
                    media
                        .remote_tracks
                        .lock()
                        .expect("remote-tracks lock poisoned")
                        .remove(track_id);
                }
            }
            ServerEvent::CallEnded { call_id, .. } => {
                let ended = {
                    let mut media = self.shared.media.lock().expect("media lock poisoned");
                    if media.as_ref().is_some_and(|m| &m.call_id == call_id) {
                        media.take()
                    } else {
                        None
                    }
                };
                if let Some(media) = ended {
                    media.close().await;
                }
            }
            ServerEvent::Disconnected { .. } => {
                let media = self
                    .shared
                    .media
                    .lock()
                    .expect("media lock poisoned")
                    .take();
                if let Some(media) = media {
                    media.close().await;
                }
            }
            _ => {}
        }
    }

    /// Builds the call's connections and offers the publisher one; `Ok(false)` when there is
    /// none to offer (a receive-only participant).
    async fn start_media(
        &self,
        call_id: &CallId,
        kind: CallKind,
        peer_tx: &mpsc::UnboundedSender<PeerEvent>,
    ) -> Result<bool, MediaFailure> {
        let peer = &self.config.peer;
        let publisher = if self.config.publish {
            let stream_id = self.identity.user.id.as_str();
            let video = kind == CallKind::Video;
            Some(Publisher::new(peer, stream_id, video, peer_tx.clone()).await?)
        } else {
            None
        };
        let subscriber =
            Subscriber::new(peer, Arc::clone(&self.shared.receive), peer_tx.clone()).await?;
        let media = Arc::new(CallMedia {
            call_id: call_id.clone(),
            publisher,
            subscriber,
            subscriber_offers: Mutex::new(0),
            remote_tracks: Mutex::default(),
        });
        let previous = self
            .shared
            .media
            .lock()
            .expect("media lock poisoned")
            .replace(Arc::clone(&media));
        if let Some(previous) = previous {
            previous.close().await;
        }
        let Some(publisher) = &media.publisher else {
            return Ok(false);
        };
        let sdp = publisher.create_offer().await?;
        self.signaling.webrtc_offer(call_id, &sdp).await?;
        publisher.start_media();
        Ok(true)
    }

    async fn answer_subscriber(&self, call_id: &CallId, sdp: &str) -> Result<u32, MediaFailure> {
        let media = self.current(call_id).ok_or_else(|| MediaFailure::NoMedia {
            event: "webrtc_offer",
            call_id: call_id.clone(),
        })?;
        let answer = media.subscriber.answer(sdp.to_owned()).await?;
        self.signaling.webrtc_answer(call_id, &answer).await?;
        let mut count = media
            .subscriber_offers
            .lock()
            .expect("offer count lock poisoned");
        *count += 1;
        Ok(*count)
    }

    fn on_peer_event(&self, event: PeerEvent) {
        match event {
            PeerEvent::StateChanged { target, state } => {
                self.media_event(MediaEvent::PeerState { target, state })
            }
            PeerEvent::LocalCandidate { target, candidate } => {
                if !self.config.trickle_ice {
                    return;
                }
                let Some(call_id) = self
                    .shared
                    .media
                    .lock()
                    .expect("media lock poisoned")
                    .as_ref()
                    .map(|m| m.call_id.clone())
                else {
                    return;
                };
                // Fire and forget: the candidate is also in the SDP, so a refusal only matters
                // as a server bug, which the `error` event the server also sends will show.
                tracing::debug!(%call_id, ?target, candidate = %candidate.candidate, "trickling local candidate");
                let signaling = self.signaling.clone();
                tokio::spawn(async move {
                    if let Err(e) = signaling
                        .webrtc_ice_candidate(&call_id, target, &candidate)
                        .await
                    {
                        tracing::debug!(%call_id, ?target, error = %e, "candidate not accepted");
                    }
                });
            }
        }
    }
}
