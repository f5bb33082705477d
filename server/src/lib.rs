//! # switchboard: the server binary's wiring
//!
//! Owns nothing but wiring and configuration: it starts the [`switchboard_sfu`] media task on
//! one UDP port, builds [`switchboard_signaling`] on top of it, and serves on one HTTP port:
//! the Socket.IO endpoint (`/socket.io/`), `POST /api/session`, `GET /healthz` and the static
//! web app (`/`).
//!
//! ## Threading model
//! Everything runs on the caller's tokio runtime: axum/hyper connection tasks, socketioxide's
//! per-event tasks, signaling's SFU-event task and the SFU's media task.
//!
//! ## Shutdown
//! When the future given to [`Server::run`] completes: stop accepting, end every call with
//! reason `shutdown`, disconnect every socket, stop the SFU, then wait (bounded) for open HTTP
//! connections to finish.

pub mod config;
pub mod conn_limits;
pub mod health;
pub mod metrics;
pub mod origin;
pub mod public_ip;
pub mod recordings_http;
pub mod secrets;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use switchboard_sfu::{Sfu, SfuConfig};
use switchboard_signaling::history::{HistoryConfig, HistoryStore, Timestamp};
use switchboard_signaling::{Signaling, SignalingConfig};
use tower_http::services::ServeDir;
use tower_http::trace::TraceLayer;
use tracing::{info, warn};

pub use config::{LogFormat, ServerConfig};

/// How long open HTTP connections get to finish after shutdown began.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// A bound, not yet running server.
pub struct Server {
    listener: tokio::net::TcpListener,
    http_addr: SocketAddr,
    sfu: Sfu,
    signaling: Signaling,
    history: HistoryStore,
    app: Router,
    health: health::Health,
    metrics_listener: Option<tokio::net::TcpListener>,
    scrape_sources: metrics::ScrapeSources,
    http_limits: HttpLimits,
    public_ip: Option<std::net::IpAddr>,
}

/// Limits of the HTTP server itself (finding 10).
#[derive(Debug, Clone, Copy)]
struct HttpLimits {
    max_connections: usize,
    header_read_timeout: Duration,
}

impl Server {
    /// Binds the HTTP listener and the media UDP socket and builds the application.
    pub async fn bind(config: ServerConfig) -> anyhow::Result<Server> {
        config.validate().map_err(anyhow::Error::msg)?;

        let token_keys = config.token_keys().map_err(anyhow::Error::msg)?;
        let token_secret = match token_keys.first() {
            Some(key) => key.secret.clone(),
            None => {
                warn!("no token secret configured (--token-secret-file / --token-secret): using a random one; sessions will not survive a restart");
                let secret: [u8; 32] = rand::random();
                secret.to_vec()
            }
        };
        let signaling_config = SignalingConfig {
            ring_timeout: config.ring_timeout(),
            max_payload_bytes: config.limits.max_payload_bytes,
            demo_sign_in: config.demo_sign_in_enabled(),
            trust_forwarded_for: config.trust_forwarded_for,
            presence_scope: config.presence_scope,
            trusted_proxies: config.trusted_proxies.clone(),
            ipv6_prefix_len: config.ipv6_prefix_len,
            creator_ends_call: config.creator_ends_call,
            limits: config.limits.signaling(),
            token_keys,
            token_policy: config.token_policy(),
            connect_timeout: Duration::from_secs(config.limits.socketio_connect_timeout_secs),
            ..SignalingConfig::with_secret(token_secret)
        };
        if config.production {
            info!(
                demo_sign_in = signaling_config.demo_sign_in,
                "production mode"
            );
        } else {
            warn!("development mode: open demo sign-in, localhost origins allowed (use --production for a deployment)");
        }

        let public_ip = match (config.public_ip, &config.public_ip_from_stun) {
            (Some(ip), _) => Some(ip),
            (None, Some(server)) => {
                let ip = public_ip::discover(server)
                    .await
                    .context("discovering the public IP (--public-ip-from-stun)")?;
                info!(%ip, stun_server = %server, "public IP learnt from STUN");
                Some(ip)
            }
            (None, None) => None,
        };
        let sfu_config = SfuConfig {
            udp_bind: config.media_addr,
            public_ip,
            announce_addr: config.announce_media_addr,
            recording_min_free_bytes: config.recording_min_free_mb.saturating_mul(1024 * 1024),
            max_participants_per_room: config.limits.max_participants_per_call,
            max_tracks_per_participant: config.limits.max_tracks_per_participant,
            connect_timeout: Duration::from_secs(config.limits.media_connect_timeout_secs),
            metrics: Some(metrics::sfu_metrics()?),
            ..SfuConfig::default()
        };
        sfu_config.validate().map_err(anyhow::Error::msg)?;
        let (sfu, sfu_events) = Sfu::start(sfu_config)
            .await
            .with_context(|| format!("starting the SFU on UDP {}", config.media_addr))?;

        // The history first: calls a previous run left open are closed before any new one.
        let history = HistoryStore::open(HistoryConfig {
            database_url: config.database_url.clone(),
        })
        .await
        .context("opening the call history (--database-url)")?;
        let closed = history
            .close_interrupted(Timestamp::now())
            .await
            .context("closing calls interrupted by the last stop")?;
        if closed > 0 {
            warn!(calls = closed, "closed calls left open by the last run");
        }
        let recording = config.recording.config(&config.recording_dir);
        config
            .recording
            .maintain(&history, &config.recording_dir)
            .await?;
        let (socketio, signaling) = Signaling::with_history(
            signaling_config,
            sfu.clone(),
            sfu_events,
            Some(history.clone()),
            recording,
        )
        .context("configuring signaling")?;
        let tokens = signaling.tokens();
        let verify = move |token: Option<&str>| tokens.verify(token);

        if !config.web_dir.join("index.html").is_file() {
            warn!(web_dir = %config.web_dir.display(), "web directory has no index.html; / will be 404");
        }
        let health = health::Health::new(sfu.clone(), history.clone());
        let scrape_sources = metrics::ScrapeSources {
            signaling: signaling.clone(),
            health: health.clone(),
            recording_dir: config.recording_dir.clone(),
            recording_floor_bytes: config.recording_min_free_mb.saturating_mul(1024 * 1024),
        };
        let origins = Arc::new(origin::OriginPolicy {
            allowed: config.allowed_origins.clone(),
            allow_localhost: !config.production,
        });
        // Layers run outside-in: the origin check sees every request, Socket.IO included.
        let app = Router::new()
            .merge(health::router(health.clone()))
            .merge(signaling.router())
            .merge(switchboard_signaling::history::http::router(
                history.clone(),
                verify.clone(),
            ))
            .merge(recordings_http::router(history.clone(), verify))
            .merge(match config.metrics_addr {
                // With a metrics listener, the public port does not serve /metrics.
                Some(_) => Router::new(),
                None => metrics::router(scrape_sources.clone()),
            })
            .fallback_service(ServeDir::new(&config.web_dir))
            .layer(socketio)
            .layer(axum::middleware::from_fn_with_state(
                conn_limits::PreAuthLimiter::new(
                    config.limits.max_preauth_sessions_per_ip,
                    Duration::from_secs(config.limits.socketio_connect_timeout_secs),
                    config.trust_forwarded_for,
                ),
                conn_limits::limit_sessions,
            ))
            .layer(axum::middleware::from_fn_with_state(origins, origin::check))
            .layer(TraceLayer::new_for_http());

        let listener = tokio::net::TcpListener::bind(config.http_addr)
            .await
            .with_context(|| format!("binding HTTP on {}", config.http_addr))?;
        let http_addr = listener.local_addr()?;
        let metrics_listener = match config.metrics_addr {
            Some(addr) => Some(
                tokio::net::TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("binding metrics on {addr}"))?,
            ),
            None => None,
        };

        Ok(Server {
            listener,
            http_addr,
            sfu,
            signaling,
            history,
            app,
            health,
            metrics_listener,
            scrape_sources,
            http_limits: HttpLimits {
                max_connections: config.limits.max_connections,
                header_read_timeout: Duration::from_secs(config.limits.header_read_timeout_secs),
            },
            public_ip,
        })
    }

    /// The bound HTTP address (with the real port when bound to port 0).
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// The media address announced in ICE candidates (the bound one unless --public-ip,
    /// --public-ip-from-stun or --announce-media-addr change it).
    pub fn media_addr(&self) -> SocketAddr {
        self.sfu.media_addr()
    }

    /// Where the media UDP socket is bound (the real port when bound to port 0).
    pub fn media_bound_addr(&self) -> SocketAddr {
        self.sfu.bound_addr()
    }

    /// The IP announced in ICE candidates when it is not the bind address: --public-ip, or
    /// what --public-ip-from-stun learnt.
    pub fn public_ip(&self) -> Option<std::net::IpAddr> {
        self.public_ip
    }

    /// The bound metrics address, when --metrics-addr is set.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener
            .as_ref()
            .and_then(|listener| listener.local_addr().ok())
    }

    /// The SFU handle, e.g. for its counters.
    pub fn sfu(&self) -> Sfu {
        self.sfu.clone()
    }

    /// The signaling handle, e.g. for its counters.
    pub fn signaling(&self) -> Signaling {
        self.signaling.clone()
    }

    /// Serves until `shutdown` completes, then shuts down gracefully (see the crate docs).
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let Server {
            listener,
            http_addr,
            sfu,
            signaling,
            history,
            app,
            health,
            metrics_listener,
            scrape_sources,
            http_limits,
            public_ip: _,
        } = self;
        info!(%http_addr, media_addr = %sfu.media_addr(), "serving");
        if let Some(listener) = metrics_listener {
            // Lives as long as the process: Prometheus may scrape until the very end.
            let metrics_app = metrics::router(scrape_sources);
            // The same header-read timeout and connection cap as the public port.
            tokio::spawn(serve(
                listener,
                metrics_app,
                http_limits,
                std::future::pending::<()>(),
            ));
        }

        let graceful = async move {
            shutdown.await;
            health.set_draining();
            info!("shutting down: ending calls and closing connections");
            signaling.shutdown().await;
            sfu.shutdown().await;
            // The SFU has reported every finished recording by now; write them, then close.
            signaling.flush_history().await;
            history.close().await;
        };
        serve(listener, app, http_limits, graceful).await;
        info!("stopped");
        Ok(())
    }
}

/// Serves HTTP/1.1 (with upgrades, for WebSockets) until `graceful` completes, then stops
/// accepting and gives open connections [`DRAIN_TIMEOUT`] to finish. Unlike `axum::serve`,
/// hyper gets a timer, so slow-header connections are closed after
/// `limits.header_read_timeout`, and at most `limits.max_connections` are open at once
/// (finding 10).
async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    limits: HttpLimits,
    graceful: impl Future<Output = ()>,
) {
    use hyper_util::rt::{TokioIo, TokioTimer};
    use tower::ServiceExt;

    // Flips once shutdown begins: connections then finish their request and close.
    let (closing_tx, closing_rx) = tokio::sync::watch::channel(false);
    let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    tokio::pin!(graceful);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut graceful => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors, or a connection reset before accept: wait a
                    // moment rather than spin.
                    warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            // Closing at once tells the client; leaving it in the backlog would not.
            tracing::debug!(%peer, "connection refused: --max-connections reached");
            drop(stream);
            continue;
        };
        // What into_make_service_with_connect_info did: signaling reads the client IP here.
        let service = app
            .clone()
            .map_request(move |mut request: axum::extract::Request<_>| {
                request
                    .extensions_mut()
                    .insert(axum::extract::ConnectInfo(peer));
                request
            });
        let connection = http
            .serve_connection(
                TokioIo::new(stream),
                hyper_util::service::TowerToHyperService::new(service),
            )
            .with_upgrades();
        let mut closing = closing_rx.clone();
        tokio::spawn(async move {
            tokio::pin!(connection);
            tokio::select! {
                _ = connection.as_mut() => {}
                _ = closing.changed() => {
                    connection.as_mut().graceful_shutdown();
                    let _ = connection.await;
                }
            }
            drop(slot);
        });
    }
    drop(listener);
    let _ = closing_tx.send(true);
    // Every connection gives its slot back when it ends.
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    tokio::select! {
        _ = slots.acquire_many(all) => {}
        () = tokio::time::sleep(DRAIN_TIMEOUT) => {
            warn!("connections still open after {DRAIN_TIMEOUT:?}; closing them");
        }
    }
}
