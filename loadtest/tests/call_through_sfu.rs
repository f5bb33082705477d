//! End to end: a 1:1 video call between two Rust clients through an in-process Switchboard,
//! with real Socket.IO signaling and real WebRTC (ICE, DTLS, SRTP) to the SFU.
//!
//! What it proves: each side receives the *other* user's audio and video (stream id = the other
//! user's id, per protocol §6) and receives it from the SFU's media address — not from the other
//! client — and hanging up reaches the other side as `call_ended{reason: "hangup"}`.
//!
//! Everything waits by polling against a deadline; on a miss the failure message carries what
//! was seen (events, per-track counters, connection states, remote addresses).

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use loadtest::{
    CallId, CallKind, EndReason, Participant, ParticipantConfig, ParticipantEvent, PeerTarget,
    ServerEvent,
};
use support::{
    describe, drain, has_media_from, wait_for, TestServer, MIN_AUDIO_PACKETS, MIN_VIDEO_PACKETS,
};
use tokio::time::Instant;

/// ICE + DTLS for four connections on two cores, then the packet minimums.
const MEDIA_TIMEOUT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_to_one_video_call_flows_through_the_sfu() -> Result<()> {
    one_to_one_call(CallKind::Video).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_to_one_voice_call_flows_through_the_sfu() -> Result<()> {
    one_to_one_call(CallKind::Voice).await
}

async fn one_to_one_call(kind: CallKind) -> Result<()> {
    support::init_tracing();
    let server = TestServer::start(switchboard::ServerConfig::for_tests()).await?;
    let http = reqwest::Client::new();
    let (alice, mut alice_events) = Participant::join(
        &http,
        &server.base_url,
        "Alice",
        ParticipantConfig::default(),
    )
    .await
    .context("alice joins")?;
    let (bob, mut bob_events) =
        Participant::join(&http, &server.base_url, "Bob", ParticipantConfig::default())
            .await
            .context("bob joins")?;

    // Ring, accept.
    let call_id = alice
        .signaling()
        .initiate_call(&bob.user().id, kind)
        .await
        .context("alice calls bob")?;
    let alice_id = alice.user().id.clone();
    wait_for("bob", "incoming_call", &mut bob_events, |e| match e {
        ParticipantEvent::Signal(ServerEvent::IncomingCall {
            call_id: id,
            from,
            kind: k,
            ..
        }) if *id == call_id && from.id == alice_id && *k == kind => Some(()),
        _ => None,
    })
    .await?;
    bob.signaling()
        .accept_call(&call_id)
        .await
        .context("bob accepts")?;
    let accepted = |call_id: &CallId| {
        let call_id = call_id.clone();
        move |e: &ParticipantEvent| match e {
            ParticipantEvent::Signal(ServerEvent::CallAccepted { call_id: id, .. })
                if *id == call_id =>
            {
                Some(())
            }
            _ => None,
        }
    };
    wait_for(
        "alice",
        "call_accepted",
        &mut alice_events,
        accepted(&call_id),
    )
    .await?;
    wait_for("bob", "call_accepted", &mut bob_events, accepted(&call_id)).await?;

    // Media: both publish on call_accepted (the participant does it); wait until each side
    // has the other's audio and video.
    let deadline = Instant::now() + MEDIA_TIMEOUT;
    loop {
        drain("alice", &mut alice_events)?;
        drain("bob", &mut bob_events)?;
        if has_media_from(&alice, &bob, kind) && has_media_from(&bob, &alice, kind) {
            break;
        }
        if Instant::now() >= deadline {
            bail!(
                "{kind:?} media did not flow both ways within {MEDIA_TIMEOUT:?} (need {MIN_AUDIO_PACKETS} audio and, for video, {MIN_VIDEO_PACKETS} video packets from the other user)\n{}{}",
                describe(&alice).await,
                describe(&bob).await
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tracing::info!(
        "media flowing:\n{}{}",
        describe(&alice).await,
        describe(&bob).await
    );

    // Through the SFU: every datagram each connection received came from the SFU's media
    // address (counted on the clients' own sockets), never from the other client.
    for p in [&alice, &bob] {
        let media = p.media().context("call media vanished")?;
        let publisher = media.publisher.as_ref().context("both publish")?;
        for (target, traffic) in [
            (PeerTarget::Publisher, publisher.traffic()),
            (PeerTarget::Subscriber, media.subscriber.traffic()),
        ] {
            let flows = traffic.flows();
            let sources: Vec<SocketAddr> = flows
                .iter()
                .filter(|(_, f)| f.packets_in > 0)
                .map(|(addr, _)| *addr)
                .collect();
            assert_eq!(
                sources,
                vec![server.media_addr],
                "{}'s {target:?} connection must receive from the SFU only; flows: {flows:?}",
                p.user().name
            );
        }
    }

    // Hang up.
    alice
        .signaling()
        .end_call(&call_id, None)
        .await
        .context("alice hangs up")?;
    let (reason, by) = wait_for("bob", "call_ended", &mut bob_events, |e| match e {
        ParticipantEvent::Signal(ServerEvent::CallEnded {
            call_id: id,
            reason,
            by,
        }) if *id == call_id => Some((*reason, by.clone())),
        _ => None,
    })
    .await?;
    assert_eq!(reason, EndReason::Hangup);
    if let Some(by) = by {
        assert_eq!(by.id, alice.user().id, "call_ended.by names who hung up");
    }

    alice.close().await;
    bob.close().await;
    server.stop().await
}
