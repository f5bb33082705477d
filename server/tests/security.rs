//! The server-level refusals: origins (HTTP and Socket.IO), production mode, per-IP sockets.

#[path = "../../signaling/tests/common/mod.rs"]
mod common;

use std::net::SocketAddr;

use common::{Client, DEADLINE};
use serde_json::{json, Value};
use switchboard::{Server, ServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

async fn start(config: ServerConfig) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let server = Server::bind(config).await.expect("binds");
    let addr = server.http_addr();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server.run(async move {
        let _ = rx.await;
    }));
    (addr, tx)
}

/// `POST /api/session` with an optional `Origin`: (status, body).
async fn sign_in_from(addr: SocketAddr, origin: Option<&str>) -> (u16, Value) {
    let body = json!({ "name": "Alice" }).to_string();
    let origin = origin.map_or(String::new(), |o| format!("Origin: {o}\r\n"));
    let request = format!(
        "POST /api/session HTTP/1.1\r\nHost: {addr}\r\n{origin}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    tokio::time::timeout(DEADLINE, stream.read_to_string(&mut response))
        .await
        .expect("response in time")
        .unwrap();
    let status = response[9..12].parse().unwrap();
    let body = response.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

/// Opens the Socket.IO WebSocket with an `Origin`: the HTTP status of a refused upgrade.
async fn websocket_from(addr: SocketAddr, origin: &str) -> Result<(), u16> {
    let mut request = format!("ws://{addr}/socket.io/?EIO=4&transport=websocket")
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("origin", origin.parse().unwrap());
    match tokio_tungstenite::connect_async(request).await {
        Ok(_) => Ok(()),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            Err(response.status().as_u16())
        }
        Err(e) => panic!("unexpected websocket error: {e}"),
    }
}

#[tokio::test]
async fn foreign_origins_are_refused_on_http_and_socketio() {
    let config = ServerConfig {
        allowed_origins: vec!["https://app.example.com".into()],
        ..ServerConfig::for_tests()
    };
    let (addr, _stop) = start(config).await;

    let (status, body) = sign_in_from(addr, Some("https://evil.example")).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["code"], "origin_not_allowed");
    assert_eq!(websocket_from(addr, "https://evil.example").await, Err(403));

    // Same origin, a listed origin, localhost in development, and no Origin at all pass.
    for origin in [
        Some(format!("http://{addr}")),
        Some("https://app.example.com".into()),
        Some("http://localhost:5173".into()),
        None,
    ] {
        let (status, body) = sign_in_from(addr, origin.as_deref()).await;
        assert_eq!(status, 200, "{origin:?}: {body}");
    }
    assert_eq!(
        websocket_from(addr, "https://app.example.com").await,
        Ok(())
    );
}

#[tokio::test]
async fn production_mode_needs_a_secret_and_closes_the_demo_sign_in() {
    let config = ServerConfig {
        production: true,
        token_secret: None,
        ..ServerConfig::for_tests()
    };
    let error = Server::bind(config).await.err().expect("refuses to start");
    assert!(format!("{error:#}").contains("token secret"), "{error:#}");

    let config = ServerConfig {
        production: true,
        ..ServerConfig::for_tests()
    };
    let (addr, _stop) = start(config).await;
    let (status, _) = sign_in_from(addr, None).await;
    assert_ne!(status, 200, "no open sign-in in production");
    // Production allows no localhost origins it was not told about.
    let (status, _) = sign_in_from(addr, Some("http://localhost:5173")).await;
    assert_eq!(status, 403);

    let config = ServerConfig {
        production: true,
        demo_sign_in: true,
        ..ServerConfig::for_tests()
    };
    let (addr, _stop) = start(config).await;
    let (status, body) = sign_in_from(addr, None).await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn sockets_per_ip_are_limited() {
    let mut config = ServerConfig::for_tests();
    config.limits.max_sockets_per_ip = 2;
    let (addr, _stop) = start(config).await;
    let mut tokens = Vec::new();
    for _ in 0..3 {
        let (status, body) = sign_in_from(addr, None).await;
        assert_eq!(status, 200);
        tokens.push(body["token"].as_str().unwrap().to_owned());
    }
    let first = Client::connect(addr, Some(json!({ "token": tokens[0] })))
        .await
        .unwrap();
    let _second = Client::connect(addr, Some(json!({ "token": tokens[1] })))
        .await
        .unwrap();
    let third = Client::connect(addr, Some(json!({ "token": tokens[2] })))
        .await
        .err();
    assert_eq!(third.as_deref(), Some("too_many_connections"));
    first.close();
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while Client::connect(addr, Some(json!({ "token": tokens[2] })))
        .await
        .is_err()
    {
        assert!(tokio::time::Instant::now() < deadline, "slot not freed");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
