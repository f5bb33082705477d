//! Group calls through the real signaling server (docs/protocol.md §7.1): several invitees,
//! invitations during a call, late joins, leaving without ending, and the limits.

mod common;

use common::*;
use serde_json::{json, Value};

fn ids(list: &Value) -> Vec<String> {
    let mut ids: Vec<String> = list
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"))
        .iter()
        .map(|u| u["id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

fn sorted(users: &[&Client]) -> Vec<String> {
    let mut ids: Vec<String> = users.iter().map(|c| c.user_id.clone()).collect();
    ids.sort();
    ids
}

/// `caller` calls everyone in `invitees` at once (video): the call id, after every invitee
/// rang.
async fn ring_all(caller: &mut Client, invitees: &mut [&mut Client]) -> String {
    let to: Vec<_> = invitees.iter().map(|c| c.user_id.clone()).collect();
    let ack = caller
        .request("initiate_call", json!({ "to": to, "kind": "video" }))
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    let call_id = ack["call_id"].as_str().unwrap().to_owned();
    let ringing = caller.expect("call_ringing").await;
    assert_eq!(ids(&ringing["invitees"]).len(), invitees.len(), "{ringing}");
    for invitee in invitees.iter_mut() {
        let incoming = invitee.expect("incoming_call").await;
        assert_eq!(incoming["call_id"], call_id.as_str());
        assert_eq!(incoming["from"]["id"], caller.user_id.as_str());
        assert_eq!(
            ids(&incoming["participants"]),
            std::slice::from_ref(&caller.user_id)
        );
        let invited = caller
            .expect_where("participant_invited", |d| {
                d["user"]["id"] == invitee.user_id.as_str()
            })
            .await;
        assert_eq!(invited["by"]["id"], caller.user_id.as_str());
    }
    call_id
}

async fn accept(client: &mut Client, call_id: &str) -> Value {
    let ack = client
        .request("accept_call", json!({ "call_id": call_id }))
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    client.expect("call_accepted").await
}

/// Alice calls Bob and Carol, and both accept: (alice, bob, carol, call_id).
async fn three_in_a_call(server: &TestServer) -> (Client, Client, Client, String) {
    let mut alice = server.user("Alice").await;
    let mut bob = server.user("Bob").await;
    let mut carol = server.user("Carol").await;
    let call_id = ring_all(&mut alice, &mut [&mut bob, &mut carol]).await;
    accept(&mut bob, &call_id).await;
    alice.expect("call_accepted").await;
    accept(&mut carol, &call_id).await;
    (alice, bob, carol, call_id)
}

#[tokio::test]
async fn a_group_call_grows_and_shrinks_and_ends_with_the_last_but_one() {
    let server = TestServer::start().await;
    let mut alice = server.user("Alice").await;
    let mut bob = server.user("Bob").await;
    let mut carol = server.user("Carol").await;
    let mut dave = server.user("Dave").await;
    let mut erin = server.user("Erin").await;

    let call_id = ring_all(&mut alice, &mut [&mut bob, &mut carol]).await;
    let call = json!({ "call_id": call_id });

    // The first accept makes the call active for the caller too.
    let accepted = accept(&mut bob, &call_id).await;
    assert_eq!(ids(&accepted["participants"]), sorted(&[&alice, &bob]));
    assert_eq!(
        ids(&accepted["ringing"]),
        std::slice::from_ref(&carol.user_id)
    );
    let accepted = alice.expect("call_accepted").await;
    assert_eq!(ids(&accepted["participants"]), sorted(&[&alice, &bob]));
    assert_eq!(server.signaling.stats().active_calls, 1);

    // A later accept: call_accepted for the joiner, participant_joined for the others.
    let accepted = accept(&mut carol, &call_id).await;
    assert_eq!(
        ids(&accepted["participants"]),
        sorted(&[&alice, &bob, &carol])
    );
    for client in [&mut alice, &mut bob] {
        let joined = client.expect("participant_joined").await;
        assert_eq!(joined["user"]["id"], carol.user_id.as_str());
    }
    assert!(!alice.has_pending("call_accepted"));

    // Anyone who joined may invite; the invitee hears who is in the call.
    let ack = bob
        .request(
            "invite_participant",
            json!({ "call_id": call_id, "user_id": dave.user_id }),
        )
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    let incoming = dave.expect("incoming_call").await;
    assert_eq!(incoming["from"]["id"], bob.user_id.as_str());
    assert_eq!(
        ids(&incoming["participants"]),
        sorted(&[&alice, &bob, &carol])
    );
    let (b, d) = (bob.user_id.clone(), dave.user_id.clone());
    for client in [&mut alice, &mut bob, &mut carol] {
        let invited = client.expect("participant_invited").await;
        assert_eq!(invited["user"]["id"], d.as_str());
        assert_eq!(invited["by"]["id"], b.as_str());
    }
    // Dave declines: only Dave's view ends.
    let ack = dave.request("reject_call", call.clone()).await;
    assert_eq!(ack["ok"], true, "{ack}");
    let ended = dave.expect("call_ended").await;
    assert_eq!(ended["reason"], "rejected");
    for client in [&mut alice, &mut bob, &mut carol] {
        let left = client.expect("participant_left").await;
        assert_eq!(left["user"]["id"], dave.user_id.as_str());
        assert_eq!(left["reason"], "rejected");
    }

    // Bob mutes before Erin arrives: a late joiner still learns it.
    let ack = bob
        .request(
            "media_state",
            json!({ "call_id": call_id, "audio": false, "video": true }),
        )
        .await;
    assert_eq!(ack["ok"], true, "{ack}");

    // Erin is invited and joins late.
    let ack = carol
        .request(
            "invite_participant",
            json!({ "call_id": call_id, "user_id": erin.user_id }),
        )
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    let incoming = erin.expect("incoming_call").await;
    assert_eq!(
        ids(&incoming["ringing"]),
        std::slice::from_ref(&erin.user_id)
    );
    let accepted = accept(&mut erin, &call_id).await;
    assert_eq!(ids(&accepted["participants"]).len(), 4);
    assert_eq!(accepted["ringing"], json!([]));
    let muted = erin.expect("participant_media_state").await;
    assert_eq!(
        muted,
        json!({ "call_id": call_id, "user_id": bob.user_id, "audio": false, "video": true, "screen": false })
    );

    // The creator leaves: the call goes on for the others.
    let ack = alice.request("leave_call", call.clone()).await;
    assert_eq!(ack["ok"], true, "{ack}");
    let ended = alice.expect("call_ended").await;
    assert_eq!(ended["reason"], "hangup");
    assert_eq!(ended["by"]["id"], alice.user_id.as_str());
    for client in [&mut bob, &mut carol, &mut erin] {
        let left = client
            .expect_where("participant_left", |d| d["reason"] == "left")
            .await;
        assert_eq!(left["user"]["id"], alice.user_id.as_str());
    }
    // Alice is free again; the others are not.
    let a = alice.user_id.clone();
    erin.expect_presence(|u| {
        presence_entry(u, &a).is_some_and(|e| e["busy"] == false)
            && presence_entry(u, &b).is_some_and(|e| e["busy"] == true)
    })
    .await;
    let stale = alice
        .request(
            "media_state",
            json!({ "call_id": call_id, "audio": true, "video": true }),
        )
        .await;
    assert_refused(&stale, "not_a_participant");

    // `end_call` is leaving too. Then Carol's tab closes: Bob would be alone, so it ends.
    let ack = erin.request("end_call", call.clone()).await;
    assert_eq!(ack["ok"], true, "{ack}");
    erin.expect("call_ended").await;
    for client in [&mut bob, &mut carol] {
        let left = client
            .expect_where("participant_left", |d| {
                d["user"]["id"] == erin.user_id.as_str()
            })
            .await;
        assert_eq!(left["reason"], "left");
    }
    assert_eq!(server.signaling.stats().active_calls, 1);
    carol.close();
    let ended = bob.expect("call_ended").await;
    assert_eq!(ended["reason"], "disconnected");
    assert_eq!(ended["by"]["id"], carol.user_id.as_str());
    assert_eq!(server.signaling.stats().calls, 0);
}

#[tokio::test]
async fn the_last_one_alone_hears_the_end() {
    let server = TestServer::start().await;
    let (mut alice, mut bob, mut carol, call_id) = three_in_a_call(&server).await;

    let ack = carol
        .request("leave_call", json!({ "call_id": call_id }))
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    bob.expect("participant_left").await;
    alice.expect("participant_left").await;
    let ack = bob
        .request("leave_call", json!({ "call_id": call_id }))
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    let ended = alice.expect("call_ended").await;
    assert_eq!(ended["reason"], "hangup");
    assert_eq!(ended["by"]["id"], bob.user_id.as_str());
    assert!(!alice.has_pending("participant_left"));
    assert_eq!(server.signaling.stats().calls, 0);
}

#[tokio::test]
async fn declines_count_only_when_nobody_else_is_ringing() {
    let server = TestServer::start().await;
    let mut alice = server.user("Alice").await;
    let mut bob = server.user("Bob").await;
    let mut carol = server.user("Carol").await;
    let call_id = ring_all(&mut alice, &mut [&mut bob, &mut carol]).await;

    let ack = bob
        .request("reject_call", json!({ "call_id": call_id }))
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    let left = alice.expect("participant_left").await;
    assert_eq!(left["reason"], "rejected");
    assert!(!alice.has_pending("call_ended"));
    let ack = carol
        .request("reject_call", json!({ "call_id": call_id }))
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    let rejected = alice.expect("call_rejected").await;
    assert_eq!(rejected["by"]["id"], carol.user_id.as_str());
    let ended = alice.expect("call_ended").await;
    assert_eq!(ended["reason"], "rejected");
}

#[tokio::test]
async fn the_creator_ends_the_call_for_everyone_when_configured() {
    let server = TestServer::start_with(|config| config.creator_ends_call = true).await;
    let (mut alice, mut bob, mut carol, call_id) = three_in_a_call(&server).await;

    let ack = alice
        .request("end_call", json!({ "call_id": call_id }))
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    let a = alice.user_id.clone();
    for client in [&mut alice, &mut bob, &mut carol] {
        let ended = client.expect("call_ended").await;
        assert_eq!(ended["reason"], "hangup");
        assert_eq!(ended["by"]["id"], a.as_str());
    }
    assert_eq!(server.signaling.stats().calls, 0);
}

#[tokio::test]
async fn invitations_are_checked() {
    let server = TestServer::start_with(|config| config.limits.max_participants_per_call = 3).await;
    let mut alice = server.user("Alice").await;
    let mut bob = server.user("Bob").await;
    let mut carol = server.user("Carol").await;
    let mut dave = server.user("Dave").await;
    let mut eve = server.user("Eve").await;

    // Too many at once: nothing starts, nobody rings.
    let everyone = [&bob, &carol, &dave].map(|c| c.user_id.clone());
    let ack = alice
        .request("initiate_call", json!({ "to": everyone, "kind": "voice" }))
        .await;
    assert_refused(&ack, "limit_exceeded");
    assert!(
        ack["error"]["message"].as_str().unwrap().contains('3'),
        "{ack}"
    );
    assert!(!bob.has_pending("incoming_call"));
    assert_eq!(server.signaling.stats().calls, 0);

    let call_id = ring_all(&mut alice, &mut [&mut bob]).await;
    // Only members who joined may invite; strangers are not members at all.
    let invite = |user: &Client| json!({ "call_id": call_id, "user_id": user.user_id });
    let ack = bob.request("invite_participant", invite(&carol)).await;
    assert_refused(&ack, "not_permitted");
    let ack = eve.request("invite_participant", invite(&carol)).await;
    assert_refused(&ack, "not_a_participant");
    accept(&mut bob, &call_id).await;
    alice.expect("call_accepted").await;
    let ack = alice.request("invite_participant", invite(&alice)).await;
    assert_refused(&ack, "self_call");
    let ack = alice.request("invite_participant", invite(&bob)).await;
    assert_refused(&ack, "busy");
    let ack = alice
        .request(
            "invite_participant",
            json!({ "call_id": call_id, "user_id": "nobody-at-all" }),
        )
        .await;
    assert_refused(&ack, "user_offline");
    let ack = alice.request("invite_participant", invite(&carol)).await;
    assert_eq!(ack["ok"], true, "{ack}");
    carol.expect("incoming_call").await;
    // Three members (one ringing) fill the call.
    let ack = bob.request("invite_participant", invite(&dave)).await;
    assert_refused(&ack, "limit_exceeded");
    assert!(!dave.has_pending("incoming_call"));

    // Someone busy in another call cannot be invited.
    let other = ring_all(&mut dave, &mut [&mut eve]).await;
    let ack = alice.request("invite_participant", invite(&eve)).await;
    assert_refused(&ack, "busy");
    assert!(
        ack["error"]["message"].as_str().unwrap().contains("Eve"),
        "{ack}"
    );
    let ack = alice
        .request(
            "invite_participant",
            json!({ "call_id": other, "user_id": carol.user_id }),
        )
        .await;
    assert_refused(&ack, "not_a_participant");
}

#[tokio::test]
async fn an_invitee_who_never_answers_leaves_the_others_talking() {
    let server =
        TestServer::start_with(|config| config.ring_timeout = std::time::Duration::from_secs(1))
            .await;
    let mut alice = server.user("Alice").await;
    let mut bob = server.user("Bob").await;
    let mut carol = server.user("Carol").await;
    let call_id = ring_all(&mut alice, &mut [&mut bob, &mut carol]).await;
    accept(&mut bob, &call_id).await;
    alice.expect("call_accepted").await;

    for client in [&mut alice, &mut bob] {
        let left = client.expect("participant_left").await;
        assert_eq!(left["user"]["id"], carol.user_id.as_str());
        assert_eq!(left["reason"], "no_answer");
    }
    let ended = carol.expect("call_ended").await;
    assert_eq!(ended["reason"], "no_answer");
    assert_eq!(server.signaling.stats().active_calls, 1);
}
