//! Helpers shared by the end-to-end history and recording tests (`history_recording.rs`,
//! `recording_safety.rs`): a server in-process, tokens, waits on events and on the HTTP API,
//! and ffprobe/ffmpeg checks of WebM files. Each test binary uses a subset.
#![allow(dead_code)]

pub use std::path::{Path, PathBuf};
pub use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use anyhow::{anyhow, bail, ensure, Context, Result};
pub use loadtest::{
    CallId, CallKind, EndReason, MediaKind, Participant, ParticipantConfig, ParticipantEvent,
    ParticipantEvents, ServerEvent, SignalingClient, SignalingConfig, SignalingError,
    SignalingEvents, UserInfo,
};
pub use serde_json::{json, Value};
pub use switchboard::ServerConfig;
pub use switchboard_signaling::identity::TokenIssuer;
pub use switchboard_signaling::{Claims, Grants};
pub use tokio::time::Instant;

pub const SIGNAL_TIMEOUT: Duration = Duration::from_secs(10);
pub const MEDIA_TIMEOUT: Duration = Duration::from_secs(30);
/// The secret of [`ServerConfig::for_tests`], to mint tokens for known users.
pub const TEST_SECRET: &str = "switchboard-test-secret-not-for-production";

pub struct TestServer {
    pub base: String,
    pub config: ServerConfig,
    pub shutdown: tokio::sync::oneshot::Sender<()>,
    pub task: tokio::task::JoinHandle<Result<()>>,
}

impl TestServer {
    pub async fn start(config: ServerConfig) -> Result<TestServer> {
        let server = switchboard::Server::bind(config.clone()).await?;
        let base = format!("http://{}", server.http_addr());
        let (shutdown, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(server.run(async move {
            let _ = rx.await;
        }));
        Ok(TestServer {
            base,
            config,
            shutdown,
            task,
        })
    }

    pub async fn stop(self) {
        let _ = self.shutdown.send(());
        let _ = tokio::time::timeout(Duration::from_secs(15), self.task).await;
    }
}

/// A token for an existing user (the API reads the caller's identity from it).
pub fn token_for(user: &UserInfo, grants: Grants) -> String {
    let issuer = TokenIssuer::new(TEST_SECRET.as_bytes(), Duration::from_secs(3600));
    let exp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    issuer.sign(&Claims {
        sub: user.id.as_str().to_owned(),
        name: user.name.clone(),
        exp,
        grants,
    })
}

pub async fn join(
    http: &reqwest::Client,
    base: &str,
    name: &str,
) -> Result<(Participant, ParticipantEvents, String)> {
    let (p, events) = Participant::join(http, base, name, ParticipantConfig::default())
        .await
        .with_context(|| format!("{name} joins"))?;
    let token = token_for(p.user(), Grants::full());
    Ok((p, events, token))
}

pub async fn api(
    http: &reqwest::Client,
    base: &str,
    token: Option<&str>,
    path: &str,
) -> Result<(u16, Value)> {
    let mut request = http.get(format!("{base}{path}"));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await?;
    let status = response.status().as_u16();
    let body = response.json::<Value>().await.unwrap_or(Value::Null);
    Ok((status, body))
}

/// Polls `GET /api/calls/{id}` until `done` accepts the call.
pub async fn call_until(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    call: &CallId,
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> Result<Value> {
    let deadline = Instant::now() + SIGNAL_TIMEOUT;
    loop {
        let (status, body) = api(
            http,
            base,
            Some(token),
            &format!("/api/calls/{}", call.as_str()),
        )
        .await?;
        if status == 200 && done(&body) {
            return Ok(body);
        }
        if Instant::now() > deadline {
            bail!(
                "call {} never got {what}: last {status} {body}",
                call.as_str()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub fn is_ended(call: &Value) -> bool {
    call["state"] == "ended"
}

/// Waits for the first participant event `pick` maps to `Some`.
pub async fn wait_for<T>(
    who: &str,
    events: &mut ParticipantEvents,
    timeout: Duration,
    mut pick: impl FnMut(&ServerEvent) -> Option<T>,
) -> Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        let event = tokio::time::timeout_at(deadline, events.recv())
            .await
            .map_err(|_| anyhow!("{who}: timed out"))?
            .ok_or_else(|| anyhow!("{who}: event stream closed"))?;
        if let ParticipantEvent::Signal(signal) = &event {
            if let Some(found) = pick(signal) {
                return Ok(found);
            }
        }
    }
}

pub async fn wait_signal<T>(
    who: &str,
    events: &mut SignalingEvents,
    mut pick: impl FnMut(&ServerEvent) -> Option<T>,
) -> Result<T> {
    let deadline = Instant::now() + SIGNAL_TIMEOUT;
    loop {
        let event = tokio::time::timeout_at(deadline, events.recv())
            .await
            .map_err(|_| anyhow!("{who}: timed out"))?
            .ok_or_else(|| anyhow!("{who}: event stream closed"))?;
        if let Some(found) = pick(&event) {
            return Ok(found);
        }
    }
}

pub fn incoming(event: &ServerEvent) -> Option<CallId> {
    match event {
        ServerEvent::IncomingCall { call_id, .. } => Some(call_id.clone()),
        _ => None,
    }
}

pub fn ended(call: &CallId) -> impl Fn(&ServerEvent) -> Option<EndReason> + '_ {
    move |event| match event {
        ServerEvent::CallEnded {
            call_id, reason, ..
        } if call_id == call => Some(*reason),
        _ => None,
    }
}

/// A server event this client does not model (e.g. `recording_started`), by name.
pub fn named<'a>(name: &'a str, call: &'a CallId) -> impl Fn(&ServerEvent) -> Option<Value> + 'a {
    move |event| match event {
        ServerEvent::Unrecognized { event, payload, .. }
            if event == name && payload["call_id"] == call.as_str() =>
        {
            Some(payload.clone())
        }
        _ => None,
    }
}

pub fn refused_code(result: Result<Value, SignalingError>) -> String {
    match result {
        Err(SignalingError::Refused { code, .. }) => code,
        other => format!("not refused: {other:?}"),
    }
}

pub async fn emit(
    client: &SignalingClient,
    event: &'static str,
    call: &CallId,
) -> Result<Value, SignalingError> {
    client
        .emit_with_ack(event, json!({ "call_id": call }))
        .await
}

/// Waits until `receiver` gets at least `min` packets of `kind` from `sender`.
pub async fn media_flows(
    receiver: &Participant,
    sender: &UserInfo,
    kind: MediaKind,
    min: u64,
) -> Result<()> {
    let deadline = Instant::now() + MEDIA_TIMEOUT;
    loop {
        let got = receiver
            .receive_stats()
            .packets_from(sender.id.as_str(), kind);
        if got >= min {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "{} got only {got} {kind:?} packets from {}",
                receiver.user().name,
                sender.name
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub fn short_ring() -> ServerConfig {
    let mut config = ServerConfig::for_tests();
    config.ring_timeout_secs = 2;
    config
}

pub fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// `ffprobe`'s streams and duration of a file.
pub fn probe(path: &Path) -> Result<(Vec<String>, f64)> {
    let out = std::process::Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "stream=codec_name:format=duration",
            "-of",
            "json",
        ])
        .arg(path)
        .output()
        .context("running ffprobe")?;
    ensure!(
        out.status.success(),
        "ffprobe failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: Value = serde_json::from_slice(&out.stdout)?;
    let codecs = json["streams"]
        .as_array()
        .context("streams")?
        .iter()
        .filter_map(|s| s["codec_name"].as_str().map(str::to_owned))
        .collect();
    let duration = json["format"]["duration"]
        .as_str()
        .context("duration")?
        .parse()?;
    Ok((codecs, duration))
}

/// `ffmpeg -v error -i FILE -f null -`'s complaints (empty when the file decodes cleanly).
pub fn decode_errors(path: &Path) -> Result<String> {
    let out = std::process::Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-i"])
        .arg(path)
        .args(["-f", "null", "-"])
        .output()
        .context("running ffmpeg")?;
    let mut errors = String::from_utf8_lossy(&out.stderr).into_owned();
    if !out.status.success() {
        errors.push_str(&format!(" (exit {})", out.status));
    }
    Ok(errors)
}

pub fn webm_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "webm"))
        .collect();
    files.sort();
    Ok(files)
}

/// A signaling-only client (no media) for a user with the given grants; returns once the
/// server knows the socket (the connect ack comes just before it is registered).
pub async fn signaling_user(
    base: &str,
    id: &str,
    name: &str,
    grants: Grants,
) -> Result<(UserInfo, SignalingClient, SignalingEvents)> {
    let user = UserInfo {
        id: loadtest::UserId(id.into()),
        name: name.into(),
    };
    let (client, events) =
        SignalingClient::connect(base, &token_for(&user, grants), SignalingConfig::default())
            .await?;
    Ok((user, client, events))
}

/// `invite_participant`, retried while the invitee's socket is not registered yet.
pub async fn invite_when_online(
    inviter: &SignalingClient,
    call: &CallId,
    user: &UserInfo,
) -> Result<()> {
    let deadline = Instant::now() + SIGNAL_TIMEOUT;
    loop {
        match inviter.invite_participant(call, &user.id).await {
            Err(SignalingError::Refused { code, .. })
                if code == "user_offline" && Instant::now() < deadline =>
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            other => return Ok(other?),
        }
    }
}

/// Alice calls Bob (`kind`), Bob accepts, media flows both ways: a call that can be recorded.
pub async fn two_person_call(
    alice: &Participant,
    bob: &Participant,
    bob_ev: &mut ParticipantEvents,
    kind: CallKind,
) -> Result<CallId> {
    let call = alice
        .signaling()
        .initiate_call(&bob.user().id, kind)
        .await?;
    wait_for("bob", bob_ev, SIGNAL_TIMEOUT, incoming).await?;
    bob.signaling().accept_call(&call).await?;
    media_flows(bob, alice.user(), MediaKind::Audio, 25).await?;
    media_flows(alice, bob.user(), MediaKind::Audio, 25).await?;
    Ok(call)
}

/// Whether the call lists exactly `n` recordings, all finished (a file is listed as
/// `recording` from the moment it starts).
pub fn finished_recordings(call: &Value, n: usize) -> bool {
    call["recordings"]
        .as_array()
        .is_some_and(|r| r.len() == n && r.iter().all(|r| r["state"] == "finished"))
}

/// `ffprobe`'s codecs of a file, and how many packets it can read (a file cut short by a
/// crash has no Duration element, but its clusters are readable).
pub fn probe_packets(path: &Path) -> Result<(Vec<String>, u64)> {
    let out = std::process::Command::new("ffprobe")
        .args(["-v", "error", "-count_packets", "-show_entries"])
        .args(["stream=codec_name,nb_read_packets", "-of", "json"])
        .arg(path)
        .output()
        .context("running ffprobe")?;
    ensure!(
        out.status.success(),
        "ffprobe failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: Value = serde_json::from_slice(&out.stdout)?;
    let streams = json["streams"].as_array().context("streams")?;
    let codecs = streams
        .iter()
        .filter_map(|s| s["codec_name"].as_str().map(str::to_owned))
        .collect();
    let packets = streams
        .iter()
        .filter_map(|s| s["nb_read_packets"].as_str()?.parse::<u64>().ok())
        .sum();
    Ok((codecs, packets))
}
