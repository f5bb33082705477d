//! The SDP media-section summary behind publish grants and the tracks limit.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| switchboard_signaling::fuzz_targets::sdp(data));
