//! What a subscriber's RTCP receiver report says about a stream the SFU sends (a
//! subscription): fraction lost, jitter and the LSR/DLSR round-trip time, with the NTP
//! middle-32 helpers the SFU's sender reports need to make that round trip measurable. Pure
//! conversions of report fields, apart from the per-packet statistics in `receive_stats`.

use std::time::Duration;

use serde::Serialize;

use super::score::QualityInput;
use crate::TrackKind;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quality::{score, QualityLevel};

    const OPUS: u32 = 48_000;

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
