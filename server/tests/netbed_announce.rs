//! `--announce-media-addr` through the real wire: the server binds its media socket on one
//! loopback port and announces another, where the network test bed's proxy (netbed) listens
//! in front of it. A real 1:1 video call (two webrtc-rs clients, real Socket.IO signaling,
//! ICE + DTLS + SRTP) completes through the proxy and media flows both ways; black-holing every
//! flow stops the media; restoring them brings it back, in the same call.

#[path = "../../loadtest/tests/support/mod.rs"]
mod support;

use std::time::Duration;

use anyhow::{bail, Context, Result};
use loadtest::{CallKind, Participant, ParticipantConfig, ParticipantEvent, ServerEvent};
use netbed::{Proxy, ProxyConfig, Target};
use support::{
    describe, drain, has_media_from, packets_from, wait_for, TestServer, MIN_AUDIO_PACKETS,
    MIN_VIDEO_PACKETS,
};
use tokio::time::Instant;

/// ICE + DTLS for four connections on two (busy) cores, then the packet minimums.
const MEDIA_TIMEOUT: Duration = Duration::from_secs(30);
/// Short enough that no ICE agent gives up on the path (webrtc-rs: disconnected after 5 s
/// without an answer), long enough to see that nothing crosses.
const BLACK_HOLE: Duration = Duration::from_secs(2);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_through_the_announced_proxy_stops_in_a_black_hole_and_resumes() -> Result<()> {
    support::init_tracing();
    // The proxy's port first: the server must announce it, the proxy must know the server's.
    let proxy_socket = std::net::UdpSocket::bind("127.0.0.1:0")?;
    let announced = proxy_socket.local_addr()?;
    let mut config = switchboard::ServerConfig::for_tests();
    config.announce_media_addr = Some(announced);
    let server = TestServer::start(config).await?;
    let bound = server.sfu.bound_addr();
    assert_eq!(server.media_addr, announced, "clients are told the proxy");
    assert_ne!(bound, announced);
    let proxy = Proxy::start_on(proxy_socket, bound, ProxyConfig::default()).await?;

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
    let call_id = alice
        .signaling()
        .initiate_call(&bob.user().id, CallKind::Video)
        .await
        .context("alice calls bob")?;
    wait_for("bob", "incoming_call", &mut bob_events, |e| match e {
        ParticipantEvent::Signal(ServerEvent::IncomingCall { call_id: id, .. })
            if *id == call_id =>
        {
            Some(())
        }
        _ => None,
    })
    .await?;
    bob.signaling()
        .accept_call(&call_id)
        .await
        .context("bob accepts")?;

    // Media flows both ways, and only through the proxy.
    let deadline = Instant::now() + MEDIA_TIMEOUT;
    while !(has_media_from(&alice, &bob, CallKind::Video)
        && has_media_from(&bob, &alice, CallKind::Video))
    {
        drain("alice", &mut alice_events)?;
        drain("bob", &mut bob_events)?;
        if Instant::now() >= deadline {
            bail!(
                "media did not flow through the proxy within {MEDIA_TIMEOUT:?}\n{}{}flows: {:#?}",
                describe(&alice).await,
                describe(&bob).await,
                proxy.flows()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for p in [&alice, &bob] {
        let media = p.media().context("call media")?;
        assert_eq!(
            media.remote_addrs(),
            (Some(announced), Some(announced)),
            "{}'s connections talk to the announced address",
            p.user().name
        );
    }
    // Two peer connections per person, each one flow with its own address at the SFU.
    proxy.wait_for_flow(4, Duration::from_secs(5)).await?;
    let flows = proxy.flows();
    assert_eq!(flows.len(), 4, "{flows:#?}");
    for flow in &flows {
        assert!(
            flow.uplink.packets_out > 0 && flow.downlink.packets_out > 0,
            "{flow:#?}"
        );
    }

    // Black hole: nothing reaches either side.
    assert_eq!(proxy.blackhole(Target::All)?, 4);
    tokio::time::sleep(Duration::from_millis(300)).await; // what was already in flight lands
    let before = (packets_from(&alice, &bob), packets_from(&bob, &alice));
    tokio::time::sleep(BLACK_HOLE).await;
    let during = (packets_from(&alice, &bob), packets_from(&bob, &alice));
    assert_eq!(before, during, "media crossed a black hole (alice, bob)");
    let swallowed: u64 = proxy
        .flows()
        .iter()
        .map(|f| f.uplink.dropped_blackhole + f.downlink.dropped_blackhole)
        .sum();
    assert!(swallowed > 100, "the black hole saw {swallowed} packets");

    // Restored: media resumes in the same call, both ways.
    assert_eq!(proxy.restore(Target::All)?, 4);
    let deadline = Instant::now() + MEDIA_TIMEOUT;
    let more = |now: [u64; 2], then: [u64; 2]| {
        now[0] >= then[0] + MIN_AUDIO_PACKETS && now[1] >= then[1] + MIN_VIDEO_PACKETS
    };
    loop {
        drain("alice", &mut alice_events)?;
        drain("bob", &mut bob_events)?;
        let (a, b) = (packets_from(&alice, &bob), packets_from(&bob, &alice));
        if more(a, during.0) && more(b, during.1) {
            break;
        }
        if Instant::now() >= deadline {
            bail!(
                "media did not resume after the black hole: alice {a:?} bob {b:?} (was {during:?})\n{}{}",
                describe(&alice).await,
                describe(&bob).await
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        proxy.flows().len(),
        4,
        "the same four paths carry the call again"
    );

    alice.close().await;
    bob.close().await;
    server.stop().await
}
