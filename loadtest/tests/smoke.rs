//! Smoke runs of the load tester (CI): 1 publisher and 3 subscribers for a few seconds,
//! asserting the JSON report has zero failures and media on every expected track.
//!
//! - `in_process_sfu_smoke_run`: the run library against Switchboard's SFU in this process,
//!   with a connect timeout shorter than the run, so a member whose publisher connection never
//!   connects (a receive-only one that did not open it) is released and fails the run.
//! - `binary_smoke_run`: the `loadtest` binary itself (`--target sfu --json`), which spawns
//!   the `sfu-host` process, with a loss threshold, checking exit status and stdout JSON.

use std::sync::Arc;
use std::time::Duration;

use loadtest::host::{bench_sfu_config, InProcessSfu};
use loadtest::run::{run, RunConfig, Target};
use loadtest::PeerConfig;
use serde_json::Value;
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
        connect_timeout: Duration::from_secs(2),
        ..bench_sfu_config()
    })
    .await
    .expect("SFU starts");
    let report = tokio::time::timeout(
        Duration::from_secs(60),
        run(RunConfig {
            target: Target::Sfu(Arc::new(sfu)),
            rooms: 1,
            publishers: 1,
            subscribers: 3,
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
    let json = serde_json::to_value(&report).expect("report serialises");
    assert_healthy(&json);
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
