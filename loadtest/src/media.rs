//! The probe trailer every sent payload carries (so a receiver can measure loss and one-way
//! latency), synthetic Opus/VP8-shaped payloads for unit tests, and the counters both
//! directions keep. Publishers send real encoded media from [`crate::clip`] with the probe
//! appended.
//!
//! ## Probe trailer
//! The last [`PROBE_LEN`] bytes of every payload we send are
//! `b"SBLT" | sequence u32 BE | rtp timestamp u32 BE | send time u64 BE (µs since the Unix epoch)`.
//! At the end rather than the start so the codec headers an SFU inspects (VP8 payload
//! descriptor, keyframe bit) stay where they belong. The sequence is our own, not the RTP one,
//! because an SFU rewrites RTP sequence numbers when it forwards. The send time is wall clock,
//! so latency is only meaningful when sender and receiver share a clock (same host, or NTP).
//! Decoders ignore it: a VP8 decoder stops reading the last partition when its boolean decoder
//! is done, and an Opus packet with 20 extra bytes still decodes (the frame is just longer), so
//! the media stays real to an SFU and to a browser, at 20 bytes per packet.
//!
//! ## Counters
//! Per-packet updates are relaxed atomics on an `Arc` the receive task holds, so the hot path
//! takes no lock; the map from track to counters is locked only when a track appears or a
//! snapshot is taken.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{BufMut, Bytes, BytesMut};

/// Probe trailer magic.
pub const PROBE_MAGIC: &[u8; 4] = b"SBLT";
/// Probe trailer length in bytes.
pub const PROBE_LEN: usize = 4 + 4 + 4 + 8;

/// Opus: one packet per 20 ms frame.
pub const AUDIO_FRAME: Duration = Duration::from_millis(20);
/// Opus RTP clock ticks per 20 ms frame (48 kHz).
pub const AUDIO_TICKS_PER_FRAME: u32 = 960;
/// Roughly 48 kbit/s of Opus.
const AUDIO_PAYLOAD_LEN: usize = 120;

/// 30 frames per second.
pub const VIDEO_FRAME: Duration = Duration::from_micros(33_333);
/// VP8 RTP clock ticks per frame (90 kHz / 30).
pub const VIDEO_TICKS_PER_FRAME: u32 = 3_000;
/// A keyframe every 2 s. Periodic because webrtc-rs only hands PLI/FIR to the application with
/// an extra interceptor; an SFU that waits for a keyframe before forwarding to a new subscriber
/// therefore gets one within 2 s at most.
pub const KEYFRAME_INTERVAL_FRAMES: u64 = 60;
const VIDEO_PACKET_LEN: usize = 1_000;
const KEYFRAME_PACKETS: usize = 6;
const DELTA_FRAME_PACKETS: usize = 3;

/// Audio or video (spelled `"audio"`/`"video"` on the wire, as in `track_published.kind`).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum MediaKind {
    /// Opus.
    Audio,
    /// VP8.
    Video,
}

/// What a probe trailer says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Probe {
    /// Sender's own per-track sequence (not the RTP one, which the SFU rewrites).
    pub seq: u32,
    /// RTP timestamp the sender used.
    pub rtp_timestamp: u32,
    /// Wall-clock send time, µs since the Unix epoch.
    pub sent_at_us: u64,
}

/// Microseconds since the Unix epoch (0 if the clock is before it).
pub fn unix_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

fn put_probe(buf: &mut BytesMut, probe: Probe) {
    buf.put_slice(PROBE_MAGIC);
    buf.put_u32(probe.seq);
    buf.put_u32(probe.rtp_timestamp);
    buf.put_u64(probe.sent_at_us);
}

/// Reads the probe trailer of a payload, if it has one.
pub fn parse_probe(payload: &[u8]) -> Option<Probe> {
    let tail = payload.get(payload.len().checked_sub(PROBE_LEN)?..)?;
    if &tail[..4] != PROBE_MAGIC {
        return None;
    }
    Some(Probe {
        seq: u32::from_be_bytes(tail[4..8].try_into().ok()?),
        rtp_timestamp: u32::from_be_bytes(tail[8..12].try_into().ok()?),
        sent_at_us: u64::from_be_bytes(tail[12..20].try_into().ok()?),
    })
}

/// `payload` with the probe trailer appended.
pub fn with_probe(payload: &[u8], probe: Probe) -> Bytes {
    let mut buf = BytesMut::with_capacity(payload.len() + PROBE_LEN);
    buf.put_slice(payload);
    put_probe(&mut buf, probe);
    buf.freeze()
}

/// One Opus packet: a TOC byte (config 31 = CELT fullband 20 ms, stereo, one frame), filler,
/// then the probe.
pub fn audio_payload(probe: Probe) -> Bytes {
    let mut buf = BytesMut::with_capacity(AUDIO_PAYLOAD_LEN);
    buf.put_u8(0xFC);
    let filler = AUDIO_PAYLOAD_LEN - 1 - PROBE_LEN;
    buf.put_bytes(0x5A, filler);
    put_probe(&mut buf, probe);
    buf.freeze()
}

/// The RTP payloads of one VP8 frame: the first carries a payload descriptor with S=1 and the
/// VP8 frame tag (with the 0x9d012a start code and 640x360 size on keyframes), the rest S=0.
/// The caller sets the marker bit on the last one.
pub fn video_frame_payloads(frame_index: u64, probe_for: impl Fn(usize) -> Probe) -> Vec<Bytes> {
    let keyframe = frame_index % KEYFRAME_INTERVAL_FRAMES == 0;
    let packets = if keyframe {
        KEYFRAME_PACKETS
    } else {
        DELTA_FRAME_PACKETS
    };
    (0..packets)
        .map(|i| {
            let mut buf = BytesMut::with_capacity(VIDEO_PACKET_LEN);
            if i == 0 {
                // Payload descriptor: X=0 R=0 N=0 S=1 PID=0.
                buf.put_u8(0x10);
                // Frame tag: bit0 = 0 for keyframe, version 0, show_frame = 1.
                buf.put_u8(if keyframe { 0x10 } else { 0x11 });
                buf.put_u8(0x00);
                buf.put_u8(0x01);
                if keyframe {
                    buf.put_slice(&[0x9d, 0x01, 0x2a]);
                    buf.put_u16_le(640);
                    buf.put_u16_le(360);
                }
            } else {
                buf.put_u8(0x00);
            }
            let filler = VIDEO_PACKET_LEN - buf.len() - PROBE_LEN;
            buf.put_bytes(0xA5, filler);
            put_probe(&mut buf, probe_for(i));
            buf.freeze()
        })
        .collect()
}

/// What the publisher has sent.
#[derive(Debug, Default)]
pub struct SendStats {
    /// Audio RTP packets handed to the peer connection.
    pub audio_packets: AtomicU64,
    /// Video RTP packets handed to the peer connection.
    pub video_packets: AtomicU64,
    /// Payload bytes handed to the peer connection.
    pub bytes: AtomicU64,
    /// Writes the peer connection refused (e.g. track not bound yet, connection closed).
    pub write_errors: AtomicU64,
    /// Keyframe requests (PLI/FIR) received for the video track.
    pub keyframe_requests: AtomicU64,
    /// Times the video sender jumped to a clip keyframe to answer a keyframe request.
    pub keyframes_on_request: AtomicU64,
}

/// Identifies a received track: the `a=msid` stream id (the publishing user's id, per protocol
/// §6) and the track id.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TrackKey {
    /// MediaStream id = publishing user's id.
    pub stream_id: String,
    /// Track id.
    pub track_id: String,
}

/// Latency histogram: log-linear buckets, 20 µs wide below 2 ms, 200 µs below 20 ms, 2 ms
/// below 200 ms, 20 ms below 2 s, then one overflow bucket.
pub const LATENCY_BUCKETS: usize = 100 + 90 + 90 + 90 + 1;

fn latency_bucket(us: u64) -> usize {
    match us {
        0..=1_999 => (us / 20) as usize,
        2_000..=19_999 => 100 + ((us - 2_000) / 200) as usize,
        20_000..=199_999 => 190 + ((us - 20_000) / 2_000) as usize,
        200_000..=1_999_999 => 280 + ((us - 200_000) / 20_000) as usize,
        _ => LATENCY_BUCKETS - 1,
    }
}

/// Upper bound of a bucket, µs.
fn bucket_upper_us(i: usize) -> u64 {
    let i = i as u64;
    match i {
        0..=99 => (i + 1) * 20,
        100..=189 => 2_000 + (i - 99) * 200,
        190..=279 => 20_000 + (i - 189) * 2_000,
        280..=369 => 200_000 + (i - 279) * 20_000,
        _ => u64::MAX,
    }
}

/// A copy of latency histogram buckets; add and subtract them to aggregate tracks or windows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LatencyHistogram(pub Vec<u64>);

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self(vec![0; LATENCY_BUCKETS])
    }
}

impl LatencyHistogram {
    /// Adds `other` bucket by bucket.
    pub fn add(&mut self, other: &LatencyHistogram) {
        for (a, b) in self.0.iter_mut().zip(&other.0) {
            *a += b;
        }
    }

    /// `self - earlier`, bucket by bucket (for a window between two snapshots).
    pub fn since(&self, earlier: &LatencyHistogram) -> LatencyHistogram {
        LatencyHistogram(
            self.0
                .iter()
                .zip(&earlier.0)
                .map(|(a, b)| a.saturating_sub(*b))
                .collect(),
        )
    }

    /// Samples counted.
    pub fn count(&self) -> u64 {
        self.0.iter().sum()
    }

    /// The `q` quantile (0..=1) as the upper bound of its bucket; `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
        let mut seen = 0;
        for (i, n) in self.0.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Some(Duration::from_micros(bucket_upper_us(i).min(10_000_000)));
            }
        }
        None
    }
}

/// Counters for one received track, updated per packet without a lock. One task (the
/// track's receive loop) writes them; anyone may read.
#[derive(Debug)]
pub struct TrackCounters {
    kind: MediaKind,
    clock_rate: u32,
    packets: AtomicU64,
    bytes: AtomicU64,
    probes: AtomicU64,
    latency_sum_us: AtomicU64,
    latency_max_us: AtomicU64,
    latency_hist: Box<[AtomicU64]>,
    markers: AtomicU64,
    /// Lowest and highest probe sequence seen, for loss: sequences are consecutive per sender
    /// track, so `highest - lowest + 1 - probes` were lost (or are still in flight).
    first_probe_seq: AtomicU64,
    max_probe_seq: AtomicU64,
    /// Unix µs of the first packet (0 = none yet).
    first_packet_us: AtomicU64,
    /// RFC 3550 §6.4.1 interarrival jitter, in RTP clock units × 16 (fixed point), and the
    /// previous packet's transit time (arrival in clock units − RTP timestamp), +1 so 0 means
    /// "no previous packet". Written only by the receive task, so load + store suffices.
    jitter_x16: AtomicU64,
    last_transit: AtomicU64,
}

impl TrackCounters {
    fn new(kind: MediaKind) -> Self {
        Self {
            kind,
            clock_rate: match kind {
                MediaKind::Audio => 48_000,
                MediaKind::Video => 90_000,
            },
            packets: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            probes: AtomicU64::new(0),
            latency_sum_us: AtomicU64::new(0),
            latency_max_us: AtomicU64::new(0),
            latency_hist: (0..LATENCY_BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            markers: AtomicU64::new(0),
            first_probe_seq: AtomicU64::new(u64::MAX),
            max_probe_seq: AtomicU64::new(0),
            first_packet_us: AtomicU64::new(0),
            jitter_x16: AtomicU64::new(0),
            last_transit: AtomicU64::new(0),
        }
    }

    /// Accounts one received RTP packet (without its RTP timestamp: no jitter).
    pub fn record(&self, payload: &[u8], marker: bool) {
        self.record_at(payload, marker, None, unix_micros());
    }

    /// Accounts one received RTP packet that arrived at `now_us` (Unix µs) with RTP timestamp
    /// `rtp_timestamp`.
    pub fn record_at(&self, payload: &[u8], marker: bool, rtp_timestamp: Option<u32>, now_us: u64) {
        if self.packets.fetch_add(1, Ordering::Relaxed) == 0 {
            self.first_packet_us.store(now_us, Ordering::Relaxed);
        }
        self.bytes
            .fetch_add(payload.len() as u64, Ordering::Relaxed);
        if marker {
            self.markers.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(ts) = rtp_timestamp {
            // Arrival in RTP clock units, truncated to 32 bits like the timestamp.
            let arrival = (u128::from(now_us) * u128::from(self.clock_rate) / 1_000_000) as u32;
            let transit = arrival.wrapping_sub(ts);
            let last = self.last_transit.load(Ordering::Relaxed);
            if last != 0 {
                let d = u64::from((transit.wrapping_sub((last - 1) as u32) as i32).unsigned_abs());
                let j = self.jitter_x16.load(Ordering::Relaxed);
                // J += (|D| - J) / 16, kept as J×16: J16 += |D| - J16/16.
                self.jitter_x16.store(j + d - (j >> 4), Ordering::Relaxed);
            }
            self.last_transit
                .store(u64::from(transit) + 1, Ordering::Relaxed);
        }
        if let Some(probe) = parse_probe(payload) {
            let latency = now_us.saturating_sub(probe.sent_at_us);
            self.probes.fetch_add(1, Ordering::Relaxed);
            self.latency_sum_us.fetch_add(latency, Ordering::Relaxed);
            self.latency_max_us.fetch_max(latency, Ordering::Relaxed);
            self.latency_hist[latency_bucket(latency)].fetch_add(1, Ordering::Relaxed);
            // Not wrap-aware: a u32 sequence at 200 packets/s wraps after ~250 days.
            let seq = u64::from(probe.seq);
            self.first_probe_seq.fetch_min(seq, Ordering::Relaxed);
            self.max_probe_seq.fetch_max(seq, Ordering::Relaxed);
        }
    }

    fn histogram(&self) -> LatencyHistogram {
        LatencyHistogram(
            self.latency_hist
                .iter()
                .map(|b| b.load(Ordering::Relaxed))
                .collect(),
        )
    }
}

/// A point-in-time copy of one received track's counters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrackSnapshot {
    /// Which track.
    pub key: TrackKey,
    /// Audio or video.
    pub kind: MediaKind,
    /// RTP packets received.
    pub packets: u64,
    /// Payload bytes received.
    pub bytes: u64,
    /// Packets whose payload carried our probe trailer.
    pub probes: u64,
    /// Packets with the RTP marker bit (for video: completed frames).
    pub markers: u64,
    /// Probed packets missing between the lowest and highest probe sequence seen (lost, or
    /// reordered and still to come). NACK retransmissions that arrived fill their gap, so this
    /// is loss after retransmission.
    pub lost: u64,
    /// Probed packets expected (highest − lowest probe sequence + 1).
    pub expected: u64,
    /// Mean one-way latency over probed packets.
    pub mean_latency: Option<Duration>,
    /// Worst one-way latency over probed packets.
    pub max_latency: Option<Duration>,
    /// One-way latency histogram over probed packets.
    pub latency: LatencyHistogram,
    /// RFC 3550 interarrival jitter.
    pub jitter: Duration,
    /// When the first packet arrived, Unix µs (0 = none yet).
    pub first_packet_us: u64,
}

/// Everything a subscriber connection has received, keyed by track.
#[derive(Debug, Default)]
pub struct ReceiveStats {
    // std Mutex: locked only when a track appears or for a snapshot, never across an await.
    tracks: Mutex<HashMap<TrackKey, Arc<TrackCounters>>>,
    /// When the owner started joining, Unix µs (for time to first packet); 0 = unknown.
    pub started_us: AtomicU64,
}

impl ReceiveStats {
    /// The counters for `key`, created on first sight. A track that re-appears after a
    /// renegotiation keeps counting where it left off.
    pub fn track(&self, key: TrackKey, kind: MediaKind) -> Arc<TrackCounters> {
        let mut tracks = self.tracks.lock().expect("receive-stats lock poisoned");
        Arc::clone(
            tracks
                .entry(key)
                .or_insert_with(|| Arc::new(TrackCounters::new(kind))),
        )
    }

    /// Copies all counters, sorted by key.
    pub fn snapshot(&self) -> Vec<TrackSnapshot> {
        let tracks = self.tracks.lock().expect("receive-stats lock poisoned");
        let mut out: Vec<TrackSnapshot> = tracks
            .iter()
            .map(|(key, c)| {
                let probes = c.probes.load(Ordering::Relaxed);
                let sum = c.latency_sum_us.load(Ordering::Relaxed);
                let first = c.first_probe_seq.load(Ordering::Relaxed);
                let expected = match first {
                    u64::MAX => 0,
                    first => {
                        c.max_probe_seq
                            .load(Ordering::Relaxed)
                            .saturating_sub(first)
                            + 1
                    }
                };
                TrackSnapshot {
                    key: key.clone(),
                    kind: c.kind,
                    packets: c.packets.load(Ordering::Relaxed),
                    bytes: c.bytes.load(Ordering::Relaxed),
                    probes,
                    markers: c.markers.load(Ordering::Relaxed),
                    lost: expected.saturating_sub(probes),
                    expected,
                    latency: c.histogram(),
                    jitter: Duration::from_micros(
                        (c.jitter_x16.load(Ordering::Relaxed) / 16) * 1_000_000
                            / u64::from(c.clock_rate),
                    ),
                    first_packet_us: c.first_packet_us.load(Ordering::Relaxed),
                    mean_latency: (probes > 0).then(|| Duration::from_micros(sum / probes)),
                    max_latency: (probes > 0)
                        .then(|| Duration::from_micros(c.latency_max_us.load(Ordering::Relaxed))),
                }
            })
            .collect();
        out.sort_by(|a, b| a.key.cmp(&b.key));
        out
    }

    /// Packets received on tracks of `kind` whose stream id is `stream_id`.
    pub fn packets_from(&self, stream_id: &str, kind: MediaKind) -> u64 {
        self.snapshot()
            .iter()
            .filter(|t| t.key.stream_id == stream_id && t.kind == kind)
            .map(|t| t.packets)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_round_trips_through_payloads() {
        let probe = Probe {
            seq: 7,
            rtp_timestamp: 960 * 7,
            sent_at_us: 123_456,
        };
        let audio = audio_payload(probe);
        assert_eq!(audio[0], 0xFC);
        assert_eq!(parse_probe(&audio), Some(probe));

        let frames = video_frame_payloads(0, |i| Probe {
            seq: i as u32,
            ..probe
        });
        assert_eq!(frames.len(), KEYFRAME_PACKETS);
        assert_eq!(&frames[0][..2], &[0x10, 0x10], "S bit and keyframe tag");
        assert_eq!(&frames[0][4..7], &[0x9d, 0x01, 0x2a], "keyframe start code");
        assert_eq!(frames[1][0], 0x00, "continuation packet has S=0");
        assert_eq!(parse_probe(&frames[2]).unwrap().seq, 2);

        let delta = video_frame_payloads(1, |_| probe);
        assert_eq!(delta.len(), DELTA_FRAME_PACKETS);
        assert_eq!(delta[0][1] & 1, 1, "delta frame tag");
        assert!(parse_probe(b"short").is_none());
    }

    #[test]
    fn receive_stats_count_per_track() {
        let stats = ReceiveStats::default();
        let key = TrackKey {
            stream_id: "u1".into(),
            track_id: "a".into(),
        };
        let c = stats.track(key.clone(), MediaKind::Audio);
        c.record(
            &audio_payload(Probe {
                seq: 0,
                rtp_timestamp: 0,
                sent_at_us: unix_micros(),
            }),
            false,
        );
        c.record(b"no probe here, just bytes", true);
        // Same key again: same counters.
        stats.track(key, MediaKind::Audio).record(b"x", false);
        let snap = stats.snapshot();
        assert_eq!(snap.len(), 1);
        assert_eq!(snap[0].packets, 3);
        assert_eq!(snap[0].probes, 1);
        assert_eq!(snap[0].markers, 1);
        assert!(snap[0].mean_latency.is_some());
        assert_eq!(stats.packets_from("u1", MediaKind::Audio), 3);
        assert_eq!(stats.packets_from("u1", MediaKind::Video), 0);
        assert_eq!(snap[0].lost, 0);
    }

    #[test]
    fn loss_counts_probe_sequence_gaps() {
        let stats = ReceiveStats::default();
        let key = TrackKey {
            stream_id: "u".into(),
            track_id: "v".into(),
        };
        let c = stats.track(key, MediaKind::Video);
        for seq in [10, 11, 13, 16] {
            let probe = Probe {
                seq,
                rtp_timestamp: 0,
                sent_at_us: unix_micros(),
            };
            c.record(&audio_payload(probe), false);
        }
        // 10..=16 is 7 packets, 4 arrived.
        assert_eq!(stats.snapshot()[0].lost, 3);
        assert_eq!(stats.snapshot()[0].expected, 7);
    }

    #[test]
    fn histogram_quantiles_and_jitter() {
        let stats = ReceiveStats::default();
        let key = TrackKey {
            stream_id: "u".into(),
            track_id: "a".into(),
        };
        let c = stats.track(key, MediaKind::Audio);
        let t0 = 1_000_000_000u64;
        // 99 packets at 1 ms latency, one at 50 ms; 20 ms apart, jitter-free except the last.
        for i in 0..100u32 {
            let latency = if i == 99 { 50_000 } else { 1_000 };
            let sent = t0 + u64::from(i) * 20_000;
            let probe = Probe {
                seq: i,
                rtp_timestamp: i * 960,
                sent_at_us: sent,
            };
            c.record_at(
                &with_probe(&[0xFC, 1, 2], probe),
                false,
                Some(i * 960),
                sent + latency,
            );
        }
        let snap = &stats.snapshot()[0];
        let p50 = snap.latency.quantile(0.5).unwrap();
        assert!(p50 >= Duration::from_micros(1_000) && p50 <= Duration::from_micros(1_020));
        let p100 = snap.latency.quantile(1.0).unwrap();
        assert!(p100 >= Duration::from_millis(50) && p100 <= Duration::from_millis(52));
        assert_eq!(snap.latency.count(), 100);
        // One 49 ms step: J = 49 ms / 16 ≈ 3 ms.
        assert!(
            snap.jitter > Duration::from_millis(2) && snap.jitter < Duration::from_millis(4),
            "{:?}",
            snap.jitter
        );
        assert!(snap.first_packet_us > 0);
        assert_eq!(latency_bucket(bucket_upper_us(150) - 1), 150);
        assert_eq!(latency_bucket(u64::MAX), LATENCY_BUCKETS - 1);
    }
}
