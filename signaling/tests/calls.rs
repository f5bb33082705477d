//! End-to-end signaling: real server, real SFU, real Socket.IO clients.

mod common;

use std::time::Duration;

use common::*;
use serde_json::json;
use switchboard_signaling::identity::TokenIssuer;

#[tokio::test]
async fn session_endpoint_issues_tokens_and_refuses_bad_names() {
    let server = TestServer::start().await;
    let (status, body) = server.post_session(r#"{"name":"  Alice  "}"#).await;
    assert_eq!(status, 200);
    assert_eq!(body["user"]["name"], "Alice");
    assert!(body["user"]["id"].as_str().is_some_and(|id| !id.is_empty()));
    assert!(body["token"]
        .as_str()
        .is_some_and(|t| t.split('.').count() == 3));

    for bad in [
        r#"{"name":"   "}"#,
        r#"{"name":"a\u0007b"}"#,
        r#"{"nom":"x"}"#,
        "not json",
    ] {
        let (status, body) = server.post_session(bad).await;
        assert_eq!(status, 400, "{bad}");
        assert_eq!(body["error"]["code"], "invalid_name", "{bad}");
        assert!(body["error"]["message"].is_string());
    }
    let long = json!({ "name": "x".repeat(41) }).to_string();
    assert_eq!(server.post_session(&long).await.0, 400);
}

#[tokio::test]
async fn connect_is_refused_without_a_valid_token() {
    let server = TestServer::start().await;
    let refused = |auth| async move { Client::connect(server.addr, auth).await.err() };

    assert_eq!(refused(None).await.as_deref(), Some("missing_token"));
    assert_eq!(
        refused(Some(json!({}))).await.as_deref(),
        Some("missing_token")
    );
    assert_eq!(
        refused(Some(json!({ "token": "nope" }))).await.as_deref(),
        Some("invalid_token")
    );
    assert_eq!(
        refused(Some(json!({ "token": 42 }))).await.as_deref(),
        Some("invalid_token")
    );

    let foreign = TokenIssuer::new(b"some-other-secret-entirely!!", Duration::from_secs(60));
    let (token, _) = foreign.issue("Mallory").unwrap();
    assert_eq!(
        refused(Some(json!({ "token": token }))).await.as_deref(),
        Some("invalid_token")
    );

    let ours = TokenIssuer::new(SECRET, Duration::from_secs(60));
    let expired = ours.issue_expired_for_tests("Old");
    assert_eq!(
        refused(Some(json!({ "token": expired }))).await.as_deref(),
        Some("expired_token")
    );

    // And a valid one is accepted.
    let (token, _) = ours.issue("Fresh").unwrap();
    assert!(
        Client::connect(server.addr, Some(json!({ "token": token })))
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn presence_lists_everyone_and_follows_disconnects() {
    let server = TestServer::start().await;
    let mut alice = server.user("Alice").await;
    let users = alice.expect_presence(|u| u.len() == 1).await;
    assert_eq!(users[0]["id"], alice.user_id.as_str());
    assert_eq!(users[0]["name"], "Alice");
    assert_eq!(users[0]["busy"], false);

    let mut bob = server.user("Bob").await;
    let bob_id = bob.user_id.clone();
    let users = alice
        .expect_presence(|u| presence_entry(u, &bob_id).is_some())
        .await;
    assert_eq!(users.len(), 2);
    bob.expect_presence(|u| u.len() == 2).await;

    bob.close();
    alice
        .expect_presence(|u| presence_entry(u, &bob_id).is_none())
        .await;
}

#[tokio::test]
async fn a_call_rings_is_accepted_and_hung_up() {
    let server = TestServer::start().await;
    let mut alice = server.user("Alice").await;
    let mut bob = server.user("Bob").await;

    let ack = alice
        .request(
            "initiate_call",
            json!({ "to": bob.user_id, "kind": "voice" }),
        )
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    let call_id = ack["call_id"].as_str().unwrap().to_owned();

    let ringing = alice.expect("call_ringing").await;
    assert_eq!(ringing["call_id"], call_id.as_str());
    assert_eq!(ringing["kind"], "voice");
    assert_eq!(ringing["to"]["id"], bob.user_id.as_str());
    assert_eq!(ringing["to"]["name"], "Bob");
    let incoming = bob.expect("incoming_call").await;
    assert_eq!(incoming["call_id"], call_id.as_str());
    assert_eq!(incoming["from"]["id"], alice.user_id.as_str());
    assert_eq!(incoming["from"]["name"], "Alice");

    // Both are busy now.
    let (a, b) = (alice.user_id.clone(), bob.user_id.clone());
    bob.expect_presence(|u| {
        presence_entry(u, &a).is_some_and(|e| e["busy"] == true)
            && presence_entry(u, &b).is_some_and(|e| e["busy"] == true)
    })
    .await;

    let ack = bob
        .request("accept_call", json!({ "call_id": call_id }))
        .await;
    assert_eq!(ack, json!({ "ok": true }));
    for client in [&mut alice, &mut bob] {
        let accepted = client.expect("call_accepted").await;
        assert_eq!(accepted["call_id"], call_id.as_str());
        assert_eq!(accepted["kind"], "voice");
        let ids: Vec<_> = accepted["participants"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["id"].clone())
            .collect();
        assert_eq!(ids, [json!(a), json!(b)]);
    }
    assert_eq!(server.signaling.stats().active_calls, 1);

    let ack = alice
        .request(
            "media_state",
            json!({ "call_id": call_id, "audio": false, "video": true }),
        )
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    let state = bob.expect("participant_media_state").await;
    assert_eq!(
        state,
        json!({ "call_id": call_id, "user_id": a, "audio": false, "video": true, "screen": false })
    );

    let ack = alice
        .request("end_call", json!({ "call_id": call_id }))
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    for client in [&mut alice, &mut bob] {
        let ended = client.expect("call_ended").await;
        assert_eq!(ended["call_id"], call_id.as_str());
        assert_eq!(ended["reason"], "hangup");
        assert_eq!(ended["by"]["id"], a.as_str());
    }
    alice
        .expect_presence(|u| u.iter().all(|e| e["busy"] == false) && u.len() == 2)
        .await;
    assert_eq!(server.signaling.stats().calls, 0);

    // The call is gone.
    let ack = bob.request("end_call", json!({ "call_id": call_id })).await;
    assert_refused(&ack, "unknown_call");
}

#[tokio::test]
async fn a_rejected_call_tells_the_caller() {
    let server = TestServer::start().await;
    let mut alice = server.user("Alice").await;
    let mut bob = server.user("Bob").await;
    let call_id = ring(&mut alice, &mut bob).await;

    let ack = bob
        .request("reject_call", json!({ "call_id": call_id }))
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    let rejected = alice.expect("call_rejected").await;
    assert_eq!(rejected["call_id"], call_id.as_str());
    assert_eq!(rejected["by"]["id"], bob.user_id.as_str());
    for client in [&mut alice, &mut bob] {
        let ended = client.expect("call_ended").await;
        assert_eq!(ended["reason"], "rejected");
    }
}

#[tokio::test]
async fn the_caller_can_cancel_a_ringing_call() {
    let server = TestServer::start().await;
    let mut alice = server.user("Alice").await;
    let mut bob = server.user("Bob").await;
    let call_id = ring(&mut alice, &mut bob).await;
    let ack = alice
        .request("end_call", json!({ "call_id": call_id }))
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    for client in [&mut alice, &mut bob] {
        let ended = client.expect("call_ended").await;
        assert_eq!(ended["reason"], "cancelled");
    }
}

#[tokio::test]
async fn calls_to_offline_unknown_busy_or_self_are_refused() {
    let server = TestServer::start().await;
    let mut alice = server.user("Alice").await;
    let (_, offline_id) = server.session("Offline Olga").await;

    let ack = alice
        .request(
            "initiate_call",
            json!({ "to": offline_id, "kind": "video" }),
        )
        .await;
    assert_refused(&ack, "user_offline");
    let error = alice.expect_error("user_offline").await;
    assert_eq!(error["event"], "initiate_call");

    let ack = alice
        .request(
            "initiate_call",
            json!({ "to": "no-such-user", "kind": "video" }),
        )
        .await;
    assert_refused(&ack, "user_offline");

    let me = alice.user_id.clone();
    let ack = alice
        .request("initiate_call", json!({ "to": me, "kind": "voice" }))
        .await;
    assert_refused(&ack, "self_call");
    alice.expect_error("self_call").await;

    // Busy: Bob is in a call with Carol.
    let mut bob = server.user("Bob").await;
    let mut carol = server.user("Carol").await;
    ring(&mut carol, &mut bob).await;
    let ack = alice
        .request(
            "initiate_call",
            json!({ "to": bob.user_id, "kind": "voice" }),
        )
        .await;
    assert_refused(&ack, "busy");
    // ...and a busy caller cannot start another call.
    let ack = carol
        .request(
            "initiate_call",
            json!({ "to": alice.user_id, "kind": "voice" }),
        )
        .await;
    assert_refused(&ack, "busy");
}

#[tokio::test]
async fn only_participants_act_on_a_call() {
    let server = TestServer::start().await;
    let mut alice = server.user("Alice").await;
    let mut bob = server.user("Bob").await;
    let mut eve = server.user("Eve").await;
    let call_id = ring(&mut alice, &mut bob).await;

    // The caller cannot answer their own call.
    let ack = alice
        .request("accept_call", json!({ "call_id": call_id }))
        .await;
    assert_refused(&ack, "not_permitted");
    // Media before accept is out of order.
    let offer = json!({ "call_id": call_id, "target": "publisher", "sdp": "v=0\r\n" });
    let ack = alice.request("webrtc_offer", offer.clone()).await;
    assert_refused(&ack, "invalid_state");

    for (event, payload) in [
        ("accept_call", json!({ "call_id": call_id })),
        ("reject_call", json!({ "call_id": call_id })),
        ("end_call", json!({ "call_id": call_id })),
        ("webrtc_offer", offer.clone()),
        (
            "media_state",
            json!({ "call_id": call_id, "audio": true, "video": true }),
        ),
    ] {
        let ack = eve.request(event, payload).await;
        assert_refused(&ack, "not_a_participant");
        let error = eve.expect_error("not_a_participant").await;
        assert_eq!(error["event"], event);
        assert_eq!(error["call_id"], call_id.as_str());
    }

    let ack = eve
        .request("accept_call", json!({ "call_id": "no-such-call" }))
        .await;
    assert_refused(&ack, "unknown_call");
    eve.expect_error("unknown_call").await;

    // Nothing happened to the call: Bob can still accept it.
    let ack = bob
        .request("accept_call", json!({ "call_id": call_id }))
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    alice.expect("call_accepted").await;
    let ack = bob
        .request("accept_call", json!({ "call_id": call_id }))
        .await;
    assert_refused(&ack, "invalid_state");
}

#[tokio::test]
async fn every_tab_rings_but_the_call_belongs_to_the_sockets_in_it() {
    let server = TestServer::start().await;
    let mut alice = server.user("Alice").await;
    let mut bob = server.user("Bob").await;
    let auth = |c: &Client| Some(json!({ "token": c.token }));
    let mut alice_tab2 = Client::connect(server.addr, auth(&alice)).await.unwrap();
    let mut bob_tab2 = Client::connect(server.addr, auth(&bob)).await.unwrap();

    let call_id = ring(&mut alice, &mut bob).await;
    // Every socket of the callee rings; the caller's other tab is not in the call.
    bob_tab2
        .expect_where("incoming_call", |d| d["call_id"] == call_id.as_str())
        .await;
    let ack = alice_tab2
        .request("end_call", json!({ "call_id": call_id }))
        .await;
    assert_refused(&ack, "not_a_participant");

    // Bob answers on his second tab: that socket is now the call's.
    let ack = bob_tab2
        .request("accept_call", json!({ "call_id": call_id }))
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    alice.expect("call_accepted").await;
    bob_tab2.expect("call_accepted").await;
    // Bob's first tab stops ringing and may no longer act on the call.
    let ended = bob.expect("call_ended").await;
    assert_eq!(
        ended,
        json!({ "call_id": call_id, "reason": "answered_elsewhere" })
    );
    let ack = bob.request("end_call", json!({ "call_id": call_id })).await;
    assert_refused(&ack, "not_a_participant");

    // Closing a tab that is not in the call changes nothing...
    bob.close();
    alice_tab2.close();
    let ack = alice
        .request(
            "media_state",
            json!({ "call_id": call_id, "audio": true, "video": false }),
        )
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    bob_tab2.expect("participant_media_state").await;
    // ...closing the one in it ends it.
    bob_tab2.close();
    let ended = alice.expect("call_ended").await;
    assert_eq!(ended["reason"], "disconnected");
}

#[tokio::test]
async fn malformed_payloads_are_errors_and_the_socket_survives() {
    let server = TestServer::start_with(|c| c.max_payload_bytes = 4096).await;
    let mut alice = server.user("Alice").await;
    let mut bob = server.user("Bob").await;

    for raw in [
        r#"["accept_call",5]"#,
        r#"["accept_call"]"#,
        r#"["accept_call","call"]"#,
        r#"["accept_call",null]"#,
        r#"["accept_call",[1,2]]"#,
        r#"["accept_call",{"call_id":7}]"#,
        r#"["initiate_call",{"to":"x"}]"#,
        r#"["initiate_call",{"to":"x","kind":"fax"}]"#,
        r#"["end_call",{"call_id":"c","reason":"because"}]"#,
        r#"["webrtc_offer",{"call_id":"c","target":"subscriber","sdp":"v=0"}]"#,
        r#"["webrtc_ice_candidate",{"call_id":"c","target":"publisher","candidate":1}]"#,
        r#"["media_state",{"call_id":"c","audio":"yes","video":true}]"#,
    ] {
        let ack = alice.request_raw(raw).await;
        assert_refused(&ack, "invalid_payload");
        let error = alice.expect_error("invalid_payload").await;
        assert!(error["event"].is_string(), "{error}");
    }

    // Without an ack callback, the error event still arrives.
    alice.send_raw(r#"42["reject_call",true]"#);
    let error = alice.expect_error("invalid_payload").await;
    assert_eq!(error["event"], "reject_call");

    // Unknown events too.
    let ack = alice.request("fly_to_the_moon", json!({})).await;
    assert_refused(&ack, "invalid_payload");

    // Oversized (but within the transport limit).
    let sdp = "a".repeat(5000);
    let ack = alice
        .request(
            "webrtc_offer",
            json!({ "call_id": "c", "target": "publisher", "sdp": sdp }),
        )
        .await;
    assert_refused(&ack, "payload_too_large");
    alice.expect_error("payload_too_large").await;

    // Garbage Socket.IO packets must not take the server down either.
    alice.send_raw("42not json at all");
    alice.send_raw("4");

    // The socket still works: a real call goes through (on a fresh socket if the server
    // chose to drop the one that sent unparsable packets).
    let mut alice = server.user("Alice2").await;
    let call_id = ring(&mut alice, &mut bob).await;
    assert!(!call_id.is_empty());
}

#[tokio::test]
async fn invalid_payloads_do_not_disconnect() {
    let server = TestServer::start().await;
    let mut alice = server.user("Alice").await;
    let mut bob = server.user("Bob").await;
    let ack = alice.request_raw(r#"["accept_call",5]"#).await;
    assert_refused(&ack, "invalid_payload");
    let ack = alice
        .request_raw(r#"["initiate_call",{"to":[],"kind":"video"}]"#)
        .await;
    assert_refused(&ack, "invalid_payload");
    // Same socket, still connected and working.
    let call_id = ring(&mut alice, &mut bob).await;
    assert!(!call_id.is_empty());
}

#[tokio::test]
async fn an_unanswered_call_times_out() {
    let server = TestServer::start_with(|c| c.ring_timeout = Duration::from_millis(300)).await;
    let mut alice = server.user("Alice").await;
    let mut bob = server.user("Bob").await;
    let call_id = ring(&mut alice, &mut bob).await;
    for client in [&mut alice, &mut bob] {
        let ended = client.expect("call_ended").await;
        assert_eq!(ended["call_id"], call_id.as_str());
        assert_eq!(ended["reason"], "no_answer");
        assert!(ended.get("by").is_none());
    }
    let ack = bob
        .request("accept_call", json!({ "call_id": call_id }))
        .await;
    assert_refused(&ack, "unknown_call");
}

#[tokio::test]
async fn an_accepted_call_does_not_time_out() {
    let server = TestServer::start_with(|c| c.ring_timeout = Duration::from_millis(200)).await;
    let (mut alice, _bob, call_id) = active_call(&server).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(!alice.has_pending("call_ended"));
    let ack = alice
        .request("end_call", json!({ "call_id": call_id }))
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
}

#[tokio::test]
async fn a_participant_disconnecting_ends_the_call() {
    let server = TestServer::start().await;
    let (mut alice, bob, call_id) = active_call(&server).await;
    let bob_id = bob.user_id.clone();
    bob.close();
    let ended = alice.expect("call_ended").await;
    assert_eq!(ended["call_id"], call_id.as_str());
    assert_eq!(ended["reason"], "disconnected");
    assert_eq!(ended["by"]["id"], bob_id.as_str());
    alice
        .expect_presence(|u| u.len() == 1 && u[0]["busy"] == false)
        .await;
}

#[tokio::test]
async fn a_ringing_callee_going_offline_ends_the_call() {
    let server = TestServer::start().await;
    let mut alice = server.user("Alice").await;
    let mut bob = server.user("Bob").await;
    ring(&mut alice, &mut bob).await;
    bob.close();
    let ended = alice.expect("call_ended").await;
    assert_eq!(ended["reason"], "disconnected");
}

#[tokio::test]
async fn shutdown_ends_calls() {
    let server = TestServer::start().await;
    let (mut alice, mut bob, call_id) = active_call(&server).await;
    server.signaling.shutdown().await;
    for client in [&mut alice, &mut bob] {
        let ended = client.expect("call_ended").await;
        assert_eq!(ended["call_id"], call_id.as_str());
        assert_eq!(ended["reason"], "shutdown");
    }
}

#[tokio::test]
async fn media_the_sfu_refuses_is_an_error_and_the_call_survives() {
    let server = TestServer::start().await;
    let (mut alice, mut bob, call_id) = active_call(&server).await;
    let ack = alice
        .request(
            "webrtc_offer",
            json!({ "call_id": call_id, "target": "publisher", "sdp": "this is not SDP" }),
        )
        .await;
    assert_eq!(ack["ok"], false, "{ack}");
    let code = ack["error"]["code"].as_str().unwrap().to_owned();
    // The SFU's verdict on garbage SDP is `media_rejected`; a stubbed SFU may say `internal`.
    assert!(code == "media_rejected" || code == "internal", "{ack}");
    let error = alice.expect_error(&code).await;
    assert_eq!(error["event"], "webrtc_offer");
    assert_eq!(error["call_id"], call_id.as_str());

    let ack = alice
        .request(
            "webrtc_answer",
            json!({ "call_id": call_id, "target": "subscriber", "sdp": "v=0\r\n" }),
        )
        .await;
    assert_eq!(ack["ok"], false, "no subscriber offer is pending: {ack}");

    // The call is still up.
    let ack = bob
        .request(
            "media_state",
            json!({ "call_id": call_id, "audio": true, "video": true }),
        )
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    alice.expect("participant_media_state").await;
    assert_eq!(server.signaling.stats().active_calls, 1);
}
