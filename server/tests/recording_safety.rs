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
