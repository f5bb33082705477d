//! A network switch (NAT rebinding) mid-call, through the real wire (issue #10 §3, "Network
//! switch (flow rebound)"): a real 1:1 video call goes through the netbed proxy; every flow is
//! rebound to a new upstream socket, so the SFU sees both people arrive from new source ports
//! without any ICE restart or renegotiation. Media must come back both ways, and stay, in the
//! same call: the SFU follows a peer to the address its authenticated media now comes from,
//! and forged media from the old (still learned) addresses does not pull it back.

mod netbed_common;

use std::time::Duration;

use anyhow::{ensure, Result};
use netbed_common::{Call, Received};
use tokio::time::Instant;

/// Generous against a busy two-core machine; the measured time is printed (and recorded in
/// docs/loadtest.md), not asserted tightly.
const RECOVERY_BOUND: Duration = Duration::from_secs(10);
/// Longer than the SFU's ICE agents take to call a silent selected path `disconnected` (5 s):
/// media still flowing after it means the SFU did not fall back to the old address.
const HOLD: Duration = Duration::from_secs(7);

/// How long until at least one more audio and video packet has arrived on both sides.
async fn first_packets_beyond(call: &Call, then: Received, bound: Duration) -> Option<Duration> {
    let started = Instant::now();
    let more = |now: [u64; 2], then: [u64; 2]| now[0] > then[0] && now[1] > then[1];
    while started.elapsed() < bound {
        let now = call.received();
        if more(now.0, then.0) && more(now.1, then.1) {
            return Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_follows_every_flow_to_its_new_port_after_a_rebind() -> Result<()> {
    let mut call = Call::start().await?;
    let before = call.proxy.flows();

    // Everyone's network changes at once: four new source ports at the SFU.
    let rebound_at = Instant::now();
    for flow in &before {
        let new = call.proxy.rebind(flow.id).await?;
        ensure!(
            new != flow.upstream_local,
            "flow {:?} kept its port",
            flow.id
        );
    }
    // What was in flight before the switch may still land: count from a moment later.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let then = call.received();

    let first = first_packets_beyond(&call, then, RECOVERY_BOUND).await;
    let full = call
        .wait_for_media_within(then, "after the rebind", RECOVERY_BOUND)
        .await?;
    let since_rebind = rebound_at.elapsed();
    println!(
        "rebind recovery: first packets both ways after {first:?}, minimum audio+video both \
         ways after {full:?} (from the rebind: {since_rebind:?})"
    );
    ensure!(
        first.is_some(),
        "no packet came back within {RECOVERY_BOUND:?}"
    );

    // The old addresses are still learned (the demuxer forgets them only at its cap), but
    // unauthenticated "media" from one must not pull the call back there: forge RTP and RTCP
    // from each old port; the SFU must send none of its media to them.
    let sfu = call.server.sfu.bound_addr();
    let mut forgers = Vec::new();
    for flow in &before {
        let socket = tokio::net::UdpSocket::bind(flow.upstream_local).await?;
        socket.connect(sfu).await?;
        forgers.push(socket);
    }
    let forged_rtp = [
        0x80, 96, 0x12, 0x34, 0, 0, 0, 1, 0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4,
    ];
    let forged_rtcp = [
        0x81, 201, 0, 1, 0xde, 0xad, 0xbe, 0xef, 0, 0, 0, 0, 0, 0, 0, 0,
    ];
    let mut buf = [0u8; 2048];
    let mut answered = 0;
    for round in 0..20 {
        for socket in &forgers {
            let forged: &[u8] = if round % 2 == 0 {
                &forged_rtp
            } else {
                &forged_rtcp
            };
            socket.send(forged).await?;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        for socket in &forgers {
            while socket.try_recv(&mut buf).is_ok() {
                answered += 1;
            }
        }
    }
    ensure!(
        answered == 0,
        "forged media from old addresses drew {answered} datagrams there"
    );
    drop(forgers);

    // And it stays: past the point where a stale ICE path would be declared disconnected,
    // media still flows both ways and nobody left (a fatal event fails the wait).
    tokio::time::sleep(HOLD).await;
    let later = call.received();
    call.wait_for_media_within(later, "well after the rebind", RECOVERY_BOUND)
        .await?;
    let after = call.proxy.flows();
    ensure!(after.len() == 4, "{after:#?}");
    ensure!(after.iter().all(|f| f.rebinds == 1), "{after:#?}");
    call.end().await
}
