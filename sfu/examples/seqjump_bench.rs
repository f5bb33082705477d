//! Per-packet CPU of the SFU's media task for a normal publisher and for one whose RTP
//! sequence number jumps by 32,766 per packet (security review, finding 3).
//!
//! The SFU runs on its own single-threaded runtime on a dedicated OS thread, so that thread's
//! CPU time (`/proc/<pid>/task/<tid>/schedstat`) is the media task's alone; the webrtc-rs
//! clients (one raw VP8 publisher, three subscribers) run on the main runtime.
//!
//! `cargo run -p switchboard-sfu --example seqjump_bench [packets] [packets_per_second]`
//! (docs/benchmarks.md).

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use rtc::interceptor::Registry;
use rtc::peer_connection::configuration::media_engine::{MediaEngine, MIME_TYPE_VP8};
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use switchboard_sfu::{ParticipantId, RoomId, Sfu, SfuConfig, SfuEvent};
use tokio::sync::{broadcast, oneshot};
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::Track;
use webrtc::peer_connection::{PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler};

struct NoEvents;
#[async_trait::async_trait]
impl PeerConnectionEventHandler for NoEvents {}

/// Nanoseconds the thread `tid` of this process has run.
fn thread_cpu_ns(tid: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/self/task/{tid}/schedstat"))
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .expect("schedstat (Linux only)")
}

/// Starts an SFU whose media task runs alone on a new thread; returns it and that thread's id.
async fn sfu_on_own_thread() -> (Sfu, broadcast::Sender<SfuEvent>, String) {
    let (tx, rx) = oneshot::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let tid = std::fs::read_link("/proc/thread-self")
                .unwrap()
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let (sfu, mut events) = Sfu::start(SfuConfig {
                udp_bind: "127.0.0.1:0".parse().unwrap(),
                ..Default::default()
            })
            .await
            .unwrap();
            let (fanout, _) = broadcast::channel(1024);
            let _ = tx.send((sfu, fanout.clone(), tid));
            while let Some(event) = events.recv().await {
                let _ = fanout.send(event);
            }
        });
    });
    rx.await.unwrap()
}

async fn run(jump: u16, packets: u32, rate: u32) -> (f64, u64) {
    let (sfu, events, tid) = sfu_on_own_thread().await;
    let room = RoomId::new("bench");
    let mut viewers = Vec::new();
    for name in ["v1", "v2", "v3"] {
        viewers.push(TestParticipant::join_with(&sfu, &events, &room, name, false).await);
    }
    // A publisher without interceptors: it sends exactly the sequence numbers given.
    let id = ParticipantId::new("pub");
    sfu.join(room.clone(), id.clone(), "pub").await.unwrap();
    let mut media_engine = MediaEngine::default();
    media_engine.register_default_codecs().unwrap();
    let publisher = PeerConnectionBuilder::new()
        .with_media_engine(media_engine)
        .with_interceptor_registry(Registry::new())
        .with_handler(Arc::new(NoEvents))
        .with_udp_addrs(vec!["127.0.0.1:0"])
        .build()
        .await
        .unwrap();
    let video = local_track("pub", RtpCodecKind::Video, MIME_TYPE_VP8, 90_000, 0);
    publisher
        .add_track(video.clone() as Arc<dyn TrackLocal>)
        .await
        .unwrap();
    let offer = publisher.create_offer(None).await.unwrap();
    publisher.set_local_description(offer).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await; // host candidates gathered
    let offer = publisher.local_description().await.unwrap().sdp;
    let answer = sfu.publish(id, offer).await.unwrap();
    publisher
        .set_remote_description(RTCSessionDescription::answer(answer).unwrap())
        .await
        .unwrap();
    let ssrc = *video.ssrcs().await.first().unwrap();
    let packet = |seq: u16| rtc::rtp::Packet {
        header: rtc::rtp::header::Header {
            version: 2,
            marker: true,
            payload_type: 96,
            sequence_number: seq,
            timestamp: u32::from(seq),
            ssrc,
            ..Default::default()
        },
        payload: bytes::Bytes::from(vec![0x10; 1000]),
    };
    let mut seq = 0u16;
    // Warm up with consecutive numbers until every viewer receives.
    let deadline = Instant::now() + DEADLINE;
    while viewers.iter().any(|v| v.received_from("pub").1 < 20) {
        assert!(Instant::now() < deadline, "viewers never received");
        seq = seq.wrapping_add(1);
        let _ = video.write_rtp(packet(seq)).await;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let received_before: u64 = viewers.iter().map(|v| v.received_from("pub").1).sum();
    let cpu_before = thread_cpu_ns(&tid);
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    let per_tick = (rate / 1000).max(1);
    let mut sent = 0;
    while sent < packets {
        tick.tick().await;
        for _ in 0..per_tick {
            seq = seq.wrapping_add(jump);
            let _ = video.write_rtp(packet(seq)).await;
            sent += 1;
        }
    }
    tokio::time::sleep(Duration::from_millis(1000)).await; // let the SFU drain its backlog
    let cpu = thread_cpu_ns(&tid) - cpu_before;
    let delivered: u64 = viewers
        .iter()
        .map(|v| v.received_from("pub").1)
        .sum::<u64>()
        - received_before;
    for viewer in viewers {
        viewer.stop().await;
    }
    let _ = publisher.close().await;
    (cpu as f64 / 1000.0 / f64::from(packets), delivered)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut args = std::env::args().skip(1);
    let packets: u32 = args.next().map_or(6_000, |a| a.parse().unwrap());
    let rate: u32 = args.next().map_or(2_000, |a| a.parse().unwrap());
    println!("{packets} VP8 packets of 1000 B at {rate}/s, 3 subscribers; media-task CPU per packet received");
    for (label, jump) in [("normal (+1)", 1u16), ("jumping (+32766)", 32_766)] {
        let (us_per_packet, delivered) = run(jump, packets, rate).await;
        println!(
            "{label:>18}: {us_per_packet:7.1} us/pkt, {delivered} packets delivered to subscribers"
        );
    }
}
