//! A participant's call quality over one call, summarised for the history (averages and
//! worst values of the SFU's periodic reports).

use switchboard_sfu::quality::Quality;

use crate::history::QualitySummary;

/// Running quality aggregate of one participant over one call.
#[derive(Debug, Default, Clone)]
pub(crate) struct QualityAggregate {
    reports: u32,
    /// Reports with a known RTT (the SFU reports 0 until it has one).
    rtt_reports: u32,
    loss_sum: f64,
    loss_worst: f64,
    jitter_sum: f64,
    jitter_worst: f64,
    rtt_sum: f64,
    rtt_worst: f64,
    mos_sum: f64,
}

impl QualityAggregate {
    /// Adds one report. Non-finite values (a bug upstream) are ignored whole, and so are
    /// `lost` intervals: nothing arrived, which is what muting looks like too, so they say
    /// nothing about the network.
    pub fn add(&mut self, q: &Quality) {
        if q.level == switchboard_sfu::quality::QualityLevel::Lost {
            return;
        }
        let values = [q.loss_percent, q.jitter_ms, q.rtt_ms, q.mos].map(f64::from);
        if values.iter().any(|v| !v.is_finite()) {
            return;
        }
        let [loss, jitter, rtt, mos] = values;
        let (loss, jitter, rtt) = (loss.clamp(0.0, 100.0), jitter.max(0.0), rtt.max(0.0));
        self.reports += 1;
        self.loss_sum += loss;
        self.loss_worst = self.loss_worst.max(loss);
        self.jitter_sum += jitter;
        self.jitter_worst = self.jitter_worst.max(jitter);
        if rtt > 0.0 {
            self.rtt_reports += 1;
            self.rtt_sum += rtt;
            self.rtt_worst = self.rtt_worst.max(rtt);
        }
        self.mos_sum += mos.clamp(1.0, 5.0);
    }

    /// Averages and worst values; `None` without a single report.
    pub fn summary(&self) -> Option<QualitySummary> {
        if self.reports == 0 {
            return None;
        }
        let n = f64::from(self.reports);
        Some(QualitySummary {
            loss_avg_pct: Some(self.loss_sum / n),
            loss_worst_pct: Some(self.loss_worst),
            jitter_avg_ms: Some(self.jitter_sum / n),
            jitter_worst_ms: Some(self.jitter_worst),
            rtt_avg_ms: (self.rtt_reports > 0).then(|| self.rtt_sum / f64::from(self.rtt_reports)),
            rtt_worst_ms: (self.rtt_reports > 0).then_some(self.rtt_worst),
            mos: Some(self.mos_sum / n),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_sfu::quality::QualityLevel;

    fn q(loss: f32, jitter: f32, rtt: f32, mos: f32) -> Quality {
        Quality {
            level: QualityLevel::Good,
            mos,
            r_factor: 80.0,
            loss_percent: loss,
            jitter_ms: jitter,
            rtt_ms: rtt,
            bitrate_bps: 0,
            expected_bitrate_bps: None,
        }
    }

    #[test]
    fn aggregate_averages_and_worst() {
        let mut a = QualityAggregate::default();
        assert_eq!(a.summary(), None);
        a.add(&q(0.0, 2.0, 40.0, 4.4));
        a.add(&q(4.0, 10.0, 120.0, 3.6));
        a.add(&q(f32::NAN, 1.0, 1.0, 4.0)); // ignored
        let mut lost = q(100.0, 0.0, 0.0, 1.0);
        lost.level = QualityLevel::Lost;
        a.add(&lost); // ignored: nothing arrived (muted, or not started)
        let s = a.summary().unwrap();
        assert_eq!(s.loss_avg_pct, Some(2.0));
        assert_eq!(s.loss_worst_pct, Some(4.0));
        assert_eq!(s.jitter_avg_ms, Some(6.0));
        assert_eq!(s.jitter_worst_ms, Some(10.0));
        assert_eq!(s.rtt_avg_ms, Some(80.0));
        assert_eq!(s.rtt_worst_ms, Some(120.0));
        assert!((s.mos.unwrap() - 4.0).abs() < 1e-6);
        s.validate().unwrap();

        // RTT 0 means "not known yet": no RTT rather than a perfect one.
        let mut b = QualityAggregate::default();
        b.add(&q(0.0, 1.0, 0.0, 4.4));
        let s = b.summary().unwrap();
        assert_eq!((s.rtt_avg_ms, s.rtt_worst_ms), (None, None));
        assert_eq!(s.jitter_avg_ms, Some(1.0));
    }
}
