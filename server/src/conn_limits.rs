//! Connection limits that apply before anyone is authenticated (security review finding 10):
//! the HTTP server's header-read timeout and connection cap (see [`crate::Server::run`]) and
//! a per-IP cap on new Engine.IO sessions.
//!
//! Authentication and the per-IP socket limit run at the Socket.IO CONNECT, after socketioxide
//! has already created an Engine.IO session for the transport. An unauthenticated session
//! lives at most the Socket.IO connect timeout, so counting the new sessions each IP opened
//! within that window bounds how many unauthenticated sessions it can hold at once.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// Per-IP counts of recently opened Engine.IO sessions.
pub struct PreAuthLimiter {
    max_per_ip: usize,
    window: Duration,
    trust_forwarded_for: bool,
    opened: Mutex<HashMap<IpAddr, VecDeque<Instant>>>,
}

impl PreAuthLimiter {
    pub fn new(max_per_ip: usize, window: Duration, trust_forwarded_for: bool) -> Arc<Self> {
        Arc::new(Self {
            max_per_ip,
            window,
            trust_forwarded_for,
            opened: Mutex::new(HashMap::new()),
        })
    }

    /// Records a new session from `ip`, or refuses it when `ip` opened `max_per_ip` within
    /// the window.
    fn admit(&self, ip: IpAddr, now: Instant) -> bool {
        let mut opened = self.opened.lock().unwrap_or_else(|e| e.into_inner());
        // Forget idle IPs now and then so the map holds only recent clients.
        if opened.len() > 1024 {
            opened.retain(|_, times| {
                times
                    .back()
                    .is_some_and(|t| now.duration_since(*t) < self.window)
            });
        }
        let times = opened.entry(ip).or_default();
        while times
            .front()
            .is_some_and(|t| now.duration_since(*t) >= self.window)
        {
            times.pop_front();
        }
        if times.len() >= self.max_per_ip {
            return false;
        }
        times.push_back(now);
        true
    }

    fn client_ip(&self, request: &Request) -> Option<IpAddr> {
        if self.trust_forwarded_for {
            // The last entry is the one our proxy appended (docs/security.md).
            if let Some(ip) = request
                .headers()
                .get("x-forwarded-for")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.rsplit(',').next())
                .and_then(|v| v.trim().parse().ok())
            {
                return Some(ip);
            }
        }
        request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip())
    }
}

/// Whether a request opens a new Engine.IO session: a Socket.IO transport request without a
/// session id (a polling handshake or a direct WebSocket).
fn opens_session(request: &Request) -> bool {
    request.uri().path().starts_with("/socket.io/")
        && !request
            .uri()
            .query()
            .unwrap_or_default()
            .split('&')
            .any(|pair| pair.starts_with("sid="))
}

/// Middleware: `429 too_many_sessions` for a new Engine.IO session beyond the per-IP cap.
pub async fn limit_sessions(
    State(limiter): State<Arc<PreAuthLimiter>>,
    request: Request,
    next: Next,
) -> Response {
    if opens_session(&request) {
        if let Some(ip) = limiter.client_ip(&request) {
            if !limiter.admit(ip, Instant::now()) {
                tracing::debug!(%ip, "new Engine.IO session refused: per-IP cap");
                return (
                    StatusCode::TOO_MANY_REQUESTS,
                    [("retry-after", limiter.window.as_secs().max(1).to_string())],
                    "too_many_sessions",
                )
                    .into_response();
            }
        }
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_slides() {
        let limiter = PreAuthLimiter::new(2, Duration::from_secs(10), false);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        let t0 = Instant::now();
        assert!(limiter.admit(ip, t0));
        assert!(limiter.admit(ip, t0 + Duration::from_secs(1)));
        assert!(!limiter.admit(ip, t0 + Duration::from_secs(2)));
        assert!(limiter.admit(other, t0 + Duration::from_secs(2)));
        assert!(limiter.admit(ip, t0 + Duration::from_secs(10)));
    }
}
