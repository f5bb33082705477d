//! `--idle-users N`: N signed-in users, each one Socket.IO connection that does nothing
//! (answers pings, reads and discards what the server sends, presence included). Measures
//! what idle users cost the server: connect time per batch (is the thousandth connect as
//! cheap as the first?), resident memory per connection, CPU, and presence bytes received.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use tokio_tungstenite::tungstenite::Message;

use crate::procstat::ProcSample;
use crate::signaling::sign_in;

/// What `--idle-users` measured.
#[derive(Debug, Serialize)]
pub struct IdleReport {
    pub users: usize,
    pub connected: usize,
    /// Seconds to connect each batch of `batch` users (sign-in + WebSocket + CONNECT).
    pub batch_seconds: Vec<f64>,
    pub batch: usize,
    pub connect_seconds: f64,
    pub server_before: Option<(u64, f64)>,
    pub server_after: Option<(u64, f64)>,
    /// (RSS after - RSS before) / connected, KiB.
    pub kib_per_socket: Option<f64>,
    /// Bytes the idle clients received in total, until the end of the hold.
    pub bytes_received: u64,
    pub failures: Vec<String>,
}

struct Idle {
    close: tokio::sync::oneshot::Sender<()>,
}

async fn connect_one(
    http: &reqwest::Client,
    base: &str,
    name: &str,
    received: Arc<AtomicU64>,
    timeout: Duration,
) -> Result<Idle, String> {
    let identity = sign_in(http, base, name)
        .await
        .map_err(|e| format!("sign-in: {e}"))?;
    let ws_url = format!(
        "{}/socket.io/?EIO=4&transport=websocket",
        base.replacen("http", "ws", 1)
    );
    let (mut ws, _) = tokio::time::timeout(timeout, tokio_tungstenite::connect_async(ws_url))
        .await
        .map_err(|_| "websocket timeout".to_owned())?
        .map_err(|e| format!("websocket: {e}"))?;
    let handshake = async {
        match ws.next().await {
            Some(Ok(Message::Text(t))) if t.starts_with('0') => {}
            other => return Err(format!("no engine.io open: {other:?}")),
        }
        let auth = serde_json::json!({ "token": identity.token });
        ws.send(Message::text(format!("40{auth}")))
            .await
            .map_err(|e| e.to_string())?;
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(t))) if t.starts_with("40") => return Ok(()),
                Some(Ok(Message::Text(t))) if t.starts_with("44") => {
                    return Err(format!("connect refused: {t}"))
                }
                Some(Ok(m)) => received.fetch_add(m.len() as u64, Ordering::Relaxed),
                other => return Err(format!("no CONNECT answer: {other:?}")),
            };
        }
    };
    tokio::time::timeout(timeout, handshake)
        .await
        .map_err(|_| "CONNECT timeout".to_owned())??;
    let (close, mut closed) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = &mut closed => {
                    let _ = ws.close(None).await;
                    return;
                }
                message = ws.next() => match message {
                    Some(Ok(Message::Text(t))) => {
                        received.fetch_add(t.len() as u64, Ordering::Relaxed);
                        if t.as_str() == "2" && ws.send(Message::text("3")).await.is_err() {
                            return;
                        }
                    }
                    Some(Ok(m)) => {
                        received.fetch_add(m.len() as u64, Ordering::Relaxed);
                    }
                    _ => return,
                }
            }
        }
    });
    Ok(Idle { close })
}

/// Connects `users` idle users to `base`, `concurrency` at a time, holds them `hold`, then
/// closes them. `server_pid` (when given) is sampled for RSS and CPU.
pub async fn idle_users(
    base: &str,
    users: usize,
    batch: usize,
    concurrency: usize,
    hold: Duration,
    server_pid: Option<u32>,
) -> IdleReport {
    let http = reqwest::Client::new();
    let received = Arc::new(AtomicU64::new(0));
    let sample = || server_pid.and_then(ProcSample::read);
    let before = sample();
    let started = Instant::now();
    let mut idle = Vec::with_capacity(users);
    let mut failures = Vec::new();
    let mut batch_seconds = Vec::new();
    let timeout = Duration::from_secs(30);
    for batch_start in (0..users).step_by(batch.max(1)) {
        let batch_started = Instant::now();
        let names: Vec<usize> = (batch_start..(batch_start + batch).min(users)).collect();
        for chunk in names.chunks(concurrency.max(1)) {
            let tasks: Vec<_> = chunk
                .iter()
                .map(|i| {
                    let (http, base, received) =
                        (http.clone(), base.to_owned(), Arc::clone(&received));
                    let name = format!("Idle {i}");
                    tokio::spawn(async move {
                        connect_one(&http, &base, &name, received, timeout).await
                    })
                })
                .collect();
            for task in tasks {
                match task.await {
                    Ok(Ok(one)) => idle.push(one),
                    Ok(Err(e)) => failures.push(e),
                    Err(e) => failures.push(e.to_string()),
                }
            }
            if failures.len() > 20 {
                break;
            }
        }
        batch_seconds.push(batch_started.elapsed().as_secs_f64());
        eprintln!(
            "idle: {} connected, batch of {} in {:.2} s",
            idle.len(),
            names.len(),
            batch_seconds.last().unwrap()
        );
        if failures.len() > 20 {
            failures.push("stopped after 20 failures".into());
            break;
        }
    }
    let connect_seconds = started.elapsed().as_secs_f64();
    // Let the last presence updates go out before measuring.
    tokio::time::sleep(hold).await;
    let after = sample();
    let connected = idle.len();
    let kib_per_socket = match (&before, &after) {
        (Some(b), Some(a)) if connected > 0 => {
            Some((a.rss_kib as f64 - b.rss_kib as f64) / connected as f64)
        }
        _ => None,
    };
    for one in idle {
        let _ = one.close.send(());
    }
    IdleReport {
        users,
        connected,
        batch_seconds,
        batch,
        connect_seconds,
        server_before: before.map(|s| (s.rss_kib, s.cpu_seconds)),
        server_after: after.map(|s| (s.rss_kib, s.cpu_seconds)),
        kib_per_socket,
        bytes_received: received.load(Ordering::Relaxed),
        failures,
    }
}
