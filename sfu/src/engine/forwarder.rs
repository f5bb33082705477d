//! Per-subscription RTP rewriting: the state that turns a publisher's packet into the packet
//! one subscriber receives.
//!
//! Each subscription has its own SSRC and the payload type negotiated on the subscriber's
//! connection, and sends no header extensions (their ids are negotiated per connection, so the
//! publisher's ids would mean something else, or nothing, downstream). Sequence numbers and
//! timestamps pass through with a constant offset, so gaps the publisher's network caused
//! stay visible to the subscriber's NACK/jitter logic.

use rtc::rtp;

pub(crate) struct Forwarder {
    ssrc: u32,
    /// `None` until the subscriber's answer fixed the payload type: nothing is sent before.
    payload_type: Option<u8>,
    sequence_offset: u16,
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
        }
    }

    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    pub fn set_payload_type(&mut self, payload_type: u8) {
        self.payload_type = Some(payload_type);
    }

    /// The packet for this subscription. Allocation-free: the payload is shared (`Bytes`
    /// refcount) and the empty CSRC/extension vectors do not allocate.
    pub fn rewrite(&self, packet: &rtp::Packet) -> Result<rtp::Packet, Skip> {
        let payload_type = self.payload_type.ok_or(Skip::NotNegotiated)?;
        if packet.payload.is_empty() {
            return Err(Skip::PaddingOnly);
        }
        let incoming = &packet.header;
        Ok(rtp::Packet {
            header: rtp::header::Header {
                version: 2,
                padding: false,
                extension: false,
                marker: incoming.marker,
                payload_type,
                sequence_number: incoming.sequence_number.wrapping_add(self.sequence_offset),
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
        let forwarder = Forwarder::new(0xBBBB);
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
}
