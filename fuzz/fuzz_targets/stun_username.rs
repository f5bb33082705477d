//! The SFU's STUN USERNAME reader: the only parsing the media demuxer does on datagrams from
//! unknown sources (everything else is routed by address).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Some(ufrag) = switchboard_sfu::fuzzing::stun_local_ufrag(data) {
        assert!(!ufrag.is_empty() && !ufrag.contains(':'));
        assert!(ufrag.len() < data.len());
    }
});
