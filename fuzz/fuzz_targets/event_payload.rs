//! Every client→server event payload parser (protocol §3).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    switchboard_signaling::fuzz_targets::event_payload(data)
});
