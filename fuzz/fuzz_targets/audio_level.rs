//! The SFU's RFC 6464 audio-level header-extension parser.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Some((_voice, level)) = switchboard_sfu::speaker::parse_audio_level(data) {
        assert!(level <= 127);
    }
});
