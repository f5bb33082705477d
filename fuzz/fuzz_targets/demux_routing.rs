//! The media demuxer's route → verify → learn step over a sequence of datagrams from a few
//! sources: an address only ever routes to a connection after a request signed with that
//! connection's ICE password came from it (security review finding 11, T8).
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| switchboard_sfu::fuzzing::demux_routing(data));
