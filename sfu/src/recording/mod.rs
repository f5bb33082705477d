//! # Recording: one playable WebM per participant, from the RTP the SFU already receives
//!
//! Nothing is decoded or transcoded. A [`ParticipantRecorder`] takes a participant's audio
//! (Opus) and video (VP8, or VP9 if negotiated) RTP packets, reassembles frames with
//! webrtc-rs's own depacketizers and sample builder, and muxes them into a WebM file whose
//! timestamps come from RTP time (per track, relative to its first packet) aligned across
//! tracks by arrival time.
//!
//! ## Threading model
//! The SFU's media task is synchronous and must never wait on a disk. So each recorder owns
//! one writer thread; [`ParticipantRecorder::push_audio`]/[`push_video`](ParticipantRecorder::push_video)
//! only copy the packet header and bump the payload's refcount (`Bytes`) into a bounded
//! channel. If the disk cannot keep up and the channel is full, the packet is dropped and
//! counted ([`ParticipantRecorder::packets_dropped`]); the recording then treats it like
//! network loss (video waits for the next keyframe and asks for one).
//!
//! ## Gaps and keyframes
//! A frame that lost a packet is dropped whole (the sample builder never emits it). For video
//! everything after a loss is dropped until the next keyframe, since inter frames reference
//! what was lost; [`ParticipantRecorder::needs_keyframe`] is true from the start until the
//! first keyframe and again while waiting after a loss, so the SFU should send a PLI whenever
//! it reads true (throttled as it already throttles PLIs). Audio gaps (loss, DTX) simply
//! leave a gap in the timestamps, which players play as silence.
//!
//! ## Cost
//! `push_*` is a header copy and a `try_send` (about 0.1 µs in the tests). The writer
//! thread's memory is dominated by webrtc-rs's `SampleBuilder`, which preallocates a slot for
//! every one of the 65536 sequence numbers: about 12 MB per track, 24 MB per recorder with
//! audio and video. Acceptable for a handful of recordings per server; a compact jitter
//! buffer sized by the reorder window is the fix if recording many participants at once.
//! The builder is also fed remapped sequence numbers (see `track.rs`) because its purge is
//! quadratic in the width of a sequence-number jump.
//!
//! ## Finalisation and crash safety
//! [`ParticipantRecorder::finish`] closes the channel, lets the thread write what is queued,
//! append the Cues index, patch the Duration and sizes and `fsync`; call it when recording
//! stops, when the call ends and on graceful shutdown (from a blocking context, e.g. tokio's
//! `spawn_blocking`, as it joins the thread). Dropping a recorder without `finish` still
//! finalises the file, in the background. Clusters hold at most
//! [`RecorderConfig::max_cluster_duration`] of media and are handed to the OS when they
//! close, and the Segment and open Cluster are written with "unknown" sizes, so a crash
//! leaves a file that players read up to about the last cluster and reorder window.

pub mod disk;
mod ebml;
mod track;
mod webm;
mod worker;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rtc::rtp::{Header, Packet};

use worker::Msg;

/// Video codecs a recording can hold without transcoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum VideoCodec {
    /// VP8 (`V_VP8`), every browser's baseline.
    Vp8,
    /// VP9 (`V_VP9`).
    Vp9,
}

impl VideoCodec {
    /// The codec for an SDP/WebRTC MIME type such as `video/VP8` (case-insensitive); `None`
    /// for codecs a WebM recording cannot hold (H.264) or this module does not write yet (AV1).
    pub fn from_mime_type(mime: &str) -> Option<Self> {
        let name = mime.rsplit('/').next().unwrap_or(mime);
        if name.eq_ignore_ascii_case("vp8") {
            Some(VideoCodec::Vp8)
        } else if name.eq_ignore_ascii_case("vp9") {
            Some(VideoCodec::Vp9)
        } else {
            None
        }
    }

    fn matroska_codec_id(self) -> &'static str {
        match self {
            VideoCodec::Vp8 => "V_VP8",
            VideoCodec::Vp9 => "V_VP9",
        }
    }
}

/// How a recording is made. [`Default`] records Opus audio and VP8 video.
#[derive(Debug, Clone)]
pub struct RecorderConfig {
    /// Record an Opus audio track.
    pub audio: bool,
    /// Record a video track with this codec (`None`: audio only).
    pub video: Option<VideoCodec>,
    /// Channels declared for Opus. WebRTC negotiates `opus/48000/2`; a decoder plays mono
    /// packets in a stereo track fine, so 2 is right unless you know better.
    pub opus_channels: u8,
    /// Capacity of the packet channel to the writer thread, in packets. 4096 is several
    /// seconds of HD video: far more than a healthy disk ever lags.
    pub queue_capacity: usize,
    /// Longest span of media in one Cluster; also about what a crash can lose.
    pub max_cluster_duration: Duration,
    /// How long (in RTP time) reassembly waits for a late or reordered packet before it
    /// declares the frame lost. Frames are written about twice this late.
    pub max_reorder_delay: Duration,
    /// Reordering tolerance in packets for audio.
    pub audio_max_late_packets: u16,
    /// Reordering tolerance in packets for video (a keyframe can span a hundred packets).
    pub video_max_late_packets: u16,
    /// Dimensions written in the header when no keyframe arrived before the first frame is
    /// written (players take the real size from the bitstream).
    pub default_video_size: (u32, u32),
}

impl Default for RecorderConfig {
    fn default() -> Self {
        RecorderConfig {
            audio: true,
            video: Some(VideoCodec::Vp8),
            opus_channels: 2,
            queue_capacity: 4096,
            max_cluster_duration: Duration::from_secs(1),
            max_reorder_delay: Duration::from_millis(300),
            audio_max_late_packets: 50,
            video_max_late_packets: 500,
            default_video_size: (640, 480),
        }
    }
}

impl RecorderConfig {
    /// Checks the values are usable.
    pub fn validate(&self) -> Result<(), RecordingError> {
        let fail = |why| Err(RecordingError::InvalidConfig(why));
        if !self.audio && self.video.is_none() {
            return fail("a recording needs an audio or a video track");
        }
        if !(1..=2).contains(&self.opus_channels) {
            return fail("opus_channels must be 1 or 2");
        }
        if self.queue_capacity == 0 {
            return fail("queue_capacity must be positive");
        }
        let cluster = self.max_cluster_duration;
        if cluster < Duration::from_millis(100) || cluster > Duration::from_secs(30) {
            return fail("max_cluster_duration must be between 100 ms and 30 s");
        }
        if self.max_reorder_delay.is_zero() || self.max_reorder_delay > Duration::from_secs(5) {
            return fail("max_reorder_delay must be between 1 ms and 5 s");
        }
        if self.audio_max_late_packets == 0 || self.video_max_late_packets == 0 {
            return fail("max_late_packets must be positive");
        }
        Ok(())
    }
}

/// Why a recording could not be made or finished.
#[derive(Debug, thiserror::Error)]
pub enum RecordingError {
    /// The configuration is unusable.
    #[error("invalid recording config: {0}")]
    InvalidConfig(&'static str),
    /// The file could not be created.
    #[error("cannot create recording {path}: {source}")]
    Create {
        /// The file asked for.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The writer thread could not be started.
    #[error("cannot start the recording thread: {0}")]
    Spawn(std::io::Error),
    /// Writing the file failed (disk full, I/O error); the file holds what was written before.
    #[error("recording I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The writer thread panicked (a bug: bad input is dropped, never a panic).
    #[error("the recording thread panicked")]
    WriterPanicked,
}

/// What a finished recording produced.
#[derive(Debug, Clone)]
pub struct RecordingSummary {
    /// The WebM file.
    pub path: PathBuf,
    /// Its size.
    pub bytes: u64,
    /// Media duration (end of the last frame on the recording's clock).
    pub duration: Duration,
    /// Audio frames written.
    pub audio_frames: u64,
    /// Video frames written.
    pub video_frames: u64,
    /// Packets the reassembly gave up on (lost, too late, or incomplete frames), both tracks.
    pub packets_lost: u64,
    /// Video frames skipped while waiting for a keyframe.
    pub video_frames_skipped: u64,
    /// Packets dropped because the writer thread could not keep up.
    pub packets_dropped: u64,
}

/// State the packet path and the writer thread share, all lock-free.
#[derive(Debug)]
struct Shared {
    needs_keyframe: AtomicBool,
    packets_dropped: AtomicU64,
    bytes_written: AtomicU64,
}

/// Records one participant's tracks into one WebM file. See the module docs.
#[derive(Debug)]
pub struct ParticipantRecorder {
    path: PathBuf,
    tx: SyncSender<Msg>,
    thread: JoinHandle<Result<worker::Outcome, RecordingError>>,
    shared: Arc<Shared>,
}

impl ParticipantRecorder {
    /// Creates (truncating) the file at `path` and starts the writer thread. The header is
    /// written with the first frame.
    pub fn new(path: impl AsRef<Path>, config: RecorderConfig) -> Result<Self, RecordingError> {
        Self::open(path.as_ref(), config, false)
    }

    /// Like [`ParticipantRecorder::new`], but fails if the file already exists, so two
    /// recorders can never write one file (security review finding 20).
    pub fn create_new(
        path: impl AsRef<Path>,
        config: RecorderConfig,
    ) -> Result<Self, RecordingError> {
        Self::open(path.as_ref(), config, true)
    }

    fn open(path: &Path, config: RecorderConfig, create_new: bool) -> Result<Self, RecordingError> {
        config.validate()?;
        let path = path.to_path_buf();
        let opened = if create_new {
            File::options().write(true).create_new(true).open(&path)
        } else {
            File::create(&path)
        };
        let file = opened.map_err(|source| RecordingError::Create {
            path: path.clone(),
            source,
        })?;
        let shared = Arc::new(Shared {
            needs_keyframe: AtomicBool::new(config.video.is_some()),
            packets_dropped: AtomicU64::new(0),
            bytes_written: AtomicU64::new(0),
        });
        let (tx, rx) = mpsc::sync_channel(config.queue_capacity);
        let thread_shared = shared.clone();
        let thread_path = path.clone();
        let thread = std::thread::Builder::new()
            .name("sfu-recorder".into())
            .spawn(move || worker::run(thread_path, file, config, thread_shared, rx))
            .map_err(RecordingError::Spawn)?;
        Ok(ParticipantRecorder {
            path,
            tx,
            thread,
            shared,
        })
    }

    /// Queues an Opus RTP packet. Never blocks; drops and counts when the writer lags.
    pub fn push_audio(&self, packet: &Packet, arrival: Instant) {
        self.send(Msg::Audio(lean_copy(packet), arrival));
    }

    /// Queues a video RTP packet. Never blocks; drops and counts when the writer lags.
    pub fn push_video(&self, packet: &Packet, arrival: Instant) {
        self.send(Msg::Video(lean_copy(packet), arrival));
    }

    fn send(&self, msg: Msg) {
        match self.tx.try_send(msg) {
            Ok(()) => {}
            // Full: the disk lags. Disconnected: the writer stopped on an I/O error, which
            // finish() reports.
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.shared.packets_dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// True until the first video keyframe has been recorded, and again while video waits
    /// for a keyframe after a loss: the SFU should request one (PLI) while this holds.
    pub fn needs_keyframe(&self) -> bool {
        self.shared.needs_keyframe.load(Ordering::Relaxed)
    }

    /// Packets dropped so far because the writer thread could not keep up.
    pub fn packets_dropped(&self) -> u64 {
        self.shared.packets_dropped.load(Ordering::Relaxed)
    }

    /// Bytes written to the file so far (buffered bytes included).
    pub fn bytes_written(&self) -> u64 {
        self.shared.bytes_written.load(Ordering::Relaxed)
    }

    /// The file being written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Stops recording: writes what is queued, finalises the file (Cues, Duration, sizes),
    /// syncs it to disk and reports. If not a single frame was recorded the file is removed
    /// (a WebM without frames is not playable) and the summary reports 0 bytes. Blocks until the writer thread is done (milliseconds);
    /// call it from a blocking context, not from the media task.
    pub fn finish(self) -> Result<RecordingSummary, RecordingError> {
        let ParticipantRecorder {
            path,
            tx,
            thread,
            shared,
        } = self;
        drop(tx);
        let outcome = thread
            .join()
            .map_err(|_| RecordingError::WriterPanicked)??;
        Ok(RecordingSummary {
            path,
            bytes: outcome.bytes,
            duration: Duration::from_millis(outcome.duration_ms),
            audio_frames: outcome.audio.frames,
            video_frames: outcome.video.frames,
            packets_lost: outcome.audio.packets_lost + outcome.video.packets_lost,
            video_frames_skipped: outcome.video.frames_skipped,
            packets_dropped: shared.packets_dropped.load(Ordering::Relaxed),
        })
    }
}

/// The header fields reassembly needs plus the payload (a refcount bump): no header
/// extensions or CSRCs, so queuing a packet allocates nothing.
fn lean_copy(packet: &Packet) -> Packet {
    let h = &packet.header;
    Packet {
        header: Header {
            version: h.version,
            padding: h.padding,
            marker: h.marker,
            payload_type: h.payload_type,
            sequence_number: h.sequence_number,
            timestamp: h.timestamp,
            ssrc: h.ssrc,
            ..Default::default()
        },
        payload: packet.payload.clone(),
    }
}
