//! The per-packet path: RTP from a publisher fanned out to its subscribers, RTCP feedback
//! from subscribers turned into keyframe requests to the publisher.
//!
//! Nothing here allocates on our side per packet (the rewritten packet shares the payload
//! buffer), takes a lock, awaits or logs.

use std::time::Instant;

use rtc::peer_connection::message::{RTCMessage, TaggedRTCMessage};
use rtc::rtcp;
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtcp::receiver_report::ReceiverReport;
use rtc::rtcp::transport_feedbacks::transport_layer_nack::TransportLayerNack;
use rtc::sansio::Protocol;

use super::forwarder::Skip;
use super::{arm_timer, flush, ConnId, Engine, PubKey};
use crate::metrics::{kind_index, DropReason};
use crate::speaker::parse_audio_level;
use crate::{PeerRole, SfuEvent, TrackKind};

impl Engine {
    pub(super) fn handle_media(&mut self, now: Instant, conn_id: ConnId, message: RTCMessage) {
        match message {
            RTCMessage::RtpPacket(_, packet) => self.forward_rtp(now, conn_id, packet),
            RTCMessage::RtcpPacket(_, packets) => {
                self.handle_subscriber_rtcp(now, conn_id, &packets)
            }
            _ => {}
        }
    }

    fn forward_rtp(&mut self, now: Instant, conn_id: ConnId, packet: rtc::rtp::Packet) {
        #[cfg(feature = "fault-injection")]
        if super::isolation::fault::inject(&packet.payload) {
            self.kill_task = true;
        }
        let Some(key) = self
            .conns
            .get(&conn_id)
            .and_then(|conn| conn.publications_by_ssrc.get(&packet.header.ssrc))
            .copied()
        else {
            self.counters.drop(DropReason::UnknownSsrc);
            return;
        };
        let Some(publication) = self.publications.get_mut(&key) else {
            return;
        };
        let kind = kind_index(publication.kind);
        let forwarded_before = self.counters.forwarded_packets[kind];
        self.counters.received_packets[kind] += 1;
        self.counters.received_bytes[kind] += packet.payload.len() as u64;
        publication.receive_stats.on_packet(
            packet.header.sequence_number,
            packet.header.timestamp,
            publication.codec.clock_rate,
            now,
            packet.payload.len(),
        );
        if let Some(extension_id) = publication.audio_level_extension {
            let level = packet
                .header
                .extensions
                .iter()
                .find(|extension| extension.id == extension_id)
                .and_then(|extension| parse_audio_level(&extension.payload));
            if let (Some((_, level_dbov)), Some(room)) =
                (level, self.rooms.get_mut(&publication.room))
            {
                room.speakers
                    .observe(publication.owner.clone(), level_dbov, now);
            }
        }
        if let Some(recorder) = &publication.recorder {
            match publication.kind {
                TrackKind::Audio => recorder.push_audio(&packet, now),
                TrackKind::Video => recorder.push_video(&packet, now),
            }
        }
        let recorder_wants_keyframe = publication
            .recorder
            .as_ref()
            .is_some_and(|recorder| recorder.needs_keyframe());
        for subscription in &mut publication.subscriptions {
            let outgoing = match subscription.forwarder.rewrite(&packet) {
                Ok(outgoing) => outgoing,
                Err(Skip::NotNegotiated) => {
                    self.counters.drop(DropReason::NotNegotiated);
                    continue;
                }
                Err(Skip::PaddingOnly) => {
                    self.counters.drop(DropReason::PaddingOnly);
                    continue;
                }
            };
            let Some(conn) = self.conns.get_mut(&subscription.conn) else {
                continue;
            };
            if !conn.connected {
                continue;
            }
            let written = conn.pc.handle_write(TaggedRTCMessage {
                now,
                // The track id is ignored on write (the SSRC routes the packet); an empty
                // String does not allocate.
                message: RTCMessage::RtpPacket(String::new(), outgoing),
            });
            if written.is_ok() {
                self.counters.forwarded_packets[kind] += 1;
                self.counters.forwarded_bytes[kind] += packet.payload.len() as u64;
            }
            flush(&self.socket, conn, &mut self.counters);
            arm_timer(&mut self.timers, now, subscription.conn, conn);
        }
        let first_forward =
            !publication.forwarded_any && self.counters.forwarded_packets[kind] > forwarded_before;
        if recorder_wants_keyframe {
            self.request_keyframe(now, key);
        }
        if first_forward {
            self.first_forward(key);
        }
    }

    /// Once per publication: the room's first forwarded packet is reported as MediaFlowing.
    #[cold]
    fn first_forward(&mut self, key: PubKey) {
        let Some(publication) = self.publications.get_mut(&key) else {
            return;
        };
        publication.forwarded_any = true;
        let Some(room) = self.rooms.get_mut(&publication.room) else {
            return;
        };
        if !room.media_flowing {
            room.media_flowing = true;
            let _ = self.events.send(SfuEvent::MediaFlowing {
                room: publication.room.clone(),
            });
        }
    }

    fn handle_subscriber_rtcp(
        &mut self,
        now: Instant,
        conn_id: ConnId,
        packets: &[Box<dyn rtcp::packet::Packet>],
    ) {
        let Some(conn) = self.conns.get(&conn_id) else {
            return;
        };
        if conn.role != PeerRole::Subscriber {
            return;
        }
        for report in packets
            .iter()
            .filter_map(|packet| packet.as_any().downcast_ref::<ReceiverReport>())
        {
            self.record_receiver_report(conn_id, report);
        }
        let Some(conn) = self.conns.get(&conn_id) else {
            return;
        };
        // A compound RTCP packet is handed to us under the track of its *first* packet's
        // SSRC (typically a receiver report about any stream), so each feedback packet is
        // routed by its own media SSRC instead.
        let mut keyframes_wanted: [Option<PubKey>; 4] = [None; 4];
        let mut wanted = 0;
        for packet in packets {
            let any = packet.as_any();
            if any.is::<PictureLossIndication>() || any.is::<FullIntraRequest>() {
                self.counters.keyframe_requests_received += 1;
                for ssrc in packet.destination_ssrc() {
                    if let Some(key) = conn.subscriptions_by_ssrc.get(&ssrc) {
                        if wanted < keyframes_wanted.len() {
                            keyframes_wanted[wanted] = Some(*key);
                            wanted += 1;
                        }
                    }
                }
            } else if any.is::<TransportLayerNack>() {
                self.counters.nacks_received += 1;
            }
        }
        for key in keyframes_wanted.into_iter().flatten() {
            self.request_keyframe(now, key);
        }
    }

    /// A subscriber just (re)connected or renegotiated: its video needs a keyframe to start.
    pub(super) fn request_keyframes_for_subscriber(&mut self, now: Instant, conn_id: ConnId) {
        let Some(conn) = self.conns.get(&conn_id) else {
            return;
        };
        let keys: Vec<PubKey> = conn.subscriptions_by_ssrc.values().copied().collect();
        for key in keys {
            self.request_keyframe(now, key);
        }
    }

    /// Sends a PLI to the publisher, at most once per `keyframe_request_interval` per
    /// publication however many subscribers ask.
    fn request_keyframe(&mut self, now: Instant, key: PubKey) {
        let interval = self.config.keyframe_request_interval;
        let Some(publication) = self.publications.get_mut(&key) else {
            return;
        };
        if publication.kind != TrackKind::Video {
            return;
        }
        if publication
            .last_keyframe_request
            .is_some_and(|last| now.duration_since(last) < interval)
        {
            return;
        }
        publication.last_keyframe_request = Some(now);
        self.counters.keyframe_requests_sent += 1;
        let (conn_id, receiver, media_ssrc) = (
            publication.conn,
            publication.receiver,
            publication.media_ssrc,
        );
        let Some(conn) = self.conns.get_mut(&conn_id) else {
            return;
        };
        if let Some(mut receiver) = conn.pc.rtp_receiver(receiver) {
            let _ = receiver.write_rtcp(
                now,
                vec![Box::new(PictureLossIndication {
                    sender_ssrc: 0,
                    media_ssrc,
                })],
            );
        }
        flush(&self.socket, conn, &mut self.counters);
        self.schedule(now, conn_id);
    }
}
