//! Recording rules and safety, end to end through the real server (Socket.IO clients, webrtc-rs
//! media, the HTTP API, the `switchboard` binary for crashes): who may stop a recording and
//! download it, concurrency caps, crash recovery and history writes under a locked database.
//! (docs/security.md findings 7, 8, 14, 15, 16; docs/history.md.)

mod recording_common;
use recording_common::*;

/// Finding 8: stopping needs the `record` grant and a member who joined — a ringing invitee
/// with no grants at all, a ringing invitee with every grant, and a joined member without
/// `record` are all refused, and the recording keeps running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_joined_members_with_record_can_stop_a_recording() -> Result<()> {
    let server = TestServer::start(ServerConfig::for_tests()).await?;
    let base = server.base.clone();
    let http = reqwest::Client::new();
    let (alice, mut alice_ev, _) = join(&http, &base, "Alice").await?;
    let (bob, mut bob_ev, _) = join(&http, &base, "Bob").await?;
    let call = two_person_call(&alice, &bob, &mut bob_ev, CallKind::Voice).await?;
    emit(alice.signaling(), "start_recording", &call).await?;
    wait_for("alice", &mut alice_ev, SIGNAL_TIMEOUT, named("recording_started", &call)).await?;

    let no_record = Grants {
        record: false,
        ..Grants::full()
    };
    let (dave, d, mut dave_ev) = signaling_user(
        &base,
        "00000000-0000-4000-8000-0000000000d1",
        "Dave",
        Grants::default(),
    )
    .await?;
    let (erin, e, mut erin_ev) = signaling_user(
        &base,
        "00000000-0000-4000-8000-0000000000e1",
        "Erin",
        Grants::full(),
    )
    .await?;
    let (carol, c, mut carol_ev) = signaling_user(
        &base,
        "00000000-0000-4000-8000-0000000000c1",
        "Carol",
        no_record,
    )
    .await?;
    let b = bob.signaling();
    for (user, events) in [(&dave, &mut dave_ev), (&erin, &mut erin_ev), (&carol, &mut carol_ev)] {
        invite_when_online(b, &call, user).await?;
        wait_signal(&user.name, events, incoming).await?;
    }
    c.accept_call(&call).await?;

    // Dave and Erin are only ringing; Carol joined but may not record.
    let code = refused_code(emit(&d, "stop_recording", &call).await);
    ensure!(code == "missing_grant", "ringing invitee without grants: {code}");
    let code = refused_code(emit(&e, "stop_recording", &call).await);
    ensure!(code == "invalid_state", "ringing invitee with every grant: {code}");
    let code = refused_code(emit(&c, "stop_recording", &call).await);
    ensure!(code == "missing_grant", "joined member without record: {code}");

    // Still recording: a joined member with `record` stops it, and everyone hears it once.
    emit(b, "stop_recording", &call).await?;
    let body = wait_for(
        "alice",
        &mut alice_ev,
        SIGNAL_TIMEOUT,
        named("recording_stopped", &call),
    )
    .await?;
    ensure!(body["reason"] == "requested", "{body}");

    d.reject_call(&call).await?;
    e.reject_call(&call).await?;
    c.leave_call(&call, None).await?;
    for client in [d, e, c] {
        client.close();
    }
    alice.close().await;
    bob.close().await;
    server.stop().await;
    Ok(())
}

/// Finding 7: a call's recordings are listed and downloadable only for members who were in
/// the call while it was recorded. Mallory declined, Nina never answered, Carol joined and
/// left before the recording started: the call is in their history, its recordings are not,
/// and downloading them is a 404 like any unknown recording.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recordings_are_only_for_members_present_while_recording() -> Result<()> {
    let server = TestServer::start(ServerConfig::for_tests()).await?;
    let base = server.base.clone();
    let http = reqwest::Client::new();
    let (alice, _alice_ev, alice_token) = join(&http, &base, "Alice").await?;
    let (bob, mut bob_ev, bob_token) = join(&http, &base, "Bob").await?;
    let (carol, mut carol_ev, carol_token) = join(&http, &base, "Carol").await?;
    let (mallory, m, mut mallory_ev) = signaling_user(
        &base,
        "00000000-0000-4000-8000-0000000000a7",
        "Mallory",
        Grants::full(),
    )
    .await?;
    let (nina, n, mut nina_ev) = signaling_user(
        &base,
        "00000000-0000-4000-8000-0000000000b7",
        "Nina",
        Grants::full(),
    )
    .await?;
    let a = alice.signaling();
    let call = a
        .initiate_group_call(&[bob.user().id.clone(), carol.user().id.clone()], CallKind::Voice)
        .await?;
    for user in [&mallory, &nina] {
        invite_when_online(a, &call, user).await?;
    }
    wait_signal("mallory", &mut mallory_ev, incoming).await?;
    wait_signal("nina", &mut nina_ev, incoming).await?;
    m.reject_call(&call).await?;
    for (p, events) in [(&bob, &mut bob_ev), (&carol, &mut carol_ev)] {
        wait_for("callee", events, SIGNAL_TIMEOUT, incoming).await?;
        p.signaling().accept_call(&call).await?;
    }
    media_flows(&carol, alice.user(), MediaKind::Audio, 25).await?;
    media_flows(&bob, alice.user(), MediaKind::Audio, 25).await?;
    media_flows(&alice, bob.user(), MediaKind::Audio, 25).await?;
    // Carol's stay is in the history before the recording starts.
    carol.signaling().leave_call(&call, None).await?;
    call_until(&http, &base, &alice_token, &call, "carol left", |c| {
        c["participants"]
            .as_array()
            .is_some_and(|ps| ps.iter().any(|p| p["name"] == "Carol" && p["left_at"].is_i64()))
    })
    .await?;
    tokio::time::sleep(Duration::from_millis(50)).await;

    emit(a, "start_recording", &call).await?;
    wait_for("bob", &mut bob_ev, SIGNAL_TIMEOUT, named("recording_started", &call)).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    emit(a, "stop_recording", &call).await?;
    let detail = call_until(&http, &base, &bob_token, &call, "two recordings", |c| {
        c["recordings"].as_array().is_some_and(|r| r.len() == 2)
    })
    .await?;
    let ids: Vec<String> = detail["recordings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect();

    let outsiders = [
        ("mallory (declined)", token_for(&mallory, Grants::full())),
        ("nina (never answered)", token_for(&nina, Grants::full())),
        ("carol (left before)", carol_token.clone()),
    ];
    for (who, token) in &outsiders {
        let (status, call_json) =
            api(&http, &base, Some(token), &format!("/api/calls/{}", call.as_str())).await?;
        ensure!(status == 200, "{who}: the call stays in their history: {status}");
        ensure!(
            call_json["recordings"].as_array().is_some_and(|r| r.is_empty()),
            "{who} sees recordings: {call_json}"
        );
        let (status, list) = api(&http, &base, Some(token), "/api/calls").await?;
        ensure!(status == 200, "{who}: {status}");
        let listed = list["calls"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == call.as_str())
            .with_context(|| format!("{who}: call not listed: {list}"))?;
        ensure!(
            listed["recordings"].as_array().is_some_and(|r| r.is_empty()),
            "{who} lists recordings: {listed}"
        );
        for id in &ids {
            let (status, body) =
                api(&http, &base, Some(token), &format!("/api/recordings/{id}")).await?;
            ensure!(
                status == 404 && body["error"]["code"] == "unknown_recording",
                "{who} downloads {id}: {status} {body}"
            );
        }
    }
    for token in [&alice_token, &bob_token] {
        for id in &ids {
            let response = http
                .get(format!("{base}/api/recordings/{id}"))
                .bearer_auth(token)
                .send()
                .await?;
            ensure!(response.status().as_u16() == 200, "{}", response.status());
        }
    }

    a.end_call(&call, None).await?;
    m.close();
    n.close();
    alice.close().await;
    bob.close().await;
    carol.close().await;
    server.stop().await;
    Ok(())
}
