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
    /// Largest accepted client event payload (JSON, SDP included).
    pub max_payload_bytes: usize,
}

impl std::fmt::Debug for SignalingConfig {
    // Hand-written so the secret never ends up in logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignalingConfig")
            .field("ring_timeout", &self.ring_timeout)
            .field("token_secret", &"<redacted>")
            .field("token_lifetime", &self.token_lifetime)
            .field("max_payload_bytes", &self.max_payload_bytes)
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
        if self.token_secret.len() < Self::MIN_SECRET_LEN {
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
        Ok(())
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
            max_payload_bytes: 64 * 1024,
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
    }

    #[test]
    fn debug_hides_the_secret() {
        let config = SignalingConfig::with_secret(b"super-secret-value".to_vec());
        assert!(!format!("{config:?}").contains("super-secret"));
    }
}
