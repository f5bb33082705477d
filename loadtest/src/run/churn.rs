//! The churn run: subscribers joining and leaving one room over and over against a steady
//! publisher, with the server's memory, threads and the SFU's own counters read before and
//! after, to tell a leak from allocator retention.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::report::round;
use super::{join_sfu, Failures, Member};
use crate::host::RoomServer;
use crate::peer::PeerConfig;
use crate::procstat::ProcSample;

/// What a churn run measured.
#[derive(Clone, Debug, Serialize)]
pub struct ChurnReport {
    /// Join/leave cycles run (after the warm-up cycles).
    pub cycles: usize,
    /// Cycles run before the baseline, to warm allocator caches and lazily built state.
    pub warmup_cycles: usize,
    /// Cycles whose subscriber received media before leaving.
    pub cycles_with_media: usize,
    /// Failures.
    pub failures: Vec<String>,
    /// Server process at the baseline (steady publisher in the room, after the warm-up cycles).
    pub before: Option<ProcReport>,
    /// Server process after the last cycle left (and 3 s to settle).
    pub after: Option<ProcReport>,
    /// The SFU's own counters at the baseline and after (participants, subscriptions).
    pub sfu_before: Option<serde_json::Value>,
    /// After.
    pub sfu_after: Option<serde_json::Value>,
    /// Server process after a second round of `cycles` (leak vs. allocator retention).
    pub after_again: Option<ProcReport>,
    /// Wall time of the measured cycles, seconds.
    pub seconds: f64,
}

/// A `/proc` reading in the report.
#[derive(Clone, Debug, Serialize)]
pub struct ProcReport {
    /// VmRSS, MiB.
    pub rss_mib: f64,
    /// Threads.
    pub threads: usize,
}

fn proc_report(pid: Option<u32>) -> Option<ProcReport> {
    let s = ProcSample::read(pid?)?;
    Some(ProcReport {
        rss_mib: round(s.rss_kib as f64 / 1024.0, 2),
        threads: s.threads,
    })
}

/// Churn: one steady publisher in a room, then `cycles` subscribers that each join, wait for
/// their first packet (at most 5 s), and leave, `concurrency` at a time. Server memory, thread
/// count and the SFU's participant/subscription counts before and after must match.
pub async fn churn(
    server: Arc<dyn RoomServer>,
    cycles: usize,
    warmup_cycles: usize,
    concurrency: usize,
    peer: PeerConfig,
    audio_only: bool,
) -> ChurnReport {
    let failures = Arc::new(Failures::default());
    let pid = server.pid();
    let room = "lt-churn";
    let publisher = join_sfu(
        Arc::clone(&server),
        room,
        "churn-pub",
        true,
        !audio_only,
        &peer,
        Arc::clone(&failures),
    )
    .await;
    let publisher = match publisher {
        Ok((conn, _)) => conn,
        Err(e) => {
            return ChurnReport {
                cycles: 0,
                warmup_cycles,
                cycles_with_media: 0,
                failures: vec![format!("churn publisher: {e}")],
                before: None,
                after: None,
                sfu_before: None,
                sfu_after: None,
                after_again: None,
                seconds: 0.0,
            }
        }
    };
    let run_cycles = |n: usize, offset: usize| {
        let (server, peer, failures) = (Arc::clone(&server), peer.clone(), Arc::clone(&failures));
        async move {
            let limit = Arc::new(tokio::sync::Semaphore::new(concurrency.max(1)));
            let mut tasks = Vec::new();
            for i in 0..n {
                let permit = Arc::clone(&limit)
                    .acquire_owned()
                    .await
                    .expect("open semaphore");
                let (server, peer, failures) =
                    (Arc::clone(&server), peer.clone(), Arc::clone(&failures));
                tasks.push(tokio::spawn(async move {
                    let _permit = permit;
                    let name = format!("churn-{}", offset + i);
                    match join_sfu(
                        server,
                        room,
                        &name,
                        false,
                        false,
                        &peer,
                        Arc::clone(&failures),
                    )
                    .await
                    {
                        Ok((conn, receive)) => {
                            let deadline = Instant::now() + Duration::from_secs(5);
                            let mut got = false;
                            while Instant::now() < deadline {
                                if receive.snapshot().iter().any(|t| t.packets > 0) {
                                    got = true;
                                    break;
                                }
                                tokio::time::sleep(Duration::from_millis(20)).await;
                            }
                            if !got {
                                failures.push(format!("{name}: no media within 5 s"));
                            }
                            Member {
                                name,
                                room: 0,
                                expected_tracks: 0,
                                send: None,
                                receive,
                                conn,
                            }
                            .leave()
                            .await;
                            got
                        }
                        Err(e) => {
                            failures.push(format!("{name}: join: {e}"));
                            false
                        }
                    }
                }));
            }
            let mut ok = 0;
            for t in tasks {
                if let Ok(true) = t.await {
                    ok += 1;
                }
            }
            ok
        }
    };
    run_cycles(warmup_cycles, 0).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let before = proc_report(pid);
    let sfu_before = server.stats().await;
    let started = Instant::now();
    let ok = run_cycles(cycles, warmup_cycles).await;
    let seconds = started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = proc_report(pid);
    let sfu_after = server.stats().await;
    run_cycles(cycles, warmup_cycles + cycles).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after_again = proc_report(pid);
    failures.leaving.store(true, Ordering::Relaxed);
    Member {
        name: "churn-pub".into(),
        room: 0,
        expected_tracks: 0,
        send: None,
        receive: Arc::default(),
        conn: publisher,
    }
    .leave()
    .await;
    ChurnReport {
        cycles,
        warmup_cycles,
        cycles_with_media: ok,
        failures: failures.all(),
        before,
        after,
        sfu_before,
        sfu_after,
        after_again,
        seconds: round(seconds, 1),
    }
}
