//! How clients are counted per address (security review finding 24): IPv6 per /64, and
//! X-Forwarded-For believed only from configured proxies. Through the real server, served
//! with connect info (peer 127.0.0.1) like the binary.

mod common;

use common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Connects a new user with `X-Forwarded-For: forwarded`: the open connection, or the
/// `connect_error` message.
async fn connect_as(server: &TestServer, forwarded: &str) -> Result<Ws, String> {
    let (token, _) = server
        .signaling
        .issue_session(&format!("User {}", rand::random::<u16>()))
        .unwrap();
    let mut request = format!("ws://{}/socket.io/?EIO=4&transport=websocket", server.addr)
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("x-forwarded-for", forwarded.parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    ws.next().await; // Engine.IO open
    ws.send(Message::text(format!("40{}", json!({ "token": token }))))
        .await
        .unwrap();
    loop {
        match tokio::time::timeout(DEADLINE, ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) if t.starts_with("40") => return Ok(ws),
            Ok(Some(Ok(Message::Text(t)))) if t.starts_with("44") => {
                let body: serde_json::Value = serde_json::from_str(&t[2..]).unwrap();
                return Err(body["message"].as_str().unwrap_or("").to_owned());
            }
            Ok(Some(Ok(_))) => {}
            other => panic!("no CONNECT answer: {other:?}"),
        }
    }
}

#[tokio::test]
async fn ipv6_clients_of_one_64_share_the_per_address_limit() {
    let server = TestServer::start_with_addresses(|c| {
        c.trust_forwarded_for = true;
        c.limits.max_sockets_per_ip = 2;
    })
    .await;
    let _a = connect_as(&server, "2001:db8::1").await.expect("first");
    let _b = connect_as(&server, "2001:db8::2").await.expect("second");
    assert_eq!(
        connect_as(&server, "2001:db8::ffff:3")
            .await
            .err()
            .as_deref(),
        Some("too_many_connections"),
        "another address of the same /64 is the same client"
    );
    // Another /64 is another client.
    connect_as(&server, "2001:db8:0:1::1")
        .await
        .expect("other /64");
}

#[tokio::test]
async fn forwarded_for_is_only_believed_from_trusted_proxies() {
    // The peer (127.0.0.1) is not a trusted proxy: every client counts as 127.0.0.1,
    // whatever it claims.
    let server = TestServer::start_with_addresses(|c| {
        c.trust_forwarded_for = true;
        c.trusted_proxies = vec!["10.0.0.0/8".parse().unwrap()];
        c.limits.max_sockets_per_ip = 2;
    })
    .await;
    let _a = connect_as(&server, "198.51.100.1").await.expect("first");
    let _b = connect_as(&server, "198.51.100.2").await.expect("second");
    assert_eq!(
        connect_as(&server, "198.51.100.3").await.err().as_deref(),
        Some("too_many_connections"),
        "a spoofed X-Forwarded-For from an untrusted peer picked its own bucket"
    );

    // Behind a trusted proxy, each forwarded address is its own client.
    let server = TestServer::start_with_addresses(|c| {
        c.trusted_proxies = vec!["127.0.0.0/8".parse().unwrap()];
        c.limits.max_sockets_per_ip = 2;
    })
    .await;
    let mut open = Vec::new();
    for i in 1..=3 {
        open.push(
            connect_as(&server, &format!("198.51.100.{i}"))
                .await
                .expect("distinct clients"),
        );
    }
}
