//! The run's [`Report`]: the counters at both ends of the window turned into per-track,
//! per-kind and aggregate figures, plus the server process's CPU and memory from `/proc`.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::{Failures, Member, Registry, RunConfig, Target};
use crate::media::{self, LatencyHistogram, MediaKind, ReceiveStats, SendStats};
use crate::procstat::ProcSample;

/// Totals over every received track at one instant.
#[derive(Clone, Debug, Default)]
pub(super) struct Totals {
    pub(super) at: Option<Instant>,
    pub(super) packets: u64,
    pub(super) bytes: u64,
    pub(super) lost: u64,
    pub(super) expected: u64,
    latency: LatencyHistogram,
    server: Option<ProcSample>,
    own: Option<ProcSample>,
}

pub(super) fn totals(receivers: &[Arc<ReceiveStats>], pid: Option<u32>) -> Totals {
    let mut t = Totals {
        at: Some(Instant::now()),
        server: pid.and_then(ProcSample::read),
        own: ProcSample::read(std::process::id()),
        ..Totals::default()
    };
    for r in receivers {
        for track in r.snapshot() {
            t.packets += track.packets;
            t.bytes += track.bytes;
            t.lost += track.lost;
            t.expected += track.expected;
            t.latency.add(&track.latency);
        }
    }
    t
}

/// One received track in the report.
#[derive(Clone, Debug, Serialize)]
pub struct TrackReport {
    /// Receiving member.
    pub subscriber: String,
    /// Publishing member: its name, or the track's stream id when no member has it.
    pub publisher: String,
    /// `audio` or `video`.
    pub kind: &'static str,
    /// RTP packets received.
    pub packets: u64,
    /// Mean bitrate since the first packet, kbit/s.
    pub bitrate_kbps: f64,
    /// Probe-sequence gaps left after retransmission.
    pub lost: u64,
    /// `lost / expected`, percent.
    pub loss_percent: f64,
    /// RFC 3550 jitter, ms.
    pub jitter_ms: f64,
    /// One-way latency percentiles, ms.
    pub latency_p50_ms: Option<f64>,
    /// 99th percentile.
    pub latency_p99_ms: Option<f64>,
    /// Worst.
    pub latency_max_ms: Option<f64>,
    /// Join start → first packet of this track, ms.
    pub time_to_first_packet_ms: Option<f64>,
}

/// The server process, from `/proc`.
#[derive(Clone, Debug, Serialize)]
pub struct ServerReport {
    /// Its pid.
    pub pid: u32,
    /// utime+stime over the window, seconds.
    pub cpu_seconds: f64,
    /// CPU share of one core over the window, percent.
    pub cpu_percent: f64,
    /// Server CPU µs per packet received by a subscriber in the window.
    pub cpu_us_per_forwarded_packet: Option<f64>,
    /// VmRSS before the ramp, MiB.
    pub rss_before_mib: f64,
    /// VmRSS at the end of the window, MiB.
    pub rss_mib: f64,
    /// (rss − rss_before) / members, KiB.
    pub rss_per_participant_kib: f64,
    /// Threads (`/proc/<pid>/task`) at the end of the window.
    pub threads: usize,
}

/// Per-kind aggregates of the window.
#[derive(Clone, Debug, Serialize)]
pub struct KindSummary {
    /// `audio` or `video`.
    pub kind: &'static str,
    /// Received tracks.
    pub tracks: usize,
    /// Packets in all of them.
    pub packets: u64,
    /// Lost percent.
    pub loss_percent: f64,
    /// Median of the per-track jitter, ms.
    pub jitter_median_ms: f64,
    /// Latency p50 over all packets of the kind (whole run), ms.
    pub latency_p50_ms: Option<f64>,
    /// p99.
    pub latency_p99_ms: Option<f64>,
    /// Slowest track's time to first packet, ms.
    pub time_to_first_packet_max_ms: Option<f64>,
}

/// What a run measured.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// `switchboard-sfu`, `switchboard` or `janus`.
    pub target: String,
    /// Rooms.
    pub rooms: usize,
    /// Publishers per room.
    pub publishers: usize,
    /// Subscribers per room.
    pub subscribers: usize,
    /// Audio only.
    pub audio_only: bool,
    /// Members that joined.
    pub joined: usize,
    /// Members that failed to join.
    pub failed_joins: usize,
    /// Every failure (joins, connections, the server dropping members).
    pub failures: Vec<String>,
    /// Tracks expected but never received anything.
    pub missing_tracks: usize,
    /// Window length, seconds.
    pub window_seconds: f64,
    /// Packets received by all subscribers in the window, per second.
    pub forwarded_packets_per_second: f64,
    /// Bitrate received by all subscribers in the window, Mbit/s.
    pub received_mbps: f64,
    /// Loss over the whole run, percent.
    pub loss_percent: f64,
    /// One-way latency over the window's packets, ms.
    pub latency_p50_ms: Option<f64>,
    /// p99.
    pub latency_p99_ms: Option<f64>,
    /// Per kind.
    pub kinds: Vec<KindSummary>,
    /// Server process figures, when its pid is known.
    pub server: Option<ServerReport>,
    /// This load generator's own CPU over the window, percent of one core (2 cores = 200%):
    /// near the machine's limit, latency figures include the generator's queueing.
    pub loadgen_cpu_percent: Option<f64>,
    /// Packets the publishers sent, and keyframe requests they answered.
    pub sent_packets: u64,
    /// PLI/FIR received by publishers.
    pub keyframe_requests: u64,
    /// Every received track.
    pub tracks: Vec<TrackReport>,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

pub(super) fn round(x: f64, digits: i32) -> f64 {
    let f = 10f64.powi(digits);
    (x * f).round() / f
}

/// Per-kind accumulator for [`KindSummary`].
#[derive(Default)]
struct KindAcc {
    tracks: usize,
    packets: u64,
    lost: u64,
    expected: u64,
    jitters: Vec<f64>,
    latency: LatencyHistogram,
    ttfp_max: f64,
}

pub(super) fn build_report(
    config: &RunConfig,
    registry: &Registry,
    failures: &Failures,
    members: &[Member],
    a: &Totals,
    b: &Totals,
    before: Option<&ProcSample>,
) -> Report {
    let window =
        b.at.zip(a.at)
            .map(|(b, a)| (b - a).as_secs_f64())
            .unwrap_or(0.0)
            .max(1e-9);
    let forwarded = b.packets.saturating_sub(a.packets);
    let latency = b.latency.since(&a.latency);
    let mut tracks = Vec::new();
    let mut missing = 0;
    let now = media::unix_micros();
    let mut per_kind: BTreeMap<&'static str, KindAcc> = BTreeMap::new();
    let mut missing_list = Vec::new();
    // Tracks arrive under their publisher's stream id; report the member's name instead.
    let names: BTreeMap<&str, &str> = members
        .iter()
        .filter_map(|m| Some((m.stream_id()?, m.name.as_str())))
        .collect();
    for m in members {
        let snap = m.receive.snapshot();
        let started = m.receive.started_us.load(Ordering::Relaxed);
        let received = snap.iter().filter(|t| t.packets > 0).count();
        if received < m.expected_tracks {
            missing += m.expected_tracks - received;
            missing_list.push(format!(
                "{}: received {received} of {} tracks",
                m.name, m.expected_tracks
            ));
        }
        for t in snap {
            let kind = match t.kind {
                MediaKind::Audio => "audio",
                MediaKind::Video => "video",
            };
            let since_first = if t.first_packet_us > 0 {
                (now.saturating_sub(t.first_packet_us)) as f64 / 1e6
            } else {
                0.0
            };
            let ttfp = (t.first_packet_us > 0 && started > 0)
                .then(|| t.first_packet_us.saturating_sub(started) as f64 / 1e3);
            let loss = if t.expected > 0 {
                100.0 * t.lost as f64 / t.expected as f64
            } else {
                0.0
            };
            let e = per_kind.entry(kind).or_default();
            e.tracks += 1;
            e.packets += t.packets;
            e.lost += t.lost;
            e.expected += t.expected;
            e.jitters.push(ms(t.jitter));
            e.latency.add(&t.latency);
            e.ttfp_max = e.ttfp_max.max(ttfp.unwrap_or(0.0));
            tracks.push(TrackReport {
                subscriber: m.name.clone(),
                publisher: names
                    .get(t.key.stream_id.as_str())
                    .map_or_else(|| t.key.stream_id.clone(), |name| (*name).to_owned()),
                kind,
                packets: t.packets,
                bitrate_kbps: round(
                    if since_first > 0.0 {
                        t.bytes as f64 * 8.0 / since_first / 1e3
                    } else {
                        0.0
                    },
                    1,
                ),
                lost: t.lost,
                loss_percent: round(loss, 3),
                jitter_ms: round(ms(t.jitter), 3),
                latency_p50_ms: t.latency.quantile(0.5).map(|d| round(ms(d), 3)),
                latency_p99_ms: t.latency.quantile(0.99).map(|d| round(ms(d), 3)),
                latency_max_ms: t.max_latency.map(|d| round(ms(d), 3)),
                time_to_first_packet_ms: ttfp.map(|x| round(x, 1)),
            });
        }
    }
    let kinds = per_kind
        .into_iter()
        .map(
            |(
                kind,
                KindAcc {
                    tracks: n,
                    packets,
                    lost,
                    expected,
                    mut jitters,
                    latency: hist,
                    ttfp_max: ttfp,
                },
            )| {
                jitters.sort_by(|a, b| a.total_cmp(b));
                KindSummary {
                    kind,
                    tracks: n,
                    packets,
                    loss_percent: round(
                        if expected > 0 {
                            100.0 * lost as f64 / expected as f64
                        } else {
                            0.0
                        },
                        3,
                    ),
                    jitter_median_ms: round(
                        jitters.get(jitters.len() / 2).copied().unwrap_or(0.0),
                        3,
                    ),
                    latency_p50_ms: hist.quantile(0.5).map(|d| round(ms(d), 3)),
                    latency_p99_ms: hist.quantile(0.99).map(|d| round(ms(d), 3)),
                    time_to_first_packet_max_ms: (n > 0).then_some(round(ttfp, 1)),
                }
            },
        )
        .collect();
    let server = match (&a.server, &b.server) {
        (Some(sa), Some(sb)) => {
            let cpu = sb.cpu_seconds - sa.cpu_seconds;
            let rss_before = before.map(|s| s.rss_kib).unwrap_or(sa.rss_kib);
            let n = members.len().max(1) as f64;
            Some(ServerReport {
                pid: sb.pid,
                cpu_seconds: round(cpu, 3),
                cpu_percent: round(100.0 * cpu / window, 1),
                cpu_us_per_forwarded_packet: (forwarded > 0)
                    .then(|| round(cpu * 1e6 / forwarded as f64, 2)),
                rss_before_mib: round(rss_before as f64 / 1024.0, 1),
                rss_mib: round(sb.rss_kib as f64 / 1024.0, 1),
                rss_per_participant_kib: round((sb.rss_kib as f64 - rss_before as f64) / n, 1),
                threads: sb.threads,
            })
        }
        _ => None,
    };
    let mut all_failures = failures.all();
    all_failures.extend(missing_list);
    let sends: Vec<Arc<SendStats>> = members.iter().filter_map(|m| m.send.clone()).collect();
    Report {
        target: match &config.target {
            Target::Sfu(_) => "switchboard-sfu",
            Target::Switchboard { .. } => "switchboard",
            Target::Janus { .. } => "janus",
        }
        .into(),
        rooms: config.rooms,
        publishers: config.publishers,
        subscribers: config.subscribers,
        audio_only: config.audio_only,
        joined: registry.joined.load(Ordering::Relaxed),
        failed_joins: registry.failed_joins.load(Ordering::Relaxed),
        failures: all_failures,
        missing_tracks: missing,
        window_seconds: round(window, 2),
        forwarded_packets_per_second: round(forwarded as f64 / window, 1),
        received_mbps: round(
            b.bytes.saturating_sub(a.bytes) as f64 * 8.0 / window / 1e6,
            2,
        ),
        loss_percent: round(
            if b.expected > 0 {
                100.0 * b.lost as f64 / b.expected as f64
            } else {
                0.0
            },
            3,
        ),
        latency_p50_ms: latency.quantile(0.5).map(|d| round(ms(d), 3)),
        latency_p99_ms: latency.quantile(0.99).map(|d| round(ms(d), 3)),
        kinds,
        server,
        loadgen_cpu_percent: match (&a.own, &b.own) {
            (Some(x), Some(y)) => Some(round(100.0 * (y.cpu_seconds - x.cpu_seconds) / window, 1)),
            _ => None,
        },
        sent_packets: sends
            .iter()
            .map(|s| {
                s.audio_packets.load(Ordering::Relaxed) + s.video_packets.load(Ordering::Relaxed)
            })
            .sum(),
        keyframe_requests: sends
            .iter()
            .map(|s| s.keyframe_requests.load(Ordering::Relaxed))
            .sum(),
        tracks,
    }
}
