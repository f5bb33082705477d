//! Token secrets: read from a file (systemd `LoadCredential=`, Kubernetes secret volumes), with
//! key ids for rotation, and checked for strength (security review findings 5 and 23).
//!
//! A secret file holds either one bare secret, or one `kid=secret` line per key. The first
//! key signs new tokens and every key verifies (tokens name their key in the JWT header's
//! `kid`), so a secret is rotated by putting the new key first, restarting, and removing the
//! old one after the longest token lifetime. Blank lines and lines starting with `#` are
//! skipped. Generate a secret with `openssl rand -base64 32`.

use std::path::Path;

use switchboard_signaling::identity::{TokenKey, MAX_TOKEN_KEYS};

/// Shortest accepted secret, in bytes (HS256 keys shorter than the hash invite offline
/// guessing from any token a user holds).
pub const MIN_SECRET_BYTES: usize = 32;

/// Secrets that ship in documentation, examples and earlier deploy files: anyone can read
/// them, so a production server must not accept them. Compared case-insensitively as
/// substrings.
const PLACEHOLDERS: &[&str] = &[
    "change-me",
    "changeme",
    "change_me",
    "replace-me",
    "replaceme",
    "placeholder",
    "your-secret",
    "yoursecret",
    "example",
    "token-secret",
];

/// Why a secret or secret file was refused. The messages are shown to the operator as is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("cannot read the token secret file {path}: {reason}")]
    Unreadable { path: String, reason: String },
    #[error("the token secret file {0} holds no secret")]
    Empty(String),
    #[error("the token secret file holds {0} keys; at most {MAX_TOKEN_KEYS} are used")]
    TooManyKeys(usize),
    #[error("key id `{0}` appears twice in the token secret file")]
    DuplicateKid(String),
    #[error("{what} is {len} bytes; at least {MIN_SECRET_BYTES} are needed (generate one with `openssl rand -base64 32`)")]
    TooShort { what: String, len: usize },
    #[error("{what} is a published placeholder (`{placeholder}`); generate a real one with `openssl rand -base64 32`")]
    Placeholder { what: String, placeholder: String },
    #[error("{what} has too little entropy (about {bits} bits, at least 128 are needed); generate one with `openssl rand -base64 32`")]
    LowEntropy { what: String, bits: u32 },
}

/// Reads the keys of a secret file (see the module docs).
pub fn read_key_file(path: &Path) -> Result<Vec<TokenKey>, SecretError> {
    let text = std::fs::read_to_string(path).map_err(|e| SecretError::Unreadable {
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    let keys = parse_keys(&text)?;
    if keys.is_empty() {
        return Err(SecretError::Empty(path.display().to_string()));
    }
    Ok(keys)
}

/// Parses `kid=secret` lines or one bare secret. A line is `kid=secret` when the part before
/// the first `=` is a key id (1–64 of `[A-Za-z0-9._-]`) and the rest is more than `=`
/// padding; anything else (e.g. a base64 secret ending in `=`) is a bare secret.
pub fn parse_keys(text: &str) -> Result<Vec<TokenKey>, SecretError> {
    let mut keys: Vec<TokenKey> = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let key = match line.split_once('=') {
            Some((kid, secret))
                if (1..=64).contains(&kid.len())
                    && kid
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
                    && !secret.bytes().all(|b| b == b'=') =>
            {
                TokenKey {
                    kid: Some(kid.to_owned()),
                    secret: secret.as_bytes().to_vec(),
                }
            }
            _ => TokenKey {
                kid: None,
                secret: line.as_bytes().to_vec(),
            },
        };
        if let Some(kid) = &key.kid {
            if keys.iter().any(|k| k.kid.as_ref() == Some(kid)) {
                return Err(SecretError::DuplicateKid(kid.clone()));
            }
        }
        keys.push(key);
    }
    if keys.len() > MAX_TOKEN_KEYS {
        return Err(SecretError::TooManyKeys(keys.len()));
    }
    Ok(keys)
}

/// Checks one secret: long enough always; in production also not a known placeholder and not
/// obviously low in entropy. `what` names it in the message.
pub fn check_strength(what: &str, secret: &[u8], production: bool) -> Result<(), SecretError> {
    if secret.len() < MIN_SECRET_BYTES {
        return Err(SecretError::TooShort {
            what: what.to_owned(),
            len: secret.len(),
        });
    }
    if !production {
        return Ok(());
    }
    let lower = String::from_utf8_lossy(secret).to_ascii_lowercase();
    if let Some(placeholder) = PLACEHOLDERS.iter().find(|p| lower.contains(*p)) {
        return Err(SecretError::Placeholder {
            what: what.to_owned(),
            placeholder: (*placeholder).to_owned(),
        });
    }
    let bits = entropy_bits(secret);
    if bits < 128 {
        return Err(SecretError::LowEntropy {
            what: what.to_owned(),
            bits,
        });
    }
    Ok(())
}

/// An estimate of a secret's entropy: its length times the Shannon entropy of its byte
/// distribution. It catches repeated and few-symbol strings (`aaaa…`, `abab…`, `0000…`), not
/// dictionary phrases: random output (`openssl rand -base64 32` gives about 200) passes.
fn entropy_bits(secret: &[u8]) -> u32 {
    let mut counts = [0u32; 256];
    for &b in secret {
        counts[b as usize] += 1;
    }
    let len = secret.len() as f64;
    let per_byte: f64 = counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = f64::from(c) / len;
            -p * p.log2()
        })
        .sum();
    (per_byte * len) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_and_kid_lines_parse() {
        let keys = parse_keys("# rotated 2026-12\nk2=new-secret\n\nk1=old-secret\n").unwrap();
        assert_eq!(keys.len(), 2);
        assert_eq!(keys[0].kid.as_deref(), Some("k2"));
        assert_eq!(keys[0].secret, b"new-secret");
        // A base64 secret with padding is a bare secret, not `kid=`.
        let keys = parse_keys("q83vEjRWeJq83vEjRWeJq83vEjRWeJq83vEjRWeJq8M=\n").unwrap();
        assert_eq!(keys[0].kid, None);
        assert!(keys[0].secret.ends_with(b"="));
        let keys = parse_keys("abc+/def==").unwrap();
        assert_eq!(keys[0].kid, None);
        assert!(matches!(
            parse_keys("a=1\na=2"),
            Err(SecretError::DuplicateKid(_))
        ));
        assert!(parse_keys("\n# nothing\n").unwrap().is_empty());
    }

    #[test]
    fn weak_secrets_are_refused_in_production() {
        let shipped = b"change-me-to-32-random-bytes-please";
        assert!(check_strength("s", shipped, false).is_ok());
        assert!(matches!(
            check_strength("s", shipped, true),
            Err(SecretError::Placeholder { .. })
        ));
        assert!(matches!(
            check_strength("s", &[b'a'; 64], true),
            Err(SecretError::LowEntropy { .. })
        ));
        assert!(matches!(
            check_strength("s", "ab".repeat(32).as_bytes(), true),
            Err(SecretError::LowEntropy { .. })
        ));
        assert!(matches!(
            check_strength("s", b"short", false),
            Err(SecretError::TooShort { len: 5, .. })
        ));
        // What `openssl rand -base64 32` and `-hex 32` print.
        for good in [
            "Jx0Qe1m8yq5m8c0k7mTKZ0hN6a8Wq3vQ9yLk2pXr1bE=",
            "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
        ] {
            assert_eq!(check_strength("s", good.as_bytes(), true), Ok(()), "{good}");
        }
    }
}
