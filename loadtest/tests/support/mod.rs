//! What the integration tests share: an in-process server on port 0, a test log, what counts
//! as fatal in a participant's events, waiting on them against a deadline, and how much media
//! counts as "flowing".
//!
//! Each test binary uses a different part of it.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use loadtest::{
    CallKind, MediaEvent, MediaKind, Participant, ParticipantEvent, ParticipantEvents, ServerEvent,
};
use tokio::time::Instant;

/// One second of audio (50 packets/s).
pub const MIN_AUDIO_PACKETS: u64 = 50;
/// About one second of video (30 frames/s, 3–6 packets each).
pub const MIN_VIDEO_PACKETS: u64 = 90;
/// Signaling steps on loopback take milliseconds; this only bounds a hang.
pub const SIGNAL_TIMEOUT: Duration = Duration::from_secs(10);

/// A Switchboard server running in this process, with handles on its counters.
pub struct TestServer {
    /// `http://127.0.0.1:<port>`.
    pub base_url: String,
    /// The SFU's one UDP media address.
    pub media_addr: SocketAddr,
    /// For the SFU's counters (rooms, participants, ...).
    pub sfu: switchboard_sfu::Sfu,
    /// For signaling's counters (sockets, calls, ...).
    pub signaling: switchboard_signaling::Signaling,
    shutdown: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<()>>,
}

impl TestServer {
    /// Binds `config` (normally `ServerConfig::for_tests()`, ports 0) and serves in the
    /// background until [`stop`](Self::stop).
    pub async fn start(config: switchboard::ServerConfig) -> Result<TestServer> {
        let server = switchboard::Server::bind(config)
            .await
            .context("starting the server")?;
        let base_url = format!("http://{}", server.http_addr());
        let (media_addr, sfu, signaling) = (server.media_addr(), server.sfu(), server.signaling());
        let (shutdown, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(server.run(async move {
            let _ = rx.await;
        }));
        Ok(TestServer {
            base_url,
            media_addr,
            sfu,
            signaling,
            shutdown,
            task,
        })
    }

    /// Shuts the server down gracefully and waits (bounded) for it.
    pub async fn stop(self) -> Result<()> {
        let _ = self.shutdown.send(());
        tokio::time::timeout(Duration::from_secs(15), self.task)
            .await
            .context("server did not shut down")???;
        Ok(())
    }
}

/// Test output through `tracing` (`RUST_LOG` overrides; `loadtest=debug` shows negotiation).
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,loadtest=debug".into()),
        )
        .with_test_writer()
        .try_init();
}

/// Fails on anything that means media cannot work or the protocol drifted: a media failure, a
/// refused SDP, a known event whose payload did not parse, the call ending, or the socket
/// dropping. Other events are only logged.
pub fn check_fatal(who: &str, event: &ParticipantEvent) -> Result<()> {
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
        ParticipantEvent::Signal(ServerEvent::Unrecognized {
            event,
            payload,
            parse_error: Some(error),
        }) => bail!("{who}: {event} does not match the protocol ({error}): {payload}"),
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
pub async fn wait_for<T>(
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
pub fn drain(who: &str, events: &mut ParticipantEvents) -> Result<()> {
    while let Ok(event) = events.try_recv() {
        check_fatal(who, &event)?;
        tracing::debug!(who, ?event, "event");
    }
    Ok(())
}

/// Audio and video packets `me` has received from `other` so far (all calls together).
pub fn packets_from(me: &Participant, other: &Participant) -> [u64; 2] {
    let stats = me.receive_stats();
    let from = other.user().id.as_str();
    [
        stats.packets_from(from, MediaKind::Audio),
        stats.packets_from(from, MediaKind::Video),
    ]
}

/// Whether `got` (audio, video packets) is at least the minimum audio and, for video calls,
/// video.
pub fn enough_media(got: [u64; 2], kind: CallKind) -> bool {
    got[0] >= MIN_AUDIO_PACKETS && (kind == CallKind::Voice || got[1] >= MIN_VIDEO_PACKETS)
}

/// Has `me` received at least the minimum audio (and, for video calls, video) from `other`?
pub fn has_media_from(me: &Participant, other: &Participant, kind: CallKind) -> bool {
    enough_media(packets_from(me, other), kind)
}

/// A participant's connections and per-track counters, for failure messages.
pub async fn describe(p: &Participant) -> String {
    let mut out = format!("{} ({}):\n", p.user().name, p.user().id);
    match p.media() {
        None => out.push_str("  no call media\n"),
        Some(media) => {
            let (publisher_addr, subscriber_addr) = media.remote_addrs();
            match &media.publisher {
                None => out.push_str("  no publisher (receive-only)\n"),
                Some(publisher) => {
                    let sent = publisher.stats();
                    out.push_str(&format!(
                        "  publisher {:?} remote {publisher_addr:?}, sent audio {} video {} write errors {}\n",
                        publisher.state(),
                        sent.audio_packets.load(std::sync::atomic::Ordering::Relaxed),
                        sent.video_packets.load(std::sync::atomic::Ordering::Relaxed),
                        sent.write_errors.load(std::sync::atomic::Ordering::Relaxed),
                    ));
                }
            }
            out.push_str(&format!(
                "  subscriber {:?} remote {subscriber_addr:?}\n",
                media.subscriber.state(),
            ));
            for track in media.remote_tracks() {
                out.push_str(&format!("  announced {track:?}\n"));
            }
        }
    }
    for track in p.receive_stats().snapshot() {
        out.push_str(&format!(
            "  received {}/{} {:?}: {} packets, {} lost\n",
            track.key.stream_id, track.key.track_id, track.kind, track.packets, track.lost
        ));
    }
    out
}
