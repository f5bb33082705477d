//! Smoke runs of the load tester (CI), a few seconds each, asserting the JSON report has zero
//! failures and media on every expected track.
//!
//! - `in_process_sfu_smoke_run`: the run library against Switchboard's SFU in this process,
//!   with a connect timeout shorter than the run: the subscribers open no publisher
//!   connection, and must not be released for it.
//! - `binary_smoke_run`: the `loadtest` binary itself (`--target sfu --json`), which spawns
//!   the `sfu-host` process, with a loss threshold, checking exit status and stdout JSON.
//! - `switchboard_meeting_smoke_run`: 3 publishers and 1 subscriber as one group call through
//!   an in-process Switchboard (sign-in, Socket.IO, SFU), with a 3 s connect timeout; everyone
//!   receives every other publisher's audio and video.
//! - `switchboard_room_larger_than_a_call`: a room larger than the server's call limit fails
//!   with the server's `limit_exceeded` named in the report.

mod support;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use loadtest::host::{bench_sfu_config, InProcessSfu};
use loadtest::run::{run, RunConfig, Target};
use loadtest::PeerConfig;
use serde_json::Value;
use support::TestServer;
use switchboard_sfu::SfuConfig;

fn assert_healthy(report: &Value) {
    let failures = report["failures"].as_array().expect("failures array");
    assert!(failures.is_empty(), "failures: {failures:#?}");
    assert_eq!(report["joined"], 4, "{report:#}");
    assert_eq!(report["failed_joins"], 0);
    assert_eq!(report["missing_tracks"], 0);
    let tracks = report["tracks"].as_array().expect("tracks array");
    // 3 subscribers x (audio + video) from the one publisher.
    assert_eq!(tracks.len(), 6, "{tracks:#?}");
    for t in tracks {
        assert!(t["packets"].as_u64().unwrap() > 0, "silent track {t:#}");
        assert_eq!(t["publisher"], "r0-p0");
        assert!(
            t["latency_p50_ms"].as_f64().is_some(),
            "no latency on {t:#}"
        );
        assert!(t["time_to_first_packet_ms"].as_f64().is_some());
    }
    assert!(report["forwarded_packets_per_second"].as_f64().unwrap() > 100.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_process_sfu_smoke_run() {
    let sfu = InProcessSfu::start(SfuConfig {
        connect_timeout: Duration::from_secs(3),
        ..bench_sfu_config()
    })
    .await
    .expect("SFU starts");
    let report = smoke_run(Target::Sfu(Arc::new(sfu)), 1, 3).await;
    assert_healthy(&report);
}

/// A run of one room, 1 s warm-up and a 3 s window, as the JSON report.
async fn smoke_run(target: Target, publishers: usize, subscribers: usize) -> Value {
    let report = tokio::time::timeout(
        Duration::from_secs(60),
        run(RunConfig {
            target,
            rooms: 1,
            publishers,
            subscribers,
            audio_only: false,
            ramp: 0.0,
            warmup: Duration::from_secs(1),
            duration: Duration::from_secs(3),
            peer: PeerConfig::default(),
            progress: false,
            server_pid: None,
        }),
    )
    .await
    .expect("run finishes");
    serde_json::to_value(&report).expect("report serialises")
}

/// A run through signaling, on an in-process server started with `config` for it.
async fn run_on(config: switchboard::ServerConfig, publishers: usize, subscribers: usize) -> Value {
    let server = TestServer::start(config).await.expect("server starts");
    let url = server.base_url.clone();
    let report = smoke_run(Target::Switchboard { url }, publishers, subscribers).await;
    server.stop().await.expect("server stops");
    report
}

#[test]
fn binary_smoke_run() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_loadtest"))
        .args([
            "--target",
            "sfu",
            "--sfu-host",
            env!("CARGO_BIN_EXE_sfu-host"),
            "--publishers",
            "1",
            "--subscribers",
            "3",
            "--warmup",
            "1",
            "--duration",
            "3",
            "--ramp",
            "0",
            "--max-loss",
            "5",
            "--json",
            "--quiet",
        ])
        .output()
        .expect("loadtest runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "exit {:?}\nstdout:\n{stdout}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let report: Value = serde_json::from_str(&stdout).expect("stdout is the JSON report");
    assert_healthy(&report);
    // The server is a separate process: its CPU and memory are reported.
    assert!(report["server"]["pid"].as_u64().is_some(), "{report:#}");
    assert!(report["server"]["rss_mib"].as_f64().unwrap() > 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switchboard_meeting_smoke_run() {
    let mut config = switchboard::ServerConfig::for_tests();
    // Shorter than the run: the subscriber, which offers no publisher connection, stays.
    config.limits.media_connect_timeout_secs = 3;
    let report = run_on(config, 3, 1).await;
    let failures = report["failures"].as_array().expect("failures array");
    assert!(failures.is_empty(), "failures: {failures:#?}");
    assert_eq!(report["target"], "switchboard");
    assert_eq!(report["joined"], 4, "{report:#}");
    assert_eq!(report["failed_joins"], 0);
    assert_eq!(report["missing_tracks"], 0);
    // Every member receives audio and video from every publisher but itself, and nothing from
    // the receive-only member; publishers are reported by name, not by user id.
    let publishers = ["r0-p0", "r0-p1", "r0-p2"];
    let expected: BTreeSet<(String, String, String)> = publishers
        .iter()
        .chain(&["r0-s0"])
        .flat_map(|receiver| {
            publishers
                .iter()
                .filter(move |sender| *sender != receiver)
                .flat_map(move |sender| {
                    ["audio", "video"]
                        .map(|kind| (receiver.to_string(), sender.to_string(), kind.to_owned()))
                })
        })
        .collect();
    let tracks = report["tracks"].as_array().expect("tracks array");
    let mut received = BTreeSet::new();
    for t in tracks {
        assert!(t["packets"].as_u64().unwrap() > 0, "silent track {t:#}");
        assert!(
            t["latency_p50_ms"].as_f64().is_some(),
            "no latency on {t:#}"
        );
        received.insert((
            t["subscriber"].as_str().unwrap().to_owned(),
            t["publisher"].as_str().unwrap().to_owned(),
            t["kind"].as_str().unwrap().to_owned(),
        ));
    }
    assert_eq!(tracks.len(), expected.len(), "{tracks:#?}");
    assert_eq!(received, expected);
    assert!(report["forwarded_packets_per_second"].as_f64().unwrap() > 100.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switchboard_room_larger_than_a_call() {
    let mut config = switchboard::ServerConfig::for_tests();
    config.limits.max_participants_per_call = 3;
    let report = run_on(config, 2, 2).await;
    assert_eq!(report["joined"], 0, "{report:#}");
    assert_eq!(report["failed_joins"], 4);
    let failures = report["failures"].as_array().expect("failures array");
    assert_eq!(failures.len(), 1, "{failures:#?}");
    let failure = failures[0].as_str().unwrap();
    assert!(
        failure.contains("limit_exceeded") && failure.contains("--max-participants-per-call"),
        "{failure}"
    );
}
