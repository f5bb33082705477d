//! `--announce-media-addr` through the real wire: the server binds its media socket on one
//! loopback port and announces another, where the network test bed's proxy (netbed) listens
//! in front of it. A real 1:1 video call (two webrtc-rs clients, real Socket.IO signaling,
//! ICE + DTLS + SRTP) completes through the proxy and media flows both ways; black-holing every
//! flow stops the media; restoring them brings it back, in the same call.

#[path = "../../loadtest/tests/support/mod.rs"]
mod support;

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use loadtest::{
    CallKind, Participant, ParticipantConfig, ParticipantEvent, ParticipantEvents, ServerEvent,
};
use netbed::{Proxy, ProxyConfig, Target};
use support::{
    describe, drain, packets_from, wait_for, TestServer, MIN_AUDIO_PACKETS, MIN_VIDEO_PACKETS,
};
use tokio::time::Instant;

/// ICE + DTLS for four connections on two (busy) cores, then the packet minimums.
const MEDIA_TIMEOUT: Duration = Duration::from_secs(30);
/// Short enough that no ICE agent gives up on the path (webrtc-rs: disconnected after 5 s
/// without an answer), long enough to see that nothing crosses.
const BLACK_HOLE: Duration = Duration::from_secs(2);

/// A 1:1 video call whose four peer connections all go through the proxy.
struct Call {
    server: TestServer,
    proxy: Proxy,
    announced: SocketAddr,
    alice: Participant,
    bob: Participant,
    alice_events: ParticipantEvents,
    bob_events: ParticipantEvents,
}

/// Audio and video packets (alice from bob, bob from alice).
type Received = ([u64; 2], [u64; 2]);

impl Call {
    async fn start() -> Result<Call> {
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
        let (alice, alice_events) = Participant::join(
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
        let mut call = Call {
            server,
            proxy,
            announced,
            alice,
            bob,
            alice_events,
            bob_events,
        };
        call.wait_for_media_beyond(([0; 2], [0; 2]), "at first")
            .await?;

        // Only through the proxy: both connections of each person talk to the announced
        // address, and there is one flow per peer connection, carrying both ways.
        for p in [&call.alice, &call.bob] {
            let media = p.media().context("call media")?;
            assert_eq!(
                media.remote_addrs(),
                (Some(announced), Some(announced)),
                "{}'s connections talk to the announced address",
                p.user().name
            );
        }
        call.proxy.wait_for_flow(4, Duration::from_secs(5)).await?;
        let flows = call.proxy.flows();
        assert_eq!(flows.len(), 4, "{flows:#?}");
        for flow in &flows {
            assert!(
                flow.uplink.packets_out > 0 && flow.downlink.packets_out > 0,
                "{flow:#?}"
            );
        }
        Ok(call)
    }

    fn received(&self) -> Received {
        (
            packets_from(&self.alice, &self.bob),
            packets_from(&self.bob, &self.alice),
        )
    }

    /// Waits until each side has received at least the minimum audio and video beyond `then`;
    /// fails on a fatal event (the call ending, a media failure) or after MEDIA_TIMEOUT.
    async fn wait_for_media_beyond(&mut self, then: Received, what: &str) -> Result<Duration> {
        let started = Instant::now();
        let more = |now: [u64; 2], then: [u64; 2]| {
            now[0] >= then[0] + MIN_AUDIO_PACKETS && now[1] >= then[1] + MIN_VIDEO_PACKETS
        };
        loop {
            drain("alice", &mut self.alice_events)?;
            drain("bob", &mut self.bob_events)?;
            let now = self.received();
            if more(now.0, then.0) && more(now.1, then.1) {
                return Ok(started.elapsed());
            }
            if started.elapsed() >= MEDIA_TIMEOUT {
                bail!(
                    "media did not flow {what} within {MEDIA_TIMEOUT:?}: {now:?} (from {then:?})\n{}{}flows: {:#?}",
                    describe(&self.alice).await,
                    describe(&self.bob).await,
                    self.proxy.flows()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn end(self) -> Result<()> {
        self.alice.close().await;
        self.bob.close().await;
        self.server.stop().await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_through_the_announced_proxy_stops_in_a_black_hole_and_resumes() -> Result<()> {
    let mut call = Call::start().await?;

    // Black hole: nothing reaches either side.
    assert_eq!(call.proxy.blackhole(Target::All)?, 4);
    tokio::time::sleep(Duration::from_millis(300)).await; // what was already in flight lands
    let before = call.received();
    tokio::time::sleep(BLACK_HOLE).await;
    let during = call.received();
    assert_eq!(before, during, "media crossed a black hole (alice, bob)");
    let swallowed: u64 = call
        .proxy
        .flows()
        .iter()
        .map(|f| f.uplink.dropped_blackhole + f.downlink.dropped_blackhole)
        .sum();
    assert!(swallowed > 100, "the black hole saw {swallowed} packets");

    // Restored: media resumes in the same call, both ways, on the same four paths.
    assert_eq!(call.proxy.restore(Target::All)?, 4);
    call.wait_for_media_beyond(during, "after the black hole")
        .await?;
    assert_eq!(call.proxy.flows().len(), 4);
    assert_eq!(call.announced, call.server.media_addr);
    call.end().await
}
