//! Every refusal of docs/security.md, against a real server: grants, expiry, authorization
//! between sockets, and each abuse limit with its stable code.

mod common;

use std::time::Duration;

use common::{active_call, assert_refused, ring, Client, TestServer, SECRET};
use serde_json::{json, Value};
use switchboard_signaling::identity::{unix_now, TokenIssuer};
use switchboard_signaling::{Claims, Grants, PublishSource};

fn issuer() -> TokenIssuer {
    TokenIssuer::new(SECRET, Duration::from_secs(3600))
}

/// A client whose token carries exactly `grants` and expires in `ttl_secs`.
async fn connect_with(server: &TestServer, name: &str, grants: Grants, ttl_secs: u64) -> Client {
    let id = format!("{name}-{}", rand::random::<u32>());
    let token = issuer().sign(&Claims {
        sub: id.clone(),
        name: name.to_owned(),
        exp: unix_now() + ttl_secs,
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

fn sdp(sections: &[&str]) -> String {
    let mut sdp = String::from("v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n");
    for (i, kind) in sections.iter().enumerate() {
        sdp.push_str(&format!(
            "m={kind} 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:{i}\r\na=sendrecv\r\n"
        ));
    }
    sdp
}

fn offer(call_id: &str, sdp: String) -> Value {
    json!({ "call_id": call_id, "target": "publisher", "sdp": sdp })
}

#[tokio::test]
async fn a_token_without_the_call_grant_cannot_call_or_accept() {
    let server = TestServer::start().await;
    let mut listener = connect_with(&server, "Listener", Grants::default(), 600).await;
    let mut alice = server.user("Alice").await;

    let ack = listener
        .request(
            "initiate_call",
            json!({ "to": alice.user_id, "kind": "voice" }),
        )
        .await;
    assert_refused(&ack, "missing_grant");
    listener.expect_error("missing_grant").await;

    // Alice may call the listener, who may not pick up.
    let call_id = ring(&mut alice, &mut listener).await;
    let ack = listener
        .request("accept_call", json!({ "call_id": call_id }))
        .await;
    assert_refused(&ack, "missing_grant");
    // Declining is always allowed.
    let ack = listener
        .request("reject_call", json!({ "call_id": call_id }))
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
}

#[tokio::test]
async fn a_room_scoped_token_only_acts_in_its_rooms() {
    let server = TestServer::start().await;
    let grants = Grants {
        rooms: Some(vec!["some-other-call".into()]),
        ..Grants::full()
    };
    let mut scoped = connect_with(&server, "Scoped", grants, 600).await;
    let mut alice = server.user("Alice").await;
    let ack = scoped
        .request(
            "initiate_call",
            json!({ "to": alice.user_id, "kind": "voice" }),
        )
        .await;
    assert_refused(&ack, "missing_grant");
    let call_id = ring(&mut alice, &mut scoped).await;
    let ack = scoped
        .request("accept_call", json!({ "call_id": call_id }))
        .await;
    assert_refused(&ack, "missing_grant");
}

#[tokio::test]
async fn publish_and_subscribe_grants_are_checked_on_sdp() {
    let server = TestServer::start().await;
    let audio_only = Grants {
        publish: vec![PublishSource::Audio],
        subscribe: false,
        ..Grants::full()
    };
    let mut alice = connect_with(&server, "Alice", audio_only, 600).await;
    let mut bob = server.user("Bob").await;
    let call_id = ring(&mut alice, &mut bob).await;
    let ack = bob
        .request("accept_call", json!({ "call_id": call_id }))
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    alice.expect("call_accepted").await;

    // A real webrtc-rs offer (the SFU judges what it negotiates; every hostile spelling and
    // the media that must not flow are in media_grants.rs).
    let (events, _) = tokio::sync::mpsc::unbounded_channel();
    let client = loadtest::Publisher::new(
        &loadtest::PeerConfig::default(),
        &alice.user_id,
        true,
        events,
    )
    .await
    .unwrap();
    let real = client.create_offer().await.unwrap();
    let ack = alice
        .request("webrtc_offer", offer(&call_id, real.clone()))
        .await;
    assert_refused(&ack, "missing_grant");
    assert!(ack["error"]["message"].as_str().unwrap().contains("video"));
    // A receive-only video section is fine: it publishes nothing.
    let audio_only =
        real.replacen("a=sendrecv", "a=recvonly", 2)
            .replacen("a=recvonly", "a=sendrecv", 1);
    let ack = alice
        .request("webrtc_offer", offer(&call_id, audio_only))
        .await;
    assert_eq!(ack["ok"], true, "{ack}");

    let answer = json!({ "call_id": call_id, "target": "subscriber", "sdp": sdp(&["audio"]) });
    let ack = alice.request("webrtc_answer", answer).await;
    assert_refused(&ack, "missing_grant");
}

#[tokio::test]
async fn screen_tracks_need_the_screen_grant() {
    let server = TestServer::start().await;
    let camera_only = Grants {
        publish: vec![PublishSource::Audio, PublishSource::Video],
        ..Grants::full()
    };
    let mut alice = connect_with(&server, "Alice", camera_only, 600).await;
    let mut bob = server.user("Bob").await;
    let call_id = ring(&mut alice, &mut bob).await;
    let ack = bob
        .request("accept_call", json!({ "call_id": call_id }))
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    alice.expect("call_accepted").await;

    let mut screen_offer = offer(&call_id, sdp(&["audio", "video"]));
    screen_offer["tracks"] = json!([{ "track_id": "display-1", "source": "screen" }]);
    let ack = alice.request("webrtc_offer", screen_offer).await;
    assert_refused(&ack, "missing_grant");
    assert!(
        ack["error"]["message"].as_str().unwrap().contains("screen"),
        "{ack}"
    );
    // The same video declared as the camera passes the grant check.
    let mut camera_offer = offer(&call_id, sdp(&["audio", "video"]));
    camera_offer["tracks"] = json!([{ "track_id": "cam-1", "source": "camera" }]);
    let ack = alice.request("webrtc_offer", camera_offer).await;
    assert_ne!(ack["error"]["code"], "missing_grant", "{ack}");
}

#[tokio::test]
async fn an_expired_token_keeps_its_call_but_starts_nothing_new() {
    let server = TestServer::start().await;
    let mut alice = connect_with(&server, "Alice", Grants::full(), 2).await;
    let mut bob = server.user("Bob").await;
    let mut carol = server.user("Carol").await;
    let call_id = ring(&mut alice, &mut bob).await;
    let ack = bob
        .request("accept_call", json!({ "call_id": call_id }))
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    alice.expect("call_accepted").await;

    // Past `exp` (whole seconds).
    tokio::time::sleep(Duration::from_millis(3100)).await;
    let ack = alice
        .request(
            "media_state",
            json!({ "call_id": call_id, "audio": false, "video": true }),
        )
        .await;
    assert_eq!(ack["ok"], true, "the running call continues: {ack}");
    bob.expect("participant_media_state").await;
    let ack = alice
        .request(
            "initiate_call",
            json!({ "to": carol.user_id, "kind": "voice" }),
        )
        .await;
    assert_refused(&ack, "expired_token");

    // Ringing Alice with an expired token: she cannot accept.
    let ack = alice
        .request("end_call", json!({ "call_id": call_id }))
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    let call2 = ring(&mut carol, &mut alice).await;
    let ack = alice
        .request("accept_call", json!({ "call_id": call2 }))
        .await;
    assert_refused(&ack, "expired_token");

    // And it cannot reconnect.
    let refused = Client::connect(server.addr, Some(json!({ "token": alice.token })))
        .await
        .err();
    assert_eq!(refused.as_deref(), Some("expired_token"));
}

#[tokio::test]
async fn nobody_injects_media_signaling_into_someone_elses_call() {
    let server = TestServer::start().await;
    let (mut alice, mut bob, call_id) = active_call(&server).await;
    let mut eve = server.user("Eve").await;
    // Another tab of Bob's is not bound to the call either.
    let mut bob_tab = Client::connect(server.addr, Some(json!({ "token": bob.token })))
        .await
        .unwrap();
    bob_tab.name = "Bob's tab".into();
    let candidate =
        json!({ "candidate": "candidate:1 1 udp 1 10.0.0.1 9 typ host", "sdpMid": "0" });
    for client in [&mut eve, &mut bob_tab] {
        for (event, payload) in [
            ("webrtc_offer", offer(&call_id, sdp(&["audio"]))),
            (
                "webrtc_answer",
                json!({ "call_id": call_id, "target": "subscriber", "sdp": sdp(&["audio"]) }),
            ),
            (
                "webrtc_ice_candidate",
                json!({ "call_id": call_id, "target": "publisher", "candidate": candidate }),
            ),
            ("end_call", json!({ "call_id": call_id })),
            ("accept_call", json!({ "call_id": call_id })),
        ] {
            let ack = client.request(event, payload).await;
            assert_refused(&ack, "not_a_participant");
        }
    }
    // The call is untouched.
    let ack = alice
        .request(
            "media_state",
            json!({ "call_id": call_id, "audio": true, "video": true }),
        )
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    bob.expect("participant_media_state").await;
    assert!(!alice.has_pending("call_ended"));
}

#[tokio::test]
async fn sdp_size_tracks_and_candidates_are_limited() {
    let server = TestServer::start_with(|c| {
        c.limits.max_sdp_bytes = 2048;
        c.limits.max_candidates_per_connection = 2;
    })
    .await;
    let (mut alice, _bob, call_id) = active_call(&server).await;

    let big = sdp(&["audio"]) + &"a=x-padding\r\n".repeat(200);
    let ack = alice.request("webrtc_offer", offer(&call_id, big)).await;
    assert_refused(&ack, "payload_too_large");
    // The track limit is the SFU's, on what it negotiates: media_grants.rs.
    let candidate = json!({ "candidate": "candidate:1 1 udp 2122260223 127.0.0.1 50000 typ host", "sdpMid": "0", "sdpMLineIndex": 0 });
    let payload = json!({ "call_id": call_id, "target": "publisher", "candidate": candidate });
    for _ in 0..2 {
        let ack = alice.request("webrtc_ice_candidate", payload.clone()).await;
        assert_ne!(ack["error"]["code"], "limit_exceeded", "{ack}");
    }
    let ack = alice.request("webrtc_ice_candidate", payload).await;
    assert_refused(&ack, "limit_exceeded");
    // The subscriber connection has its own count.
    let sub = json!({ "call_id": call_id, "target": "subscriber", "candidate": candidate });
    let ack = alice.request("webrtc_ice_candidate", sub).await;
    assert_ne!(ack["error"]["code"], "limit_exceeded", "{ack}");
}

#[tokio::test]
async fn event_rates_are_limited_per_socket_and_per_user() {
    let server = TestServer::start_with(|c| {
        c.limits.socket_events_per_sec = 1;
        c.limits.socket_event_burst = 5;
        c.limits.user_events_per_sec = 1;
        c.limits.user_event_burst = 8;
        c.limits.strikes_before_disconnect = 100;
    })
    .await;
    let mut alice = server.user("Alice").await;
    let ping = json!({ "call_id": "none", "audio": true, "video": true });
    let mut codes = Vec::new();
    for _ in 0..7 {
        let ack = alice.request("media_state", ping.clone()).await;
        codes.push(ack["error"]["code"].as_str().unwrap_or("ok").to_owned());
    }
    assert_eq!(&codes[..5], &["unknown_call"; 5], "{codes:?}");
    assert_eq!(&codes[5..], &["rate_limited"; 2], "{codes:?}");
    alice.expect_error("rate_limited").await;

    // A second tab has its own socket bucket but shares the user's: 8 - 5 = 3 left (the
    // refused events took no user token).
    let mut tab = Client::connect(server.addr, Some(json!({ "token": alice.token })))
        .await
        .unwrap();
    let mut codes = Vec::new();
    for _ in 0..5 {
        let ack = tab.request("media_state", ping.clone()).await;
        codes.push(ack["error"]["code"].as_str().unwrap_or("ok").to_owned());
    }
    assert_eq!(
        codes.iter().filter(|c| *c == "rate_limited").count(),
        2,
        "{codes:?}"
    );

    // Another user is not affected.
    let mut bob = server.user("Bob").await;
    let ack = bob.request("media_state", ping).await;
    assert_refused(&ack, "unknown_call");
}

#[tokio::test]
async fn repeated_abuse_disconnects_only_that_socket() {
    let server = TestServer::start_with(|c| {
        c.limits.strikes_before_disconnect = 5;
        c.limits.strike_forgiveness = Duration::from_secs(60);
    })
    .await;
    let (mut alice, mut bob, call_id) = active_call(&server).await;
    let mut mallory = server.user("Mallory").await;
    for i in 0..20 {
        mallory.send_raw(format!("42[\"accept_call\",{i}]"));
        mallory.send_raw("42[\"no_such_event\",{}]");
    }
    mallory.expect_error("too_many_violations").await;
    mallory.expect_closed().await;

    // Alice and Bob's call goes on.
    let ack = alice
        .request(
            "media_state",
            json!({ "call_id": call_id, "audio": true, "video": false }),
        )
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    bob.expect("participant_media_state").await;
    // Mallory can come back (a new socket starts with fresh strikes).
    let again = Client::connect(server.addr, Some(json!({ "token": mallory.token }))).await;
    assert!(again.is_ok());
}

#[tokio::test]
async fn sockets_per_user_are_limited() {
    let server = TestServer::start_with(|c| c.limits.max_sockets_per_user = 2).await;
    let alice = server.user("Alice").await;
    let _tab = Client::connect(server.addr, Some(json!({ "token": alice.token })))
        .await
        .unwrap();
    let third = Client::connect(server.addr, Some(json!({ "token": alice.token })))
        .await
        .err();
    assert_eq!(third.as_deref(), Some("too_many_connections"));
    // Someone else still connects.
    let _bob = server.user("Bob").await;
    // Closing one frees a slot.
    alice.close();
    let deadline = tokio::time::Instant::now() + common::DEADLINE;
    loop {
        match Client::connect(server.addr, Some(json!({ "token": alice.token }))).await {
            Ok(_) => break,
            Err(e) if tokio::time::Instant::now() < deadline => {
                assert_eq!(e, "too_many_connections");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("slot not freed: {e}"),
        }
    }
}
