//! Routing of datagrams arriving on the one media UDP socket to peer connections.
//!
//! Every peer connection gets its own ICE username fragment (ufrag). A client's first
//! datagram to a connection is a STUN binding request whose USERNAME attribute is
//! `<server ufrag>:<client ufrag>`; that names the connection. Its source address is learned
//! only once the request's MESSAGE-INTEGRITY checks out with that connection's ICE password
//! (the engine verifies it, [`stun_integrity_ok`]): anyone can read a ufrag off the wire, only
//! the peer knows the password (security review, finding 11). Every later datagram (DTLS,
//! SRTP, SRTCP) is routed by source address alone: one hash lookup, no parsing. A STUN request
//! from a known address that names another connection's ufrag goes to verification again, so
//! a reused NAT mapping is re-learned rather than misrouted.
//!
//! Each connection keeps at most [`MAX_ADDRS_PER_CONN`] addresses (the oldest is forgotten
//! first), indexed per connection so that forgetting one is O(its own entries).

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;

use rtc::crypto::RTCCryptoProvider;
use rtc::stun::integrity::MessageIntegrity;
use rtc::stun::message::Message;

use super::ConnId;

/// STUN header: type(2) length(2) magic cookie(4) transaction id(12).
const STUN_HEADER_LEN: usize = 20;
const STUN_MAGIC_COOKIE: [u8; 4] = [0x21, 0x12, 0xA4, 0x42];
const STUN_ATTR_USERNAME: u16 = 0x0006;
/// Source addresses remembered per connection. A browser uses one (a few while its network
/// changes); the cap bounds what a peer that knows its own password can make us keep.
pub(crate) const MAX_ADDRS_PER_CONN: usize = 8;

/// Where a datagram goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Route {
    /// From an address learned for this connection.
    Known(ConnId),
    /// A STUN request naming this connection's ufrag from an address not (yet) learned for
    /// it: deliver and [`Demuxer::learn`] only if its MESSAGE-INTEGRITY verifies.
    Unverified(ConnId),
}

#[derive(Default)]
struct Routes {
    ufrag: String,
    addrs: VecDeque<SocketAddr>,
}

pub(crate) struct Demuxer {
    by_ufrag: HashMap<String, ConnId>,
    by_addr: HashMap<SocketAddr, ConnId>,
    by_conn: HashMap<ConnId, Routes>,
    /// For STUN MESSAGE-INTEGRITY (HMAC-SHA1); `None` if no provider could be loaded, in
    /// which case nothing verifies (fail closed).
    crypto: Option<Arc<dyn RTCCryptoProvider>>,
}

impl Default for Demuxer {
    fn default() -> Self {
        Self {
            by_ufrag: HashMap::new(),
            by_addr: HashMap::new(),
            by_conn: HashMap::new(),
            crypto: rtc::crypto::default_provider().ok(),
        }
    }
}

impl Demuxer {
    pub fn register_ufrag(&mut self, ufrag: String, conn: ConnId) {
        self.by_ufrag.insert(ufrag.clone(), conn);
        self.by_conn.entry(conn).or_default().ufrag = ufrag;
    }

    /// Forgets everything routing to `conn`: O(its own entries).
    pub fn forget(&mut self, conn: ConnId) {
        let Some(routes) = self.by_conn.remove(&conn) else {
            return;
        };
        self.by_ufrag.remove(&routes.ufrag);
        for addr in routes.addrs {
            if self.by_addr.get(&addr) == Some(&conn) {
                self.by_addr.remove(&addr);
            }
        }
    }

    /// Which connection a datagram belongs to; see [`Route`].
    pub fn route(&self, from: SocketAddr, datagram: &[u8]) -> Option<Route> {
        let known = self.by_addr.get(&from).copied();
        // Only STUN (first two bits 0) is parsed; media from a known address is not.
        if known.is_some() && datagram.first().is_some_and(|b| b & 0xC0 != 0) {
            return known.map(Route::Known);
        }
        let named = stun_local_ufrag(datagram).and_then(|ufrag| self.by_ufrag.get(ufrag));
        match (known, named) {
            (Some(known), Some(named)) if known == *named => Some(Route::Known(known)),
            (_, Some(named)) => Some(Route::Unverified(*named)),
            (known, None) => known.map(Route::Known),
        }
    }

    /// The connection a datagram from `from` is for, learning `from` for it when the datagram
    /// is a STUN request naming that connection whose MESSAGE-INTEGRITY verifies with the
    /// connection's password (`password_of`); `None` (drop it) otherwise. The one place the
    /// engine turns a datagram into a connection, so the learn-after-verify rule (finding 11)
    /// is fuzzed as the engine runs it (`fuzz_routing`).
    pub fn accept<'p>(
        &mut self,
        from: SocketAddr,
        datagram: &[u8],
        password_of: impl Fn(ConnId) -> Option<&'p str>,
    ) -> Option<ConnId> {
        match self.route(from, datagram)? {
            Route::Known(conn) => Some(conn),
            Route::Unverified(conn) => {
                let password = password_of(conn)?;
                if !self.stun_integrity_ok(datagram, password) {
                    return None;
                }
                self.learn(from, conn);
                Some(conn)
            }
        }
    }

    /// Routes `from` to `conn` from now on (after its STUN request verified).
    pub fn learn(&mut self, from: SocketAddr, conn: ConnId) {
        if let Some(previous) = self.by_addr.insert(from, conn) {
            if previous == conn {
                return;
            }
            if let Some(routes) = self.by_conn.get_mut(&previous) {
                routes.addrs.retain(|addr| *addr != from);
            }
        }
        let Some(routes) = self.by_conn.get_mut(&conn) else {
            self.by_addr.remove(&from); // not registered (left meanwhile)
            return;
        };
        routes.addrs.push_back(from);
        if routes.addrs.len() > MAX_ADDRS_PER_CONN {
            if let Some(oldest) = routes.addrs.pop_front() {
                self.by_addr.remove(&oldest);
            }
        }
    }

    /// Whether `datagram` is a STUN message whose MESSAGE-INTEGRITY verifies with
    /// `password` (ICE short-term credentials, RFC 8445 §7.2.2).
    pub fn stun_integrity_ok(&self, datagram: &[u8], password: &str) -> bool {
        let Some(crypto) = &self.crypto else {
            return false;
        };
        let mut message = Message::new();
        message.unmarshal_binary(datagram).is_ok()
            && MessageIntegrity::check(&mut message, password.as_bytes(), crypto.crypto()).is_ok()
    }

    #[cfg(test)]
    fn addresses(&self) -> usize {
        self.by_addr.len()
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

/// Fuzz entry (`fuzz/fuzz_targets/demux_routing.rs`, review T8): runs a sequence of datagrams
/// from a few sources through [`Demuxer::accept`] for two connections, and checks that an
/// address only ever routes to a connection after a request *signed with that connection's
/// password* came from it. The input picks, per step, the source port, and whether to send its
/// bytes raw, as an unsigned binding request or as one signed with either password (USERNAME
/// from the input), or to forget a connection.
pub fn fuzz_routing(data: &[u8]) {
    use std::collections::HashSet;
    const CONNS: [(ConnId, &str, &str); 2] = [
        (ConnId(1), "srv1", "password-one-0123456789"),
        (ConnId(2), "srv2", "password-two-0123456789"),
    ];
    let mut demux = Demuxer::default();
    let mut live = HashSet::new();
    for (conn, ufrag, _) in CONNS {
        demux.register_ufrag(ufrag.into(), conn);
        live.insert(conn);
    }
    let password_of = |conn: ConnId| {
        CONNS
            .iter()
            .find(|(c, _, _)| *c == conn)
            .map(|(_, _, password)| *password)
    };
    // (address, connection) pairs a correctly signed request has been accepted for.
    let mut earned: HashSet<(SocketAddr, ConnId)> = HashSet::new();
    let mut rest = data;
    while let [op, port, len, tail @ ..] = rest {
        let len = usize::from(*len).min(tail.len());
        let (body, next) = tail.split_at(len);
        rest = next;
        let from = SocketAddr::from(([127, 0, 0, 1], 5000 + u16::from(*port % 4)));
        let datagram = match op % 5 {
            0 => body.to_vec(),
            1 => signed_request(body, None),
            2 | 3 => signed_request(body, Some(CONNS[usize::from(op % 5 - 2)].2)),
            _ => {
                let (conn, ..) = CONNS[usize::from(*port % 2)];
                demux.forget(conn);
                live.remove(&conn);
                earned.retain(|(_, c)| *c != conn);
                continue;
            }
        };
        let named = stun_local_ufrag(&datagram)
            .and_then(|u| CONNS.iter().find(|(_, ufrag, _)| *ufrag == u))
            .map(|(conn, ..)| *conn);
        let was_known = demux.route(from, b"\x80").is_some();
        let accepted = demux.accept(from, &datagram, password_of);
        if let (Some(conn), false) = (accepted, was_known) {
            // Accepted from an unknown address: only a live connection's own signed request.
            assert_eq!(
                Some(conn),
                named,
                "accepted a request naming another connection"
            );
            assert!(live.contains(&conn));
            let (.., password) = CONNS.iter().find(|(c, ..)| *c == conn).unwrap();
            assert!(demux.stun_integrity_ok(&datagram, password));
            earned.insert((from, conn));
        } else if let (Some(conn), Some(named)) = (accepted, named) {
            if conn == named && demux.stun_integrity_ok(&datagram, password_of(conn).unwrap()) {
                earned.insert((from, conn));
            }
        }
        // Whatever routes by address alone was earned by a signed request from there.
        for port in 5000..5004 {
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            if let Some(Route::Known(conn)) = demux.route(addr, b"\x80") {
                assert!(
                    earned.contains(&(addr, conn)),
                    "{addr} routes to {conn:?} unearned"
                );
            }
        }
    }
}

/// A STUN binding request with `username` as USERNAME, signed with `password` if given.
fn signed_request(username: &[u8], password: Option<&str>) -> Vec<u8> {
    use rtc::stun::message::Setter;
    let username = String::from_utf8_lossy(username).into_owned();
    // Declared before `setters`, which borrows it.
    let crypto = rtc::crypto::default_provider().ok();
    let mut setters: Vec<Box<dyn Setter>> = vec![
        Box::new(rtc::stun::message::BINDING_REQUEST),
        Box::new(rtc::stun::textattrs::TextAttribute::new(
            rtc::stun::attributes::ATTR_USERNAME,
            username,
        )),
    ];
    if let (Some(password), Some(crypto)) = (password, &crypto) {
        setters.push(Box::new(
            MessageIntegrity::new_short_term_integrity_with_provider(
                password.to_owned(),
                crypto.crypto(),
            ),
        ));
    }
    let mut message = Message::new();
    match message.build(&setters) {
        Ok(()) => message.raw.clone(),
        Err(_) => Vec::new(),
    }
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
    fn learns_only_what_it_is_told_then_routes_by_it() {
        let mut demux = Demuxer::default();
        demux.register_ufrag("srv1".into(), ConnId(7));
        let from: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        assert_eq!(demux.route(from, b"\x80garbage"), None);
        let check = binding_request(b"srv1:c");
        assert_eq!(
            demux.route(from, &check),
            Some(Route::Unverified(ConnId(7)))
        );
        assert_eq!(
            demux.route(from, b"\x80rtp"),
            None,
            "not learned before verification"
        );
        demux.learn(from, ConnId(7));
        assert_eq!(
            demux.route(from, b"\x80rtp after ice"),
            Some(Route::Known(ConnId(7)))
        );
        assert_eq!(demux.route(from, &check), Some(Route::Known(ConnId(7))));
        demux.forget(ConnId(7));
        assert_eq!(demux.route(from, b"\x80rtp after leave"), None);
        assert_eq!(demux.route(from, &check), None);
    }

    #[test]
    fn a_request_naming_another_connection_is_verified_again() {
        let mut demux = Demuxer::default();
        demux.register_ufrag("srv1".into(), ConnId(1));
        demux.register_ufrag("srv2".into(), ConnId(2));
        let from: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        demux.learn(from, ConnId(1));
        assert_eq!(
            demux.route(from, &binding_request(b"srv2:c")),
            Some(Route::Unverified(ConnId(2)))
        );
        demux.learn(from, ConnId(2));
        assert_eq!(demux.route(from, b"\x80rtp"), Some(Route::Known(ConnId(2))));
        demux.forget(ConnId(1));
        assert_eq!(demux.route(from, b"\x80rtp"), Some(Route::Known(ConnId(2))));
    }

    #[test]
    fn addresses_per_connection_are_capped() {
        let mut demux = Demuxer::default();
        demux.register_ufrag("srv1".into(), ConnId(1));
        for port in 0..100u16 {
            demux.learn(SocketAddr::from(([127, 0, 0, 1], 6000 + port)), ConnId(1));
        }
        assert_eq!(demux.addresses(), MAX_ADDRS_PER_CONN);
        let newest = SocketAddr::from(([127, 0, 0, 1], 6099));
        let oldest = SocketAddr::from(([127, 0, 0, 1], 6000));
        assert_eq!(demux.route(newest, b"\x80"), Some(Route::Known(ConnId(1))));
        assert_eq!(demux.route(oldest, b"\x80"), None);
        demux.forget(ConnId(1));
        assert_eq!(demux.addresses(), 0);
    }

    #[test]
    fn integrity_is_checked_with_the_password() {
        let demux = Demuxer::default();
        let mut request = Message::new();
        request
            .build(&[
                Box::new(rtc::stun::message::BINDING_REQUEST),
                Box::new(rtc::stun::textattrs::TextAttribute::new(
                    rtc::stun::attributes::ATTR_USERNAME,
                    "srv1:c".into(),
                )),
                Box::new(MessageIntegrity::new_short_term_integrity_with_provider(
                    "secret-password".into(),
                    demux.crypto.as_ref().unwrap().crypto(),
                )),
            ])
            .unwrap();
        let raw = request.raw.clone();
        assert!(demux.stun_integrity_ok(&raw, "secret-password"));
        assert!(!demux.stun_integrity_ok(&raw, "another-password"));
        assert!(!demux.stun_integrity_ok(&binding_request(b"srv1:c"), "secret-password"));
        assert!(!demux.stun_integrity_ok(b"\x00\x01garbage", "secret-password"));
    }
}
