//! Prometheus metrics of the media plane.
//!
//! The packet path never touches these: it bumps plain integers in the media task, and the
//! task flushes the increments here a few times per second (`Engine::flush_metrics`), so a
//! scrape costs the media path nothing and no per-packet atomic is shared across cores.
//! Label values are bounded (kind, reason, direction, level): never a room or participant id.

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};

use crate::quality::QualityLevel;
use crate::TrackKind;

/// Why a packet or datagram was not delivered, as the `reason` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DropReason {
    /// A datagram from an address no connection knows (and no valid STUN ufrag).
    UnknownSource,
    /// The socket's send buffer was full.
    SendBufferFull,
    /// RTP on a publisher connection with an SSRC that maps to no publication.
    UnknownSsrc,
    /// A subscription's payload type is not negotiated yet (answer pending).
    NotNegotiated,
    /// Padding-only RTP (bandwidth probes) is not forwarded.
    PaddingOnly,
}

impl DropReason {
    pub(crate) const ALL: [DropReason; 5] = [
        DropReason::UnknownSource,
        DropReason::SendBufferFull,
        DropReason::UnknownSsrc,
        DropReason::NotNegotiated,
        DropReason::PaddingOnly,
    ];

    fn label(self) -> &'static str {
        match self {
            DropReason::UnknownSource => "unknown_source",
            DropReason::SendBufferFull => "send_buffer_full",
            DropReason::UnknownSsrc => "unknown_ssrc",
            DropReason::NotNegotiated => "not_negotiated",
            DropReason::PaddingOnly => "padding_only",
        }
    }
}

pub(crate) fn kind_label(kind: TrackKind) -> &'static str {
    match kind {
        TrackKind::Audio => "audio",
        TrackKind::Video => "video",
    }
}

/// Direction of a quality measurement, as the `direction` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Direction {
    /// Publisher → SFU, measured by the SFU on arrival.
    Upstream,
    /// SFU → subscriber, from the subscriber's receiver reports.
    Downstream,
}

impl Direction {
    fn label(self) -> &'static str {
        match self {
            Direction::Upstream => "upstream",
            Direction::Downstream => "downstream",
        }
    }
}

/// The media plane's metrics, registered in the caller's registry.
#[derive(Clone)]
pub struct SfuMetrics {
    pub(crate) rooms: IntGauge,
    pub(crate) participants: IntGauge,
    pub(crate) published_tracks: IntGaugeVec,
    pub(crate) subscribed_tracks: IntGaugeVec,
    pub(crate) rtp_received_packets: IntCounterVec,
    pub(crate) rtp_received_bytes: IntCounterVec,
    pub(crate) rtp_forwarded_packets: IntCounterVec,
    pub(crate) rtp_forwarded_bytes: IntCounterVec,
    pub(crate) dropped_packets: IntCounterVec,
    pub(crate) keyframe_requests_sent: IntCounter,
    pub(crate) rtcp_nacks_received: IntCounter,
    pub(crate) rtcp_keyframe_requests_received: IntCounter,
    pub(crate) rtp_retransmissions: IntCounterVec,
    pub(crate) packet_loss_ratio: HistogramVec,
    pub(crate) jitter_seconds: HistogramVec,
    pub(crate) round_trip_time_seconds: Histogram,
    pub(crate) participants_by_quality: IntGaugeVec,
    pub(crate) recordings_active: IntGauge,
}

impl SfuMetrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let metrics = SfuMetrics {
            rooms: IntGauge::new("switchboard_sfu_rooms", "Rooms with at least one participant.")?,
            participants: IntGauge::new(
                "switchboard_sfu_participants",
                "Participants in all rooms.",
            )?,
            published_tracks: IntGaugeVec::new(
                Opts::new("switchboard_sfu_published_tracks", "Tracks being published."),
                &["kind"],
            )?,
            subscribed_tracks: IntGaugeVec::new(
                Opts::new(
                    "switchboard_sfu_subscribed_tracks",
                    "Publications being delivered to a subscriber.",
                ),
                &["kind"],
            )?,
            rtp_received_packets: IntCounterVec::new(
                Opts::new(
                    "switchboard_sfu_rtp_received_packets_total",
                    "RTP packets received from publishers.",
                ),
                &["kind"],
            )?,
            rtp_received_bytes: IntCounterVec::new(
                Opts::new(
                    "switchboard_sfu_rtp_received_bytes_total",
                    "RTP payload bytes received from publishers.",
                ),
                &["kind"],
            )?,
            rtp_forwarded_packets: IntCounterVec::new(
                Opts::new(
                    "switchboard_sfu_rtp_forwarded_packets_total",
                    "RTP packets forwarded to subscribers.",
                ),
                &["kind"],
            )?,
            rtp_forwarded_bytes: IntCounterVec::new(
                Opts::new(
                    "switchboard_sfu_rtp_forwarded_bytes_total",
                    "RTP payload bytes forwarded to subscribers.",
                ),
                &["kind"],
            )?,
            dropped_packets: IntCounterVec::new(
                Opts::new(
                    "switchboard_sfu_dropped_packets_total",
                    "Datagrams or RTP packets not delivered, by reason.",
                ),
                &["reason"],
            )?,
            keyframe_requests_sent: IntCounter::new(
                "switchboard_sfu_keyframe_requests_sent_total",
                "PLIs sent to publishers (after throttling).",
            )?,
            rtcp_nacks_received: IntCounter::new(
                "switchboard_sfu_rtcp_nacks_received_total",
                "RTCP NACK packets received from subscribers (answered from the SFU's send buffer).",
            )?,
            rtcp_keyframe_requests_received: IntCounter::new(
                "switchboard_sfu_rtcp_keyframe_requests_received_total",
                "PLI/FIR packets received from subscribers.",
            )?,
            rtp_retransmissions: IntCounterVec::new(
                Opts::new(
                    "switchboard_sfu_rtp_retransmissions_total",
                    "NACKed packets retransmitted to subscribers (result=sent) or not (result=suppressed: repeated within 100 ms or over the subscription's budget).",
                ),
                &["result"],
            )?,
            packet_loss_ratio: HistogramVec::new(
                HistogramOpts::new(
                    "switchboard_sfu_packet_loss_ratio",
                    "Packet loss per quality interval and stream (0-1).",
                )
                .buckets(vec![0.0, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0]),
                &["direction"],
            )?,
            jitter_seconds: HistogramVec::new(
                HistogramOpts::new(
                    "switchboard_sfu_jitter_seconds",
                    "Interarrival jitter per quality interval and stream.",
                )
                .buckets(vec![0.001, 0.005, 0.01, 0.02, 0.03, 0.05, 0.1, 0.2, 0.5]),
                &["direction"],
            )?,
            round_trip_time_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "switchboard_sfu_round_trip_time_seconds",
                    "Round-trip time to subscribers, from their receiver reports.",
                )
                .buckets(vec![0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.4, 0.8, 1.6]),
            )?,
            participants_by_quality: IntGaugeVec::new(
                Opts::new(
                    "switchboard_sfu_participants_by_quality",
                    "Participants per connection-quality level at the last scoring.",
                ),
                &["level"],
            )?,
            recordings_active: IntGauge::new(
                "switchboard_sfu_recordings_active",
                "Participant recordings being written.",
            )?,
        };
        registry.register(Box::new(metrics.rooms.clone()))?;
        registry.register(Box::new(metrics.participants.clone()))?;
        registry.register(Box::new(metrics.published_tracks.clone()))?;
        registry.register(Box::new(metrics.subscribed_tracks.clone()))?;
        registry.register(Box::new(metrics.rtp_received_packets.clone()))?;
        registry.register(Box::new(metrics.rtp_received_bytes.clone()))?;
        registry.register(Box::new(metrics.rtp_forwarded_packets.clone()))?;
        registry.register(Box::new(metrics.rtp_forwarded_bytes.clone()))?;
        registry.register(Box::new(metrics.dropped_packets.clone()))?;
        registry.register(Box::new(metrics.keyframe_requests_sent.clone()))?;
        registry.register(Box::new(metrics.rtcp_nacks_received.clone()))?;
        registry.register(Box::new(metrics.rtcp_keyframe_requests_received.clone()))?;
        registry.register(Box::new(metrics.rtp_retransmissions.clone()))?;
        registry.register(Box::new(metrics.packet_loss_ratio.clone()))?;
        registry.register(Box::new(metrics.jitter_seconds.clone()))?;
        registry.register(Box::new(metrics.round_trip_time_seconds.clone()))?;
        registry.register(Box::new(metrics.participants_by_quality.clone()))?;
        registry.register(Box::new(metrics.recordings_active.clone()))?;
        // Every label value exists from the start, so dashboards show zeros, not gaps.
        for kind in [TrackKind::Audio, TrackKind::Video] {
            let kind = kind_label(kind);
            metrics.published_tracks.with_label_values(&[kind]);
            metrics.subscribed_tracks.with_label_values(&[kind]);
            metrics.rtp_received_packets.with_label_values(&[kind]);
            metrics.rtp_received_bytes.with_label_values(&[kind]);
            metrics.rtp_forwarded_packets.with_label_values(&[kind]);
            metrics.rtp_forwarded_bytes.with_label_values(&[kind]);
        }
        for reason in DropReason::ALL {
            metrics.dropped_packets.with_label_values(&[reason.label()]);
        }
        for direction in [Direction::Upstream, Direction::Downstream] {
            metrics
                .packet_loss_ratio
                .with_label_values(&[direction.label()]);
            metrics
                .jitter_seconds
                .with_label_values(&[direction.label()]);
        }
        for level in QUALITY_LEVELS {
            metrics
                .participants_by_quality
                .with_label_values(&[level.as_str()]);
        }
        Ok(metrics)
    }

    pub(crate) fn observe_stream_quality(
        &self,
        direction: Direction,
        loss_percent: f32,
        jitter_ms: f32,
    ) {
        let direction = direction.label();
        self.packet_loss_ratio
            .with_label_values(&[direction])
            .observe(f64::from(loss_percent) / 100.0);
        self.jitter_seconds
            .with_label_values(&[direction])
            .observe(f64::from(jitter_ms) / 1000.0);
    }

    pub(crate) fn drop_counter(&self, reason: DropReason) -> IntCounter {
        self.dropped_packets.with_label_values(&[reason.label()])
    }
}

pub(crate) const QUALITY_LEVELS: [QualityLevel; 4] = [
    QualityLevel::Excellent,
    QualityLevel::Good,
    QualityLevel::Poor,
    QualityLevel::Lost,
];

impl std::fmt::Debug for SfuMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SfuMetrics")
    }
}

/// Plain per-task counters: what the packet path increments. Indexed by [`kind_index`] and
/// `DropReason as usize`.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Counters {
    pub received_packets: [u64; 2],
    pub received_bytes: [u64; 2],
    pub forwarded_packets: [u64; 2],
    pub forwarded_bytes: [u64; 2],
    pub dropped: [u64; DropReason::ALL.len()],
    pub keyframe_requests_sent: u64,
    pub nacks_received: u64,
    pub keyframe_requests_received: u64,
    pub retransmitted: u64,
    pub retransmissions_suppressed: u64,
}

pub(crate) fn kind_index(kind: TrackKind) -> usize {
    match kind {
        TrackKind::Audio => 0,
        TrackKind::Video => 1,
    }
}

impl Counters {
    pub fn drop(&mut self, reason: DropReason) {
        self.dropped[reason as usize] += 1;
    }

    /// Adds what happened since `flushed` to the Prometheus counters.
    pub fn flush_into(&self, flushed: &Counters, metrics: &SfuMetrics) {
        for kind in [TrackKind::Audio, TrackKind::Video] {
            let (i, label) = (kind_index(kind), [kind_label(kind)]);
            let delta = |now: &[u64; 2], then: &[u64; 2]| now[i] - then[i];
            metrics
                .rtp_received_packets
                .with_label_values(&label)
                .inc_by(delta(&self.received_packets, &flushed.received_packets));
            metrics
                .rtp_received_bytes
                .with_label_values(&label)
                .inc_by(delta(&self.received_bytes, &flushed.received_bytes));
            metrics
                .rtp_forwarded_packets
                .with_label_values(&label)
                .inc_by(delta(&self.forwarded_packets, &flushed.forwarded_packets));
            metrics
                .rtp_forwarded_bytes
                .with_label_values(&label)
                .inc_by(delta(&self.forwarded_bytes, &flushed.forwarded_bytes));
        }
        for reason in DropReason::ALL {
            let i = reason as usize;
            metrics
                .drop_counter(reason)
                .inc_by(self.dropped[i] - flushed.dropped[i]);
        }
        metrics
            .keyframe_requests_sent
            .inc_by(self.keyframe_requests_sent - flushed.keyframe_requests_sent);
        metrics
            .rtcp_nacks_received
            .inc_by(self.nacks_received - flushed.nacks_received);
        metrics
            .rtcp_keyframe_requests_received
            .inc_by(self.keyframe_requests_received - flushed.keyframe_requests_received);
        metrics
            .rtp_retransmissions
            .with_label_values(&["sent"])
            .inc_by(self.retransmitted - flushed.retransmitted);
        metrics
            .rtp_retransmissions
            .with_label_values(&["suppressed"])
            .inc_by(self.retransmissions_suppressed - flushed.retransmissions_suppressed);
    }
}
