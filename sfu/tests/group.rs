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
