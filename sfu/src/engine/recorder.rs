//! Server-side recording as the media task sees it: which publications feed which
//! [`ParticipantRecorder`], keyframe requests while a recorder waits for one, the disk-space
//! floor, and finishing files away from the media task (finishing joins a writer thread).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use tracing::{info, warn};

use super::Engine;
use crate::recording::{ParticipantRecorder, RecorderConfig, VideoCodec};
use crate::{ParticipantId, RecordingStopReason, RoomId, SfuError, SfuEvent, TrackKind};

/// A room being recorded.
pub(super) struct RoomRecording {
    directory: PathBuf,
    video: bool,
}

impl Engine {
    pub(super) fn start_recording(
        &mut self,
        room_id: RoomId,
        directory: PathBuf,
        video: bool,
    ) -> Result<Vec<PathBuf>, SfuError> {
        let room = self
            .rooms
            .get(&room_id)
            .ok_or_else(|| SfuError::UnknownRoom(room_id.clone()))?;
        if room.recording.is_some() {
            return Err(SfuError::AlreadyRecording(room_id));
        }
        std::fs::create_dir_all(&directory).map_err(|error| {
            SfuError::Recording(format!("cannot create {}: {error}", directory.display()))
        })?;
        if let Some(free) = self.free_space_below_floor(&directory) {
            return Err(SfuError::Recording(format!(
                "only {free} bytes free in {}",
                directory.display()
            )));
        }
        let participants = room.participants.clone();
        if let Some(room) = self.rooms.get_mut(&room_id) {
            room.recording = Some(RoomRecording { directory, video });
        }
        let mut files = Vec::new();
        for participant in &participants {
            match self.attach_recorder(&room_id, participant) {
                Ok(path) => files.push(path),
                Err(error) => {
                    self.stop_recording(&room_id, RecordingStopReason::Requested);
                    return Err(error);
                }
            }
        }
        info!(room = %room_id, files = files.len(), "recording started");
        Ok(files)
    }

    /// Gives a participant of a recorded room its recorder (at start, or when it joins
    /// later), and wires it to the publications it already has.
    pub(super) fn attach_recorder(
        &mut self,
        room_id: &RoomId,
        participant: &ParticipantId,
    ) -> Result<PathBuf, SfuError> {
        let Some(recording) = self.rooms.get(room_id).and_then(|r| r.recording.as_ref()) else {
            return Err(SfuError::NotRecording(room_id.clone()));
        };
        let record = self
            .participants
            .get(participant)
            .ok_or_else(|| SfuError::UnknownParticipant(participant.clone()))?;
        let video_codec = record
            .publications
            .iter()
            .filter_map(|key| self.publications.get(key))
            .find(|p| p.kind == TrackKind::Video)
            .and_then(|p| VideoCodec::from_mime_type(&p.codec.mime_type))
            .unwrap_or(VideoCodec::Vp8);
        let started_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        let path = recording.directory.join(format!(
            "{}-{}-{started_ms}.webm",
            file_safe(room_id.as_str()),
            file_safe(&record.stream_label)
        ));
        let config = RecorderConfig {
            video: recording.video.then_some(video_codec),
            ..RecorderConfig::default()
        };
        let recorder = Arc::new(
            ParticipantRecorder::new(&path, config)
                .map_err(|error| SfuError::Recording(error.to_string()))?,
        );
        let record = self
            .participants
            .get_mut(participant)
            .expect("checked above");
        record.recorder = Some(recorder.clone());
        for key in &record.publications {
            if let Some(publication) = self.publications.get_mut(key) {
                publication.recorder = Some(recorder.clone());
            }
        }
        Ok(path)
    }

    /// Takes a participant's recorder off every path that feeds it and finishes the file in
    /// the background; the result arrives as [`SfuEvent::RecordingFinished`].
    pub(super) fn detach_recorder(&mut self, room_id: &RoomId, participant: &ParticipantId) {
        let Some(record) = self.participants.get_mut(participant) else {
            return;
        };
        let Some(recorder) = record.recorder.take() else {
            return;
        };
        for key in &record.publications {
            if let Some(publication) = self.publications.get_mut(key) {
                publication.recorder = None;
            }
        }
        let events = self.events.clone();
        let (room, participant) = (room_id.clone(), participant.clone());
        self.finishing.push(tokio::task::spawn_blocking(move || {
            let result = match Arc::try_unwrap(recorder) {
                Ok(recorder) => recorder.finish().map_err(|error| error.to_string()),
                Err(_) => Err("recorder still referenced; file finalised on drop".to_owned()),
            };
            if let Err(error) = &result {
                warn!(%room, %participant, %error, "recording did not finish cleanly");
            }
            let _ = events.send(SfuEvent::RecordingFinished {
                room,
                participant,
                result,
            });
        }));
    }

    pub(super) fn stop_recording(&mut self, room_id: &RoomId, reason: RecordingStopReason) {
        let Some(room) = self.rooms.get_mut(room_id) else {
            return;
        };
        if room.recording.take().is_none() {
            return;
        }
        let participants = room.participants.clone();
        for participant in &participants {
            self.detach_recorder(room_id, participant);
        }
        info!(room = %room_id, ?reason, "recording stopped");
        let _ = self.events.send(SfuEvent::RecordingStopped {
            room: room_id.clone(),
            reason,
        });
    }

    /// Stops recordings whose disk is nearly full, before the disk is.
    pub(super) fn enforce_disk_floor(&mut self) {
        let full: Vec<RoomId> = self
            .rooms
            .iter()
            .filter_map(|(id, room)| {
                let recording = room.recording.as_ref()?;
                self.free_space_below_floor(&recording.directory)
                    .map(|_| id.clone())
            })
            .collect();
        for room in full {
            warn!(%room, "recording stopped: disk space below the floor");
            self.stop_recording(&room, RecordingStopReason::DiskFull);
        }
    }

    /// `Some(free bytes)` when the file system holding `directory` is below the floor.
    fn free_space_below_floor(&self, directory: &Path) -> Option<u64> {
        let free = fs4::available_space(directory).ok()?;
        (free < self.config.recording_min_free_bytes).then_some(free)
    }
}

/// Ids become file names: keep them to a safe alphabet.
fn file_safe(id: &str) -> String {
    id.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}
