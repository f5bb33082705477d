//! A participant's two WebRTC peer connections to the SFU (protocol §6), on webrtc-rs 0.21.
//!
//! - [`Publisher`]: we offer, with one Opus and one VP8 [`TrackLocalStaticRTP`], and once
//!   connected send the looped clips of [`crate::clip`] (Opus 50 packets/s; VP8 30 frames/s,
//!   ~1.5 Mbit/s, packetized by webrtc-rs's VP8 payloader, marker bit on each frame's last
//!   packet), each payload carrying the probe trailer of [`crate::media`]. A PLI or FIR from
//!   the SFU makes the video sender jump to the clip's next keyframe. A receive-only member
//!   opens none.
//! - [`Subscriber`]: the SFU offers, as often as its track set changes; we answer each offer and
//!   count every received RTP packet per track in a shared [`ReceiveStats`].
//!
//! Both gather host candidates on one configured UDP address — `127.0.0.1:0` by default, since
//! the tests run the SFU on loopback and webrtc-rs skips loopback interfaces when it expands a
//! wildcard address. We wait for gathering to finish before handing out an SDP, so every SDP is
//! complete on its own; local candidates are still reported as [`PeerEvent::LocalCandidate`] for
//! callers that trickle them (the SFU is ICE-lite and does not need them).

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use rtc::interceptor::{Attribute, Interceptor, Packet, Slot, StreamInfo, TaggedPacket};
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::media_engine::{MIME_TYPE_OPUS, MIME_TYPE_VP8};
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtp;
use rtc::rtp_transceiver::rtp_sender::{
    RTCPFeedback, RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters,
    RTCRtpEncodingParameters, RtpCodecKind,
};
use rtc::sansio::Protocol;
use std::collections::VecDeque;
use std::sync::atomic::AtomicBool;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_local::{TrackLocal, TrackLocalEvent};
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    register_default_interceptors, MediaEngine, PeerConnection, PeerConnectionBuilder,
    PeerConnectionEventHandler, RTCIceGatheringState, RTCPeerConnectionIceEvent,
    RTCPeerConnectionState, RTCSessionDescription, Registry, SettingEngineBuilder,
};
use webrtc::rtp_transceiver::RtpSender;

use crate::clip::Clip;
use crate::media::{self, MediaKind, Probe, ReceiveStats, SendStats, TrackKey};
use crate::signaling::{IceCandidateInit, PeerTarget};
use crate::traffic::{ObservingRuntime, TrafficLog};

/// Errors of the peer-connection layer.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    /// webrtc-rs refused an operation (bad SDP, closed connection, ...).
    #[error("webrtc: {0}")]
    WebRtc(#[from] webrtc::error::Error),
    /// ICE gathering did not complete in time, so we have no complete SDP to send.
    #[error("ICE gathering did not complete within {0:?}")]
    GatheringTimeout(Duration),
    /// `set_local_description` succeeded but there is no local description to send.
    #[error("no local description after set_local_description")]
    NoLocalDescription,
}

/// Tunables shared by both peer connections.
#[derive(Clone, Debug)]
pub struct PeerConfig {
    /// The one local UDP address each connection binds (port 0 = ephemeral). A concrete
    /// address, not a wildcard: webrtc-rs expands wildcards to non-loopback interfaces only.
    pub udp_addr: SocketAddr,
    /// How long ICE gathering may take before an SDP is sent.
    pub gather_timeout: Duration,
}

impl Default for PeerConfig {
    fn default() -> Self {
        Self {
            udp_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            gather_timeout: Duration::from_secs(5),
        }
    }
}

/// Things a peer connection tells its owner.
#[derive(Clone, Debug)]
pub enum PeerEvent {
    /// A local ICE candidate to (optionally) trickle to the server.
    LocalCandidate {
        /// Which connection.
        target: PeerTarget,
        /// The candidate, in protocol form.
        candidate: IceCandidateInit,
    },
    /// The connection state changed.
    StateChanged {
        /// Which connection.
        target: PeerTarget,
        /// New state.
        state: RTCPeerConnectionState,
    },
}

fn opus() -> RTCRtpCodecParameters {
    RTCRtpCodecParameters {
        rtp_codec: RTCRtpCodec {
            mime_type: MIME_TYPE_OPUS.to_owned(),
            clock_rate: 48_000,
            channels: 2,
            sdp_fmtp_line: "minptime=10;useinbandfec=1".to_owned(),
            rtcp_feedback: vec![],
        },
        payload_type: 111,
    }
}

fn vp8() -> RTCRtpCodecParameters {
    let fb = |typ: &str, parameter: &str| RTCPFeedback {
        typ: typ.to_owned(),
        parameter: parameter.to_owned(),
    };
    RTCRtpCodecParameters {
        rtp_codec: RTCRtpCodec {
            mime_type: MIME_TYPE_VP8.to_owned(),
            clock_rate: 90_000,
            channels: 0,
            sdp_fmtp_line: String::new(),
            rtcp_feedback: vec![
                fb("goog-remb", ""),
                fb("ccm", "fir"),
                fb("nack", ""),
                fb("nack", "pli"),
            ],
        },
        payload_type: 96,
    }
}

/// Passes inbound keyframe requests (PLI, FIR) on to the application and drops every other
/// inbound RTCP packet at the end of the chain, after the interceptors that act on it (as in
/// webrtc-rs's `rtcp-processing` example): without it, webrtc-rs never tells a sender about a
/// PLI.
#[derive(Default)]
struct KeyframeRequestInterceptor {
    read_queue: VecDeque<TaggedPacket>,
    write_queue: VecDeque<TaggedPacket>,
}

impl Protocol<TaggedPacket, TaggedPacket, ()> for KeyframeRequestInterceptor {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = rtc::shared::error::Error;
    type Time = std::time::Instant;

    fn handle_read(&mut self, mut msg: TaggedPacket) -> Result<(), Self::Error> {
        if let Packet::Rtcp(packets) = &msg.message.packet {
            let requests: Vec<Box<dyn rtc::rtcp::Packet>> = packets
                .iter()
                .filter(|p| {
                    let any = p.as_any();
                    any.is::<PictureLossIndication>() || any.is::<FullIntraRequest>()
                })
                .cloned()
                .collect();
            if requests.is_empty() {
                return Ok(());
            }
            msg.message.packet = Packet::Rtcp(requests);
            msg.message.add(Attribute::DeliverToApplication);
        }
        self.read_queue.push_back(msg);
        Ok(())
    }

    fn poll_read(&mut self) -> Option<Self::Rout> {
        self.read_queue.pop_front()
    }

    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        self.write_queue.push_back(msg);
        Ok(())
    }

    fn poll_write(&mut self) -> Option<Self::Wout> {
        self.write_queue.pop_front()
    }
}

impl Interceptor for KeyframeRequestInterceptor {
    fn bind_local_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_local_stream(&mut self, _info: &StreamInfo) {}
    fn bind_remote_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_remote_stream(&mut self, _info: &StreamInfo) {}
}

struct Handler {
    target: PeerTarget,
    events: mpsc::UnboundedSender<PeerEvent>,
    gathering: watch::Sender<RTCIceGatheringState>,
    state: watch::Sender<RTCPeerConnectionState>,
    /// Subscriber only: where received packets are counted.
    receive: Option<Arc<ReceiveStats>>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_candidate(&self, event: RTCPeerConnectionIceEvent) {
        match event.candidate.to_json() {
            Ok(init) => {
                let candidate = IceCandidateInit {
                    candidate: init.candidate,
                    sdp_mid: init.sdp_mid,
                    sdp_mline_index: init.sdp_mline_index,
                    username_fragment: init.username_fragment,
                };
                let _ = self.events.send(PeerEvent::LocalCandidate {
                    target: self.target,
                    candidate,
                });
            }
            Err(e) => {
                tracing::warn!(target = ?self.target, error = %e, "unserialisable local candidate")
            }
        }
    }

    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        self.gathering.send_replace(state);
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        tracing::debug!(target = ?self.target, %state, "peer connection state");
        self.state.send_replace(state);
        let _ = self.events.send(PeerEvent::StateChanged {
            target: self.target,
            state,
        });
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        let Some(stats) = self.receive.clone() else {
            return;
        };
        // Counting runs on its own task: `on_track` must return for the driver to go on.
        tokio::spawn(async move {
            let key = TrackKey {
                stream_id: track.stream_id().await.to_string(),
                track_id: track.track_id().await.to_string(),
            };
            let kind = match track.kind().await {
                RtpCodecKind::Video => MediaKind::Video,
                _ => MediaKind::Audio,
            };
            tracing::debug!(?key, ?kind, "remote track");
            let counters = stats.track(key, kind);
            while let Some(event) = track.poll().await {
                match event {
                    TrackRemoteEvent::OnRtpPacket(packet) => counters.record_at(
                        &packet.payload,
                        packet.header.marker,
                        Some(packet.header.timestamp),
                        media::unix_micros(),
                    ),
                    TrackRemoteEvent::OnEnded => break,
                    _ => {}
                }
            }
        });
    }
}

/// One webrtc-rs connection plus the watch channels its handler feeds.
struct Pc {
    target: PeerTarget,
    pc: Arc<dyn PeerConnection>,
    gathering: watch::Receiver<RTCIceGatheringState>,
    state: watch::Receiver<RTCPeerConnectionState>,
    gather_timeout: Duration,
    traffic: Arc<TrafficLog>,
}

impl Pc {
    async fn build(
        target: PeerTarget,
        config: &PeerConfig,
        events: mpsc::UnboundedSender<PeerEvent>,
        receive: Option<Arc<ReceiveStats>>,
    ) -> Result<Pc, PeerError> {
        let mut media_engine = MediaEngine::default();
        media_engine.register_codec(opus(), RtpCodecKind::Audio)?;
        media_engine.register_codec(vp8(), RtpCodecKind::Video)?;
        // NACK responder/generator and RTCP sender/receiver reports, as a browser would have.
        let registry = register_default_interceptors(Registry::new(), &mut media_engine)?;
        // Last in the chain: hands inbound PLI/FIR to the application (the publisher answers
        // them with a keyframe); all other inbound RTCP stays with the interceptors.
        let registry = registry.with(Slot::from(14_000), KeyframeRequestInterceptor::default());
        let setting_engine = SettingEngineBuilder::new()
            .with_include_loopback_candidate(true)
            .build();
        let (gathering_tx, gathering) = watch::channel(RTCIceGatheringState::New);
        let (state_tx, state) = watch::channel(RTCPeerConnectionState::New);
        let handler = Arc::new(Handler {
            target,
            events,
            gathering: gathering_tx,
            state: state_tx,
            receive,
        });
        let traffic = Arc::new(TrafficLog::default());
        let pc = PeerConnectionBuilder::new()
            .with_runtime(Arc::new(ObservingRuntime::new(Arc::clone(&traffic))))
            .with_media_engine(media_engine)
            .with_interceptor_registry(registry)
            .with_setting_engine(setting_engine)
            .with_handler(handler)
            .with_udp_addrs(vec![config.udp_addr])
            .build()
            .await?;
        Ok(Pc {
            target,
            pc: Arc::new(pc),
            gathering,
            state,
            gather_timeout: config.gather_timeout,
            traffic,
        })
    }

    /// Sets `desc` as local description and returns the SDP once gathering is complete, so it
    /// carries our candidates.
    async fn set_local_and_gather(&self, desc: RTCSessionDescription) -> Result<String, PeerError> {
        self.pc.set_local_description(desc).await?;
        let mut gathering = self.gathering.clone();
        tokio::time::timeout(
            self.gather_timeout,
            gathering.wait_for(|s| *s == RTCIceGatheringState::Complete),
        )
        .await
        .map_err(|_| PeerError::GatheringTimeout(self.gather_timeout))?
        .expect("handler owns the watch sender while the pc lives");
        Ok(self
            .pc
            .local_description()
            .await
            .ok_or(PeerError::NoLocalDescription)?
            .sdp)
    }

    fn remote_addr(&self) -> Option<SocketAddr> {
        self.traffic.main_peer()
    }
}

/// The connection we send our media on. We offer; the SFU answers.
pub struct Publisher {
    inner: Pc,
    /// (kind, track, its sender): audio always, video for video calls.
    tracks: Vec<(MediaKind, Arc<TrackLocalStaticRTP>, Arc<dyn RtpSender>)>,
    stats: Arc<SendStats>,
    pumps: std::sync::Mutex<Vec<JoinHandle<()>>>,
}

fn local_track(
    stream_id: &str,
    kind: RtpCodecKind,
    codec: RTCRtpCodec,
) -> Arc<TrackLocalStaticRTP> {
    let label = match kind {
        RtpCodecKind::Video => "video",
        _ => "audio",
    };
    Arc::new(TrackLocalStaticRTP::new(MediaStreamTrack::new(
        stream_id.to_owned(),
        format!("{label}-{}", rand::random::<u32>()),
        format!("synthetic {label}"),
        kind,
        vec![RTCRtpEncodingParameters {
            rtp_coding_parameters: RTCRtpCodingParameters {
                ssrc: Some(rand::random::<u32>()),
                ..Default::default()
            },
            codec,
            ..Default::default()
        }],
    )))
}

impl Publisher {
    /// Builds the connection with one audio track and, if `video`, one video track, all in
    /// MediaStream `stream_id` (use the user id, so our msid matches what the SFU announces).
    pub async fn new(
        config: &PeerConfig,
        stream_id: &str,
        video: bool,
        events: mpsc::UnboundedSender<PeerEvent>,
    ) -> Result<Publisher, PeerError> {
        let inner = Pc::build(PeerTarget::Publisher, config, events, None).await?;
        let mut tracks = Vec::with_capacity(2);
        let mut wanted = vec![(MediaKind::Audio, RtpCodecKind::Audio, opus().rtp_codec)];
        if video {
            wanted.push((MediaKind::Video, RtpCodecKind::Video, vp8().rtp_codec));
        }
        for (kind, codec_kind, codec) in wanted {
            let track = local_track(stream_id, codec_kind, codec);
            let sender = inner
                .pc
                .add_track(Arc::clone(&track) as Arc<dyn TrackLocal>)
                .await?;
            tracks.push((kind, track, sender));
        }
        Ok(Publisher {
            inner,
            tracks,
            stats: Arc::default(),
            pumps: std::sync::Mutex::default(),
        })
    }

    /// Creates the offer and returns its SDP (with our candidates) for `webrtc_offer`.
    pub async fn create_offer(&self) -> Result<String, PeerError> {
        let offer = self.inner.pc.create_offer(None).await?;
        self.inner.set_local_and_gather(offer).await
    }

    /// Applies the SFU's answer.
    pub async fn set_answer(&self, sdp: String) -> Result<(), PeerError> {
        let answer = RTCSessionDescription::answer(sdp)?;
        self.inner.pc.set_remote_description(answer).await?;
        Ok(())
    }

    /// Starts the synthetic audio and video senders. They wait for the connection to be
    /// connected, then pace themselves; packets refused by the connection are counted in
    /// [`SendStats::write_errors`]. Call once per connection: a second call starts a second
    /// set of senders.
    pub fn start_media(&self) {
        let mut pumps = self.pumps.lock().expect("pump list lock poisoned");
        for (kind, track, sender) in &self.tracks {
            pumps.push(tokio::spawn(pump(
                *kind,
                Arc::clone(track),
                Arc::clone(sender),
                self.inner.state.clone(),
                Arc::clone(&self.stats),
            )));
        }
    }

    /// The local track of `kind`, for tests that write their own (e.g. hostile) RTP on it
    /// next to or instead of [`Publisher::start_media`].
    pub fn track(&self, kind: MediaKind) -> Option<Arc<TrackLocalStaticRTP>> {
        self.tracks
            .iter()
            .find(|(k, _, _)| *k == kind)
            .map(|(_, track, _)| Arc::clone(track))
    }

    /// Stops the synthetic senders started by [`Publisher::start_media`]; the connection
    /// stays up (a test then writes its own RTP on [`Publisher::track`]).
    pub fn stop_media(&self) {
        for pump in self
            .pumps
            .lock()
            .expect("pump list lock poisoned")
            .drain(..)
        {
            pump.abort();
        }
    }

    /// What has been sent so far.
    pub fn stats(&self) -> &Arc<SendStats> {
        &self.stats
    }

    /// Current connection state.
    pub fn state(&self) -> RTCPeerConnectionState {
        *self.inner.state.borrow()
    }

    /// The remote address this connection received the most bytes from (for a connection to
    /// the SFU: its media address). Measured on the socket, see [`crate::traffic`].
    pub fn remote_addr(&self) -> Option<SocketAddr> {
        self.inner.remote_addr()
    }

    /// Datagrams exchanged per remote address.
    pub fn traffic(&self) -> &Arc<TrafficLog> {
        &self.inner.traffic
    }

    /// Stops the senders and closes the connection.
    pub async fn close(&self) -> Result<(), PeerError> {
        for pump in self
            .pumps
            .lock()
            .expect("pump list lock poisoned")
            .drain(..)
        {
            pump.abort();
        }
        self.inner.pc.close().await?;
        Ok(())
    }

    /// Which connection this is.
    pub fn target(&self) -> PeerTarget {
        self.inner.target
    }
}

/// Sends one synthetic track until the connection fails or closes.
async fn pump(
    kind: MediaKind,
    track: Arc<TrackLocalStaticRTP>,
    sender: Arc<dyn RtpSender>,
    mut state: watch::Receiver<RTCPeerConnectionState>,
    stats: Arc<SendStats>,
) {
    let connected = state
        .wait_for(|s| {
            matches!(
                s,
                RTCPeerConnectionState::Connected
                    | RTCPeerConnectionState::Failed
                    | RTCPeerConnectionState::Closed
            )
        })
        .await
        .map(|s| *s == RTCPeerConnectionState::Connected)
        .unwrap_or(false);
    if !connected {
        return;
    }
    // rtc's write_rtp requires the payload type of a negotiated codec and the track's SSRC.
    let payload_type = match sender.get_parameters().await {
        Ok(p) => match p.rtp_parameters.codecs.first() {
            Some(codec) => codec.payload_type,
            None => {
                tracing::warn!(?kind, "publisher sender has no negotiated codec");
                return;
            }
        },
        Err(e) => {
            tracing::warn!(?kind, error = %e, "publisher sender parameters unavailable");
            return;
        }
    };
    let Some(ssrc) = track_ssrc(&track).await else {
        tracing::warn!(?kind, "publisher track has no ssrc");
        return;
    };
    let clip = Clip::for_kind(kind);
    // Keyframe requests arrive on the track's event stream; the sender only looks at a flag.
    let keyframe_wanted = Arc::new(AtomicBool::new(false));
    let rtcp_watcher = (kind == MediaKind::Video).then(|| {
        let (track, wanted, stats) = (
            Arc::clone(&track),
            Arc::clone(&keyframe_wanted),
            Arc::clone(&stats),
        );
        tokio::spawn(async move {
            while let Some(event) = track.poll().await {
                if let TrackLocalEvent::OnRtcpPacket(_) = event {
                    stats.keyframe_requests.fetch_add(1, Ordering::Relaxed);
                    wanted.store(true, Ordering::Relaxed);
                }
            }
        })
    });
    let _abort_watcher = AbortOnDrop(rtcp_watcher);
    let mut payloader: Box<dyn rtp::packetizer::Payloader> = match kind {
        MediaKind::Audio => Box::new(rtp::codec::opus::OpusPayloader),
        MediaKind::Video => Box::<rtp::codec::vp8::Vp8Payloader>::default(),
    };
    let mut ticker = tokio::time::interval(clip.frame_duration);
    // Late ticks are sent late, not in a burst: a real encoder does not catch up either.
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut rtp_seq: u16 = rand::random();
    let mut rtp_ts: u32 = rand::random();
    let mut probe_seq: u32 = 0;
    let mut frame_index: u64 = 0;
    let mut position: usize = 0;
    let mut failures_in_a_row = 0u32;
    loop {
        ticker.tick().await;
        if matches!(
            *state.borrow(),
            RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed
        ) {
            return;
        }
        if keyframe_wanted.swap(false, Ordering::Relaxed) && !clip.frames[position].keyframe {
            // Jump ahead to the clip's next keyframe: the decoder resyncs there, and the RTP
            // timestamp still advances one frame, so the stream stays continuous.
            position = clip.next_keyframe(position);
            stats.keyframes_on_request.fetch_add(1, Ordering::Relaxed);
        }
        let frame = &clip.frames[position];
        position = (position + 1) % clip.frames.len();
        let now = media::unix_micros();
        let payloads = match payloader.payload(PAYLOAD_MTU, &frame.data) {
            Ok(p) if !p.is_empty() => p,
            _ => continue,
        };
        let last = payloads.len() - 1;
        for (i, payload) in payloads.into_iter().enumerate() {
            let payload = media::with_probe(
                &payload,
                Probe {
                    seq: probe_seq,
                    rtp_timestamp: rtp_ts,
                    sent_at_us: now,
                },
            );
            let len = payload.len() as u64;
            let packet = rtp::Packet {
                header: rtp::header::Header {
                    version: 2,
                    // Audio: marker on the first packet of a talk spurt; video: end of frame.
                    marker: match kind {
                        MediaKind::Audio => frame_index == 0,
                        MediaKind::Video => i == last,
                    },
                    payload_type,
                    sequence_number: rtp_seq,
                    timestamp: rtp_ts,
                    ssrc,
                    ..Default::default()
                },
                payload,
            };
            rtp_seq = rtp_seq.wrapping_add(1);
            probe_seq = probe_seq.wrapping_add(1);
            match track.write_rtp(packet).await {
                Ok(()) => {
                    failures_in_a_row = 0;
                    let counter = match kind {
                        MediaKind::Audio => &stats.audio_packets,
                        MediaKind::Video => &stats.video_packets,
                    };
                    counter.fetch_add(1, Ordering::Relaxed);
                    stats.bytes.fetch_add(len, Ordering::Relaxed);
                }
                Err(e) => {
                    stats.write_errors.fetch_add(1, Ordering::Relaxed);
                    failures_in_a_row += 1;
                    // Logged once per failure streak, not per packet.
                    if failures_in_a_row == 1 {
                        tracing::debug!(?kind, error = %e, "write_rtp failed");
                    }
                }
            }
        }
        rtp_ts = rtp_ts.wrapping_add(clip.ticks_per_frame);
        frame_index += 1;
    }
}

/// RTP payload budget per packet before the probe trailer: 1200 bytes keeps every packet,
/// with RTP/SRTP/UDP/IP headers and the trailer, under a 1280-byte path MTU.
const PAYLOAD_MTU: usize = 1_200 - media::PROBE_LEN;

/// Aborts a task when dropped.
struct AbortOnDrop(Option<JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(task) = &self.0 {
            task.abort();
        }
    }
}

/// The SSRC we gave the track's single encoding.
async fn track_ssrc(track: &TrackLocalStaticRTP) -> Option<u32> {
    use webrtc::media_stream::Track;
    track
        .codings()
        .await
        .first()
        .and_then(|c| c.rtp_coding_parameters.ssrc)
}

/// The connection the SFU forwards the others' media on. The SFU offers; we answer.
pub struct Subscriber {
    inner: Pc,
    stats: Arc<ReceiveStats>,
}

impl Subscriber {
    /// Builds the connection; received packets are counted into `stats`.
    pub async fn new(
        config: &PeerConfig,
        stats: Arc<ReceiveStats>,
        events: mpsc::UnboundedSender<PeerEvent>,
    ) -> Result<Subscriber, PeerError> {
        let inner = Pc::build(
            PeerTarget::Subscriber,
            config,
            events,
            Some(Arc::clone(&stats)),
        )
        .await?;
        Ok(Subscriber { inner, stats })
    }

    /// Applies a (re)offer from the SFU and returns our answer's SDP for `webrtc_answer`.
    pub async fn answer(&self, offer_sdp: String) -> Result<String, PeerError> {
        let offer = RTCSessionDescription::offer(offer_sdp)?;
        self.inner.pc.set_remote_description(offer).await?;
        let answer = self.inner.pc.create_answer(None).await?;
        self.inner.set_local_and_gather(answer).await
    }

    /// What has been received so far, per track.
    pub fn stats(&self) -> &Arc<ReceiveStats> {
        &self.stats
    }

    /// Current connection state.
    pub fn state(&self) -> RTCPeerConnectionState {
        *self.inner.state.borrow()
    }

    /// The remote address this connection received the most bytes from (for a connection to
    /// the SFU: its media address). Measured on the socket, see [`crate::traffic`].
    pub fn remote_addr(&self) -> Option<SocketAddr> {
        self.inner.remote_addr()
    }

    /// Datagrams exchanged per remote address.
    pub fn traffic(&self) -> &Arc<TrafficLog> {
        &self.inner.traffic
    }

    /// Closes the connection.
    pub async fn close(&self) -> Result<(), PeerError> {
        self.inner.pc.close().await?;
        Ok(())
    }
}
