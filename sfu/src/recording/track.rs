//! One recorded track: RTP packets in, whole frames with file timestamps out.
//!
//! Reassembly uses webrtc-rs's own [`SampleBuilder`] with the codec's depacketizer: it
//! reorders by sequence number, joins a frame's packets, and drops (and counts) frames that
//! lost a packet instead of emitting them broken. On top of it this module maps RTP time to
//! file time and, for video, refuses everything after a loss until the next keyframe
//! (an inter frame that references a lost frame decodes to garbage).

use bytes::Bytes;
use rtc::media::io::sample_builder::SampleBuilder;
use rtc::media::Sample;
use rtc::rtp::codec::opus::OpusPacket;
use rtc::rtp::codec::vp8::Vp8Packet;
use rtc::rtp::codec::vp9::Vp9Packet;
use rtc::rtp::packetizer::Depacketizer;
use rtc::rtp::Packet;
use std::time::{Duration, Instant};

use super::VideoCodec;

/// A frame ready for the muxer.
#[derive(Debug, Clone)]
pub struct Frame {
    /// Milliseconds since the recording's first packet (of any track).
    pub timestamp_ms: u64,
    /// Until the next frame of the same track, as far as the RTP timestamps tell.
    pub duration_ms: u64,
    pub keyframe: bool,
    pub data: Bytes,
}

/// Maps a track's RTP timestamps to milliseconds on the recording's clock: RTP time relative
/// to the track's first packet (exact spacing, immune to network jitter), offset by when that
/// first packet arrived relative to the recording's first packet (aligns the tracks, which
/// have unrelated random RTP bases).
#[derive(Debug)]
pub struct Clock {
    clock_rate: u32,
    offset_ms: i64,
    last_rtp: u32,
    /// `last_rtp` unwrapped, in RTP units since the first packet.
    last_ext: i64,
    /// Times the clock re-anchored on arrival time.
    pub resyncs: u64,
}

impl Clock {
    pub fn new(clock_rate: u32, first_rtp: u32, first_arrival: Instant, epoch: Instant) -> Self {
        Clock {
            clock_rate: clock_rate.max(1),
            offset_ms: first_arrival.saturating_duration_since(epoch).as_millis() as i64,
            last_rtp: first_rtp,
            last_ext: 0,
            resyncs: 0,
        }
    }

    /// File time of `rtp`, unwrapping 32-bit wrap-around (and tolerating timestamps slightly
    /// before the last one, as reordering produces). Never negative. `arrival_ms` is when
    /// the frame arrived on the recording's clock: if RTP time and arrival time disagree by
    /// more than [`RESYNC_AFTER`] (the sender restarted its encoder, or sends nonsense), the
    /// clock re-anchors at the arrival time instead of leaving hours of gap in the file.
    pub fn map(&mut self, rtp: u32, arrival_ms: u64) -> u64 {
        let delta = i64::from(rtp.wrapping_sub(self.last_rtp) as i32);
        let ext = self.last_ext + delta;
        let ms = self.offset_ms + ext * 1000 / i64::from(self.clock_rate);
        let arrival_ms = arrival_ms.min(i64::MAX as u64) as i64;
        if (ms - arrival_ms).abs() > RESYNC_AFTER.as_millis() as i64 {
            self.offset_ms = arrival_ms;
            self.last_rtp = rtp;
            self.last_ext = 0;
            self.resyncs += 1;
            return arrival_ms.max(0) as u64;
        }
        if delta > 0 {
            self.last_rtp = rtp;
            self.last_ext = ext;
        }
        ms.max(0) as u64
    }
}

/// The longest a single frame is taken to last (video at 1 fps).
const MAX_FRAME_MS: u64 = 1_000;

/// How far RTP time may drift from arrival time before a track's clock re-anchors. Larger
/// than any jitter buffer or network stall we would want to preserve as-is.
pub const RESYNC_AFTER: Duration = Duration::from_secs(5);

/// The depacketizers a recording can use, behind one type so `SampleBuilder` stays concrete.
#[derive(Debug, Clone)]
pub enum AnyDepacketizer {
    Opus(OpusPacket),
    Vp8(Vp8Packet),
    Vp9(Vp9Packet),
}

impl Depacketizer for AnyDepacketizer {
    fn depacketize(&mut self, b: &Bytes) -> rtc::shared::error::Result<Bytes> {
        match self {
            AnyDepacketizer::Opus(d) => d.depacketize(b),
            AnyDepacketizer::Vp8(d) => d.depacketize(b),
            AnyDepacketizer::Vp9(d) => d.depacketize(b),
        }
    }

    fn is_partition_head(&self, payload: &Bytes) -> bool {
        match self {
            AnyDepacketizer::Opus(d) => d.is_partition_head(payload),
            // Vp8Packet only checks S; a frame starts at S=1 *and* partition index 0.
            AnyDepacketizer::Vp8(_) => payload.first().is_some_and(|b| b & 0x17 == 0x10),
            AnyDepacketizer::Vp9(d) => d.is_partition_head(payload),
        }
    }

    fn is_partition_tail(&self, marker: bool, payload: &Bytes) -> bool {
        match self {
            AnyDepacketizer::Opus(d) => d.is_partition_tail(marker, payload),
            AnyDepacketizer::Vp8(d) => d.is_partition_tail(marker, payload),
            AnyDepacketizer::Vp9(d) => d.is_partition_tail(marker, payload),
        }
    }
}

/// What the track is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Opus,
    Video(VideoCodec),
}

/// Per-track counters, reported in the summary.
#[derive(Debug, Default, Clone, Copy)]
pub struct TrackCounters {
    pub frames: u64,
    /// Packets the sample builder gave up on (lost, late, or not starting a frame).
    pub packets_lost: u64,
    /// Whole frames skipped while waiting for a keyframe.
    pub frames_skipped: u64,
}

/// One track's reassembly and timing state.
pub struct Track {
    kind: Kind,
    builder: SampleBuilder<AnyDepacketizer>,
    max_late: u16,
    max_delay: Duration,
    clock_rate: u32,
    /// Highest (remapped) sequence number pushed, in the wrapping sense.
    highest_seq: Option<u16>,
    /// Added to incoming sequence numbers; see `push`.
    seq_offset: u16,
    /// Packets pushed since the builder last completed a frame.
    packets_since_frame: u32,
    /// Reused buffer for the samples one push completes.
    samples: Vec<Sample>,
    clock: Option<Clock>,
    /// File time of the last frame written, which the next one must exceed.
    last_timestamp_ms: Option<u64>,
    /// Video only: no frame is accepted until a keyframe (at start, and after any loss).
    waiting_for_keyframe: bool,
    /// Video only: dimensions of the last keyframe seen.
    pub dimensions: Option<(u32, u32)>,
    pub counters: TrackCounters,
}

impl Track {
    /// `max_late` is how many packets of reordering the builder waits out, and `max_delay`
    /// how much RTP time, before it declares a packet lost.
    pub fn new(kind: Kind, max_late: u16, max_delay: Duration) -> Self {
        Track {
            kind,
            builder: new_builder(kind, max_late, max_delay),
            max_late,
            max_delay,
            clock_rate: if kind == Kind::Opus { 48_000 } else { 90_000 },
            clock: None,
            last_timestamp_ms: None,
            waiting_for_keyframe: matches!(kind, Kind::Video(_)),
            packets_since_frame: 0,
            highest_seq: None,
            seq_offset: 0,
            samples: Vec::new(),
            dimensions: None,
            counters: TrackCounters::default(),
        }
    }

    /// True while video is being dropped until a keyframe arrives.
    pub fn waiting_for_keyframe(&self) -> bool {
        self.waiting_for_keyframe
    }

    /// Feeds one packet; appends any frames it completes to `out`.
    pub fn push(&mut self, packet: Packet, arrival: Instant, epoch: Instant, out: &mut Vec<Frame>) {
        if self.clock.is_none() {
            self.clock = Some(Clock::new(
                self.clock_rate,
                packet.header.timestamp,
                arrival,
                epoch,
            ));
        }
        // SampleBuilder counts dropped packets in a u16 that overflows (a panic in debug
        // builds) if ~65k packets pass without a frame, as an undecodable stream would make.
        // Starting a fresh builder well before that keeps it in range; the catch below is
        // the safety net for any other upstream panic: a remote's bytes must never take the
        // recording down.
        self.packets_since_frame += 1;
        if self.packets_since_frame > RESET_AFTER_PACKETS {
            self.reset_builder();
        }
        // SampleBuilder's purge rescans its sequence window for every empty slot it frees,
        // so a far jump in sequence numbers (an outage, a restarted sender, a hostile one)
        // costs it quadratic time over up to 65536 slots. So it is fed remapped sequence
        // numbers: a jump ahead of more than `jump` is closed up to a gap of one (the builder
        // still sees a loss, so video waits for a keyframe; file timestamps come from RTP
        // time and keep the real gap), and a packet further back than the reorder window is
        // too late to use and dropped here.
        let mut packet = packet;
        let window = i32::from(self.max_late);
        let jump = (window / 4).max(16);
        let mapped = packet.header.sequence_number.wrapping_add(self.seq_offset);
        match self.highest_seq {
            None => self.highest_seq = Some(mapped),
            Some(highest) => {
                let diff = i32::from(mapped.wrapping_sub(highest) as i16);
                if diff <= -window {
                    self.counters.packets_lost += 1;
                    return;
                }
                if diff > jump {
                    let target = highest.wrapping_add(2);
                    self.seq_offset = self.seq_offset.wrapping_add(target.wrapping_sub(mapped));
                    self.highest_seq = Some(target);
                } else if diff > 0 {
                    self.highest_seq = Some(mapped);
                }
            }
        }
        packet.header.sequence_number = packet.header.sequence_number.wrapping_add(self.seq_offset);
        let builder = &mut self.builder;
        let mut samples = std::mem::take(&mut self.samples);
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            builder.push(arrival, packet);
            while let Some(sample) = builder.pop(arrival) {
                samples.push(sample);
            }
            samples
        }));
        let mut samples = match result {
            Ok(samples) => samples,
            Err(_) => {
                self.reset_builder();
                Vec::new()
            }
        };
        for sample in samples.drain(..) {
            self.packets_since_frame = 0;
            self.accept(sample, epoch, out);
        }
        self.samples = samples;
    }

    fn reset_builder(&mut self) {
        self.counters.packets_lost += u64::from(self.packets_since_frame);
        self.packets_since_frame = 0;
        self.builder = new_builder(self.kind, self.max_late, self.max_delay);
        self.waiting_for_keyframe = matches!(self.kind, Kind::Video(_));
    }

    fn accept(&mut self, sample: Sample, epoch: Instant, out: &mut Vec<Frame>) {
        let lost = sample
            .prev_dropped_packets
            .saturating_sub(sample.prev_padding_packets);
        self.counters.packets_lost += u64::from(lost);
        if sample.data.is_empty() {
            return;
        }
        let keyframe = match self.kind {
            Kind::Opus => true,
            Kind::Video(codec) => {
                if lost > 0 {
                    self.waiting_for_keyframe = true;
                }
                let info = video_keyframe(codec, &sample.data);
                if let Some(dims) = info {
                    self.dimensions = Some(dims);
                    self.waiting_for_keyframe = false;
                }
                if self.waiting_for_keyframe {
                    self.counters.frames_skipped += 1;
                    return;
                }
                info.is_some()
            }
        };
        let Some(clock) = self.clock.as_mut() else {
            return;
        };
        self.counters.frames += 1;
        let mapped = clock.map(
            sample.packet_timestamp,
            sample
                .timestamp
                .saturating_duration_since(epoch)
                .as_millis() as u64,
        );
        // A track's block times must increase (ffmpeg and players reject a repeat), but the
        // clock maps frames less than 1 ms apart, late frames and a resync to the same or an
        // earlier millisecond: such a frame goes 1 ms after the previous one.
        let timestamp_ms = match self.last_timestamp_ms {
            Some(last) if mapped <= last => last + 1,
            _ => mapped,
        };
        self.last_timestamp_ms = Some(timestamp_ms);
        out.push(Frame {
            timestamp_ms,
            // From the next frame's RTP timestamp, which a jump makes arbitrary; it only
            // feeds the file's Duration, so keep it plausible.
            duration_ms: (sample.duration.as_millis() as u64).min(MAX_FRAME_MS),
            keyframe,
            data: sample.data,
        });
    }
}

/// Packets without a completed frame after which the sample builder is started afresh
/// (half of its u16 drop counter's range).
const RESET_AFTER_PACKETS: u32 = 30_000;

fn new_builder(kind: Kind, max_late: u16, max_delay: Duration) -> SampleBuilder<AnyDepacketizer> {
    let (depacketizer, clock_rate) = match kind {
        Kind::Opus => (AnyDepacketizer::Opus(OpusPacket), 48_000),
        Kind::Video(VideoCodec::Vp8) => (AnyDepacketizer::Vp8(Vp8Packet::default()), 90_000),
        Kind::Video(VideoCodec::Vp9) => (AnyDepacketizer::Vp9(Vp9Packet::default()), 90_000),
    };
    SampleBuilder::new(max_late, depacketizer, clock_rate).with_max_time_delay(max_delay)
}

/// `Some((width, height))` if `frame` is a keyframe of `codec` (dimensions `(0, 0)` when the
/// header is too short to carry them), `None` for an inter frame or garbage.
pub fn video_keyframe(codec: VideoCodec, frame: &[u8]) -> Option<(u32, u32)> {
    match codec {
        VideoCodec::Vp8 => vp8_keyframe(frame),
        VideoCodec::Vp9 => vp9_keyframe(frame),
    }
}

/// VP8 (RFC 6386 §9.1): bit 0 of the frame tag is 0 for a keyframe, which then carries the
/// start code `9d 01 2a` and 14-bit width and height.
fn vp8_keyframe(frame: &[u8]) -> Option<(u32, u32)> {
    if frame.len() < 10 || frame[0] & 0x01 != 0 || frame[3..6] != [0x9d, 0x01, 0x2a] {
        return None;
    }
    let width = u32::from(u16::from_le_bytes([frame[6], frame[7]]) & 0x3fff);
    let height = u32::from(u16::from_le_bytes([frame[8], frame[9]]) & 0x3fff);
    Some((width, height))
}

/// Reads bits MSB-first; `None` past the end.
struct Bits<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Bits<'_> {
    fn bit(&mut self) -> Option<u32> {
        let byte = *self.data.get(self.pos / 8)?;
        let bit = (byte >> (7 - self.pos % 8)) & 1;
        self.pos += 1;
        Some(u32::from(bit))
    }

    fn bits(&mut self, n: u32) -> Option<u32> {
        (0..n).try_fold(0, |acc, _| Some((acc << 1) | self.bit()?))
    }
}

/// VP9 uncompressed header (VP9 bitstream spec §6.2): frame_marker, profile,
/// show_existing_frame, frame_type (0 = key); a keyframe then has the sync code, colour
/// config and `frame_width_minus_1`/`frame_height_minus_1`.
fn vp9_keyframe(frame: &[u8]) -> Option<(u32, u32)> {
    let mut r = Bits {
        data: frame,
        pos: 0,
    };
    if r.bits(2)? != 2 {
        return None;
    }
    let profile_low = r.bit()?;
    let profile = (r.bit()? << 1) | profile_low;
    if profile == 3 {
        r.bit()?;
    }
    if r.bit()? == 1 {
        return None; // show_existing_frame
    }
    if r.bit()? != 0 {
        return None; // inter frame
    }
    let _show_frame = r.bit();
    let _error_resilient = r.bit();
    let dims = (|| {
        if r.bits(24)? != 0x49_8342 {
            return None;
        }
        if profile >= 2 {
            r.bit()?; // ten_or_twelve_bit
        }
        let color_space = r.bits(3)?;
        if color_space != 7 {
            r.bit()?; // color_range
            if profile == 1 || profile == 3 {
                r.bits(3)?; // subsampling_x, subsampling_y, reserved
            }
        } else if profile == 1 || profile == 3 {
            r.bit()?;
        }
        Some((r.bits(16)? + 1, r.bits(16)? + 1))
    })();
    Some(dims.unwrap_or((0, 0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_unwraps_and_aligns() {
        let epoch = Instant::now();
        let mut c = Clock::new(
            90_000,
            u32::MAX - 899,
            epoch + Duration::from_millis(250),
            epoch,
        );
        // Arrival times carry jitter; RTP time wins while they roughly agree.
        assert_eq!(c.map(u32::MAX - 899, 260), 250);
        assert_eq!(c.map(2_100, 330), 250 + 33); // wrapped: 900 + 2100 = 3000 ticks
        assert_eq!(c.map(u32::MAX - 899, 340), 250); // a late frame from before the wrap
        let mut audio = Clock::new(48_000, 1_000, epoch, epoch);
        assert_eq!(audio.map(1_000 + 48_000 * 3, 3_100), 3_000);
        assert_eq!(audio.map(0, 3_120), 0); // before the first packet: clamped, never negative
        assert_eq!(audio.resyncs, 0);
        // The sender jumps its RTP clock by an hour: re-anchor on arrival.
        let jumped = 1_000 + 48_000 * 3600;
        assert_eq!(audio.map(jumped, 3_140), 3_140);
        assert_eq!(audio.map(jumped + 960, 3_170), 3_160);
        assert_eq!(audio.resyncs, 1);
    }

    #[test]
    fn frame_times_always_increase() {
        // Opus frames whose RTP times are less than 1 ms apart (960 and 980 ticks at 48 kHz
        // both map to 20 ms) must still get increasing file times.
        let epoch = Instant::now();
        let mut track = Track::new(Kind::Opus, 64, Duration::from_secs(1));
        let mut out = Vec::new();
        for (seq, ts) in [0u32, 960, 980, 1_940, 2_900, 3_860]
            .into_iter()
            .enumerate()
        {
            let mut packet = Packet::default();
            packet.header.sequence_number = seq as u16;
            packet.header.timestamp = ts;
            packet.payload = Bytes::from_static(&[0xf8, 0xff, 0xfe]);
            let arrival = epoch + Duration::from_millis(u64::from(ts) / 48);
            track.push(packet, arrival, epoch, &mut out);
        }
        let times: Vec<u64> = out.iter().map(|f| f.timestamp_ms).collect();
        assert!(times.len() >= 4, "{times:?}");
        assert!(times.windows(2).all(|w| w[0] < w[1]), "{times:?}");
    }

    #[test]
    fn vp8_keyframes_and_dimensions() {
        let key = [
            0x50, 0x42, 0x00, 0x9d, 0x01, 0x2a, 0x40, 0x01, 0xf0, 0x00, 0x00,
        ];
        assert_eq!(vp8_keyframe(&key), Some((320, 240)));
        let mut inter = key;
        inter[0] |= 1;
        assert_eq!(vp8_keyframe(&inter), None);
        assert_eq!(vp8_keyframe(&key[..5]), None);
        assert_eq!(vp8_keyframe(&[]), None);
    }

    #[test]
    fn vp9_keyframes_and_dimensions() {
        // Profile 0 keyframe: 10|0|0|0|0|1|0 then sync code, colour space 2 (BT.601), range 0,
        // width-1 = 319, height-1 = 239.
        let mut bits: Vec<u8> = vec![1, 0, 0, 0, 0, 0, 1, 0];
        let push = |bits: &mut Vec<u8>, v: u32, n: u32| {
            for i in (0..n).rev() {
                bits.push(((v >> i) & 1) as u8);
            }
        };
        push(&mut bits, 0x49_8342, 24);
        push(&mut bits, 2, 3);
        push(&mut bits, 0, 1);
        push(&mut bits, 319, 16);
        push(&mut bits, 239, 16);
        bits.resize(bits.len().div_ceil(8) * 8, 0);
        let bytes: Vec<u8> = bits
            .chunks(8)
            .map(|c| c.iter().fold(0, |a, b| (a << 1) | b))
            .collect();
        assert_eq!(vp9_keyframe(&bytes), Some((320, 240)));
        let mut inter = bytes.clone();
        inter[0] |= 0b0000_0100; // frame_type = 1
        assert_eq!(vp9_keyframe(&inter), None);
        assert_eq!(vp9_keyframe(&bytes[..2]), Some((0, 0)));
        assert_eq!(vp9_keyframe(&[0x00]), None);
    }
}
