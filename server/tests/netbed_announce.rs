//! `--announce-media-addr` through the real wire: the server binds its media socket on one
//! loopback port and announces another, where the network test bed's proxy (netbed) listens
//! in front of it. A real 1:1 video call (two webrtc-rs clients, real Socket.IO signaling,
//! ICE + DTLS + SRTP) completes through the proxy and media flows both ways; black-holing every
//! flow stops the media; restoring them brings it back, in the same call.

mod netbed_common;

use std::time::Duration;

use anyhow::Result;
use netbed::Target;
use netbed_common::Call;

/// Short enough that no ICE agent gives up on the path (webrtc-rs: disconnected after 5 s
/// without an answer), long enough to see that nothing crosses.
const BLACK_HOLE: Duration = Duration::from_secs(2);

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
