//! Identity: display-name validation and HS256 access tokens.
//!
//! A token is a JWT signed with HMAC-SHA256 and the server's secret. Claims (docs/security.md
//! §2 is the reference an application backend mints against):
//! `sub` (user id, 1–128 bytes of `[A-Za-z0-9._:@-]`), `name` (display name), `exp` (seconds
//! since the epoch, at most [`TokenPolicy::max_lifetime`] ahead), optional `nbf`, `iss` and
//! `aud` (checked when configured) and `grants` (what the bearer may do; absent or empty means
//! nothing beyond being online). Several keys may verify at once, chosen by the header's `kid`.
//! The demo sign-in (`POST /api/session`) issues [`Grants::full`].

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{errors::ErrorKind, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::UserId;

/// A signed-in user, as the protocol shows them (`{"id", "name"}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub id: UserId,
    pub name: String,
}

/// Longest display name, in characters, after trimming.
pub const MAX_NAME_CHARS: usize = 40;

/// Why a display name was refused. Wire code: `invalid_name`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("name must not be empty")]
    Empty,
    #[error("name must be at most {MAX_NAME_CHARS} characters")]
    TooLong,
    #[error("name must not contain control characters")]
    ControlCharacter,
}

impl NameError {
    pub fn code(&self) -> &'static str {
        "invalid_name"
    }
}

/// Trims `name` and checks it against the protocol's rules (1–40 characters, no control
/// characters). Returns the trimmed name.
pub fn validate_name(name: &str) -> Result<String, NameError> {
    let name = name.trim();
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(NameError::TooLong);
    }
    if name.chars().any(char::is_control) {
        return Err(NameError::ControlCharacter);
    }
    Ok(name.to_owned())
}

/// Why a token was refused at connect. The wire code is also the `connect_error` message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("no token was presented")]
    Missing,
    #[error("the token is malformed or badly signed")]
    Invalid,
    #[error("the token has expired")]
    Expired,
}

impl TokenError {
    /// Stable wire code: `missing_token`, `invalid_token` or `expired_token`.
    pub fn code(&self) -> &'static str {
        match self {
            TokenError::Missing => "missing_token",
            TokenError::Invalid => "invalid_token",
            TokenError::Expired => "expired_token",
        }
    }
}

/// Longest token accepted, in bytes: far above any real one, it only bounds the work a
/// garbage token can cause.
pub const MAX_TOKEN_LEN: usize = 8 * 1024;
/// Longest user id (`sub`) accepted.
pub const MAX_SUB_LEN: usize = 128;
/// Most entries in `grants.rooms`.
pub const MAX_ROOMS: usize = 64;

/// A kind of track a token may publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PublishSource {
    Audio,
    Video,
    /// Screen sharing. An SDP cannot tell a screen track from a camera track, so either
    /// `video` or `screen` lets a client send `m=video`.
    Screen,
}

/// What the bearer of a token may do. Every field defaults to "no".
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grants {
    /// Place calls (`initiate_call`) and accept them (`accept_call`).
    #[serde(default)]
    pub call: bool,
    /// Track kinds the bearer may send on its publisher connection.
    #[serde(default)]
    pub publish: Vec<PublishSource>,
    /// Receive others' media (answer the subscriber connection).
    #[serde(default)]
    pub subscribe: bool,
    /// Start and stop recordings of the calls the bearer is in.
    #[serde(default)]
    pub record: bool,
    /// When present, the only calls (by call id) the bearer may accept or act on; such a token
    /// cannot place new calls, whose ids the server chooses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rooms: Option<Vec<String>>,
}

impl Grants {
    /// Everything, in every call: what the demo sign-in issues.
    pub fn full() -> Grants {
        Grants {
            call: true,
            publish: vec![
                PublishSource::Audio,
                PublishSource::Video,
                PublishSource::Screen,
            ],
            subscribe: true,
            record: true,
            rooms: None,
        }
    }

    pub fn may_publish(&self, source: PublishSource) -> bool {
        self.publish.contains(&source)
    }

    /// `m=video` is allowed by either the `video` or the `screen` grant.
    pub fn may_publish_video(&self) -> bool {
        self.may_publish(PublishSource::Video) || self.may_publish(PublishSource::Screen)
    }

    /// Whether the grants allow acting in the call `call_id`.
    pub fn allows_room(&self, call_id: &str) -> bool {
        match &self.rooms {
            None => true,
            Some(rooms) => rooms.iter().any(|r| r == call_id),
        }
    }
}

/// The claims of an access token, as an application backend writes them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub name: String,
    pub exp: u64,
    #[serde(default)]
    pub grants: Grants,
}

/// A verified token: who, what they may do, and until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub user: User,
    pub grants: Grants,
    /// Seconds since the Unix epoch.
    pub expires_at: u64,
}

impl Identity {
    /// Whether the token has expired by now. Checked on every event that starts something new.
    pub fn is_expired(&self) -> bool {
        unix_now() >= self.expires_at
    }
}

/// One HS256 key. `kid` names it in the JWT header so that a secret can be rotated: a new
/// key signs while the old one still verifies the tokens already handed out.
#[derive(Clone)]
pub struct TokenKey {
    pub kid: Option<String>,
    pub secret: Vec<u8>,
}

impl std::fmt::Debug for TokenKey {
    // Hand-written so the secret never ends up in logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenKey")
            .field("kid", &self.kid)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// Most keys verified at once (rotation needs two or three; a bound keeps the work a token
/// without `kid` can cause small).
pub const MAX_TOKEN_KEYS: usize = 8;

/// How tokens are checked beyond their signature (finding 23 of the security review).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenPolicy {
    /// Required `iss`, when set (issued tokens carry it).
    pub issuer: Option<String>,
    /// Required `aud`, when set (issued tokens carry it). When unset, `aud` is not checked.
    pub audience: Option<String>,
    /// Tokens whose `exp` is further away than this are refused: a leaked token cannot be
    /// valid for years.
    pub max_lifetime: Duration,
}

impl Default for TokenPolicy {
    fn default() -> Self {
        Self {
            issuer: None,
            audience: None,
            max_lifetime: Duration::from_secs(24 * 60 * 60),
        }
    }
}

/// Tokens signed by the first key, verified by any.
#[derive(Clone)]
struct Keys {
    kid: Option<String>,
    encoding: EncodingKey,
    /// Every key (the signing one first) with its id.
    decoding: Vec<(Option<String>, DecodingKey)>,
}

/// Issues and verifies session tokens with HS256 keys.
#[derive(Clone)]
pub struct TokenIssuer {
    keys: std::sync::Arc<Keys>,
    lifetime: Duration,
    policy: TokenPolicy,
}

impl TokenIssuer {
    pub fn new(secret: &[u8], lifetime: Duration) -> Self {
        Self::with_keys(
            &[TokenKey {
                kid: None,
                secret: secret.to_vec(),
            }],
            lifetime,
            TokenPolicy::default(),
        )
    }

    /// Signs with `keys[0]` (its `kid` in the header), verifies with any of `keys` (the one
    /// a token's `kid` names, or each in turn for a token without `kid`), under `policy`.
    /// `keys` must not be empty; only the first [`MAX_TOKEN_KEYS`] are used.
    pub fn with_keys(keys: &[TokenKey], lifetime: Duration, policy: TokenPolicy) -> Self {
        let first = keys.first().expect("at least one token key");
        let decoding = keys
            .iter()
            .take(MAX_TOKEN_KEYS)
            .map(|key| (key.kid.clone(), DecodingKey::from_secret(&key.secret)))
            .collect();
        Self {
            keys: std::sync::Arc::new(Keys {
                kid: first.kid.clone(),
                encoding: EncodingKey::from_secret(&first.secret),
                decoding,
            }),
            // Issued tokens respect the policy's cap too.
            lifetime: lifetime.min(policy.max_lifetime),
            policy,
        }
    }

    /// Validates `name` and signs a token with [`Grants::full`] for a new user with a fresh
    /// id: the demo sign-in.
    pub fn issue(&self, name: &str) -> Result<(String, User), NameError> {
        self.issue_with(name, Grants::full(), self.lifetime)
    }

    /// Validates `name` and signs a token for a new user with the given grants and lifetime.
    pub fn issue_with(
        &self,
        name: &str,
        grants: Grants,
        lifetime: Duration,
    ) -> Result<(String, User), NameError> {
        let name = validate_name(name)?;
        let user = User {
            id: UserId::random(),
            name,
        };
        let claims = Claims {
            sub: user.id.to_string(),
            name: user.name.clone(),
            exp: unix_now().saturating_add(lifetime.as_secs()),
            grants,
        };
        Ok((self.sign(&claims), user))
    }

    /// Signs arbitrary claims, as an application backend would.
    /// The signing key's `kid`, and the policy's `iss`/`aud` when set, are added.
    pub fn sign(&self, claims: &Claims) -> String {
        #[derive(Serialize)]
        struct WithPolicy<'a> {
            #[serde(flatten)]
            claims: &'a Claims,
            #[serde(skip_serializing_if = "Option::is_none")]
            iss: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            aud: Option<&'a str>,
        }
        let mut header = Header::new(Algorithm::HS256);
        header.kid = self.keys.kid.clone();
        let body = WithPolicy {
            claims,
            iss: self.policy.issuer.as_deref(),
            aud: self.policy.audience.as_deref(),
        };
        // Encoding HS256 with a valid key cannot fail: it only serializes the claims and
        // computes an HMAC.
        jsonwebtoken::encode(&header, &body, &self.keys.encoding)
            .expect("HS256 encoding of plain claims is infallible")
    }

    /// Checks a token and returns whose it is (the history API's bearer check).
    pub fn verify(&self, token: Option<&str>) -> Result<User, TokenError> {
        self.verify_identity(token).map(|identity| identity.user)
    }

    /// Checks a token presented at connect: signature (HS256 only), expiry (no leeway), and
    /// the claims' shape. Returns the identity with its grants.
    pub fn verify_identity(&self, token: Option<&str>) -> Result<Identity, TokenError> {
        let token = match token.map(str::trim) {
            None | Some("") => return Err(TokenError::Missing),
            Some(token) => token,
        };
        if token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::Invalid);
        }
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        // A token that is not valid yet is not valid (jsonwebtoken's default skips `nbf`).
        validation.validate_nbf = true;
        let mut required = vec!["exp", "sub"];
        if let Some(issuer) = &self.policy.issuer {
            validation.set_issuer(&[issuer]);
            required.push("iss");
        }
        match &self.policy.audience {
            Some(audience) => {
                validation.set_audience(&[audience]);
                required.push("aud");
            }
            // Without a configured audience, a token that names one is not refused for it.
            None => validation.validate_aud = false,
        }
        validation.set_required_spec_claims(&required);
        let kid = jsonwebtoken::decode_header(token)
            .map_err(|_| TokenError::Invalid)?
            .kid;
        let mut result = Err(TokenError::Invalid);
        for (key_id, key) in &self.keys.decoding {
            // A token naming a key is checked with that key only.
            if kid.is_some() && kid != *key_id {
                continue;
            }
            result = jsonwebtoken::decode::<Claims>(token, key, &validation).map_err(|e| {
                match e.kind() {
                    ErrorKind::ExpiredSignature => TokenError::Expired,
                    _ => TokenError::Invalid,
                }
            });
            if !matches!(
                result,
                Err(TokenError::Invalid) if kid.is_none()
            ) {
                break;
            }
        }
        let claims = result?.claims;
        let name = validate_name(&claims.name).map_err(|_| TokenError::Invalid)?;
        if !is_valid_sub(&claims.sub) {
            return Err(TokenError::Invalid);
        }
        if claims.exp.saturating_sub(unix_now()) > self.policy.max_lifetime.as_secs() {
            return Err(TokenError::Invalid);
        }
        if claims
            .grants
            .rooms
            .as_ref()
            .is_some_and(|rooms| rooms.len() > MAX_ROOMS)
        {
            return Err(TokenError::Invalid);
        }
        Ok(Identity {
            user: User {
                id: UserId::new(claims.sub),
                name,
            },
            grants: claims.grants,
            expires_at: claims.exp,
        })
    }

    /// A token that expired an hour ago, for tests of the `expired_token` path.
    #[doc(hidden)]
    pub fn issue_expired_for_tests(&self, name: &str) -> String {
        self.sign(&Claims {
            sub: UserId::random().to_string(),
            name: name.to_owned(),
            exp: unix_now().saturating_sub(3600),
            grants: Grants::full(),
        })
    }
}

/// Whether `sub` is an acceptable user id: 1–[`MAX_SUB_LEN`] bytes of `[A-Za-z0-9._:@-]`.
/// The id becomes the SFU stream label that is written raw into other members' SDP
/// (`a=msid:`), so spaces and line breaks would inject SDP (security review finding 19).
pub fn is_valid_sub(sub: &str) -> bool {
    !sub.is_empty()
        && sub.len() <= MAX_SUB_LEN
        && sub
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'@' | b'-'))
}

/// Seconds since the Unix epoch (0 if the clock is before it).
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
#[path = "identity_policy_tests.rs"]
mod policy_tests;

#[cfg(test)]
mod tests {
    use super::*;

    fn issuer() -> TokenIssuer {
        TokenIssuer::new(
            b"0123456789abcdef0123456789abcdef",
            Duration::from_secs(3600),
        )
    }

    #[test]
    fn names_are_trimmed_and_checked() {
        assert_eq!(validate_name("  Alice \n").unwrap(), "Alice");
        assert_eq!(validate_name("   "), Err(NameError::Empty));
        assert_eq!(validate_name(""), Err(NameError::Empty));
        assert_eq!(validate_name(&"a".repeat(40)).unwrap().len(), 40);
        assert_eq!(validate_name(&"a".repeat(41)), Err(NameError::TooLong));
        // Characters, not bytes.
        assert!(validate_name(&"é".repeat(40)).is_ok());
        assert_eq!(
            validate_name("Al\u{7}ice"),
            Err(NameError::ControlCharacter)
        );
        assert_eq!(validate_name("Al\nice"), Err(NameError::ControlCharacter));
    }

    #[test]
    fn issued_tokens_verify() {
        let issuer = issuer();
        let (token, user) = issuer.issue(" Bob ").unwrap();
        assert_eq!(user.name, "Bob");
        assert_eq!(issuer.verify(Some(&token)).unwrap(), user);
    }

    #[test]
    fn token_errors_are_distinguished() {
        let issuer = issuer();
        assert_eq!(issuer.verify(None), Err(TokenError::Missing));
        assert_eq!(issuer.verify(Some("")), Err(TokenError::Missing));
        assert_eq!(issuer.verify(Some("garbage")), Err(TokenError::Invalid));
        let expired = issuer.issue_expired_for_tests("Carol");
        assert_eq!(issuer.verify(Some(&expired)), Err(TokenError::Expired));

        let other = TokenIssuer::new(b"another-secret-another-secret!!", Duration::from_secs(60));
        let (foreign, _) = other.issue("Mallory").unwrap();
        assert_eq!(issuer.verify(Some(&foreign)), Err(TokenError::Invalid));
        assert_eq!(TokenError::Expired.code(), "expired_token");
    }

    fn claims(grants: Grants) -> Claims {
        Claims {
            sub: "user-1".into(),
            name: "Dana".into(),
            exp: unix_now() + 600,
            grants,
        }
    }

    #[test]
    fn grants_round_trip_and_default_to_nothing() {
        let issuer = issuer();
        let (token, _) = issuer.issue("Erin").unwrap();
        assert_eq!(
            issuer.verify_identity(Some(&token)).unwrap().grants,
            Grants::full()
        );

        let limited = Grants {
            publish: vec![PublishSource::Audio],
            subscribe: true,
            rooms: Some(vec!["call-1".into()]),
            ..Grants::default()
        };
        let identity = issuer
            .verify_identity(Some(&issuer.sign(&claims(limited.clone()))))
            .unwrap();
        assert_eq!(identity.grants, limited);
        assert!(!identity.grants.call);
        assert!(!identity.grants.may_publish_video());
        assert!(identity.grants.allows_room("call-1"));
        assert!(!identity.grants.allows_room("call-2"));
        assert!(!identity.is_expired());

        // A backend token without `grants` may do nothing.
        #[derive(Serialize)]
        struct Bare<'a> {
            sub: &'a str,
            name: &'a str,
            exp: u64,
        }
        let bare = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &Bare {
                sub: "u",
                name: "Bare",
                exp: unix_now() + 60,
            },
            &EncodingKey::from_secret(b"0123456789abcdef0123456789abcdef"),
        )
        .unwrap();
        assert_eq!(
            issuer.verify_identity(Some(&bare)).unwrap().grants,
            Grants::default()
        );
    }

    #[test]
    fn hostile_claims_are_invalid() {
        let issuer = issuer();
        let mut c = claims(Grants::full());
        c.sub = "x".repeat(MAX_SUB_LEN + 1);
        assert_eq!(
            issuer.verify(Some(&issuer.sign(&c))),
            Err(TokenError::Invalid)
        );
        let mut c = claims(Grants::full());
        c.name = "bad\nname".into();
        assert_eq!(
            issuer.verify(Some(&issuer.sign(&c))),
            Err(TokenError::Invalid)
        );
        let mut c = claims(Grants::full());
        c.grants.rooms = Some(vec!["r".into(); MAX_ROOMS + 1]);
        assert_eq!(
            issuer.verify(Some(&issuer.sign(&c))),
            Err(TokenError::Invalid)
        );
        // Oversized tokens are refused before any decoding.
        let huge = "a".repeat(MAX_TOKEN_LEN + 1);
        assert_eq!(issuer.verify(Some(&huge)), Err(TokenError::Invalid));
        // `alg: none` and other algorithms are refused even with valid claims.
        let body = "eyJzdWIiOiJ1IiwibmFtZSI6Ik0iLCJleHAiOjk5OTk5OTk5OTl9";
        let none = format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{body}.");
        assert_eq!(issuer.verify(Some(&none)), Err(TokenError::Invalid));
        let hs512 = jsonwebtoken::encode(
            &Header::new(Algorithm::HS512),
            &claims(Grants::full()),
            &EncodingKey::from_secret(b"0123456789abcdef0123456789abcdef"),
        )
        .unwrap();
        assert_eq!(issuer.verify(Some(&hs512)), Err(TokenError::Invalid));
        // Unknown grant names are a malformed token, not silently ignored.
        let c = serde_json::json!({"sub": "u", "name": "N", "exp": unix_now() + 60,
            "grants": {"call": true, "admin": true}});
        let t = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &c,
            &EncodingKey::from_secret(b"0123456789abcdef0123456789abcdef"),
        )
        .unwrap();
        assert_eq!(issuer.verify(Some(&t)), Err(TokenError::Invalid));
    }
}
