//! Access tokens presented at Socket.IO connect (and as `Authorization: Bearer`).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| switchboard_signaling::fuzz_targets::token(data));
