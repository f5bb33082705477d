//! Presence scoping and the "not callable" oracle (security review finding 17), through the
//! real server.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;
use switchboard_signaling::identity::{unix_now, TokenIssuer};
use switchboard_signaling::{Claims, Grants, PresenceScope};

/// Connects a user whose token carries `grants`.
async fn connect_with(server: &TestServer, name: &str, grants: Grants) -> Client {
    let id = format!("{name}-{}", rand::random::<u32>());
    let token = TokenIssuer::new(SECRET, Duration::from_secs(3600)).sign(&Claims {
        sub: id.clone(),
        name: name.to_owned(),
        exp: unix_now() + 3600,
        grants,
    });
    let mut client = Client::connect(server.addr, Some(json!({ "token": token })))
        .await
        .expect("connects");
    client.user_id = id;
    client.token = token;
    client.name = name.to_owned();
    client
}

fn in_rooms(rooms: &[&str]) -> Grants {
    Grants {
        rooms: Some(rooms.iter().map(|r| r.to_string()).collect()),
        ..Grants::full()
    }
}

fn ids(users: &[serde_json::Value]) -> Vec<String> {
    let mut ids: Vec<String> = users
        .iter()
        .map(|u| u["id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn unknown_and_offline_users_are_one_code() {
    let server = TestServer::start().await;
    let mut alice = server.user("Alice").await;
    let bob = server.user("Bob").await;
    let bob_id = bob.user_id.clone();
    // Bob online first: Alice's first snapshot (before Bob connected) already lists only her,
    // so waiting for "only Alice" without this raced Bob's disconnect.
    alice
        .expect_presence(|u| common::presence_entry(u, &bob_id).is_some())
        .await;
    bob.close();
    let alice_id = alice.user_id.clone();
    alice
        .expect_presence(|u| u.len() == 1 && u[0]["id"] == alice_id.as_str())
        .await;
    let offline = alice
        .request("initiate_call", json!({ "to": &bob_id, "kind": "video" }))
        .await;
    let unknown = alice
        .request(
            "initiate_call",
            json!({ "to": "never-signed-in", "kind": "video" }),
        )
        .await;
    assert_refused(&offline, "user_offline");
    assert_refused(&unknown, "user_offline");
    assert_eq!(
        offline["error"]["message"], unknown["error"]["message"],
        "nothing tells an id that was never seen from one that is offline"
    );
}

#[tokio::test]
async fn the_rooms_scope_lists_only_people_sharing_a_room() {
    let server = TestServer::start_with(|c| c.presence_scope = PresenceScope::Rooms).await;
    let mut a = connect_with(&server, "A", in_rooms(&["r1"])).await;
    let mut b = connect_with(&server, "B", in_rooms(&["r1", "r2"])).await;
    let mut c = connect_with(&server, "C", in_rooms(&["r2"])).await;
    let mut open = connect_with(&server, "Open", Grants::full()).await;
    let (a_id, b_id, c_id) = (a.user_id.clone(), b.user_id.clone(), c.user_id.clone());

    let mut want = vec![a_id.clone(), b_id.clone()];
    want.sort();
    a.expect_presence(|u| ids(u) == want).await;
    let mut want = vec![b_id.clone(), c_id.clone()];
    want.sort();
    c.expect_presence(|u| ids(u) == want).await;
    let mut want = vec![a_id.clone(), b_id.clone(), c_id.clone()];
    want.sort();
    b.expect_presence(|u| ids(u) == want).await;

    // C leaves: B hears it; A never heard of C and hears nothing now either.
    c.close();
    let mut want = vec![a_id.clone(), b_id.clone()];
    want.sort();
    b.expect_presence(|u| ids(u) == want).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(
        !a.has_pending("presence_update"),
        "A was told about C, whom it shares no room with"
    );
    // A token without rooms sees nobody but itself under this scope, and nobody sees it.
    let seen = open.expect_presence(|_| true).await;
    assert_eq!(ids(&seen), [open.user_id.clone()]);
    assert!(
        !b.has_pending("presence_update") || {
            let users = b.expect_presence(|_| true).await;
            !ids(&users).contains(&open.user_id)
        }
    );
}

#[tokio::test]
async fn the_nobody_scope_lists_nobody() {
    let server = TestServer::start_with(|c| c.presence_scope = PresenceScope::Nobody).await;
    let mut alice = server.user("Alice").await;
    let mut bob = server.user("Bob").await;
    // Nobody but themselves.
    assert_eq!(
        ids(&alice.expect_presence(|_| true).await),
        [alice.user_id.clone()]
    );
    assert_eq!(
        ids(&bob.expect_presence(|_| true).await),
        [bob.user_id.clone()]
    );
    // Calls by id still work: an application tells its users whom to call.
    let call_id = ring(&mut alice, &mut bob).await;
    assert!(!call_id.is_empty());
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(!alice.has_pending("presence_update"));
}
