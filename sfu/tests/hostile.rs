//! Hostile but authenticated participants: real webrtc-rs clients that finished ICE + DTLS
//! with the SFU and then send abusive RTP/RTCP, while a second call on the same SFU must keep
//! flowing (security review findings 2, 3 and 6).

mod common;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use rtc::interceptor::Registry;
use rtc::peer_connection::configuration::interceptor_registry::register_default_interceptors;
use rtc::peer_connection::configuration::media_engine::{MediaEngine, MIME_TYPE_VP8};
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::rtcp::transport_feedbacks::transport_layer_nack::{NackPair, TransportLayerNack};
use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use switchboard_sfu::{ParticipantId, RoomId, Sfu, SfuEvent};
use tokio::sync::{broadcast, Notify};
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::media_stream::Track;
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCIceGatheringState,
};

/// The remote video track a hostile viewer received, and its latest sequence number.
#[derive(Default)]
struct Received {
    video: Mutex<Option<Arc<dyn TrackRemote>>>,
    video_ssrc: AtomicU32,
    last_video_seq: AtomicU32,
    video_packets: AtomicU32,
}

struct Handler {
    gathered: Arc<Notify>,
    received: Arc<Received>,
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
        tokio::spawn(async move {
            if track.kind().await != RtpCodecKind::Video {
                while track.poll().await.is_some() {}
                return;
            }
            *received.video.lock().unwrap() = Some(track.clone());
            while let Some(event) = track.poll().await {
                if let TrackRemoteEvent::OnRtpPacket(packet) = event {
                    received
                        .video_ssrc
                        .store(packet.header.ssrc, Ordering::Relaxed);
                    received
                        .last_video_seq
                        .store(u32::from(packet.header.sequence_number), Ordering::Relaxed);
                    received.video_packets.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }
}

struct RawClient {
    pc: Box<dyn PeerConnection>,
    gathered: Arc<Notify>,
    received: Arc<Received>,
}

/// A client; `interceptors: false` gives it none at all, so it sends exactly the RTP it is
/// handed (a jumping sequence costs the client nothing) and answers no feedback.
async fn raw_client(interceptors: bool) -> RawClient {
    raw_client_on(interceptors, "127.0.0.1:0").await
}

async fn raw_client_on(interceptors: bool, addr: &str) -> RawClient {
    let mut media_engine = MediaEngine::default();
    media_engine.register_default_codecs().unwrap();
    let registry = if interceptors {
        register_default_interceptors(Registry::new(), &mut media_engine).unwrap()
    } else {
        Registry::new()
    };
    let gathered = Arc::new(Notify::new());
    let received = Arc::new(Received::default());
    let pc = PeerConnectionBuilder::new()
        .with_media_engine(media_engine)
        .with_interceptor_registry(registry)
        .with_handler(Arc::new(Handler {
            gathered: gathered.clone(),
            received: received.clone(),
        }))
        .with_udp_addrs(vec![addr.to_owned()])
        .build()
        .await
        .unwrap();
    RawClient {
        pc: Box::new(pc),
        gathered,
        received,
    }
}

async fn gather(client: &RawClient, description: RTCSessionDescription) -> String {
    let gathered = client.gathered.notified();
    client.pc.set_local_description(description).await.unwrap();
    tokio::time::timeout(DEADLINE, gathered)
        .await
        .expect("ICE gathering");
    client.pc.local_description().await.unwrap().sdp
}

/// Joins `room` as a receive-only participant whose subscriber connection is `RawClient`.
async fn hostile_viewer(
    sfu: &Sfu,
    events: &broadcast::Sender<SfuEvent>,
    room: &RoomId,
    name: &str,
) -> (Arc<Received>, tokio::task::JoinHandle<()>) {
    let id = ParticipantId::new(name);
    let mut offers = events.subscribe();
    sfu.join(room.clone(), id.clone(), name).await.unwrap();
    let subscriber = raw_client(true).await;
    let received = subscriber.received.clone();
    let sfu = sfu.clone();
    let answering = tokio::spawn(async move {
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
            let answer = gather(&subscriber, answer).await;
            sfu.subscriber_answer(id.clone(), answer).await.unwrap();
        }
    });
    (received, answering)
}

/// Packets `viewer` received from `publisher` (audio + video) during `window`.
async fn packets_during(viewer: &TestParticipant, publisher: &str, window: Duration) -> u64 {
    let total = || {
        let (audio, video) = viewer.received_from(publisher);
        audio + video
    };
    let before = total();
    tokio::time::sleep(window).await;
    total() - before
}

/// A second call (victim publisher + viewer) on the same SFU, flowing.
async fn victim_call(
    sfu: &Sfu,
    events: &broadcast::Sender<SfuEvent>,
) -> (TestParticipant, TestParticipant) {
    let room = RoomId::new("victim-call");
    let publisher = TestParticipant::join(sfu, events, &room, "victim-pub").await;
    let viewer = TestParticipant::join_with(sfu, events, &room, "victim-view", false).await;
    wait_until("the victim call flows", || {
        viewer.received_from("victim-pub").1 >= 30
    })
    .await;
    (publisher, viewer)
}

fn assert_rate_kept(before: u64, during: u64, tolerance: f64) {
    let change = (during as f64 - before as f64).abs() / before as f64;
    assert!(
        change <= tolerance,
        "the victim call's packet rate changed by {:.1} % (before {before}, during {during})",
        change * 100.0
    );
}

const WINDOW: Duration = Duration::from_secs(3);
/// NACK pairs per datagram: rtc-rtcp refuses to marshal more than 253 pairs in one NACK, so
/// each datagram is a compound of two NACKs of 225 pairs (~1,830 bytes).
const NACK_PAIRS: u16 = 225;

/// Finding 2: a subscriber sends 100 NACKs/s of 450 pairs with full bitmaps over the last 256
/// sequence numbers of the video it receives. The SFU retransmits each buffered packet at most
/// once per interval within a budget, and another call's packet rate does not move.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nack_flood_is_bounded_and_does_not_slow_another_call() {
    let (sfu, events) = start_sfu().await;
    let room = RoomId::new("attacked-call");
    let publisher = TestParticipant::join(&sfu, &events, &room, "honest-pub").await;
    let (mallory, answering) = hostile_viewer(&sfu, &events, &room, "mallory").await;
    let (victim_pub, victim_view) = victim_call(&sfu, &events).await;
    wait_until("mallory receives video", || {
        mallory.video_packets.load(Ordering::Relaxed) >= 30
    })
    .await;
    let track = mallory.video.lock().unwrap().clone().unwrap();
    let media_ssrc = mallory.video_ssrc.load(Ordering::Relaxed);

    let before = packets_during(&victim_view, "victim-pub", WINDOW).await;
    let stats_before = sfu.stats().await;
    let nacks_sent = Arc::new(AtomicU32::new(0));
    let flood = {
        let (mallory, nacks_sent) = (mallory.clone(), nacks_sent.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(10));
            let end = Instant::now() + WINDOW + Duration::from_millis(500);
            while Instant::now() < end {
                tick.tick().await;
                let newest = mallory.last_video_seq.load(Ordering::Relaxed) as u16;
                let oldest = newest.wrapping_sub(255);
                let nack = || TransportLayerNack {
                    sender_ssrc: 1,
                    media_ssrc,
                    nacks: (0..NACK_PAIRS)
                        .map(|i| NackPair {
                            packet_id: oldest.wrapping_add((i % 16) * 16),
                            lost_packets: 0xFFFF,
                        })
                        .collect(),
                };
                if track
                    .write_rtcp(vec![Box::new(nack()), Box::new(nack())])
                    .await
                    .is_ok()
                {
                    nacks_sent.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(250)).await;
    let during = packets_during(&victim_view, "victim-pub", WINDOW).await;
    flood.await.unwrap();
    let stats = sfu.stats().await;

    let nacks = nacks_sent.load(Ordering::Relaxed);
    assert!(nacks >= 250, "the flood was sent ({nacks} NACK packets)");
    assert_rate_kept(before, during, 0.05);
    let retransmitted = stats.rtp_packets_retransmitted - stats_before.rtp_packets_retransmitted;
    let forwarded = stats.rtp_packets_forwarded - stats_before.rtp_packets_forwarded;
    // Without limits each NACK re-sends ~7,600 packets (~2.7 M here); bounded, retransmission
    // costs at most the buffer once plus a share of what was forwarded meanwhile.
    assert!(
        retransmitted > 0 && retransmitted <= 256 + forwarded / 2,
        "{retransmitted} retransmissions for {nacks} NACKs ({forwarded} packets forwarded)"
    );
    assert!(
        stats.rtp_retransmissions_suppressed > 100 * retransmitted,
        "{stats:?}"
    );

    answering.abort();
    for participant in [publisher, victim_pub, victim_view] {
        participant.stop().await;
    }
}

/// Publishes one VP8 track from a client without interceptors; returns the track.
async fn raw_publisher(
    sfu: &Sfu,
    room: &RoomId,
    name: &str,
) -> (RawClient, Arc<TrackLocalStaticRTP>) {
    let (client, video, _) = raw_publisher_on(sfu, room, name, "127.0.0.1:0").await;
    (client, video)
}

/// [`raw_publisher`] on a given local address; also returns the SFU's answer.
async fn raw_publisher_on(
    sfu: &Sfu,
    room: &RoomId,
    name: &str,
    addr: &str,
) -> (RawClient, Arc<TrackLocalStaticRTP>, String) {
    let id = ParticipantId::new(name);
    sfu.join(room.clone(), id.clone(), name).await.unwrap();
    let client = raw_client_on(false, addr).await;
    let video = local_track(name, RtpCodecKind::Video, MIME_TYPE_VP8, 90_000, 0);
    client
        .pc
        .add_track(video.clone() as Arc<dyn TrackLocal>)
        .await
        .unwrap();
    let offer = client.pc.create_offer(None).await.unwrap();
    let offer = gather(&client, offer).await;
    let answer = sfu.publish(id, offer).await.unwrap();
    client
        .pc
        .set_remote_description(RTCSessionDescription::answer(answer.clone()).unwrap())
        .await
        .unwrap();
    (client, video, answer)
}

/// Finding 3: a publisher whose VP8 sequence number advances by 32,766 per packet (~2,000
/// packets/s). Its subscribers get a continuous sequence (no gap storm for their NACK logic)
/// and another call on the same SFU keeps its packet rate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publisher_jumping_its_sequence_numbers_neither_reaches_subscribers_nor_slows_another_call(
) {
    let (sfu, events) = start_sfu().await;
    let room = RoomId::new("jumping-call");
    let mut viewers = Vec::new();
    for name in ["jv1", "jv2", "jv3"] {
        viewers.push(hostile_viewer(&sfu, &events, &room, name).await);
    }
    let (_jumper, video) = raw_publisher(&sfu, &room, "jumper").await;
    let (victim_pub, victim_view) = victim_call(&sfu, &events).await;
    let ssrc = *video.ssrcs().await.first().unwrap();
    let packet = move |seq: u16| rtc::rtp::Packet {
        header: rtc::rtp::header::Header {
            version: 2,
            marker: true,
            payload_type: 96,
            sequence_number: seq,
            timestamp: u32::from(seq),
            ssrc,
            ..Default::default()
        },
        payload: bytes::Bytes::from_static(&[0x10, 0x00, 0x9d, 0x01, 0x2a, 1, 2, 3]),
    };
    // Honest first, so the subscriptions are up before the jumps start.
    let mut seq = 0u16;
    let deadline = Instant::now() + DEADLINE;
    while viewers
        .iter()
        .any(|(v, _)| v.video_packets.load(Ordering::Relaxed) < 20)
    {
        assert!(
            Instant::now() < deadline,
            "the viewers never got the honest packets"
        );
        seq = seq.wrapping_add(1);
        let _ = video.write_rtp(packet(seq)).await;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let received_before: Vec<u32> = viewers
        .iter()
        .map(|(v, _)| v.video_packets.load(Ordering::Relaxed))
        .collect();
    let last_seq_before: Vec<u16> = viewers
        .iter()
        .map(|(v, _)| v.last_video_seq.load(Ordering::Relaxed) as u16)
        .collect();

    let before = packets_during(&victim_view, "victim-pub", WINDOW).await;
    let jumping = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(1));
        let end = Instant::now() + WINDOW + Duration::from_millis(500);
        let mut sent = 0u32;
        while Instant::now() < end {
            tick.tick().await;
            for _ in 0..2 {
                seq = seq.wrapping_add(32_766);
                let _ = video.write_rtp(packet(seq)).await;
                sent += 1;
            }
        }
        sent
    });
    tokio::time::sleep(Duration::from_millis(250)).await;
    let during = packets_during(&victim_view, "victim-pub", WINDOW).await;
    let sent = jumping.await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;

    assert!(sent >= 3_000, "the jumping packets were sent ({sent})");
    assert_rate_kept(before, during, 0.05);
    for (i, (viewer, _)) in viewers.iter().enumerate() {
        // Renumbered: what arrived continues right after the honest packets, so the newest
        // sequence number moved by about the number of packets received, not by 32,766 each.
        let received = viewer.video_packets.load(Ordering::Relaxed) - received_before[i];
        let advanced =
            (viewer.last_video_seq.load(Ordering::Relaxed) as u16).wrapping_sub(last_seq_before[i]);
        assert!(
            received > 100,
            "viewer {i} received the jumping stream ({received})"
        );
        assert!(
            u32::from(advanced) <= received + 512,
            "viewer {i}: sequence advanced {advanced} for {received} packets"
        );
    }
    for (_, answering) in viewers {
        answering.abort();
    }
    victim_pub.stop().await;
    victim_view.stop().await;
}

/// Sends `payload` as VP8 from `video` every 20 ms until `done` returns true.
async fn send_until<T>(
    video: &TrackLocalStaticRTP,
    payload: &'static [u8],
    mut done: impl FnMut() -> Option<T>,
) -> T {
    let ssrc = *video.ssrcs().await.first().unwrap();
    let deadline = Instant::now() + DEADLINE;
    for seq in 0u16.. {
        if let Some(found) = done() {
            return found;
        }
        assert!(Instant::now() < deadline, "timed out sending {payload:?}");
        let packet = rtc::rtp::Packet {
            header: rtc::rtp::header::Header {
                version: 2,
                payload_type: 96,
                sequence_number: seq,
                ssrc,
                ..Default::default()
            },
            payload: bytes::Bytes::from_static(payload),
        };
        let _ = video.write_rtp(packet).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    unreachable!()
}

/// Finding 6: a panic while the SFU handles one participant's packet (test-only fault
/// injection, `fault-injection` feature) fails that participant only; another call keeps
/// flowing and the SFU keeps answering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_in_one_participants_media_fails_only_that_participant() {
    let (sfu, events) = start_sfu().await;
    let mut watch = events.subscribe();
    let (victim_pub, victim_view) = victim_call(&sfu, &events).await;
    let before = packets_during(&victim_view, "victim-pub", WINDOW).await;
    let (_faulty, video) = raw_publisher(&sfu, &RoomId::new("faulty-call"), "faulty").await;
    let failed = Arc::new(Mutex::new(None));
    let listener = {
        let failed = failed.clone();
        tokio::spawn(async move {
            let reason =
                next_event(
                    &mut watch,
                    "the faulty participant failing",
                    |event| match event {
                        SfuEvent::ParticipantFailed {
                            participant,
                            reason,
                        } if participant.as_str() == "faulty" => Some(reason),
                        _ => None,
                    },
                )
                .await;
            *failed.lock().unwrap() = Some(reason);
        })
    };
    let reason = send_until(&video, b"SWITCHBOARD-FAULT-PANIC", || {
        failed.lock().unwrap().clone()
    })
    .await;
    listener.await.unwrap();
    assert_eq!(reason, "internal media error");

    let during = packets_during(&victim_view, "victim-pub", WINDOW).await;
    assert_rate_kept(before, during, 0.05);
    let stats = tokio::time::timeout(DEADLINE, sfu.stats()).await.unwrap();
    assert_eq!((stats.rooms, stats.participants), (1, 2), "{stats:?}");
    // The released participant can come back.
    let (_again, _video) = raw_publisher(&sfu, &RoomId::new("faulty-call"), "faulty").await;
    victim_pub.stop().await;
    victim_view.stop().await;
}

/// If the media task itself ends (a panic outside the per-participant guards),
/// `Sfu::closed` completes, so the server binary can exit and be restarted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_end_of_the_media_task_is_observable() {
    let (sfu, _events) = start_sfu().await;
    let (_client, video) = raw_publisher(&sfu, &RoomId::new("doomed"), "doomed").await;
    let closed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = {
        let (sfu, closed) = (sfu.clone(), closed.clone());
        tokio::spawn(async move {
            sfu.closed().await;
            closed.store(true, Ordering::Relaxed);
        })
    };
    send_until(&video, b"SWITCHBOARD-FAULT-KILL-TASK", || {
        closed.load(Ordering::Relaxed).then_some(())
    })
    .await;
    watcher.await.unwrap();
    assert!(sfu
        .join(RoomId::new("r"), ParticipantId::new("p"), "p")
        .await
        .is_err());
}

/// A STUN binding request naming `username`, with a MESSAGE-INTEGRITY of garbage.
fn forged_binding_request(username: &str, transaction: u8) -> Vec<u8> {
    let mut attributes = Vec::new();
    attributes.extend_from_slice(&0x0006u16.to_be_bytes());
    attributes.extend_from_slice(&(username.len() as u16).to_be_bytes());
    attributes.extend_from_slice(username.as_bytes());
    while attributes.len() % 4 != 0 {
        attributes.push(0);
    }
    attributes.extend_from_slice(&0x0008u16.to_be_bytes());
    attributes.extend_from_slice(&20u16.to_be_bytes());
    attributes.extend_from_slice(&[0xAB; 20]);
    let mut message = vec![0x00, 0x01];
    message.extend_from_slice(&(attributes.len() as u16).to_be_bytes());
    message.extend_from_slice(&[0x21, 0x12, 0xA4, 0x42]);
    message.extend_from_slice(&[transaction; 12]);
    message.extend_from_slice(&attributes);
    message
}

/// Finding 11: STUN requests that name a connection's ufrag but fail MESSAGE-INTEGRITY, sent
/// from many source ports, teach the SFU no address (they are counted as drops), and a real
/// client that later uses one of those ports connects normally.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_stun_neither_learns_addresses_nor_misroutes_a_later_client() {
    let (sfu, events) = start_sfu().await;
    let mut watch = events.subscribe();
    let (_mallory, _video, answer) =
        raw_publisher_on(&sfu, &RoomId::new("r1"), "mallory", "127.0.0.1:0").await;
    let ufrag = answer
        .lines()
        .find_map(|line| line.trim().strip_prefix("a=ice-ufrag:"))
        .expect("the answer has an ICE ufrag")
        .to_owned();
    let media = sfu.media_addr();
    let dropped_before = sfu.stats().await.datagrams_dropped_unknown_source;
    let sockets: Vec<std::net::UdpSocket> = (0..200)
        .map(|_| std::net::UdpSocket::bind("127.0.0.1:0").unwrap())
        .collect();
    for (i, socket) in sockets.iter().enumerate() {
        let request = forged_binding_request(&format!("{ufrag}:evil"), i as u8);
        socket.send_to(&request, media).unwrap();
    }
    let deadline = Instant::now() + DEADLINE;
    loop {
        let dropped = sfu.stats().await.datagrams_dropped_unknown_source - dropped_before;
        if dropped >= 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {dropped} of 200 forged requests were dropped"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A real client on a port that sent forged requests connects.
    let port = sockets[0].local_addr().unwrap().port();
    drop(sockets);
    let (_late, _late_video, _) = raw_publisher_on(
        &sfu,
        &RoomId::new("r2"),
        "late",
        &format!("127.0.0.1:{port}"),
    )
    .await;
    next_event(
        &mut watch,
        "the later client connecting",
        |event| match event {
            SfuEvent::Connected { participant, .. } if participant.as_str() == "late" => Some(()),
            _ => None,
        },
    )
    .await;
}
