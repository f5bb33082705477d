//! `loadtest`: runs synthetic 1:1 calls against a Switchboard server and reports what each
//! participant received from its peer through the SFU.
//!
//! ```text
//! loadtest --url http://127.0.0.1:8080 --pairs 4 --duration 20 --kind video
//! ```
//!
//! Each pair signs in two users, the first calls the second, the second accepts, both publish
//! synthetic audio (and video) for `--duration` seconds, then the caller hangs up. The exit
//! status is non-zero if any participant failed or received nothing from its peer.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Parser, ValueEnum};
use loadtest::{
    CallKind, MediaEvent, MediaKind, Participant, ParticipantConfig, ParticipantEvent,
    ParticipantEvents, PeerConfig, ServerEvent,
};
use tokio::sync::mpsc;

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Kind {
    Voice,
    Video,
}

/// Synthetic 1:1 calls against a Switchboard server.
#[derive(Debug, Parser)]
#[command(name = "loadtest", version, about)]
struct Args {
    /// Server base URL (HTTP API and Socket.IO).
    #[arg(long, env = "LOADTEST_URL", default_value = "http://127.0.0.1:8080")]
    url: String,
    /// Number of concurrent calls (two participants each).
    #[arg(long, default_value_t = 1)]
    pairs: usize,
    /// Seconds of media per call.
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Call kind.
    #[arg(long, value_enum, default_value_t = Kind::Video)]
    kind: Kind,
    /// Local IP the peer connections bind; must be reachable from the SFU (loopback for a
    /// local server, an interface address otherwise).
    #[arg(long, default_value = "127.0.0.1")]
    local_ip: IpAddr,
}

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            // webrtc-rs warns on every connection about things that are normal here (no DTLS
            // server name, ICE checks before the answer); keep its errors only by default.
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,rtc_dtls=error,rtc_ice=error,loadtest=info".into()),
        )
        .init();
    let args = Args::parse();
    let config = ParticipantConfig {
        peer: PeerConfig {
            udp_addr: SocketAddr::new(args.local_ip, 0),
            ..PeerConfig::default()
        },
        ..ParticipantConfig::default()
    };
    let kind = match args.kind {
        Kind::Voice => CallKind::Voice,
        Kind::Video => CallKind::Video,
    };
    let http = reqwest::Client::new();
    let mut calls = Vec::with_capacity(args.pairs);
    for pair in 0..args.pairs {
        let (http, url, config) = (http.clone(), args.url.clone(), config.clone());
        let duration = Duration::from_secs(args.duration);
        calls.push(tokio::spawn(async move {
            run_call(pair, &http, &url, config, kind, duration).await
        }));
    }
    let mut failed = 0;
    for (pair, call) in calls.into_iter().enumerate() {
        match call.await.context("call task panicked")? {
            Ok(report) => println!("{report}"),
            Err(e) => {
                failed += 1;
                println!("pair {pair}: FAILED: {e:#}");
            }
        }
    }
    if failed > 0 {
        bail!("{failed} of {} calls failed", args.pairs);
    }
    Ok(())
}

/// Drains a participant's events; forwards fatal ones as error strings.
fn watch(who: String, mut events: ParticipantEvents, failures: mpsc::UnboundedSender<String>) {
    tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            let failure = match &event {
                ParticipantEvent::Media(MediaEvent::Failed { error, .. }) => {
                    Some(format!("{who}: media failed: {error}"))
                }
                ParticipantEvent::Signal(ServerEvent::Error(e)) => Some(format!(
                    "{who}: server error {} on {:?}: {}",
                    e.code, e.event, e.message
                )),
                ParticipantEvent::Signal(ServerEvent::Disconnected { reason }) => {
                    Some(format!("{who}: disconnected: {reason}"))
                }
                _ => None,
            };
            if let Some(failure) = failure {
                let _ = failures.send(failure);
            }
        }
    });
}

async fn run_call(
    pair: usize,
    http: &reqwest::Client,
    url: &str,
    config: ParticipantConfig,
    kind: CallKind,
    duration: Duration,
) -> Result<String> {
    let (caller, caller_events) =
        Participant::join(http, url, &format!("lt-{pair}-caller"), config.clone()).await?;
    let (callee, mut callee_events) =
        Participant::join(http, url, &format!("lt-{pair}-callee"), config).await?;
    let (fail_tx, mut fail_rx) = mpsc::unbounded_channel();
    watch(
        format!("pair {pair} caller"),
        caller_events,
        fail_tx.clone(),
    );

    let call_id = caller
        .signaling()
        .initiate_call(&callee.user().id, kind)
        .await?;
    // The callee answers its own ring, then hands its events to the watcher.
    tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(event) = callee_events.recv().await {
            if let ParticipantEvent::Signal(ServerEvent::IncomingCall { call_id: id, .. }) = &event
            {
                if *id == call_id {
                    return Ok(());
                }
            }
        }
        bail!("callee event stream ended before incoming_call")
    })
    .await
    .context("no incoming_call within 10 s")??;
    watch(format!("pair {pair} callee"), callee_events, fail_tx);
    callee.signaling().accept_call(&call_id).await?;

    tokio::select! {
        _ = tokio::time::sleep(duration) => {}
        Some(failure) = fail_rx.recv() => bail!(failure),
    }
    let mut report = format!("pair {pair} call {call_id}:");
    let mut silent = Vec::new();
    for (me, other) in [(&caller, &callee), (&callee, &caller)] {
        let from = other.user().id.as_str();
        let stats = me.receive_stats();
        let audio = stats.packets_from(from, MediaKind::Audio);
        let video = stats.packets_from(from, MediaKind::Video);
        if audio == 0 || (kind == CallKind::Video && video == 0) {
            silent.push(me.user().name.clone());
        }
        for track in stats.snapshot().iter().filter(|t| t.key.stream_id == from) {
            report.push_str(&format!(
                "\n  {} <- {:?}: {} packets, {} bytes, {} lost, latency mean {:?} max {:?}",
                me.user().name,
                track.kind,
                track.packets,
                track.bytes,
                track.lost,
                track.mean_latency.unwrap_or_default(),
                track.max_latency.unwrap_or_default(),
            ));
        }
    }
    caller.signaling().end_call(&call_id, None).await?;
    caller.close().await;
    callee.close().await;
    if !silent.is_empty() {
        bail!("{report}\n  received nothing from their peer: {silent:?}");
    }
    Ok(report)
}
