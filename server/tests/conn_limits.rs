//! Finding 10 through the wire: slow-header connections are closed, the HTTP connection count
//! is capped, unauthenticated Engine.IO sessions per IP are capped and expire quickly.

use std::net::SocketAddr;
use std::time::Duration;

use switchboard::{Server, ServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

async fn start(config: ServerConfig) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let server = Server::bind(config).await.expect("binds");
    let addr = server.http_addr();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server.run(async move {
        let _ = rx.await;
    }));
    (addr, tx)
}

/// Reads until the server closes the connection; `None` if it is still open after `wait`.
async fn closed_within(stream: &mut TcpStream, wait: Duration) -> Option<Vec<u8>> {
    let mut received = Vec::new();
    let deadline = Instant::now() + wait;
    loop {
        let mut buf = [0u8; 1024];
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(received),
            Ok(Ok(n)) => received.extend_from_slice(&buf[..n]),
        }
    }
}

/// `GET path` on a fresh connection: (status, body).
async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let response = closed_within(&mut stream, Duration::from_secs(5))
        .await
        .expect("answered and closed");
    let response = String::from_utf8_lossy(&response).into_owned();
    let status = response[9..12].parse().unwrap();
    let body = response
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    (status, body)
}

#[tokio::test]
async fn a_slow_header_connection_is_closed() {
    let mut config = ServerConfig::for_tests();
    config.limits.header_read_timeout_secs = 1;
    let (addr, _stop) = start(config).await;
    let mut slow = TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    assert!(
        closed_within(&mut slow, Duration::from_secs(5))
            .await
            .is_some(),
        "a connection that never finishes its headers stays open"
    );
    assert!(started.elapsed() >= Duration::from_millis(900));
    // A normal request still works.
    assert_eq!(get(addr, "/healthz").await.0, 200);
}

#[tokio::test]
async fn connections_beyond_the_cap_are_closed_at_once() {
    let mut config = ServerConfig::for_tests();
    config.limits.max_connections = 3;
    let (addr, _stop) = start(config).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        // Prove each is being served (keep-alive keeps it open afterwards).
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 256];
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
        held.push(stream);
    }
    let mut extra = TcpStream::connect(addr).await.unwrap();
    let _ = extra
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    let answer = closed_within(&mut extra, Duration::from_secs(2))
        .await
        .expect("the fourth connection is closed");
    assert!(answer.is_empty(), "and not served");
    // A slot frees when a connection ends.
    drop(held.pop());
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let _ = stream
            .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await;
        let answer = closed_within(&mut stream, Duration::from_secs(2))
            .await
            .unwrap_or_default();
        if answer.starts_with(b"HTTP/1.1 200") {
            break;
        }
        assert!(Instant::now() < deadline, "no slot came back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn pre_auth_sessions_per_ip_are_capped_and_expire() {
    let mut config = ServerConfig::for_tests();
    config.limits.max_preauth_sessions_per_ip = 5;
    config.limits.socketio_connect_timeout_secs = 1;
    let (addr, _stop) = start(config).await;
    let handshake = "/socket.io/?EIO=4&transport=polling";
    let mut sids = Vec::new();
    for _ in 0..5 {
        let (status, body) = get(addr, handshake).await;
        assert_eq!(status, 200, "{body}");
        let open: serde_json::Value = serde_json::from_str(&body[1..]).expect("open packet");
        sids.push(open["sid"].as_str().unwrap().to_owned());
    }
    for _ in 0..3 {
        assert_eq!(
            get(addr, handshake).await,
            (429, "too_many_sessions".into())
        );
    }
    // A direct WebSocket is a new session too.
    assert_eq!(
        get(addr, "/socket.io/?EIO=4&transport=websocket").await.0,
        429
    );
    // Without a CONNECT, a session ends after the (shortened) connect timeout.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (status, _) = get(addr, &format!("{handshake}&sid={}", sids[0])).await;
    assert_eq!(status, 400, "the unauthenticated session was closed");
    // And the window has moved on.
    assert_eq!(get(addr, handshake).await.0, 200);
}
