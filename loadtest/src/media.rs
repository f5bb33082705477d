//! Synthetic media: RTP payloads that look like Opus/VP8 to anything that peeks at them, each
//! carrying a *probe* trailer so a receiver can measure loss and one-way latency; and the
//! counters both directions keep.
//!
//! ## Probe trailer
//! The last [`PROBE_LEN`] bytes of every payload we send are
//! `b"SBLT" | sequence u32 BE | rtp timestamp u32 BE | send time u64 BE (µs since the Unix epoch)`.
//! At the end rather than the start so the codec headers an SFU inspects (VP8 payload
//! descriptor, keyframe bit) stay where they belong. The sequence is our own, not the RTP one,
//! because an SFU rewrites RTP sequence numbers when it forwards. The send time is wall clock,
//! so latency is only meaningful when sender and receiver share a clock (same host, or NTP).
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

/// Audio or video.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
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

/// Counters for one received track, updated per packet without a lock.
#[derive(Debug)]
pub struct TrackCounters {
    kind: MediaKind,
    packets: AtomicU64,
    bytes: AtomicU64,
    probes: AtomicU64,
    latency_sum_us: AtomicU64,
    latency_max_us: AtomicU64,
    markers: AtomicU64,
    /// Lowest and highest probe sequence seen, for loss: sequences are consecutive per sender
    /// track, so `highest - lowest + 1 - probes` were lost (or are still in flight).
    first_probe_seq: AtomicU64,
    max_probe_seq: AtomicU64,
}

impl TrackCounters {
    fn new(kind: MediaKind) -> Self {
        Self {
            kind,
            packets: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            probes: AtomicU64::new(0),
            latency_sum_us: AtomicU64::new(0),
            latency_max_us: AtomicU64::new(0),
            markers: AtomicU64::new(0),
            first_probe_seq: AtomicU64::new(u64::MAX),
            max_probe_seq: AtomicU64::new(0),
        }
    }

    /// Accounts one received RTP packet.
    pub fn record(&self, payload: &[u8], marker: bool) {
        self.packets.fetch_add(1, Ordering::Relaxed);
        self.bytes
            .fetch_add(payload.len() as u64, Ordering::Relaxed);
        if marker {
            self.markers.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(probe) = parse_probe(payload) {
            let latency = unix_micros().saturating_sub(probe.sent_at_us);
            self.probes.fetch_add(1, Ordering::Relaxed);
            self.latency_sum_us.fetch_add(latency, Ordering::Relaxed);
            self.latency_max_us.fetch_max(latency, Ordering::Relaxed);
            // Not wrap-aware: a u32 sequence at 200 packets/s wraps after ~250 days.
            let seq = u64::from(probe.seq);
            self.first_probe_seq.fetch_min(seq, Ordering::Relaxed);
            self.max_probe_seq.fetch_max(seq, Ordering::Relaxed);
        }
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
    /// reordered and still to come).
    pub lost: u64,
    /// Mean one-way latency over probed packets.
    pub mean_latency: Option<Duration>,
    /// Worst one-way latency over probed packets.
    pub max_latency: Option<Duration>,
}

/// Everything a subscriber connection has received, keyed by track.
#[derive(Debug, Default)]
pub struct ReceiveStats {
    // std Mutex: locked only when a track appears or for a snapshot, never across an await.
    tracks: Mutex<HashMap<TrackKey, Arc<TrackCounters>>>,
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
    }
}
