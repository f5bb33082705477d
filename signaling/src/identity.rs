//! Identity: display-name validation and HS256 session tokens (claims `sub`, `name`, `exp`).

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

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    name: String,
    exp: u64,
}

/// Issues and verifies session tokens with one HS256 secret.
#[derive(Clone)]
pub struct TokenIssuer {
    encoding: EncodingKey,
    decoding: DecodingKey,
    lifetime: Duration,
}

impl TokenIssuer {
    pub fn new(secret: &[u8], lifetime: Duration) -> Self {
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            lifetime,
        }
    }

    /// Validates `name` and signs a token for a new user with a fresh id.
    pub fn issue(&self, name: &str) -> Result<(String, User), NameError> {
        let name = validate_name(name)?;
        let user = User {
            id: UserId::random(),
            name,
        };
        let exp = unix_now().saturating_add(self.lifetime.as_secs());
        let token = self.sign(&user, exp);
        Ok((token, user))
    }

    /// Signs a token for `user` expiring at `exp` (seconds since the epoch).
    fn sign(&self, user: &User, exp: u64) -> String {
        let claims = Claims {
            sub: user.id.to_string(),
            name: user.name.clone(),
            exp,
        };
        // Encoding HS256 with a valid key cannot fail: it only serializes the claims and
        // computes an HMAC.
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .expect("HS256 encoding of plain claims is infallible")
    }

    /// Checks a token presented at connect and returns whose it is.
    pub fn verify(&self, token: Option<&str>) -> Result<User, TokenError> {
        let token = match token.map(str::trim) {
            None | Some("") => return Err(TokenError::Missing),
            Some(token) => token,
        };
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "sub"]);
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation).map_err(
            |e| match e.kind() {
                ErrorKind::ExpiredSignature => TokenError::Expired,
                _ => TokenError::Invalid,
            },
        )?;
        let claims = data.claims;
        let name = validate_name(&claims.name).map_err(|_| TokenError::Invalid)?;
        if claims.sub.is_empty() {
            return Err(TokenError::Invalid);
        }
        Ok(User {
            id: UserId::new(claims.sub),
            name,
        })
    }

    /// A token that expired an hour ago, for tests of the `expired_token` path.
    #[doc(hidden)]
    pub fn issue_expired_for_tests(&self, name: &str) -> String {
        let user = User {
            id: UserId::random(),
            name: name.to_owned(),
        };
        self.sign(&user, unix_now().saturating_sub(3600))
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

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
}
