//! A participant's MediaPolicy is enforced on what webrtc-rs negotiated, and a refused
//! renegotiation is rolled back without disturbing what already flows (review finding 1).

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use rtc::peer_connection::configuration::media_engine::{MIME_TYPE_OPUS, MIME_TYPE_VP8};
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use switchboard_sfu::{MediaPolicy, ParticipantId, RoomId, SfuError, TrackKind};
use webrtc::media_stream::track_local::TrackLocal;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_renegotiation_is_rolled_back_and_audio_keeps_flowing() {
    let (sfu, events) = start_sfu().await;
    let room = RoomId::new("policy");
    let viewer = TestParticipant::join_with(&sfu, &events, &room, "viewer", false).await;
    let id = ParticipantId::new("speaker");
    let audio_only = MediaPolicy {
        publish_video: false,
        ..MediaPolicy::ALL
    };
    sfu.join_with_policy(room.clone(), id.clone(), "speaker", audio_only)
        .await
        .unwrap();

    let publisher = client().await;
    let audio = local_track("speaker", RtpCodecKind::Audio, MIME_TYPE_OPUS, 48_000, 2);
    publisher
        .pc
        .add_track(audio.clone() as Arc<dyn TrackLocal>)
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
    let sending = send_rtp_forever(audio, 111, Duration::from_millis(20), 960);
    wait_until("the viewer hears the speaker", || {
        viewer.received_from("speaker").0 > 20
    })
    .await;

    // Renegotiation adding video: refused on the negotiated transceivers, and rolled back.
    let video = local_track("speaker", RtpCodecKind::Video, MIME_TYPE_VP8, 90_000, 0);
    publisher
        .pc
        .add_track(video as Arc<dyn TrackLocal>)
        .await
        .unwrap();
    let offer = publisher.pc.create_offer(None).await.unwrap();
    let offer = set_local_and_gather(&publisher, offer).await;
    let refused = sfu
        .publish(id.clone(), offer.replace("m=video 9 ", "m=video 0 "))
        .await;
    assert!(
        matches!(
            refused,
            Err(SfuError::KindNotAllowed {
                kind: TrackKind::Video
            })
        ),
        "{refused:?}"
    );
    let before = viewer.received_from("speaker").0;
    wait_until("audio keeps flowing after the refusal", || {
        viewer.received_from("speaker").0 > before + 25
    })
    .await;
    assert_eq!(viewer.received_from("speaker").1, 0, "video was forwarded");
    // The connection is back in a stable state: the next offer (video only received) is
    // answered.
    let at = offer
        .rfind("a=sendrecv")
        .expect("the video section's direction");
    let mut receive_only = offer.clone();
    receive_only.replace_range(at..at + "a=sendrecv".len(), "a=recvonly");
    let answer = sfu.publish(id.clone(), receive_only).await;
    assert!(answer.is_ok(), "{answer:?}");
    let stats = sfu.stats().await;
    assert_eq!(stats.publications, 1, "{stats:?}");
    sending.abort();
    viewer.stop().await;
}
