//! What the SFU learns about calls beyond forwarding: per-participant connection quality
//! (scored every `quality_interval`) and the dominant speaker (checked every housekeeping
//! tick). Both run on timers, never per packet; the per-packet side only updates counters
//! (`ReceiveStats::on_packet`, `ActiveSpeakerDetector::observe`).

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use rtc::rtcp::receiver_report::ReceiverReport;

use super::{ConnId, Engine};
use crate::metrics::{Direction, QUALITY_LEVELS};
use crate::quality::{
    rtt_from_report, score, unix_to_ntp_middle32, IntervalStats, Quality, ReportStats,
};
use crate::{ParticipantId, SfuEvent};

impl Engine {
    /// Keeps the subscriber's latest view of each subscription it reports on.
    pub(super) fn record_receiver_report(&mut self, conn_id: ConnId, report: &ReceiverReport) {
        let Some(conn) = self.conns.get(&conn_id) else {
            return;
        };
        let now_ntp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(unix_to_ntp_middle32)
            .unwrap_or(0);
        for block in &report.reports {
            if let Some(key) = conn.subscriptions_by_ssrc.get(&block.ssrc) {
                let Some(publication) = self.publications.get_mut(key) else {
                    continue;
                };
                let clock_rate = publication.codec.clock_rate;
                if let Some(subscription) = publication
                    .subscriptions
                    .iter_mut()
                    .find(|s| s.conn == conn_id && s.forwarder.ssrc() == block.ssrc)
                {
                    let rtt = rtt_from_report(now_ntp, block.last_sender_report, block.delay);
                    subscription.report = Some(ReportStats::from_report(
                        block.fraction_lost,
                        block.jitter,
                        clock_rate,
                        rtt,
                    ));
                }
            }
        }
    }

    /// Scores every participant: the worst of its upstream (its publications as they
    /// arrive) and its downstream (what its receiver reports say about its subscriptions).
    pub(super) fn quality_tick(&mut self, now: Instant) {
        // Close this interval for every publication first: downstream scores use the
        // publication's bitrate and packet count.
        let mut intervals: Vec<(super::PubKey, IntervalStats)> =
            Vec::with_capacity(self.publications.len());
        for (key, publication) in self.publications.iter_mut() {
            intervals.push((
                *key,
                publication.receive_stats.snapshot_and_reset_interval(now),
            ));
        }
        let interval_of = |key: super::PubKey| {
            intervals
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, stats)| *stats)
        };
        let mut reports = Vec::new();
        for (room_id, room) in &self.rooms {
            for participant in &room.participants {
                let rtt_ms = self.participant_rtt_ms(participant);
                let mut worst: Option<Quality> = None;
                let mut consider = |quality: Quality| {
                    if worst.is_none_or(|w| (quality.level, quality.mos) < (w.level, w.mos)) {
                        worst = Some(quality);
                    }
                };
                let Some(record) = self.participants.get(participant) else {
                    continue;
                };
                for key in &record.publications {
                    let (Some(publication), Some(stats)) =
                        (self.publications.get(key), interval_of(*key))
                    else {
                        continue;
                    };
                    if let Some(metrics) = &self.config.metrics {
                        metrics.observe_stream_quality(
                            Direction::Upstream,
                            stats.loss_percent,
                            stats.jitter_ms,
                        );
                    }
                    consider(score(stats.to_input(publication.kind, rtt_ms, None)));
                }
                for (key, publication) in &self.publications {
                    if publication.room != *room_id {
                        continue;
                    }
                    let Some(stats) = interval_of(*key) else {
                        continue;
                    };
                    for subscription in &publication.subscriptions {
                        if subscription.subscriber != *participant {
                            continue;
                        }
                        if let Some(report) = subscription.report {
                            if let Some(metrics) = &self.config.metrics {
                                metrics.observe_stream_quality(
                                    Direction::Downstream,
                                    report.loss_percent,
                                    report.jitter_ms,
                                );
                                if let Some(rtt) = report.rtt_ms {
                                    metrics
                                        .round_trip_time_seconds
                                        .observe(f64::from(rtt) / 1000.0);
                                }
                            }
                            consider(score(report.to_input(
                                publication.kind,
                                stats.bitrate_bps,
                                None,
                                stats.packets_expected,
                            )));
                        }
                    }
                }
                if let Some(quality) = worst {
                    reports.push(SfuEvent::Quality {
                        room: room_id.clone(),
                        participant: participant.clone(),
                        quality,
                    });
                }
            }
        }
        if let Some(metrics) = &self.config.metrics {
            for level in QUALITY_LEVELS {
                let count = reports
                    .iter()
                    .filter(|r| matches!(r, SfuEvent::Quality { quality, .. } if quality.level == level))
                    .count();
                metrics
                    .participants_by_quality
                    .with_label_values(&[level.as_str()])
                    .set(count as i64);
            }
        }
        for report in reports {
            let _ = self.events.send(report);
        }
    }

    /// The round-trip time to a participant, from its receiver reports (0 when unknown).
    fn participant_rtt_ms(&self, participant: &ParticipantId) -> f32 {
        self.publications
            .values()
            .flat_map(|p| p.subscriptions.iter())
            .filter(|s| s.subscriber == *participant)
            .filter_map(|s| s.report.and_then(|r| r.rtt_ms))
            .fold(0.0, f32::max)
    }

    pub(super) fn speaker_tick(&mut self, now: Instant) {
        for (room_id, room) in self.rooms.iter_mut() {
            if let Some(participant) = room.speakers.tick(now) {
                let _ = self.events.send(SfuEvent::ActiveSpeaker {
                    room: room_id.clone(),
                    participant,
                });
            }
        }
    }
}
