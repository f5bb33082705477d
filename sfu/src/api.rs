//! The small API signaling drives the SFU with: an async handle that sends commands to the
//! media task, and the events the media task reports back.

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use crate::{ParticipantId, PublicationId, RoomId, SfuError};

/// Which of a participant's two peer connections a message is about.
///
/// Every participant has a *publisher* connection (the client offers, the SFU answers; it
/// carries the participant's own tracks up) and a *subscriber* connection (the SFU offers, the
/// client answers; it carries everyone else's tracks down). Each direction has exactly one
/// offerer, so renegotiation never collides ("glare").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PeerRole {
    Publisher,
    Subscriber,
}

/// Media kind of a publication.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TrackKind {
    Audio,
    Video,
}

impl std::fmt::Display for TrackKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TrackKind::Audio => "audio",
            TrackKind::Video => "video",
        })
    }
}

/// What one participant may do with its media, enforced by the SFU on what webrtc-rs actually
/// negotiated (the transceivers an offer created), never on a reading of the SDP text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MediaPolicy {
    /// May publish audio tracks.
    pub publish_audio: bool,
    /// May publish video tracks (camera or screen).
    pub publish_video: bool,
    /// Receives the others' tracks. Without it no subscriber connection is ever offered, so
    /// there is no connect deadline to miss either.
    pub subscribe: bool,
    /// Published tracks at most (the SFU's own `max_tracks_per_participant` applies too).
    pub max_tracks: usize,
}

impl MediaPolicy {
    /// Everything allowed; only the SFU's configured limits apply.
    pub const ALL: MediaPolicy = MediaPolicy {
        publish_audio: true,
        publish_video: true,
        subscribe: true,
        max_tracks: usize::MAX,
    };

    /// May publish tracks of `kind`.
    pub fn may_publish(&self, kind: TrackKind) -> bool {
        match kind {
            TrackKind::Audio => self.publish_audio,
            TrackKind::Video => self.publish_video,
        }
    }
}

impl Default for MediaPolicy {
    fn default() -> Self {
        Self::ALL
    }
}

/// An ICE candidate as browsers produce it (`RTCIceCandidateInit`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IceCandidate {
    pub candidate: String,
    #[serde(default)]
    pub sdp_mid: Option<String>,
    #[serde(default, rename = "sdpMLineIndex")]
    pub sdp_mline_index: Option<u16>,
    #[serde(default)]
    pub username_fragment: Option<String>,
}

/// What the media task reports to signaling.
#[derive(Debug, Clone)]
pub enum SfuEvent {
    /// The SFU (re)negotiated the participant's subscriber connection: deliver this offer and
    /// pass the answer to [`Sfu::subscriber_answer`].
    SubscriberOffer {
        participant: ParticipantId,
        sdp: String,
    },
    /// A peer connection finished ICE + DTLS.
    Connected {
        participant: ParticipantId,
        role: PeerRole,
    },
    /// A participant started publishing a track; its subscribers are being renegotiated.
    PublicationAdded {
        room: RoomId,
        participant: ParticipantId,
        /// The id subscribers see (the forwarded track's `msid` track id).
        publication: PublicationId,
        kind: TrackKind,
        /// The publisher's own track id (its `a=msid`), so signaling can tell which of the
        /// client's tracks (microphone, camera, screen) this is.
        client_track_id: String,
    },
    /// A publication ended (track removed by renegotiation, or its publisher left); its
    /// subscribers are being renegotiated.
    PublicationRemoved {
        room: RoomId,
        participant: ParticipantId,
        publication: PublicationId,
    },
    /// Periodic connection quality of one participant: the worst of what it sends (measured
    /// by the SFU on arrival) and what it receives (from its receiver reports).
    Quality {
        room: RoomId,
        participant: ParticipantId,
        quality: crate::quality::Quality,
    },
    /// The first RTP packet was forwarded in this room: media is flowing (call setup done).
    MediaFlowing { room: RoomId },
    /// Recording of a room stopped (for every participant at once).
    RecordingStopped {
        room: RoomId,
        reason: RecordingStopReason,
    },
    /// A participant's recording file was created (when recording starts, or when someone
    /// joins a recorded room): `session` is the one given to [`Sfu::start_recording`]. Comes
    /// before the file's [`SfuEvent::RecordingFinished`].
    RecordingFileStarted {
        room: RoomId,
        participant: ParticipantId,
        session: String,
        path: std::path::PathBuf,
    },
    /// One participant's recording file is complete (or could not be completed).
    RecordingFinished {
        room: RoomId,
        participant: ParticipantId,
        result: Result<crate::recording::RecordingSummary, String>,
    },
    /// The room's dominant speaker changed (from RFC 6464 audio levels).
    ActiveSpeaker {
        room: RoomId,
        participant: ParticipantId,
    },
    /// A peer connection failed or never connected within the connect timeout. The participant
    /// has been removed from its room.
    ParticipantFailed {
        participant: ParticipantId,
        reason: String,
    },
}

/// Why a room's recording stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordingStopReason {
    /// [`Sfu::stop_recording`] was called.
    Requested,
    /// The room's last participant left.
    RoomClosed,
    /// Free space in the recording directory fell below the configured floor.
    DiskFull,
    /// The SFU is shutting down.
    Shutdown,
}

/// Counters for operators and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SfuStats {
    pub rooms: usize,
    pub participants: usize,
    pub publications: usize,
    pub subscriptions: usize,
    pub rtp_packets_received: u64,
    pub rtp_packets_forwarded: u64,
    pub datagrams_dropped_unknown_source: u64,
    pub datagrams_dropped_send_buffer_full: u64,
    pub keyframe_requests_sent: u64,
    pub recordings_active: usize,
    /// NACKed packets retransmitted to subscribers.
    pub rtp_packets_retransmitted: u64,
    /// NACKed packets not retransmitted (repeated within 100 ms, or over the budget).
    pub rtp_retransmissions_suppressed: u64,
}

pub(crate) type Reply<T> = oneshot::Sender<Result<T, SfuError>>;

/// Requests from signaling to the media task.
pub(crate) enum Command {
    Join {
        room: RoomId,
        participant: ParticipantId,
        stream_label: String,
        policy: MediaPolicy,
        reply: Reply<()>,
    },
    Publish {
        participant: ParticipantId,
        offer_sdp: String,
        reply: Reply<String>,
    },
    SubscriberAnswer {
        participant: ParticipantId,
        answer_sdp: String,
        reply: Reply<()>,
    },
    RemoteCandidate {
        participant: ParticipantId,
        role: PeerRole,
        candidate: IceCandidate,
        reply: Reply<()>,
    },
    Leave {
        participant: ParticipantId,
        reply: Reply<()>,
    },
    StartRecording {
        room: RoomId,
        directory: std::path::PathBuf,
        video: bool,
        session: String,
        /// For the blocking file work to hand its recorders back ([`Command::RecordersReady`]).
        back: mpsc::Sender<Command>,
        reply: Reply<Vec<std::path::PathBuf>>,
    },
    /// Internal: recorders created off the media task (finding 16), back to it.
    RecordersReady(crate::engine::RecordersReady),
    StopRecording {
        room: RoomId,
        reply: Reply<()>,
    },
    Stats {
        reply: oneshot::Sender<SfuStats>,
    },
    Shutdown {
        reply: oneshot::Sender<()>,
    },
}

/// A cheap, cloneable handle on the running SFU.
#[derive(Clone)]
pub struct Sfu {
    pub(crate) commands: mpsc::Sender<Command>,
    pub(crate) media_addr: std::net::SocketAddr,
    pub(crate) bound_addr: std::net::SocketAddr,
}

impl Sfu {
    /// The media address browsers send to: the one in the ICE candidate. The bound address,
    /// unless `public_ip` / `announce_addr` say otherwise (see [`SfuConfig::advertised_addr`]).
    ///
    /// [`SfuConfig::advertised_addr`]: crate::SfuConfig::advertised_addr
    pub fn media_addr(&self) -> std::net::SocketAddr {
        self.media_addr
    }

    /// Where the media socket is actually bound (the real port when bound to port 0).
    pub fn bound_addr(&self) -> std::net::SocketAddr {
        self.bound_addr
    }

    /// Completes when the media task has ended: after [`Sfu::shutdown`], or unexpectedly
    /// (a panic outside the per-participant guards). A server should treat the latter as
    /// fatal: without the media task no call carries media.
    pub async fn closed(&self) {
        self.commands.closed().await;
    }

    /// Adds a participant to a room, creating the room on first join. Its subscriber
    /// connection is offered (as [`SfuEvent::SubscriberOffer`]) as soon as there is something
    /// to subscribe to.
    pub async fn join(
        &self,
        room: RoomId,
        participant: ParticipantId,
        stream_label: impl Into<String>,
    ) -> Result<(), SfuError> {
        self.join_with_policy(room, participant, stream_label, MediaPolicy::ALL)
            .await
    }

    /// [`Sfu::join`] for a participant limited by `policy`: its offers are refused
    /// ([`SfuError::KindNotAllowed`], [`SfuError::TooManyTracks`]) when what webrtc-rs
    /// negotiated from them would receive more, and without `subscribe` it gets no subscriber
    /// connection.
    pub async fn join_with_policy(
        &self,
        room: RoomId,
        participant: ParticipantId,
        stream_label: impl Into<String>,
        policy: MediaPolicy,
    ) -> Result<(), SfuError> {
        let stream_label = stream_label.into();
        self.request(|reply| Command::Join {
            room,
            participant,
            stream_label,
            policy,
            reply,
        })
        .await
    }

    /// Applies the participant's publisher offer and returns the SFU's answer. An offer that
    /// breaks the participant's [`MediaPolicy`] or carries a data channel is undone (the
    /// connection is as before it) and refused.
    pub async fn publish(
        &self,
        participant: ParticipantId,
        offer_sdp: String,
    ) -> Result<String, SfuError> {
        self.request(|reply| Command::Publish {
            participant,
            offer_sdp,
            reply,
        })
        .await
    }

    /// Applies the participant's answer to the last [`SfuEvent::SubscriberOffer`].
    pub async fn subscriber_answer(
        &self,
        participant: ParticipantId,
        answer_sdp: String,
    ) -> Result<(), SfuError> {
        self.request(|reply| Command::SubscriberAnswer {
            participant,
            answer_sdp,
            reply,
        })
        .await
    }

    /// Adds a trickled candidate of the client's. The SFU is ICE-lite and learns client
    /// addresses from their connectivity checks, so this is optional for clients.
    pub async fn add_remote_candidate(
        &self,
        participant: ParticipantId,
        role: PeerRole,
        candidate: IceCandidate,
    ) -> Result<(), SfuError> {
        self.request(|reply| Command::RemoteCandidate {
            participant,
            role,
            candidate,
            reply,
        })
        .await
    }

    /// Removes a participant: closes both connections, stops its publications and
    /// renegotiates the others. Removing the last participant removes the room.
    pub async fn leave(&self, participant: ParticipantId) -> Result<(), SfuError> {
        #[cfg(feature = "fault-injection")]
        crate::fault::before_leave().await;
        self.request(|reply| Command::Leave { participant, reply })
            .await
    }

    /// Starts recording every participant of a room, each to its own WebM file in
    /// `directory` (participants joining later get theirs when they join), as recording
    /// session `session` (reported with every file: [`SfuEvent::RecordingFileStarted`]).
    /// Directory and file creation and the free-space check run on a blocking thread, never
    /// on the media task. `video` records a
    /// video track too. Returns the files started. Finished files are reported as
    /// [`SfuEvent::RecordingFinished`] when recording stops, a participant leaves, the room
    /// closes or the SFU shuts down.
    pub async fn start_recording(
        &self,
        room: RoomId,
        directory: impl Into<std::path::PathBuf>,
        video: bool,
        session: impl Into<String>,
    ) -> Result<Vec<std::path::PathBuf>, SfuError> {
        let directory = directory.into();
        let (session, back) = (session.into(), self.commands.clone());
        self.request(|reply| Command::StartRecording {
            room,
            directory,
            video,
            session,
            back,
            reply,
        })
        .await
    }

    /// Stops a room's recording; files are finalised in the background and reported as
    /// [`SfuEvent::RecordingFinished`].
    pub async fn stop_recording(&self, room: RoomId) -> Result<(), SfuError> {
        self.request(|reply| Command::StopRecording { room, reply })
            .await
    }

    pub async fn stats(&self) -> SfuStats {
        let (reply, response) = oneshot::channel();
        if self.commands.send(Command::Stats { reply }).await.is_err() {
            return SfuStats::default();
        }
        response.await.unwrap_or_default()
    }

    /// Closes every connection and stops the media task. Idempotent.
    pub async fn shutdown(&self) {
        let (reply, response) = oneshot::channel();
        if self
            .commands
            .send(Command::Shutdown { reply })
            .await
            .is_ok()
        {
            let _ = response.await;
        }
    }

    async fn request<T>(&self, command: impl FnOnce(Reply<T>) -> Command) -> Result<T, SfuError> {
        let (reply, response) = oneshot::channel();
        self.commands
            .send(command(reply))
            .await
            .map_err(|_| SfuError::ShuttingDown)?;
        response.await.map_err(|_| SfuError::ShuttingDown)?
    }
}

/// Receives what the media task reports; see [`SfuEvent`].
pub type SfuEvents = mpsc::UnboundedReceiver<SfuEvent>;
