//! Receive statistics of one RTP stream the SFU receives (a publication): extended sequence
//! numbers, loss, duplicates, interarrival jitter and bitrate per reporting interval (RFC 3550
//! A.1, A.3, A.8). This is the only per-packet code of the quality module, so it is kept apart
//! from the once-per-interval report parsing and scoring.

use std::time::Instant;

use serde::Serialize;

use super::score::QualityInput;
use crate::TrackKind;

/// RFC 3550 A.1: a forward jump of at least this many sequence numbers is suspicious (a
/// restarted sender) and needs a second, consecutive packet to be believed.
const MAX_DROPOUT: u16 = 3000;
/// RFC 3550 A.1: a packet up to this far behind the highest sequence number is a late
/// (reordered or retransmitted) packet, not a restart.
const MAX_MISORDER: u16 = 100;
/// Extended sequence numbers start one cycle up so a packet reordered before the very first
/// one still has a non-negative extended number.
const FIRST_CYCLE: u64 = 1 << 16;
/// A jitter sample larger than this many seconds of RTP time is a timestamp jump (a new
/// source, a long pause), not jitter, and is skipped, as libwebrtc does.
const MAX_JITTER_SAMPLE_SECONDS: u64 = 10;

/// Receive statistics of one RTP stream (one SSRC), kept by the SFU for a publication.
///
/// Feed every received packet to [`on_packet`](Self::on_packet), and every reporting interval
/// (1–5 s) call [`snapshot_and_reset_interval`](Self::snapshot_and_reset_interval).
///
/// - Sequence numbers are extended past the 16-bit wrap (RFC 3550 A.1, with its
///   `MAX_DROPOUT = 3000` / `MAX_MISORDER = 100` restart detection).
/// - Loss per interval is *expected − received* (RFC 3550 A.3), where a 128-packet window of
///   seen sequence numbers keeps duplicates out of *received*: a duplicate neither hides a
///   real loss nor makes loss negative. A packet that arrives late but within the window is
///   not lost. A late packet counted in a later interval than its hole can make that interval
///   "negative", which is clamped to 0.
/// - Interarrival jitter is RFC 3550 §6.4.1 / A.8 (`J += (|D| − J)/16`, in RTP units),
///   updated on in-order packets that start a new RTP timestamp (as libwebrtc does, so the
///   packets of one video frame, paced out together, do not count as jitter).
/// - Bitrate counts every datagram's RTP bytes, duplicates included (they used the link).
#[derive(Debug, Clone)]
pub struct ReceiveStats {
    started: bool,
    /// Highest extended sequence number seen.
    ext_max: u64,
    /// Lowest extended sequence number of the current sequence run.
    ext_base: u64,
    /// Packets expected by earlier sequence runs (before a resynchronisation).
    expected_carry: u64,
    /// Bit `i` set ⇔ extended sequence number `ext_max − i` has been received.
    window: u128,
    /// RFC 3550 `bad_seq`: after a suspicious jump, the sequence number that confirms it.
    bad_seq: Option<u16>,
    received: u64,
    duplicates: u64,
    discarded: u64,

    jitter: f64,
    jitter_clock_rate: u32,
    last_transit: Option<u32>,
    last_jitter_timestamp: u32,
    time_base: Option<Instant>,

    interval_start: Option<Instant>,
    interval_bytes: u64,
    expected_prior: u64,
    received_prior: u64,
    duplicates_prior: u64,
}

impl Default for ReceiveStats {
    fn default() -> Self {
        Self::new()
    }
}

impl ReceiveStats {
    pub fn new() -> Self {
        ReceiveStats {
            started: false,
            ext_max: 0,
            ext_base: 0,
            expected_carry: 0,
            window: 0,
            bad_seq: None,
            received: 0,
            duplicates: 0,
            discarded: 0,
            jitter: 0.0,
            jitter_clock_rate: 0,
            last_transit: None,
            last_jitter_timestamp: 0,
            time_base: None,
            interval_start: None,
            interval_bytes: 0,
            expected_prior: 0,
            received_prior: 0,
            duplicates_prior: 0,
        }
    }

    /// Records one received RTP packet. `bytes` is the RTP packet size (header + payload);
    /// `clock_rate` is the payload's RTP clock rate (48000 for Opus, 90000 for video).
    pub fn on_packet(
        &mut self,
        seq: u16,
        rtp_timestamp: u32,
        clock_rate: u32,
        arrival: Instant,
        bytes: usize,
    ) {
        self.interval_bytes = self.interval_bytes.saturating_add(bytes as u64);
        if self.interval_start.is_none() {
            self.interval_start = Some(arrival);
        }
        if !self.started {
            self.started = true;
            self.restart_sequence(FIRST_CYCLE + u64::from(seq));
            self.update_jitter(rtp_timestamp, clock_rate, arrival);
            return;
        }

        let delta = seq.wrapping_sub(self.ext_max as u16);
        if delta == 0 {
            self.duplicates += 1;
        } else if delta < MAX_DROPOUT {
            // In order, possibly after a gap.
            self.bad_seq = None;
            self.ext_max += u64::from(delta);
            self.window = if delta >= 128 {
                1
            } else {
                (self.window << delta) | 1
            };
            self.received += 1;
            self.update_jitter(rtp_timestamp, clock_rate, arrival);
        } else if delta <= u16::MAX - MAX_MISORDER + 1 {
            // A large jump either way: a restarted sender if the next packet follows this one.
            if self.bad_seq == Some(seq) {
                self.expected_carry += self.ext_max + 1 - self.ext_base;
                let next_cycle = (self.ext_max & !0xffff) + (1 << 16);
                self.restart_sequence(next_cycle + u64::from(seq));
                self.last_transit = None;
                self.update_jitter(rtp_timestamp, clock_rate, arrival);
            } else {
                self.bad_seq = Some(seq.wrapping_add(1));
                self.discarded += 1;
            }
        } else {
            // Late: reordered or retransmitted, at most MAX_MISORDER behind.
            let behind = u16::MAX - delta + 1;
            let bit = 1u128 << behind;
            if self.window & bit != 0 {
                self.duplicates += 1;
            } else {
                self.window |= bit;
                self.received += 1;
                // Reordered before the first packet we saw: the run started earlier.
                self.ext_base = self.ext_base.min(self.ext_max - u64::from(behind));
            }
        }
    }

    fn restart_sequence(&mut self, ext: u64) {
        self.ext_max = ext;
        self.ext_base = ext;
        self.window = 1;
        self.bad_seq = None;
        self.received += 1;
    }

    fn update_jitter(&mut self, rtp_timestamp: u32, clock_rate: u32, arrival: Instant) {
        if clock_rate == 0 {
            return;
        }
        if clock_rate != self.jitter_clock_rate {
            self.jitter_clock_rate = clock_rate;
            self.jitter = 0.0;
            self.last_transit = None;
        }
        let base = *self.time_base.get_or_insert(arrival);
        let since = arrival.saturating_duration_since(base).as_nanos();
        // Arrival in RTP units, modulo 2^32 like the timestamps themselves.
        let arrival_rtp = (since * u128::from(clock_rate) / 1_000_000_000) as u32;
        let transit = arrival_rtp.wrapping_sub(rtp_timestamp);
        match self.last_transit {
            Some(_) if rtp_timestamp == self.last_jitter_timestamp => return,
            Some(last) => {
                let d = u64::from((transit.wrapping_sub(last) as i32).unsigned_abs());
                if d <= MAX_JITTER_SAMPLE_SECONDS * u64::from(clock_rate) {
                    self.jitter += (d as f64 - self.jitter) / 16.0;
                }
            }
            None => {}
        }
        self.last_transit = Some(transit);
        self.last_jitter_timestamp = rtp_timestamp;
    }

    /// Packets expected since the first one (RFC 3550: highest − base + 1, over every run).
    pub fn total_expected(&self) -> u64 {
        if self.started {
            self.expected_carry + self.ext_max + 1 - self.ext_base
        } else {
            0
        }
    }

    /// Distinct packets received (duplicates and discarded packets excluded).
    pub fn total_received(&self) -> u64 {
        self.received
    }

    /// Cumulative packets lost (RFC 3550's cumulative number lost, never negative here).
    pub fn total_lost(&self) -> u64 {
        self.total_expected().saturating_sub(self.received)
    }

    /// Duplicate packets seen since the start.
    pub fn total_duplicates(&self) -> u64 {
        self.duplicates
    }

    /// Packets ignored as a suspicious sequence jump that was not confirmed.
    pub fn total_discarded(&self) -> u64 {
        self.discarded
    }

    /// Current interarrival jitter in RTP timestamp units (what an RTCP report carries).
    pub fn jitter_rtp(&self) -> u32 {
        self.jitter as u32
    }

    /// Current interarrival jitter in milliseconds.
    pub fn jitter_ms(&self) -> f32 {
        if self.jitter_clock_rate == 0 {
            0.0
        } else {
            (self.jitter * 1000.0 / f64::from(self.jitter_clock_rate)) as f32
        }
    }

    /// Statistics of the interval since the previous snapshot (or the first packet), and starts
    /// a new interval at `now`.
    pub fn snapshot_and_reset_interval(&mut self, now: Instant) -> IntervalStats {
        let expected_total = self.total_expected();
        let packets_expected = expected_total.saturating_sub(self.expected_prior);
        let packets_received = self.received.saturating_sub(self.received_prior);
        let packets_lost = packets_expected.saturating_sub(packets_received);
        let duration = self
            .interval_start
            .map(|start| now.saturating_duration_since(start))
            .unwrap_or_default();
        let bitrate_bps = if duration.is_zero() {
            0
        } else {
            (self.interval_bytes as f64 * 8.0 / duration.as_secs_f64()) as u64
        };
        let stats = IntervalStats {
            duration_ms: duration.as_millis() as u64,
            packets_expected,
            packets_received,
            packets_lost,
            duplicates: self.duplicates - self.duplicates_prior,
            loss_percent: if packets_expected == 0 {
                0.0
            } else {
                (packets_lost as f64 * 100.0 / packets_expected as f64) as f32
            },
            jitter_ms: self.jitter_ms(),
            bytes: self.interval_bytes,
            bitrate_bps,
        };
        self.expected_prior = expected_total;
        self.received_prior = self.received;
        self.duplicates_prior = self.duplicates;
        self.interval_bytes = 0;
        self.interval_start = Some(now);
        stats
    }
}

/// One interval of [`ReceiveStats`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct IntervalStats {
    pub duration_ms: u64,
    pub packets_expected: u64,
    /// Distinct packets received in the interval (late packets count in the interval they
    /// arrive in).
    pub packets_received: u64,
    /// `packets_expected − packets_received`, clamped at 0.
    pub packets_lost: u64,
    pub duplicates: u64,
    pub loss_percent: f32,
    /// Interarrival jitter at the end of the interval (a running estimate, not reset).
    pub jitter_ms: f32,
    pub bytes: u64,
    pub bitrate_bps: u64,
}

impl IntervalStats {
    /// The scorer's input for a publication. `rtt_ms`: the best round-trip estimate for this
    /// participant (the publisher connection carries no SFU-sent media, so usually its
    /// subscriber connection's RTT); 0 when unknown.
    pub fn to_input(
        &self,
        kind: TrackKind,
        rtt_ms: f32,
        expected_bitrate_bps: Option<u64>,
    ) -> QualityInput {
        QualityInput {
            kind,
            loss_percent: self.loss_percent,
            jitter_ms: self.jitter_ms,
            rtt_ms,
            bitrate_bps: self.bitrate_bps,
            expected_bitrate_bps,
            packets_expected: self.packets_expected,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::quality::{score, QualityLevel};

    const OPUS: u32 = 48_000;
    const PTIME: Duration = Duration::from_millis(20);
    const SAMPLES: u32 = 960;

    /// Feeds packets `0..count` of a 20 ms Opus stream starting at `first_seq`, skipping the
    /// indices `skip` selects, arriving exactly on time.
    fn feed(
        stats: &mut ReceiveStats,
        t0: Instant,
        first_seq: u16,
        count: u32,
        skip: impl Fn(u32) -> bool,
    ) {
        for i in 0..count {
            if !skip(i) {
                stats.on_packet(
                    first_seq.wrapping_add(i as u16),
                    i.wrapping_mul(SAMPLES),
                    OPUS,
                    t0 + PTIME * i,
                    100,
                );
            }
        }
    }

    #[test]
    fn in_order_stream_has_no_loss_and_measures_bitrate() {
        let t0 = Instant::now();
        let mut stats = ReceiveStats::new();
        feed(&mut stats, t0, 1000, 51, |_| false);
        let s = stats.snapshot_and_reset_interval(t0 + Duration::from_secs(1));
        assert_eq!(s.packets_expected, 51);
        assert_eq!(s.packets_received, 51);
        assert_eq!(s.packets_lost, 0);
        assert_eq!(s.loss_percent, 0.0);
        assert_eq!(s.duration_ms, 1000);
        assert_eq!(s.bitrate_bps, 51 * 100 * 8);
        assert!(s.jitter_ms < 0.01, "{s:?}");
    }

    #[test]
    fn gaps_are_loss() {
        let t0 = Instant::now();
        let mut stats = ReceiveStats::new();
        // Drop every tenth packet (never the first or the last).
        feed(&mut stats, t0, 7, 101, |i| i % 10 == 5);
        let s = stats.snapshot_and_reset_interval(t0 + Duration::from_secs(2));
        assert_eq!(s.packets_expected, 101);
        assert_eq!(s.packets_lost, 10);
        assert!((s.loss_percent - 9.90).abs() < 0.01, "{s:?}");
        assert_eq!(
            score(s.to_input(TrackKind::Audio, 40.0, None)).level,
            QualityLevel::Poor
        );
        assert_eq!(stats.total_lost(), 10);
    }

    #[test]
    fn sequence_wraparound() {
        let t0 = Instant::now();
        let mut stats = ReceiveStats::new();
        feed(&mut stats, t0, 65_500, 100, |i| i == 50);
        let s = stats.snapshot_and_reset_interval(t0 + Duration::from_secs(2));
        assert_eq!(s.packets_expected, 100);
        assert_eq!(s.packets_lost, 1);
        // And across several wraps without drift.
        let t1 = t0 + Duration::from_secs(2);
        feed(&mut stats, t1, 65_500u16.wrapping_add(100), 200_000, |_| {
            false
        });
        let s = stats.snapshot_and_reset_interval(t1 + PTIME * 200_000);
        assert_eq!(s.packets_expected, 200_000);
        assert_eq!(s.packets_lost, 0);
        assert_eq!(stats.total_expected(), 200_100);
    }

    #[test]
    fn reordering_is_not_loss() {
        let t0 = Instant::now();
        let mut stats = ReceiveStats::new();
        // Swap every pair, across the wrap: 65531, 65530, 65533, 65532, ...
        let first = 65_530u16;
        for i in 0..50u32 {
            let j = i ^ 1;
            stats.on_packet(
                first.wrapping_add(j as u16),
                j * SAMPLES,
                OPUS,
                t0 + PTIME * i,
                100,
            );
        }
        let s = stats.snapshot_and_reset_interval(t0 + Duration::from_secs(1));
        assert_eq!(s.packets_expected, 50);
        assert_eq!(s.packets_received, 50);
        assert_eq!(s.packets_lost, 0);
        assert_eq!(s.duplicates, 0);
    }

    #[test]
    fn late_packet_within_window_fills_its_hole() {
        let t0 = Instant::now();
        let mut stats = ReceiveStats::new();
        feed(&mut stats, t0, 0, 100, |i| i == 10);
        // Packet 10 arrives 80 packets late (a retransmission).
        stats.on_packet(10, 10 * SAMPLES, OPUS, t0 + Duration::from_secs(2), 100);
        let s = stats.snapshot_and_reset_interval(t0 + Duration::from_secs(2));
        assert_eq!(s.packets_lost, 0);
        assert_eq!(stats.total_lost(), 0);
    }

    #[test]
    fn late_packet_in_the_next_interval_does_not_make_loss_negative() {
        let t0 = Instant::now();
        let mut stats = ReceiveStats::new();
        feed(&mut stats, t0, 0, 50, |i| i == 49 - 5);
        let s = stats.snapshot_and_reset_interval(t0 + Duration::from_secs(1));
        assert_eq!(s.packets_lost, 1);
        stats.on_packet(44, 44 * SAMPLES, OPUS, t0 + Duration::from_secs(1), 100);
        let s = stats.snapshot_and_reset_interval(t0 + Duration::from_secs(2));
        assert_eq!(s.packets_expected, 0);
        assert_eq!(s.packets_received, 1);
        assert_eq!(s.packets_lost, 0);
        assert_eq!(s.loss_percent, 0.0);
        assert_eq!(stats.total_lost(), 0);
    }

    #[test]
    fn packet_reordered_before_the_first_one() {
        let t0 = Instant::now();
        let mut stats = ReceiveStats::new();
        stats.on_packet(5, 5 * SAMPLES, OPUS, t0, 100);
        stats.on_packet(4, 4 * SAMPLES, OPUS, t0, 100);
        stats.on_packet(3, 3 * SAMPLES, OPUS, t0, 100);
        stats.on_packet(6, 6 * SAMPLES, OPUS, t0 + PTIME, 100);
        let s = stats.snapshot_and_reset_interval(t0 + PTIME);
        assert_eq!(
            (s.packets_expected, s.packets_received, s.packets_lost),
            (4, 4, 0)
        );
        // Also right after a wrap.
        let mut stats = ReceiveStats::new();
        stats.on_packet(1, 0, OPUS, t0, 100);
        stats.on_packet(65_535, 0, OPUS, t0, 100);
        stats.on_packet(0, 0, OPUS, t0, 100);
        let s = stats.snapshot_and_reset_interval(t0 + PTIME);
        assert_eq!((s.packets_expected, s.packets_lost), (3, 0));
    }

    #[test]
    fn duplicates_are_counted_and_do_not_hide_loss() {
        let t0 = Instant::now();
        let mut stats = ReceiveStats::new();
        for i in 0..100u32 {
            if i % 20 == 3 {
                continue; // 5 lost
            }
            let seq = i as u16;
            stats.on_packet(seq, i * SAMPLES, OPUS, t0 + PTIME * i, 100);
            if i % 20 == 7 {
                // 5 duplicated at once...
                stats.on_packet(seq, i * SAMPLES, OPUS, t0 + PTIME * i, 100);
            }
            if i % 20 == 10 {
                // ...and 5 others duplicated two packets later.
                stats.on_packet(seq - 2, (i - 2) * SAMPLES, OPUS, t0 + PTIME * i, 100);
            }
        }
        let s = stats.snapshot_and_reset_interval(t0 + Duration::from_secs(2));
        assert_eq!(s.packets_expected, 100);
        assert_eq!(s.packets_received, 95);
        assert_eq!(s.packets_lost, 5);
        assert_eq!(s.duplicates, 10);
        assert_eq!(s.loss_percent, 5.0);
        // Duplicates used the link: they count towards the bitrate.
        assert_eq!(s.bytes, 105 * 100);
    }

    #[test]
    fn sender_restart_resynchronises_after_two_packets() {
        let t0 = Instant::now();
        let mut stats = ReceiveStats::new();
        feed(&mut stats, t0, 100, 50, |_| false);
        // The sender restarts at 40000: the first packet is held as suspicious...
        feed(&mut stats, t0 + Duration::from_secs(1), 40_000, 50, |_| {
            false
        });
        let s = stats.snapshot_and_reset_interval(t0 + Duration::from_secs(2));
        assert_eq!(stats.total_discarded(), 1);
        // ...the second confirms it; the jump itself is not loss.
        assert_eq!(s.packets_expected, 99);
        assert_eq!(s.packets_received, 99);
        assert_eq!(s.packets_lost, 0);
        // One stray packet far away is discarded and does not move the sequence.
        stats.on_packet(10, 0, OPUS, t0 + Duration::from_secs(2), 100);
        feed(&mut stats, t0 + Duration::from_secs(2), 40_050, 10, |_| {
            false
        });
        let s = stats.snapshot_and_reset_interval(t0 + Duration::from_secs(3));
        assert_eq!((s.packets_expected, s.packets_lost), (10, 0));
        assert_eq!(stats.total_discarded(), 2);
    }

    #[test]
    fn jitter_follows_rfc3550() {
        let t0 = Instant::now();
        let mut stats = ReceiveStats::new();
        // Every other packet arrives 10 ms late: |D| = 10 ms for every pair.
        for i in 0..300u32 {
            let late = if i % 2 == 1 {
                Duration::from_millis(10)
            } else {
                Duration::ZERO
            };
            stats.on_packet(i as u16, i * SAMPLES, OPUS, t0 + PTIME * i + late, 100);
        }
        let ms = stats.jitter_ms();
        assert!((9.5..=10.01).contains(&ms), "{ms}");
        assert!(stats.jitter_rtp().abs_diff((ms * 48.0) as u32) <= 1);
    }

    #[test]
    fn packets_of_one_video_frame_are_not_jitter() {
        let t0 = Instant::now();
        let mut stats = ReceiveStats::new();
        let mut seq = 0u16;
        for frame in 0..60u32 {
            let at = t0 + Duration::from_millis(33) * frame;
            for p in 0..10u32 {
                // Paced out 1 ms apart.
                stats.on_packet(
                    seq,
                    frame * 3000,
                    90_000,
                    at + Duration::from_millis(p.into()),
                    1200,
                );
                seq = seq.wrapping_add(1);
            }
        }
        assert!(stats.jitter_ms() < 0.5, "{}", stats.jitter_ms());
    }

    #[test]
    fn rtp_timestamp_wrap_is_not_jitter() {
        let t0 = Instant::now();
        let mut stats = ReceiveStats::new();
        let ts0 = u32::MAX - 10 * SAMPLES;
        for i in 0..50u32 {
            stats.on_packet(
                i as u16,
                ts0.wrapping_add(i * SAMPLES),
                OPUS,
                t0 + PTIME * i,
                100,
            );
        }
        assert!(stats.jitter_ms() < 0.1, "{}", stats.jitter_ms());
    }

    #[test]
    fn empty_interval_is_lost() {
        let t0 = Instant::now();
        let mut stats = ReceiveStats::new();
        let s = stats.snapshot_and_reset_interval(t0);
        assert_eq!(s.packets_expected, 0);
        assert_eq!(s.bitrate_bps, 0);
        feed(&mut stats, t0, 0, 10, |_| false);
        stats.snapshot_and_reset_interval(t0 + Duration::from_secs(1));
        let s = stats.snapshot_and_reset_interval(t0 + Duration::from_secs(2));
        assert_eq!((s.packets_expected, s.bitrate_bps), (0, 0));
        let q = score(s.to_input(TrackKind::Audio, 40.0, None));
        assert_eq!(q.level, QualityLevel::Lost);
    }

    #[test]
    fn zero_clock_rate_does_not_panic() {
        let t0 = Instant::now();
        let mut stats = ReceiveStats::new();
        stats.on_packet(0, 0, 0, t0, 10);
        stats.on_packet(1, 100, 0, t0 + PTIME, 10);
        assert_eq!(stats.jitter_ms(), 0.0);
        // Arrival before the time base (a caller's non-monotonic clock) does not panic.
        stats.on_packet(2, 200, OPUS, t0 - PTIME, 10);
        stats.on_packet(3, 300, OPUS, t0 - PTIME * 2, 10);
    }
}
