//! The whole server in-process: HTTP routes, Socket.IO through the full router, shutdown.

// The Socket.IO v4 test client lives with signaling's tests.
#[path = "../../signaling/tests/common/mod.rs"]
mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{Client, DEADLINE};
use serde_json::{json, Value};
use switchboard::{Server, ServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn http(addr: SocketAddr, method: &str, path: &str, body: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    tokio::time::timeout(DEADLINE, stream.read_to_string(&mut response))
        .await
        .expect("HTTP response in time")
        .unwrap();
    let status = response[9..12].parse().unwrap();
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

async fn sign_in(addr: SocketAddr, name: &str) -> Client {
    let (status, body) = http(
        addr,
        "POST",
        "/api/session",
        &json!({ "name": name }).to_string(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    let mut client = Client::connect(addr, Some(json!({ "token": body["token"] })))
        .await
        .expect("connects");
    client.user_id = body["user"]["id"].as_str().unwrap().to_owned();
    client.name = name.to_owned();
    client
}

#[tokio::test]
async fn serves_everything_on_one_port_and_shuts_down_gracefully() {
    let server = Server::bind(ServerConfig::for_tests())
        .await
        .expect("binds");
    let addr = server.http_addr();
    assert!(addr.ip().is_loopback() && addr.port() != 0);
    assert_ne!(server.media_addr().port(), 0);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(server.run(async {
        let _ = stopped.await;
    }));

    assert_eq!(
        http(addr, "GET", "/healthz", "").await,
        (200, "ok".to_owned())
    );
    let (status, index) = http(addr, "GET", "/", "").await;
    assert_eq!(status, 200);
    assert!(index.to_lowercase().contains("<html"), "{index:.200}");
    assert_eq!(http(addr, "GET", "/no/such/file.txt", "").await.0, 404);
    let (status, body) = http(addr, "POST", "/api/session", r#"{"name":""}"#).await;
    assert_eq!(status, 400);
    assert!(body.contains("invalid_name"));

    assert_eq!(
        Client::connect(addr, None).await.err().as_deref(),
        Some("missing_token")
    );
    let mut alice = sign_in(addr, "Alice").await;
    let mut bob = sign_in(addr, "Bob").await;
    let call_id = common::ring(&mut alice, &mut bob).await;
    let ack = bob
        .request("accept_call", json!({ "call_id": call_id }))
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    alice.expect("call_accepted").await;
    bob.expect("call_accepted").await;

    stop.send(()).unwrap();
    for client in [&mut alice, &mut bob] {
        let ended = client.expect("call_ended").await;
        assert_eq!(ended["call_id"], call_id.as_str());
        assert_eq!(ended["reason"], "shutdown");
    }
    tokio::time::timeout(Duration::from_secs(10), running)
        .await
        .expect("run returns after shutdown")
        .unwrap()
        .expect("clean shutdown");
    assert!(TcpStream::connect(addr).await.is_err(), "listener closed");
}

#[tokio::test]
async fn bind_fails_cleanly_on_a_taken_port() {
    let first = Server::bind(ServerConfig::for_tests()).await.unwrap();
    let config = ServerConfig {
        http_addr: first.http_addr(),
        ..ServerConfig::for_tests()
    };
    let error = Server::bind(config).await.err().expect("port is taken");
    assert!(format!("{error:#}").contains("binding HTTP"), "{error:#}");
}
