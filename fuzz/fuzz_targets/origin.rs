//! The `Origin`/`Host` check in front of every HTTP route and the Socket.IO upgrade.
#![no_main]
use switchboard::origin::OriginPolicy;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (origin, host) = text.split_once('\n').unwrap_or((&text, ""));
    for allow_localhost in [false, true] {
        let policy = OriginPolicy {
            allowed: vec!["https://app.example.com".into()],
            allow_localhost,
        };
        let _ = policy.allows(Some(origin), Some(host));
        let _ = policy.allows(Some(origin), None);
    }
    let _ = switchboard::origin::is_origin(origin);
});
