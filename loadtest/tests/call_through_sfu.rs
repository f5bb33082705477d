//! End to end: a 1:1 video call between two Rust clients through an in-process Switchboard,
//! with real Socket.IO signaling and real WebRTC (ICE, DTLS, SRTP) to the SFU.
//!
//! What it proves: each side receives the *other* user's audio and video (stream id = the other
//! user's id, per protocol §6) and receives it from the SFU's media address — not from the other
//! client — and hanging up reaches the other side as `call_ended{reason: "hangup"}`.
//!
//! Everything waits by polling against a deadline; on a miss the failure message carries what
//! was seen (events, per-track counters, connection states, remote addresses).

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use loadtest::{
    CallId, CallKind, EndReason, MediaEvent, MediaKind, Participant, ParticipantConfig,
    ParticipantEvent, ParticipantEvents, PeerTarget, ServerEvent,
};
use tokio::time::Instant;

/// One second of audio (50 packets/s).
const MIN_AUDIO_PACKETS: u64 = 50;
/// About one second of video (30 frames/s, 3–6 packets each).
const MIN_VIDEO_PACKETS: u64 = 90;
/// Signaling steps on loopback take milliseconds; this only bounds a hang.
const SIGNAL_TIMEOUT: Duration = Duration::from_secs(10);
/// ICE + DTLS for four connections on two cores, then the packet minimums above.
const MEDIA_TIMEOUT: Duration = Duration::from_secs(30);

struct TestServer {
    base_url: String,
    media_addr: SocketAddr,
    shutdown: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

async fn start_server() -> Result<TestServer> {
    let server = switchboard::Server::bind(switchboard::ServerConfig::for_tests()).await?;
    let base_url = format!("http://{}", server.http_addr());
    let media_addr = server.media_addr();
    let (shutdown, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server.run(async move {
        let _ = rx.await;
    }));
    Ok(TestServer {
        base_url,
        media_addr,
        shutdown,
        task,
    })
}

/// Fails on anything that means media cannot work: a media failure, a refused SDP, the call
/// ending, or the socket dropping. Other events are only logged.
fn check_fatal(who: &str, event: &ParticipantEvent) -> Result<()> {
    match event {
        ParticipantEvent::Media(MediaEvent::Failed { call_id, error }) => {
            bail!("{who}: media failed in call {call_id}: {error}")
        }
        ParticipantEvent::Signal(ServerEvent::Error(e))
            if matches!(e.event.as_deref(), Some("webrtc_offer" | "webrtc_answer")) =>
        {
            bail!(
                "{who}: server refused {:?}: {} ({})",
                e.event,
                e.code,
                e.message
            )
        }
        ParticipantEvent::Signal(ServerEvent::CallEnded { reason, by, .. }) => {
            bail!("{who}: call ended early: {reason:?} by {by:?}")
        }
        ParticipantEvent::Signal(ServerEvent::Disconnected { reason }) => {
            bail!("{who}: signaling disconnected: {reason}")
        }
        _ => Ok(()),
    }
}

/// Waits for the first event `pick` accepts. Fatal events fail at once; on timeout the error
/// lists everything that was seen.
async fn wait_for<T>(
    who: &str,
    what: &str,
    events: &mut ParticipantEvents,
    mut pick: impl FnMut(&ParticipantEvent) -> Option<T>,
) -> Result<T> {
    let deadline = Instant::now() + SIGNAL_TIMEOUT;
    let mut seen = Vec::new();
    loop {
        let event = match tokio::time::timeout_at(deadline, events.recv()).await {
            Ok(Some(event)) => event,
            Ok(None) => bail!("{who}: event stream ended waiting for {what}; saw {seen:#?}"),
            Err(_) => bail!("{who}: no {what} within {SIGNAL_TIMEOUT:?}; saw {seen:#?}"),
        };
        if let Some(found) = pick(&event) {
            return Ok(found);
        }
        check_fatal(who, &event)?;
        tracing::debug!(who, ?event, "event while waiting for {what}");
        seen.push(event);
    }
}

/// Drains pending events without waiting, failing on fatal ones.
fn drain(who: &str, events: &mut ParticipantEvents) -> Result<()> {
    while let Ok(event) = events.try_recv() {
        check_fatal(who, &event)?;
        tracing::debug!(who, ?event, "event");
    }
    Ok(())
}

/// Has `me` received at least the minimum audio (and, for video calls, video) from `other`?
fn has_media_from(me: &Participant, other: &Participant, kind: CallKind) -> bool {
    let stats = me.receive_stats();
    let from = other.user().id.as_str();
    stats.packets_from(from, MediaKind::Audio) >= MIN_AUDIO_PACKETS
        && (kind == CallKind::Voice
            || stats.packets_from(from, MediaKind::Video) >= MIN_VIDEO_PACKETS)
}

async fn describe(p: &Participant) -> String {
    let mut out = format!("{} ({}):\n", p.user().name, p.user().id);
    match p.media() {
        None => out.push_str("  no call media\n"),
        Some(media) => {
            let (publisher_addr, subscriber_addr) = media.remote_addrs();
            let sent = media.publisher.stats();
            out.push_str(&format!(
                "  publisher {:?} remote {publisher_addr:?}, sent audio {} video {} write errors {}\n  subscriber {:?} remote {subscriber_addr:?}\n",
                media.publisher.state(),
                sent.audio_packets.load(std::sync::atomic::Ordering::Relaxed),
                sent.video_packets.load(std::sync::atomic::Ordering::Relaxed),
                sent.write_errors.load(std::sync::atomic::Ordering::Relaxed),
                media.subscriber.state(),
            ));
        }
    }
    for track in p.receive_stats().snapshot() {
        out.push_str(&format!("  received {track:?}\n"));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_to_one_video_call_flows_through_the_sfu() -> Result<()> {
    one_to_one_call(CallKind::Video).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_to_one_voice_call_flows_through_the_sfu() -> Result<()> {
    one_to_one_call(CallKind::Voice).await
}

async fn one_to_one_call(kind: CallKind) -> Result<()> {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,loadtest=debug".into()),
        )
        .with_test_writer()
        .try_init();

    let server = start_server().await.context("starting the server")?;
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
        for (target, traffic) in [
            (PeerTarget::Publisher, media.publisher.traffic()),
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
    let _ = server.shutdown.send(());
    tokio::time::timeout(Duration::from_secs(15), server.task)
        .await
        .context("server did not shut down")???;
    Ok(())
}
