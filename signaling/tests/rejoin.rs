//! Leave, re-invite, accept at once (security review finding 12): each join is its own SFU
//! participant (`"{call}/{user}/{n}"`), so the late `leave` of the previous join and its stale
//! SFU reports never touch the new one, and the new join never collides with the old.
//!
//! The race needs the background leave to reach the SFU after the next join. Through the wire
//! alone that ordering is rare (the leave is spawned before the re-invite can even arrive), so
//! the test holds every SFU leave back with the SFU's test-only fault injection. With ids
//! without the per-join number (the code before the fix) the re-join collides with the
//! not-yet-left previous join and the test fails (seen 2026-12-03).

mod common;

use std::time::Duration;

use common::{ring, TestServer};
use loadtest::{PeerConfig, Publisher};
use serde_json::json;
use tokio::sync::mpsc;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_can_leave_be_reinvited_and_accept_at_once_repeatedly() {
    // Six re-invitations of one person in a few seconds are what the ring throttle
    // (finding 18) exists to stop; this test is about the rejoin, so it lifts the throttle.
    let server = TestServer::start_with(|c| c.limits.ring_burst_per_callee = 100).await;
    // Every background leave lands well after the re-invite and accept that follow it.
    let leave_delay = Duration::from_millis(400);
    switchboard_sfu::fault::delay_leaves(leave_delay);
    let mut alice = server.user("Alice").await;
    let mut bob = server.user("Bob").await;
    let mut carol = server.user("Carol").await;
    for (who, id) in [
        (&mut alice, bob.user_id.clone()),
        (&mut bob, carol.user_id.clone()),
    ] {
        who.expect_presence(|users| common::presence_entry(users, &id).is_some())
            .await;
    }
    let call_id = ring(&mut alice, &mut bob).await;
    let ack = bob
        .request("accept_call", json!({ "call_id": call_id }))
        .await;
    assert_eq!(ack["ok"], true, "{ack}");

    let (events, _) = mpsc::unbounded_channel();
    for round in 0..6 {
        if round > 0 {
            let ack = carol
                .request("leave_call", json!({ "call_id": call_id }))
                .await;
            assert_eq!(ack["ok"], true, "round {round}: {ack}");
        }
        // Re-invited and accepted while the previous join's leave may still be queued.
        let ack = alice
            .request(
                "invite_participant",
                json!({ "call_id": call_id, "user_id": carol.user_id }),
            )
            .await;
        assert_eq!(ack["ok"], true, "round {round}: {ack}");
        carol
            .expect_where("incoming_call", |d| d["call_id"] == call_id.as_str())
            .await;
        let ack = carol
            .request("accept_call", json!({ "call_id": call_id }))
            .await;
        assert_eq!(ack["ok"], true, "round {round}: {ack}");
        // The new join has working media: its publisher offer is answered.
        let publisher = Publisher::new(
            &PeerConfig::default(),
            &carol.user_id,
            false,
            events.clone(),
        )
        .await
        .unwrap();
        let sdp = publisher.create_offer().await.unwrap();
        let ack = carol
            .request(
                "webrtc_offer",
                json!({ "call_id": call_id, "target": "publisher", "sdp": sdp }),
            )
            .await;
        assert_eq!(ack["ok"], true, "round {round}: {ack}");
        let _ = publisher.close().await;
    }
    // Nobody was failed out along the way, also not once the held-back leaves have landed.
    tokio::time::sleep(leave_delay + Duration::from_millis(300)).await;
    assert!(!carol.has_pending("error"), "Carol got an error");
    let ack = alice
        .request("end_call", json!({ "call_id": call_id }))
        .await;
    assert_eq!(ack["ok"], true, "the call is still up: {ack}");
}
