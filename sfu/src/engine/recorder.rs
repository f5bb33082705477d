//! Server-side recording as the media task sees it: which publications feed which
//! [`ParticipantRecorder`], keyframe requests while a recorder waits for one, the disk-space
//! floor, and every file-system call kept **off** the media task (security review finding 16).
//!
//! - Starting: the media task marks the room as recorded and hands the file work (creating the
//!   directory, checking free space, creating each file, spawning each writer thread) to a
//!   blocking thread. That thread sends the recorders back as a [`Command::RecordersReady`]
//!   through the SFU's own command queue; the media task then wires them to the publications
//!   and answers `start_recording`. A participant joining a recorded room gets its recorder
//!   the same way.
//! - The floor: a [`DiskWatch`] thread per recorded room polls `statvfs`; the media task only
//!   reads its flag. A failed check counts as "below the floor" (finding 27).
//! - Finishing joins a writer thread, so it runs on a blocking thread too.
//!
//! Every file gets a unique name, `{call}-{user}-{started_ms}-{random}.webm`, opened with
//! `create_new` (finding 20), and every file carries the recording session of the
//! `start_recording` that made it, reported with [`SfuEvent::RecordingFileStarted`]
//! (finding 28).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::mpsc;
use tracing::{info, warn};

use super::Engine;
use crate::api::{Command, Reply};
use crate::recording::disk::{self, DiskWatch};
use crate::recording::{ParticipantRecorder, RecorderConfig, VideoCodec};
use crate::{ParticipantId, RecordingStopReason, RoomId, SfuError, SfuEvent, TrackKind};

/// A room being recorded.
pub(super) struct RoomRecording {
    directory: PathBuf,
    video: bool,
    /// The recording session (one `start_recording`), carried into every file's events.
    session: String,
    /// The SFU's command queue, for blocking file work to hand recorders back.
    back: mpsc::Sender<Command>,
    /// `start_recording`'s answer, while the first files are being created.
    pending_reply: Option<Reply<Vec<PathBuf>>>,
    /// Set once the first files are ready (the free-space watch starts with them).
    watch: Option<DiskWatch>,
}

/// A file to create for one participant, off the media task.
struct FileJob {
    participant: ParticipantId,
    stream_label: String,
    video: Option<VideoCodec>,
}

/// Recorders created off the media task, on their way back to it.
pub(crate) struct RecordersReady {
    room: RoomId,
    session: String,
    /// Created for `start_recording` (not for a late joiner): answers it.
    starting: bool,
    /// Why nothing could be created (directory, free space), if so.
    failed: Option<String>,
    recorders: Vec<(ParticipantId, Result<ParticipantRecorder, String>)>,
}

impl Engine {
    /// Marks the room as recorded and starts creating its files off the media task; `reply`
    /// is answered when they are ready (see [`Engine::recorders_ready`]).
    pub(super) fn start_recording(
        &mut self,
        room_id: RoomId,
        directory: PathBuf,
        video: bool,
        session: String,
        back: mpsc::Sender<Command>,
        reply: Reply<Vec<PathBuf>>,
    ) {
        let Some(room) = self.rooms.get(&room_id) else {
            let _ = reply.send(Err(SfuError::UnknownRoom(room_id)));
            return;
        };
        if room.recording.is_some() {
            let _ = reply.send(Err(SfuError::AlreadyRecording(room_id)));
            return;
        }
        let participants = room.participants.clone();
        let jobs: Vec<FileJob> = participants
            .iter()
            .filter_map(|p| self.file_job(p, video))
            .collect();
        if let Some(room) = self.rooms.get_mut(&room_id) {
            room.recording = Some(RoomRecording {
                directory: directory.clone(),
                video,
                session: session.clone(),
                back: back.clone(),
                pending_reply: Some(reply),
                watch: None,
            });
        }
        let floor = self.config.recording_min_free_bytes;
        spawn_file_jobs(room_id, session, directory, floor, jobs, back, true);
    }

    /// A participant joined a recorded room: its file is created off the media task too.
    /// `Ok` means "requested"; the recorder is wired in when it arrives.
    pub(super) fn attach_recorder(
        &mut self,
        room_id: &RoomId,
        participant: &ParticipantId,
    ) -> Result<(), SfuError> {
        let Some(recording) = self.rooms.get(room_id).and_then(|r| r.recording.as_ref()) else {
            return Err(SfuError::NotRecording(room_id.clone()));
        };
        let (directory, video, session, back) = (
            recording.directory.clone(),
            recording.video,
            recording.session.clone(),
            recording.back.clone(),
        );
        let job = self
            .file_job(participant, video)
            .ok_or_else(|| SfuError::UnknownParticipant(participant.clone()))?;
        let floor = self.config.recording_min_free_bytes;
        spawn_file_jobs(
            room_id.clone(),
            session,
            directory,
            floor,
            vec![job],
            back,
            false,
        );
        Ok(())
    }

    fn file_job(&self, participant: &ParticipantId, video: bool) -> Option<FileJob> {
        let record = self.participants.get(participant)?;
        let video_codec = record
            .publications
            .iter()
            .filter_map(|key| self.publications.get(key))
            .find(|p| p.kind == TrackKind::Video)
            .and_then(|p| VideoCodec::from_mime_type(&p.codec.mime_type))
            .unwrap_or(VideoCodec::Vp8);
        Some(FileJob {
            participant: participant.clone(),
            stream_label: record.stream_label.clone(),
            video: video.then_some(video_codec),
        })
    }

    /// Recorders are back from the blocking thread: wire them in if their room is still
    /// recorded by the same session and their participant still there; otherwise finish them
    /// at once. Answers a pending `start_recording`.
    pub(super) fn recorders_ready(&mut self, ready: RecordersReady) {
        let RecordersReady {
            room: room_id,
            session,
            starting,
            failed,
            recorders,
        } = ready;
        let current = self
            .rooms
            .get_mut(&room_id)
            .and_then(|r| r.recording.as_mut())
            .filter(|r| r.session == session);
        let Some(recording) = current else {
            // Stopped (or restarted) meanwhile: these files belong to nothing running.
            for (participant, recorder) in recorders {
                if let Ok(recorder) = recorder {
                    self.announce_file(&room_id, &participant, &session, &recorder);
                    self.finish_in_background(&room_id, &participant, recorder);
                }
            }
            return;
        };
        let pending_reply = if starting {
            recording.pending_reply.take()
        } else {
            None
        };
        let first_error = failed.clone().or_else(|| {
            recorders
                .iter()
                .find_map(|(_, r)| r.as_ref().err().cloned())
        });
        if let (true, Some(error)) = (pending_reply.is_some(), first_error.as_ref()) {
            // Starting failed: undo it whole.
            warn!(room = %room_id, %error, "recording not started");
            if let Some(room) = self.rooms.get_mut(&room_id) {
                room.recording = None;
            }
            for (participant, recorder) in recorders {
                if let Ok(recorder) = recorder {
                    self.announce_file(&room_id, &participant, &session, &recorder);
                    self.finish_in_background(&room_id, &participant, recorder);
                }
            }
            if let Some(reply) = pending_reply {
                let _ = reply.send(Err(SfuError::Recording(error.clone())));
            }
            return;
        }
        if recording.watch.is_none() {
            match DiskWatch::start(
                recording.directory.clone(),
                self.config.recording_min_free_bytes,
                self.config.quality_interval,
            ) {
                Ok(watch) => recording.watch = Some(watch),
                Err(error) => {
                    warn!(room = %room_id, %error, "no disk-space watch for this recording")
                }
            }
        }
        let mut paths = Vec::new();
        for (participant, recorder) in recorders {
            let recorder = match recorder {
                Ok(recorder) => recorder,
                Err(error) => {
                    warn!(room = %room_id, %participant, %error, "participant not recorded");
                    continue;
                }
            };
            self.announce_file(&room_id, &participant, &session, &recorder);
            let present = self
                .participants
                .get(&participant)
                .is_some_and(|p| p.room == room_id && p.recorder.is_none());
            if !present {
                self.finish_in_background(&room_id, &participant, recorder);
                continue;
            }
            paths.push(recorder.path().to_path_buf());
            let recorder = Arc::new(recorder);
            let record = self
                .participants
                .get_mut(&participant)
                .expect("checked above");
            record.recorder = Some(recorder.clone());
            for key in &record.publications {
                if let Some(publication) = self.publications.get_mut(key) {
                    publication.recorder = Some(recorder.clone());
                }
            }
        }
        if let Some(reply) = pending_reply {
            info!(room = %room_id, files = paths.len(), "recording started");
            let _ = reply.send(Ok(paths));
        }
    }

    fn announce_file(
        &self,
        room: &RoomId,
        participant: &ParticipantId,
        session: &str,
        recorder: &ParticipantRecorder,
    ) {
        let _ = self.events.send(SfuEvent::RecordingFileStarted {
            room: room.clone(),
            participant: participant.clone(),
            session: session.to_owned(),
            path: recorder.path().to_path_buf(),
        });
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
            report_finished(&events, room, participant, result);
        }));
    }

    fn finish_in_background(
        &mut self,
        room: &RoomId,
        participant: &ParticipantId,
        recorder: ParticipantRecorder,
    ) {
        let events = self.events.clone();
        let (room, participant) = (room.clone(), participant.clone());
        self.finishing.push(tokio::task::spawn_blocking(move || {
            let result = recorder.finish().map_err(|error| error.to_string());
            report_finished(&events, room, participant, result);
        }));
    }

    pub(super) fn stop_recording(&mut self, room_id: &RoomId, reason: RecordingStopReason) {
        let Some(room) = self.rooms.get_mut(room_id) else {
            return;
        };
        let Some(mut recording) = room.recording.take() else {
            return;
        };
        if let Some(reply) = recording.pending_reply.take() {
            let _ = reply.send(Err(SfuError::Recording(format!(
                "recording stopped while starting ({reason:?})"
            ))));
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

    /// Stops recordings whose disk is nearly full (or unreadable), before the disk is full.
    /// Reads the watch threads' flags only: no system call on the media task.
    pub(super) fn enforce_disk_floor(&mut self) {
        let full: Vec<RoomId> = self
            .rooms
            .iter()
            .filter(|(_, room)| {
                room.recording
                    .as_ref()
                    .and_then(|r| r.watch.as_ref())
                    .is_some_and(DiskWatch::below_floor)
            })
            .map(|(id, _)| id.clone())
            .collect();
        for room in full {
            warn!(%room, "recording stopped: disk space below the floor");
            self.stop_recording(&room, RecordingStopReason::DiskFull);
        }
    }
}

fn report_finished(
    events: &mpsc::UnboundedSender<SfuEvent>,
    room: RoomId,
    participant: ParticipantId,
    result: Result<crate::recording::RecordingSummary, String>,
) {
    if let Err(error) = &result {
        warn!(%room, %participant, %error, "recording did not finish cleanly");
    }
    let _ = events.send(SfuEvent::RecordingFinished {
        room,
        participant,
        result,
    });
}

/// Creates the directory, checks the floor (failing closed) and creates one file and writer
/// per job, on a blocking thread; hands the result back to the media task.
fn spawn_file_jobs(
    room: RoomId,
    session: String,
    directory: PathBuf,
    floor: u64,
    jobs: Vec<FileJob>,
    back: mpsc::Sender<Command>,
    starting: bool,
) {
    tokio::task::spawn_blocking(move || {
        let prepared = std::fs::create_dir_all(&directory)
            .map_err(|error| format!("cannot create {}: {error}", directory.display()))
            .and_then(|()| disk::check_floor(&directory, floor));
        let (failed, recorders) = match prepared {
            Err(error) => (Some(error), Vec::new()),
            Ok(()) => (
                None,
                jobs.into_iter()
                    .map(|job| {
                        let recorder = create_file(&directory, &room, &job, unix_millis());
                        (job.participant, recorder)
                    })
                    .collect(),
            ),
        };
        if !starting {
            if let Some(error) = &failed {
                warn!(%room, %error, "late joiner not recorded");
            }
        }
        let ready = RecordersReady {
            room,
            session,
            starting,
            failed,
            recorders,
        };
        // Fails only when the SFU has stopped; the recorders then finalise on drop.
        let _ = back.blocking_send(Command::RecordersReady(ready));
    });
}

fn unix_millis() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

/// One participant's file: a unique name, never an existing file.
fn create_file(
    directory: &std::path::Path,
    room: &RoomId,
    job: &FileJob,
    started_ms: u128,
) -> Result<ParticipantRecorder, String> {
    let config = RecorderConfig {
        video: job.video,
        ..RecorderConfig::default()
    };
    let mut last_error = String::new();
    // A clash needs the same call, user, millisecond and 32 random bits: retrying is enough.
    for _ in 0..4 {
        let path = directory.join(format!(
            "{}-{}-{started_ms}-{:08x}.webm",
            file_safe(room.as_str()),
            file_safe(&job.stream_label),
            rand::random::<u32>()
        ));
        match ParticipantRecorder::create_new(&path, config.clone()) {
            Ok(recorder) => return Ok(recorder),
            Err(error) => last_error = error.to_string(),
        }
    }
    Err(last_error)
}

/// Ids become file names: keep them to a safe alphabet. Lossy (`a.b` and `a_b` look alike),
/// which is why names also carry a random part and files are opened with `create_new`.
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Finding 20: ids that map to the same safe name, recorded in the same millisecond,
    /// still get two files.
    #[test]
    fn look_alike_ids_get_distinct_files() {
        let dir = std::env::temp_dir().join(format!(
            "switchboard-names-{}-{:08x}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let room = RoomId::new("call.1");
        let jobs = ["u.1", "u_1", "u/1"].map(|label| FileJob {
            participant: ParticipantId::new(format!("call.1/{label}")),
            stream_label: label.to_owned(),
            video: None,
        });
        let recorders: Vec<ParticipantRecorder> = jobs
            .iter()
            // The same millisecond, as when a recording starts for everyone at once.
            .map(|job| create_file(&dir, &room, job, 1_796_000_000_000).unwrap())
            .collect();
        let mut paths: Vec<PathBuf> = recorders.iter().map(|r| r.path().to_path_buf()).collect();
        paths.sort();
        paths.dedup();
        assert_eq!(paths.len(), 3, "{paths:?}");
        for path in &paths {
            assert!(path.exists(), "{path:?}");
            assert!(path.to_string_lossy().contains("call_1-u_1-"), "{path:?}");
        }
        // An existing file is never opened again.
        let taken = ParticipantRecorder::create_new(&paths[0], RecorderConfig::default());
        assert!(taken.is_err());
        drop(recorders);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
