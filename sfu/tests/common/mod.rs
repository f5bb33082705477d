//! Real webrtc-rs clients driving the SFU through its own API on loopback.
//!
//! A [`TestParticipant`] joins a room, publishes Opus + VP8 tracks carrying synthetic RTP,
//! and answers every subscriber offer the SFU makes to it, counting the RTP it receives per
//! publisher (by the forwarded tracks' stream id).
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rtc::interceptor::Registry;
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::interceptor_registry::register_default_interceptors;
use rtc::peer_connection::configuration::media_engine::{
    MediaEngine, MIME_TYPE_OPUS, MIME_TYPE_VP8,
};
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind,
};
use switchboard_sfu::{ParticipantId, RoomId, Sfu, SfuConfig, SfuEvent, SfuEvents};
use tokio::sync::{broadcast, Notify};
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::media_stream::Track;
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCIceGatheringState,
};

pub const DEADLINE: Duration = Duration::from_secs(15);

/// RTP packets received, by (publisher stream id, kind).
pub type Counts = Arc<Mutex<HashMap<(String, RtpCodecKind), u64>>>;

pub async fn start_sfu() -> (Sfu, broadcast::Sender<SfuEvent>) {
    start_sfu_with(SfuConfig {
        udp_bind: "127.0.0.1:0".parse().unwrap(),
        ..Default::default()
    })
    .await
}

/// Starts an SFU and fans its events out so several participants (and the test) can listen.
pub async fn start_sfu_with(config: SfuConfig) -> (Sfu, broadcast::Sender<SfuEvent>) {
    let _ = tracing_subscriber::fmt()
        .with_env_filter("switchboard_sfu=debug")
        .with_test_writer()
        .try_init();
    let (sfu, mut events): (Sfu, SfuEvents) = Sfu::start(config).await.unwrap();
    let (fanout, _) = broadcast::channel(1024);
    let sender = fanout.clone();
    tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            let _ = sender.send(event);
        }
    });
    (sfu, fanout)
}

struct Handler {
    gathered: Arc<Notify>,
    counts: Counts,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        if state == RTCIceGatheringState::Complete {
            self.gathered.notify_one();
        }
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        let counts = self.counts.clone();
        tokio::spawn(async move {
            let kind = track.kind().await;
            let stream = track.stream_id().await;
            while let Some(event) = track.poll().await {
                if let TrackRemoteEvent::OnRtpPacket(_) = event {
                    *counts
                        .lock()
                        .unwrap()
                        .entry((stream.clone(), kind))
                        .or_default() += 1;
                }
            }
        });
    }
}

pub struct Client {
    pub pc: Box<dyn PeerConnection>,
    gathered: Arc<Notify>,
    pub counts: Counts,
}

pub async fn client() -> Client {
    let mut media_engine = MediaEngine::default();
    media_engine.register_default_codecs().unwrap();
    let registry = register_default_interceptors(Registry::new(), &mut media_engine).unwrap();
    let gathered = Arc::new(Notify::new());
    let counts = Counts::default();
    let pc = PeerConnectionBuilder::new()
        .with_media_engine(media_engine)
        .with_interceptor_registry(registry)
        .with_handler(Arc::new(Handler {
            gathered: gathered.clone(),
            counts: counts.clone(),
        }))
        .with_udp_addrs(vec!["127.0.0.1:0"])
        .build()
        .await
        .unwrap();
    Client {
        pc: Box::new(pc),
        gathered,
        counts,
    }
}

/// Sets the description and waits for candidate gathering, so the SDP carries candidates.
pub async fn set_local_and_gather(client: &Client, description: RTCSessionDescription) -> String {
    let gathered = client.gathered.notified();
    client.pc.set_local_description(description).await.unwrap();
    tokio::time::timeout(DEADLINE, gathered)
        .await
        .expect("ICE gathering");
    client.pc.local_description().await.unwrap().sdp
}

pub fn local_track(
    stream: &str,
    kind: RtpCodecKind,
    mime: &str,
    clock_rate: u32,
    channels: u16,
) -> Arc<TrackLocalStaticRTP> {
    Arc::new(TrackLocalStaticRTP::new(MediaStreamTrack::new(
        stream.into(),
        format!("{stream}-{kind}"),
        format!("{stream}-{kind}"),
        kind,
        vec![RTCRtpEncodingParameters {
            rtp_coding_parameters: RTCRtpCodingParameters {
                ssrc: Some(rand::random()),
                ..Default::default()
            },
            codec: RTCRtpCodec {
                mime_type: mime.into(),
                clock_rate,
                channels,
                ..Default::default()
            },
            ..Default::default()
        }],
    )))
}

/// Sends synthetic RTP on a track until the task is aborted.
pub fn send_rtp_forever(
    track: Arc<TrackLocalStaticRTP>,
    payload_type: u8,
    interval: Duration,
    ts_step: u32,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let ssrc = *track.ssrcs().await.first().unwrap();
        let mut ticker = tokio::time::interval(interval);
        for seq in 0u16.. {
            ticker.tick().await;
            let packet = rtc::rtp::Packet {
                header: rtc::rtp::header::Header {
                    version: 2,
                    marker: true,
                    payload_type,
                    sequence_number: seq,
                    timestamp: u32::from(seq).wrapping_mul(ts_step),
                    ssrc,
                    ..Default::default()
                },
                payload: bytes::Bytes::from_static(&[0x10, 0x00, 0x9d, 0x01, 0x2a, 1, 2, 3, 4, 5]),
            };
            let _ = track.write_rtp(packet).await;
        }
    })
}

/// One participant: a publisher connection sending audio+video and a subscriber connection
/// that answers the SFU's offers for as long as it lives.
pub struct TestParticipant {
    pub id: ParticipantId,
    pub publisher: Client,
    pub counts: Counts,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl TestParticipant {
    pub async fn join(
        sfu: &Sfu,
        events: &broadcast::Sender<SfuEvent>,
        room: &RoomId,
        name: &str,
    ) -> Self {
        Self::join_with(sfu, events, room, name, true).await
    }

    /// Joins without publishing anything when `publish` is false: the publisher connection
    /// is never offered (a receive-only viewer).
    pub async fn join_with(
        sfu: &Sfu,
        events: &broadcast::Sender<SfuEvent>,
        room: &RoomId,
        name: &str,
        publish: bool,
    ) -> Self {
        let id = ParticipantId::new(name);
        // Subscribe before joining so no offer is missed.
        let mut offers = events.subscribe();
        sfu.join(room.clone(), id.clone(), name).await.unwrap();

        let subscriber = client().await;
        let counts = subscriber.counts.clone();
        let answering = {
            let sfu = sfu.clone();
            let id = id.clone();
            tokio::spawn(async move {
                while let Ok(event) = offers.recv().await {
                    let SfuEvent::SubscriberOffer { participant, sdp } = event else {
                        continue;
                    };
                    if participant != id {
                        continue;
                    }
                    let offer = RTCSessionDescription::offer(sdp).unwrap();
                    subscriber.pc.set_remote_description(offer).await.unwrap();
                    let answer = subscriber.pc.create_answer(None).await.unwrap();
                    let answer = set_local_and_gather(&subscriber, answer).await;
                    sfu.subscriber_answer(id.clone(), answer).await.unwrap();
                }
            })
        };

        let publisher = client().await;
        if !publish {
            return TestParticipant {
                id,
                publisher,
                counts,
                tasks: vec![answering],
            };
        }
        let audio = local_track(name, RtpCodecKind::Audio, MIME_TYPE_OPUS, 48_000, 2);
        let video = local_track(name, RtpCodecKind::Video, MIME_TYPE_VP8, 90_000, 0);
        publisher
            .pc
            .add_track(audio.clone() as Arc<dyn TrackLocal>)
            .await
            .unwrap();
        publisher
            .pc
            .add_track(video.clone() as Arc<dyn TrackLocal>)
            .await
            .unwrap();
        let offer = publisher.pc.create_offer(None).await.unwrap();
        let offer = set_local_and_gather(&publisher, offer).await;
        let answer = sfu.publish(id.clone(), offer).await.unwrap();
        publisher
            .pc
            .set_remote_description(RTCSessionDescription::answer(answer).unwrap())
            .await
            .unwrap();
        let tasks = vec![
            answering,
            send_rtp_forever(audio, 111, Duration::from_millis(20), 960),
            send_rtp_forever(video, 96, Duration::from_millis(33), 3000),
        ];
        TestParticipant {
            id,
            publisher,
            counts,
            tasks,
        }
    }

    /// Packets received so far from `publisher`'s stream, audio + video.
    pub fn received_from(&self, publisher: &str) -> (u64, u64) {
        let counts = self.counts.lock().unwrap();
        let get = |kind| {
            counts
                .get(&(publisher.to_owned(), kind))
                .copied()
                .unwrap_or(0)
        };
        (get(RtpCodecKind::Audio), get(RtpCodecKind::Video))
    }

    /// Stops sending and receiving (the SFU side is released by `Sfu::leave`).
    pub async fn stop(self) {
        for task in &self.tasks {
            task.abort();
        }
        let _ = self.publisher.pc.close().await;
    }
}

/// Polls until `condition` holds, failing the test with `what` after the deadline.
pub async fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits for the first event matching `pick`.
pub async fn next_event<T>(
    events: &mut broadcast::Receiver<SfuEvent>,
    what: &str,
    mut pick: impl FnMut(SfuEvent) -> Option<T>,
) -> T {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(remaining, events.recv()).await {
            Ok(Ok(event)) => {
                if let Some(found) = pick(event) {
                    return found;
                }
            }
            Ok(Err(broadcast::error::RecvError::Lagged(_))) => continue,
            Ok(Err(_)) => panic!("SFU event stream closed"),
            Err(_) => panic!("timed out waiting for {what}"),
        }
    }
}

/// A real webrtc-rs publisher offer (gathered, with candidates) sending one Opus and, if
/// `video`, one VP8 track in stream `stream`; the client is returned so it can take the answer.
pub async fn real_offer(stream: &str, video: bool) -> (Client, String) {
    let publisher = client().await;
    let mut tracks = vec![local_track(
        stream,
        RtpCodecKind::Audio,
        MIME_TYPE_OPUS,
        48_000,
        2,
    )];
    if video {
        tracks.push(local_track(
            stream,
            RtpCodecKind::Video,
            MIME_TYPE_VP8,
            90_000,
            0,
        ));
    }
    for track in tracks {
        publisher
            .pc
            .add_track(track as Arc<dyn TrackLocal>)
            .await
            .unwrap();
    }
    let offer = publisher.pc.create_offer(None).await.unwrap();
    let sdp = set_local_and_gather(&publisher, offer).await;
    (publisher, sdp)
}
