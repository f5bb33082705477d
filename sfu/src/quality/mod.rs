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
//!
//! Layout: `receive_stats` measures a stream the SFU receives, `report` reads what a
//! subscriber's RTCP receiver report says about a stream the SFU sends, and `score` turns either
//! into a [`Quality`]. The two measuring sides depend on the scorer (they build its
//! [`QualityInput`]), never on each other. The submodules are private and everything is
//! re-exported here: callers name `quality::X`.

mod receive_stats;
mod report;
mod score;

pub use receive_stats::{IntervalStats, ReceiveStats};
pub use report::{
    fraction_lost_percent, jitter_rtp_to_ms, ntp_middle32, rtt_from_report, unix_to_ntp_middle32,
    ReportStats,
};
pub use score::{
    mos_from_r, score, Quality, QualityInput, QualityLevel, AUDIO_CODEC_DELAY_MS,
    BITRATE_IMPAIRMENT_PER_HALVING, LOSS_ROBUSTNESS, MOS_EXCELLENT, MOS_GOOD, R_MAX,
    VIDEO_CODEC_DELAY_MS,
};
