//! The media task: owns the UDP socket and every peer connection, and runs them.
//!
//! - `demux`: datagram → connection routing.
//! - `connection`: one sans-I/O peer connection plus its bookkeeping.
//! - `membership`: rooms, joining, leaving, publishing, subscribing, (re)negotiation.
//! - `media`: the per-packet path (RTP fan-out, RTCP feedback, keyframe requests).
//! - `forwarder`: per-subscription RTP rewriting.

mod connection;
mod demux;
mod feedback;
mod forwarder;
mod insight;
mod isolation;
mod media;
mod media_socket;
mod membership;
mod nack;
mod offer_scan;
mod path;
mod recorder;
pub(crate) use recorder::RecordersReady;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use rtc::peer_connection::event::{RTCPeerConnectionEvent, RTCTrackEvent};
use rtc::peer_connection::state::RTCPeerConnectionState;
use rtc::sansio::Protocol;
use rtc::shared::{TaggedBytesMut, TransportContext, TransportProtocol};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use crate::api::{Command, SfuEvents};
use crate::metrics::{kind_index, kind_label, Counters, DropReason};
use crate::quality::{ReceiveStats, ReportStats};
use crate::recording::ParticipantRecorder;
use crate::speaker::ActiveSpeakerDetector;
use crate::{
    ParticipantId, PeerRole, PublicationId, RecordingStopReason, RoomId, Sfu, SfuConfig, SfuError,
    SfuEvent, SfuStats, TrackKind,
};
use connection::Connection;
pub(crate) use demux::fuzz_routing as fuzz_demux_routing;
pub(crate) use demux::stun_local_ufrag;
use demux::Demuxer;
use forwarder::Forwarder;
use media_socket::bind_media_socket;
pub(crate) use offer_scan::fuzz_publisher_offer;

/// A peer connection inside the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct ConnId(pub u64);

/// A publication inside the engine (cheaper to hash than its [`PublicationId`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct PubKey(u64);

/// Largest datagram we accept; anything longer is not WebRTC media.
const MAX_DATAGRAM: usize = 2048;
/// How often connect timeouts and the active speaker are checked.
const HOUSEKEEPING_INTERVAL: Duration = Duration::from_millis(200);

struct Room {
    participants: Vec<ParticipantId>,
    speakers: ActiveSpeakerDetector<ParticipantId>,
    recording: Option<recorder::RoomRecording>,
    /// A packet was forwarded in this room (reported once as `MediaFlowing`).
    media_flowing: bool,
}

struct Participant {
    room: RoomId,
    /// The `msid` stream id of everything this participant publishes.
    stream_label: String,
    publisher: ConnId,
    subscriber: ConnId,
    publications: Vec<PubKey>,
    /// Set while the participant's room is being recorded.
    recorder: Option<Arc<ParticipantRecorder>>,
    /// What it may publish and whether it subscribes (checked in `membership`).
    policy: crate::MediaPolicy,
}

struct Publication {
    id: PublicationId,
    room: RoomId,
    owner: ParticipantId,
    conn: ConnId,
    receiver: rtc::rtp_transceiver::RTCRtpReceiverId,
    kind: TrackKind,
    codec: rtc::rtp_transceiver::rtp_sender::RTCRtpCodec,
    media_ssrc: u32,
    subscriptions: Vec<Subscription>,
    last_keyframe_request: Option<Instant>,
    /// Loss, jitter and bitrate as the publisher's packets arrive.
    receive_stats: ReceiveStats,
    /// The negotiated id of the RFC 6464 audio-level header extension, for audio.
    audio_level_extension: Option<u8>,
    /// The owner's recorder while its room is recorded.
    recorder: Option<Arc<ParticipantRecorder>>,
    /// A packet of this publication was forwarded (so the room's media flows).
    forwarded_any: bool,
}

struct Subscription {
    subscriber: ParticipantId,
    conn: ConnId,
    sender: rtc::rtp_transceiver::RTCRtpSenderId,
    forwarder: Forwarder,
    /// The subscriber's latest receiver report about this subscription.
    report: Option<ReportStats>,
}

pub(crate) struct Engine {
    config: SfuConfig,
    socket: Arc<UdpSocket>,
    /// The address in our ICE candidate, and the local side of every transport context.
    media_addr: SocketAddr,
    rooms: HashMap<RoomId, Room>,
    participants: HashMap<ParticipantId, Participant>,
    conns: HashMap<ConnId, Connection>,
    publications: HashMap<PubKey, Publication>,
    demux: Demuxer,
    timers: BinaryHeap<Reverse<(Instant, ConnId)>>,
    events: mpsc::UnboundedSender<SfuEvent>,
    counters: Counters,
    /// `counters` as of the last flush to `config.metrics`.
    flushed: Counters,
    next_id: u64,
    next_quality_report: Instant,
    /// Recordings being finalised off the media task; shutdown waits for them.
    finishing: Vec<tokio::task::JoinHandle<()>>,
    /// Test-only: an injected fault asked the media task itself to panic (see `isolation`).
    #[cfg(feature = "fault-injection")]
    kill_task: bool,
}

pub(crate) async fn start(config: SfuConfig) -> Result<(Sfu, SfuEvents), SfuError> {
    config.validate().map_err(SfuError::InvalidConfig)?;
    let bind_error = |source| SfuError::Bind {
        addr: config.udp_bind,
        source,
    };
    let socket = bind_media_socket(config.udp_bind, config.socket_buffer_bytes)
        .and_then(UdpSocket::from_std)
        .map_err(bind_error)?;
    let bound = socket.local_addr().map_err(bind_error)?;
    let media_addr = config.advertised_addr(bound);
    let (commands_tx, commands) = mpsc::channel(1024);
    let (events, events_rx) = mpsc::unbounded_channel();
    let engine = Engine {
        config,
        socket: Arc::new(socket),
        media_addr,
        rooms: HashMap::new(),
        participants: HashMap::new(),
        conns: HashMap::new(),
        publications: HashMap::new(),
        demux: Demuxer::default(),
        timers: BinaryHeap::new(),
        events,
        counters: Counters::default(),
        flushed: Counters::default(),
        next_id: 1,
        next_quality_report: Instant::now(),
        finishing: Vec::new(),
        #[cfg(feature = "fault-injection")]
        kill_task: false,
    };
    info!(%bound, advertised = %media_addr, "SFU media socket bound");
    tokio::spawn(engine.run(commands));
    Ok((
        Sfu {
            commands: commands_tx,
            media_addr,
            bound_addr: bound,
        },
        events_rx,
    ))
}

impl Engine {
    async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        let socket = self.socket.clone();
        let mut buf = vec![0u8; MAX_DATAGRAM];
        let mut housekeeping = tokio::time::interval(HOUSEKEEPING_INTERVAL);
        loop {
            let next_timer = self.timers.peek().map(|Reverse((at, _))| *at);
            let timer = async move {
                match next_timer {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                command = commands.recv() => match command {
                    Some(Command::Shutdown { reply }) => {
                        self.close_everything();
                        // Reply once every recording file is finalised.
                        let finishing = std::mem::take(&mut self.finishing);
                        tokio::spawn(async move {
                            for task in finishing {
                                let _ = task.await;
                            }
                            let _ = reply.send(());
                        });
                        break;
                    }
                    Some(command) => self.handle_command_isolated(command),
                    None => {
                        self.close_everything();
                        break;
                    }
                },
                received = socket.recv_from(&mut buf) => match received {
                    Ok((len, from)) => {
                        self.handle_datagram(Instant::now(), from, &buf[..len]);
                        // Drain what else is already queued without going back through select.
                        for _ in 0..64 {
                            match socket.try_recv_from(&mut buf) {
                                Ok((len, from)) => self.handle_datagram(Instant::now(), from, &buf[..len]),
                                Err(_) => break,
                            }
                        }
                    }
                    // ICMP errors surface here on some platforms; they concern one peer only.
                    Err(error) => debug!(%error, "media socket receive error"),
                },
                _ = timer => self.handle_timers(Instant::now()),
                _ = housekeeping.tick() => self.housekeeping(Instant::now()),
            }
        }
        info!("SFU media task stopped");
    }

    /// [`Self::handle_command`], failing the participant the command is about if it panics
    /// (its reply is dropped, so the caller sees `ShuttingDown`).
    fn handle_command_isolated(&mut self, command: Command) {
        let participant = match &command {
            Command::Join { participant, .. }
            | Command::Publish { participant, .. }
            | Command::SubscriberAnswer { participant, .. }
            | Command::RemoteCandidate { participant, .. }
            | Command::Leave { participant, .. } => Some(participant.clone()),
            _ => None,
        };
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.handle_command(command)
        }));
        if let Err(panic) = result {
            self.contain_panic(Instant::now(), participant, panic.as_ref());
        }
    }

    fn handle_command(&mut self, command: Command) {
        let now = Instant::now();
        match command {
            Command::Join {
                room,
                participant,
                stream_label,
                policy,
                reply,
            } => {
                let _ = reply.send(self.join(now, room, participant, stream_label, policy));
            }
            Command::Publish {
                participant,
                offer_sdp,
                reply,
            } => {
                let _ = reply.send(self.publish(now, &participant, offer_sdp));
            }
            Command::SubscriberAnswer {
                participant,
                answer_sdp,
                reply,
            } => {
                let _ = reply.send(self.subscriber_answer(now, &participant, answer_sdp));
            }
            Command::RemoteCandidate {
                participant,
                role,
                candidate,
                reply,
            } => {
                let _ = reply.send(self.remote_candidate(&participant, role, candidate));
            }
            Command::Leave { participant, reply } => {
                let _ = reply.send(self.leave(now, &participant));
            }
            Command::StartRecording {
                room,
                directory,
                video,
                session,
                back,
                reply,
            } => self.start_recording(room, directory, video, session, back, reply),
            Command::RecordersReady(ready) => self.recorders_ready(ready),
            Command::StopRecording { room, reply } => {
                let result = match self.rooms.get(&room) {
                    None => Err(SfuError::UnknownRoom(room)),
                    Some(r) if r.recording.is_none() => Err(SfuError::NotRecording(room)),
                    Some(_) => {
                        self.stop_recording(&room, RecordingStopReason::Requested);
                        Ok(())
                    }
                };
                let _ = reply.send(result);
            }
            Command::Stats { reply } => {
                let _ = reply.send(self.stats());
            }
            Command::Shutdown { .. } => unreachable!("handled by the run loop"),
        }
    }

    fn stats(&mut self) -> SfuStats {
        self.collect_nack_counters();
        let counters = &self.counters;
        SfuStats {
            rooms: self.rooms.len(),
            participants: self.participants.len(),
            publications: self.publications.len(),
            subscriptions: self
                .publications
                .values()
                .map(|p| p.subscriptions.len())
                .sum(),
            rtp_packets_received: counters.received_packets.iter().sum(),
            rtp_packets_forwarded: counters.forwarded_packets.iter().sum(),
            datagrams_dropped_unknown_source: counters.dropped[DropReason::UnknownSource as usize],
            datagrams_dropped_send_buffer_full: counters.dropped
                [DropReason::SendBufferFull as usize],
            keyframe_requests_sent: counters.keyframe_requests_sent,
            recordings_active: self.recordings_active(),
            rtp_packets_retransmitted: counters.retransmitted,
            rtp_retransmissions_suppressed: counters.retransmissions_suppressed,
        }
    }

    /// Folds what the connections' NACK responders counted into the engine's counters. Runs
    /// every housekeeping tick and for stats: counts of a connection removed in between (at
    /// most one tick's worth) are not reported.
    fn collect_nack_counters(&mut self) {
        for conn in self.conns.values() {
            let (retransmitted, suppressed) = conn.nack_counters.take();
            self.counters.retransmitted += retransmitted;
            self.counters.retransmissions_suppressed += suppressed;
        }
    }

    fn recordings_active(&self) -> usize {
        self.participants
            .values()
            .filter(|p| p.recorder.is_some())
            .count()
    }

    /// Publishes what the counters gathered since the last flush, and the current gauges.
    fn flush_metrics(&mut self) {
        self.collect_nack_counters();
        let Some(metrics) = &self.config.metrics else {
            return;
        };
        self.counters.flush_into(&self.flushed, metrics);
        self.flushed = self.counters;
        metrics.rooms.set(self.rooms.len() as i64);
        metrics.participants.set(self.participants.len() as i64);
        let mut published = [0i64; 2];
        let mut subscribed = [0i64; 2];
        for publication in self.publications.values() {
            let i = kind_index(publication.kind);
            published[i] += 1;
            subscribed[i] += publication.subscriptions.len() as i64;
        }
        for kind in [TrackKind::Audio, TrackKind::Video] {
            let label = [kind_label(kind)];
            metrics
                .published_tracks
                .with_label_values(&label)
                .set(published[kind_index(kind)]);
            metrics
                .subscribed_tracks
                .with_label_values(&label)
                .set(subscribed[kind_index(kind)]);
        }
        metrics
            .recordings_active
            .set(self.recordings_active() as i64);
    }

    fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    fn handle_datagram(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]) {
        let conns = &self.conns;
        let password_of = |conn: ConnId| conns.get(&conn).map(|c| c.ice_password.as_str());
        let Some(conn_id) = self.demux.accept(from, datagram, password_of) else {
            self.counters.drop(DropReason::UnknownSource);
            return;
        };
        if !self.conns.contains_key(&conn_id) {
            self.counters.drop(DropReason::UnknownSource);
            return;
        }
        self.isolated(now, conn_id, |engine| {
            engine.feed(now, conn_id, from, datagram)
        });
        #[cfg(feature = "fault-injection")]
        if self.kill_task {
            panic!("injected media-task fault");
        }
    }

    /// Hands a routed datagram to its connection and runs it.
    fn feed(&mut self, now: Instant, conn_id: ConnId, from: SocketAddr, datagram: &[u8]) {
        let Some(conn) = self.conns.get_mut(&conn_id) else {
            return;
        };
        let local_addr = self.media_addr;
        let tagged = |peer_addr| TaggedBytesMut {
            now,
            transport: TransportContext {
                local_addr,
                peer_addr,
                ecn: None,
                transport_protocol: TransportProtocol::UDP,
            },
            message: BytesMut::from(datagram),
        };
        let moving = conn.path.would_move(from, datagram);
        if let Err(error) = conn.pc.handle_read(tagged(from)) {
            debug!(participant = %conn.participant, %error, "datagram rejected by peer connection");
        } else if moving {
            // rtc logs and drops what fails SRTP authentication or replay checks (its
            // handle_read is Ok regardless): only a packet it decrypted moves the peer. Rare
            // (once per move, or per forged packet), so collecting it is fine.
            let decrypted: Vec<_> = std::iter::from_fn(|| conn.pc.poll_read()).collect();
            if !decrypted.is_empty() {
                conn.path.move_to(from);
                info!(participant = %conn.participant, role = ?conn.role, %from,
                    "peer moved: sending to the address its media now comes from");
            }
            // Events (a new track) before its packets, as `drive` orders them.
            self.drive(now, conn_id);
            for message in decrypted {
                if !self.conns.contains_key(&conn_id) {
                    return;
                }
                self.handle_media(now, conn_id, message.message);
            }
        } else if let Some(alias) = conn.path.consent_alias(from, datagram) {
            // The real request was answered (to `from`); a copy keeps rtc's consent on its
            // selected pair fresh, and what rtc answers to the copy is not sent (see `path`).
            flush(&self.socket, conn, &mut self.counters);
            if conn.pc.handle_read(tagged(alias)).is_ok() {
                while let Some(answer) = conn.pc.poll_write() {
                    if !(path::is_stun(&answer.message) && answer.transport.peer_addr == alias) {
                        send(&self.socket, conn, &mut self.counters, answer);
                    }
                }
            }
        }
        self.drive(now, conn_id);
    }

    /// Runs a connection after it was fed: sends what it wants sent, handles its events and
    /// the media it produced, and re-arms its timer.
    fn drive(&mut self, now: Instant, conn_id: ConnId) {
        loop {
            let Some(conn) = self.conns.get_mut(&conn_id) else {
                return; // removed while handling its own events (failure)
            };
            flush(&self.socket, conn, &mut self.counters);
            if let Some(event) = conn.pc.poll_event() {
                self.handle_connection_event(now, conn_id, event);
                continue;
            }
            if let Some(message) = conn.pc.poll_read() {
                self.handle_media(now, conn_id, message.message);
                continue;
            }
            break;
        }
        self.schedule(now, conn_id);
    }

    fn handle_connection_event(
        &mut self,
        now: Instant,
        conn_id: ConnId,
        event: RTCPeerConnectionEvent,
    ) {
        match event {
            RTCPeerConnectionEvent::OnConnectionStateChangeEvent(state) => {
                self.connection_state_changed(now, conn_id, state)
            }
            RTCPeerConnectionEvent::OnTrack(RTCTrackEvent::OnOpen(track)) => {
                self.publication_opened(now, conn_id, track)
            }
            RTCPeerConnectionEvent::OnTrack(RTCTrackEvent::OnClose(track_id)) => {
                self.publication_closed(now, conn_id, &track_id)
            }
            _ => {}
        }
    }

    fn connection_state_changed(
        &mut self,
        now: Instant,
        conn_id: ConnId,
        state: RTCPeerConnectionState,
    ) {
        let Some(conn) = self.conns.get_mut(&conn_id) else {
            return;
        };
        let participant = conn.participant.clone();
        let role = conn.role;
        debug!(%participant, ?role, %state, "peer connection state");
        match state {
            RTCPeerConnectionState::Connected => {
                conn.connected = true;
                conn.connect_deadline = None;
                let _ = self.events.send(SfuEvent::Connected { participant, role });
                if role == PeerRole::Subscriber {
                    self.request_keyframes_for_subscriber(now, conn_id);
                }
            }
            RTCPeerConnectionState::Failed => {
                self.fail_participant(now, &participant, "media connection failed");
            }
            _ => {}
        }
    }

    /// Arms the connection's timer. The heap holds at most one live entry per connection
    /// (`Connection::scheduled`); superseded entries are skipped when popped.
    fn schedule(&mut self, now: Instant, conn_id: ConnId) {
        if let Some(conn) = self.conns.get_mut(&conn_id) {
            arm_timer(&mut self.timers, now, conn_id, conn);
        }
    }

    fn handle_timers(&mut self, now: Instant) {
        while let Some(Reverse((at, conn_id))) = self.timers.peek().copied() {
            if at > now {
                break;
            }
            self.timers.pop();
            let Some(conn) = self.conns.get_mut(&conn_id) else {
                continue;
            };
            if conn.scheduled != Some(at) {
                continue; // superseded by an earlier deadline that already ran
            }
            conn.scheduled = None;
            self.isolated(now, conn_id, |engine| {
                let Some(conn) = engine.conns.get_mut(&conn_id) else {
                    return;
                };
                if conn.pc.poll_timeout().is_some_and(|due| due <= now) {
                    if let Err(error) = conn.pc.handle_timeout(now) {
                        debug!(participant = %conn.participant, %error, "peer connection timeout handling failed");
                    }
                }
                engine.drive(now, conn_id);
            });
        }
    }

    fn housekeeping(&mut self, now: Instant) {
        self.speaker_tick(now);
        self.flush_metrics();
        if now >= self.next_quality_report {
            self.next_quality_report = now + self.config.quality_interval;
            self.quality_tick(now);
            self.enforce_disk_floor();
            self.finishing.retain(|task| !task.is_finished());
        }
        let expired: Vec<ParticipantId> = self
            .conns
            .values()
            .filter(|c| c.connect_deadline.is_some_and(|deadline| deadline <= now))
            .map(|c| c.participant.clone())
            .collect();
        for participant in expired {
            self.fail_participant(
                now,
                &participant,
                "media connection did not connect in time",
            );
        }
    }

    fn fail_participant(&mut self, now: Instant, participant: &ParticipantId, reason: &str) {
        if self.remove_participant(now, participant).is_ok() {
            warn!(%participant, reason, "participant released");
            let _ = self.events.send(SfuEvent::ParticipantFailed {
                participant: participant.clone(),
                reason: reason.to_owned(),
            });
        }
    }

    fn close_everything(&mut self) {
        let now = Instant::now();
        let recorded: Vec<RoomId> = self
            .rooms
            .iter()
            .filter(|(_, room)| room.recording.is_some())
            .map(|(id, _)| id.clone())
            .collect();
        for room in recorded {
            self.stop_recording(&room, RecordingStopReason::Shutdown);
        }
        let everyone: Vec<ParticipantId> = self.participants.keys().cloned().collect();
        for participant in everyone {
            let _ = self.remove_participant(now, &participant);
        }
    }
}

/// See [`Engine::schedule`].
fn arm_timer(
    timers: &mut BinaryHeap<Reverse<(Instant, ConnId)>>,
    now: Instant,
    conn_id: ConnId,
    conn: &mut Connection,
) {
    let Some(mut at) = conn.pc.poll_timeout() else {
        return;
    };
    if at <= now {
        at = now + Duration::from_millis(1);
    }
    if conn.scheduled.is_none_or(|scheduled| at < scheduled) {
        conn.scheduled = Some(at);
        timers.push(Reverse((at, conn_id)));
    }
}

/// Puts everything a connection queued on the wire. `try_send_to` never waits: a full socket
/// buffer drops the datagram (counted) rather than stalling every other participant.
fn flush(socket: &UdpSocket, conn: &mut Connection, counters: &mut Counters) {
    while let Some(transmit) = conn.pc.poll_write() {
        send(socket, conn, counters, transmit);
    }
}

/// Sends one datagram rtc produced, to where the peer is now (see `path`).
fn send(
    socket: &UdpSocket,
    conn: &mut Connection,
    counters: &mut Counters,
    transmit: TaggedBytesMut,
) {
    let to = conn
        .path
        .destination(transmit.transport.peer_addr, &transmit.message);
    if socket.try_send_to(&transmit.message, to).is_err() {
        counters.drop(DropReason::SendBufferFull);
    }
}
