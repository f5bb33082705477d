//! Switchboard signaling: HTTP sign-in plus a small Socket.IO v4 client (docs/protocol.md §1–5).
//!
//! ## Why a hand-written Socket.IO client
//! The client speaks Engine.IO v4 over a WebSocket from the first byte (no long-polling
//! upgrade) and only text packets in the root namespace — exactly what the protocol needs.
//! Doing that over `tokio-tungstenite` (already in the build through socketioxide) keeps the
//! load tester light enough for thousands of clients per process, gives acknowledgements as
//! plain `async` calls with a timeout, and avoids `rust_socketio`'s callback-based acks and its
//! `native-tls`/OpenSSL dependency. What is *not* supported, on purpose: HTTP long-polling,
//! binary attachments, namespaces other than `/`, and automatic reconnection (a load tester
//! wants to *see* a dropped connection, not paper over it).
//!
//! ## Threading model
//! [`SignalingClient::connect`] spawns one driver task per connection that owns the WebSocket.
//! It answers Engine.IO pings, routes acknowledgements to the waiting emitter, and pushes every
//! server event into an unbounded channel. Unbounded on purpose: if the driver blocked on a slow
//! consumer it would stop answering pings and the server would drop the connection, which in a
//! load test would look like a server fault. The consumer must drain [`SignalingEvents`].
//!
//! ## Layout
//! This file has the client half: sign-in, ids, the connection and its driver, and one typed
//! emitter per client event. What the server sends, [`ServerEvent`] and its payload types,
//! is in `events` and re-exported here.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;

mod events;

pub use events::{EndReason, ErrorEvent, LeaveReason, PresenceUser, ServerEvent, TrackSource};

/// Errors of the signaling client. One enum for the client because every operation shares the
/// same failure modes (transport, protocol, refusal, timeout).
#[derive(Debug, thiserror::Error)]
pub enum SignalingError {
    /// The sign-in HTTP request could not be made or its body not read.
    #[error("sign-in request failed: {0}")]
    Http(#[from] reqwest::Error),
    /// The server answered the sign-in with a non-success status.
    #[error("sign-in refused with HTTP {status}: {body}")]
    SignInRefused {
        /// HTTP status code.
        status: u16,
        /// Response body, as sent (the protocol's `{"error": ...}` object).
        body: String,
    },
    /// The base URL is not `http://` or `https://`.
    #[error("invalid server url {0:?}: expected http:// or https://")]
    InvalidUrl(String),
    /// The WebSocket failed (connect, read or write).
    #[error("websocket: {0}")]
    WebSocket(#[from] Box<tokio_tungstenite::tungstenite::Error>),
    /// The server refused the Socket.IO connection (`connect_error`), e.g. `invalid_token`.
    #[error("socket.io connection refused: {0}")]
    ConnectRefused(String),
    /// The server sent something this client cannot make sense of.
    #[error("socket.io protocol violation: {0}")]
    Protocol(String),
    /// The server acknowledged an event with `{"ok": false, ...}`.
    #[error("server refused {event}: {code}: {message}")]
    Refused {
        /// The event that was refused.
        event: &'static str,
        /// The protocol's stable error code (docs/protocol.md §5).
        code: String,
        /// Human-readable detail.
        message: String,
    },
    /// No acknowledgement arrived in time.
    #[error("no acknowledgement for {event} within {timeout:?}")]
    AckTimeout {
        /// The event that was not acknowledged.
        event: &'static str,
        /// How long we waited.
        timeout: Duration,
    },
    /// The connection is closed; nothing more can be sent or acknowledged.
    #[error("signaling connection closed")]
    Closed,
    /// A step of the connection handshake did not finish in time.
    #[error("timed out waiting for {0}")]
    Timeout(&'static str),
}

impl From<tokio_tungstenite::tungstenite::Error> for SignalingError {
    fn from(e: tokio_tungstenite::tungstenite::Error) -> Self {
        SignalingError::WebSocket(Box::new(e))
    }
}

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub String);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl $name {
            /// The id as the server spells it.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
    };
}

string_id!(
    /// A user id chosen by the server at sign-in. It is also the `a=msid` stream id of every
    /// track that user publishes, which is how a subscriber maps tracks to people.
    UserId
);
string_id!(
    /// A call id chosen by the server in the `initiate_call` acknowledgement.
    CallId
);
string_id!(
    /// A published track, as `track_published` names it: also the `a=msid` track id of the
    /// `MediaStreamTrack` the subscriber connection gets for it (protocol §4).
    TrackId
);

/// A user as the server describes one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserInfo {
    /// Opaque user id.
    pub id: UserId,
    /// Display name.
    pub name: String,
}

/// The result of `POST /api/session`: who we are and the token that proves it.
#[derive(Clone, Debug, Deserialize)]
pub struct Identity {
    /// HS256 JWT to pass as Socket.IO `auth: {token}`.
    pub token: String,
    /// The signed-in user.
    pub user: UserInfo,
}

/// Voice or video call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CallKind {
    /// Audio only.
    Voice,
    /// Audio and video.
    Video,
}

/// Which of a participant's two peer connections a media event is about (protocol §6).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PeerTarget {
    /// The connection the client offers and sends its media on.
    Publisher,
    /// The connection the SFU offers and forwards the other participants' media on.
    Subscriber,
}

/// `RTCIceCandidateInit` as the protocol carries it. Our own type, not webrtc-rs's, so the
/// signaling layer has no WebRTC dependency and sends exactly the documented fields.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IceCandidateInit {
    /// The `candidate:` attribute line.
    pub candidate: String,
    /// The m-section's mid.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sdp_mid: Option<String>,
    /// The m-section's index.
    #[serde(rename = "sdpMLineIndex", skip_serializing_if = "Option::is_none")]
    pub sdp_mline_index: Option<u16>,
    /// ICE ufrag the candidate belongs to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username_fragment: Option<String>,
}

/// Signs in: `POST {base_url}/api/session {"name"}` (protocol §1.1).
pub async fn sign_in(
    http: &reqwest::Client,
    base_url: &str,
    name: &str,
) -> Result<Identity, SignalingError> {
    let base = base_url.trim_end_matches('/');
    if !(base.starts_with("http://") || base.starts_with("https://")) {
        return Err(SignalingError::InvalidUrl(base_url.to_owned()));
    }
    let resp = http
        .post(format!("{base}/api/session"))
        .json(&serde_json::json!({ "name": name }))
        .send()
        .await?;
    let status = resp.status();
    if !status.is_success() {
        let body = resp.text().await.unwrap_or_default();
        return Err(SignalingError::SignInRefused {
            status: status.as_u16(),
            body,
        });
    }
    Ok(resp.json::<Identity>().await?)
}

/// Tunables of a signaling connection.
#[derive(Clone, Debug)]
pub struct SignalingConfig {
    /// How long an emitted event may wait for its acknowledgement.
    pub ack_timeout: Duration,
    /// How long the WebSocket + Engine.IO + Socket.IO handshake may take.
    pub connect_timeout: Duration,
}

impl Default for SignalingConfig {
    fn default() -> Self {
        Self {
            ack_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(10),
        }
    }
}

/// The receiving half of a signaling connection: every server event, in order, ending with
/// [`ServerEvent::Disconnected`].
pub type SignalingEvents = mpsc::UnboundedReceiver<ServerEvent>;

enum Command {
    /// A complete Engine.IO text packet.
    Send(String),
    Close,
}

type PendingAcks = Mutex<HashMap<u64, oneshot::Sender<Value>>>;

struct Inner {
    cmd_tx: mpsc::UnboundedSender<Command>,
    // std Mutex: held only to insert/remove one entry, never across an await.
    pending: Arc<PendingAcks>,
    next_ack: AtomicU64,
    ack_timeout: Duration,
}

/// A connected Socket.IO client with typed emitters for every client→server event.
///
/// Cheap to clone (the clones share one connection), so peer-connection callbacks can send ICE
/// candidates while the owner places calls. The connection closes when [`close`](Self::close)
/// is called or the last clone is dropped.
#[derive(Clone)]
pub struct SignalingClient {
    inner: Arc<Inner>,
}

impl fmt::Debug for SignalingClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignalingClient").finish_non_exhaustive()
    }
}

/// `http(s)://host` → `ws(s)://host/socket.io/?EIO=4&transport=websocket`.
fn socket_url(base_url: &str) -> Result<String, SignalingError> {
    let base = base_url.trim_end_matches('/');
    let rest = if let Some(rest) = base.strip_prefix("http://") {
        format!("ws://{rest}")
    } else if let Some(rest) = base.strip_prefix("https://") {
        format!("wss://{rest}")
    } else {
        return Err(SignalingError::InvalidUrl(base_url.to_owned()));
    };
    Ok(format!("{rest}/socket.io/?EIO=4&transport=websocket"))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct OpenPacket {
    ping_interval: u64,
    ping_timeout: u64,
}

impl SignalingClient {
    /// Connects to `base_url` with `auth: {token}` and waits until the server accepted the
    /// socket (or refused it with `connect_error`, returned as [`SignalingError::ConnectRefused`]).
    pub async fn connect(
        base_url: &str,
        token: &str,
        config: SignalingConfig,
    ) -> Result<(SignalingClient, SignalingEvents), SignalingError> {
        let url = socket_url(base_url)?;
        let handshake = async {
            let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str()).await?;
            // Engine.IO open packet: `0{"sid", "pingInterval", "pingTimeout", ...}`.
            let open = next_text(&mut ws).await?;
            let open: OpenPacket = open
                .strip_prefix('0')
                .and_then(|json| serde_json::from_str(json).ok())
                .ok_or_else(|| {
                    SignalingError::Protocol(format!("expected engine.io open, got {open:?}"))
                })?;
            // Socket.IO CONNECT to `/` with the auth payload.
            let auth = serde_json::json!({ "token": token });
            ws.send(Message::text(format!("40{auth}"))).await?;
            loop {
                let text = next_text(&mut ws).await?;
                if text == "2" {
                    ws.send(Message::text("3")).await?;
                } else if text.starts_with("40") {
                    return Ok((ws, open));
                } else if let Some(err) = text.strip_prefix("44") {
                    #[derive(Deserialize)]
                    struct ConnectError {
                        message: String,
                    }
                    let message = serde_json::from_str::<ConnectError>(err)
                        .map(|e| e.message)
                        .unwrap_or_else(|_| err.to_owned());
                    return Err(SignalingError::ConnectRefused(message));
                } else {
                    return Err(SignalingError::Protocol(format!(
                        "unexpected packet during connect: {text:?}"
                    )));
                }
            }
        };
        let (ws, open) = tokio::time::timeout(config.connect_timeout, handshake)
            .await
            .map_err(|_| SignalingError::Timeout("socket.io connect"))??;

        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        let (event_tx, event_rx) = mpsc::unbounded_channel();
        let pending: Arc<PendingAcks> = Arc::default();
        // The server pings every `pingInterval` and expects a pong within `pingTimeout`; if it
        // has not pinged for both together, the connection is dead (Engine.IO v4 heartbeat).
        let silence_limit = Duration::from_millis(open.ping_interval + open.ping_timeout);
        tokio::spawn(drive(
            ws,
            cmd_rx,
            event_tx,
            Arc::clone(&pending),
            silence_limit,
        ));
        let client = SignalingClient {
            inner: Arc::new(Inner {
                cmd_tx,
                pending,
                next_ack: AtomicU64::new(0),
                ack_timeout: config.ack_timeout,
            }),
        };
        Ok((client, event_rx))
    }

    /// Closes the socket (Socket.IO DISCONNECT, then WebSocket close). Idempotent.
    pub fn close(&self) {
        let _ = self.inner.cmd_tx.send(Command::Close);
    }

    /// Emits `event` with `payload` and waits for its acknowledgement; returns the ack object
    /// on `{"ok": true}`, or [`SignalingError::Refused`] on `{"ok": false, "error"}`.
    pub async fn emit_with_ack(
        &self,
        event: &'static str,
        payload: Value,
    ) -> Result<Value, SignalingError> {
        let id = self.inner.next_ack.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.inner
            .pending
            .lock()
            .expect("pending-ack lock poisoned")
            .insert(id, tx);
        let packet = format!("42{id}{}", serde_json::json!([event, payload]));
        if self.inner.cmd_tx.send(Command::Send(packet)).is_err() {
            self.forget_ack(id);
            return Err(SignalingError::Closed);
        }
        let ack = match tokio::time::timeout(self.inner.ack_timeout, rx).await {
            Ok(Ok(ack)) => ack,
            Ok(Err(_)) => return Err(SignalingError::Closed),
            Err(_) => {
                self.forget_ack(id);
                return Err(SignalingError::AckTimeout {
                    event,
                    timeout: self.inner.ack_timeout,
                });
            }
        };
        if ack.get("ok").and_then(Value::as_bool) == Some(true) {
            return Ok(ack);
        }
        let code = ack
            .pointer("/error/code")
            .and_then(Value::as_str)
            .unwrap_or("malformed_ack")
            .to_owned();
        let message = ack
            .pointer("/error/message")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .unwrap_or_else(|| ack.to_string());
        Err(SignalingError::Refused {
            event,
            code,
            message,
        })
    }

    fn forget_ack(&self, id: u64) {
        self.inner
            .pending
            .lock()
            .expect("pending-ack lock poisoned")
            .remove(&id);
    }

    /// `initiate_call`: rings `to`; returns the server-chosen call id.
    pub async fn initiate_call(
        &self,
        to: &UserId,
        kind: CallKind,
    ) -> Result<CallId, SignalingError> {
        self.initiate(serde_json::json!(to), kind).await
    }

    /// `initiate_call` to several callees at once (a group call, protocol §7.1): each of them
    /// rings; the call turns active at the first accept.
    pub async fn initiate_group_call(
        &self,
        to: &[UserId],
        kind: CallKind,
    ) -> Result<CallId, SignalingError> {
        self.initiate(serde_json::json!(to), kind).await
    }

    async fn initiate(&self, to: Value, kind: CallKind) -> Result<CallId, SignalingError> {
        let ack = self
            .emit_with_ack(
                "initiate_call",
                serde_json::json!({ "to": to, "kind": kind }),
            )
            .await?;
        ack.get("call_id")
            .and_then(Value::as_str)
            .map(|id| CallId(id.to_owned()))
            .ok_or_else(|| {
                SignalingError::Protocol(format!("initiate_call ack without call_id: {ack}"))
            })
    }

    /// `invite_participant`: rings `user_id` into a call we are in (protocol §7.1).
    pub async fn invite_participant(
        &self,
        call_id: &CallId,
        user_id: &UserId,
    ) -> Result<(), SignalingError> {
        let payload = serde_json::json!({ "call_id": call_id, "user_id": user_id });
        self.emit_with_ack("invite_participant", payload)
            .await
            .map(drop)
    }

    /// `accept_call`: only the callee of a ringing call.
    pub async fn accept_call(&self, call_id: &CallId) -> Result<(), SignalingError> {
        self.emit_with_ack("accept_call", serde_json::json!({ "call_id": call_id }))
            .await
            .map(drop)
    }

    /// `reject_call`: only the callee of a ringing call.
    pub async fn reject_call(&self, call_id: &CallId) -> Result<(), SignalingError> {
        self.emit_with_ack("reject_call", serde_json::json!({ "call_id": call_id }))
            .await
            .map(drop)
    }

    /// `end_call`: any participant; `reason` defaults to hangup on the server. The same as
    /// [`leave_call`](Self::leave_call) (protocol §3).
    pub async fn end_call(
        &self,
        call_id: &CallId,
        reason: Option<EndReason>,
    ) -> Result<(), SignalingError> {
        self.depart("end_call", call_id, reason).await
    }

    /// `leave_call`: we leave; the call goes on for the others unless fewer than two remain
    /// (protocol §7.1). `reason` (`hangup` or `media_unavailable`) defaults to hangup.
    pub async fn leave_call(
        &self,
        call_id: &CallId,
        reason: Option<EndReason>,
    ) -> Result<(), SignalingError> {
        self.depart("leave_call", call_id, reason).await
    }

    async fn depart(
        &self,
        event: &'static str,
        call_id: &CallId,
        reason: Option<EndReason>,
    ) -> Result<(), SignalingError> {
        let mut payload = serde_json::json!({ "call_id": call_id });
        if let Some(reason) = reason {
            payload["reason"] = serde_json::to_value(reason).expect("enum serialises");
        }
        self.emit_with_ack(event, payload).await.map(drop)
    }

    /// `webrtc_offer` for our publisher connection; the answer arrives as
    /// [`ServerEvent::WebrtcAnswer`].
    pub async fn webrtc_offer(&self, call_id: &CallId, sdp: &str) -> Result<(), SignalingError> {
        let payload =
            serde_json::json!({ "call_id": call_id, "target": PeerTarget::Publisher, "sdp": sdp });
        self.emit_with_ack("webrtc_offer", payload).await.map(drop)
    }

    /// `webrtc_answer` to the server's last subscriber offer.
    pub async fn webrtc_answer(&self, call_id: &CallId, sdp: &str) -> Result<(), SignalingError> {
        let payload =
            serde_json::json!({ "call_id": call_id, "target": PeerTarget::Subscriber, "sdp": sdp });
        self.emit_with_ack("webrtc_answer", payload).await.map(drop)
    }

    /// `webrtc_ice_candidate` for one of our two connections (optional: the SFU is ICE-lite).
    pub async fn webrtc_ice_candidate(
        &self,
        call_id: &CallId,
        target: PeerTarget,
        candidate: &IceCandidateInit,
    ) -> Result<(), SignalingError> {
        let payload =
            serde_json::json!({ "call_id": call_id, "target": target, "candidate": candidate });
        self.emit_with_ack("webrtc_ice_candidate", payload)
            .await
            .map(drop)
    }

    /// `media_state`: tell the others whether we are sending audio/video.
    pub async fn media_state(
        &self,
        call_id: &CallId,
        audio: bool,
        video: bool,
    ) -> Result<(), SignalingError> {
        let payload = serde_json::json!({ "call_id": call_id, "audio": audio, "video": video });
        self.emit_with_ack("media_state", payload).await.map(drop)
    }
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Next text frame, skipping WebSocket control frames.
async fn next_text(ws: &mut Ws) -> Result<String, SignalingError> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) => return Ok(t.as_str().to_owned()),
            Some(Ok(Message::Close(frame))) => {
                return Err(SignalingError::Protocol(format!(
                    "websocket closed during handshake: {frame:?}"
                )))
            }
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(e.into()),
            None => return Err(SignalingError::Closed),
        }
    }
}

/// The per-connection driver: owns the WebSocket until either side closes it.
async fn drive(
    mut ws: Ws,
    mut cmd_rx: mpsc::UnboundedReceiver<Command>,
    events: mpsc::UnboundedSender<ServerEvent>,
    pending: Arc<PendingAcks>,
    silence_limit: Duration,
) {
    let mut deadline = tokio::time::Instant::now() + silence_limit;
    let reason: String = loop {
        tokio::select! {
            cmd = cmd_rx.recv() => match cmd {
                Some(Command::Send(packet)) => {
                    if let Err(e) = ws.send(Message::text(packet)).await {
                        break format!("websocket write failed: {e}");
                    }
                }
                Some(Command::Close) | None => {
                    let _ = ws.send(Message::text("41")).await;
                    let _ = ws.close(None).await;
                    break "closed by client".to_owned();
                }
            },
            msg = ws.next() => match msg {
                Some(Ok(Message::Text(text))) => {
                    match handle_packet(text.as_str(), &events, &pending) {
                        Incoming::Nothing => {}
                        Incoming::Ping => {
                            deadline = tokio::time::Instant::now() + silence_limit;
                            if let Err(e) = ws.send(Message::text("3")).await {
                                break format!("websocket write failed: {e}");
                            }
                        }
                        Incoming::Closed(reason) => break reason,
                    }
                }
                Some(Ok(Message::Close(frame))) => break format!("closed by server: {frame:?}"),
                Some(Ok(_)) => {}
                Some(Err(e)) => break format!("websocket read failed: {e}"),
                None => break "websocket ended".to_owned(),
            },
            _ = tokio::time::sleep_until(deadline) => {
                break format!("no ping from server for {silence_limit:?}");
            }
        }
    };
    tracing::debug!(%reason, "signaling connection ended");
    // Dropping the senders fails every outstanding ack with `Closed`.
    pending.lock().expect("pending-ack lock poisoned").clear();
    let _ = events.send(ServerEvent::Disconnected { reason });
}

enum Incoming {
    Nothing,
    Ping,
    Closed(String),
}

/// Handles one Engine.IO text packet from the server.
fn handle_packet(
    text: &str,
    events: &mpsc::UnboundedSender<ServerEvent>,
    pending: &PendingAcks,
) -> Incoming {
    let mut chars = text.chars();
    match chars.next() {
        Some('2') => Incoming::Ping,
        Some('1') => Incoming::Closed("engine.io close from server".to_owned()),
        Some('4') => {
            let sio = chars.as_str();
            match sio.as_bytes().first() {
                Some(b'2') => {
                    match parse_event(&sio[1..]) {
                        Ok((name, payload)) => {
                            let _ = events.send(ServerEvent::parse(&name, payload));
                        }
                        Err(e) => {
                            tracing::warn!(packet = %text, error = %e, "malformed socket.io event")
                        }
                    }
                    Incoming::Nothing
                }
                Some(b'3') => {
                    match parse_ack(&sio[1..]) {
                        Some((id, payload)) => {
                            let waiter = pending
                                .lock()
                                .expect("pending-ack lock poisoned")
                                .remove(&id);
                            if let Some(waiter) = waiter {
                                let _ = waiter.send(payload);
                            }
                        }
                        None => tracing::warn!(packet = %text, "malformed socket.io ack"),
                    }
                    Incoming::Nothing
                }
                Some(b'1') => Incoming::Closed("socket.io disconnect from server".to_owned()),
                _ => Incoming::Nothing,
            }
        }
        // 6 = noop, 0 = a second open, 3 = pong: nothing to do.
        _ => Incoming::Nothing,
    }
}

/// Splits an optional leading ack id (digits) from the JSON array that follows.
fn split_id(s: &str) -> (Option<u64>, &str) {
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    (s[..digits].parse().ok(), &s[digits..])
}

/// `[<id>]["name", payload]` → (name, payload). Server events carry no ack id in this protocol,
/// but one is tolerated.
fn parse_event(s: &str) -> Result<(String, Value), String> {
    let (_, json) = split_id(s);
    let arr: Vec<Value> = serde_json::from_str(json).map_err(|e| e.to_string())?;
    let mut it = arr.into_iter();
    let name = match it.next() {
        Some(Value::String(name)) => name,
        other => return Err(format!("event name is not a string: {other:?}")),
    };
    Ok((name, it.next().unwrap_or(Value::Null)))
}

/// `<id>[payload]` → (id, payload).
fn parse_ack(s: &str) -> Option<(u64, Value)> {
    let (id, json) = split_id(s);
    let arr: Vec<Value> = serde_json::from_str(json).ok()?;
    Some((id?, arr.into_iter().next().unwrap_or(Value::Null)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_url_maps_schemes() {
        assert_eq!(
            socket_url("http://127.0.0.1:8080/").unwrap(),
            "ws://127.0.0.1:8080/socket.io/?EIO=4&transport=websocket"
        );
        assert_eq!(
            socket_url("https://sb.example").unwrap(),
            "wss://sb.example/socket.io/?EIO=4&transport=websocket"
        );
        assert!(socket_url("ftp://x").is_err());
    }

    #[test]
    fn parses_events_and_acks() {
        let (name, payload) =
            parse_event(r#"["call_ended",{"call_id":"c1","reason":"hangup"}]"#).unwrap();
        assert_eq!(
            ServerEvent::parse(&name, payload),
            ServerEvent::CallEnded {
                call_id: CallId("c1".into()),
                reason: EndReason::Hangup,
                by: None
            }
        );
        let (id, ack) = parse_ack(r#"12[{"ok":true,"call_id":"x"}]"#).unwrap();
        assert_eq!(id, 12);
        assert_eq!(ack["call_id"], "x");
        assert!(parse_ack(r#"[{"ok":true}]"#).is_none());
    }

    #[test]
    fn candidate_serialises_protocol_fields_only() {
        let c = IceCandidateInit {
            candidate: "candidate:1 1 udp 1 127.0.0.1 5000 typ host".into(),
            sdp_mid: Some("0".into()),
            sdp_mline_index: Some(0),
            username_fragment: None,
        };
        assert_eq!(
            serde_json::to_value(&c).unwrap(),
            serde_json::json!({"candidate": c.candidate, "sdpMid": "0", "sdpMLineIndex": 0})
        );
    }
}
