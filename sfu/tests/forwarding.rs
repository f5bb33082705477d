//! The SFU driven through its own API by real webrtc-rs clients on loopback.

mod common;

use common::*;
use switchboard_sfu::metrics::SfuMetrics;
use switchboard_sfu::{quality::QualityLevel, RoomId, SfuConfig, SfuError, SfuEvent, TrackKind};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwards_audio_and_video_both_ways_and_releases_everything_on_leave() {
    let registry = prometheus::Registry::new();
    let (sfu, events) = start_sfu_with(SfuConfig {
        udp_bind: "127.0.0.1:0".parse().unwrap(),
        metrics: Some(SfuMetrics::register(&registry).unwrap()),
        ..Default::default()
    })
    .await;
    let mut watch = events.subscribe();
    let room = RoomId::new("room-1");
    let alice = TestParticipant::join(&sfu, &events, &room, "alice").await;
    let bob = TestParticipant::join(&sfu, &events, &room, "bob").await;

    wait_until("each receives the other's audio and video", || {
        let (a_audio, a_video) = alice.received_from("bob");
        let (b_audio, b_video) = bob.received_from("alice");
        a_audio >= 25 && a_video >= 15 && b_audio >= 25 && b_video >= 15
    })
    .await;
    assert_eq!(
        alice.received_from("alice"),
        (0, 0),
        "nobody gets their own media back"
    );

    let published = next_event(&mut watch, "a video publication", |event| match event {
        SfuEvent::PublicationAdded {
            kind: TrackKind::Video,
            client_track_id,
            ..
        } => Some(client_track_id),
        _ => None,
    })
    .await;
    assert!(published.ends_with("-video"), "{published}");

    // Quality is scored from what actually flows: loopback is clean.
    let quality = next_event(&mut watch, "a quality report", |event| match event {
        SfuEvent::Quality { quality, .. } => Some(quality),
        _ => None,
    })
    .await;
    assert!(quality.level >= QualityLevel::Good, "{quality:?}");
    assert!((0.0..=100.0).contains(&quality.loss_percent), "{quality:?}");
    assert!((1.0..=4.5).contains(&quality.mos), "{quality:?}");

    let stats = sfu.stats().await;
    assert_eq!(
        (
            stats.rooms,
            stats.participants,
            stats.publications,
            stats.subscriptions
        ),
        (1, 2, 4, 4)
    );
    assert!(stats.rtp_packets_forwarded >= 80, "{stats:?}");

    let (alice_id, bob_id) = (alice.id.clone(), bob.id.clone());
    alice.stop().await;
    sfu.leave(alice_id.clone()).await.unwrap();
    next_event(
        &mut watch,
        "alice's publications removed",
        |event| match event {
            SfuEvent::PublicationRemoved { participant, .. } if participant == alice_id => Some(()),
            _ => None,
        },
    )
    .await;
    bob.stop().await;
    sfu.leave(bob_id).await.unwrap();
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
        sfu.leave(alice_id).await,
        Err(SfuError::UnknownParticipant(_))
    ));
    sfu.shutdown().await;
}

#[tokio::test]
async fn refuses_bad_input_without_disturbing_the_room() {
    let (sfu, _events) = start_sfu_with(SfuConfig {
        udp_bind: "127.0.0.1:0".parse().unwrap(),
        max_participants_per_room: 2,
        max_tracks_per_participant: 1,
        ..Default::default()
    })
    .await;
    let room = RoomId::new("r");
    let (a, b, c) = (
        switchboard_sfu::ParticipantId::new("a"),
        switchboard_sfu::ParticipantId::new("b"),
        switchboard_sfu::ParticipantId::new("c"),
    );
    sfu.join(room.clone(), a.clone(), "a").await.unwrap();
    assert!(matches!(
        sfu.join(room.clone(), a.clone(), "a").await,
        Err(SfuError::DuplicateParticipant(_))
    ));
    sfu.join(room.clone(), b.clone(), "b").await.unwrap();
    assert!(matches!(
        sfu.join(room.clone(), c.clone(), "c").await,
        Err(SfuError::RoomFull { limit: 2, .. })
    ));
    assert!(matches!(
        sfu.publish(a.clone(), "not sdp".into()).await,
        Err(SfuError::InvalidSdp(_))
    ));
    let (_client, two_tracks) = real_offer("a", true).await;
    assert!(matches!(
        sfu.publish(a.clone(), two_tracks).await,
        Err(SfuError::TooManyTracks { limit: 1 })
    ));
    assert!(matches!(
        sfu.subscriber_answer(a.clone(), "v=0".into()).await,
        Err(SfuError::NoPendingOffer)
    ));
    assert!(matches!(
        sfu.publish(c.clone(), "v=0".into()).await,
        Err(SfuError::UnknownParticipant(_))
    ));
    let stats = sfu.stats().await;
    assert_eq!(
        (stats.rooms, stats.participants),
        (1, 2),
        "the room is untouched"
    );
}
