//! Where a connection's peer is now: following a client whose address changes (a NAT
//! rebinding, a network switch without ICE restart; issue #10).
//!
//! webrtc-rs's ICE-lite agent (rtc-ice 0.21.1, `ControlledSelector::handle_binding_request` in
//! src/agent/agent_selector.rs) selects a candidate pair only while none is selected, and never
//! switches: once a client's packets arrive from a new port, the agent keeps addressing
//! everything non-STUN to the old one (`IceHandler::handle_write` stamps the selected pair's
//! remote address), and declares the connection `disconnected` after 5 s and `failed` after 30 s
//! because the old address's consent checks stopped. Its selected pair cannot be changed from
//! outside the crate.
//!
//! So the engine tracks the peer's *current* address itself, the way an ICE-lite SFU such as
//! mediasoup does (`IceServer::MayForceSelectedTuple`): the source of the latest SRTP/SRTCP
//! packet that the connection authenticated. Such a packet can only come from an address the
//! demuxer learned, i.e. one a STUN request signed with this connection's ICE password came
//! from (security review finding 11), and it must decrypt and pass the SRTP replay check, so a
//! spoofed or replayed packet cannot redirect anything. STUN alone never moves the peer: a
//! browser keeps checking backup paths it does not send media on.
//!
//! - Outgoing: what rtc addresses to its selected remote address goes to the current one.
//! - Incoming: a STUN binding request from the current address is also shown to rtc as if it
//!   came from the selected address (after the real one was answered), so rtc's consent timer
//!   on its selected pair stays fresh; what rtc answers to that copy is not sent.

use std::net::SocketAddr;

/// First byte of an RTP or RTCP packet (version 2): 128..=191 (RFC 7983).
fn is_srtp(datagram: &[u8]) -> bool {
    datagram.first().is_some_and(|b| (128..=191).contains(b))
}

/// A STUN message: the first two bits are zero (RFC 7983).
pub(crate) fn is_stun(datagram: &[u8]) -> bool {
    datagram.first().is_some_and(|b| b & 0xC0 == 0)
}

/// A STUN binding request (method 0x001, class request).
fn is_binding_request(datagram: &[u8]) -> bool {
    datagram.len() >= 20 && datagram[..2] == [0x00, 0x01]
}

#[derive(Debug, Default)]
pub(crate) struct PeerPath {
    /// The remote address of rtc's selected candidate pair: where rtc addresses non-STUN.
    selected: Option<SocketAddr>,
    /// Where the peer's authenticated media last came from, if not `selected`.
    current: Option<SocketAddr>,
}

impl PeerPath {
    /// Where to send a datagram rtc addressed to `to`.
    pub fn destination(&mut self, to: SocketAddr, datagram: &[u8]) -> SocketAddr {
        if !is_stun(datagram) && self.selected != Some(to) {
            // rtc selected a (new) pair, e.g. after an ICE restart: it knows best again.
            self.selected = Some(to);
            self.current = None;
        }
        match self.current {
            Some(current) if self.selected == Some(to) => current,
            _ => to,
        }
    }

    /// Whether a datagram from `from` would move the peer there, if the connection
    /// authenticates it: SRTP/SRTCP from somewhere else than where the peer is now.
    pub fn would_move(&self, from: SocketAddr, datagram: &[u8]) -> bool {
        self.selected
            .is_some_and(|selected| is_srtp(datagram) && self.current.unwrap_or(selected) != from)
    }

    /// The peer's authenticated media now comes from `from` (after [`Self::would_move`]).
    pub fn move_to(&mut self, from: SocketAddr) {
        self.current = (self.selected != Some(from)).then_some(from);
    }

    /// For a binding request from `from`, the address to show rtc a copy as coming from, so
    /// that its selected pair's consent stays fresh while the peer is elsewhere.
    pub fn consent_alias(&self, from: SocketAddr, datagram: &[u8]) -> Option<SocketAddr> {
        let selected = self.selected?;
        (self.current == Some(from) && is_binding_request(datagram)).then_some(selected)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RTP: &[u8] = &[0x80, 96, 0, 1];
    const DTLS: &[u8] = &[22, 0xfe, 0xfd];
    const REQUEST: &[u8] = &[
        0x00, 0x01, 0, 0, 0x21, 0x12, 0xA4, 0x42, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ];
    const RESPONSE: &[u8] = &[
        0x01, 0x01, 0, 0, 0x21, 0x12, 0xA4, 0x42, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ];

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    /// What the engine does with a datagram the connection authenticated.
    fn authenticated(path: &mut PeerPath, from: SocketAddr, datagram: &[u8]) -> bool {
        let moving = path.would_move(from, datagram);
        if moving {
            path.move_to(from);
        }
        moving
    }

    #[test]
    fn follows_authenticated_media_and_only_it() {
        let mut path = PeerPath::default();
        assert!(!path.would_move(addr(2), RTP), "no pair selected yet");
        assert_eq!(path.destination(addr(1), RTP), addr(1));
        assert_eq!(path.destination(addr(1), RESPONSE), addr(1));
        // STUN or DTLS from elsewhere does not move the peer.
        assert!(!path.would_move(addr(2), REQUEST));
        assert!(!path.would_move(addr(2), DTLS));
        assert_eq!(path.consent_alias(addr(2), REQUEST), None);
        assert!(!path.would_move(addr(1), RTP));
        // Media from a new address does.
        assert!(authenticated(&mut path, addr(2), RTP));
        assert!(!authenticated(&mut path, addr(2), RTP), "once");
        assert_eq!(path.destination(addr(1), RTP), addr(2));
        assert_eq!(
            path.destination(addr(1), REQUEST),
            addr(2),
            "rtc's own pings too"
        );
        assert_eq!(
            path.destination(addr(3), RESPONSE),
            addr(3),
            "answers go where asked"
        );
        assert_eq!(path.consent_alias(addr(2), REQUEST), Some(addr(1)));
        assert_eq!(path.consent_alias(addr(2), RESPONSE), None);
        assert_eq!(path.consent_alias(addr(3), REQUEST), None);
        // And back.
        assert!(authenticated(&mut path, addr(1), RTP));
        assert_eq!(path.destination(addr(1), RTP), addr(1));
        assert_eq!(path.consent_alias(addr(1), REQUEST), None);
    }

    #[test]
    fn a_new_selected_pair_resets_the_path() {
        let mut path = PeerPath::default();
        path.destination(addr(1), RTP);
        assert!(authenticated(&mut path, addr(2), RTP));
        // An ICE restart selected another pair: rtc addresses it, and is followed.
        assert_eq!(path.destination(addr(4), RTP), addr(4));
        assert_eq!(path.destination(addr(4), REQUEST), addr(4));
        assert_eq!(path.consent_alias(addr(2), REQUEST), None);
    }
}
