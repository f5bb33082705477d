//! Presence under load (security review finding 4): many idle sockets and connection churn
//! must not cost call events. Every test goes through the real server: Socket.IO over real
//! WebSockets on loopback.

mod common;

use std::time::Duration;

use common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpSocket;
use tokio_tungstenite::tungstenite::Message;

/// Connects `n` users named `{prefix}{i}` (tokens from the server's own issuer), `batch` at a
/// time, and returns them connected.
async fn connect_many(server: &TestServer, prefix: &str, n: usize, batch: usize) -> Vec<Client> {
    let mut clients = Vec::with_capacity(n);
    for start in (0..n).step_by(batch) {
        let tasks: Vec<_> = (start..(start + batch).min(n))
            .map(|i| {
                let (token, user) = server
                    .signaling
                    .issue_session(&format!("{prefix}{i}"))
                    .expect("valid name");
                let addr = server.addr;
                tokio::spawn(async move {
                    let mut client = Client::connect(addr, Some(json!({ "token": token })))
                        .await
                        .expect("connects");
                    client.user_id = user.id.as_str().to_owned();
                    client
                })
            })
            .collect();
        for task in tasks {
            clients.push(task.await.expect("connect task"));
        }
    }
    clients
}

/// Connect/disconnect cycles of fresh users, `cycles` of them, `parallel` at a time.
fn churn(server: &TestServer, cycles: usize, parallel: usize) -> tokio::task::JoinHandle<usize> {
    let addr = server.addr;
    let tokens: Vec<String> = (0..parallel)
        .map(|i| {
            server
                .signaling
                .issue_session(&format!("Churner {i} with quite a long name"))
                .expect("valid name")
                .0
        })
        .collect();
    tokio::spawn(async move {
        let workers: Vec<_> = tokens
            .into_iter()
            .map(|token| {
                tokio::spawn(async move {
                    let mut done = 0;
                    for _ in 0..cycles / parallel {
                        let client = Client::connect(addr, Some(json!({ "token": &token })))
                            .await
                            .expect("churner connects");
                        client.close();
                        done += 1;
                        // Let the server see the close before the same user reconnects.
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    done
                })
            })
            .collect();
        let mut total = 0;
        for worker in workers {
            total += worker.await.expect("churn worker");
        }
        total
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_call_event_arrives_among_1000_idle_sockets_and_churn() {
    let server = TestServer::start_with(|c| {
        c.limits.max_sockets_per_ip = 5_000;
        c.limits.ip_connect_burst = 10_000;
        c.limits.user_connect_burst = 1_000;
    })
    .await;
    let idle = connect_many(&server, "Idle user ", 1_000, 50).await;
    assert_eq!(server.signaling.stats().sockets, 1_000);

    let mut alice = server.user("Alice").await;
    let mut bob = server.user("Bob").await;
    let mut carol = server.user("Carol").await;
    let churning = churn(&server, 400, 8);

    // A group call set up, joined, left and ended while the churn goes on.
    let ack = alice
        .request(
            "initiate_call",
            json!({ "to": [&bob.user_id, &carol.user_id], "kind": "video" }),
        )
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    let call_id = ack["call_id"].as_str().unwrap().to_owned();
    let this_call = |d: &Value| d["call_id"] == call_id.as_str();
    alice.expect_where("call_ringing", this_call).await;
    bob.expect_where("incoming_call", this_call).await;
    carol.expect_where("incoming_call", this_call).await;
    let ack = bob
        .request("accept_call", json!({ "call_id": &call_id }))
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    alice.expect_where("call_accepted", this_call).await;
    bob.expect_where("call_accepted", this_call).await;
    let ack = carol
        .request("accept_call", json!({ "call_id": &call_id }))
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    carol.expect_where("call_accepted", this_call).await;
    alice.expect_where("participant_joined", this_call).await;
    bob.expect_where("participant_joined", this_call).await;
    let ack = carol
        .request("leave_call", json!({ "call_id": &call_id }))
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    carol.expect_where("call_ended", this_call).await;
    alice.expect_where("participant_left", this_call).await;
    bob.expect_where("participant_left", this_call).await;
    let ack = alice
        .request("end_call", json!({ "call_id": &call_id }))
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    bob.expect_where("call_ended", this_call).await;

    let cycles = tokio::time::timeout(Duration::from_secs(120), churning)
        .await
        .expect("the churn finishes")
        .expect("churn task");
    assert_eq!(cycles, 400);
    // Presence still converges for everyone: Bob sees Alice free again, and so does an idle
    // socket that never did anything.
    let alice_id = alice.user_id.clone();
    bob.expect_presence(|u| presence_entry(u, &alice_id).is_some_and(|e| e["busy"] == false))
        .await;
    let mut last = idle.into_iter().last().unwrap();
    last.expect_presence(|u| {
        presence_entry(u, &alice_id).is_some_and(|e| e["busy"] == false) && u.len() == 1_003
    })
    .await;
}

/// A raw Socket.IO client on a socket with a tiny receive buffer that can stop reading: a
/// "throttled victim" whose server-side send queue fills up.
struct SlowClient {
    ws: tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>,
}

impl SlowClient {
    async fn connect(server: &TestServer, token: &str) -> SlowClient {
        let socket = TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let stream = socket.connect(server.addr).await.unwrap();
        let url = format!("ws://{}/socket.io/?EIO=4&transport=websocket", server.addr);
        let (mut ws, _) = tokio_tungstenite::client_async(url, stream)
            .await
            .expect("websocket");
        match ws.next().await {
            Some(Ok(Message::Text(t))) if t.starts_with('0') => {}
            other => panic!("expected Engine.IO open, got {other:?}"),
        }
        ws.send(Message::text(format!("40{}", json!({ "token": token }))))
            .await
            .unwrap();
        loop {
            match tokio::time::timeout(DEADLINE, ws.next()).await {
                Ok(Some(Ok(Message::Text(t)))) if t.starts_with("40") => break,
                Ok(Some(Ok(_))) => {}
                other => panic!("no CONNECT answer: {other:?}"),
            }
        }
        SlowClient { ws }
    }

    /// Reads until `event` arrives (`Ok(data)`) or the server closes the connection (`Err`),
    /// answering pings; panics if neither happens within `within`.
    async fn incoming_or_closed(&mut self, event: &str, within: Duration) -> Result<Value, ()> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let message = match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Err(_) => panic!("neither {event} nor a disconnect within {within:?}"),
                Ok(None) | Ok(Some(Err(_))) | Ok(Some(Ok(Message::Close(_)))) => return Err(()),
                Ok(Some(Ok(message))) => message,
            };
            let Message::Text(text) = message else {
                continue;
            };
            let text = text.as_str();
            if text == "2" {
                let _ = self.ws.send(Message::text("3")).await;
            } else if text.starts_with("41") || text == "1" {
                return Err(());
            } else if let Some(rest) = text.strip_prefix("42") {
                let array: Value = serde_json::from_str(rest).expect("event array");
                if array[0] == event {
                    return Ok(array[1].clone());
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_that_cannot_take_a_call_event_is_disconnected_not_left_behind() {
    let server = TestServer::start_with(|c| {
        c.limits.max_sockets_per_ip = 5_000;
        c.limits.ip_connect_burst = 10_000;
        c.limits.user_connect_burst = 1_000;
    })
    .await;
    // Long names make every presence list heavy.
    let _idle = connect_many(&server, "Someone with a forty character name #", 100, 10).await;
    let (bob_token, bob) = server.signaling.issue_session("Bob").unwrap();
    let mut slow_bob = SlowClient::connect(&server, &bob_token).await;
    // Bob stops reading while others come and go, then Alice calls him.
    let cycles = churn(&server, 300, 6).await.expect("churn task");
    assert_eq!(cycles, 300);
    let mut alice = server.user("Alice").await;
    let ack = alice
        .request(
            "initiate_call",
            json!({ "to": bob.id.as_str(), "kind": "video" }),
        )
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    let call_id = ack["call_id"].as_str().unwrap().to_owned();
    // Bob reads again: he either gets the call, or the server closed his connection (and
    // then the call must not wait for him). Never connected without the call.
    match slow_bob
        .incoming_or_closed("incoming_call", Duration::from_secs(10))
        .await
    {
        Ok(data) => assert_eq!(data["call_id"], call_id.as_str()),
        Err(()) => {
            alice
                .expect_where("call_ended", |d| d["call_id"] == call_id.as_str())
                .await;
        }
    }
}
