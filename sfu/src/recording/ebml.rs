//! The few EBML primitives a WebM muxer needs: element IDs, variable-length sizes and the
//! encodings of unsigned integers, floats, strings and binary payloads.
//!
//! EBML (RFC 8794) is a binary XML: every element is `ID | size | payload`, where the ID keeps
//! its own length marker and the size is a "VINT" whose leading zero bits give its length.
//! Only writing is needed here; reading back is the job of ffmpeg in the tests (and of the tiny
//! parser in this module's tests, which checks the encodings byte for byte).

/// The largest value a size VINT of 8 bytes can carry (all-ones is reserved for "unknown").
pub const MAX_SIZE: u64 = (1 << 56) - 2;

/// An 8-byte "unknown size" VINT. A master element written with it (our Segment and each
/// Cluster while it is open) extends until the next element that cannot be its child or the
/// end of the file, so a file cut short by a crash is still well-formed up to its last
/// complete block.
pub const UNKNOWN_SIZE_8: [u8; 8] = [0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF];

/// Matroska/WebM element IDs, with their length markers (as they appear in the file).
pub mod id {
    pub const EBML: u32 = 0x1A45_DFA3;
    pub const EBML_VERSION: u32 = 0x4286;
    pub const EBML_READ_VERSION: u32 = 0x42F7;
    pub const EBML_MAX_ID_LENGTH: u32 = 0x42F2;
    pub const EBML_MAX_SIZE_LENGTH: u32 = 0x42F3;
    pub const DOC_TYPE: u32 = 0x4282;
    pub const DOC_TYPE_VERSION: u32 = 0x4287;
    pub const DOC_TYPE_READ_VERSION: u32 = 0x4285;
    pub const VOID: u32 = 0xEC;

    pub const SEGMENT: u32 = 0x1853_8067;
    pub const SEEK_HEAD: u32 = 0x114D_9B74;
    pub const SEEK: u32 = 0x4DBB;
    pub const SEEK_ID: u32 = 0x53AB;
    pub const SEEK_POSITION: u32 = 0x53AC;

    pub const INFO: u32 = 0x1549_A966;
    pub const TIMESTAMP_SCALE: u32 = 0x2A_D7B1;
    pub const DURATION: u32 = 0x4489;
    pub const MUXING_APP: u32 = 0x4D80;
    pub const WRITING_APP: u32 = 0x5741;

    pub const TRACKS: u32 = 0x1654_AE6B;
    pub const TRACK_ENTRY: u32 = 0xAE;
    pub const TRACK_NUMBER: u32 = 0xD7;
    pub const TRACK_UID: u32 = 0x73C5;
    pub const TRACK_TYPE: u32 = 0x83;
    pub const FLAG_LACING: u32 = 0x9C;
    pub const CODEC_ID: u32 = 0x86;
    pub const CODEC_PRIVATE: u32 = 0x63A2;
    pub const CODEC_DELAY: u32 = 0x56AA;
    pub const SEEK_PRE_ROLL: u32 = 0x56BB;
    pub const VIDEO: u32 = 0xE0;
    pub const PIXEL_WIDTH: u32 = 0xB0;
    pub const PIXEL_HEIGHT: u32 = 0xBA;
    pub const AUDIO: u32 = 0xE1;
    pub const SAMPLING_FREQUENCY: u32 = 0xB5;
    pub const CHANNELS: u32 = 0x9F;

    pub const CLUSTER: u32 = 0x1F43_B675;
    pub const TIMESTAMP: u32 = 0xE7;
    pub const SIMPLE_BLOCK: u32 = 0xA3;

    pub const CUES: u32 = 0x1C53_BB6B;
    pub const CUE_POINT: u32 = 0xBB;
    pub const CUE_TIME: u32 = 0xB3;
    pub const CUE_TRACK_POSITIONS: u32 = 0xB7;
    pub const CUE_TRACK: u32 = 0xF7;
    pub const CUE_CLUSTER_POSITION: u32 = 0xF1;
}

/// Appends an element ID. IDs already carry their length marker, so this writes the
/// significant bytes of `id` big-endian.
pub fn put_id(buf: &mut Vec<u8>, id: u32) {
    let bytes = id.to_be_bytes();
    let skip = bytes.iter().take_while(|b| **b == 0).count().min(3);
    buf.extend_from_slice(&bytes[skip..]);
}

/// Appends `size` as the shortest VINT that holds it. Values whose encoding would be all
/// ones at a given length (reserved for "unknown") take the next length.
pub fn put_size(buf: &mut Vec<u8>, size: u64) {
    let size = size.min(MAX_SIZE);
    let mut len = 1;
    while len < 8 && size >= (1u64 << (7 * len)) - 1 {
        len += 1;
    }
    put_size_fixed(buf, size, len);
}

/// Appends `size` as a VINT of exactly `len` bytes (1..=8), used where a size is patched in
/// place later and so must keep its width.
pub fn put_size_fixed(buf: &mut Vec<u8>, size: u64, len: usize) {
    let len = len.clamp(1, 8);
    let marked = size | (1u64 << (7 * len));
    buf.extend_from_slice(&marked.to_be_bytes()[8 - len..]);
}

/// Appends an unsigned-integer element in the fewest bytes (at least one).
pub fn put_uint(buf: &mut Vec<u8>, id: u32, value: u64) {
    let bytes = value.to_be_bytes();
    let skip = bytes.iter().take_while(|b| **b == 0).count().min(7);
    put_id(buf, id);
    put_size(buf, (8 - skip) as u64);
    buf.extend_from_slice(&bytes[skip..]);
}

/// Appends an 8-byte float element.
pub fn put_float(buf: &mut Vec<u8>, id: u32, value: f64) {
    put_id(buf, id);
    put_size(buf, 8);
    buf.extend_from_slice(&value.to_be_bytes());
}

/// Appends a binary (or ASCII/UTF-8 string) element.
pub fn put_bytes(buf: &mut Vec<u8>, id: u32, value: &[u8]) {
    put_id(buf, id);
    put_size(buf, value.len() as u64);
    buf.extend_from_slice(value);
}

/// Appends a master element whose children `fill` writes; the size is known once they are.
pub fn put_master(buf: &mut Vec<u8>, id: u32, fill: impl FnOnce(&mut Vec<u8>)) {
    let mut body = Vec::new();
    fill(&mut body);
    put_bytes(buf, id, &body);
}

/// Appends a Void element of exactly `total` bytes (at least 2), the placeholder that later
/// patches (Duration, SeekHead) overwrite without moving anything after them.
pub fn put_void(buf: &mut Vec<u8>, total: usize) {
    debug_assert!(total >= 2, "a Void element takes at least two bytes");
    let total = total.max(2);
    // One ID byte, then a size VINT: 1 byte up to 126 bytes of payload, 8 bytes beyond.
    let (size_len, payload) = if total - 2 <= 126 {
        (1, total - 2)
    } else {
        (8, total - 9)
    };
    put_id(buf, id::VOID);
    put_size_fixed(buf, payload as u64, size_len);
    buf.resize(buf.len() + payload, 0);
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Reads one VINT: (value with the marker removed, length). `None` on a zero first byte
    /// or a short buffer.
    pub(crate) fn read_vint(data: &[u8]) -> Option<(u64, usize)> {
        let first = *data.first()?;
        let len = first.leading_zeros() as usize + 1;
        if len > 8 || data.len() < len {
            return None;
        }
        let mut value = u64::from(first) & (0xFF >> len);
        for b in &data[1..len] {
            value = (value << 8) | u64::from(*b);
        }
        Some((value, len))
    }

    /// Reads an element ID (marker kept) and its length.
    pub(crate) fn read_id(data: &[u8]) -> Option<(u32, usize)> {
        let len = data.first()?.leading_zeros() as usize + 1;
        if len > 4 || data.len() < len {
            return None;
        }
        Some((
            data[..len]
                .iter()
                .fold(0u32, |a, b| (a << 8) | u32::from(*b)),
            len,
        ))
    }

    #[test]
    fn sizes_use_the_shortest_vint_and_avoid_the_reserved_all_ones() {
        let enc = |v| {
            let mut b = Vec::new();
            put_size(&mut b, v);
            b
        };
        assert_eq!(enc(0), [0x80]);
        assert_eq!(enc(1), [0x81]);
        assert_eq!(enc(126), [0xFE]);
        // 127 in one byte would be 0xFF, which means "unknown".
        assert_eq!(enc(127), [0x40, 0x7F]);
        assert_eq!(enc(16382), [0x7F, 0xFE]);
        assert_eq!(enc(16383), [0x20, 0x3F, 0xFF]);
        for v in [0, 1, 126, 127, 300, 16383, 1 << 20, 1 << 40, MAX_SIZE] {
            let b = enc(v);
            assert_eq!(read_vint(&b), Some((v, b.len())), "value {v}");
        }
    }

    #[test]
    fn fixed_width_sizes_round_trip() {
        let mut b = Vec::new();
        put_size_fixed(&mut b, 5, 8);
        assert_eq!(b, [0x01, 0, 0, 0, 0, 0, 0, 5]);
        assert_eq!(read_vint(&b), Some((5, 8)));
        assert_eq!(read_vint(&UNKNOWN_SIZE_8), Some(((1 << 56) - 1, 8)));
    }

    #[test]
    fn ids_keep_their_marker_bytes() {
        let mut b = Vec::new();
        put_id(&mut b, id::EBML);
        put_id(&mut b, id::TIMESTAMP_SCALE);
        put_id(&mut b, id::SEEK_ID);
        put_id(&mut b, id::SIMPLE_BLOCK);
        assert_eq!(
            b,
            [0x1A, 0x45, 0xDF, 0xA3, 0x2A, 0xD7, 0xB1, 0x53, 0xAB, 0xA3]
        );
        assert_eq!(read_id(&b), Some((id::EBML, 4)));
        assert_eq!(read_id(&b[4..]), Some((id::TIMESTAMP_SCALE, 3)));
    }

    #[test]
    fn uints_floats_and_strings() {
        let mut b = Vec::new();
        put_uint(&mut b, id::TRACK_NUMBER, 0);
        assert_eq!(b, [0xD7, 0x81, 0x00]);
        b.clear();
        put_uint(&mut b, id::TIMESTAMP_SCALE, 1_000_000);
        assert_eq!(b, [0x2A, 0xD7, 0xB1, 0x83, 0x0F, 0x42, 0x40]);
        b.clear();
        put_float(&mut b, id::DURATION, 1.5);
        assert_eq!(&b[..3], [0x44, 0x89, 0x88]);
        assert_eq!(f64::from_be_bytes(b[3..].try_into().unwrap()), 1.5);
        b.clear();
        put_bytes(&mut b, id::DOC_TYPE, b"webm");
        assert_eq!(b, [0x42, 0x82, 0x84, b'w', b'e', b'b', b'm']);
        b.clear();
        put_master(&mut b, id::VIDEO, |v| put_uint(v, id::PIXEL_WIDTH, 320));
        assert_eq!(b, [0xE0, 0x84, 0xB0, 0x82, 0x01, 0x40]);
    }

    #[test]
    fn voids_take_exactly_the_space_asked_for() {
        for total in [2, 3, 11, 128, 129, 130, 200] {
            let mut b = Vec::new();
            put_void(&mut b, total);
            assert_eq!(b.len(), total, "total {total}");
            assert_eq!(read_id(&b), Some((id::VOID, 1)));
            let (size, len) = read_vint(&b[1..]).unwrap();
            assert_eq!(1 + len + size as usize, total);
        }
    }
}
