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
pub mod metrics;
pub mod origin;
pub mod recordings_http;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::routing::get;
use axum::Router;
use switchboard_sfu::{Sfu, SfuConfig};
use switchboard_signaling::history::{HistoryConfig, HistoryStore, Timestamp};
use switchboard_signaling::{RecordingConfig, Signaling, SignalingConfig};
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
}

impl Server {
    /// Binds the HTTP listener and the media UDP socket and builds the application.
    pub async fn bind(config: ServerConfig) -> anyhow::Result<Server> {
        config.validate().map_err(anyhow::Error::msg)?;

        let token_secret = match &config.token_secret {
            Some(secret) => secret.as_bytes().to_vec(),
            None => {
                warn!("no token secret configured (--token-secret / SWITCHBOARD_TOKEN_SECRET): using a random one; sessions will not survive a restart");
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

        let sfu_config = SfuConfig {
            udp_bind: config.media_addr,
            public_ip: config.public_ip,
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
        let recording = RecordingConfig {
            directory: config.recording_dir.clone(),
        };
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
        let origins = Arc::new(origin::OriginPolicy {
            allowed: config.allowed_origins.clone(),
            allow_localhost: !config.production,
        });
        // Layers run outside-in: the origin check sees every request, Socket.IO included.
        let app = Router::new()
            .route("/healthz", get(|| async { "ok" }))
            .merge(signaling.router())
            .merge(switchboard_signaling::history::http::router(
                history.clone(),
                verify.clone(),
            ))
            .merge(recordings_http::router(history.clone(), verify))
            .merge(metrics::router(signaling.clone()))
            .fallback_service(ServeDir::new(&config.web_dir))
            .layer(socketio)
            .layer(axum::middleware::from_fn_with_state(origins, origin::check))
            .layer(TraceLayer::new_for_http());

        let listener = tokio::net::TcpListener::bind(config.http_addr)
            .await
            .with_context(|| format!("binding HTTP on {}", config.http_addr))?;
        let http_addr = listener.local_addr()?;

        Ok(Server {
            listener,
            http_addr,
            sfu,
            signaling,
            history,
            app,
        })
    }

    /// The bound HTTP address (with the real port when bound to port 0).
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// The bound media UDP address.
    pub fn media_addr(&self) -> SocketAddr {
        self.sfu.media_addr()
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
        } = self;
        info!(%http_addr, media_addr = %sfu.media_addr(), "serving");

        let (drained_tx, drained_rx) = tokio::sync::oneshot::channel::<()>();
        let graceful = async move {
            shutdown.await;
            info!("shutting down: ending calls and closing connections");
            signaling.shutdown().await;
            sfu.shutdown().await;
            // The SFU has reported every finished recording by now; write them, then close.
            signaling.flush_history().await;
            history.close().await;
            let _ = drained_tx.send(());
        };
        // Connect info gives signaling the client IP for the per-IP socket limit.
        let serve = axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(graceful);
        tokio::select! {
            result = serve => result.context("HTTP server failed")?,
            _ = async {
                // Only once shutdown has begun: bound the wait for lingering connections.
                if drained_rx.await.is_ok() {
                    tokio::time::sleep(DRAIN_TIMEOUT).await;
                } else {
                    std::future::pending::<()>().await;
                }
            } => warn!("connections still open after {DRAIN_TIMEOUT:?}; closing them"),
        }
        info!("stopped");
        Ok(())
    }
}
