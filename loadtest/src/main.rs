//! `loadtest`: drives a server with real WebRTC clients (webrtc-rs) publishing real VP8 and
//! Opus, and reports what every subscriber received. `loadtest --help` explains the flags;
//! docs/loadtest.md has examples.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Parser, ValueEnum};
use loadtest::host::{RoomServer, SfuHostProcess};
use loadtest::run::{self, Report, RunConfig, Target};
use loadtest::PeerConfig;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum TargetKind {
    /// A Switchboard server via its real signaling (HTTP sign-in + Socket.IO). Every room is
    /// one group call: its first member calls the others, who all accept; publishers publish,
    /// subscribers only receive. A room must fit in one call (the server's
    /// --max-participants-per-call, 16 by default; a larger one is refused with
    /// limit_exceeded), and all members together the server's --max-sockets-per-ip (64 by
    /// default).
    Switchboard,
    /// Switchboard's SFU (the `switchboard-sfu` crate, the server's media plane) in a separate
    /// `sfu-host` process this tool spawns, driven through the room API signaling uses. Any
    /// room shape, also larger than a call allows (e.g. 1 publisher + 200 subscribers); the
    /// host's CPU and memory are read from /proc.
    Sfu,
    /// Janus's VideoRoom plugin via Janus's HTTP API (`--url http://127.0.0.1:8088/janus`).
    Janus,
}

/// Load tester for Switchboard (and Janus, for comparison): real signaling, real WebRTC, real
/// encoded media.
///
/// Every publisher sends a looped VP8 clip (~1.5 Mbit/s, 30 fps) and an Opus clip (48 kbit/s),
/// each packet carrying a 20-byte probe trailer (sequence number + send time), and answers a
/// PLI by jumping to the clip's next keyframe. Every subscriber measures per track: packets,
/// bitrate, loss (probe-sequence gaps after NACK retransmission), RFC 3550 jitter, one-way
/// latency (publisher send → subscriber receive, same process clock), time to first packet.
///
/// Phases: joins at --ramp per second; --warmup seconds unmeasured; a --duration seconds
/// measurement window (rates, latency percentiles, server CPU); everyone leaves. A progress
/// line goes to stderr every second, the summary (or --json) to stdout.
///
/// Exit status: 0 when everything joined and every expected track received media and the
/// thresholds hold; 1 on failures (joins, connections, missing tracks); 2 when --max-loss or
/// --max-p99-latency is exceeded.
#[derive(Debug, Parser)]
#[command(name = "loadtest", version, verbatim_doc_comment)]
struct Args {
    /// Which server to drive.
    #[arg(long, value_enum, default_value_t = TargetKind::Switchboard)]
    target: TargetKind,
    /// Server URL: a Switchboard base URL (`--target switchboard`) or Janus's HTTP API
    /// (`--target janus`); unused with `--target sfu`.
    #[arg(long, env = "LOADTEST_URL", default_value = "http://127.0.0.1:8080")]
    url: String,
    /// Rooms, run in parallel (with `--target switchboard`, one call each).
    #[arg(long, default_value_t = 1)]
    rooms: usize,
    /// Publishers per room; each also receives the others' media.
    #[arg(long, default_value_t = 2)]
    publishers: usize,
    /// Receive-only members per room.
    #[arg(long, default_value_t = 0)]
    subscribers: usize,
    /// Publish Opus only (no video).
    #[arg(long)]
    audio_only: bool,
    /// Seconds of the measurement window (after the ramp and warm-up).
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Unmeasured seconds between the last join and the window.
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Joins per second, over all rooms (0 = as fast as possible).
    #[arg(long, default_value_t = 10.0)]
    ramp: f64,
    /// Print the report as JSON on stdout instead of the summary table.
    #[arg(long)]
    json: bool,
    /// Fail (exit 2) if loss over all tracks exceeds this many percent.
    #[arg(long, value_name = "PERCENT")]
    max_loss: Option<f64>,
    /// Fail (exit 2) if the window's p99 one-way latency exceeds this many milliseconds.
    #[arg(long, value_name = "MS")]
    max_p99_latency: Option<f64>,
    /// The server's process id, to report its CPU time per forwarded packet, memory and
    /// threads from /proc (automatic with `--target sfu`).
    #[arg(long)]
    server_pid: Option<u32>,
    /// Instead of a load run: N join/leave cycles of a subscriber against one steady
    /// publisher (`--target sfu` only); reports server memory and threads before and after.
    #[arg(long, value_name = "N")]
    churn: Option<usize>,
    /// Instead of a load run: N idle users (`--target switchboard`), each one Socket.IO
    /// connection that only answers pings; reports connect time per 1,000, server memory
    /// per connection (with --server-pid) and presence bytes received (docs/benchmarks.md).
    #[arg(long, value_name = "N")]
    idle_users: Option<usize>,
    /// Concurrent connects in `--idle-users`.
    #[arg(long, default_value_t = 50)]
    idle_concurrency: usize,
    /// Seconds `--idle-users` holds everyone connected before measuring memory.
    #[arg(long, default_value_t = 5.0)]
    idle_hold: f64,
    /// Concurrent cycles in `--churn`.
    #[arg(long, default_value_t = 10)]
    churn_concurrency: usize,
    /// The `sfu-host` binary for `--target sfu` (default: next to this executable).
    #[arg(long)]
    sfu_host: Option<PathBuf>,
    /// Local IP the peer connections bind; must be reachable from the server.
    #[arg(long, default_value = "127.0.0.1")]
    local_ip: IpAddr,
    /// No progress line.
    #[arg(long)]
    quiet: bool,
}

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            // webrtc-rs warns on every connection about things that are normal here (no DTLS
            // server name, ICE checks before the answer); keep its errors only by default.
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "error,loadtest=error".into()),
        )
        .init();
    let args = Args::parse();
    let peer = PeerConfig {
        udp_addr: SocketAddr::new(args.local_ip, 0),
        ..PeerConfig::default()
    };
    let host = if args.target == TargetKind::Sfu {
        let bin = args
            .sfu_host
            .clone()
            .unwrap_or_else(SfuHostProcess::default_binary);
        Some(Arc::new(
            SfuHostProcess::spawn(&bin)
                .await
                .map_err(anyhow::Error::msg)
                .context("starting sfu-host")?,
        ))
    } else {
        None
    };

    if let Some(users) = args.idle_users {
        if args.target != TargetKind::Switchboard {
            bail!("--idle-users needs --target switchboard");
        }
        let report = run::idle_users(
            &args.url,
            users,
            (users / 10).max(1),
            args.idle_concurrency,
            Duration::from_secs_f64(args.idle_hold),
            args.server_pid,
        )
        .await;
        if args.json {
            println!("{}", serde_json::to_string_pretty(&report)?);
        } else {
            println!(
                "idle users: {}/{} connected in {:.1} s; per {}: {:?} s",
                report.connected,
                report.users,
                report.connect_seconds,
                report.batch,
                report
                    .batch_seconds
                    .iter()
                    .map(|s| (s * 100.0).round() / 100.0)
                    .collect::<Vec<_>>()
            );
            println!(
                "  server (RSS KiB, CPU s) before: {:?}  after: {:?}  KiB/socket: {:?}",
                report.server_before, report.server_after, report.kib_per_socket
            );
            println!("  bytes received by the clients: {}", report.bytes_received);
            for f in report.failures.iter().take(5) {
                println!("  failure: {f}");
            }
        }
        if report.connected < report.users {
            std::process::exit(1);
        }
        return Ok(());
    }

    if let Some(cycles) = args.churn {
        let Some(host) = host.clone() else {
            bail!("--churn needs --target sfu");
        };
        let report = run::churn(
            host.clone() as Arc<dyn RoomServer>,
            cycles,
            20.min(cycles),
            args.churn_concurrency,
            peer,
            args.audio_only,
        )
        .await;
        host.kill().await;
        if args.json {
            println!("{}", serde_json::to_string_pretty(&report)?);
        } else {
            println!(
                "churn: {} cycles ({} with media) in {} s",
                report.cycles, report.cycles_with_media, report.seconds
            );
            println!(
                "  server before: {:?}  after: {:?}",
                report.before, report.after
            );
            println!(
                "  sfu before: {:?}\n  sfu after:  {:?}",
                report.sfu_before, report.sfu_after
            );
            for f in &report.failures {
                println!("  failure: {f}");
            }
        }
        if !report.failures.is_empty() {
            std::process::exit(1);
        }
        return Ok(());
    }

    let target = match args.target {
        TargetKind::Switchboard => {
            if args.publishers + args.subscribers < 2 {
                bail!(
                    "--target switchboard: a room is one call, so it needs at least two \
                     members (--publishers + --subscribers)"
                );
            }
            Target::Switchboard {
                url: args.url.clone(),
            }
        }
        TargetKind::Sfu => Target::Sfu(host.clone().expect("spawned above") as Arc<dyn RoomServer>),
        TargetKind::Janus => Target::Janus {
            url: args.url.trim_end_matches('/').to_owned(),
        },
    };
    let report = run::run(RunConfig {
        target,
        rooms: args.rooms,
        publishers: args.publishers,
        subscribers: args.subscribers,
        audio_only: args.audio_only,
        ramp: args.ramp,
        warmup: Duration::from_secs_f64(args.warmup),
        duration: Duration::from_secs_f64(args.duration),
        peer,
        progress: !args.quiet,
        server_pid: args.server_pid,
    })
    .await;
    if let Some(host) = host {
        host.kill().await;
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_summary(&report);
    }
    let failed =
        !report.failures.is_empty() || report.failed_joins > 0 || report.missing_tracks > 0;
    let mut broken = Vec::new();
    if let Some(max) = args.max_loss {
        if report.loss_percent > max {
            broken.push(format!("loss {}% > {max}%", report.loss_percent));
        }
    }
    if let Some(max) = args.max_p99_latency {
        match report.latency_p99_ms {
            Some(p99) if p99 <= max => {}
            Some(p99) => broken.push(format!("p99 latency {p99} ms > {max} ms")),
            None => broken.push("no latency samples".into()),
        }
    }
    for b in &broken {
        eprintln!("threshold broken: {b}");
    }
    if failed {
        eprintln!(
            "{} failures, {} missing tracks",
            report.failures.len(),
            report.missing_tracks
        );
        std::process::exit(1);
    }
    if !broken.is_empty() {
        std::process::exit(2);
    }
    Ok(())
}

fn opt(x: Option<f64>) -> String {
    x.map(|v| format!("{v:.2}")).unwrap_or_else(|| "-".into())
}

fn print_summary(r: &Report) {
    println!(
        "target {}: {} rooms x ({} publishers + {} subscribers){}; {} joined, {} failed joins, {} missing tracks",
        r.target,
        r.rooms,
        r.publishers,
        r.subscribers,
        if r.audio_only { ", audio only" } else { "" },
        r.joined,
        r.failed_joins,
        r.missing_tracks
    );
    println!(
        "window {:.1} s: {:.0} packets/s forwarded, {:.2} Mbit/s received, loss {:.3}%, latency p50 {} ms p99 {} ms",
        r.window_seconds,
        r.forwarded_packets_per_second,
        r.received_mbps,
        r.loss_percent,
        opt(r.latency_p50_ms),
        opt(r.latency_p99_ms)
    );
    if let Some(cpu) = r.loadgen_cpu_percent {
        println!("load generator: {cpu:.0}% of a core");
    }
    if let Some(s) = &r.server {
        println!(
            "server pid {}: {:.2} s CPU ({:.1}% of a core), {} µs per forwarded packet, RSS {:.1} MiB (from {:.1}, {:.0} KiB per participant), {} threads",
            s.pid,
            s.cpu_seconds,
            s.cpu_percent,
            opt(s.cpu_us_per_forwarded_packet),
            s.rss_mib,
            s.rss_before_mib,
            s.rss_per_participant_kib,
            s.threads
        );
    }
    println!();
    println!(
        "{:<6} {:>7} {:>10} {:>8} {:>10} {:>9} {:>9} {:>12}",
        "kind", "tracks", "packets", "loss %", "jitter ms", "p50 ms", "p99 ms", "max TTFP ms"
    );
    for k in &r.kinds {
        println!(
            "{:<6} {:>7} {:>10} {:>8.3} {:>10.3} {:>9} {:>9} {:>12}",
            k.kind,
            k.tracks,
            k.packets,
            k.loss_percent,
            k.jitter_median_ms,
            opt(k.latency_p50_ms),
            opt(k.latency_p99_ms),
            opt(k.time_to_first_packet_max_ms)
        );
    }
    if r.tracks.len() <= 24 {
        println!();
        println!(
            "{:<12} {:<16} {:<6} {:>8} {:>9} {:>7} {:>9} {:>8} {:>8} {:>9}",
            "subscriber",
            "publisher",
            "kind",
            "packets",
            "kbit/s",
            "loss %",
            "jitter ms",
            "p50 ms",
            "p99 ms",
            "TTFP ms"
        );
        for t in &r.tracks {
            println!(
                "{:<12} {:<16} {:<6} {:>8} {:>9.1} {:>7.3} {:>9.3} {:>8} {:>8} {:>9}",
                t.subscriber,
                t.publisher.chars().take(16).collect::<String>(),
                t.kind,
                t.packets,
                t.bitrate_kbps,
                t.loss_percent,
                t.jitter_ms,
                opt(t.latency_p50_ms),
                opt(t.latency_p99_ms),
                opt(t.time_to_first_packet_ms)
            );
        }
    }
    println!(
        "\npublishers sent {} packets, answered {} keyframe requests",
        r.sent_packets, r.keyframe_requests
    );
    for f in r.failures.iter().take(20) {
        println!("failure: {f}");
    }
    if r.failures.len() > 20 {
        println!("... and {} more failures", r.failures.len() - 20);
    }
}
