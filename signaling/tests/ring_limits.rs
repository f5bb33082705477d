//! Ring harassment (security review finding 18): a caller cannot keep ringing the same
//! person, a decline holds them off for a while, and being rung never stops anyone from
//! placing a call. Through the real server.

mod common;

use common::*;
use serde_json::json;

async fn call(caller: &mut Client, callee: &Client) -> serde_json::Value {
    caller
        .request(
            "initiate_call",
            json!({ "to": &callee.user_id, "kind": "voice" }),
        )
        .await
}

#[tokio::test]
async fn a_declined_caller_cannot_ring_again_at_once() {
    let server = TestServer::start().await;
    let mut alice = server.user("Alice").await;
    let mut bob = server.user("Bob").await;
    let mut carol = server.user("Carol").await;
    let call_id = ring(&mut alice, &mut bob).await;
    let ack = bob
        .request("reject_call", json!({ "call_id": call_id }))
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    alice.expect("call_rejected").await;
    let again = call(&mut alice, &bob).await;
    assert_refused(&again, "limit_exceeded");
    // Others may still call Bob.
    ring(&mut carol, &mut bob).await;
}

#[tokio::test]
async fn ringing_the_same_person_over_and_over_is_limited() {
    let server = TestServer::start().await;
    let mut alice = server.user("Alice").await;
    let mut bob = server.user("Bob").await;
    let mut refused = None;
    for i in 0..6 {
        let ack = call(&mut alice, &bob).await;
        if ack["ok"] != true {
            refused = Some((i, ack));
            break;
        }
        let call_id = ack["call_id"].as_str().unwrap().to_owned();
        bob.expect_where("incoming_call", |d| d["call_id"] == call_id.as_str())
            .await;
        let end = alice
            .request("end_call", json!({ "call_id": call_id }))
            .await;
        assert_eq!(end["ok"], true, "{end}");
    }
    let (i, ack) = refused.expect("ringing was limited");
    assert_eq!(i, 3, "three rings in a burst, then limited");
    assert_refused(&ack, "limit_exceeded");
}

#[tokio::test]
async fn a_ringing_user_may_place_a_call_which_declines_the_ring() {
    let server = TestServer::start().await;
    let mut alice = server.user("Alice").await;
    let mut bob = server.user("Bob").await;
    let mut carol = server.user("Carol").await;
    let rung = ring(&mut alice, &mut bob).await;
    // Bob is ringing (busy to others) but calls Carol himself.
    let own = ring(&mut bob, &mut carol).await;
    assert_ne!(own, rung);
    alice
        .expect_where("call_ended", |d| {
            d["call_id"] == rung.as_str() && d["reason"] == "rejected"
        })
        .await;
    bob.expect_where("call_ended", |d| d["call_id"] == rung.as_str())
        .await;
}
