//! Sockets whose token expired are disconnected once they are not in a call (security
//! review finding 26). Through the real server.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;
use switchboard_signaling::identity::{unix_now, TokenIssuer};
use switchboard_signaling::{Claims, Grants};

/// Connects a user whose token expires in `ttl_secs`.
async fn connect_expiring(server: &TestServer, name: &str, ttl_secs: u64) -> Client {
    let id = format!("{name}-{}", rand::random::<u32>());
    let token = TokenIssuer::new(SECRET, Duration::from_secs(3600)).sign(&Claims {
        sub: id.clone(),
        name: name.to_owned(),
        exp: unix_now() + ttl_secs,
        grants: Grants::full(),
    });
    let mut client = Client::connect(server.addr, Some(json!({ "token": token })))
        .await
        .expect("connects");
    client.user_id = id;
    client.token = token;
    client.name = name.to_owned();
    client
}

#[tokio::test]
async fn an_idle_socket_is_disconnected_when_its_token_expires() {
    let server = TestServer::start().await;
    let mut alice = connect_expiring(&server, "Alice", 2).await;
    let mut bob = server.user("Bob").await;
    let alice_id = alice.user_id.clone();
    bob.expect_presence(|u| presence_entry(u, &alice_id).is_some())
        .await;
    alice.expect_closed().await;
    assert!(alice.has_pending("error"), "told why before the disconnect");
    // And she is gone from presence.
    bob.expect_presence(|u| presence_entry(u, &alice_id).is_none())
        .await;
}

#[tokio::test]
async fn a_call_in_progress_is_not_cut_by_expiry_but_the_socket_goes_after_it() {
    let server = TestServer::start().await;
    let mut alice = connect_expiring(&server, "Alice", 2).await;
    let mut bob = server.user("Bob").await;
    let call_id = ring(&mut alice, &mut bob).await;
    let ack = bob
        .request("accept_call", json!({ "call_id": &call_id }))
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    alice.expect("call_accepted").await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(!alice.has_pending("call_ended"), "the call went on");
    assert!(!bob.has_pending("call_ended"), "the call went on");
    let ack = bob
        .request("end_call", json!({ "call_id": &call_id }))
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    alice.expect_closed().await;
}
