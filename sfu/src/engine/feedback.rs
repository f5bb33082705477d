//! An rtc interceptor that lets the RTCP the SFU acts on reach it.
//!
//! In webrtc-rs 0.21 inbound RTCP ends at the end of the interceptor chain unless an
//! interceptor marks it `DeliverToApplication`. Subscriber connections need their keyframe
//! requests (PLI/FIR, relayed to the publisher), receiver reports (downstream quality) and NACKs
//! (counted; the NACK responder answers them) to reach the media task. This sits closest to
//! the wire so it sees every packet before any other interceptor, and marks only compound
//! packets that contain one of those.

use std::collections::VecDeque;
use std::time::Instant;

use rtc::interceptor::{Attribute, Interceptor, Packet, StreamInfo, TaggedPacket};
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtcp::receiver_report::ReceiverReport;
use rtc::rtcp::transport_feedbacks::transport_layer_nack::TransportLayerNack;
use rtc::sansio::Protocol;
use rtc::shared::error::Error;

/// Where it sits in the chain: below every named slot (1 000 is the lowest), so first on read.
pub(super) const SLOT: usize = 100;

#[derive(Default)]
pub(super) struct FeedbackToApplication {
    read_queue: VecDeque<TaggedPacket>,
    write_queue: VecDeque<TaggedPacket>,
}

fn wanted(packets: &[Box<dyn rtc::rtcp::packet::Packet>]) -> bool {
    packets.iter().any(|packet| {
        let packet = packet.as_any();
        packet.is::<PictureLossIndication>()
            || packet.is::<FullIntraRequest>()
            || packet.is::<ReceiverReport>()
            || packet.is::<TransportLayerNack>()
    })
}

impl Protocol<TaggedPacket, TaggedPacket, ()> for FeedbackToApplication {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = Error;
    type Time = Instant;

    fn handle_read(&mut self, mut msg: TaggedPacket) -> Result<(), Self::Error> {
        if let Packet::Rtcp(packets) = &msg.message.packet {
            if wanted(packets) && !msg.message.has(&Attribute::DeliverToApplication) {
                msg.message.add(Attribute::DeliverToApplication);
            }
        }
        self.read_queue.push_back(msg);
        Ok(())
    }

    fn poll_read(&mut self) -> Option<Self::Rout> {
        self.read_queue.pop_front()
    }

    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        self.write_queue.push_back(msg);
        Ok(())
    }

    fn poll_write(&mut self) -> Option<Self::Wout> {
        self.write_queue.pop_front()
    }
}

impl Interceptor for FeedbackToApplication {
    fn bind_local_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_local_stream(&mut self, _info: &StreamInfo) {}
    fn bind_remote_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_remote_stream(&mut self, _info: &StreamInfo) {}
}
