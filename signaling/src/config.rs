//! Signaling configuration. Filled by the server binary from flags and environment; this crate
//! never reads the environment.

use std::time::Duration;

/// Everything signaling can be configured with.
#[derive(Clone)]
pub struct SignalingConfig {
    /// How long a call may ring before it ends with `no_answer`.
    pub ring_timeout: Duration,
    /// HS256 secret for session tokens. At least [`SignalingConfig::MIN_SECRET_LEN`] bytes.
    pub token_secret: Vec<u8>,
    /// Lifetime of an issued session token.
    pub token_lifetime: Duration,
    /// Keys with ids for rotation: the first signs, any verifies. When empty,
    /// `token_secret` alone signs and verifies (without a `kid`).
    pub token_keys: Vec<crate::identity::TokenKey>,
    /// `iss`/`aud` checks and the longest accepted token lifetime.
    pub token_policy: crate::identity::TokenPolicy,
    /// How long a new transport may take to send its authenticated CONNECT (socketioxide's
    /// default is 45 s; unauthenticated sessions are held that long).
    pub connect_timeout: Duration,
    /// Largest accepted client event payload (JSON, SDP included).
    pub max_payload_bytes: usize,
    /// Serve the open demo sign-in (`POST /api/session`), which gives anyone a token with
    /// full grants. Off in production unless asked for.
    pub demo_sign_in: bool,
    /// Take a client's IP from the last `X-Forwarded-For` entry (set this only behind a
    /// reverse proxy that appends it); otherwise the TCP peer address is used.
    pub trust_forwarded_for: bool,
    /// Reverse proxies whose `X-Forwarded-For` is believed (TCP peers in these networks).
    /// Empty with `trust_forwarded_for`: every peer is believed, which is only safe when the
    /// port is reachable through the proxy alone.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// IPv6 clients are counted per prefix of this length (one /64 is one subscriber).
    pub ipv6_prefix_len: u8,
    /// The creator leaving a call ends it for everyone (otherwise a call ends when the last
    /// but one leaves).
    pub creator_ends_call: bool,
    /// Abuse limits (docs/security.md §4).
    pub limits: Limits,
    /// Whom each socket's presence feed lists (docs/protocol.md, presence).
    pub presence_scope: PresenceScope,
    /// Presence changes are gathered this long and then sent as one `presence_update` per
    /// socket: the cost of a connect no longer grows with the number of sockets.
    pub presence_interval: Duration,
    /// Packets queued for one socket (engine.io `max_buffer_size`). A socket whose queue is
    /// full when a call event is due is disconnected rather than silently missing it.
    pub send_queue_packets: usize,
}

/// Whom the presence feed lists to a socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PresenceScope {
    /// Everyone online (the demo's lobby).
    #[default]
    Everyone,
    /// Those whose token's `rooms` grant shares a room with the socket's token; tokens
    /// without a `rooms` grant see, and are seen by, nobody.
    Rooms,
    /// Nobody: an application tells its users whom to call.
    Nobody,
}

impl std::str::FromStr for PresenceScope {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "everyone" => Ok(Self::Everyone),
            "rooms" => Ok(Self::Rooms),
            "nobody" => Ok(Self::Nobody),
            _ => Err(ConfigError(format!(
                "presence scope `{s}`: expected everyone, rooms or nobody"
            ))),
        }
    }
}

impl std::fmt::Display for PresenceScope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Everyone => "everyone",
            Self::Rooms => "rooms",
            Self::Nobody => "nobody",
        })
    }
}

/// Abuse limits. Breaking one refuses the event with a stable code; a socket that keeps
/// breaking them is disconnected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Sustained events per second one socket may send (token bucket refill rate).
    pub socket_events_per_sec: u32,
    /// Events one socket may send in a burst (bucket size).
    pub socket_event_burst: u32,
    /// Sustained events per second one user may send over all their sockets.
    pub user_events_per_sec: u32,
    /// Burst over all of one user's sockets.
    pub user_event_burst: u32,
    /// Refused events a socket may accumulate (bucket size) before it is disconnected.
    pub strikes_before_disconnect: u32,
    /// How fast strikes are forgiven: one per this interval.
    pub strike_forgiveness: Duration,
    /// Largest SDP in `webrtc_offer` / `webrtc_answer` (the payload limit applies too).
    pub max_sdp_bytes: usize,
    /// Trickled ICE candidates accepted per peer connection (publisher, subscriber).
    pub max_candidates_per_connection: u32,
    /// Sending audio/video sections (`m=` lines) allowed in one publisher offer.
    pub max_tracks_per_participant: usize,
    /// Members of one call (joined or ringing), its creator included.
    pub max_participants_per_call: usize,
    /// Concurrent Socket.IO connections of one user.
    pub max_sockets_per_user: usize,
    /// Concurrent Socket.IO connections from one client IP (unknown IPs are not limited).
    pub max_sockets_per_ip: usize,
    /// Sustained connections per minute of one user (token bucket refill rate).
    pub user_connects_per_min: u32,
    /// Connections one user may open in a burst.
    pub user_connect_burst: u32,
    /// Sustained connections per second from one client address (IPv6: per prefix).
    pub ip_connects_per_sec: u32,
    /// Connections one client address may open in a burst.
    pub ip_connect_burst: u32,
    /// Times one caller may ring the same person per minute (token bucket refill rate).
    pub rings_per_callee_per_min: u32,
    /// Rings of the same person one caller may place in a burst.
    pub ring_burst_per_callee: u32,
    /// After someone declines a call, how long its caller may not ring them again.
    pub decline_cooldown: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            socket_events_per_sec: 20,
            socket_event_burst: 60,
            user_events_per_sec: 40,
            user_event_burst: 120,
            strikes_before_disconnect: 30,
            strike_forgiveness: Duration::from_secs(2),
            max_sdp_bytes: 32 * 1024,
            max_candidates_per_connection: 64,
            max_tracks_per_participant: 4,
            max_participants_per_call: 16,
            max_sockets_per_user: 8,
            max_sockets_per_ip: 64,
            user_connects_per_min: 30,
            user_connect_burst: 10,
            ip_connects_per_sec: 20,
            ip_connect_burst: 200,
            rings_per_callee_per_min: 6,
            ring_burst_per_callee: 3,
            decline_cooldown: Duration::from_secs(30),
        }
    }
}

impl Limits {
    pub fn validate(&self) -> Result<(), ConfigError> {
        let positive = [
            ("socket_events_per_sec", self.socket_events_per_sec as usize),
            ("socket_event_burst", self.socket_event_burst as usize),
            ("user_events_per_sec", self.user_events_per_sec as usize),
            ("user_event_burst", self.user_event_burst as usize),
            (
                "strikes_before_disconnect",
                self.strikes_before_disconnect as usize,
            ),
            ("max_sdp_bytes", self.max_sdp_bytes),
            (
                "max_candidates_per_connection",
                self.max_candidates_per_connection as usize,
            ),
            (
                "max_tracks_per_participant",
                self.max_tracks_per_participant,
            ),
            ("max_sockets_per_user", self.max_sockets_per_user),
            ("max_sockets_per_ip", self.max_sockets_per_ip),
            ("user_connects_per_min", self.user_connects_per_min as usize),
            ("user_connect_burst", self.user_connect_burst as usize),
            ("ip_connects_per_sec", self.ip_connects_per_sec as usize),
            ("ip_connect_burst", self.ip_connect_burst as usize),
            (
                "rings_per_callee_per_min",
                self.rings_per_callee_per_min as usize,
            ),
            ("ring_burst_per_callee", self.ring_burst_per_callee as usize),
        ];
        for (name, value) in positive {
            if value == 0 {
                return Err(ConfigError(format!("{name} must be positive")));
            }
        }
        if self.max_participants_per_call < 2 {
            return Err(ConfigError(
                "max_participants_per_call must be at least 2 (a caller and a callee)".into(),
            ));
        }
        if self.strike_forgiveness.is_zero() {
            return Err(ConfigError("strike_forgiveness must be positive".into()));
        }
        Ok(())
    }
}

impl std::fmt::Debug for SignalingConfig {
    // Hand-written so the secret never ends up in logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignalingConfig")
            .field("ring_timeout", &self.ring_timeout)
            .field("token_secret", &"<redacted>")
            .field("token_lifetime", &self.token_lifetime)
            .field("token_keys", &self.token_keys)
            .field("token_policy", &self.token_policy)
            .field("connect_timeout", &self.connect_timeout)
            .field("max_payload_bytes", &self.max_payload_bytes)
            .field("demo_sign_in", &self.demo_sign_in)
            .field("trust_forwarded_for", &self.trust_forwarded_for)
            .field("trusted_proxies", &self.trusted_proxies)
            .field("ipv6_prefix_len", &self.ipv6_prefix_len)
            .field("creator_ends_call", &self.creator_ends_call)
            .field("limits", &self.limits)
            .field("presence_scope", &self.presence_scope)
            .field("presence_interval", &self.presence_interval)
            .field("send_queue_packets", &self.send_queue_packets)
            .finish()
    }
}

/// A configuration value that would make signaling misbehave.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid signaling configuration: {0}")]
pub struct ConfigError(pub String);

impl SignalingConfig {
    /// Shortest accepted token secret, in bytes.
    pub const MIN_SECRET_LEN: usize = 16;

    /// Defaults with the given token secret.
    pub fn with_secret(token_secret: impl Into<Vec<u8>>) -> Self {
        Self {
            token_secret: token_secret.into(),
            ..Self::default()
        }
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let shortest = self
            .token_keys
            .iter()
            .map(|key| key.secret.len())
            .chain(std::iter::once(self.token_secret.len()))
            .min()
            .unwrap_or(0);
        if shortest < Self::MIN_SECRET_LEN {
            return Err(ConfigError(format!(
                "token_secret must be at least {} bytes",
                Self::MIN_SECRET_LEN
            )));
        }
        if self.ring_timeout.is_zero() {
            return Err(ConfigError("ring_timeout must be positive".into()));
        }
        if self.token_lifetime < Duration::from_secs(60) {
            return Err(ConfigError("token_lifetime must be at least 60 s".into()));
        }
        if self.max_payload_bytes < 1024 {
            return Err(ConfigError(
                "max_payload_bytes must be at least 1024".into(),
            ));
        }
        if self.presence_interval.is_zero() || self.presence_interval > Duration::from_secs(10) {
            return Err(ConfigError(
                "presence_interval must be between 1 ms and 10 s".into(),
            ));
        }
        if self.ipv6_prefix_len == 0 || self.ipv6_prefix_len > 128 {
            return Err(ConfigError(
                "ipv6_prefix_len must be between 1 and 128".into(),
            ));
        }
        if self.send_queue_packets < 16 {
            return Err(ConfigError("send_queue_packets must be at least 16".into()));
        }
        self.limits.validate()
    }
}

impl Default for SignalingConfig {
    /// Protocol defaults; the secret is empty and must be set before [`validate`](Self::validate)
    /// passes.
    fn default() -> Self {
        Self {
            ring_timeout: Duration::from_secs(30),
            token_secret: Vec::new(),
            token_lifetime: Duration::from_secs(12 * 60 * 60),
            token_keys: Vec::new(),
            token_policy: crate::identity::TokenPolicy::default(),
            connect_timeout: Duration::from_secs(10),
            max_payload_bytes: 64 * 1024,
            demo_sign_in: true,
            trust_forwarded_for: false,
            trusted_proxies: Vec::new(),
            ipv6_prefix_len: 64,
            creator_ends_call: false,
            limits: Limits::default(),
            presence_scope: PresenceScope::default(),
            presence_interval: Duration::from_millis(250),
            // A 16-person call's catch-up (tracks, media states, offers) is well under 200
            // packets; presence adds at most one per interval.
            send_queue_packets: 1024,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_need_a_secret() {
        assert!(SignalingConfig::default().validate().is_err());
        let config = SignalingConfig::with_secret(vec![7; 32]);
        assert_eq!(config.validate(), Ok(()));
        assert_eq!(config.ring_timeout, Duration::from_secs(30));
        assert_eq!(config.max_payload_bytes, 65536);
    }

    #[test]
    fn rejects_nonsense() {
        let mut config = SignalingConfig::with_secret(vec![7; 32]);
        config.ring_timeout = Duration::ZERO;
        assert!(config.validate().is_err());
        let mut config = SignalingConfig::with_secret(vec![7; 32]);
        config.max_payload_bytes = 10;
        assert!(config.validate().is_err());
        let mut config = SignalingConfig::with_secret(vec![7; 32]);
        config.limits.socket_event_burst = 0;
        assert!(config.validate().is_err());
    }

    #[test]
    fn debug_hides_the_secret() {
        let config = SignalingConfig::with_secret(b"super-secret-value".to_vec());
        assert!(!format!("{config:?}").contains("super-secret"));
    }
}
