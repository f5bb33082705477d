//! The network test bed's call fixture, shared by the tests that run a real call through the
//! netbed proxy (`netbed_announce.rs`, `netbed_rebind.rs`): the server binds its media socket on
//! one loopback port and announces another, where the proxy listens in front of it; a real 1:1
//! video call (two webrtc-rs clients, real Socket.IO signaling, ICE + DTLS + SRTP) goes through.
#![allow(dead_code)]

#[path = "../../../loadtest/tests/support/mod.rs"]
pub mod support;

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use loadtest::{
    CallKind, Participant, ParticipantConfig, ParticipantEvent, ParticipantEvents, ServerEvent,
};
use netbed::{Proxy, ProxyConfig};
use support::{
    describe, drain, packets_from, wait_for, TestServer, MIN_AUDIO_PACKETS, MIN_VIDEO_PACKETS,
};
use tokio::time::Instant;

/// ICE + DTLS for four connections on two (busy) cores, then the packet minimums.
pub const MEDIA_TIMEOUT: Duration = Duration::from_secs(30);

/// A 1:1 video call whose four peer connections all go through the proxy.
pub struct Call {
    pub server: TestServer,
    pub proxy: Proxy,
    pub announced: SocketAddr,
    pub alice: Participant,
    pub bob: Participant,
    pub alice_events: ParticipantEvents,
    pub bob_events: ParticipantEvents,
}

/// Audio and video packets (alice from bob, bob from alice).
pub type Received = ([u64; 2], [u64; 2]);

impl Call {
    pub async fn start() -> Result<Call> {
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

    pub fn received(&self) -> Received {
        (
            packets_from(&self.alice, &self.bob),
            packets_from(&self.bob, &self.alice),
        )
    }

    /// Waits until each side has received at least the minimum audio and video beyond `then`;
    /// fails on a fatal event (the call ending, a media failure) or after MEDIA_TIMEOUT.
    pub async fn wait_for_media_beyond(&mut self, then: Received, what: &str) -> Result<Duration> {
        self.wait_for_media_within(then, what, MEDIA_TIMEOUT).await
    }

    /// [`Self::wait_for_media_beyond`] with its own bound; returns how long it took.
    pub async fn wait_for_media_within(
        &mut self,
        then: Received,
        what: &str,
        timeout: Duration,
    ) -> Result<Duration> {
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
            if started.elapsed() >= timeout {
                bail!(
                    "media did not flow {what} within {timeout:?}: {now:?} (from {then:?})\n{}{}flows: {:#?}",
                    describe(&self.alice).await,
                    describe(&self.bob).await,
                    self.proxy.flows()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn end(self) -> Result<()> {
        self.alice.close().await;
        self.bob.close().await;
        self.server.stop().await
    }
}
