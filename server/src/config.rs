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

    /// Learn the public IP at start from this STUN server (`host:port`, e.g. one you run or
    /// trust), for NAT/cloud nodes without a fixed --public-ip. --public-ip overrides it.
    #[arg(long, env = "SWITCHBOARD_PUBLIC_IP_FROM_STUN")]
    pub public_ip_from_stun: Option<String>,

    /// Address (IP:PORT) written into ICE candidates when browsers reach the media port at
    /// another address than the one it binds: a port-mapping NAT or load balancer, or a test
    /// proxy such as switchboard-netbed. --public-ip (or --public-ip-from-stun) overrides its IP.
    #[arg(long, env = "SWITCHBOARD_ANNOUNCE_MEDIA_ADDR")]
    pub announce_media_addr: Option<SocketAddr>,

    /// Directory of static web files served at `/`.
    #[arg(long, env = "SWITCHBOARD_WEB_DIR", default_value = "web/public")]
    pub web_dir: PathBuf,

    /// Secret that signs session tokens (at least 32 bytes; `openssl rand -base64 32`). If
    /// neither this nor --token-secret-file is given, a random one is generated and tokens do
    /// not survive a restart. Prefer --token-secret-file: argv and environment leak.
    #[arg(
        long,
        env = "SWITCHBOARD_TOKEN_SECRET",
        hide_env_values = true,
        conflicts_with = "token_secret_file"
    )]
    pub token_secret: Option<String>,

    /// File holding the token secret, or one `kid=secret` line per key (the first signs,
    /// every one verifies: rotation without logging everyone out). For systemd
    /// `LoadCredential=` and Kubernetes secret volumes.
    #[arg(long, env = "SWITCHBOARD_TOKEN_SECRET_FILE")]
    pub token_secret_file: Option<PathBuf>,

    /// Required `iss` claim of tokens (and set in issued ones).
    #[arg(long, env = "SWITCHBOARD_TOKEN_ISSUER")]
    pub token_issuer: Option<String>,

    /// Required `aud` claim of tokens (and set in issued ones).
    #[arg(long, env = "SWITCHBOARD_TOKEN_AUDIENCE")]
    pub token_audience: Option<String>,

    /// Tokens whose expiry is further away than this many seconds are refused.
    #[arg(long, env = "SWITCHBOARD_TOKEN_MAX_LIFETIME_SECS", default_value_t = 24 * 60 * 60)]
    pub token_max_lifetime_secs: u64,

    /// Seconds a call rings before it ends with `no_answer`.
    #[arg(long, env = "SWITCHBOARD_RING_TIMEOUT_SECS", default_value_t = 30)]
    pub ring_timeout_secs: u64,

    /// The creator leaving a call ends it for everyone. Without it, a call goes on until the
    /// last but one leaves.
    #[arg(long, env = "SWITCHBOARD_CREATOR_ENDS_CALL")]
    pub creator_ends_call: bool,

    /// Log output format. Filtering is set with RUST_LOG (default `info`).
    #[arg(long, env = "SWITCHBOARD_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Production mode: refuse to start without a strong token secret (--token-secret-file or
    /// --token-secret), and serve the open demo sign-in only with --demo-sign-in. Origins are
    /// then same-origin plus --allowed-origins.
    #[arg(long, env = "SWITCHBOARD_PRODUCTION")]
    pub production: bool,

    /// Serve the open demo sign-in (POST /api/session) in production mode too.
    #[arg(long, env = "SWITCHBOARD_DEMO_SIGN_IN")]
    pub demo_sign_in: bool,

    /// Browser origins allowed to use Socket.IO and the HTTP API besides the server's own
    /// (comma-separated, e.g. `https://app.example.com`; `*` allows any). Outside production,
    /// http(s)://localhost, 127.0.0.1 and [::1] on any port are allowed too.
    #[arg(long, env = "SWITCHBOARD_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub allowed_origins: Vec<String>,

    /// Take client IPs (for the per-IP connection limit) from the last X-Forwarded-For entry.
    /// Only behind a reverse proxy that sets it.
    #[arg(long, env = "SWITCHBOARD_TRUST_FORWARDED_FOR")]
    pub trust_forwarded_for: bool,

    /// Whom each socket's presence list shows: `everyone` online, those sharing a room of
    /// the token's `rooms` grant (`rooms`; tokens without one see nobody), or `nobody`.
    #[arg(long, env = "SWITCHBOARD_PRESENCE_SCOPE", default_value_t = switchboard_signaling::PresenceScope::Everyone)]
    pub presence_scope: switchboard_signaling::PresenceScope,

    /// Reverse proxies (comma-separated CIDRs, e.g. `10.0.0.0/8,::1/128`) whose
    /// X-Forwarded-For is believed; other peers count by their own address. Without it,
    /// --trust-forwarded-for believes every peer (safe only if the port is not reachable
    /// directly).
    #[arg(long, env = "SWITCHBOARD_TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Vec<ipnet::IpNet>,

    /// IPv6 clients are counted per prefix of this length for the per-address limits.
    #[arg(long, env = "SWITCHBOARD_IPV6_PREFIX_LEN", default_value_t = 64)]
    pub ipv6_prefix_len: u8,

    /// Call history database: `sqlite://<file>?mode=rwc` or `postgres://user:pass@host/db`.
    #[arg(
        long,
        env = "SWITCHBOARD_DATABASE_URL",
        hide_env_values = true,
        default_value = switchboard_signaling::history::HistoryConfig::DEFAULT_DATABASE_URL
    )]
    pub database_url: String,

    /// Directory call recordings (WebM) are written to; created when missing.
    #[arg(long, env = "SWITCHBOARD_RECORDING_DIR", default_value = "recordings")]
    pub recording_dir: PathBuf,

    /// Recordings stop (`disk_full`) when free space in the recording directory falls below
    /// this many MiB, and none start.
    #[arg(long, env = "SWITCHBOARD_RECORDING_MIN_FREE_MB", default_value_t = 512)]
    pub recording_min_free_mb: u64,

    /// Serve `/metrics` on this separate address only (e.g. `127.0.0.1:9100`) instead of on
    /// the public HTTP port.
    #[arg(long, env = "SWITCHBOARD_METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,

    #[command(flatten)]
    pub recording: crate::recordings_http::RecordingFlags,

    #[command(flatten)]
    pub limits: LimitFlags,

    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Subcommands besides serving (the default).
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Command {
    /// Ask the server at --http-addr (loopback when it binds all addresses) whether it is
    /// ready; exit 0 if so, 1 if not. For container HEALTHCHECKs (the image has no curl).
    Healthcheck {
        /// The path to ask: `/readyz` (readiness) or `/healthz` (liveness).
        #[arg(long, default_value = "/readyz")]
        path: String,
    },
}

/// Abuse limits (docs/security.md §4 lists them with their codes).
#[derive(Debug, Clone, clap::Args)]
pub struct LimitFlags {
    /// Sustained events per second per socket (token-bucket refill).
    #[arg(long, env = "SWITCHBOARD_SOCKET_EVENTS_PER_SEC", default_value_t = 20)]
    pub socket_events_per_sec: u32,
    /// Event burst per socket (bucket size).
    #[arg(long, env = "SWITCHBOARD_SOCKET_EVENT_BURST", default_value_t = 60)]
    pub socket_event_burst: u32,
    /// Sustained events per second per user, over all their sockets.
    #[arg(long, env = "SWITCHBOARD_USER_EVENTS_PER_SEC", default_value_t = 40)]
    pub user_events_per_sec: u32,
    /// Event burst per user.
    #[arg(long, env = "SWITCHBOARD_USER_EVENT_BURST", default_value_t = 120)]
    pub user_event_burst: u32,
    /// Refused events a socket may accumulate before it is disconnected.
    #[arg(
        long,
        env = "SWITCHBOARD_STRIKES_BEFORE_DISCONNECT",
        default_value_t = 30
    )]
    pub strikes_before_disconnect: u32,
    /// Seconds after which one strike is forgiven.
    #[arg(long, env = "SWITCHBOARD_STRIKE_FORGIVENESS_SECS", default_value_t = 2)]
    pub strike_forgiveness_secs: u64,
    /// Largest event payload in bytes (JSON, SDP included).
    #[arg(long, env = "SWITCHBOARD_MAX_PAYLOAD_BYTES", default_value_t = 64 * 1024)]
    pub max_payload_bytes: usize,
    /// Largest SDP in bytes.
    #[arg(long, env = "SWITCHBOARD_MAX_SDP_BYTES", default_value_t = 32 * 1024)]
    pub max_sdp_bytes: usize,
    /// Trickled ICE candidates accepted per peer connection.
    #[arg(
        long,
        env = "SWITCHBOARD_MAX_CANDIDATES_PER_CONNECTION",
        default_value_t = 64
    )]
    pub max_candidates_per_connection: u32,
    /// Tracks (sending m-lines) one participant may publish.
    #[arg(
        long,
        env = "SWITCHBOARD_MAX_TRACKS_PER_PARTICIPANT",
        default_value_t = 4
    )]
    pub max_tracks_per_participant: usize,
    /// Most participants in one call (joined or ringing, the creator included).
    #[arg(
        long,
        env = "SWITCHBOARD_MAX_PARTICIPANTS_PER_CALL",
        default_value_t = 16
    )]
    pub max_participants_per_call: usize,
    /// Concurrent Socket.IO connections per user.
    #[arg(long, env = "SWITCHBOARD_MAX_SOCKETS_PER_USER", default_value_t = 8)]
    pub max_sockets_per_user: usize,
    /// Concurrent Socket.IO connections per client IP.
    #[arg(long, env = "SWITCHBOARD_MAX_SOCKETS_PER_IP", default_value_t = 64)]
    pub max_sockets_per_ip: usize,
    /// Open HTTP connections at most; further ones are closed at accept (keep it under the
    /// file descriptor limit, which recordings and the media socket need too).
    #[arg(long, env = "SWITCHBOARD_MAX_CONNECTIONS", default_value_t = 10_000)]
    pub max_connections: usize,
    /// Seconds a client gets to send a request's headers before its connection is closed.
    #[arg(
        long,
        env = "SWITCHBOARD_HEADER_READ_TIMEOUT_SECS",
        default_value_t = 10
    )]
    pub header_read_timeout_secs: u64,
    /// Seconds a new Socket.IO transport has to authenticate (CONNECT) before it is closed.
    #[arg(
        long,
        env = "SWITCHBOARD_SOCKETIO_CONNECT_TIMEOUT_SECS",
        default_value_t = 10
    )]
    pub socketio_connect_timeout_secs: u64,
    /// New Engine.IO sessions one client IP may open per --socketio-connect-timeout-secs (so
    /// also the unauthenticated sessions it can hold at once).
    #[arg(
        long,
        env = "SWITCHBOARD_MAX_PREAUTH_SESSIONS_PER_IP",
        default_value_t = 32
    )]
    pub max_preauth_sessions_per_ip: usize,
    /// Sustained Socket.IO connections per minute of one user.
    #[arg(long, env = "SWITCHBOARD_USER_CONNECTS_PER_MIN", default_value_t = 30)]
    pub user_connects_per_min: u32,
    /// Connections one user may open in a burst.
    #[arg(long, env = "SWITCHBOARD_USER_CONNECT_BURST", default_value_t = 10)]
    pub user_connect_burst: u32,
    /// Sustained Socket.IO connections per second from one client address (IPv6: prefix).
    #[arg(long, env = "SWITCHBOARD_IP_CONNECTS_PER_SEC", default_value_t = 20)]
    pub ip_connects_per_sec: u32,
    /// Connections one client address may open in a burst.
    #[arg(long, env = "SWITCHBOARD_IP_CONNECT_BURST", default_value_t = 200)]
    pub ip_connect_burst: u32,
    /// Times one caller may ring the same person per minute (after the burst).
    #[arg(
        long,
        env = "SWITCHBOARD_RINGS_PER_CALLEE_PER_MIN",
        default_value_t = 6
    )]
    pub rings_per_callee_per_min: u32,
    /// Rings of the same person one caller may place in a burst.
    #[arg(long, env = "SWITCHBOARD_RING_BURST_PER_CALLEE", default_value_t = 3)]
    pub ring_burst_per_callee: u32,
    /// Seconds after someone declines a call during which its caller may not ring them again.
    #[arg(long, env = "SWITCHBOARD_DECLINE_COOLDOWN_SECS", default_value_t = 30)]
    pub decline_cooldown_secs: u64,
    /// Seconds a peer connection may take to complete ICE + DTLS before it is released.
    #[arg(
        long,
        env = "SWITCHBOARD_MEDIA_CONNECT_TIMEOUT_SECS",
        default_value_t = 20
    )]
    pub media_connect_timeout_secs: u64,
}

impl Default for LimitFlags {
    fn default() -> Self {
        // The same defaults as the flags (one source of truth: clap's).
        LimitWrapper::parse_from(["limits"]).limits
    }
}

#[derive(Parser)]
struct LimitWrapper {
    #[command(flatten)]
    limits: LimitFlags,
}

impl LimitFlags {
    /// The signaling side of the limits.
    pub fn signaling(&self) -> switchboard_signaling::Limits {
        switchboard_signaling::Limits {
            socket_events_per_sec: self.socket_events_per_sec,
            socket_event_burst: self.socket_event_burst,
            user_events_per_sec: self.user_events_per_sec,
            user_event_burst: self.user_event_burst,
            strikes_before_disconnect: self.strikes_before_disconnect,
            strike_forgiveness: Duration::from_secs(self.strike_forgiveness_secs),
            max_sdp_bytes: self.max_sdp_bytes,
            max_candidates_per_connection: self.max_candidates_per_connection,
            max_tracks_per_participant: self.max_tracks_per_participant,
            max_participants_per_call: self.max_participants_per_call,
            max_sockets_per_user: self.max_sockets_per_user,
            max_sockets_per_ip: self.max_sockets_per_ip,
            user_connects_per_min: self.user_connects_per_min,
            user_connect_burst: self.user_connect_burst,
            ip_connects_per_sec: self.ip_connects_per_sec,
            ip_connect_burst: self.ip_connect_burst,
            rings_per_callee_per_min: self.rings_per_callee_per_min,
            ring_burst_per_callee: self.ring_burst_per_callee,
            decline_cooldown: Duration::from_secs(self.decline_cooldown_secs),
        }
    }
}

impl ServerConfig {
    /// A configuration for in-process tests: HTTP and media on 127.0.0.1 with ephemeral ports,
    /// the workspace's `web/public`, a fixed test secret and a 5 s ring timeout, and a fresh
    /// history database and recording directory under the system's temporary directory.
    pub fn for_tests() -> Self {
        let localhost = |port| SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port);
        let test_scratch = std::env::temp_dir().join(format!(
            "switchboard-test-{}-{:016x}",
            std::process::id(),
            rand::random::<u64>()
        ));
        Self {
            http_addr: localhost(0),
            media_addr: localhost(0),
            public_ip: None,
            public_ip_from_stun: None,
            announce_media_addr: None,
            web_dir: PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../web/public")),
            token_secret: Some("switchboard-test-secret-not-for-production".into()),
            token_secret_file: None,
            token_issuer: None,
            token_audience: None,
            token_max_lifetime_secs: 24 * 60 * 60,
            ring_timeout_secs: 5,
            creator_ends_call: false,
            log_format: LogFormat::Text,
            production: false,
            demo_sign_in: false,
            allowed_origins: Vec::new(),
            trust_forwarded_for: false,
            presence_scope: switchboard_signaling::PresenceScope::Everyone,
            trusted_proxies: Vec::new(),
            ipv6_prefix_len: 64,
            // A fresh history database and recording directory per test server.
            database_url: format!(
                "sqlite://{}?mode=rwc",
                test_scratch.join("history.sqlite").display()
            ),
            recording_dir: test_scratch.join("recordings"),
            recording_min_free_mb: 1,
            metrics_addr: None,
            recording: Default::default(),
            limits: LimitFlags::default(),
            command: None,
        }
    }

    /// Whether `POST /api/session` is served: always in development, on request in production.
    pub fn demo_sign_in_enabled(&self) -> bool {
        !self.production || self.demo_sign_in
    }

    pub fn ring_timeout(&self) -> Duration {
        Duration::from_secs(self.ring_timeout_secs)
    }

    /// Checks what the type system cannot.
    pub fn validate(&self) -> Result<(), String> {
        if self.ring_timeout_secs == 0 {
            return Err("ring timeout must be at least 1 s".into());
        }
        if self.production && self.token_secret.is_none() && self.token_secret_file.is_none() {
            return Err(
                "production mode needs a token secret: --token-secret-file (or --token-secret / SWITCHBOARD_TOKEN_SECRET); generate one with `openssl rand -base64 32`"
                    .into(),
            );
        }
        if let Some(announce) = self.announce_media_addr {
            if announce.port() == 0 || announce.ip().is_unspecified() {
                return Err(format!(
                    "--announce-media-addr {announce}: browsers need a concrete IP and port"
                ));
            }
        }
        if self.token_max_lifetime_secs < 60 {
            return Err("token max lifetime must be at least 60 s".into());
        }
        for origin in &self.allowed_origins {
            if origin != "*" && !crate::origin::is_origin(origin) {
                return Err(format!(
                    "allowed origin `{origin}` is not `scheme://host[:port]`"
                ));
            }
        }
        if self.limits.max_connections == 0
            || self.limits.header_read_timeout_secs == 0
            || self.limits.socketio_connect_timeout_secs == 0
            || self.limits.max_preauth_sessions_per_ip == 0
        {
            return Err("connection limits and timeouts must be positive".into());
        }
        if self.limits.strike_forgiveness_secs == 0 || self.limits.media_connect_timeout_secs == 0 {
            return Err("strike forgiveness and media connect timeout must be at least 1 s".into());
        }
        self.token_keys()?;
        Ok(())
    }

    /// The configured token keys (the first signs): from --token-secret-file, or
    /// --token-secret without a key id, or none (a random secret will be used). Each is
    /// checked for strength (placeholders and low entropy are refused in production).
    pub fn token_keys(&self) -> Result<Vec<switchboard_signaling::identity::TokenKey>, String> {
        let keys = match (&self.token_secret, &self.token_secret_file) {
            (_, Some(path)) => crate::secrets::read_key_file(path).map_err(|e| e.to_string())?,
            (Some(secret), None) => vec![switchboard_signaling::identity::TokenKey {
                kid: None,
                secret: secret.as_bytes().to_vec(),
            }],
            (None, None) => Vec::new(),
        };
        for key in &keys {
            let what = match &key.kid {
                Some(kid) => format!("token secret `{kid}`"),
                None => "the token secret".to_owned(),
            };
            crate::secrets::check_strength(&what, &key.secret, self.production)
                .map_err(|e| e.to_string())?;
        }
        Ok(keys)
    }

    /// `iss`/`aud` checks and the lifetime cap for tokens.
    pub fn token_policy(&self) -> switchboard_signaling::identity::TokenPolicy {
        switchboard_signaling::identity::TokenPolicy {
            issuer: self.token_issuer.clone(),
            audience: self.token_audience.clone(),
            max_lifetime: Duration::from_secs(self.token_max_lifetime_secs),
        }
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
            "0123456789abcdef0123456789abcdef",
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
        for bad in ["0.0.0.0:3479", "127.0.0.1:0"] {
            let config =
                ServerConfig::try_parse_from(["switchboard", "--announce-media-addr", bad])
                    .unwrap();
            assert!(config.validate().is_err(), "{bad} accepted");
        }
        let config = ServerConfig::try_parse_from([
            "switchboard",
            "--announce-media-addr",
            "203.0.113.7:3479",
        ])
        .unwrap();
        assert_eq!(
            config.announce_media_addr,
            Some("203.0.113.7:3479".parse().unwrap())
        );
    }

    #[test]
    fn production_needs_a_secret_and_closes_the_demo_sign_in() {
        let mut config = ServerConfig::for_tests();
        assert!(config.demo_sign_in_enabled());
        config.production = true;
        assert!(!config.demo_sign_in_enabled());
        config.demo_sign_in = true;
        assert!(config.demo_sign_in_enabled());
        assert_eq!(config.validate(), Ok(()));
        config.token_secret = None;
        assert!(config.validate().unwrap_err().contains("production"));

        let parsed = ServerConfig::try_parse_from([
            "switchboard",
            "--production",
            "--allowed-origins",
            "https://a.example,https://b.example:8443",
            "--max-sockets-per-ip",
            "3",
        ])
        .unwrap();
        assert!(parsed.production);
        assert_eq!(parsed.allowed_origins.len(), 2);
        assert_eq!(parsed.limits.max_sockets_per_ip, 3);
        assert!(parsed.validate().is_err(), "no secret");
        let mut bad = ServerConfig::for_tests();
        bad.allowed_origins = vec!["example.com".into()];
        assert!(bad.validate().is_err());
    }

    #[test]
    fn limit_defaults_match_signaling() {
        let flags = LimitFlags::default();
        let limits = flags.signaling();
        let defaults = switchboard_signaling::Limits::default();
        assert_eq!(limits.socket_event_burst, defaults.socket_event_burst);
        assert_eq!(limits.max_sockets_per_ip, defaults.max_sockets_per_ip);
        assert_eq!(limits.max_sdp_bytes, defaults.max_sdp_bytes);
        assert_eq!(limits.ring_burst_per_callee, defaults.ring_burst_per_callee);
        assert_eq!(
            limits.rings_per_callee_per_min,
            defaults.rings_per_callee_per_min
        );
        assert_eq!(limits.decline_cooldown, defaults.decline_cooldown);
    }
}
