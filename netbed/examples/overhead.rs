//! What the test bed itself costs on a clean link: round-trip time and packet rate to a UDP
//! echo server, directly and through the proxy (one flow, no impairment). The figures go in
//! docs/benchmarks.md ("Network test bed overhead").
//!
//! `cargo run --release -p switchboard-netbed --example overhead`

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use netbed::Proxy;
use tokio::net::UdpSocket;

const ROUND_TRIPS: usize = 2_000;
const WINDOW: usize = 32;
const RATE_TIME: Duration = Duration::from_secs(3);
const PAYLOAD: usize = 1_200;

async fn echo_server() -> SocketAddr {
    let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind echo");
    let addr = socket.local_addr().expect("echo address");
    tokio::spawn(async move {
        let mut buf = vec![0u8; 2048];
        while let Ok((n, from)) = socket.recv_from(&mut buf).await {
            let _ = socket.send_to(&buf[..n], from).await;
        }
    });
    addr
}

/// Serial round trips of small datagrams: p50 and p99 in µs.
async fn round_trips(to: SocketAddr) -> (u128, u128) {
    let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind client");
    let mut buf = [0u8; 64];
    let mut rtts = Vec::with_capacity(ROUND_TRIPS);
    for i in 0..ROUND_TRIPS as u32 {
        let started = Instant::now();
        socket.send_to(&i.to_be_bytes(), to).await.expect("send");
        match tokio::time::timeout(Duration::from_secs(1), socket.recv_from(&mut buf)).await {
            Ok(Ok(_)) => rtts.push(started.elapsed().as_micros()),
            _ => eprintln!("round trip {i} lost"),
        }
    }
    rtts.sort_unstable();
    let at = |q: f64| rtts[((rtts.len() - 1) as f64 * q) as usize];
    (at(0.5), at(0.99))
}

/// Echoed 1200-byte datagrams per second with `WINDOW` in flight.
async fn packet_rate(to: SocketAddr) -> f64 {
    let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind client");
    let payload = [7u8; PAYLOAD];
    let mut buf = [0u8; 2048];
    for _ in 0..WINDOW {
        socket.send_to(&payload, to).await.expect("send");
    }
    let started = Instant::now();
    let mut echoed = 0u64;
    while started.elapsed() < RATE_TIME {
        match tokio::time::timeout(Duration::from_millis(200), socket.recv_from(&mut buf)).await {
            Ok(Ok(_)) => {
                echoed += 1;
                socket.send_to(&payload, to).await.expect("send");
            }
            // A lost datagram: put one back in flight.
            _ => {
                socket.send_to(&payload, to).await.expect("send");
            }
        }
    }
    echoed as f64 / started.elapsed().as_secs_f64()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let echo = echo_server().await;
    let proxy = Proxy::start("127.0.0.1:0".parse().expect("address"), echo)
        .await
        .expect("proxy starts");
    let (direct_p50, direct_p99) = round_trips(echo).await;
    let (proxy_p50, proxy_p99) = round_trips(proxy.listen_addr()).await;
    let direct_rate = packet_rate(echo).await;
    let proxy_rate = packet_rate(proxy.listen_addr()).await;
    println!("| path | RTT p50 | RTT p99 | echoed 1200 B datagrams/s ({WINDOW} in flight) |");
    println!("|---|---|---|---|");
    println!("| direct | {direct_p50} µs | {direct_p99} µs | {direct_rate:.0} |");
    println!("| through the proxy | {proxy_p50} µs | {proxy_p99} µs | {proxy_rate:.0} |");
}
