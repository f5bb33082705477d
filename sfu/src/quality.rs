//! Call-quality measurement and scoring: what the SFU measures per publication (its own receive
//! statistics) and per subscription (the subscriber's RTCP receiver reports), combined into a
//! score with documented thresholds. The formula, the thresholds and why are in
//! `docs/quality.md`.
//!
//! Everything here is pure and synchronous: no I/O, no clock reads (callers pass `Instant`s and
//! NTP timestamps in), no allocation. [`ReceiveStats::on_packet`] runs once per received RTP
//! packet and only updates a few integers and one float.
//!
//! The score is a simplified ITU-T G.107 E-model (as LiveKit's connection-quality scorer does,
//! written from the standard, not from its code):
//!
//! ```text
//! d      = rtt/2 + 2·jitter + codec delay                         (one-way mouth-to-ear, ms)
//! Id     = 0.024·d + 0.11·(d − 177.3)·H(d − 177.3)                (delay impairment)
//! Ie_eff = 95 · loss% / (loss% + 25)                              (loss impairment, Ie = 0, Bpl = 25)
//! Ib     = 20 · log2(expected bitrate / bitrate)   if below expected (bitrate impairment)
//! R      = 93.2 − Id − Ie_eff − Ib
//! MOS    = 1 + 0.035·R + 7·10⁻⁶·R·(R − 60)·(100 − R)             (clamped to 1.0..=4.5)
//! level  = lost if nothing was expected, else excellent if MOS ≥ 4.0, good if MOS ≥ 3.6, else poor
//! ```

use std::time::{Duration, Instant};

use serde::Serialize;

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

/// What one RTCP receiver report block from a subscriber says about one subscription.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ReportStats {
    pub loss_percent: f32,
    pub jitter_ms: f32,
    /// From LSR/DLSR ([`rtt_from_report`]); `None` before the subscriber has seen a sender
    /// report.
    pub rtt_ms: Option<f32>,
}

impl ReportStats {
    /// `fraction_lost` and `jitter_rtp` are the report block's fields; `clock_rate` is the
    /// subscription's RTP clock rate.
    pub fn from_report(
        fraction_lost: u8,
        jitter_rtp: u32,
        clock_rate: u32,
        rtt: Option<Duration>,
    ) -> Self {
        ReportStats {
            loss_percent: fraction_lost_percent(fraction_lost),
            jitter_ms: jitter_rtp_to_ms(jitter_rtp, clock_rate),
            rtt_ms: rtt.map(|rtt| rtt.as_secs_f32() * 1000.0),
        }
    }

    /// The scorer's input for a subscription. `bitrate_bps` and `packets_expected` are what the
    /// SFU forwarded on this subscription in the interval (the report does not carry them).
    pub fn to_input(
        &self,
        kind: TrackKind,
        bitrate_bps: u64,
        expected_bitrate_bps: Option<u64>,
        packets_expected: u64,
    ) -> QualityInput {
        QualityInput {
            kind,
            loss_percent: self.loss_percent,
            jitter_ms: self.jitter_ms,
            rtt_ms: self.rtt_ms.unwrap_or(0.0),
            bitrate_bps,
            expected_bitrate_bps,
            packets_expected,
        }
    }
}

/// RTCP "fraction lost" (an 8-bit fixed-point fraction, /256) as a percentage.
pub fn fraction_lost_percent(fraction_lost: u8) -> f32 {
    f32::from(fraction_lost) * 100.0 / 256.0
}

/// RTCP interarrival jitter (RTP timestamp units) in milliseconds; 0 for a zero clock rate.
pub fn jitter_rtp_to_ms(jitter_rtp: u32, clock_rate: u32) -> f32 {
    if clock_rate == 0 {
        0.0
    } else {
        (f64::from(jitter_rtp) * 1000.0 / f64::from(clock_rate)) as f32
    }
}

/// The middle 32 bits of a 64-bit NTP timestamp (the format of LSR and DLSR, 1/65536 s).
pub fn ntp_middle32(ntp: u64) -> u32 {
    (ntp >> 16) as u32
}

/// Seconds between the NTP epoch (1900) and the Unix epoch (1970).
const NTP_UNIX_OFFSET_SECONDS: u64 = 2_208_988_800;

/// The middle 32 bits of the NTP time of `since_unix_epoch` (callers read the wall clock).
pub fn unix_to_ntp_middle32(since_unix_epoch: Duration) -> u32 {
    let seconds = since_unix_epoch.as_secs() + NTP_UNIX_OFFSET_SECONDS;
    let fraction = (u64::from(since_unix_epoch.subsec_nanos()) << 16) / 1_000_000_000;
    ((seconds << 16) as u32) | fraction as u32
}

/// Round-trip time from a receiver report block (RFC 3550 §6.4.1): `now − LSR − DLSR`, all in
/// NTP middle-32 units (1/65536 s), modulo 2^32. `None` when LSR is 0 (the peer has not seen a
/// sender report yet), or when the result would be negative or implausible (over ~9 hours:
/// clock confusion or a corrupt report).
pub fn rtt_from_report(now_ntp_middle32: u32, lsr: u32, dlsr: u32) -> Option<Duration> {
    if lsr == 0 {
        return None;
    }
    let elapsed = now_ntp_middle32.wrapping_sub(lsr);
    if elapsed >= 0x8000_0000 || dlsr > elapsed {
        return None;
    }
    let rtt = u64::from(elapsed - dlsr);
    Some(Duration::from_nanos(rtt * 1_000_000_000 / 65_536))
}

/// Everything the scorer looks at, for one publication or one subscription over one interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct QualityInput {
    pub kind: TrackKind,
    /// 0..=100.
    pub loss_percent: f32,
    pub jitter_ms: f32,
    /// Round-trip time; 0 when unknown.
    pub rtt_ms: f32,
    pub bitrate_bps: u64,
    /// What the stream should carry (e.g. the target of the simulcast layer being forwarded).
    /// `None` when there is no meaningful expectation: audio with DTX, screen shares whose
    /// bitrate follows the content, or camera video without a known target.
    pub expected_bitrate_bps: Option<u64>,
    /// Packets expected in the interval; 0 means nothing arrived: quality is `lost`.
    pub packets_expected: u64,
}

/// Connection-quality level, ordered worst to best (so `min` combines two sides).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum QualityLevel {
    /// Nothing arrived in the interval.
    Lost,
    /// MOS < 3.6 (R < ~70): many users dissatisfied.
    Poor,
    /// 3.6 ≤ MOS < 4.0 (R ≈ 70–79): some users dissatisfied.
    Good,
    /// MOS ≥ 4.0 (R ≥ ~79.4): users satisfied.
    Excellent,
}

impl QualityLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            QualityLevel::Lost => "lost",
            QualityLevel::Poor => "poor",
            QualityLevel::Good => "good",
            QualityLevel::Excellent => "excellent",
        }
    }
}

/// The score of one [`QualityInput`], with the inputs repeated so it can be sent as is.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Quality {
    pub level: QualityLevel,
    /// Estimated mean opinion score, 1.0..=4.5.
    pub mos: f32,
    /// E-model transmission rating, 0..=93.2.
    pub r_factor: f32,
    pub loss_percent: f32,
    pub jitter_ms: f32,
    pub rtt_ms: f32,
    pub bitrate_bps: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected_bitrate_bps: Option<u64>,
}

/// E-model basic signal-to-noise ratio with default values (G.107 `Ro − Is`).
pub const R_MAX: f32 = 93.2;
/// Lowest MOS of the `excellent` level (R ≈ 79.4, G.107 "users satisfied").
pub const MOS_EXCELLENT: f32 = 4.0;
/// Lowest MOS of the `good` level (R ≈ 70, G.107 "some users dissatisfied").
pub const MOS_GOOD: f32 = 3.6;
/// Codec and packetisation delay: one 20 ms Opus frame.
pub const AUDIO_CODEC_DELAY_MS: f32 = 20.0;
/// One frame at 30 fps.
pub const VIDEO_CODEC_DELAY_MS: f32 = 33.0;
/// G.113 packet-loss robustness of a codec with packet-loss concealment (G.711 + PLC: 25.1);
/// Opus with PLC and in-band FEC is at least this robust, so this errs on the strict side.
pub const LOSS_ROBUSTNESS: f32 = 25.0;
/// R points lost per halving of the bitrate below the expected bitrate.
pub const BITRATE_IMPAIRMENT_PER_HALVING: f32 = 20.0;

/// Scores one interval of one stream. Non-finite or negative inputs count as 0; loss is
/// clamped to 0..=100.
pub fn score(input: QualityInput) -> Quality {
    let clean = |v: f32| if v.is_finite() && v > 0.0 { v } else { 0.0 };
    let loss = clean(input.loss_percent).min(100.0);
    let jitter = clean(input.jitter_ms);
    let rtt = clean(input.rtt_ms);

    let codec_delay = match input.kind {
        TrackKind::Audio => AUDIO_CODEC_DELAY_MS,
        TrackKind::Video => VIDEO_CODEC_DELAY_MS,
    };
    let delay = rtt / 2.0 + 2.0 * jitter + codec_delay;
    let delay_impairment = 0.024 * delay + 0.11 * (delay - 177.3).max(0.0);
    let loss_impairment = 95.0 * loss / (loss + LOSS_ROBUSTNESS);
    let bitrate_impairment = match input.expected_bitrate_bps {
        Some(expected) if expected > 0 && input.bitrate_bps < expected => {
            let ratio = input.bitrate_bps as f32 / expected as f32;
            if ratio > 0.0 {
                -BITRATE_IMPAIRMENT_PER_HALVING * ratio.log2()
            } else {
                R_MAX
            }
        }
        _ => 0.0,
    };
    let r = (R_MAX - delay_impairment - loss_impairment - bitrate_impairment).clamp(0.0, R_MAX);

    let lost = input.packets_expected == 0 || loss >= 100.0;
    let mos = if lost { 1.0 } else { mos_from_r(r) };
    let level = if lost {
        QualityLevel::Lost
    } else if mos >= MOS_EXCELLENT {
        QualityLevel::Excellent
    } else if mos >= MOS_GOOD {
        QualityLevel::Good
    } else {
        QualityLevel::Poor
    };
    Quality {
        level,
        mos,
        r_factor: if lost { 0.0 } else { r },
        loss_percent: loss,
        jitter_ms: jitter,
        rtt_ms: rtt,
        bitrate_bps: input.bitrate_bps,
        expected_bitrate_bps: input.expected_bitrate_bps,
    }
}

/// ITU-T G.107 R → MOS conversion, clamped to 1.0..=4.5.
pub fn mos_from_r(r: f32) -> f32 {
    if r <= 0.0 {
        return 1.0;
    }
    if r >= 100.0 {
        return 4.5;
    }
    (1.0 + 0.035 * r + 7.0e-6 * r * (r - 60.0) * (100.0 - r)).clamp(1.0, 4.5)
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPUS: u32 = 48_000;
    const PTIME: Duration = Duration::from_millis(20);
    const SAMPLES: u32 = 960;

    fn audio(loss_percent: f32, jitter_ms: f32, rtt_ms: f32) -> QualityInput {
        QualityInput {
            kind: TrackKind::Audio,
            loss_percent,
            jitter_ms,
            rtt_ms,
            bitrate_bps: 32_000,
            expected_bitrate_bps: None,
            packets_expected: 250,
        }
    }

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
    fn clean_call_is_excellent() {
        let q = score(audio(0.0, 10.0, 40.0));
        assert_eq!(q.level, QualityLevel::Excellent);
        assert!(q.mos > 4.3 && q.mos <= 4.5, "{q:?}");
    }

    #[test]
    fn two_percent_loss_is_still_excellent() {
        // Documented: MOS ≥ 4.0 is excellent, and 2% random loss with PLC costs ~7 R points.
        let q = score(audio(2.0, 10.0, 40.0));
        assert_eq!(q.level, QualityLevel::Excellent);
        assert!(q.mos >= 4.0 && q.mos < 4.3, "{q:?}");
    }

    #[test]
    fn five_percent_loss_is_good() {
        let q = score(audio(5.0, 10.0, 40.0));
        assert_eq!(q.level, QualityLevel::Good, "{q:?}");
    }

    #[test]
    fn ten_percent_loss_is_poor() {
        let q = score(audio(10.0, 10.0, 40.0));
        assert_eq!(q.level, QualityLevel::Poor, "{q:?}");
    }

    #[test]
    fn high_rtt_degrades() {
        let q = score(audio(0.0, 10.0, 600.0));
        assert_eq!(q.level, QualityLevel::Poor, "{q:?}");
        // One-way delay under ~200 ms barely matters (G.114); past ~177 ms it costs quickly.
        let q = score(audio(0.0, 10.0, 300.0));
        assert_eq!(q.level, QualityLevel::Excellent, "{q:?}");
        let q = score(audio(0.0, 10.0, 500.0));
        assert_eq!(q.level, QualityLevel::Good, "{q:?}");
    }

    #[test]
    fn high_jitter_degrades() {
        // 60 ms jitter ≈ a 120 ms jitter buffer.
        assert_eq!(
            score(audio(0.0, 60.0, 100.0)).level,
            QualityLevel::Excellent
        );
        assert_eq!(score(audio(0.0, 100.0, 100.0)).level, QualityLevel::Good);
        assert_eq!(score(audio(0.0, 150.0, 100.0)).level, QualityLevel::Poor);
    }

    #[test]
    fn nothing_expected_is_lost() {
        let q = score(QualityInput {
            packets_expected: 0,
            bitrate_bps: 0,
            ..audio(0.0, 0.0, 0.0)
        });
        assert_eq!(q.level, QualityLevel::Lost);
        assert_eq!(q.mos, 1.0);
        assert_eq!(score(audio(100.0, 0.0, 0.0)).level, QualityLevel::Lost);
    }

    #[test]
    fn video_below_expected_bitrate_degrades() {
        let video = |bitrate_bps| QualityInput {
            kind: TrackKind::Video,
            bitrate_bps,
            expected_bitrate_bps: Some(1_000_000),
            ..audio(0.0, 10.0, 40.0)
        };
        assert_eq!(score(video(1_200_000)).level, QualityLevel::Excellent);
        assert_eq!(score(video(800_000)).level, QualityLevel::Excellent);
        assert_eq!(score(video(500_000)).level, QualityLevel::Good);
        assert_eq!(score(video(200_000)).level, QualityLevel::Poor);
        assert_eq!(score(video(0)).level, QualityLevel::Poor);
    }

    #[test]
    fn garbage_inputs_are_sanitised() {
        let q = score(audio(f32::NAN, -5.0, f32::INFINITY));
        assert_eq!(q.level, QualityLevel::Excellent);
        assert!(q.mos.is_finite());
        let q = score(audio(250.0, 1e9, 1e9));
        assert_eq!(q.level, QualityLevel::Lost);
        let q = score(audio(99.0, 1e9, 1e9));
        assert_eq!(q.level, QualityLevel::Poor);
        assert_eq!(q.mos, 1.0);
    }

    #[test]
    fn mos_is_monotonic_and_bounded() {
        let mut last = 0.0;
        for r in 0..=100 {
            let mos = mos_from_r(r as f32);
            assert!((1.0..=4.5).contains(&mos));
            assert!(mos >= last, "r={r}");
            last = mos;
        }
        assert!((mos_from_r(79.4) - 4.0).abs() < 0.01);
        assert!((mos_from_r(70.0) - 3.6).abs() < 0.01);
    }

    #[test]
    fn levels_order_worst_first() {
        assert!(QualityLevel::Lost < QualityLevel::Poor);
        assert!(QualityLevel::Good < QualityLevel::Excellent);
        assert_eq!(
            QualityLevel::Excellent.min(QualityLevel::Poor),
            QualityLevel::Poor
        );
        assert_eq!(QualityLevel::Good.as_str(), "good");
    }

    #[test]
    fn quality_serializes_with_numeric_fields_and_lowercase_level() {
        let json = serde_json::to_value(score(audio(2.0, 10.0, 40.0))).unwrap();
        assert_eq!(json["level"], "excellent");
        assert!(json["mos"].is_f64());
        assert!(json["loss_percent"].is_f64());
        assert!(json["jitter_ms"].is_f64());
        assert!(json["rtt_ms"].is_f64());
        assert_eq!(json["bitrate_bps"], 32_000);
        assert!(json.get("expected_bitrate_bps").is_none());
    }

    #[test]
    fn prints_the_scenario_table() {
        // `cargo test -p switchboard-sfu --lib quality::tests::prints -- --nocapture` prints
        // the table in docs/quality.md.
        let video = |bitrate_bps| QualityInput {
            kind: TrackKind::Video,
            bitrate_bps,
            expected_bitrate_bps: Some(1_000_000),
            ..audio(0.0, 10.0, 40.0)
        };
        let rows = [
            ("clean", audio(0.0, 10.0, 40.0)),
            ("2% loss", audio(2.0, 10.0, 40.0)),
            ("5% loss", audio(5.0, 10.0, 40.0)),
            ("10% loss", audio(10.0, 10.0, 40.0)),
            ("300 ms RTT", audio(0.0, 10.0, 300.0)),
            ("500 ms RTT", audio(0.0, 10.0, 500.0)),
            ("600 ms RTT", audio(0.0, 10.0, 600.0)),
            ("100 ms jitter, 100 ms RTT", audio(0.0, 100.0, 100.0)),
            ("150 ms jitter, 100 ms RTT", audio(0.0, 150.0, 100.0)),
            ("video at 50% of expected", video(500_000)),
            ("video at 20% of expected", video(200_000)),
            (
                "no packets",
                QualityInput {
                    packets_expected: 0,
                    ..audio(0.0, 0.0, 0.0)
                },
            ),
        ];
        for (name, input) in rows {
            let q = score(input);
            println!(
                "| {name} | {} | {:.1} | {:.2} |",
                q.level.as_str(),
                q.r_factor,
                q.mos
            );
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

    #[test]
    fn receiver_report_fields() {
        let r = ReportStats::from_report(5, 800, OPUS, Some(Duration::from_millis(40)));
        assert!((r.loss_percent - 1.953).abs() < 0.01);
        assert!((r.jitter_ms - 16.667).abs() < 0.01);
        assert_eq!(r.rtt_ms, Some(40.0));
        let q = score(r.to_input(TrackKind::Audio, 32_000, None, 250));
        assert_eq!(q.level, QualityLevel::Excellent);
        assert_eq!(fraction_lost_percent(255), 255.0 * 100.0 / 256.0);
        assert_eq!(jitter_rtp_to_ms(90, 0), 0.0);
        let r = ReportStats::from_report(0, 0, OPUS, None);
        assert_eq!(r.to_input(TrackKind::Audio, 0, None, 1).rtt_ms, 0.0);
    }

    #[test]
    fn rtt_from_lsr_and_dlsr() {
        let s = 65_536u32;
        // Sent at 10 s, held 1 s by the receiver, report arrives at 11.5 s: 500 ms.
        let rtt = rtt_from_report(11 * s + s / 2, 10 * s, s).unwrap();
        assert_eq!(rtt, Duration::from_millis(500));
        // Across the 32-bit wrap.
        let lsr = u32::MAX - s / 4;
        let rtt = rtt_from_report(lsr.wrapping_add(s / 2), lsr, s / 8).unwrap();
        assert_eq!(rtt, Duration::from_millis(375));
        // No sender report seen yet, DLSR longer than the elapsed time, LSR in the future.
        assert_eq!(rtt_from_report(10 * s, 0, 0), None);
        assert_eq!(rtt_from_report(10 * s, 9 * s, 2 * s), None);
        assert_eq!(rtt_from_report(9 * s, 10 * s, 0), None);
        assert_eq!(rtt_from_report(10 * s, 10 * s, 0), Some(Duration::ZERO));
    }

    #[test]
    fn ntp_conversions() {
        assert_eq!(ntp_middle32(0x1234_5678_9abc_def0), 0x5678_9abc);
        let unix = Duration::new(1_700_000_000, 500_000_000);
        let mid = unix_to_ntp_middle32(unix);
        let ntp_seconds = 1_700_000_000u64 + NTP_UNIX_OFFSET_SECONDS;
        assert_eq!(mid >> 16, (ntp_seconds & 0xffff) as u32);
        assert_eq!(mid & 0xffff, 0x8000);
        let later = unix_to_ntp_middle32(unix + Duration::from_millis(250));
        let rtt = rtt_from_report(later, mid, 0).unwrap();
        assert!(rtt.abs_diff(Duration::from_millis(250)) < Duration::from_micros(100));
    }
}
