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

/// Parses `value` as `T` and checks what the parser promises, independently of how it is
/// written (review T4): the size limit is exact (accepted at its own size, refused as too large
/// one byte below), and an error always has a code.
fn parse_as<T: serde::de::DeserializeOwned + Validate>(value: &Value, limit: usize) -> Option<T> {
    let size = payload::json_size(value);
    match payload::parse::<T>(value, limit) {
        Ok(parsed) => {
            assert!(value.is_object() && size <= limit);
            assert!(payload::parse::<T>(value, size).is_ok());
            assert!(matches!(
                payload::parse::<T>(value, size - 1),
                Err(payload::PayloadError::TooLarge { .. })
            ));
            Some(parsed)
        }
        Err(e) => {
            assert!(!e.code().is_empty());
            None
        }
    }
}

/// An accepted payload's `call_id` is the JSON's own string, and the hint that error events
/// use agrees with it: the two readings of one field never disagree.
fn same_call_id(value: &Value, parsed: &str) {
    assert_eq!(value.get("call_id").and_then(Value::as_str), Some(parsed));
    assert_eq!(payload::call_id_hint(value).as_deref(), Some(parsed));
}

/// One client event payload, as every event's parser would see it.
pub fn event_payload(data: &[u8]) {
    let Ok(value) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let limit = 4096;
    if let Some(p) = parse_as::<payload::InitiateCall>(&value, limit) {
        let ids = p.to.ids();
        assert!(!ids.is_empty() && ids.iter().all(|id| !id.as_str().is_empty()));
    }
    if let Some(p) = parse_as::<payload::CallRef>(&value, limit) {
        same_call_id(&value, p.call_id.as_str());
    }
    if let Some(p) = parse_as::<payload::EndCall>(&value, limit) {
        same_call_id(&value, p.call_id.as_str());
    }
    if let Some(p) = parse_as::<payload::WebrtcOffer>(&value, limit) {
        same_call_id(&value, p.call_id.as_str());
        assert_eq!(
            value.get("sdp").and_then(Value::as_str),
            Some(p.sdp.as_str())
        );
        assert!(!p.sdp.trim().is_empty());
        let declared = value
            .get("tracks")
            .and_then(Value::as_array)
            .map_or(0, Vec::len);
        assert_eq!(p.tracks.len(), declared);
    }
    if let Some(p) = parse_as::<payload::WebrtcAnswer>(&value, limit) {
        same_call_id(&value, p.call_id.as_str());
        assert!(!p.sdp.trim().is_empty());
    }
    if let Some(p) = parse_as::<payload::WebrtcIceCandidate>(&value, limit) {
        same_call_id(&value, p.call_id.as_str());
    }
    if let Some(p) = parse_as::<payload::MediaState>(&value, limit) {
        same_call_id(&value, p.call_id.as_str());
        assert_eq!(value.get("audio").and_then(Value::as_bool), Some(p.audio));
        assert_eq!(value.get("video").and_then(Value::as_bool), Some(p.video));
    }
    let _ = payload::call_id_hint(&value);
}
