//! Unit tests of key rotation and the token policy (security review findings 19 and 23).

use super::*;

fn issuer() -> TokenIssuer {
    TokenIssuer::new(
        b"0123456789abcdef0123456789abcdef",
        Duration::from_secs(3600),
    )
}

fn claims(grants: Grants) -> Claims {
    Claims {
        sub: "user-1".into(),
        name: "Dana".into(),
        exp: unix_now() + 600,
        grants,
    }
}

fn key(kid: &str, secret: &[u8]) -> TokenKey {
    TokenKey {
        kid: Some(kid.into()),
        secret: secret.to_vec(),
    }
}

#[test]
fn rotated_keys_sign_with_the_first_and_verify_with_any() {
    let old = TokenIssuer::with_keys(
        &[key("2026-11", b"old-secret-old-secret-old-secret!")],
        Duration::from_secs(3600),
        TokenPolicy::default(),
    );
    let rotated = TokenIssuer::with_keys(
        &[
            key("2026-12", b"new-secret-new-secret-new-secret!"),
            key("2026-11", b"old-secret-old-secret-old-secret!"),
        ],
        Duration::from_secs(3600),
        TokenPolicy::default(),
    );
    let (old_token, user) = old.issue("Ann").unwrap();
    assert_eq!(
        jsonwebtoken::decode_header(&old_token)
            .unwrap()
            .kid
            .as_deref(),
        Some("2026-11")
    );
    // Tokens handed out before the rotation stay valid.
    assert_eq!(rotated.verify(Some(&old_token)).unwrap(), user);
    let (new_token, _) = rotated.issue("Ann").unwrap();
    assert_eq!(
        jsonwebtoken::decode_header(&new_token)
            .unwrap()
            .kid
            .as_deref(),
        Some("2026-12")
    );
    // Once the old key is removed, its tokens stop working.
    assert_eq!(old.verify(Some(&new_token)), Err(TokenError::Invalid));
    // A token naming an unknown key, or a key that did not sign it, is refused.
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("2026-11".into());
    let forged = jsonwebtoken::encode(
        &header,
        &claims(Grants::full()),
        &EncodingKey::from_secret(b"new-secret-new-secret-new-secret!"),
    )
    .unwrap();
    assert_eq!(rotated.verify(Some(&forged)), Err(TokenError::Invalid));
    // A backend's token without `kid` is tried against each key.
    let bare = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims(Grants::full()),
        &EncodingKey::from_secret(b"old-secret-old-secret-old-secret!"),
    )
    .unwrap();
    assert!(rotated.verify(Some(&bare)).is_ok());
}

fn encode_json(value: serde_json::Value) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &value,
        &EncodingKey::from_secret(b"0123456789abcdef0123456789abcdef"),
    )
    .unwrap()
}

#[test]
fn nbf_lifetime_issuer_and_audience_are_enforced() {
    let issuer = issuer();
    let now = unix_now();
    let future = encode_json(
        serde_json::json!({"sub": "u", "name": "N", "exp": now + 600, "nbf": now + 300}),
    );
    assert_eq!(issuer.verify(Some(&future)), Err(TokenError::Invalid));
    let forever =
        encode_json(serde_json::json!({"sub": "u", "name": "N", "exp": 4_102_444_800u64}));
    assert_eq!(issuer.verify(Some(&forever)), Err(TokenError::Invalid));
    // Without a configured audience, a token naming one is accepted.
    let with_aud =
        encode_json(serde_json::json!({"sub": "u", "name": "N", "exp": now + 60, "aud": "x"}));
    assert!(issuer.verify(Some(&with_aud)).is_ok());

    let strict = TokenIssuer::with_keys(
        &[TokenKey {
            kid: None,
            secret: b"0123456789abcdef0123456789abcdef".to_vec(),
        }],
        Duration::from_secs(3600),
        TokenPolicy {
            issuer: Some("https://auth.example".into()),
            audience: Some("switchboard".into()),
            max_lifetime: Duration::from_secs(7200),
        },
    );
    let (token, _) = strict.issue("Ida").unwrap();
    assert!(strict.verify(Some(&token)).is_ok());
    for claims in [
        serde_json::json!({"sub": "u", "name": "N", "exp": now + 60}),
        serde_json::json!({"sub": "u", "name": "N", "exp": now + 60,
            "iss": "https://auth.example", "aud": "other"}),
        serde_json::json!({"sub": "u", "name": "N", "exp": now + 60,
            "iss": "https://evil.example", "aud": "switchboard"}),
        serde_json::json!({"sub": "u", "name": "N", "exp": now + 7300,
            "iss": "https://auth.example", "aud": "switchboard"}),
    ] {
        assert_eq!(
            strict.verify(Some(&encode_json(claims.clone()))),
            Err(TokenError::Invalid),
            "{claims}"
        );
    }
    let good = encode_json(serde_json::json!({"sub": "u", "name": "N", "exp": now + 60,
        "iss": "https://auth.example", "aud": "switchboard"}));
    assert!(strict.verify(Some(&good)).is_ok());
}

#[test]
fn sub_charset_is_restricted() {
    for good in [
        "u",
        "alice@example.com",
        "org:42",
        "a.b_c-d",
        &"x".repeat(MAX_SUB_LEN),
    ] {
        assert!(is_valid_sub(good), "{good}");
    }
    for bad in [
        "",
        "bob evil",
        "bob\r\na=ssrc:1",
        "é",
        "a/b",
        &"x".repeat(MAX_SUB_LEN + 1),
    ] {
        assert!(!is_valid_sub(bad), "{bad:?}");
    }
}
