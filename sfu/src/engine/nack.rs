//! Our NACK responder: retransmits what subscribers report lost, bounded.
//!
//! It replaces webrtc-rs's `NackResponderInterceptor` (rtc-interceptor 0.21.1), which queues one
//! retransmission per sequence number named in a NACK, with no deduplication and no limit: one
//! ~2 KB SRTCP packet of ~450 pairs with full bitmaps made it re-send ~7,600 packets, and a
//! subscriber sending 100 of those a second saturated the media task for every call on the
//! server (security review, finding 2). Here, per subscription (one local stream):
//!
//! - a sequence number is retransmitted at most once per [`RETRANSMIT_INTERVAL`] however often
//!   it is NACKed (a repeat NACK inside that window cannot have seen the first retransmission
//!   arrive, so answering it again only duplicates);
//! - retransmissions spend a budget earned by sending: each packet sent earns half a
//!   retransmission, capped at [`BURST`], so a subscriber can raise what it receives by at most
//!   half the stream's own rate however much it NACKs, while a real loss burst (a lost keyframe)
//!   is repaired at once;
//! - adding a packet clears at most the buffer's own slots, not every sequence number skipped
//!   (a sequence jump costs O(buffer), not O(jump); finding 3).
//!
//! Counters of sent and suppressed retransmissions are shared with the engine ([`NackCounters`]).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rtc::interceptor::{
    Attribute, AttributedPacket, Interceptor, Packet, StreamInfo, TaggedPacket,
};
use rtc::rtcp::transport_feedbacks::transport_layer_nack::TransportLayerNack;
use rtc::rtp;
use rtc::sansio::Protocol;
use rtc::shared::error::Error;
use rtc::shared::TransportContext;

/// Sent packets kept per stream (a power of two). webrtc-rs's default, 1024, is about 7 s of
/// 1.5 Mbit/s video with its slots allocated up front for every subscription; 256 keep about
/// 1.8 s, longer than a retransmission is still worth having, for a quarter of the memory
/// (docs/benchmarks.md, memory per participant).
pub(super) const BUFFER_PACKETS: u16 = 256;
/// A sequence number is retransmitted at most once per this interval ("RTT-ish": a loopback or
/// LAN round trip is far below it, a transcontinental one close to it).
pub(super) const RETRANSMIT_INTERVAL: Duration = Duration::from_millis(100);
/// Retransmissions a stream may send in one burst; refilled by half a token per packet sent.
pub(super) const BURST: u32 = 64;

/// Retransmission counters, shared between a connection's responder and the engine.
#[derive(Debug, Default)]
pub(crate) struct NackCounters {
    pub retransmitted: AtomicU64,
    /// NACKed packets not retransmitted: repeated within the interval, or over budget.
    pub suppressed: AtomicU64,
}

impl NackCounters {
    /// Takes the counts gathered since the last call.
    pub fn take(&self) -> (u64, u64) {
        (
            self.retransmitted.swap(0, Ordering::Relaxed),
            self.suppressed.swap(0, Ordering::Relaxed),
        )
    }
}

struct Sent {
    packet: rtp::Packet,
    last_retransmitted: Option<Instant>,
}

/// One local stream: the ring of sent packets and the retransmission budget.
struct Stream {
    slots: Vec<Option<Sent>>,
    highest: u16,
    started: bool,
    /// In halves of a retransmission: +1 per packet sent, -2 per retransmission.
    budget_halves: u32,
    ssrc_rtx: Option<u32>,
    payload_type_rtx: Option<u8>,
    rtx_sequence_number: u16,
}

const MASK: u16 = BUFFER_PACKETS - 1;

impl Stream {
    fn new(info: &StreamInfo) -> Self {
        Self {
            slots: (0..BUFFER_PACKETS).map(|_| None).collect(),
            highest: 0,
            started: false,
            budget_halves: 2 * BURST,
            ssrc_rtx: info.ssrc_rtx,
            payload_type_rtx: info.payload_type_rtx,
            rtx_sequence_number: 0,
        }
    }

    fn add(&mut self, packet: &rtp::Packet) {
        let seq = packet.header.sequence_number;
        self.budget_halves = (self.budget_halves + 1).min(2 * BURST);
        if self.started {
            let ahead = seq.wrapping_sub(self.highest);
            if ahead == 0 {
                return;
            }
            if ahead < 0x8000 {
                // Clear the slots of the sequence numbers skipped, at most the whole ring.
                let skipped = ahead - 1;
                if skipped >= BUFFER_PACKETS {
                    self.slots.iter_mut().for_each(|slot| *slot = None);
                } else {
                    for i in 1..=skipped {
                        self.slots[(self.highest.wrapping_add(i) & MASK) as usize] = None;
                    }
                }
                self.highest = seq;
            } else if self.highest.wrapping_sub(seq) >= BUFFER_PACKETS {
                return; // older than anything the ring holds
            }
        } else {
            self.started = true;
            self.highest = seq;
        }
        self.slots[(seq & MASK) as usize] = Some(Sent {
            packet: packet.clone(),
            last_retransmitted: None,
        });
    }

    /// The retransmission of `seq`, if it is buffered, not recently retransmitted and in budget.
    /// `Err(())` when it was buffered but suppressed.
    fn retransmission(&mut self, now: Instant, seq: u16) -> Option<Result<rtp::Packet, ()>> {
        if !self.started || self.highest.wrapping_sub(seq) >= BUFFER_PACKETS {
            return None;
        }
        let sent = self.slots[(seq & MASK) as usize].as_mut()?;
        if sent.packet.header.sequence_number != seq {
            return None;
        }
        if sent
            .last_retransmitted
            .is_some_and(|at| now.saturating_duration_since(at) < RETRANSMIT_INTERVAL)
            || self.budget_halves < 2
        {
            return Some(Err(()));
        }
        self.budget_halves -= 2;
        sent.last_retransmitted = Some(now);
        let original = &sent.packet;
        let (Some(ssrc_rtx), Some(payload_type_rtx)) = (self.ssrc_rtx, self.payload_type_rtx)
        else {
            return Some(Ok(original.clone()));
        };
        // RFC 4588: the RTX stream carries the original sequence number before the payload.
        let mut payload = Vec::with_capacity(2 + original.payload.len());
        payload.extend_from_slice(&seq.to_be_bytes());
        payload.extend_from_slice(&original.payload);
        let sequence_number = self.rtx_sequence_number;
        self.rtx_sequence_number = sequence_number.wrapping_add(1);
        Some(Ok(rtp::Packet {
            header: rtp::header::Header {
                version: 2,
                ssrc: ssrc_rtx,
                payload_type: payload_type_rtx,
                sequence_number,
                timestamp: original.header.timestamp,
                marker: original.header.marker,
                ..Default::default()
            },
            payload: payload.into(),
        }))
    }
}

/// The interceptor, in webrtc-rs's `Slot::NackResponder`.
pub(super) struct BoundedNackResponder {
    streams: HashMap<u32, Stream>,
    counters: Arc<NackCounters>,
    read_queue: VecDeque<TaggedPacket>,
    write_queue: VecDeque<TaggedPacket>,
}

impl BoundedNackResponder {
    pub fn new(counters: Arc<NackCounters>) -> Self {
        Self {
            streams: HashMap::new(),
            counters,
            read_queue: VecDeque::new(),
            write_queue: VecDeque::new(),
        }
    }

    fn handle_nack(&mut self, now: Instant, nack: &TransportLayerNack) {
        let Some(stream) = self.streams.get_mut(&nack.media_ssrc) else {
            return;
        };
        let (mut retransmitted, mut suppressed) = (0, 0);
        // Bounded by the datagram: at most ~500 pairs of 17 sequence numbers each.
        for pair in &nack.nacks {
            let lost = std::iter::once(pair.packet_id).chain(
                (0..16u16)
                    .filter(|bit| pair.lost_packets & (1 << bit) != 0)
                    .map(|bit| pair.packet_id.wrapping_add(bit + 1)),
            );
            for seq in lost {
                match stream.retransmission(now, seq) {
                    None => {}
                    Some(Err(())) => suppressed += 1,
                    Some(Ok(packet)) => {
                        retransmitted += 1;
                        self.write_queue.push_back(TaggedPacket {
                            now,
                            transport: TransportContext::default(),
                            message: AttributedPacket::new(Packet::Rtp(packet))
                                .with(Attribute::Retransmission),
                        });
                    }
                }
            }
        }
        self.counters
            .retransmitted
            .fetch_add(retransmitted, Ordering::Relaxed);
        self.counters
            .suppressed
            .fetch_add(suppressed, Ordering::Relaxed);
    }
}

impl Protocol<TaggedPacket, TaggedPacket, ()> for BoundedNackResponder {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = Error;
    type Time = Instant;

    fn handle_read(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        if let Packet::Rtcp(packets) = &msg.message.packet {
            for packet in packets {
                if let Some(nack) = packet.as_any().downcast_ref::<TransportLayerNack>() {
                    self.handle_nack(msg.now, nack);
                }
            }
        }
        self.read_queue.push_back(msg);
        Ok(())
    }

    fn poll_read(&mut self) -> Option<Self::Rout> {
        self.read_queue.pop_front()
    }

    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        if let Packet::Rtp(packet) = &msg.message.packet {
            if let Some(stream) = self.streams.get_mut(&packet.header.ssrc) {
                stream.add(packet);
            }
        }
        self.write_queue.push_back(msg);
        Ok(())
    }

    fn poll_write(&mut self) -> Option<Self::Wout> {
        self.write_queue.pop_front()
    }
}

impl Interceptor for BoundedNackResponder {
    fn bind_local_stream(&mut self, info: &StreamInfo) {
        let supports_nack = info
            .rtcp_feedback
            .iter()
            .any(|feedback| feedback.typ == "nack" && feedback.parameter.is_empty());
        if supports_nack {
            self.streams.insert(info.ssrc, Stream::new(info));
        }
    }

    fn unbind_local_stream(&mut self, info: &StreamInfo) {
        self.streams.remove(&info.ssrc);
    }

    fn bind_remote_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_remote_stream(&mut self, _info: &StreamInfo) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtc::rtcp::transport_feedbacks::transport_layer_nack::NackPair;

    fn packet(seq: u16) -> rtp::Packet {
        rtp::Packet {
            header: rtp::header::Header {
                version: 2,
                ssrc: 7,
                sequence_number: seq,
                ..Default::default()
            },
            payload: vec![1, 2, 3].into(),
        }
    }

    fn stream() -> Stream {
        Stream::new(&StreamInfo::default())
    }

    fn count(stream: &mut Stream, now: Instant, seqs: impl IntoIterator<Item = u16>) -> usize {
        seqs.into_iter()
            .filter(|seq| matches!(stream.retransmission(now, *seq), Some(Ok(_))))
            .count()
    }

    #[test]
    fn retransmits_each_buffered_packet_once_per_interval() {
        let mut s = stream();
        for seq in 0..200 {
            s.add(&packet(seq));
        }
        let now = Instant::now();
        assert_eq!(count(&mut s, now, [10, 10, 10, 11]), 2);
        assert_eq!(count(&mut s, now + RETRANSMIT_INTERVAL / 2, [10, 11]), 0);
        assert_eq!(count(&mut s, now + RETRANSMIT_INTERVAL, [10, 11]), 2);
        assert_eq!(count(&mut s, now, [200, 5000]), 0, "never sent");
    }

    #[test]
    fn retransmissions_spend_a_budget_earned_by_sending() {
        let mut s = stream();
        for seq in 0..250 {
            s.add(&packet(seq));
        }
        let now = Instant::now();
        assert_eq!(count(&mut s, now, 0..250), BURST as usize);
        // Ten more packets sent earn five retransmissions.
        for seq in 250..260 {
            s.add(&packet(seq));
        }
        assert_eq!(count(&mut s, now, 100..250), 5);
    }

    #[test]
    fn a_sequence_jump_clears_the_ring_and_old_numbers_are_gone() {
        let mut s = stream();
        for seq in 0..100 {
            s.add(&packet(seq));
        }
        s.add(&packet(32_866));
        assert_eq!(count(&mut s, Instant::now(), 0..100), 0);
        assert_eq!(count(&mut s, Instant::now(), [32_866]), 1);
    }

    #[test]
    fn a_flood_of_full_bitmaps_is_bounded() {
        let counters = Arc::new(NackCounters::default());
        let mut responder = BoundedNackResponder::new(counters.clone());
        let info = StreamInfo {
            ssrc: 7,
            rtcp_feedback: vec![rtc::interceptor::RTCPFeedback {
                typ: "nack".into(),
                parameter: String::new(),
            }],
            ..Default::default()
        };
        responder.bind_local_stream(&info);
        let now = Instant::now();
        for seq in 0..256 {
            responder
                .handle_write(TaggedPacket {
                    now,
                    transport: TransportContext::default(),
                    message: AttributedPacket::new(Packet::Rtp(packet(seq))),
                })
                .unwrap();
        }
        while responder.poll_write().is_some() {}
        let nack = TransportLayerNack {
            sender_ssrc: 1,
            media_ssrc: 7,
            nacks: (0..450u16)
                .map(|i| NackPair {
                    packet_id: (i % 16) * 16,
                    lost_packets: 0xFFFF,
                })
                .collect(),
        };
        for _ in 0..100 {
            responder.handle_nack(now, &nack);
        }
        let mut sent = 0;
        while responder.poll_write().is_some() {
            sent += 1;
        }
        assert_eq!(sent, BURST as usize);
        let (retransmitted, suppressed) = counters.take();
        assert_eq!(retransmitted, u64::from(BURST));
        // Pairs starting at 240 also name 256, never sent: neither sent nor suppressed.
        assert_eq!(retransmitted + suppressed, 100 * (450 * 17 - 28));
    }
}
