//! The same publishers and subscribers against Janus's VideoRoom plugin, through Janus's own
//! HTTP API (`janus.transport.http`), for the Switchboard ÷ Janus comparison.
//!
//! Per member: one Janus session (`create`), one handle (`attach` to
//! `janus.plugin.videoroom`), and one long-poll task (`GET /janus/<session>`) that both keeps
//! the session alive and delivers the plugin's asynchronous events.
//! - publisher: `join` (ptype publisher) → `joined` with our feed id; `publish` with our offer
//!   → event with Janus's answer.
//! - subscriber: `join` (ptype subscriber, `streams: [{feed}]`) → `attached` with Janus's
//!   offer; `start` with our answer.
//!
//! Rooms are created with a synchronous `create` request (`vp8`, `opus`, no bitrate cap).
//! Janus is a full ICE agent; both sides' SDPs carry complete candidate lists, and we signal
//! end-of-candidates with a `trickle {completed: true}`.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::media::{ReceiveStats, SendStats};
use crate::peer::{PeerConfig, PeerEvent, Publisher, Subscriber};
use crate::run::Failures;

fn transaction() -> String {
    format!("{:016x}", rand::random::<u64>())
}

fn http() -> reqwest::Client {
    // One client per process: connection reuse keeps the HTTP transport cheap for Janus too.
    static CLIENT: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
    CLIENT
        .get_or_init(|| {
            reqwest::Client::builder()
                .timeout(Duration::from_secs(40))
                .build()
                .expect("reqwest client")
        })
        .clone()
}

async fn post(url: &str, mut body: Value) -> Result<Value, String> {
    body["transaction"] = json!(transaction());
    let reply: Value = http()
        .post(url)
        .json(&body)
        .send()
        .await
        .map_err(|e| format!("POST {url}: {e}"))?
        .json()
        .await
        .map_err(|e| format!("POST {url}: {e}"))?;
    match reply["janus"].as_str() {
        Some("success") | Some("ack") => Ok(reply),
        _ => Err(format!("janus refused: {reply}")),
    }
}

/// One session + videoroom handle with its event long-poll.
struct Handle {
    base: String,
    session: u64,
    handle: u64,
    events: mpsc::UnboundedReceiver<Value>,
    poller: JoinHandle<()>,
}

impl Handle {
    async fn open(url: &str) -> Result<Handle, String> {
        let created = post(url, json!({"janus": "create"})).await?;
        let session = created["data"]["id"].as_u64().ok_or("no session id")?;
        let base = format!("{url}/{session}");
        let attached = post(
            &base,
            json!({"janus": "attach", "plugin": "janus.plugin.videoroom"}),
        )
        .await?;
        let handle = attached["data"]["id"].as_u64().ok_or("no handle id")?;
        let (tx, events) = mpsc::unbounded_channel();
        let poll_url = format!("{base}?maxev=10");
        let poller = tokio::spawn(async move {
            loop {
                let reply = match http().get(&poll_url).send().await {
                    Ok(r) => r.json::<Value>().await,
                    Err(_) => {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        continue;
                    }
                };
                let Ok(reply) = reply else { continue };
                let batch = match reply {
                    Value::Array(v) => v,
                    v => vec![v],
                };
                for event in batch {
                    if event["janus"] == "event" && tx.send(event).is_err() {
                        return;
                    }
                }
            }
        });
        Ok(Handle {
            base,
            session,
            handle,
            events,
            poller,
        })
    }

    fn handle_url(&self) -> String {
        format!("{}/{}", self.base, self.handle)
    }

    /// Sends a plugin message; returns the synchronous reply.
    async fn message(&self, body: Value, jsep: Option<Value>) -> Result<Value, String> {
        let mut msg = json!({"janus": "message", "body": body});
        if let Some(jsep) = jsep {
            msg["jsep"] = jsep;
        }
        post(&self.handle_url(), msg).await
    }

    /// Waits for the next plugin event that has `key` in its data, or an error event.
    async fn event_with(&mut self, key: &str) -> Result<Value, String> {
        tokio::time::timeout(Duration::from_secs(20), async {
            while let Some(event) = self.events.recv().await {
                let data = &event["plugindata"]["data"];
                if let Some(error) = data.get("error") {
                    return Err(format!("janus: {error}"));
                }
                if data.get(key).is_some() {
                    return Ok(event);
                }
            }
            Err("janus event stream ended".to_owned())
        })
        .await
        .map_err(|_| format!("no janus event with {key} in 20 s"))?
    }

    async fn close(self) {
        self.poller.abort();
        let _ = post(&self.handle_url(), json!({"janus": "detach"})).await;
        let _ = post(&self.base, json!({"janus": "destroy"})).await;
        tracing::debug!(session = self.session, "janus session closed");
    }
}

/// Creates VideoRoom `room` (VP8 + Opus); an existing room is fine.
pub async fn create_room(url: &str, room: u64) -> Result<(), String> {
    let h = Handle::open(url).await?;
    let reply = h
        .message(
            json!({
                "request": "create", "room": room, "publishers": 100,
                "videocodec": "vp8", "audiocodec": "opus", "bitrate": 0,
                "fir_freq": 0, "notify_joining": false,
            }),
            None,
        )
        .await;
    h.close().await;
    let reply = reply?;
    let data = &reply["plugindata"]["data"];
    // 427: room already exists.
    if data["videoroom"] == "created" || data["error_code"] == 427 {
        Ok(())
    } else {
        Err(format!("create room {room}: {data}"))
    }
}

/// A publisher or subscriber in a Janus VideoRoom.
pub struct JanusMember {
    handle: Handle,
    feed: u64,
    publisher: Option<Publisher>,
    subscriber: Option<Subscriber>,
    receive: Arc<ReceiveStats>,
}

fn watch(who: String, mut events: mpsc::UnboundedReceiver<PeerEvent>, failures: Arc<Failures>) {
    tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            if let PeerEvent::StateChanged {
                target,
                state: webrtc::peer_connection::RTCPeerConnectionState::Failed,
            } = event
            {
                failures.push(format!("{who}: janus {target:?} connection failed"));
            }
        }
    });
}

impl JanusMember {
    /// Joins `room` as a publisher and publishes the clips.
    pub async fn publish(
        url: &str,
        room: u64,
        name: &str,
        video: bool,
        peer: &PeerConfig,
        failures: Arc<Failures>,
    ) -> Result<JanusMember, String> {
        let mut handle = Handle::open(url).await?;
        handle
            .message(
                json!({"request": "join", "ptype": "publisher", "room": room, "display": name}),
                None,
            )
            .await?;
        let joined = handle.event_with("id").await?;
        let feed = joined["plugindata"]["data"]["id"]
            .as_u64()
            .ok_or("joined without feed id")?;
        let (tx, rx) = mpsc::unbounded_channel();
        watch(name.to_owned(), rx, failures);
        let publisher = Publisher::new(peer, name, video, tx)
            .await
            .map_err(|e| e.to_string())?;
        let offer = publisher.create_offer().await.map_err(|e| e.to_string())?;
        handle
            .message(
                json!({"request": "publish", "audio": true, "video": video}),
                Some(json!({"type": "offer", "sdp": offer})),
            )
            .await?;
        let _ = post(
            &handle.handle_url(),
            json!({"janus": "trickle", "candidate": {"completed": true}}),
        )
        .await;
        let answered = handle.event_with("configured").await?;
        let answer = answered["jsep"]["sdp"]
            .as_str()
            .ok_or("publish event without answer")?
            .to_owned();
        publisher
            .set_answer(answer)
            .await
            .map_err(|e| e.to_string())?;
        publisher.start_media();
        // Janus refuses subscriptions to a feed whose media is not up yet ("No such feed").
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while publisher.state() != webrtc::peer_connection::RTCPeerConnectionState::Connected {
            if tokio::time::Instant::now() > deadline {
                return Err(format!(
                    "publisher not connected within 10 s: {}",
                    publisher.state()
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(JanusMember {
            handle,
            feed,
            publisher: Some(publisher),
            subscriber: None,
            receive: Arc::default(),
        })
    }

    /// Joins `room` as a subscriber to `feeds`.
    pub async fn subscribe(
        url: &str,
        room: u64,
        feeds: &[u64],
        peer: &PeerConfig,
        failures: Arc<Failures>,
    ) -> Result<JanusMember, String> {
        let receive = Arc::new(ReceiveStats::default());
        receive.started_us.store(
            crate::media::unix_micros(),
            std::sync::atomic::Ordering::Relaxed,
        );
        let mut handle = Handle::open(url).await?;
        let streams: Vec<Value> = feeds.iter().map(|f| json!({"feed": f})).collect();
        handle
            .message(
                json!({"request": "join", "ptype": "subscriber", "room": room, "streams": streams}),
                None,
            )
            .await?;
        let attached = handle.event_with("videoroom").await?;
        let offer = attached["jsep"]["sdp"]
            .as_str()
            .ok_or_else(|| format!("subscriber join without offer: {attached}"))?
            .to_owned();
        let (tx, rx) = mpsc::unbounded_channel();
        watch(format!("janus subscriber {}", handle.handle), rx, failures);
        let subscriber = Subscriber::new(peer, Arc::clone(&receive), tx)
            .await
            .map_err(|e| e.to_string())?;
        let answer = subscriber.answer(offer).await.map_err(|e| e.to_string())?;
        handle
            .message(
                json!({"request": "start"}),
                Some(json!({"type": "answer", "sdp": answer})),
            )
            .await?;
        let _ = post(
            &handle.handle_url(),
            json!({"janus": "trickle", "candidate": {"completed": true}}),
        )
        .await;
        handle.event_with("started").await?;
        Ok(JanusMember {
            handle,
            feed: 0,
            publisher: None,
            subscriber: Some(subscriber),
            receive,
        })
    }

    /// The publisher's feed id (0 for subscribers).
    pub fn feed_id(&self) -> u64 {
        self.feed
    }

    /// What the publisher sent.
    pub fn send_stats(&self) -> Option<Arc<SendStats>> {
        self.publisher.as_ref().map(|p| Arc::clone(p.stats()))
    }

    /// What the subscriber received.
    pub fn receive_stats(&self) -> Arc<ReceiveStats> {
        Arc::clone(&self.receive)
    }

    /// Leaves: closes the connections, detaches and destroys the session.
    pub async fn leave(self) {
        if let Some(p) = self.publisher {
            let _ = p.close().await;
        }
        if let Some(s) = self.subscriber {
            let _ = s.close().await;
        }
        self.handle.close().await;
    }
}
