//! Test support: a real signaling server on 127.0.0.1:0 with a real SFU, and a minimal but
//! genuine Socket.IO v4 client (Engine.IO v4 over WebSocket), written here so tests can also
//! send raw, malformed packets.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use switchboard_sfu::{Sfu, SfuConfig};
use switchboard_signaling::{Signaling, SignalingConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;

/// How long any expected event may take.
pub const DEADLINE: Duration = Duration::from_secs(5);

pub const SECRET: &[u8] = b"integration-test-secret-0123456789";

pub struct TestServer {
    pub addr: SocketAddr,
    pub signaling: Signaling,
    pub sfu: Sfu,
}

impl TestServer {
    pub async fn start() -> TestServer {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(tweak: impl FnOnce(&mut SignalingConfig)) -> TestServer {
        Self::start_with_sfu(tweak, |_| {}).await
    }

    pub async fn start_with_sfu(
        tweak: impl FnOnce(&mut SignalingConfig),
        tweak_sfu: impl FnOnce(&mut SfuConfig),
    ) -> TestServer {
        let mut sfu_config = SfuConfig {
            udp_bind: "127.0.0.1:0".parse().unwrap(),
            ..SfuConfig::default()
        };
        tweak_sfu(&mut sfu_config);
        let (sfu, events) = Sfu::start(sfu_config).await.expect("SFU starts");
        let mut config = SignalingConfig::with_secret(SECRET);
        tweak(&mut config);
        let (layer, signaling) = Signaling::new(config, sfu.clone(), events).expect("valid config");
        let app = signaling.router().layer(layer);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        TestServer {
            addr,
            signaling,
            sfu,
        }
    }

    /// Like [`TestServer::start_with`], but served with connect info: the server sees each
    /// client's address (127.0.0.1 here), as the real binary does, so per-address limits apply.
    #[allow(dead_code)]
    pub async fn start_with_addresses(tweak: impl FnOnce(&mut SignalingConfig)) -> TestServer {
        let (sfu, events) = Sfu::start(SfuConfig {
            udp_bind: "127.0.0.1:0".parse().unwrap(),
            ..SfuConfig::default()
        })
        .await
        .expect("SFU starts");
        let mut config = SignalingConfig::with_secret(SECRET);
        tweak(&mut config);
        let (layer, signaling) = Signaling::new(config, sfu.clone(), events).expect("valid config");
        let app = signaling.router().layer(layer);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .await
            .unwrap();
        });
        TestServer {
            addr,
            signaling,
            sfu,
        }
    }

    /// `POST /api/session` over a plain HTTP/1.1 connection: (status, JSON body).
    pub async fn post_session(&self, body: &str) -> (u16, Value) {
        let mut stream = TcpStream::connect(self.addr).await.unwrap();
        let request = format!(
            "POST /api/session HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
            self.addr,
            body.len(),
            body
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = String::new();
        tokio::time::timeout(DEADLINE, stream.read_to_string(&mut response))
            .await
            .expect("HTTP response in time")
            .unwrap();
        let status: u16 = response[9..12].parse().unwrap();
        let body = response
            .split_once("\r\n\r\n")
            .map(|(_, b)| b)
            .unwrap_or("");
        (status, serde_json::from_str(body).unwrap_or(Value::Null))
    }

    /// Signs in `name` through the HTTP endpoint: (token, user id).
    pub async fn session(&self, name: &str) -> (String, String) {
        let (status, body) = self
            .post_session(&json!({ "name": name }).to_string())
            .await;
        assert_eq!(status, 200, "{body}");
        (
            body["token"].as_str().unwrap().to_owned(),
            body["user"]["id"].as_str().unwrap().to_owned(),
        )
    }

    /// Signs in and connects: a ready client.
    pub async fn user(&self, name: &str) -> Client {
        let (token, id) = self.session(name).await;
        let mut client = Client::connect(self.addr, Some(json!({ "token": &token })))
            .await
            .expect("connects");
        client.user_id = id;
        client.token = token;
        client.name = name.to_owned();
        client
    }
}

/// One received event.
#[derive(Debug, Clone)]
pub struct Received {
    pub event: String,
    pub data: Value,
}

pub struct Client {
    pub user_id: String,
    pub token: String,
    pub name: String,
    out: mpsc::UnboundedSender<Message>,
    inbox: mpsc::UnboundedReceiver<Received>,
    buffered: VecDeque<Received>,
    acks: Arc<Mutex<HashMap<u64, oneshot::Sender<Value>>>>,
    next_ack: u64,
    /// Who is online as far as this client was told, by user id (`None` before the snapshot).
    presence: Option<BTreeMap<String, Value>>,
}

impl Client {
    /// Connects to the root namespace. `Err` carries the `connect_error` message.
    pub async fn connect(addr: SocketAddr, auth: Option<Value>) -> Result<Client, String> {
        let url = format!("ws://{addr}/socket.io/?EIO=4&transport=websocket");
        let (ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("websocket");
        let (mut sink, mut stream) = ws.split();

        // Engine.IO open packet.
        match tokio::time::timeout(DEADLINE, stream.next()).await {
            Ok(Some(Ok(Message::Text(t)))) if t.starts_with('0') => {}
            other => panic!("expected Engine.IO open, got {other:?}"),
        }
        let connect = match &auth {
            Some(auth) => format!("40{auth}"),
            None => "40".to_owned(),
        };
        sink.send(Message::text(connect)).await.unwrap();

        let (out, mut out_rx) = mpsc::unbounded_channel::<Message>();
        let (inbox_tx, inbox) = mpsc::unbounded_channel();
        let (connected_tx, connected_rx) = oneshot::channel::<Result<(), String>>();
        let acks: Arc<Mutex<HashMap<u64, oneshot::Sender<Value>>>> = Arc::default();

        tokio::spawn(async move {
            while let Some(message) = out_rx.recv().await {
                let close = matches!(message, Message::Close(_));
                if sink.send(message).await.is_err() || close {
                    break;
                }
            }
        });
        let reader_out = out.clone();
        let reader_acks = Arc::clone(&acks);
        tokio::spawn(async move {
            let mut connected_tx = Some(connected_tx);
            while let Some(Ok(message)) = stream.next().await {
                let Message::Text(text) = message else {
                    continue;
                };
                let text = text.as_str();
                if text == "2" {
                    let _ = reader_out.send(Message::text("3"));
                } else if let Some(rest) = text.strip_prefix("40") {
                    let _ = rest;
                    if let Some(tx) = connected_tx.take() {
                        let _ = tx.send(Ok(()));
                    }
                } else if let Some(rest) = text.strip_prefix("44") {
                    let body: Value = serde_json::from_str(rest).unwrap_or(Value::Null);
                    let message = body["message"].as_str().unwrap_or("").to_owned();
                    if let Some(tx) = connected_tx.take() {
                        let _ = tx.send(Err(message));
                    }
                } else if let Some(rest) = text.strip_prefix("42") {
                    let array: Value = serde_json::from_str(rest).expect("event array");
                    let event = array[0].as_str().unwrap_or("").to_owned();
                    let data = array.get(1).cloned().unwrap_or(Value::Null);
                    let _ = inbox_tx.send(Received { event, data });
                } else if let Some(rest) = text.strip_prefix("43") {
                    let split = rest.find('[').expect("ack array");
                    let id: u64 = rest[..split].parse().expect("ack id");
                    let array: Value = serde_json::from_str(&rest[split..]).expect("ack json");
                    let data = array.get(0).cloned().unwrap_or(Value::Null);
                    if let Some(tx) = reader_acks.lock().unwrap().remove(&id) {
                        let _ = tx.send(data);
                    }
                } else if text.starts_with("41") {
                    break;
                }
            }
        });

        match tokio::time::timeout(DEADLINE, connected_rx).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(message))) => return Err(message),
            other => panic!("no CONNECT answer: {other:?}"),
        }
        Ok(Client {
            user_id: String::new(),
            token: String::new(),
            name: String::new(),
            out,
            inbox,
            buffered: VecDeque::new(),
            acks,
            next_ack: 1,
            presence: None,
        })
    }

    /// Sends a raw Socket.IO packet (e.g. `42["accept_call",5]`).
    pub fn send_raw(&self, packet: impl Into<String>) {
        let _ = self.out.send(Message::text(packet.into()));
    }

    /// Emits an event without acknowledgement.
    pub fn emit(&self, event: &str, data: Value) {
        self.send_raw(format!("42{}", json!([event, data])));
    }

    /// Emits an event with an acknowledgement and waits for it.
    pub async fn request(&mut self, event: &str, data: Value) -> Value {
        self.request_raw(&json!([event, data]).to_string()).await
    }

    /// Like [`request`](Self::request) with a raw JSON array (`["event", ...args]`).
    pub async fn request_raw(&mut self, array: &str) -> Value {
        let id = self.next_ack;
        self.next_ack += 1;
        let (tx, rx) = oneshot::channel();
        self.acks.lock().unwrap().insert(id, tx);
        self.send_raw(format!("42{id}{array}"));
        tokio::time::timeout(DEADLINE, rx)
            .await
            .unwrap_or_else(|_| panic!("no ack for {array:.80}"))
            .expect("ack channel")
    }

    /// Waits for the next `event` that satisfies `matches`, keeping others for later.
    pub async fn expect_where(&mut self, event: &str, matches: impl Fn(&Value) -> bool) -> Value {
        if let Some(i) = self
            .buffered
            .iter()
            .position(|r| r.event == event && matches(&r.data))
        {
            return self.buffered.remove(i).unwrap().data;
        }
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            match tokio::time::timeout_at(deadline, self.inbox.recv()).await {
                Ok(Some(r)) if r.event == event && matches(&r.data) => return r.data,
                Ok(Some(r)) => self.buffered.push_back(r),
                Ok(None) => panic!("{}: connection closed while waiting for {event}", self.name),
                Err(_) => panic!(
                    "{}: no matching {event} within {DEADLINE:?}; got {:?}",
                    self.name, self.buffered
                ),
            }
        }
    }

    pub async fn expect(&mut self, event: &str) -> Value {
        self.expect_where(event, |_| true).await
    }

    /// Waits for an `error` event with `code`.
    pub async fn expect_error(&mut self, code: &str) -> Value {
        self.expect_where("error", |d| d["code"] == code).await
    }

    /// Waits until the presence list this client has been told (the `presence` snapshot it
    /// got at connect, updated by every `presence_update` since) satisfies `check`.
    pub async fn expect_presence(&mut self, check: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            let users: Vec<Value> = self
                .presence
                .iter()
                .flat_map(|p| p.values().cloned())
                .collect();
            if self.presence.is_some() && check(&users) {
                return users;
            }
            let next = match self
                .buffered
                .iter()
                .position(|r| r.event == "presence" || r.event == "presence_update")
            {
                Some(i) => self.buffered.remove(i).unwrap(),
                None => loop {
                    match tokio::time::timeout_at(deadline, self.inbox.recv()).await {
                        Ok(Some(r)) if r.event == "presence" || r.event == "presence_update" => {
                            break r
                        }
                        Ok(Some(r)) => self.buffered.push_back(r),
                        Ok(None) => panic!(
                            "{}: connection closed while waiting for presence",
                            self.name
                        ),
                        Err(_) => panic!(
                            "{}: presence never matched within {DEADLINE:?}; last: {users:?}",
                            self.name
                        ),
                    }
                },
            };
            self.apply_presence(&next);
        }
    }

    /// Applies a `presence` snapshot or a `presence_update` delta to this client's view.
    fn apply_presence(&mut self, r: &Received) {
        if r.event == "presence" {
            self.presence = Some(BTreeMap::new());
        }
        let Some(presence) = self.presence.as_mut() else {
            return;
        };
        for user in r.data["users"].as_array().into_iter().flatten() {
            presence.insert(user["id"].as_str().unwrap_or("").to_owned(), user.clone());
        }
        for id in r.data["offline"].as_array().into_iter().flatten() {
            presence.remove(id.as_str().unwrap_or(""));
        }
    }

    /// True if an event named `event` was received and not consumed yet (drains the inbox).
    pub fn has_pending(&mut self, event: &str) -> bool {
        while let Ok(r) = self.inbox.try_recv() {
            self.buffered.push_back(r);
        }
        self.buffered.iter().any(|r| r.event == event)
    }

    /// Waits until the server closes the connection, keeping events received meanwhile.
    pub async fn expect_closed(&mut self) {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            match tokio::time::timeout_at(deadline, self.inbox.recv()).await {
                Ok(Some(r)) => self.buffered.push_back(r),
                Ok(None) => return,
                Err(_) => panic!("{}: still connected after {DEADLINE:?}", self.name),
            }
        }
    }

    /// Closes the WebSocket (an abrupt transport close, like a closed tab).
    pub fn close(&self) {
        let _ = self.out.send(Message::Close(None));
    }
}

/// The entry of `user_id` in a presence list.
pub fn presence_entry<'a>(users: &'a [Value], user_id: &str) -> Option<&'a Value> {
    users.iter().find(|u| u["id"] == user_id)
}

/// Asserts a failed ack with `code`.
pub fn assert_refused(ack: &Value, code: &str) {
    assert_eq!(ack["ok"], false, "expected {code}, got {ack}");
    assert_eq!(ack["error"]["code"], code, "{ack}");
    assert!(
        ack["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{ack}"
    );
}

/// Sets up Alice calling Bob, accepted: (alice, bob, call_id).
pub async fn active_call(server: &TestServer) -> (Client, Client, String) {
    let mut alice = server.user("Alice").await;
    let mut bob = server.user("Bob").await;
    let call_id = ring(&mut alice, &mut bob).await;
    let ack = bob
        .request("accept_call", json!({ "call_id": call_id }))
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    alice.expect("call_accepted").await;
    bob.expect("call_accepted").await;
    (alice, bob, call_id)
}

/// `caller` calls `callee` (video) and both see it ringing: the call id.
pub async fn ring(caller: &mut Client, callee: &mut Client) -> String {
    let ack = caller
        .request(
            "initiate_call",
            json!({ "to": callee.user_id, "kind": "video" }),
        )
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    let call_id = ack["call_id"].as_str().unwrap().to_owned();
    caller
        .expect_where("call_ringing", |d| d["call_id"] == call_id.as_str())
        .await;
    callee
        .expect_where("incoming_call", |d| d["call_id"] == call_id.as_str())
        .await;
    call_id
}
