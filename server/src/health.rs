//! `/healthz` (liveness) and `/readyz` (readiness), and the `switchboard healthcheck` client
//! that container images without curl use for `HEALTHCHECK`.
//!
//! - Liveness: the media task answers a command within [`PROBE_TIMEOUT`]. A stalled or dead
//!   media task means every call is broken, and only a restart helps.
//! - Readiness: live, the history database answers a query within [`PROBE_TIMEOUT`], and the
//!   server is not shutting down. A load balancer stops sending new users while it is false.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use switchboard_sfu::{RoomId, Sfu, SfuError};
use switchboard_signaling::history::{HistoryStore, ListQuery};
use switchboard_signaling::UserId;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long the media task and the database get to answer a probe.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// What the probes look at.
#[derive(Clone)]
pub struct Health {
    sfu: Sfu,
    history: HistoryStore,
    draining: Arc<AtomicBool>,
}

impl Health {
    pub fn new(sfu: Sfu, history: HistoryStore) -> Self {
        Self {
            sfu,
            history,
            draining: Arc::new(AtomicBool::new(false)),
        }
    }

    /// From now on `/readyz` answers 503 `shutting down`.
    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    /// Whether the media task answers. `Sfu::stats()` cannot tell a dead task from an idle
    /// one (it returns zeros when the task is gone), so the probe is a command with an error
    /// reply: a live task answers "unknown room", a dead one `ShuttingDown`.
    pub async fn media_alive(&self) -> Result<(), &'static str> {
        let probe = self
            .sfu
            .stop_recording(RoomId::new("switchboard-health-probe"));
        match tokio::time::timeout(PROBE_TIMEOUT, probe).await {
            Err(_) => Err("media task does not answer"),
            Ok(Err(SfuError::ShuttingDown)) => Err("media task stopped"),
            Ok(_) => Ok(()),
        }
    }

    async fn database_reachable(&self) -> Result<(), &'static str> {
        let query = ListQuery {
            limit: 1,
            ..ListQuery::default()
        };
        let probe_user = UserId::new("switchboard-health-probe");
        match tokio::time::timeout(
            PROBE_TIMEOUT,
            self.history.list_for_user(&probe_user, &query),
        )
        .await
        {
            Err(_) => Err("database does not answer"),
            Ok(Err(_)) => Err("database query failed"),
            Ok(Ok(_)) => Ok(()),
        }
    }

    pub async fn ready(&self) -> Result<(), &'static str> {
        if self.draining.load(Ordering::SeqCst) {
            return Err("shutting down");
        }
        self.media_alive().await?;
        self.database_reachable().await
    }
}

pub fn router(health: Health) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(health)
}

fn answer(result: Result<(), &'static str>) -> (StatusCode, &'static str) {
    match result {
        Ok(()) => (StatusCode::OK, "ok"),
        Err(reason) => (StatusCode::SERVICE_UNAVAILABLE, reason),
    }
}

async fn healthz(State(health): State<Health>) -> (StatusCode, &'static str) {
    answer(health.media_alive().await)
}

async fn readyz(State(health): State<Health>) -> (StatusCode, &'static str) {
    answer(health.ready().await)
}

/// `switchboard healthcheck`: GETs `path` from the server at `http_addr` (an unspecified bind
/// address means loopback) and succeeds on HTTP 200.
pub async fn check(http_addr: SocketAddr, path: &str) -> anyhow::Result<()> {
    let mut addr = http_addr;
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr.ip() {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
        });
    }
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await?;
        let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await?;
        let mut response = Vec::new();
        // A health answer is a few bytes; bound what is read anyway.
        stream.take(4096).read_to_end(&mut response).await?;
        anyhow::Ok(String::from_utf8_lossy(&response).into_owned())
    };
    let response = tokio::time::timeout(PROBE_TIMEOUT * 2, exchange)
        .await
        .map_err(|_| anyhow::anyhow!("{addr}{path}: no answer in time"))??;
    let status_line = response.lines().next().unwrap_or_default();
    let body = response
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .trim();
    if status_line.split_whitespace().nth(1) == Some("200") {
        Ok(())
    } else {
        anyhow::bail!("{addr}{path}: {status_line} {body}")
    }
}
