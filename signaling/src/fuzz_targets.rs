//! Entry points for fuzzing every parser of untrusted input signaling owns. The cargo-fuzz
//! targets in `fuzz/` and the stable robustness test (`tests/robustness.rs`) call exactly
//! these, so CI on stable runs the same code the fuzzer explores on nightly.
//!
//! Each function must never panic, whatever the bytes.

use std::sync::OnceLock;
use std::time::Duration;

use serde_json::Value;

use crate::identity::{TokenIssuer, MAX_TOKEN_LEN};
use crate::payload::{self, Validate};

const SECRET: &[u8] = b"fuzzing-secret-fuzzing-secret-0123";

fn issuer() -> &'static TokenIssuer {
    static ISSUER: OnceLock<TokenIssuer> = OnceLock::new();
    ISSUER.get_or_init(|| TokenIssuer::new(SECRET, Duration::from_secs(3600)))
}

/// A token presented at connect: arbitrary text, then the same bytes as *signed* claims (so
/// the claims parser is reached behind a valid signature).
pub fn token(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let _ = issuer().verify_identity(Some(&text));
    if let Ok(claims) = serde_json::from_slice::<Value>(data) {
        if let Ok(token) = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(SECRET),
        ) {
            if let Ok(identity) = issuer().verify_identity(Some(&token)) {
                // What verification promises about an accepted token.
                assert!(!identity.user.id.as_str().is_empty());
                assert!(token.len() <= MAX_TOKEN_LEN);
                let _ = identity.grants.allows_room("x");
            }
        }
    }
}

fn parse_as<T: serde::de::DeserializeOwned + Validate>(value: &Value, limit: usize) {
    match payload::parse::<T>(value, limit) {
        Ok(_) => assert!(value.is_object() && payload::json_size(value) <= limit),
        Err(e) => assert!(!e.code().is_empty()),
    }
}

/// One client event payload, as every event's parser would see it.
pub fn event_payload(data: &[u8]) {
    let Ok(value) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let limit = 4096;
    parse_as::<payload::InitiateCall>(&value, limit);
    parse_as::<payload::CallRef>(&value, limit);
    parse_as::<payload::EndCall>(&value, limit);
    parse_as::<payload::WebrtcOffer>(&value, limit);
    parse_as::<payload::WebrtcAnswer>(&value, limit);
    parse_as::<payload::WebrtcIceCandidate>(&value, limit);
    parse_as::<payload::MediaState>(&value, limit);
    let _ = payload::call_id_hint(&value);
}
