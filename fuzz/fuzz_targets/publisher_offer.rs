//! A publisher offer applied by webrtc-rs to a real SFU publisher connection: our reading of
//! its sections must match what rtc negotiated, and the grant/track-limit check must hold on
//! the result (security review finding 1, T3).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| switchboard_sfu::fuzzing::publisher_offer(data));
