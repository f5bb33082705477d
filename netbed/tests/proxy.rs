//! The proxy on loopback with plain UDP sockets: a client, the proxy, an echo server.
//! Every assertion is on what really crossed the sockets (plus the proxy's own counters).

mod common;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{client, round_trip, send_and_collect, send_and_count, Echo, QUIET, WAIT};
use netbed::{Impairment, LinkImpairment, Proxy, ProxyConfig, Target};
use tokio::net::UdpSocket;

async fn start(echo: &Echo, config: ProxyConfig) -> Proxy {
    Proxy::start_with("127.0.0.1:0".parse().unwrap(), echo.addr, config)
        .await
        .unwrap()
}

#[tokio::test]
async fn packets_pass_unimpaired_both_ways() {
    let echo = Echo::start().await;
    let proxy = start(&echo, ProxyConfig::default()).await;
    let c = client().await;
    assert_eq!(send_and_count(&c, proxy.listen_addr(), 200, 50).await, 200);

    let flow = proxy.wait_for_flow(1, WAIT).await.unwrap();
    assert_eq!(flow.client, c.local_addr().unwrap());
    assert_eq!(
        (flow.uplink.packets_in, flow.uplink.packets_out),
        (200, 200)
    );
    assert_eq!(
        (flow.downlink.packets_in, flow.downlink.packets_out),
        (200, 200)
    );
    assert_eq!(flow.uplink.dropped() + flow.downlink.dropped(), 0);
    // The server saw the flow's upstream socket, not the client.
    assert_eq!(echo.last_source(), Some(flow.upstream_local));
    assert_ne!(flow.upstream_local, flow.client);
}

#[tokio::test]
async fn seeded_random_loss_drops_about_the_configured_share() {
    let echo = Echo::start().await;
    let lossy = Impairment::uplink(LinkImpairment::none().random_loss(0.20).seed(42));
    let proxy = start(
        &echo,
        ProxyConfig {
            default_impairment: lossy,
            ..ProxyConfig::default()
        },
    )
    .await;
    let c = client().await;
    let got = send_and_count(&c, proxy.listen_addr(), 2000, 50).await;
    let lost = 2000 - got;
    assert!((300..=500).contains(&lost), "20 % loss lost {lost} of 2000");
    let flow = proxy.flow_by_client(c.local_addr().unwrap()).unwrap();
    // What the client missed is what the model dropped (a reply later than QUIET on a busy
    // machine could only make the client count more, never fewer).
    assert_eq!(
        flow.uplink.packets_out + flow.uplink.dropped_impairment,
        2000
    );
    assert!(lost as u64 >= flow.uplink.dropped_impairment);
    assert_eq!(flow.impairment, lossy);

    // 0 % loss on a flow (set at run time) drops none.
    let before = flow.clone();
    proxy
        .set_impairment(
            flow.id,
            Impairment::symmetric(LinkImpairment::none().random_loss(0.0).seed(42)),
        )
        .await
        .unwrap();
    assert_eq!(
        send_and_count(&c, proxy.listen_addr(), 2000, 50).await,
        2000
    );
    let flow = proxy.flow(flow.id).unwrap();
    assert_eq!(
        flow.uplink.dropped(),
        before.uplink.dropped(),
        "no new drop"
    );
}

#[tokio::test]
async fn gilbert_elliott_loss_comes_in_bursts() {
    let echo = Echo::start().await;
    let proxy = start(&echo, ProxyConfig::default()).await;
    // Enter a burst every ~20 packets, stay ~4 packets: ~17 % loss in runs of ~4.
    let bursty = Impairment::uplink(LinkImpairment::none().burst_loss(0.05, 0.25).seed(9));
    let c = client().await;
    // Create the flow, then impair it.
    assert!(round_trip(&c, proxy.listen_addr(), b"hello")
        .await
        .is_some());
    let flow = proxy.wait_for_flow(1, WAIT).await.unwrap();
    proxy.set_impairment(flow.id, bursty).await.unwrap();

    let got = send_and_collect(&c, proxy.listen_addr(), 1000, 50).await;
    let lost: Vec<u32> = (0..1000).filter(|seq| !got.contains(seq)).collect();
    let runs = 1 + lost.windows(2).filter(|w| w[1] != w[0] + 1).count();
    let mean_run = lost.len() as f64 / runs as f64;
    assert!(
        (80..=300).contains(&lost.len()),
        "lost {} of 1000",
        lost.len()
    );
    // Independent loss at this rate would give runs of ~1.2; bursts of mean 4 give ~4.
    assert!(mean_run >= 2.0, "mean loss run {mean_run:.2}: not bursty");
}

#[tokio::test]
async fn delay_holds_each_packet_at_least_the_configured_time() {
    let echo = Echo::start().await;
    let delayed = Impairment::uplink(LinkImpairment::none().delay(Duration::from_millis(50)));
    let proxy = start(
        &echo,
        ProxyConfig {
            default_impairment: delayed,
            ..ProxyConfig::default()
        },
    )
    .await;
    let c = client().await;
    for i in 0u8..10 {
        let rtt = round_trip(&c, proxy.listen_addr(), &[i; 8])
            .await
            .expect("a delayed packet still arrives");
        assert!(rtt >= Duration::from_millis(50), "round trip {rtt:?}");
    }
}

#[tokio::test]
async fn blackhole_drops_everything_and_restore_brings_traffic_back() {
    let echo = Echo::start().await;
    let proxy = start(&echo, ProxyConfig::default()).await;
    let c = client().await;
    let to = proxy.listen_addr();
    assert_eq!(send_and_count(&c, to, 20, 20).await, 20);
    let flow = proxy.wait_for_flow(1, WAIT).await.unwrap();

    assert_eq!(proxy.blackhole(flow.id).unwrap(), 1);
    assert!(proxy.flow(flow.id).unwrap().blackholed);
    assert_eq!(send_and_count(&c, to, 20, 20).await, 0);
    let during = proxy.flow(flow.id).unwrap();
    assert_eq!(during.uplink.dropped_blackhole, 20);

    assert_eq!(proxy.restore(Target::All).unwrap(), 1);
    assert_eq!(send_and_count(&c, to, 20, 20).await, 20);
    assert!(!proxy.flow(flow.id).unwrap().blackholed);
}

#[tokio::test]
async fn blackhole_also_drops_what_the_link_still_holds() {
    let echo = Echo::start().await;
    let slow_down = Impairment::downlink(LinkImpairment::none().delay(Duration::from_millis(400)));
    let proxy = start(
        &echo,
        ProxyConfig {
            default_impairment: slow_down,
            ..ProxyConfig::default()
        },
    )
    .await;
    let c = client().await;
    let to = proxy.listen_addr();
    for seq in 0u32..5 {
        c.send_to(&seq.to_be_bytes(), to).await.unwrap();
    }
    // The echoes are now held in the downlink's 400 ms delay.
    let flow = proxy.wait_for_flow(1, WAIT).await.unwrap();
    let deadline = Instant::now() + WAIT;
    while proxy.flow(flow.id).unwrap().downlink.packets_in < 5 {
        assert!(Instant::now() < deadline, "echoes never reached the proxy");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    proxy.blackhole(flow.id).unwrap();
    let mut buf = [0u8; 16];
    let got = tokio::time::timeout(Duration::from_millis(800), c.recv_from(&mut buf)).await;
    assert!(got.is_err(), "a held packet left a black-holed flow");
    assert_eq!(proxy.flow(flow.id).unwrap().downlink.dropped_blackhole, 5);
}

#[tokio::test]
async fn rebind_shows_the_server_a_new_port_and_replies_still_arrive() {
    let echo = Echo::start().await;
    let proxy = start(&echo, ProxyConfig::default()).await;
    let c = client().await;
    let to = proxy.listen_addr();
    assert!(round_trip(&c, to, b"before").await.is_some());
    let flow = proxy.wait_for_flow(1, WAIT).await.unwrap();
    assert_eq!(echo.last_source(), Some(flow.upstream_local));

    let new_addr = proxy.rebind(flow.id).await.unwrap();
    assert_ne!(new_addr, flow.upstream_local);
    assert_eq!(new_addr.ip(), flow.upstream_local.ip());
    assert!(round_trip(&c, to, b"after").await.is_some());
    assert_eq!(echo.last_source(), Some(new_addr));
    assert_eq!(echo.distinct_sources().len(), 2);

    let after = proxy.flow_by_upstream_local(new_addr).unwrap();
    assert_eq!(
        (after.id, after.client, after.rebinds),
        (flow.id, flow.client, 1)
    );
    assert!(proxy.flow_by_upstream_local(flow.upstream_local).is_err());
}

#[tokio::test]
async fn distinct_clients_get_distinct_upstream_addresses() {
    let echo = Echo::start().await;
    let proxy = start(&echo, ProxyConfig::default()).await;
    let clients = [client().await, client().await, client().await];
    for c in &clients {
        assert!(round_trip(c, proxy.listen_addr(), b"hi").await.is_some());
    }
    proxy.wait_for_flow(3, WAIT).await.unwrap();
    let flows = proxy.flows();
    assert_eq!(flows.len(), 3);
    let upstreams: HashSet<_> = flows.iter().map(|f| f.upstream_local).collect();
    assert_eq!(upstreams.len(), 3);
    assert_eq!(echo.distinct_sources(), upstreams);
    for c in &clients {
        let flow = proxy.flow_by_client(c.local_addr().unwrap()).unwrap();
        assert_eq!(
            proxy
                .flow_by_upstream_local(flow.upstream_local)
                .unwrap()
                .id,
            flow.id
        );
    }
}

#[tokio::test]
async fn flow_cap_refuses_extra_flows_without_affecting_existing_ones() {
    let echo = Echo::start().await;
    let proxy = start(
        &echo,
        ProxyConfig {
            max_flows: 2,
            ..ProxyConfig::default()
        },
    )
    .await;
    let to = proxy.listen_addr();
    let (a, b, extra) = (client().await, client().await, client().await);
    assert!(round_trip(&a, to, b"a").await.is_some());
    assert!(round_trip(&b, to, b"b").await.is_some());
    assert_eq!(send_and_count(&extra, to, 10, 10).await, 0);
    assert_eq!(proxy.stats().refused_packets, 10);
    assert_eq!(proxy.flows().len(), 2);
    assert!(proxy.flow_by_client(extra.local_addr().unwrap()).is_err());
    assert_eq!(send_and_count(&a, to, 50, 50).await, 50);
    assert_eq!(send_and_count(&b, to, 50, 50).await, 50);
}

#[tokio::test]
async fn idle_flows_are_reaped_and_a_returning_client_gets_a_new_flow() {
    let echo = Echo::start().await;
    let proxy = start(
        &echo,
        ProxyConfig {
            idle_timeout: Duration::from_millis(200),
            ..ProxyConfig::default()
        },
    )
    .await;
    let c = client().await;
    assert!(round_trip(&c, proxy.listen_addr(), b"one").await.is_some());
    proxy.wait_for_flow(1, WAIT).await.unwrap();
    let deadline = Instant::now() + WAIT;
    while !proxy.flows().is_empty() {
        assert!(Instant::now() < deadline, "idle flow never reaped");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(proxy.stats().flows_reaped, 1);
    assert!(round_trip(&c, proxy.listen_addr(), b"two").await.is_some());
    let again = proxy.wait_for_flow(2, WAIT).await.unwrap();
    assert_eq!(again.client, c.local_addr().unwrap());
}

#[tokio::test]
async fn rate_limited_link_tail_drops_a_burst_beyond_its_buffer() {
    let echo = Echo::start().await;
    // 100 kbit/s with room for 3 datagrams of 1000 bytes.
    let narrow = Impairment::uplink(LinkImpairment::none().rate(100_000, 3_000));
    let proxy = start(
        &echo,
        ProxyConfig {
            default_impairment: narrow,
            ..ProxyConfig::default()
        },
    )
    .await;
    let c = client().await;
    let payload = [7u8; 1000];
    for _ in 0..40 {
        c.send_to(&payload, proxy.listen_addr()).await.unwrap();
    }
    let flow = proxy.wait_for_flow(1, WAIT).await.unwrap();
    let deadline = Instant::now() + WAIT;
    loop {
        let f = proxy.flow(flow.id).unwrap();
        if f.uplink.packets_out + f.uplink.dropped() >= 40 {
            assert!(f.uplink.dropped_impairment >= 30, "{:?}", f.uplink);
            assert!(f.uplink.packets_out >= 3, "{:?}", f.uplink);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "burst never drained: {:?}",
            f.uplink
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn bad_settings_are_errors_and_change_nothing() {
    let echo = Echo::start().await;
    let proxy = start(&echo, ProxyConfig::default()).await;
    let c = client().await;
    assert!(round_trip(&c, proxy.listen_addr(), b"x").await.is_some());
    let flow = proxy.wait_for_flow(1, WAIT).await.unwrap();
    let bad = Impairment::uplink(LinkImpairment::none().random_loss(2.0));
    assert!(proxy.set_impairment(flow.id, bad).await.is_err());
    assert!(proxy.set_default_impairment(bad).is_err());
    assert_eq!(proxy.flow(flow.id).unwrap().impairment, Impairment::none());
    assert!(proxy.rebind(netbed::FlowId(99)).await.is_err());
    assert!(proxy.blackhole(netbed::FlowId(99)).is_err());
    assert!(round_trip(&c, proxy.listen_addr(), b"y").await.is_some());
}

#[tokio::test]
async fn a_client_ip_names_all_of_one_persons_flows() {
    let echo = Echo::start().await;
    let proxy = start(&echo, ProxyConfig::default()).await;
    let to = proxy.listen_addr();
    // "Alice" has two sockets on 127.0.0.2, "Bob" one on 127.0.0.3.
    let bind = |ip: &str| {
        let addr: SocketAddr = format!("{ip}:0").parse().unwrap();
        async move { UdpSocket::bind(addr).await.unwrap() }
    };
    let (alice1, alice2, bob) = (
        bind("127.0.0.2").await,
        bind("127.0.0.2").await,
        bind("127.0.0.3").await,
    );
    for c in [&alice1, &alice2, &bob] {
        assert!(round_trip(c, to, b"hi").await.is_some());
    }
    let alice_ip = "127.0.0.2".parse().unwrap();
    assert_eq!(proxy.flows_from_ip(alice_ip).len(), 2);
    assert_eq!(proxy.blackhole(Target::ClientIp(alice_ip)).unwrap(), 2);
    assert!(round_trip(&alice1, to, b"a1").await.is_none());
    assert!(round_trip(&alice2, to, b"a2").await.is_none());
    assert!(round_trip(&bob, to, b"b").await.is_some());
    assert!(proxy
        .blackhole(Target::ClientIp("127.0.0.9".parse().unwrap()))
        .is_err());
}

#[tokio::test]
async fn duplication_sends_packets_twice() {
    let echo = Echo::start().await;
    let doubled = Impairment::uplink(LinkImpairment::none().duplicate(1.0));
    let proxy = start(
        &echo,
        ProxyConfig {
            default_impairment: doubled,
            ..ProxyConfig::default()
        },
    )
    .await;
    let c = client().await;
    for seq in 0u32..20 {
        c.send_to(&seq.to_be_bytes(), proxy.listen_addr())
            .await
            .unwrap();
    }
    let mut copies = [0u32; 20];
    let mut buf = [0u8; 16];
    while let Ok(Ok((4, _))) = tokio::time::timeout(QUIET, c.recv_from(&mut buf)).await {
        copies[u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize] += 1;
    }
    assert_eq!(copies, [2; 20]);
    let flow = proxy.wait_for_flow(1, WAIT).await.unwrap();
    assert_eq!((flow.uplink.duplicated, flow.uplink.packets_out), (20, 40));
}

#[tokio::test]
async fn a_reorder_gap_overtakes_earlier_packets() {
    let echo = Echo::start().await;
    let reordering = Impairment::uplink(
        LinkImpairment::none()
            .delay(Duration::from_millis(20))
            .reorder_gap(3),
    );
    let proxy = start(
        &echo,
        ProxyConfig {
            default_impairment: reordering,
            ..ProxyConfig::default()
        },
    )
    .await;
    let c = client().await;
    for seq in 0u32..30 {
        c.send_to(&seq.to_be_bytes(), proxy.listen_addr())
            .await
            .unwrap();
    }
    let mut order = Vec::new();
    let mut buf = [0u8; 16];
    while let Ok(Ok((4, _))) = tokio::time::timeout(QUIET, c.recv_from(&mut buf)).await {
        order.push(u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]));
    }
    let mut sorted = order.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (0..30).collect::<Vec<_>>(), "all arrive once");
    let overtakes = order.windows(2).filter(|w| w[1] < w[0]).count();
    assert!(overtakes >= 5, "arrival order {order:?}");
}

#[tokio::test]
async fn jitter_spreads_the_delay_on_both_sides() {
    let echo = Echo::start().await;
    let jittery = Impairment::uplink(
        LinkImpairment::none()
            .delay(Duration::from_millis(50))
            .jitter(Duration::from_millis(20))
            .seed(5),
    );
    let proxy = start(
        &echo,
        ProxyConfig {
            default_impairment: jittery,
            ..ProxyConfig::default()
        },
    )
    .await;
    let c = client().await;
    let mut rtts = Vec::new();
    for i in 0u8..40 {
        rtts.push(round_trip(&c, proxy.listen_addr(), &[i; 4]).await.unwrap());
    }
    // Delays are uniform in 30..70 ms: none below 30, about a quarter below 45. A busy
    // machine only adds time, so it cannot fake the early ones.
    assert!(
        rtts.iter().all(|r| *r >= Duration::from_millis(30)),
        "{rtts:?}"
    );
    let early = rtts
        .iter()
        .filter(|r| **r < Duration::from_millis(45))
        .count();
    assert!(early >= 3, "only {early} of 40 under 45 ms: {rtts:?}");
}

#[tokio::test]
async fn a_flow_outlives_its_server_going_away_and_coming_back() {
    let echo = Echo::start().await;
    let server = echo.addr;
    let proxy = start(&echo, ProxyConfig::default()).await;
    let c = client().await;
    assert!(round_trip(&c, proxy.listen_addr(), b"up").await.is_some());
    echo.stop().await;
    // The server is gone: each datagram now earns an ICMP error on the upstream socket.
    assert_eq!(send_and_count(&c, proxy.listen_addr(), 50, 50).await, 0);
    // ... which the proxy counts (sends refused with ECONNREFUSED) and survives.
    assert!(proxy.flows()[0].uplink.dropped_overflow > 0);
    let echo = Echo::start_on(server).await;
    assert!(round_trip(&c, proxy.listen_addr(), b"again")
        .await
        .is_some());
    let flow = proxy.wait_for_flow(1, WAIT).await.unwrap();
    assert_eq!(proxy.flows().len(), 1, "the same flow carries on");
    assert_eq!(echo.last_source(), Some(flow.upstream_local));
}
