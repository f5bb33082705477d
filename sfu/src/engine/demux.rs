//! Routing of datagrams arriving on the one media UDP socket to peer connections.
//!
//! Every peer connection gets its own ICE username fragment (ufrag). A client's first
//! datagram to a connection is a STUN binding request whose USERNAME attribute is
//! `<server ufrag>:<client ufrag>`; that names the connection and teaches us the client's
//! source address. Every later datagram (DTLS, SRTP, SRTCP, STUN keepalives) is routed by
//! source address alone: one hash lookup, no parsing.

use std::collections::HashMap;
use std::net::SocketAddr;

use super::ConnId;

/// STUN header: type(2) length(2) magic cookie(4) transaction id(12).
const STUN_HEADER_LEN: usize = 20;
const STUN_MAGIC_COOKIE: [u8; 4] = [0x21, 0x12, 0xA4, 0x42];
const STUN_ATTR_USERNAME: u16 = 0x0006;

#[derive(Default)]
pub(crate) struct Demuxer {
    by_ufrag: HashMap<String, ConnId>,
    by_addr: HashMap<SocketAddr, ConnId>,
}

impl Demuxer {
    pub fn register_ufrag(&mut self, ufrag: String, conn: ConnId) {
        self.by_ufrag.insert(ufrag, conn);
    }

    /// Forgets everything routing to `conn`.
    pub fn forget(&mut self, conn: ConnId) {
        self.by_ufrag.retain(|_, c| *c != conn);
        self.by_addr.retain(|_, c| *c != conn);
    }

    /// Which connection a datagram belongs to, learning the source address from STUN.
    pub fn route(&mut self, from: SocketAddr, datagram: &[u8]) -> Option<ConnId> {
        if let Some(conn) = self.by_addr.get(&from) {
            return Some(*conn);
        }
        let ufrag = stun_local_ufrag(datagram)?;
        let conn = *self.by_ufrag.get(ufrag)?;
        self.by_addr.insert(from, conn);
        Some(conn)
    }
}

/// The server-side ufrag named by a STUN message's USERNAME (`server:client`), without
/// allocating. `None` for anything that is not a well-formed STUN message with a USERNAME.
pub(crate) fn stun_local_ufrag(datagram: &[u8]) -> Option<&str> {
    if datagram.len() < STUN_HEADER_LEN
        || datagram[0] & 0xC0 != 0
        || datagram[4..8] != STUN_MAGIC_COOKIE
    {
        return None;
    }
    let declared_len = u16::from_be_bytes([datagram[2], datagram[3]]) as usize;
    let attributes = datagram.get(STUN_HEADER_LEN..STUN_HEADER_LEN + declared_len)?;
    let mut rest = attributes;
    while rest.len() >= 4 {
        let kind = u16::from_be_bytes([rest[0], rest[1]]);
        let len = u16::from_be_bytes([rest[2], rest[3]]) as usize;
        let value = rest.get(4..4 + len)?;
        if kind == STUN_ATTR_USERNAME {
            let username = std::str::from_utf8(value).ok()?;
            return username.split(':').next().filter(|u| !u.is_empty());
        }
        // Attributes are padded to a multiple of four bytes.
        let padded = (4 + len + 3) & !3;
        rest = rest.get(padded..)?;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding_request(username: &[u8]) -> Vec<u8> {
        let mut attrs = Vec::new();
        attrs.extend_from_slice(&STUN_ATTR_USERNAME.to_be_bytes());
        attrs.extend_from_slice(&(username.len() as u16).to_be_bytes());
        attrs.extend_from_slice(username);
        while attrs.len() % 4 != 0 {
            attrs.push(0);
        }
        let mut msg = vec![0x00, 0x01];
        msg.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
        msg.extend_from_slice(&STUN_MAGIC_COOKIE);
        msg.extend_from_slice(&[7; 12]);
        msg.extend_from_slice(&attrs);
        msg
    }

    #[test]
    fn reads_the_server_ufrag_from_a_binding_request() {
        assert_eq!(
            stun_local_ufrag(&binding_request(b"srv1:cli1")),
            Some("srv1")
        );
    }

    #[test]
    fn rejects_non_stun_and_truncated_input() {
        assert_eq!(stun_local_ufrag(b""), None);
        assert_eq!(stun_local_ufrag(&[0x80; 40]), None, "RTP is not STUN");
        let mut truncated = binding_request(b"srv1:cli1");
        truncated.truncate(26);
        assert_eq!(stun_local_ufrag(&truncated), None);
        let mut lying_len = binding_request(b"srv1:cli1");
        lying_len[27] = 200; // attribute claims more bytes than exist
        assert_eq!(stun_local_ufrag(&lying_len), None);
    }

    #[test]
    fn learns_the_address_then_routes_by_it() {
        let mut demux = Demuxer::default();
        demux.register_ufrag("srv1".into(), ConnId(7));
        let from: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        assert_eq!(demux.route(from, b"\x80garbage"), None);
        assert_eq!(
            demux.route(from, &binding_request(b"srv1:c")),
            Some(ConnId(7))
        );
        assert_eq!(demux.route(from, b"\x80rtp after ice"), Some(ConnId(7)));
        demux.forget(ConnId(7));
        assert_eq!(demux.route(from, b"\x80rtp after leave"), None);
        assert_eq!(demux.route(from, &binding_request(b"srv1:c")), None);
    }
}
