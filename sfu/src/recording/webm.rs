//! A minimal WebM (Matroska) muxer laid out so that a crash loses only the tail.
//!
//! Layout: `EBML header | Segment(unknown size) { Void(reserved for SeekHead) | Info |
//! Tracks | Cluster* | Cues }`. Every Cluster is opened with an 8-byte *unknown* size and
//! patched to its real size when it closes; the Segment's size, the Info Duration (a Void
//! until then) and the SeekHead are patched by [`WebmWriter::finish`]. So:
//! - a finished file is fully sized, has a duration and a Cues index (seekable everywhere);
//! - a file cut short at any byte (process killed, power lost) still parses: the Segment and
//!   the open Cluster are unknown-sized, and readers stop at the last complete SimpleBlock.
//!
//! Why not a crate: `webm` wraps libwebm (C++, not pure Rust, and its muxer only produces a
//! readable file after finalisation); `webm-iterable`/`ebml-iterable` are generic tag
//! (de)serialisers that would still leave us to choose every element, plus a spec macro
//! dependency; `matroska-demuxer` only reads; `mkv-element` is young (0.4). A WebM recorder
//! needs about thirty element IDs, and the part that matters (unknown sizes, patch-on-close,
//! the flush policy) is layout, not encoding, so it lives here with its tests.

use super::ebml::{self, id};
use std::io::{self, Seek, SeekFrom, Write};

/// Timestamps are in milliseconds: TimestampScale = 1 ms in nanoseconds.
const TIMESTAMP_SCALE_NS: u64 = 1_000_000;
/// Space kept right after the Segment header for the SeekHead written at finish.
const SEEK_HEAD_RESERVED: usize = 96;
/// A Void the size of a Duration element (2-byte ID, 1-byte size, 8-byte float).
const DURATION_RESERVED: usize = 11;

/// What a track carries, as written into its TrackEntry.
#[derive(Debug, Clone, PartialEq)]
pub enum TrackSpec {
    /// Opus audio at 48 kHz.
    Opus {
        /// Channel count declared in the header and OpusHead.
        channels: u8,
        /// Decoder pre-skip in 48 kHz samples (OpusHead; Matroska's CodecDelay).
        pre_skip: u16,
    },
    /// Video; `codec_id` is a Matroska codec ID such as `V_VP8`.
    Video {
        /// Matroska codec ID: `V_VP8`, `V_VP9`.
        codec_id: &'static str,
        /// Coded width of the first keyframe (players follow in-band changes).
        width: u32,
        /// Coded height of the first keyframe.
        height: u32,
    },
}

impl TrackSpec {
    fn is_video(&self) -> bool {
        matches!(self, TrackSpec::Video { .. })
    }
}

/// The OpusHead structure (RFC 7845 §5.1) that Matroska stores as the Opus CodecPrivate.
pub fn opus_head(channels: u8, pre_skip: u16) -> Vec<u8> {
    let mut head = Vec::with_capacity(19);
    head.extend_from_slice(b"OpusHead");
    head.push(1); // version
    head.push(channels);
    head.extend_from_slice(&pre_skip.to_le_bytes());
    head.extend_from_slice(&48_000u32.to_le_bytes()); // input sample rate (informational)
    head.extend_from_slice(&0u16.to_le_bytes()); // output gain
    head.push(0); // channel mapping family 0: mono or stereo
    head
}

struct OpenCluster {
    /// Absolute file offset of the Cluster's 8-byte size field.
    size_pos: u64,
    /// Absolute file offset of the Cluster's first child.
    data_start: u64,
    timestamp_ms: u64,
    blocks: usize,
}

/// Writes one WebM file incrementally. `W` is a `BufWriter<File>` in production and a
/// `Cursor<Vec<u8>>` in tests.
pub struct WebmWriter<W: Write + Seek> {
    out: W,
    /// Bytes written so far (= the current end of file; tracked to avoid `stream_position`).
    pos: u64,
    segment_size_pos: u64,
    segment_data_start: u64,
    seek_head_pos: u64,
    duration_pos: u64,
    info_pos: u64,
    tracks_pos: u64,
    video_track: Option<u64>,
    cluster: Option<OpenCluster>,
    max_cluster_ms: u64,
    /// (time, track, cluster offset relative to the Segment data): one per cluster.
    cues: Vec<(u64, u64, u64)>,
    end_ms: u64,
}

impl<W: Write + Seek> WebmWriter<W> {
    /// Writes the EBML header, opens the Segment and writes Info and Tracks; track `i` of
    /// `tracks` becomes track number `i + 1`. Clusters hold at most `max_cluster_ms` of media,
    /// which bounds what a crash can lose to about that much.
    pub fn new(mut out: W, tracks: &[TrackSpec], max_cluster_ms: u64) -> io::Result<Self> {
        let mut buf = Vec::with_capacity(512);
        ebml::put_master(&mut buf, id::EBML, |b| {
            ebml::put_uint(b, id::EBML_VERSION, 1);
            ebml::put_uint(b, id::EBML_READ_VERSION, 1);
            ebml::put_uint(b, id::EBML_MAX_ID_LENGTH, 4);
            ebml::put_uint(b, id::EBML_MAX_SIZE_LENGTH, 8);
            ebml::put_bytes(b, id::DOC_TYPE, b"webm");
            ebml::put_uint(b, id::DOC_TYPE_VERSION, 4);
            ebml::put_uint(b, id::DOC_TYPE_READ_VERSION, 2);
        });
        ebml::put_id(&mut buf, id::SEGMENT);
        let segment_size_pos = buf.len() as u64;
        buf.extend_from_slice(&ebml::UNKNOWN_SIZE_8);
        let segment_data_start = buf.len() as u64;

        let seek_head_pos = buf.len() as u64;
        ebml::put_void(&mut buf, SEEK_HEAD_RESERVED);

        let info_pos = buf.len() as u64;
        let mut duration_offset = 0;
        ebml::put_master(&mut buf, id::INFO, |b| {
            ebml::put_uint(b, id::TIMESTAMP_SCALE, TIMESTAMP_SCALE_NS);
            ebml::put_bytes(b, id::MUXING_APP, b"switchboard");
            ebml::put_bytes(b, id::WRITING_APP, b"switchboard-sfu recording");
            duration_offset = b.len();
            ebml::put_void(b, DURATION_RESERVED);
        });
        // Info's header is its 4-byte ID plus a 1-byte size (the body is well under 127 bytes).
        let duration_pos = info_pos + 5 + duration_offset as u64;

        let tracks_pos = buf.len() as u64;
        ebml::put_master(&mut buf, id::TRACKS, |b| {
            for (i, track) in tracks.iter().enumerate() {
                let number = i as u64 + 1;
                ebml::put_master(b, id::TRACK_ENTRY, |t| {
                    ebml::put_uint(t, id::TRACK_NUMBER, number);
                    ebml::put_uint(t, id::TRACK_UID, number);
                    ebml::put_uint(t, id::FLAG_LACING, 0);
                    match track {
                        TrackSpec::Opus { channels, pre_skip } => {
                            ebml::put_uint(t, id::TRACK_TYPE, 2);
                            ebml::put_bytes(t, id::CODEC_ID, b"A_OPUS");
                            ebml::put_bytes(t, id::CODEC_PRIVATE, &opus_head(*channels, *pre_skip));
                            // CodecDelay is the pre-skip in nanoseconds; SeekPreRoll is the
                            // 80 ms Opus needs to converge after a seek (Matroska's advice).
                            let delay_ns = u64::from(*pre_skip) * 1_000_000_000 / 48_000;
                            ebml::put_uint(t, id::CODEC_DELAY, delay_ns);
                            ebml::put_uint(t, id::SEEK_PRE_ROLL, 80_000_000);
                            ebml::put_master(t, id::AUDIO, |a| {
                                ebml::put_float(a, id::SAMPLING_FREQUENCY, 48_000.0);
                                ebml::put_uint(a, id::CHANNELS, u64::from(*channels));
                            });
                        }
                        TrackSpec::Video {
                            codec_id,
                            width,
                            height,
                        } => {
                            ebml::put_uint(t, id::TRACK_TYPE, 1);
                            ebml::put_bytes(t, id::CODEC_ID, codec_id.as_bytes());
                            ebml::put_master(t, id::VIDEO, |v| {
                                ebml::put_uint(v, id::PIXEL_WIDTH, u64::from(*width));
                                ebml::put_uint(v, id::PIXEL_HEIGHT, u64::from(*height));
                            });
                        }
                    }
                });
            }
        });
        out.write_all(&buf)?;
        let video_track = tracks
            .iter()
            .position(TrackSpec::is_video)
            .map(|i| i as u64 + 1);
        Ok(WebmWriter {
            out,
            pos: buf.len() as u64,
            segment_size_pos,
            segment_data_start,
            seek_head_pos,
            duration_pos,
            info_pos,
            tracks_pos,
            video_track,
            cluster: None,
            max_cluster_ms: max_cluster_ms.clamp(1, i16::MAX as u64),
            cues: Vec::new(),
            end_ms: 0,
        })
    }

    /// Bytes written so far.
    pub fn bytes_written(&self) -> u64 {
        self.pos
    }

    /// Appends one frame as a SimpleBlock. `timestamp_ms` must not decrease across calls (the
    /// caller orders frames); a new Cluster starts when the current one would span more than
    /// `max_cluster_ms`, and at every video keyframe so that each Cluster is a seek point.
    /// `duration_ms` only feeds the Duration written at finish.
    pub fn write_frame(
        &mut self,
        track: u64,
        timestamp_ms: u64,
        duration_ms: u64,
        keyframe: bool,
        data: &[u8],
    ) -> io::Result<()> {
        let is_video = Some(track) == self.video_track;
        let new_cluster = match &self.cluster {
            None => true,
            Some(c) => {
                timestamp_ms < c.timestamp_ms
                    || timestamp_ms - c.timestamp_ms >= self.max_cluster_ms
                    || (is_video && keyframe && c.blocks > 0)
            }
        };
        if new_cluster {
            self.open_cluster(timestamp_ms, track)?;
        }
        let cluster = match self.cluster.as_mut() {
            Some(c) => c,
            None => return Err(io::Error::other("no open cluster")),
        };
        // Bounded by max_cluster_ms <= i16::MAX, and timestamps never precede the cluster's.
        let relative = (timestamp_ms.saturating_sub(cluster.timestamp_ms)).min(i16::MAX as u64);
        cluster.blocks += 1;

        let mut head = Vec::with_capacity(16);
        ebml::put_id(&mut head, id::SIMPLE_BLOCK);
        ebml::put_size(&mut head, 4 + data.len() as u64);
        ebml::put_size(&mut head, track); // track number as a VINT (0x81 for track 1)
        head.extend_from_slice(&(relative as i16).to_be_bytes());
        head.push(if keyframe { 0x80 } else { 0x00 });
        self.out.write_all(&head)?;
        self.out.write_all(data)?;
        self.pos += (head.len() + data.len()) as u64;
        self.end_ms = self.end_ms.max(timestamp_ms + duration_ms);
        Ok(())
    }

    fn open_cluster(&mut self, timestamp_ms: u64, track: u64) -> io::Result<()> {
        self.close_cluster()?;
        let cluster_pos = self.pos;
        let mut head = Vec::with_capacity(24);
        ebml::put_id(&mut head, id::CLUSTER);
        let size_pos = cluster_pos + head.len() as u64;
        head.extend_from_slice(&ebml::UNKNOWN_SIZE_8);
        let data_start = cluster_pos + head.len() as u64;
        ebml::put_uint(&mut head, id::TIMESTAMP, timestamp_ms);
        self.out.write_all(&head)?;
        self.pos += head.len() as u64;
        let cue_track = self.video_track.unwrap_or(track);
        self.cues.push((
            timestamp_ms,
            cue_track,
            cluster_pos - self.segment_data_start,
        ));
        self.cluster = Some(OpenCluster {
            size_pos,
            data_start,
            timestamp_ms,
            blocks: 0,
        });
        Ok(())
    }

    /// Closes the open Cluster: patches its size and pushes everything to the OS, so a crash
    /// from here on cannot lose it.
    pub fn close_cluster(&mut self) -> io::Result<()> {
        if let Some(c) = self.cluster.take() {
            self.patch_size(c.size_pos, self.pos - c.data_start)?;
            self.out.flush()?;
        }
        Ok(())
    }

    /// Pushes buffered bytes to the OS without closing the Cluster (used when input pauses).
    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    fn patch_size(&mut self, at: u64, size: u64) -> io::Result<()> {
        let mut b = Vec::with_capacity(8);
        ebml::put_size_fixed(&mut b, size.min(ebml::MAX_SIZE), 8);
        self.patch(at, &b)
    }

    fn patch(&mut self, at: u64, bytes: &[u8]) -> io::Result<()> {
        self.out.seek(SeekFrom::Start(at))?;
        self.out.write_all(bytes)?;
        self.out.seek(SeekFrom::Start(self.pos))?;
        Ok(())
    }

    /// Closes the last Cluster, appends Cues, patches Duration, SeekHead and the Segment size,
    /// and returns the writer (flushed) with the media duration in milliseconds.
    pub fn finish(mut self) -> io::Result<(W, u64)> {
        self.close_cluster()?;

        let cues_pos = self.pos;
        if !self.cues.is_empty() {
            let mut buf = Vec::new();
            ebml::put_master(&mut buf, id::CUES, |b| {
                for (time, track, position) in &self.cues {
                    ebml::put_master(b, id::CUE_POINT, |p| {
                        ebml::put_uint(p, id::CUE_TIME, *time);
                        ebml::put_master(p, id::CUE_TRACK_POSITIONS, |t| {
                            ebml::put_uint(t, id::CUE_TRACK, *track);
                            ebml::put_uint(t, id::CUE_CLUSTER_POSITION, *position);
                        });
                    });
                }
            });
            self.out.write_all(&buf)?;
            self.pos += buf.len() as u64;
        }

        let mut duration = Vec::with_capacity(DURATION_RESERVED);
        ebml::put_float(&mut duration, id::DURATION, self.end_ms as f64);
        self.patch(self.duration_pos, &duration)?;

        let rel = |p: u64| p - self.segment_data_start;
        let mut seek_head = Vec::with_capacity(SEEK_HEAD_RESERVED);
        ebml::put_master(&mut seek_head, id::SEEK_HEAD, |b| {
            let mut entries = vec![
                (id::INFO, rel(self.info_pos)),
                (id::TRACKS, rel(self.tracks_pos)),
            ];
            if !self.cues.is_empty() {
                entries.push((id::CUES, rel(cues_pos)));
            }
            for (target, position) in entries {
                ebml::put_master(b, id::SEEK, |s| {
                    let mut target_id = Vec::new();
                    ebml::put_id(&mut target_id, target);
                    ebml::put_bytes(s, id::SEEK_ID, &target_id);
                    ebml::put_uint(s, id::SEEK_POSITION, position);
                });
            }
        });
        // At most 3 entries of at most 20 bytes plus a 5-byte header: always fits, leaving
        // room for the Void that pads the rest of the reservation.
        if seek_head.len() + 2 <= SEEK_HEAD_RESERVED {
            let rest = SEEK_HEAD_RESERVED - seek_head.len();
            ebml::put_void(&mut seek_head, rest);
            self.patch(self.seek_head_pos, &seek_head)?;
        }

        self.patch_size(self.segment_size_pos, self.pos - self.segment_data_start)?;
        self.out.flush()?;
        Ok((self.out, self.end_ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recording::ebml::tests::{read_id, read_vint};
    use std::io::Cursor;

    /// Walks a buffer of sibling elements: (id, payload range, header length).
    fn children(data: &[u8]) -> Vec<(u32, std::ops::Range<usize>)> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < data.len() {
            let (eid, il) = read_id(&data[i..]).expect("id");
            let (size, sl) = read_vint(&data[i + il..]).expect("size");
            let start = i + il + sl;
            let end = (start + size as usize).min(data.len());
            out.push((eid, start..end));
            i = end;
        }
        out
    }

    fn tracks() -> Vec<TrackSpec> {
        vec![
            TrackSpec::Opus {
                channels: 2,
                pre_skip: 312,
            },
            TrackSpec::Video {
                codec_id: "V_VP8",
                width: 320,
                height: 240,
            },
        ]
    }

    #[test]
    fn finished_file_is_fully_sized_and_indexed() {
        let mut w = WebmWriter::new(Cursor::new(Vec::new()), &tracks(), 1000).unwrap();
        w.write_frame(2, 0, 33, true, &[0x10, 0x02, 0x00]).unwrap();
        w.write_frame(1, 0, 20, true, &[0xFC, 0xFF]).unwrap();
        w.write_frame(1, 20, 20, true, &[0xFC, 0xFF]).unwrap();
        w.write_frame(2, 1500, 33, false, &[0x11]).unwrap(); // > 1 s: new cluster
        w.write_frame(2, 1533, 33, true, &[0x10]).unwrap(); // keyframe: new cluster
        let (out, end) = w.finish().unwrap();
        assert_eq!(end, 1566);
        let data = out.into_inner();

        let top = children(&data);
        assert_eq!(top.len(), 2);
        assert_eq!(top[0].0, id::EBML);
        assert_eq!(top[1].0, id::SEGMENT);
        assert_eq!(top[1].1.end, data.len(), "segment size was patched");
        let seg = &data[top[1].1.clone()];
        let ids: Vec<u32> = children(seg).iter().map(|c| c.0).collect();
        assert_eq!(
            ids,
            [
                id::SEEK_HEAD,
                id::VOID,
                id::INFO,
                id::TRACKS,
                id::CLUSTER,
                id::CLUSTER,
                id::CLUSTER,
                id::CUES
            ]
        );
        // Duration patched in Info.
        let info = children(seg).into_iter().find(|c| c.0 == id::INFO).unwrap();
        let info_body = &seg[info.1];
        let dur = children(info_body)
            .into_iter()
            .find(|c| c.0 == id::DURATION)
            .expect("duration");
        let ms = f64::from_be_bytes(info_body[dur.1].try_into().unwrap());
        assert_eq!(ms, 1566.0);
        // Cluster 1 holds the three blocks at 0/0/20 ms; the second block is track 1.
        let cluster = children(seg)
            .into_iter()
            .find(|c| c.0 == id::CLUSTER)
            .unwrap();
        let cluster_body = &seg[cluster.1];
        let blocks = children(cluster_body);
        assert_eq!(blocks[0].0, id::TIMESTAMP);
        assert_eq!(blocks.len(), 4);
        let b2 = &cluster_body[blocks[3].1.clone()];
        assert_eq!(b2[0], 0x81); // track 1
        assert_eq!(i16::from_be_bytes([b2[1], b2[2]]), 20);
        assert_eq!(b2[3], 0x80); // keyframe flag
    }

    #[test]
    fn unfinished_file_parses_up_to_the_last_block() {
        let mut w = WebmWriter::new(Cursor::new(Vec::new()), &tracks(), 1000).unwrap();
        w.write_frame(2, 0, 33, true, &[0x10; 50]).unwrap();
        w.write_frame(2, 1200, 33, true, &[0x10; 50]).unwrap();
        w.flush().unwrap();
        // Simulate a crash: take the bytes as they are, without finish().
        let data = w.out.get_ref().clone();
        let top = children(&data);
        assert_eq!(top[1].0, id::SEGMENT);
        let seg = &data[top[1].1.clone()];
        let clusters: Vec<_> = children(seg)
            .into_iter()
            .filter(|c| c.0 == id::CLUSTER)
            .collect();
        // The first cluster was closed (sized); the second is still unknown-sized and runs to
        // the end of the file.
        assert_eq!(clusters.len(), 2);
        assert_eq!(children(&seg[clusters[0].1.clone()]).len(), 2);
        assert_eq!(clusters[1].1.end, seg.len());
    }

    #[test]
    fn opus_head_is_19_bytes_little_endian() {
        let h = opus_head(2, 312);
        assert_eq!(h.len(), 19);
        assert_eq!(&h[..8], b"OpusHead");
        assert_eq!(h[9], 2);
        assert_eq!(u16::from_le_bytes([h[10], h[11]]), 312);
    }
}
