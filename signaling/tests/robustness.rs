//! The fuzz targets' functions (`switchboard_signaling::fuzz_targets`, also driven by
//! cargo-fuzz in `fuzz/`) on many random and mutated inputs, on the stable toolchain, in every
//! test run. A panic here is a bug the fuzzer would find.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use switchboard_signaling::fuzz_targets;

const ITERATIONS: usize = 20_000;

/// Valid-looking inputs to mutate: the shapes the parsers are written for.
fn seeds() -> Vec<Vec<u8>> {
    let sdp = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0 1\r\n\
        m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\na=sendrecv\r\n\
        m=video 0 UDP/TLS/RTP/SAVPF 96\r\na=mid:1\r\na=recvonly\r\n";
    [
        json!({"to": "u1", "kind": "video"}),
        json!({"call_id": "c", "reason": "hangup"}),
        json!({"call_id": "c", "target": "publisher", "sdp": sdp}),
        json!({"call_id": "c", "target": "subscriber", "candidate": {
            "candidate": "candidate:1 1 udp 1 127.0.0.1 5000 typ host",
            "sdpMid": "0", "sdpMLineIndex": 0, "usernameFragment": null}}),
        json!({"call_id": "c", "audio": true, "video": false}),
        json!({"sub": "u", "name": "Alice", "exp": 4_000_000_000u64,
            "grants": {"call": true, "publish": ["audio", "screen"], "subscribe": true,
                "rooms": ["c1"]}}),
    ]
    .iter()
    .map(|v| serde_json::to_vec(v).unwrap())
    .chain([
        sdp.as_bytes().to_vec(),
        b"eyJhbGciOiJIUzI1NiJ9.e30.AAAA".to_vec(),
    ])
    .collect()
}

fn mutate(rng: &mut StdRng, input: &mut Vec<u8>) {
    for _ in 0..rng.random_range(1..8) {
        let len = input.len();
        match rng.random_range(0..5) {
            0 if len > 0 => input[rng.random_range(0..len)] = rng.random(),
            1 if len > 0 => {
                input.remove(rng.random_range(0..len));
            }
            2 => input.insert(rng.random_range(0..=len), rng.random()),
            3 if len > 1 => {
                // Duplicate a slice: deep nesting and long strings.
                let start = rng.random_range(0..len);
                let end = rng.random_range(start..len);
                let chunk = input[start..end].to_vec();
                let at = rng.random_range(0..=input.len());
                input.splice(at..at, chunk);
            }
            _ => input.truncate(rng.random_range(0..=len)),
        }
    }
}

fn random_json(rng: &mut StdRng, depth: u32) -> Value {
    match rng.random_range(0..if depth > 3 { 4 } else { 7 }) {
        0 => Value::Null,
        1 => json!(rng.random::<bool>()),
        2 => json!(rng.random::<i64>()),
        3 => json!((0..rng.random_range(0..20))
            .map(|_| rng.random_range(0x20u8..0x7f) as char)
            .collect::<String>()),
        4 => Value::Array(
            (0..rng.random_range(0..4))
                .map(|_| random_json(rng, depth + 1))
                .collect(),
        ),
        _ => {
            let keys = [
                "to",
                "kind",
                "call_id",
                "target",
                "sdp",
                "candidate",
                "audio",
                "video",
                "reason",
                "sub",
                "name",
                "exp",
                "grants",
                "publish",
                "rooms",
            ];
            Value::Object(
                (0..rng.random_range(0..6))
                    .map(|_| {
                        (
                            keys[rng.random_range(0..keys.len())].to_owned(),
                            random_json(rng, depth + 1),
                        )
                    })
                    .collect(),
            )
        }
    }
}

fn inputs(seed: u64) -> impl Iterator<Item = Vec<u8>> {
    let mut rng = StdRng::seed_from_u64(seed);
    let seeds = seeds();
    (0..ITERATIONS).map(move |i| match i % 3 {
        0 => (0..rng.random_range(0..512))
            .map(|_| rng.random())
            .collect(),
        1 => serde_json::to_vec(&random_json(&mut rng, 0)).unwrap(),
        _ => {
            let mut input = seeds[rng.random_range(0..seeds.len())].clone();
            mutate(&mut rng, &mut input);
            input
        }
    })
}

#[test]
fn token_handling_never_panics() {
    inputs(1).for_each(|input| fuzz_targets::token(&input));
}

#[test]
fn event_payload_parsing_never_panics() {
    inputs(2).for_each(|input| fuzz_targets::event_payload(&input));
}

#[test]
fn publisher_offers_never_panic_and_match_rtc() {
    // The SFU's negotiated-transceiver check (the fuzz target `publisher_offer`).
    inputs(3).for_each(|input| switchboard_sfu::fuzzing::publisher_offer(&input));
}

#[test]
fn the_demuxer_learns_addresses_only_from_signed_requests() {
    // The fuzz target `demux_routing` (finding 11, T8): random sequences, plus sequences of
    // requests that name the connections, signed with the right, the wrong or no password.
    inputs(4).for_each(|input| switchboard_sfu::fuzzing::demux_routing(&input));
    let mut rng = StdRng::seed_from_u64(5);
    for _ in 0..2_000 {
        let mut input = Vec::new();
        for _ in 0..rng.random_range(1..12) {
            let username: &[u8] =
                [&b"srv1:c"[..], b"srv2:c", b"srv1", b"x:srv2"][rng.random_range(0..4)];
            input.extend_from_slice(&[rng.random_range(0..5), rng.random(), username.len() as u8]);
            input.extend_from_slice(username);
        }
        switchboard_sfu::fuzzing::demux_routing(&input);
    }
}

/// Crash inputs the fuzzers found (`fuzz/regressions/<target>/<file>`, docs/security.md §7),
/// replayed through their targets on stable in every run. A file for a target this test does
/// not know fails it, so a committed input is never silently skipped.
#[test]
fn committed_fuzz_crash_inputs_are_replayed() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/regressions");
    let Ok(targets) = std::fs::read_dir(&root) else {
        return; // none committed
    };
    for target in targets {
        let target = target.unwrap().path();
        let name = target.file_name().unwrap().to_string_lossy().into_owned();
        let run: fn(&[u8]) = match name.as_str() {
            "token" => fuzz_targets::token,
            "event_payload" => fuzz_targets::event_payload,
            "publisher_offer" => switchboard_sfu::fuzzing::publisher_offer,
            "demux_routing" => switchboard_sfu::fuzzing::demux_routing,
            "stun_username" => |d| {
                let _ = switchboard_sfu::fuzzing::stun_local_ufrag(d);
            },
            "audio_level" => |d| {
                let _ = switchboard_sfu::speaker::parse_audio_level(d);
            },
            other => panic!("fuzz/regressions/{other}: no replay for this target"),
        };
        for input in std::fs::read_dir(&target).unwrap() {
            let input = input.unwrap().path();
            run(&std::fs::read(&input).unwrap());
        }
    }
}
