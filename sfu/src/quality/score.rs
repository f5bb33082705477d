//! The scorer: one interval's loss, jitter, RTT and bitrate in, an E-model R factor, MOS and
//! [`QualityLevel`] out (the formula is in the parent module's docs). It knows nothing of RTP
//! or RTCP: publications and subscriptions each build a [`QualityInput`] and share this one
//! scale, so their levels can be compared and combined with `min`.

use serde::Serialize;

use crate::TrackKind;

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

    /// Video with a 1 Mbit/s expected bitrate, otherwise a clean `audio` interval.
    fn video(bitrate_bps: u64) -> QualityInput {
        QualityInput {
            kind: TrackKind::Video,
            bitrate_bps,
            expected_bitrate_bps: Some(1_000_000),
            ..audio(0.0, 10.0, 40.0)
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
        // `cargo test -p switchboard-sfu --lib quality::score::tests::prints -- --nocapture`
        // prints the table in docs/quality.md.
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
}
