//! `switchboard`: parse configuration, set up logging, run the server until SIGINT/SIGTERM.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use switchboard::{LogFormat, Server, ServerConfig};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let config = ServerConfig::parse();
    if let Some(switchboard::config::Command::Healthcheck { path }) = &config.command {
        return match switchboard::health::check(config.http_addr, path).await {
            Ok(()) => Ok(()),
            Err(error) => {
                eprintln!("unhealthy: {error:#}");
                std::process::exit(1);
            }
        };
    }
    init_logging(config.log_format);

    let server = Server::bind(config).await.context("starting switchboard")?;
    // Web tests parse the `http://...` address from this exact line.
    println!(
        "Switchboard listening on http://{} (media UDP {})",
        server.http_addr(),
        server.media_addr()
    );
    // The media task ending other than by our shutdown leaves every call without media:
    // exit non-zero so systemd/Kubernetes restart the process (security review, finding 6).
    let sfu = server.sfu();
    let stopping = Arc::new(AtomicBool::new(false));
    let shutdown = {
        let stopping = stopping.clone();
        async move {
            shutdown_signal().await;
            stopping.store(true, Ordering::SeqCst);
        }
    };
    let media_task_died = async {
        sfu.closed().await;
        if stopping.load(Ordering::SeqCst) {
            // It ended on our request: let `run` finish the shutdown.
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        result = server.run(shutdown) => result,
        () = media_task_died => {
            tracing::error!("the SFU media task ended unexpectedly; exiting");
            std::process::exit(70);
        }
    }
}

fn init_logging(format: LogFormat) {
    // webrtc-rs logs a warning per datagram its handlers reject (e.g. every SRTP packet that
    // fails authentication or replay checks): one peer could write thousands of lines a
    // second. Those stay at error level unless RUST_LOG asks for them.
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,rtc::peer_connection::handler=error"));
    // Colors only for a terminal: log files and CI output stay plain.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Completes on the first SIGINT or SIGTERM. A second one exits immediately.
async fn shutdown_signal() {
    wait_for_signal().await;
    tracing::info!("signal received; shutting down (send again to force)");
    tokio::spawn(async {
        wait_for_signal().await;
        tracing::warn!("second signal: exiting now");
        std::process::exit(130);
    });
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops the server");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
