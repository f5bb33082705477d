//! Per-subscription RTP rewriting: the state that turns a publisher's packet into the packet
//! one subscriber receives.
//!
//! Each subscription has its own SSRC and the payload type negotiated on the subscriber's
//! connection, and sends no header extensions (their ids are negotiated per connection, so the
//! publisher's ids would mean something else, or nothing, downstream). Timestamps pass through.
//!
//! Sequence numbers are renumbered per subscription: a small gap (real loss, up to
//! [`MAX_GAP`]) passes through so the subscriber's NACK/jitter logic sees it, and so do late
//! (reordered) packets; a larger jump forward or backward (a publisher restart, or a hostile
//! publisher advancing 32,766 per packet) is absorbed into the offset, so the subscriber sees
//! the next number. Without that, every jump costs the subscriber's NACK generator and
//! receiver-report logic one iteration per skipped number and makes browsers NACK a storm of
//! packets that never existed (security review, finding 3).

use rtc::rtp;

/// The largest forward gap passed through as loss; larger ones are absorbed. About 2 s of
/// video at 250 packets/s: past the NACK buffer (256), so nothing is lost by absorbing more.
pub(crate) const MAX_GAP: u16 = 512;

pub(crate) struct Forwarder {
    ssrc: u32,
    /// `None` until the subscriber's answer fixed the payload type: nothing is sent before.
    payload_type: Option<u8>,
    /// outgoing = incoming + offset (wrapping).
    sequence_offset: u16,
    /// The highest incoming sequence number forwarded (in the current numbering), if any.
    highest_in: Option<u16>,
}

/// Why a packet was not forwarded to one subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Skip {
    NotNegotiated,
    PaddingOnly,
}

impl Forwarder {
    pub fn new(ssrc: u32) -> Self {
        Self {
            ssrc,
            payload_type: None,
            sequence_offset: 0,
            highest_in: None,
        }
    }

    /// The outgoing sequence number of `incoming`, absorbing large jumps into the offset.
    fn renumber(&mut self, incoming: u16) -> u16 {
        let Some(highest) = self.highest_in else {
            self.highest_in = Some(incoming);
            return incoming.wrapping_add(self.sequence_offset);
        };
        let ahead = incoming.wrapping_sub(highest);
        let behind = highest.wrapping_sub(incoming);
        if (1..=MAX_GAP).contains(&ahead) {
            self.highest_in = Some(incoming);
        } else if ahead != 0 && behind > MAX_GAP {
            // A jump: continue right after the highest number sent so far.
            let next_out = highest.wrapping_add(self.sequence_offset).wrapping_add(1);
            self.sequence_offset = next_out.wrapping_sub(incoming);
            self.highest_in = Some(incoming);
        }
        // Else a duplicate or a late packet within MAX_GAP: same offset, so the subscriber
        // sees it where it belongs.
        incoming.wrapping_add(self.sequence_offset)
    }

    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    pub fn set_payload_type(&mut self, payload_type: u8) {
        self.payload_type = Some(payload_type);
    }

    /// The packet for this subscription. Allocation-free: the payload is shared (`Bytes`
    /// refcount) and the empty CSRC/extension vectors do not allocate.
    pub fn rewrite(&mut self, packet: &rtp::Packet) -> Result<rtp::Packet, Skip> {
        let payload_type = self.payload_type.ok_or(Skip::NotNegotiated)?;
        if packet.payload.is_empty() {
            return Err(Skip::PaddingOnly);
        }
        let incoming = &packet.header;
        let sequence_number = self.renumber(incoming.sequence_number);
        Ok(rtp::Packet {
            header: rtp::header::Header {
                version: 2,
                padding: false,
                extension: false,
                marker: incoming.marker,
                payload_type,
                sequence_number,
                timestamp: incoming.timestamp,
                ssrc: self.ssrc,
                csrc: Vec::new(),
                extension_profile: 0,
                extensions: Vec::new(),
                extensions_padding: 0,
            },
            payload: packet.payload.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn publisher_packet(seq: u16, payload: &'static [u8]) -> rtp::Packet {
        rtp::Packet {
            header: rtp::header::Header {
                version: 2,
                marker: true,
                payload_type: 111,
                sequence_number: seq,
                timestamp: 48_000,
                ssrc: 0xAAAA,
                extension: true,
                extensions: vec![rtp::header::Extension {
                    id: 3,
                    payload: Bytes::from_static(&[1, 2]),
                }],
                ..Default::default()
            },
            payload: Bytes::from_static(payload),
        }
    }

    #[test]
    fn holds_packets_until_the_payload_type_is_negotiated() {
        let mut forwarder = Forwarder::new(0xBBBB);
        assert_eq!(
            forwarder
                .rewrite(&publisher_packet(1, b"opus"))
                .unwrap_err(),
            Skip::NotNegotiated
        );
    }

    #[test]
    fn rewrites_ssrc_and_payload_type_and_drops_extensions() {
        let mut forwarder = Forwarder::new(0xBBBB);
        forwarder.set_payload_type(109);
        let out = forwarder
            .rewrite(&publisher_packet(65535, b"opus"))
            .unwrap();
        assert_eq!(out.header.ssrc, 0xBBBB);
        assert_eq!(out.header.payload_type, 109);
        assert_eq!(out.header.sequence_number, 65535);
        assert_eq!(out.header.timestamp, 48_000);
        assert!(out.header.marker);
        assert!(!out.header.extension && out.header.extensions.is_empty());
        assert_eq!(&out.payload[..], b"opus");
    }

    #[test]
    fn skips_padding_only_packets() {
        let mut forwarder = Forwarder::new(1);
        forwarder.set_payload_type(96);
        assert_eq!(
            forwarder.rewrite(&publisher_packet(5, b"")).unwrap_err(),
            Skip::PaddingOnly
        );
    }

    fn renumbered(forwarder: &mut Forwarder, incoming: &[u16]) -> Vec<u16> {
        incoming
            .iter()
            .map(|seq| {
                forwarder
                    .rewrite(&publisher_packet(*seq, b"x"))
                    .unwrap()
                    .header
                    .sequence_number
            })
            .collect()
    }

    #[test]
    fn small_gaps_and_reordering_pass_through() {
        let mut forwarder = Forwarder::new(1);
        forwarder.set_payload_type(96);
        assert_eq!(
            renumbered(&mut forwarder, &[65534, 65535, 2, 1, 1, 3, 3 + MAX_GAP]),
            [65534, 65535, 2, 1, 1, 3, 3 + MAX_GAP]
        );
    }

    #[test]
    fn large_jumps_continue_the_outgoing_sequence() {
        let mut forwarder = Forwarder::new(1);
        forwarder.set_payload_type(96);
        // A publisher advancing 32,766 per packet, then a restart backwards.
        let mut incoming = vec![100u16];
        for _ in 0..6 {
            incoming.push(incoming.last().unwrap().wrapping_add(32_766));
        }
        incoming.extend([40_000, 40_001, 40_003]);
        assert_eq!(
            renumbered(&mut forwarder, &incoming),
            [100, 101, 102, 103, 104, 105, 106, 107, 108, 110]
        );
        // A late packet from before the restart is not a gap storm either.
        let late = incoming[6].wrapping_sub(1);
        assert_eq!(renumbered(&mut forwarder, &[late, 40_004]), [111, 112]);
    }
}
