//! Rate limits that must hold across connections (security review finding 9): a user's
//! event budget survives reconnects, and connecting itself is rate limited per user and per
//! client IP. Through the real server.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;

/// Sends `n` harmless (refused as invalid) events and returns the error codes, in order.
async fn spend(client: &mut Client, n: usize) -> Vec<String> {
    let mut codes = Vec::new();
    for _ in 0..n {
        let ack = client
            .request("end_call", json!({ "call_id": "none" }))
            .await;
        codes.push(ack["error"]["code"].as_str().unwrap_or("ok").to_owned());
    }
    codes
}

#[tokio::test]
async fn a_users_event_budget_survives_reconnecting() {
    let server = TestServer::start_with(|c| {
        c.limits.user_event_burst = 10;
        c.limits.user_events_per_sec = 1;
        c.limits.strikes_before_disconnect = 1_000;
    })
    .await;
    let mut alice = server.user("Alice").await;
    let codes = spend(&mut alice, 12).await;
    assert!(codes[..10].iter().all(|c| c != "rate_limited"), "{codes:?}");
    assert_eq!(codes[11], "rate_limited", "{codes:?}");
    // Reconnecting does not refill the bucket: at most a token or two came back meanwhile.
    let token = alice.token.clone();
    alice.close();
    alice.expect_closed().await;
    let mut again = Client::connect(server.addr, Some(json!({ "token": token })))
        .await
        .expect("reconnects");
    let codes = spend(&mut again, 6).await;
    let limited = codes.iter().filter(|c| *c == "rate_limited").count();
    assert!(
        limited >= 3,
        "a reconnect refilled the user's budget: {codes:?}"
    );
}

/// With the default limits: 10 connects of one user in a burst, then one per 2 s.
#[tokio::test]
async fn connecting_is_rate_limited_per_user() {
    let server = TestServer::start().await;
    let (token, _) = server.session("Alice").await;
    let auth = json!({ "token": token });
    for _ in 0..10 {
        let client = Client::connect(server.addr, Some(auth.clone()))
            .await
            .expect("within the burst");
        client.close();
    }
    let refused = Client::connect(server.addr, Some(auth.clone())).await;
    assert_eq!(refused.err().as_deref(), Some("rate_limited"));
    // Someone else from the same address is not affected.
    server.user("Bob").await;
}

/// With the default limits: 200 connects from one address in a burst, then 20/s.
#[tokio::test]
async fn connecting_is_rate_limited_per_ip() {
    let server = TestServer::start_with_addresses(|_| {}).await;
    let mut refused = None;
    for i in 0..260 {
        let (token, _) = server.session(&format!("User {i}")).await;
        match Client::connect(server.addr, Some(json!({ "token": token }))).await {
            Ok(client) => client.close(),
            Err(code) => {
                refused = Some((i, code));
                break;
            }
        }
    }
    let (i, code) = refused.expect("the address was limited");
    assert_eq!(code, "rate_limited");
    assert!((200..260).contains(&i), "refused after {i} connects");
    // The budget comes back with time.
    tokio::time::sleep(Duration::from_millis(200)).await;
    server.user("Later").await;
}
