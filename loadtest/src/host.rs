//! Rooms of any shape on Switchboard's SFU, without signaling.
//!
//! Through signaling a room is one group call: at most the server's
//! `--max-participants-per-call` members (16 by default), each with its own Socket.IO
//! connection. Fan-outs larger than that (one publisher, hundreds of subscribers) and churn
//! measurements therefore drive the `switchboard-sfu` API (`join`, `publish`,
//! `subscriber_answer`, `leave`) directly — the very calls signaling makes — either in process
//! ([`InProcessSfu`], for tests) or in a separate `sfu-host` process ([`SfuHostProcess`]) so the
//! server's CPU and memory are measured apart from the load generator's.
//!
//! ## The `sfu-host` wire format
//! One JSON object per line. Requests on its stdin: `{"id": n, "op": "join", "room", "participant",
//! "label"}`, `{"id", "op": "publish", "participant", "sdp"}`, `{"id", "op": "answer",
//! "participant", "sdp"}`, `{"id", "op": "leave", "participant"}`, `{"id", "op": "stats"}`.
//! Replies on its stdout: `{"id", "ok": true, "sdp"?, "stats"?}` or `{"id", "ok": false, "error"}`;
//! events: `{"event": "subscriber_offer", "participant", "sdp"}` and `{"event": "failed",
//! "participant", "reason"}`. The first line is `{"ready": true, "media_addr", "pid"}`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use switchboard_sfu::{ParticipantId, RoomId, Sfu, SfuConfig, SfuEvent};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::{mpsc, oneshot};

/// What the SFU tells one participant.
#[derive(Debug, Clone)]
pub enum HostEvent {
    /// Answer this with [`RoomServer::subscriber_answer`].
    SubscriberOffer(String),
    /// The SFU dropped the participant.
    Failed(String),
}

/// Room operations, as signaling performs them on the SFU.
#[async_trait::async_trait]
pub trait RoomServer: Send + Sync {
    /// Adds `participant` to `room`; its events arrive on the returned channel.
    async fn join(
        &self,
        room: &str,
        participant: &str,
        label: &str,
    ) -> Result<mpsc::UnboundedReceiver<HostEvent>, String>;
    /// Applies a publisher offer; returns the answer.
    async fn publish(&self, participant: &str, offer: String) -> Result<String, String>;
    /// Applies a subscriber answer.
    async fn subscriber_answer(&self, participant: &str, answer: String) -> Result<(), String>;
    /// Removes the participant.
    async fn leave(&self, participant: &str) -> Result<(), String>;
    /// The server's process id, when it is a separate process.
    fn pid(&self) -> Option<u32>;
    /// The SFU's own counters (`SfuStats` as JSON).
    async fn stats(&self) -> Option<serde_json::Value>;
}

/// Routes SFU events to the participant they are for.
#[derive(Default)]
struct Router {
    // std Mutex: insert/remove/lookup only, never held across an await.
    routes: Mutex<HashMap<String, mpsc::UnboundedSender<HostEvent>>>,
}

impl Router {
    fn add(&self, participant: &str) -> mpsc::UnboundedReceiver<HostEvent> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.routes
            .lock()
            .expect("router lock poisoned")
            .insert(participant.to_owned(), tx);
        rx
    }

    fn remove(&self, participant: &str) {
        self.routes
            .lock()
            .expect("router lock poisoned")
            .remove(participant);
    }

    fn deliver(&self, participant: &str, event: HostEvent) {
        if let Some(tx) = self
            .routes
            .lock()
            .expect("router lock poisoned")
            .get(participant)
        {
            let _ = tx.send(event);
        }
    }
}

/// The SFU configuration the load tester uses: loopback, any port, rooms up to 1000.
pub fn bench_sfu_config() -> SfuConfig {
    SfuConfig {
        udp_bind: "127.0.0.1:0".parse().expect("valid address"),
        max_participants_per_room: 1_000,
        ..SfuConfig::default()
    }
}

/// The SFU running inside this process.
pub struct InProcessSfu {
    sfu: Sfu,
    router: Arc<Router>,
}

impl InProcessSfu {
    /// Starts an SFU with `config`.
    pub async fn start(config: SfuConfig) -> Result<InProcessSfu, String> {
        let (sfu, mut events) = Sfu::start(config).await.map_err(|e| e.to_string())?;
        let router = Arc::new(Router::default());
        let r = Arc::clone(&router);
        tokio::spawn(async move {
            while let Some(event) = events.recv().await {
                match event {
                    SfuEvent::SubscriberOffer { participant, sdp } => {
                        r.deliver(participant.as_str(), HostEvent::SubscriberOffer(sdp))
                    }
                    SfuEvent::ParticipantFailed {
                        participant,
                        reason,
                    } => r.deliver(participant.as_str(), HostEvent::Failed(reason)),
                    _ => {}
                }
            }
        });
        Ok(InProcessSfu { sfu, router })
    }

    /// The SFU handle.
    pub fn sfu(&self) -> &Sfu {
        &self.sfu
    }
}

#[async_trait::async_trait]
impl RoomServer for InProcessSfu {
    async fn join(
        &self,
        room: &str,
        participant: &str,
        label: &str,
    ) -> Result<mpsc::UnboundedReceiver<HostEvent>, String> {
        let rx = self.router.add(participant);
        if let Err(e) = self
            .sfu
            .join(RoomId::new(room), ParticipantId::new(participant), label)
            .await
        {
            self.router.remove(participant);
            return Err(e.to_string());
        }
        Ok(rx)
    }

    async fn publish(&self, participant: &str, offer: String) -> Result<String, String> {
        self.sfu
            .publish(ParticipantId::new(participant), offer)
            .await
            .map_err(|e| e.to_string())
    }

    async fn subscriber_answer(&self, participant: &str, answer: String) -> Result<(), String> {
        self.sfu
            .subscriber_answer(ParticipantId::new(participant), answer)
            .await
            .map_err(|e| e.to_string())
    }

    async fn leave(&self, participant: &str) -> Result<(), String> {
        self.router.remove(participant);
        self.sfu
            .leave(ParticipantId::new(participant))
            .await
            .map_err(|e| e.to_string())
    }

    fn pid(&self) -> Option<u32> {
        None
    }

    async fn stats(&self) -> Option<serde_json::Value> {
        Some(stats_json(&self.sfu.stats().await))
    }
}

/// `SfuStats` as JSON.
pub fn stats_json(s: &switchboard_sfu::SfuStats) -> serde_json::Value {
    serde_json::json!({
        "rooms": s.rooms,
        "participants": s.participants,
        "publications": s.publications,
        "subscriptions": s.subscriptions,
        "rtp_packets_received": s.rtp_packets_received,
        "rtp_packets_forwarded": s.rtp_packets_forwarded,
    })
}

/// A request line to `sfu-host`.
#[derive(Debug, Serialize, Deserialize)]
pub struct HostRequest {
    /// Correlates the reply.
    pub id: u64,
    /// `join`, `publish`, `answer`, `leave` or `stats`.
    pub op: String,
    /// For `join`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room: Option<String>,
    /// For everything but `stats`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub participant: Option<String>,
    /// For `join`: the stream label (msid) its tracks get.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// For `publish` and `answer`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sdp: Option<String>,
}

/// A reply or event line from `sfu-host`.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct HostLine {
    /// Reply: the request id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<u64>,
    /// Reply: success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ok: Option<bool>,
    /// Reply: why it failed. Event `failed`: the reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Reply to `publish`: the answer. Event `subscriber_offer`: the offer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sdp: Option<String>,
    /// Reply to `stats`: the SFU's counters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stats: Option<serde_json::Value>,
    /// Event name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    /// Event: whom it is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub participant: Option<String>,
    /// First line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready: Option<bool>,
    /// First line: the SFU's media address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_addr: Option<String>,
    /// First line: the host's process id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
}

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<HostLine>>>>;

/// The SFU in a separate `sfu-host` process (killed when this is dropped).
pub struct SfuHostProcess {
    child: Mutex<Option<tokio::process::Child>>,
    pid: u32,
    requests: mpsc::UnboundedSender<String>,
    pending: Pending,
    router: Arc<Router>,
    next_id: AtomicU64,
}

impl SfuHostProcess {
    /// The `sfu-host` binary next to the running executable (cargo puts both in one folder).
    pub fn default_binary() -> PathBuf {
        let exe = std::env::current_exe().unwrap_or_default();
        let dir = exe.parent().map(PathBuf::from).unwrap_or_default();
        // Integration tests run from target/<profile>/deps.
        let here = dir.join("sfu-host");
        if here.exists() {
            here
        } else {
            dir.parent().unwrap_or(&dir).join("sfu-host")
        }
    }

    /// Spawns `binary` and waits for its ready line.
    pub async fn spawn(binary: &std::path::Path) -> Result<SfuHostProcess, String> {
        let mut child = tokio::process::Command::new(binary)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("spawning {}: {e}", binary.display()))?;
        let stdout = child.stdout.take().expect("piped stdout");
        let mut stdin = child.stdin.take().expect("piped stdin");
        let mut lines = BufReader::new(stdout).lines();
        let ready = lines
            .next_line()
            .await
            .map_err(|e| e.to_string())?
            .ok_or("sfu-host exited before it was ready")?;
        let ready: HostLine = serde_json::from_str(&ready).map_err(|e| e.to_string())?;
        let pid = ready.pid.ok_or("sfu-host ready line without pid")?;
        let (requests, mut request_rx) = mpsc::unbounded_channel::<String>();
        tokio::spawn(async move {
            while let Some(mut line) = request_rx.recv().await {
                line.push('\n');
                if stdin.write_all(line.as_bytes()).await.is_err() {
                    break;
                }
            }
        });
        let pending: Pending = Arc::default();
        let router = Arc::new(Router::default());
        let (p, r) = (Arc::clone(&pending), Arc::clone(&router));
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                let Ok(line) = serde_json::from_str::<HostLine>(&line) else {
                    tracing::warn!(%line, "unparsable sfu-host line");
                    continue;
                };
                if let Some(id) = line.id {
                    if let Some(tx) = p.lock().expect("pending lock poisoned").remove(&id) {
                        let _ = tx.send(line);
                    }
                    continue;
                }
                let who = line.participant.clone().unwrap_or_default();
                match line.event.as_deref() {
                    Some("subscriber_offer") => r.deliver(
                        &who,
                        HostEvent::SubscriberOffer(line.sdp.unwrap_or_default()),
                    ),
                    Some("failed") => {
                        r.deliver(&who, HostEvent::Failed(line.error.unwrap_or_default()))
                    }
                    _ => {}
                }
            }
        });
        Ok(SfuHostProcess {
            child: Mutex::new(Some(child)),
            pid,
            requests,
            pending,
            router,
            next_id: AtomicU64::new(1),
        })
    }

    async fn call(&self, mut request: HostRequest) -> Result<HostLine, String> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        request.id = id;
        let (tx, rx) = oneshot::channel();
        self.pending
            .lock()
            .expect("pending lock poisoned")
            .insert(id, tx);
        let line = serde_json::to_string(&request).map_err(|e| e.to_string())?;
        self.requests
            .send(line)
            .map_err(|_| "sfu-host is gone".to_owned())?;
        let reply = tokio::time::timeout(std::time::Duration::from_secs(30), rx)
            .await
            .map_err(|_| format!("sfu-host did not answer {} in 30 s", request.op))?
            .map_err(|_| "sfu-host is gone".to_owned())?;
        if reply.ok == Some(true) {
            Ok(reply)
        } else {
            Err(reply.error.unwrap_or_else(|| "sfu-host refused".into()))
        }
    }

    /// Kills the host process.
    pub async fn kill(&self) {
        let child = self.child.lock().expect("child lock poisoned").take();
        if let Some(mut child) = child {
            let _ = child.kill().await;
        }
    }
}

fn request(op: &str, participant: Option<&str>) -> HostRequest {
    HostRequest {
        id: 0,
        op: op.into(),
        room: None,
        participant: participant.map(str::to_owned),
        label: None,
        sdp: None,
    }
}

#[async_trait::async_trait]
impl RoomServer for SfuHostProcess {
    async fn join(
        &self,
        room: &str,
        participant: &str,
        label: &str,
    ) -> Result<mpsc::UnboundedReceiver<HostEvent>, String> {
        let rx = self.router.add(participant);
        let mut req = request("join", Some(participant));
        req.room = Some(room.into());
        req.label = Some(label.into());
        if let Err(e) = self.call(req).await {
            self.router.remove(participant);
            return Err(e);
        }
        Ok(rx)
    }

    async fn publish(&self, participant: &str, offer: String) -> Result<String, String> {
        let mut req = request("publish", Some(participant));
        req.sdp = Some(offer);
        self.call(req)
            .await?
            .sdp
            .ok_or_else(|| "publish reply without sdp".into())
    }

    async fn subscriber_answer(&self, participant: &str, answer: String) -> Result<(), String> {
        let mut req = request("answer", Some(participant));
        req.sdp = Some(answer);
        self.call(req).await.map(drop)
    }

    async fn leave(&self, participant: &str) -> Result<(), String> {
        self.router.remove(participant);
        self.call(request("leave", Some(participant)))
            .await
            .map(drop)
    }

    fn pid(&self) -> Option<u32> {
        Some(self.pid)
    }

    async fn stats(&self) -> Option<serde_json::Value> {
        self.call(request("stats", None)).await.ok()?.stats
    }
}
