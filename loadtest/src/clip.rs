//! The real encoded media publishers send: a short VP8 clip (IVF) and a short Opus clip (Ogg),
//! made once with ffmpeg from its test sources (`media/README.md` has the commands) and
//! compiled into the binary. They are parsed once per process with webrtc-rs's own readers
//! (`rtc::media::io`), then looped by the publishers with continuous RTP timestamps.

use std::io::Cursor;
use std::sync::OnceLock;
use std::time::Duration;

use bytes::Bytes;
use rtc::media::io::ivf_reader::IVFReader;
use rtc::media::io::ogg_reader::OggReader;

use crate::media::MediaKind;

const VP8_IVF: &[u8] = include_bytes!("../media/clip.ivf");
const OPUS_OGG: &[u8] = include_bytes!("../media/clip.ogg");

/// One encoded frame of a clip.
#[derive(Clone, Debug)]
pub struct ClipFrame {
    /// The encoded frame (a whole VP8 frame, or one Opus packet).
    pub data: Bytes,
    /// VP8 keyframe (always `true` for Opus: any packet can start decoding).
    pub keyframe: bool,
}

/// A looped clip: frames at a fixed rate.
#[derive(Debug)]
pub struct Clip {
    /// Audio or video.
    pub kind: MediaKind,
    /// The frames, in order.
    pub frames: Vec<ClipFrame>,
    /// Time between frames.
    pub frame_duration: Duration,
    /// RTP clock ticks between frames.
    pub ticks_per_frame: u32,
}

impl Clip {
    /// The VP8 clip (30 fps, keyframes every 12 frames).
    pub fn vp8() -> &'static Clip {
        static CLIP: OnceLock<Clip> = OnceLock::new();
        CLIP.get_or_init(|| parse_ivf(VP8_IVF).expect("the committed VP8 clip parses"))
    }

    /// The Opus clip (20 ms frames).
    pub fn opus() -> &'static Clip {
        static CLIP: OnceLock<Clip> = OnceLock::new();
        CLIP.get_or_init(|| parse_ogg(OPUS_OGG).expect("the committed Opus clip parses"))
    }

    /// The clip for `kind`.
    pub fn for_kind(kind: MediaKind) -> &'static Clip {
        match kind {
            MediaKind::Audio => Self::opus(),
            MediaKind::Video => Self::vp8(),
        }
    }

    /// Index of the first keyframe at or after `from`, wrapping to the start of the clip.
    pub fn next_keyframe(&self, from: usize) -> usize {
        let n = self.frames.len();
        (0..n)
            .map(|i| (from + i) % n)
            .find(|&i| self.frames[i].keyframe)
            .unwrap_or(0)
    }

    /// Average bitrate of the clip's payloads, bits per second.
    pub fn bitrate(&self) -> f64 {
        let bytes: usize = self.frames.iter().map(|f| f.data.len()).sum();
        bytes as f64 * 8.0 / (self.frames.len() as f64 * self.frame_duration.as_secs_f64())
    }
}

fn parse_ivf(data: &[u8]) -> Result<Clip, String> {
    let (mut reader, header) = IVFReader::new(Cursor::new(data)).map_err(|e| e.to_string())?;
    if &header.four_cc != b"VP80" {
        return Err(format!("not VP8: {:?}", header.four_cc));
    }
    let mut frames = Vec::new();
    while let Ok((frame, _)) = reader.parse_next_frame() {
        // VP8 frame tag, bit 0 of the first byte: 0 = keyframe (RFC 6386 §9.1).
        let keyframe = frame.first().is_some_and(|b| b & 1 == 0);
        frames.push(ClipFrame {
            data: frame.freeze(),
            keyframe,
        });
    }
    if frames.is_empty() || !frames[0].keyframe {
        return Err("VP8 clip must start with a keyframe".into());
    }
    // IVF timebase is denominator/numerator frames per second (30/1 here).
    let fps = f64::from(header.timebase_denominator) / f64::from(header.timebase_numerator.max(1));
    Ok(Clip {
        kind: MediaKind::Video,
        frames,
        frame_duration: Duration::from_secs_f64(1.0 / fps),
        ticks_per_frame: (90_000.0 / fps).round() as u32,
    })
}

fn parse_ogg(data: &[u8]) -> Result<Clip, String> {
    let (mut reader, _head) = OggReader::new(Cursor::new(data), true).map_err(|e| e.to_string())?;
    let mut frames = Vec::new();
    while let Ok((page, _)) = reader.parse_next_page() {
        // Skip OpusTags; every other page holds exactly one 20 ms Opus packet (made with
        // `-page_duration 20000`).
        if page.starts_with(b"OpusTags") || page.is_empty() {
            continue;
        }
        frames.push(ClipFrame {
            data: page.freeze(),
            keyframe: true,
        });
    }
    if frames.is_empty() {
        return Err("Opus clip has no packets".into());
    }
    Ok(Clip {
        kind: MediaKind::Audio,
        frames,
        frame_duration: Duration::from_millis(20),
        ticks_per_frame: 960,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clips_parse_with_expected_shape() {
        let video = Clip::vp8();
        assert_eq!(video.frames.len(), 36);
        assert_eq!(video.ticks_per_frame, 3_000);
        let keyframes: Vec<usize> = (0..36).filter(|&i| video.frames[i].keyframe).collect();
        assert_eq!(keyframes, vec![0, 12, 24]);
        assert_eq!(video.next_keyframe(5), 12);
        assert_eq!(video.next_keyframe(30), 0);
        assert!(
            (1.2e6..2.0e6).contains(&video.bitrate()),
            "{}",
            video.bitrate()
        );

        let audio = Clip::opus();
        assert!(
            (95..=101).contains(&audio.frames.len()),
            "{}",
            audio.frames.len()
        );
        // Opus TOC byte of a 20 ms CELT/hybrid/SILK frame: config is the top 5 bits.
        assert!(audio.frames.iter().all(|f| !f.data.is_empty()));
    }
}
