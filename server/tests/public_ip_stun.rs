//! `--public-ip-from-stun` against a real STUN server: coturn (Debian's `coturn`; scripts/test
//! installs it) started on a free loopback port.

use std::process::Stdio;
use std::time::Duration;

use switchboard::{Server, ServerConfig};

fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// coturn answering STUN only, on 127.0.0.1:`port`, stopped when dropped.
fn coturn(port: u16) -> tokio::process::Child {
    let scratch = std::env::temp_dir();
    tokio::process::Command::new("turnserver")
        .args([
            "-n",
            "--stun-only",
            "--no-cli",
            "--no-tls",
            "--no-dtls",
            "--listening-ip=127.0.0.1",
            &format!("--listening-port={port}"),
            "--log-file=stdout",
            "--simple-log",
            &format!(
                "--pidfile={}",
                scratch.join(format!("coturn-{port}.pid")).display()
            ),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("coturn's turnserver (apt-get install coturn; scripts/test does)")
}

#[tokio::test]
async fn the_public_ip_is_learnt_from_a_stun_server() {
    let port = free_udp_port();
    let mut stun = coturn(port);
    let server = format!("127.0.0.1:{port}");
    // coturn takes a moment to bind; the discovery itself retries 3 times, so retry the start.
    let mut discovered = None;
    for _ in 0..10 {
        match switchboard::public_ip::discover(&server).await {
            Ok(ip) => {
                discovered = Some(ip);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
    // Packets from an unbound socket to 127.0.0.1 come from 127.0.0.1: that is what the
    // server saw.
    assert_eq!(discovered, Some("127.0.0.1".parse().unwrap()));

    // The SFU announces it in its ICE candidates (media_addr is the advertised address),
    // though its media socket is bound to another one; without STUN it announces the bind IP.
    let bound_to_3 = || ServerConfig {
        media_addr: "127.0.0.3:0".parse().unwrap(),
        ..ServerConfig::for_tests()
    };
    let plain = Server::bind(bound_to_3()).await.expect("starts");
    assert_eq!(plain.media_addr().ip().to_string(), "127.0.0.3");
    drop(plain);
    let config = ServerConfig {
        public_ip_from_stun: Some(server.clone()),
        ..bound_to_3()
    };
    let bound = Server::bind(config).await.expect("starts");
    assert_eq!(bound.public_ip(), Some("127.0.0.1".parse().unwrap()));
    assert_eq!(bound.media_addr().ip().to_string(), "127.0.0.1");
    drop(bound);

    // --public-ip wins without asking.
    let config = ServerConfig {
        public_ip: Some("203.0.113.9".parse().unwrap()),
        public_ip_from_stun: Some(server),
        ..ServerConfig::for_tests()
    };
    let bound = Server::bind(config).await.expect("starts");
    assert_eq!(bound.public_ip(), Some("203.0.113.9".parse().unwrap()));
    let _ = stun.start_kill();
    let _ = stun.wait().await;
}

#[tokio::test]
async fn no_stun_answer_refuses_to_start_with_a_clear_error() {
    // Nobody listens there: the server must not announce a wrong address.
    let config = ServerConfig {
        public_ip_from_stun: Some(format!("127.0.0.1:{}", free_udp_port())),
        ..ServerConfig::for_tests()
    };
    let error = Server::bind(config).await.err().expect("refuses to start");
    let message = format!("{error:#}");
    assert!(message.contains("--public-ip-from-stun"), "{message}");
}
