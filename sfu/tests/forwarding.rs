//! The SFU driven through its own API by real webrtc-rs clients on loopback: one participant
//! publishes audio and video, the other receives both through the SFU's one UDP port.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
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
use tokio::sync::{mpsc, Notify};
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::media_stream::Track;
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCIceGatheringState,
};

const DEADLINE: Duration = Duration::from_secs(15);

#[derive(Default)]
struct Received {
    audio: AtomicU64,
    video: AtomicU64,
}

struct Handler {
    gathered: Arc<Notify>,
    received: Arc<Received>,
    stream_ids: mpsc::UnboundedSender<String>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        if state == RTCIceGatheringState::Complete {
            self.gathered.notify_one();
        }
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        let received = self.received.clone();
        let stream_ids = self.stream_ids.clone();
        tokio::spawn(async move {
            let kind = track.kind().await;
            let _ = stream_ids.send(track.stream_id().await);
            while let Some(event) = track.poll().await {
                if let TrackRemoteEvent::OnRtpPacket(_) = event {
                    let counter = match kind {
                        RtpCodecKind::Audio => &received.audio,
                        _ => &received.video,
                    };
                    counter.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }
}

struct Client {
    pc: Box<dyn PeerConnection>,
    gathered: Arc<Notify>,
    received: Arc<Received>,
    stream_ids: mpsc::UnboundedReceiver<String>,
}

async fn client() -> Client {
    let mut media_engine = MediaEngine::default();
    media_engine.register_default_codecs().unwrap();
    let registry = register_default_interceptors(Registry::new(), &mut media_engine).unwrap();
    let gathered = Arc::new(Notify::new());
    let received = Arc::new(Received::default());
    let (stream_tx, stream_ids) = mpsc::unbounded_channel();
    let pc = PeerConnectionBuilder::new()
        .with_media_engine(media_engine)
        .with_interceptor_registry(registry)
        .with_handler(Arc::new(Handler {
            gathered: gathered.clone(),
            received: received.clone(),
            stream_ids: stream_tx,
        }))
        .with_udp_addrs(vec!["127.0.0.1:0"])
        .build()
        .await
        .unwrap();
    Client {
        pc: Box::new(pc),
        gathered,
        received,
        stream_ids,
    }
}

/// Sets the description and waits for candidate gathering, so the SDP carries candidates.
async fn set_local_and_gather(client: &Client, description: RTCSessionDescription) -> String {
    let gathered = client.gathered.notified();
    client.pc.set_local_description(description).await.unwrap();
    tokio::time::timeout(DEADLINE, gathered)
        .await
        .expect("ICE gathering");
    client.pc.local_description().await.unwrap().sdp
}

fn local_track(
    kind: RtpCodecKind,
    mime: &str,
    clock_rate: u32,
    channels: u16,
) -> Arc<TrackLocalStaticRTP> {
    Arc::new(TrackLocalStaticRTP::new(MediaStreamTrack::new(
        "publisher-stream".into(),
        format!("publisher-{kind}"),
        format!("publisher-{kind}"),
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
fn send_rtp_forever(
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
                    timestamp: (seq as u32).wrapping_mul(ts_step),
                    ssrc,
                    ..Default::default()
                },
                payload: bytes::Bytes::from_static(&[0x10, 0x00, 0x9d, 0x01, 0x2a, 1, 2, 3, 4, 5]),
            };
            let _ = track.write_rtp(packet).await;
        }
    })
}

async fn next_offer(events: &mut SfuEvents, who: &ParticipantId) -> String {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(remaining, events.recv()).await {
            Ok(Some(SfuEvent::SubscriberOffer { participant, sdp })) if &participant == who => {
                return sdp
            }
            Ok(Some(_)) => continue,
            Ok(None) => panic!("SFU event stream closed"),
            Err(_) => panic!("no subscriber offer for {who}"),
        }
    }
}

async fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwards_a_publishers_audio_and_video_to_a_subscriber() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter("switchboard_sfu=debug")
        .with_test_writer()
        .try_init();
    let config = SfuConfig {
        udp_bind: "127.0.0.1:0".parse().unwrap(),
        ..Default::default()
    };
    let (sfu, mut events): (Sfu, SfuEvents) = Sfu::start(config).await.unwrap();
    let room = RoomId::new("room-1");
    let alice = ParticipantId::new("alice");
    let bob = ParticipantId::new("bob");
    sfu.join(room.clone(), alice.clone(), "alice-stream")
        .await
        .unwrap();
    sfu.join(room.clone(), bob.clone(), "bob-stream")
        .await
        .unwrap();

    // Alice publishes audio + video.
    let publisher = client().await;
    let audio = local_track(RtpCodecKind::Audio, MIME_TYPE_OPUS, 48_000, 2);
    let video = local_track(RtpCodecKind::Video, MIME_TYPE_VP8, 90_000, 0);
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
    let offer_sdp = set_local_and_gather(&publisher, offer).await;
    let answer = sfu.publish(alice.clone(), offer_sdp).await.unwrap();
    assert!(
        answer.contains("a=ice-lite"),
        "the SFU is ICE-lite:\n{answer}"
    );
    let port = format!(" {} typ host", sfu.media_addr().port());
    assert!(
        answer.contains(&port),
        "answer names the media port:\n{answer}"
    );
    publisher
        .pc
        .set_remote_description(RTCSessionDescription::answer(answer).unwrap())
        .await
        .unwrap();
    let senders = [
        send_rtp_forever(audio, 111, Duration::from_millis(20), 960),
        send_rtp_forever(video, 96, Duration::from_millis(33), 3000),
    ];

    // Bob answers the SFU's subscriber offers (one per new publication, maybe merged).
    let mut subscriber = client().await;
    let mut answered = 0;
    while answered < 2 {
        let offer = next_offer(&mut events, &bob).await;
        subscriber
            .pc
            .set_remote_description(RTCSessionDescription::offer(offer.clone()).unwrap())
            .await
            .unwrap();
        let answer = subscriber.pc.create_answer(None).await.unwrap();
        let answer_sdp = set_local_and_gather(&subscriber, answer).await;
        sfu.subscriber_answer(bob.clone(), answer_sdp)
            .await
            .unwrap();
        answered += offer.matches("m=audio").count() + offer.matches("m=video").count();
    }

    let received = subscriber.received.clone();
    wait_until("the subscriber received audio and video", || {
        received.audio.load(Ordering::Relaxed) >= 25 && received.video.load(Ordering::Relaxed) >= 15
    })
    .await;
    let stream = subscriber.stream_ids.recv().await.unwrap();
    assert_eq!(
        stream, "alice-stream",
        "tracks carry the publisher's stream label"
    );

    let stats = sfu.stats().await;
    assert_eq!(
        (stats.rooms, stats.participants, stats.publications),
        (1, 2, 2)
    );
    assert!(stats.rtp_packets_forwarded >= 40, "{stats:?}");

    // Leaving releases everything.
    for task in senders {
        task.abort();
    }
    sfu.leave(alice.clone()).await.unwrap();
    sfu.leave(bob.clone()).await.unwrap();
    let stats = sfu.stats().await;
    assert_eq!(
        (
            stats.rooms,
            stats.participants,
            stats.publications,
            stats.subscriptions
        ),
        (0, 0, 0, 0)
    );
    assert!(matches!(
        sfu.leave(alice).await,
        Err(switchboard_sfu::SfuError::UnknownParticipant(_))
    ));
    sfu.shutdown().await;
}
