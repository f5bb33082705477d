//! Group calls at the SFU level: four participants, everyone hears and sees everyone; one
//! leaves and the rest carry on; a late joiner gets everything already published.

mod common;

use common::*;
use switchboard_sfu::RoomId;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_participants_then_one_leaves_then_a_late_joiner() {
    let (sfu, events) = start_sfu().await;
    let room = RoomId::new("group");
    let names = ["p1", "p2", "p3", "p4"];
    let mut people = Vec::new();
    for name in names {
        people.push(TestParticipant::join(&sfu, &events, &room, name).await);
    }

    let everyone_receives_from_everyone = |people: &[TestParticipant], names: &[&str], min: u64| {
        people.iter().zip(names).all(|(person, me)| {
            names.iter().filter(|other| *other != me).all(|other| {
                let (audio, video) = person.received_from(other);
                audio >= min && video >= min
            })
        })
    };
    wait_until("all four receive audio+video from the three others", || {
        everyone_receives_from_everyone(&people, &names, 10)
    })
    .await;

    // p4 leaves: the other three keep receiving from each other.
    let leaver = people.pop().unwrap();
    let leaver_id = leaver.id.clone();
    leaver.stop().await;
    sfu.leave(leaver_id).await.unwrap();
    let before: Vec<(u64, u64)> = people
        .iter()
        .map(|p| p.received_from(if p.id.as_str() == "p1" { "p2" } else { "p1" }))
        .collect();
    wait_until("the remaining three keep receiving", || {
        people.iter().zip(&before).all(|(p, (audio, video))| {
            let (a, v) = p.received_from(if p.id.as_str() == "p1" { "p2" } else { "p1" });
            a >= audio + 25 && v >= video + 15
        })
    })
    .await;

    // A late joiner receives every track already published.
    let late = TestParticipant::join(&sfu, &events, &room, "late").await;
    wait_until("the late joiner receives p1, p2 and p3", || {
        ["p1", "p2", "p3"].iter().all(|name| {
            let (audio, video) = late.received_from(name);
            audio >= 10 && video >= 10
        })
    })
    .await;
    wait_until("p1 receives the late joiner", || {
        let (audio, video) = people[0].received_from("late");
        audio >= 10 && video >= 10
    })
    .await;
    let stats = sfu.stats().await;
    assert_eq!(
        (stats.participants, stats.publications, stats.subscriptions),
        (4, 8, 24)
    );
}

/// Counts the subscriber offers each participant receives from now on.
fn count_offers(
    events: &tokio::sync::broadcast::Sender<switchboard_sfu::SfuEvent>,
) -> std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, u32>>> {
    let counts = std::sync::Arc::new(std::sync::Mutex::new(std::collections::HashMap::new()));
    let mut rx = events.subscribe();
    let sink = counts.clone();
    tokio::spawn(async move {
        while let Ok(event) = rx.recv().await {
            if let switchboard_sfu::SfuEvent::SubscriberOffer { participant, .. } = event {
                *sink
                    .lock()
                    .unwrap()
                    .entry(participant.as_str().to_owned())
                    .or_insert(0) += 1;
            }
        }
    });
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn joins_and_leaves_renegotiate_only_the_participants_concerned() {
    let (sfu, events) = start_sfu().await;
    let (meeting, elsewhere) = (RoomId::new("meeting"), RoomId::new("elsewhere"));
    let mut people = Vec::new();
    for name in ["a1", "a2", "a3"] {
        people.push(TestParticipant::join(&sfu, &events, &meeting, name).await);
    }
    let bystanders = [
        TestParticipant::join(&sfu, &events, &elsewhere, "b1").await,
        TestParticipant::join(&sfu, &events, &elsewhere, "b2").await,
    ];
    wait_until("everyone receives their room's media", || {
        people[0].received_from("a3").1 >= 10 && bystanders[0].received_from("b2").1 >= 10
    })
    .await;
    // Let every negotiation so far settle before counting.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let offers = count_offers(&events);

    // a3 leaves: a1 and a2 are re-offered (without a3's two tracks); nobody else is.
    let leaver = people.pop().unwrap();
    let leaver_id = leaver.id.clone();
    leaver.stop().await;
    sfu.leave(leaver_id).await.unwrap();
    wait_until("a1 and a2 are re-offered", || {
        let offers = offers.lock().unwrap();
        ["a1", "a2"]
            .iter()
            .all(|p| offers.get(*p).is_some_and(|n| *n >= 1))
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    {
        let offers = offers.lock().unwrap();
        for (participant, count) in offers.iter() {
            assert!(
                ["a1", "a2"].contains(&participant.as_str()) && *count <= 2,
                "unexpected offers: {offers:?}"
            );
        }
    }
    // The bystanders' media never paused.
    let (_, before) = bystanders[0].received_from("b2");
    wait_until("b1 keeps receiving b2", || {
        bystanders[0].received_from("b2").1 >= before + 10
    })
    .await;
}

/// Renegotiates `participant`'s publisher connection as it stands (after adding or removing
/// tracks). No new candidates are gathered for a renegotiation, so none are awaited.
async fn renegotiate_publisher(sfu: &switchboard_sfu::Sfu, participant: &TestParticipant) {
    let pc = &participant.publisher.pc;
    let offer = pc.create_offer(None).await.unwrap();
    pc.set_local_description(offer).await.unwrap();
    let offer = pc.local_description().await.unwrap().sdp;
    let answer = sfu.publish(participant.id.clone(), offer).await.unwrap();
    pc.set_remote_description(
        rtc::peer_connection::sdp::RTCSessionDescription::answer(answer).unwrap(),
    )
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publisher_renegotiation_keeps_its_tracks_and_unpublishes_removed_ones() {
    let (sfu, events) = start_sfu().await;
    let room = RoomId::new("renegotiation");
    let p1 = TestParticipant::join(&sfu, &events, &room, "p1").await;
    let p2 = TestParticipant::join(&sfu, &events, &room, "p2").await;
    wait_until("p2 receives p1's audio and video", || {
        let (audio, video) = p2.received_from("p1");
        audio >= 10 && video >= 10
    })
    .await;
    let stats = sfu.stats().await;
    assert_eq!((stats.publications, stats.subscriptions), (4, 4));

    // The same tracks offered again: nothing is published twice.
    let mut watch = events.subscribe();
    renegotiate_publisher(&sfu, &p1).await;
    tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    while let Ok(event) = watch.try_recv() {
        assert!(
            !matches!(
                event,
                switchboard_sfu::SfuEvent::PublicationAdded { .. }
                    | switchboard_sfu::SfuEvent::PublicationRemoved { .. }
            ),
            "an unchanged offer changed publications: {event:?}"
        );
    }
    let stats = sfu.stats().await;
    assert_eq!((stats.publications, stats.subscriptions), (4, 4));

    // p1 stops sending video (like a screen share ending): exactly that track goes.
    let senders = p1.publisher.pc.get_senders().await;
    let mut video_sender = None;
    for sender in senders {
        if sender.track().track().await.kind()
            == rtc::rtp_transceiver::rtp_sender::RtpCodecKind::Video
        {
            video_sender = Some(sender);
        }
    }
    let video_sender = video_sender.expect("p1 sends video");
    p1.publisher.pc.remove_track(&video_sender).await.unwrap();
    let mut watch = events.subscribe();
    renegotiate_publisher(&sfu, &p1).await;
    let removed = next_event(&mut watch, "p1's video unpublished", |event| match event {
        switchboard_sfu::SfuEvent::PublicationRemoved {
            participant,
            publication,
            ..
        } if participant.as_str() == "p1" => Some(publication),
        _ => None,
    })
    .await;
    assert!(removed.as_str().starts_with("video-"), "{removed}");
    let stats = sfu.stats().await;
    assert_eq!((stats.publications, stats.subscriptions), (3, 3));
    let (audio_before, _) = p2.received_from("p1");
    wait_until("p2 keeps receiving p1's audio", || {
        p2.received_from("p1").0 >= audio_before + 25
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receive_only_viewer_outlives_the_connect_timeout() {
    let (sfu, events) = start_sfu_with(switchboard_sfu::SfuConfig {
        udp_bind: "127.0.0.1:0".parse().unwrap(),
        connect_timeout: std::time::Duration::from_secs(1),
        ..Default::default()
    })
    .await;
    let room = RoomId::new("webinar");
    let speaker = TestParticipant::join(&sfu, &events, &room, "speaker").await;
    let viewer = TestParticipant::join_with(&sfu, &events, &room, "viewer", false).await;
    wait_until("the viewer receives the speaker", || {
        let (audio, video) = viewer.received_from("speaker");
        audio >= 10 && video >= 10
    })
    .await;
    // Well past the connect timeout: still there, still receiving.
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    let (audio_before, _) = viewer.received_from("speaker");
    wait_until("the viewer keeps receiving", || {
        viewer.received_from("speaker").0 >= audio_before + 25
    })
    .await;
    assert_eq!(sfu.stats().await.participants, 2);
    drop(speaker);
}
