//! Active-speaker detection from the RFC 6464 audio-level RTP header extension: no audio is
//! decoded. Each publisher's browser writes the level of every audio packet into the
//! extension; this module smooths those levels per participant and picks a dominant speaker
//! with hysteresis, reporting it only when it changes. The algorithm and its constants are
//! explained in `docs/quality.md`.
//!
//! Pure and synchronous: callers pass the arrival `Instant` of each level and the current time
//! to [`ActiveSpeakerDetector::tick`]. A participant's state is allocated when it is first seen
//! (or [`added`](ActiveSpeakerDetector::add)); observing a level never allocates.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// Parses the payload of an RFC 6464 client-to-mixer audio-level extension: one byte, the V
/// (voice activity) bit then the level as 0..=127 −dBov (0 is the loudest, 127 silence).
///
/// Returns `None` for an empty payload, or a longer one whose extra bytes are not all zero
/// (the two-byte header form may be zero-padded; anything else is not this extension). Never
/// panics.
pub fn parse_audio_level(ext_payload: &[u8]) -> Option<(bool, u8)> {
    let (&first, padding) = ext_payload.split_first()?;
    if padding.iter().any(|&b| b != 0) {
        return None;
    }
    Some((first & 0x80 != 0, first & 0x7f))
}

/// Tuning of [`ActiveSpeakerDetector`]; the defaults are what `docs/quality.md` justifies.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SpeakerConfig {
    /// A level at or louder than this (in −dBov: at most this number) is speech. Default 50
    /// (−50 dBov): above a quiet room's noise floor with browser noise suppression, below
    /// normal speech (−20 to −40 dBov).
    pub speech_threshold_dbov: u8,
    /// Time constant of the exponential moving averages of activity and loudness. Default
    /// 400 ms: continuous speech is recognised after ~280 ms (`τ·ln 2`), a 150 ms cough never.
    pub smoothing: Duration,
    /// How long a challenger must be speaking louder than the dominant speaker (or while the
    /// dominant is quiet) before taking over. Default 500 ms.
    pub switch_after: Duration,
    /// Once the dominant speaker has produced no speech for this long, the floor is open: the
    /// next participant recognised as speaking takes over at once. Default 1 s.
    pub silence_release: Duration,
    /// Audio packets arrive every 10–60 ms; a longer gap (DTX, a stopped track, loss) counts
    /// as silence beyond this much. Default 100 ms.
    pub max_sample_gap: Duration,
}

impl Default for SpeakerConfig {
    fn default() -> Self {
        SpeakerConfig {
            speech_threshold_dbov: 50,
            smoothing: Duration::from_millis(400),
            switch_after: Duration::from_millis(500),
            silence_release: Duration::from_secs(1),
            max_sample_gap: Duration::from_millis(100),
        }
    }
}

/// A participant is speaking while the smoothed share of speech samples is at least this.
const SPEAKING_ACTIVITY: f32 = 0.5;
/// The weight of a participant's first sample, and of the first one after a gap: one 20 ms
/// packet.
const FIRST_SAMPLE: Duration = Duration::from_millis(20);

/// One participant's smoothed audio.
#[derive(Debug, Clone, Copy)]
struct Voice {
    /// EMA of 1.0 for a speech sample, 0.0 otherwise.
    activity: f32,
    /// EMA of the linear power (10^(−level/10)) of speech samples; non-speech samples count 0.
    loudness: f32,
    last_sample: Option<Instant>,
    last_speech: Option<Instant>,
}

/// Smoothed state of one participant at one instant.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Smoothed {
    activity: f32,
    loudness: f32,
}

impl Smoothed {
    fn speaking(self) -> bool {
        self.activity >= SPEAKING_ACTIVITY
    }
}

impl Voice {
    const NEW: Voice = Voice {
        activity: 0.0,
        loudness: 0.0,
        last_sample: None,
        last_speech: None,
    };

    /// The state at `now`, treating time past `max_sample_gap` since the last sample as
    /// silence.
    fn at(&self, now: Instant, config: &SpeakerConfig) -> Smoothed {
        let decay = match self.last_sample {
            Some(last) => {
                let silent = now
                    .saturating_duration_since(last)
                    .saturating_sub(config.max_sample_gap);
                decay(silent, config.smoothing)
            }
            None => 1.0,
        };
        Smoothed {
            activity: self.activity * decay,
            loudness: self.loudness * decay,
        }
    }
}

/// `exp(−t/τ)`: how much of a moving average survives `t`.
fn decay(t: Duration, tau: Duration) -> f32 {
    if t.is_zero() {
        1.0
    } else if tau.is_zero() {
        0.0
    } else {
        (-(t.as_secs_f32() / tau.as_secs_f32())).exp()
    }
}

/// Picks the dominant speaker of one room from its participants' audio levels.
///
/// Feed every audio level with [`observe`](Self::observe) and call [`tick`](Self::tick)
/// periodically (every 50–200 ms; the hold time is measured in ticks). Silence keeps the last
/// dominant speaker: layouts keep showing whoever spoke last, and `tick` reports only a new
/// speaker. Use [`is_speaking`](Self::is_speaking) for "talking right now" indicators.
#[derive(Debug, Clone)]
pub struct ActiveSpeakerDetector<K> {
    config: SpeakerConfig,
    voices: HashMap<K, Voice>,
    dominant: Option<K>,
    /// The participant currently out-speaking the dominant one, and since when.
    challenger: Option<(K, Instant)>,
}

impl<K: Clone + Eq + Hash> ActiveSpeakerDetector<K> {
    pub fn new(config: SpeakerConfig) -> Self {
        Self::with_capacity(config, 0)
    }

    /// Room for `participants` without reallocating.
    pub fn with_capacity(config: SpeakerConfig, participants: usize) -> Self {
        ActiveSpeakerDetector {
            config,
            voices: HashMap::with_capacity(participants),
            dominant: None,
            challenger: None,
        }
    }

    pub fn config(&self) -> &SpeakerConfig {
        &self.config
    }

    /// Registers a participant ahead of its first level (allocating its state now rather than
    /// on the first packet). Does nothing if it is known.
    pub fn add(&mut self, participant: K) {
        self.voices.entry(participant).or_insert(Voice::NEW);
    }

    /// Forgets a participant. If it was the dominant speaker there is none until the next
    /// [`tick`](Self::tick) finds someone speaking (the caller knows who left).
    pub fn remove(&mut self, participant: &K) {
        self.voices.remove(participant);
        if self.dominant.as_ref() == Some(participant) {
            self.dominant = None;
        }
        if self
            .challenger
            .as_ref()
            .is_some_and(|(c, _)| c == participant)
        {
            self.challenger = None;
        }
    }

    /// Number of participants tracked.
    pub fn len(&self) -> usize {
        self.voices.len()
    }

    pub fn is_empty(&self) -> bool {
        self.voices.is_empty()
    }

    /// The current dominant speaker.
    pub fn dominant(&self) -> Option<&K> {
        self.dominant.as_ref()
    }

    /// Whether `participant` is speaking at `now` (smoothed).
    pub fn is_speaking(&self, participant: &K, now: Instant) -> bool {
        self.voices
            .get(participant)
            .is_some_and(|v| v.at(now, &self.config).speaking())
    }

    /// Records one audio level (from [`parse_audio_level`]) that arrived at `at`. Levels above
    /// 127 are treated as 127 (silence). A level older than the participant's last one only
    /// moves nothing. Allocates only the first time a participant is seen.
    pub fn observe(&mut self, participant: K, level_dbov: u8, at: Instant) {
        let config = self.config;
        // `get_mut` first: `entry` may reserve even for a key that exists.
        let voice = match self.voices.get_mut(&participant) {
            Some(voice) => voice,
            None => self.voices.entry(participant).or_insert(Voice::NEW),
        };
        let level = level_dbov.min(127);
        let speech = level <= config.speech_threshold_dbov;

        let elapsed = match voice.last_sample {
            Some(last) => at.saturating_duration_since(last),
            None => FIRST_SAMPLE,
        };
        // A sample stands for the time since the previous one, up to max_sample_gap. After a
        // longer gap (DTX, a stopped track) it stands for one packet and the rest was silence.
        let weight = if elapsed > config.max_sample_gap {
            FIRST_SAMPLE
        } else {
            elapsed
        };
        let silent = decay(elapsed - weight, config.smoothing);
        let held = 1.0 - decay(weight, config.smoothing);
        let (activity, power) = if speech {
            (1.0, 10f32.powf(-f32::from(level) / 10.0))
        } else {
            (0.0, 0.0)
        };
        voice.activity *= silent;
        voice.activity += held * (activity - voice.activity);
        voice.loudness *= silent;
        voice.loudness += held * (power - voice.loudness);

        if voice.last_sample.is_none_or(|last| at > last) {
            voice.last_sample = Some(at);
        }
        if speech && voice.last_speech.is_none_or(|last| at > last) {
            voice.last_speech = Some(at);
        }
    }

    /// Re-evaluates the dominant speaker at `now`. Returns the new dominant speaker when it
    /// changed, `None` otherwise (including when everyone is silent: the last one stays).
    ///
    /// - With no dominant speaker, or one that has not spoken for `silence_release`, the
    ///   loudest participant currently speaking takes over at once.
    /// - Otherwise the loudest speaking participant that is louder than the dominant one (or
    ///   speaking while it is not) must stay so for `switch_after` to take over.
    pub fn tick(&mut self, now: Instant) -> Option<K> {
        let config = self.config;
        let mut loudest: Option<(&K, Smoothed)> = None;
        for (participant, voice) in &self.voices {
            let smoothed = voice.at(now, &config);
            if smoothed.speaking() && loudest.is_none_or(|(_, l)| smoothed.loudness > l.loudness) {
                loudest = Some((participant, smoothed));
            }
        }
        let Some((loudest, loudest_state)) = loudest else {
            self.challenger = None;
            return None;
        };

        let current = self
            .dominant
            .as_ref()
            .and_then(|d| self.voices.get(d).map(|v| (d, v)));
        let Some((dominant, dominant_voice)) = current else {
            self.dominant = Some(loudest.clone());
            self.challenger = None;
            return self.dominant.clone();
        };
        if dominant == loudest {
            self.challenger = None;
            return None;
        }
        let dominant_state = dominant_voice.at(now, &config);
        let floor_open = !dominant_state.speaking()
            && dominant_voice
                .last_speech
                .is_none_or(|t| now.saturating_duration_since(t) >= config.silence_release);
        let louder = !dominant_state.speaking() || loudest_state.loudness > dominant_state.loudness;
        if !louder {
            self.challenger = None;
            return None;
        }
        let since = match &self.challenger {
            Some((c, since)) if c == loudest => *since,
            _ => now,
        };
        if floor_open || now.saturating_duration_since(since) >= config.switch_after {
            self.dominant = Some(loudest.clone());
            self.challenger = None;
            self.dominant.clone()
        } else {
            self.challenger = Some((loudest.clone(), since));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PTIME: Duration = Duration::from_millis(20);
    const TICK: Duration = Duration::from_millis(50);
    const SILENCE: u8 = 127;

    /// A simulated room on simulated time: levels every 20 ms, ticks every 50 ms.
    struct Room {
        detector: ActiveSpeakerDetector<u32>,
        t0: Instant,
        now: Duration,
        changes: Vec<(Duration, u32)>,
    }

    impl Room {
        fn new() -> Self {
            Room {
                detector: ActiveSpeakerDetector::with_capacity(SpeakerConfig::default(), 4),
                t0: Instant::now(),
                now: Duration::ZERO,
                changes: Vec::new(),
            }
        }

        /// Runs for `duration`; `level(participant, t)` gives each of participants 1..=3's
        /// level at `t` (None: no packet).
        fn run(&mut self, duration: Duration, level: impl Fn(u32, Duration) -> Option<u8>) {
            let end = self.now + duration;
            while self.now < end {
                self.now += PTIME;
                let at = self.t0 + self.now;
                for participant in 1..=3 {
                    if let Some(l) = level(participant, self.now) {
                        self.detector.observe(participant, l, at);
                    }
                }
                if self.now.as_millis() % TICK.as_millis() < PTIME.as_millis() {
                    if let Some(d) = self.detector.tick(at) {
                        self.changes.push((self.now, d));
                    }
                }
            }
        }

        fn at(&self) -> Instant {
            self.t0 + self.now
        }
    }

    fn only(speaker: u32, level: u8) -> impl Fn(u32, Duration) -> Option<u8> {
        move |p, _| Some(if p == speaker { level } else { SILENCE })
    }

    #[test]
    fn parse_rfc6464() {
        assert_eq!(parse_audio_level(&[0x80 | 30]), Some((true, 30)));
        assert_eq!(parse_audio_level(&[30]), Some((false, 30)));
        assert_eq!(parse_audio_level(&[0xff]), Some((true, 127)));
        assert_eq!(parse_audio_level(&[0x7f]), Some((false, 127)));
        // Two-byte header form, zero-padded.
        assert_eq!(parse_audio_level(&[0x85, 0, 0, 0]), Some((true, 5)));
    }

    #[test]
    fn garbage_extension_payloads() {
        assert_eq!(parse_audio_level(&[]), None);
        assert_eq!(parse_audio_level(&[0x85, 1]), None);
        assert_eq!(parse_audio_level(&[0x85, 0, 0, 0xff]), None);
        for b in 0..=255u8 {
            let (_, level) = parse_audio_level(&[b]).unwrap();
            assert!(level <= 127);
            for c in 0..=255u8 {
                assert_eq!(parse_audio_level(&[b, c]).is_some(), c == 0);
            }
        }
        // Pseudo-random payloads of every length up to 300: never panics.
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut buf = [0u8; 300];
        for round in 0..2000 {
            for byte in buf.iter_mut() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *byte = x as u8;
            }
            let len = round % buf.len();
            let _ = parse_audio_level(&buf[..len]);
        }
    }

    #[test]
    fn first_speaker_takes_the_floor_after_smoothing() {
        let mut room = Room::new();
        room.run(Duration::from_secs(1), |_, _| Some(SILENCE));
        assert!(room.changes.is_empty());
        room.run(Duration::from_secs(2), only(1, 30));
        assert_eq!(room.changes.len(), 1);
        let (at, who) = room.changes[0];
        assert_eq!(who, 1);
        // Recognised ~τ·ln2 = 277 ms after speech starts at 1 s, not before 200 ms.
        assert!(
            at >= Duration::from_millis(1200) && at <= Duration::from_millis(1400),
            "{at:?}"
        );
        assert_eq!(room.detector.dominant(), Some(&1));
        assert!(room.detector.is_speaking(&1, room.at()));
        assert!(!room.detector.is_speaking(&2, room.at()));
    }

    #[test]
    fn louder_challenger_takes_over_only_after_the_hold_time() {
        let mut room = Room::new();
        room.run(Duration::from_secs(2), only(1, 35));
        assert_eq!(room.detector.dominant(), Some(&1));
        room.changes.clear();
        // From t = 2 s participant 2 talks louder while 1 goes on.
        room.run(Duration::from_secs(3), |p, _| match p {
            1 => Some(35),
            2 => Some(20),
            _ => Some(SILENCE),
        });
        assert_eq!(room.changes.len(), 1, "{:?}", room.changes);
        let (at, who) = room.changes[0];
        assert_eq!(who, 2);
        // Speaking after ~280 ms, then louder for 500 ms.
        assert!(
            at >= Duration::from_millis(2700) && at <= Duration::from_millis(2900),
            "{at:?}"
        );
    }

    #[test]
    fn quieter_participant_never_takes_over_from_a_speaker() {
        let mut room = Room::new();
        room.run(Duration::from_secs(5), |p, _| match p {
            1 => Some(20),
            2 => Some(40),
            _ => Some(SILENCE),
        });
        assert_eq!(room.changes, vec![(room.changes[0].0, 1)]);
    }

    #[test]
    fn brief_noise_does_not_switch() {
        let mut room = Room::new();
        room.run(Duration::from_secs(2), only(1, 35));
        room.changes.clear();
        // Loud 150 ms and 400 ms bursts from participant 2 while 1 talks on, and later a 400 ms
        // burst while nobody talks but 1 spoke recently.
        let burst = |start: u64, length: u64| {
            move |t: Duration| (start..start + length).contains(&(t.as_millis() as u64))
        };
        let short = burst(2500, 150);
        let long = burst(3500, 400);
        room.run(Duration::from_secs(3), |p, t| match p {
            1 => Some(35),
            2 if short(t) || long(t) => Some(5),
            _ => Some(SILENCE),
        });
        assert!(room.changes.is_empty(), "{:?}", room.changes);
        let quiet_burst = burst(5300, 400);
        room.run(Duration::from_secs(2), |p, t| match p {
            2 if quiet_burst(t) => Some(5),
            _ => Some(SILENCE),
        });
        assert!(room.changes.is_empty(), "{:?}", room.changes);
        assert_eq!(room.detector.dominant(), Some(&1));
    }

    #[test]
    fn silence_keeps_the_last_speaker_then_the_next_takes_over_at_once() {
        let mut room = Room::new();
        room.run(Duration::from_secs(2), only(1, 30));
        room.changes.clear();
        // Two seconds of silence, with DTX (no packets at all).
        room.run(Duration::from_secs(2), |_, _| None);
        assert!(room.changes.is_empty());
        assert_eq!(room.detector.dominant(), Some(&1));
        assert!(!room.detector.is_speaking(&1, room.at()));
        // Participant 2 (quieter than 1 was) speaks: no hold, the floor was open.
        room.run(Duration::from_secs(1), only(2, 45));
        assert_eq!(room.changes.len(), 1);
        let (at, who) = room.changes[0];
        assert_eq!(who, 2);
        // Recognised as speaking after ~280 ms, and no hold.
        assert!(
            at >= Duration::from_millis(4250) && at <= Duration::from_millis(4350),
            "{at:?}"
        );
    }

    #[test]
    fn reply_after_a_short_pause_waits_for_the_hold() {
        let mut room = Room::new();
        room.run(Duration::from_secs(2), only(1, 30));
        room.changes.clear();
        // 1 stops; 2 answers 300 ms later, so 1 spoke less than silence_release ago.
        room.run(Duration::from_millis(300), |_, _| Some(SILENCE));
        room.run(Duration::from_secs(2), only(2, 30));
        assert_eq!(room.changes.len(), 1);
        let (at, who) = room.changes[0];
        assert_eq!(who, 2);
        // 2 is speaking at ~2.58 s; then either the hold (500 ms) or the floor opening at 3 s.
        assert!(
            at >= Duration::from_millis(2950) && at <= Duration::from_millis(3200),
            "{at:?}"
        );
    }

    #[test]
    fn removing_the_dominant_speaker() {
        let mut room = Room::new();
        room.run(Duration::from_secs(2), |p, _| match p {
            1 => Some(20),
            2 => Some(30),
            _ => Some(SILENCE),
        });
        assert_eq!(room.detector.dominant(), Some(&1));
        room.detector.remove(&1);
        assert_eq!(room.detector.dominant(), None);
        assert_eq!(room.detector.len(), 2);
        room.changes.clear();
        room.run(Duration::from_millis(100), |p, _| (p == 2).then_some(30));
        // At the first tick after the removal: 2 was already speaking.
        assert_eq!(room.changes, vec![(Duration::from_millis(2060), 2)]);
        room.detector.remove(&7);
        assert_eq!(room.detector.len(), 2);
    }

    #[test]
    fn threshold_and_out_of_range_levels() {
        let mut d = ActiveSpeakerDetector::new(SpeakerConfig::default());
        let t0 = Instant::now();
        for i in 0..100u32 {
            // Just below the −50 dBov threshold: not speech.
            d.observe(1u8, 51, t0 + PTIME * i);
            d.observe(2u8, 200, t0 + PTIME * i);
        }
        assert_eq!(d.tick(t0 + PTIME * 100), None);
        for i in 100..200u32 {
            d.observe(1u8, 50, t0 + PTIME * i);
        }
        assert_eq!(d.tick(t0 + PTIME * 200), Some(1));
        assert!(!d.is_speaking(&2, t0 + PTIME * 200));
    }

    #[test]
    fn stale_and_reordered_samples() {
        let mut d = ActiveSpeakerDetector::new(SpeakerConfig::default());
        let t0 = Instant::now() + Duration::from_secs(10);
        for i in 0..50u32 {
            d.observe(1u8, 20, t0 + PTIME * i);
        }
        let end = t0 + PTIME * 50;
        assert!(d.is_speaking(&1, end));
        // An old sample moves nothing in time and does not panic.
        d.observe(1u8, 20, t0 - Duration::from_secs(5));
        assert!(d.is_speaking(&1, end));
        // A stopped stream decays into silence on its own.
        assert!(!d.is_speaking(&1, end + Duration::from_secs(1)));
        assert!(!d.is_speaking(&9, end));
        // Tick at a time before the samples: no panic.
        let _ = d.tick(t0 - Duration::from_secs(1));
    }

    #[test]
    fn observing_does_not_allocate_after_the_first_sample() {
        let mut d = ActiveSpeakerDetector::with_capacity(SpeakerConfig::default(), 3);
        let capacity = d.voices.capacity();
        let t0 = Instant::now();
        d.add(1u16);
        d.add(2u16);
        d.add(3u16);
        for i in 0..1000u32 {
            for p in 1..=3u16 {
                d.observe(p, (i % 128) as u8, t0 + PTIME * i);
            }
            let _ = d.tick(t0 + PTIME * i);
        }
        assert_eq!(d.voices.capacity(), capacity);
        assert_eq!(d.len(), 3);
    }
}
