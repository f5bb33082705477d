//! The server's configuration: command-line flags with environment fallbacks. This is the
//! only place in Switchboard that reads the environment.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Switchboard: a small SFU media server with Socket.IO signaling.
#[derive(Debug, Clone, Parser)]
#[command(name = "switchboard", version, about)]
pub struct ServerConfig {
    /// HTTP listen address (web app, Socket.IO, API).
    #[arg(long, env = "SWITCHBOARD_HTTP_ADDR", default_value = "0.0.0.0:8080")]
    pub http_addr: SocketAddr,

    /// UDP address of the one media socket every peer connection uses.
    #[arg(long, env = "SWITCHBOARD_MEDIA_ADDR", default_value = "0.0.0.0:40000")]
    pub media_addr: SocketAddr,

    /// IP advertised in ICE candidates when the bind address is not reachable by browsers
    /// (NAT, containers, cloud).
    #[arg(long, env = "SWITCHBOARD_PUBLIC_IP")]
    pub public_ip: Option<IpAddr>,

    /// Directory of static web files served at `/`.
    #[arg(long, env = "SWITCHBOARD_WEB_DIR", default_value = "web/public")]
    pub web_dir: PathBuf,

    /// Secret that signs session tokens (at least 16 bytes). If absent, a random one is
    /// generated and tokens do not survive a restart.
    #[arg(long, env = "SWITCHBOARD_TOKEN_SECRET", hide_env_values = true)]
    pub token_secret: Option<String>,

    /// Seconds a call rings before it ends with `no_answer`.
    #[arg(long, env = "SWITCHBOARD_RING_TIMEOUT_SECS", default_value_t = 30)]
    pub ring_timeout_secs: u64,

    /// Log output format. Filtering is set with RUST_LOG (default `info`).
    #[arg(long, env = "SWITCHBOARD_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

impl ServerConfig {
    /// A configuration for in-process tests: HTTP and media on 127.0.0.1 with ephemeral ports,
    /// the workspace's `web/public`, a fixed test secret and a 5 s ring timeout.
    pub fn for_tests() -> Self {
        let localhost = |port| SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port);
        Self {
            http_addr: localhost(0),
            media_addr: localhost(0),
            public_ip: None,
            web_dir: PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../web/public")),
            token_secret: Some("switchboard-test-secret-not-for-production".into()),
            ring_timeout_secs: 5,
            log_format: LogFormat::Text,
        }
    }

    pub fn ring_timeout(&self) -> Duration {
        Duration::from_secs(self.ring_timeout_secs)
    }

    /// Checks what the type system cannot.
    pub fn validate(&self) -> Result<(), String> {
        if self.ring_timeout_secs == 0 {
            return Err("ring timeout must be at least 1 s".into());
        }
        if let Some(secret) = &self.token_secret {
            if secret.len() < switchboard_signaling::SignalingConfig::MIN_SECRET_LEN {
                return Err(format!(
                    "token secret must be at least {} bytes",
                    switchboard_signaling::SignalingConfig::MIN_SECRET_LEN
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_parse_with_defaults() {
        let config = ServerConfig::try_parse_from(["switchboard"]).unwrap();
        // Defaults may be overridden by the environment of whoever runs the tests, so only
        // check what the environment cannot reach.
        if std::env::var_os("SWITCHBOARD_HTTP_ADDR").is_none() {
            assert_eq!(
                config.http_addr,
                "0.0.0.0:8080".parse::<SocketAddr>().unwrap()
            );
        }
        if std::env::var_os("SWITCHBOARD_RING_TIMEOUT_SECS").is_none() {
            assert_eq!(config.ring_timeout(), Duration::from_secs(30));
        }
    }

    #[test]
    fn flags_override() {
        let config = ServerConfig::try_parse_from([
            "switchboard",
            "--http-addr",
            "127.0.0.1:9000",
            "--media-addr",
            "127.0.0.1:41000",
            "--public-ip",
            "203.0.113.7",
            "--web-dir",
            "/srv/web",
            "--token-secret",
            "0123456789abcdef0123",
            "--ring-timeout-secs",
            "12",
            "--log-format",
            "json",
        ])
        .unwrap();
        assert_eq!(config.http_addr.port(), 9000);
        assert_eq!(config.media_addr.port(), 41000);
        assert_eq!(
            config.public_ip,
            Some("203.0.113.7".parse::<IpAddr>().unwrap())
        );
        assert_eq!(config.web_dir, PathBuf::from("/srv/web"));
        assert_eq!(config.ring_timeout_secs, 12);
        assert_eq!(config.log_format, LogFormat::Json);
        assert_eq!(config.validate(), Ok(()));
    }

    #[test]
    fn bad_values_are_refused() {
        assert!(ServerConfig::try_parse_from(["switchboard", "--log-format", "xml"]).is_err());
        assert!(ServerConfig::try_parse_from(["switchboard", "--http-addr", "nowhere"]).is_err());
        let mut config = ServerConfig::for_tests();
        config.token_secret = Some("short".into());
        assert!(config.validate().is_err());
        config.token_secret = None;
        config.ring_timeout_secs = 0;
        assert!(config.validate().is_err());
        assert_eq!(ServerConfig::for_tests().validate(), Ok(()));
    }
}
