//! The writer thread: drains the packet channel, reassembles frames per track, interleaves
//! the tracks in timestamp order and writes them with [`WebmWriter`].

use std::collections::BTreeMap;
use std::fs::File;
use std::io::BufWriter;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::Instant;

use rtc::rtp::Packet;

use super::track::{Frame, Kind, Track};
use super::webm::{TrackSpec, WebmWriter};
use super::{RecorderConfig, RecordingError, Shared};

/// One message from the SFU's packet path.
pub enum Msg {
    Audio(Packet, Instant),
    Video(Packet, Instant),
}

/// What the thread hands back when the channel closes.
pub struct Outcome {
    pub bytes: u64,
    pub duration_ms: u64,
    pub audio: super::track::TrackCounters,
    pub video: super::track::TrackCounters,
}

/// Frames waiting to be written, keyed by (timestamp, track index, arrival order) so equal
/// timestamps keep a stable order.
type Queue = BTreeMap<(u64, usize, u64), Frame>;

struct Worker {
    config: RecorderConfig,
    shared: Arc<Shared>,
    /// Index 0: audio (if recorded), then video (if recorded); matches `specs` below.
    tracks: Vec<(Kind, Track)>,
    /// Highest frame timestamp each track has produced (None until its first frame).
    latest: Vec<Option<u64>>,
    queue: Queue,
    seq: u64,
    epoch: Option<Instant>,
    path: PathBuf,
    file: Option<File>,
    writer: Option<WebmWriter<BufWriter<File>>>,
    /// Last timestamp written, to keep the file's timestamps non-decreasing.
    last_written_ms: u64,
    scratch: Vec<Frame>,
}

/// Runs until every sender is dropped, then finalises the file.
pub fn run(
    path: PathBuf,
    file: File,
    config: RecorderConfig,
    shared: Arc<Shared>,
    rx: Receiver<Msg>,
) -> Result<Outcome, RecordingError> {
    let mut tracks = Vec::new();
    if config.audio {
        tracks.push((
            Kind::Opus,
            Track::new(
                Kind::Opus,
                config.audio_max_late_packets,
                config.max_reorder_delay,
            ),
        ));
    }
    if let Some(codec) = config.video {
        tracks.push((
            Kind::Video(codec),
            Track::new(
                Kind::Video(codec),
                config.video_max_late_packets,
                config.max_reorder_delay,
            ),
        ));
    }
    let mut worker = Worker {
        latest: vec![None; tracks.len()],
        tracks,
        config,
        shared,
        queue: Queue::new(),
        seq: 0,
        epoch: None,
        path,
        file: Some(file),
        writer: None,
        last_written_ms: 0,
        scratch: Vec::new(),
    };
    let result = worker.run_loop(&rx);
    // Stop accepting packets as soon as we stop reading them (e.g. after a disk error), so
    // the packet path counts them as dropped instead of filling the channel.
    drop(rx);
    result?;
    worker.finish()
}

impl Worker {
    fn run_loop(&mut self, rx: &Receiver<Msg>) -> Result<(), RecordingError> {
        let idle = self.config.max_cluster_duration / 2;
        loop {
            match rx.recv_timeout(idle) {
                Ok(msg) => self.handle(msg)?,
                Err(RecvTimeoutError::Timeout) => {
                    // Input paused: nothing more will reorder, so write what is queued and
                    // push it to the OS rather than leave it in memory.
                    self.drain(None)?;
                    if let Some(w) = self.writer.as_mut() {
                        w.flush()?;
                    }
                }
                Err(RecvTimeoutError::Disconnected) => return Ok(()),
            }
        }
    }

    fn handle(&mut self, msg: Msg) -> Result<(), RecordingError> {
        let (is_video, packet, arrival) = match msg {
            Msg::Audio(p, t) => (false, p, t),
            Msg::Video(p, t) => (true, p, t),
        };
        let Some(index) = self
            .tracks
            .iter()
            .position(|(kind, _)| matches!(kind, Kind::Video(_)) == is_video)
        else {
            return Ok(()); // a track this recording does not include
        };
        let epoch = *self.epoch.get_or_insert(arrival);
        let mut frames = std::mem::take(&mut self.scratch);
        let track = &mut self.tracks[index].1;
        track.push(packet, arrival, epoch, &mut frames);
        if matches!(self.tracks[index].0, Kind::Video(_)) {
            self.shared.needs_keyframe.store(
                self.tracks[index].1.waiting_for_keyframe(),
                Ordering::Relaxed,
            );
        }
        for frame in frames.drain(..) {
            let latest = &mut self.latest[index];
            *latest = Some(latest.map_or(frame.timestamp_ms, |l| l.max(frame.timestamp_ms)));
            self.seq += 1;
            self.queue
                .insert((frame.timestamp_ms, index, self.seq), frame);
        }
        self.scratch = frames;
        let horizon = self.config.max_reorder_delay.as_millis() as u64 * 2;
        self.drain(Some(horizon))
    }

    /// Writes queued frames that can no longer be overtaken: those no later than every
    /// track's newest frame, and (so a silent or missing track cannot hold the others back)
    /// those more than `horizon` ms older than the newest frame of any track. `None` writes
    /// everything.
    fn drain(&mut self, horizon: Option<u64>) -> Result<(), RecordingError> {
        loop {
            let Some((&(ts, index, _), _)) = self.queue.first_key_value() else {
                return Ok(());
            };
            if let Some(horizon) = horizon {
                let newest = self.latest.iter().flatten().max().copied().unwrap_or(0);
                let all_past = self.latest.iter().all(|l| l.is_some_and(|l| l >= ts));
                if !all_past && ts + horizon > newest {
                    return Ok(());
                }
            }
            let Some((_, frame)) = self.queue.pop_first() else {
                return Ok(());
            };
            self.write(index, frame)?;
        }
    }

    fn write(&mut self, index: usize, frame: Frame) -> Result<(), RecordingError> {
        if self.writer.is_none() {
            self.open_writer()?;
        }
        let Some(writer) = self.writer.as_mut() else {
            return Ok(());
        };
        // A frame older than one already written (it was overtaken beyond the horizon) is
        // written at the last timestamp: files must not go back in time.
        let ts = frame.timestamp_ms.max(self.last_written_ms);
        self.last_written_ms = ts;
        writer.write_frame(
            index as u64 + 1,
            ts,
            frame.duration_ms,
            frame.keyframe,
            &frame.data,
        )?;
        self.shared
            .bytes_written
            .store(writer.bytes_written(), Ordering::Relaxed);
        Ok(())
    }

    /// The header is written with the first frame, so it can carry the video dimensions of
    /// the first keyframe (already reassembled by then when video leads the queue).
    fn open_writer(&mut self) -> Result<(), RecordingError> {
        let Some(file) = self.file.take() else {
            return Ok(());
        };
        let specs: Vec<TrackSpec> = self
            .tracks
            .iter()
            .map(|(kind, track)| match kind {
                Kind::Opus => TrackSpec::Opus {
                    channels: self.config.opus_channels,
                    pre_skip: 0,
                },
                Kind::Video(codec) => {
                    let (width, height) = track
                        .dimensions
                        .filter(|(w, h)| *w > 0 && *h > 0)
                        .unwrap_or(self.config.default_video_size);
                    TrackSpec::Video {
                        codec_id: codec.matroska_codec_id(),
                        width,
                        height,
                    }
                }
            })
            .collect();
        let max_cluster_ms = self.config.max_cluster_duration.as_millis() as u64;
        let out = BufWriter::with_capacity(256 * 1024, file);
        self.writer = Some(WebmWriter::new(out, &specs, max_cluster_ms)?);
        Ok(())
    }

    fn finish(mut self) -> Result<Outcome, RecordingError> {
        self.drain(None)?;
        if self.writer.is_none() {
            // Nothing was ever recorded. A WebM without a single Cluster is not a file
            // players open (ffmpeg reports "End of file"), so leave no file rather than a
            // broken one.
            self.file = None;
            std::fs::remove_file(&self.path)?;
        }
        let (bytes, duration_ms) = match self.writer.take() {
            Some(writer) => {
                let bytes_before_finish = writer.bytes_written();
                let (out, duration_ms) = writer.finish()?;
                let file = out.into_inner().map_err(|e| e.into_error())?;
                // Durable on finish: recording stop is where losing data would surprise.
                file.sync_all()?;
                let bytes = file
                    .metadata()
                    .map(|m| m.len())
                    .unwrap_or(bytes_before_finish);
                (bytes, duration_ms)
            }
            None => (0, 0),
        };
        let counters = |video: bool| {
            self.tracks
                .iter()
                .find(|(kind, _)| matches!(kind, Kind::Video(_)) == video)
                .map(|(_, t)| t.counters)
                .unwrap_or_default()
        };
        Ok(Outcome {
            bytes,
            duration_ms,
            audio: counters(false),
            video: counters(true),
        })
    }
}
