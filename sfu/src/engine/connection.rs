//! One webrtc-rs peer connection (sans-I/O `rtc`) and the bookkeeping the engine keeps
//! beside it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use rand::distr::{Alphanumeric, SampleString};
use rtc::interceptor::{NackGeneratorBuilder, Registry, Slot};
use rtc::peer_connection::configuration::interceptor_registry::{
    configure_rtcp_reports, configure_simulcast_extension_headers, configure_twcc_receiver_only,
};
use rtc::peer_connection::configuration::media_engine::MediaEngine;
use rtc::peer_connection::configuration::setting_engine::SettingEngineBuilder;
use rtc::peer_connection::configuration::RTCConfigurationBuilder;
use rtc::peer_connection::transport::RTCIceCandidateInit;
use rtc::peer_connection::transport::{
    CandidateConfig, CandidateHostConfig, RTCDtlsRole, RTCIceCandidate,
};
use rtc::peer_connection::{RTCPeerConnection, RTCPeerConnectionBuilder};
use rtc::rtp_transceiver::rtp_sender::{
    RTCPFeedback, RTCRtpHeaderExtensionCapability, RtpCodecKind,
};
use rtc::sansio::Protocol;
use rtc::shared::error::Error as RtcError;

use super::nack::{BoundedNackResponder, NackCounters};
use super::PubKey;
use crate::{ParticipantId, PeerRole};

/// webrtc-rs's default chain (`register_default_interceptors`: NACK generation and response,
/// TWCC feedback, RTCP sender/receiver reports) with our bounded NACK responder
/// ([`super::nack`]) in place of webrtc-rs's unbounded one, plus our
/// [`FeedbackToApplication`](super::feedback::FeedbackToApplication) so PLI/FIR/NACK/RR reach
/// the engine.
fn interceptors(
    media_engine: &mut MediaEngine,
    nack_counters: Arc<NackCounters>,
) -> Result<Registry, RtcError> {
    for parameter in ["", "pli"] {
        media_engine.register_feedback(
            RTCPFeedback {
                typ: "nack".to_owned(),
                parameter: parameter.to_owned(),
            },
            RtpCodecKind::Video,
        );
    }
    let registry = Registry::new()
        .with(
            Slot::NackResponder,
            BoundedNackResponder::new(nack_counters),
        )
        .with(Slot::NackGenerator, NackGeneratorBuilder::new().build());
    configure_simulcast_extension_headers(media_engine)?;
    let registry = configure_twcc_receiver_only(registry, media_engine)?;
    Ok(configure_rtcp_reports(registry).with(
        Slot::Custom(super::feedback::SLOT),
        super::feedback::FeedbackToApplication::default(),
    ))
}

pub(crate) struct Connection {
    pub pc: RTCPeerConnection,
    pub participant: ParticipantId,
    pub role: PeerRole,
    pub ufrag: String,
    /// Our ICE password: the demuxer learns a source address only from a STUN request whose
    /// MESSAGE-INTEGRITY verifies with it.
    pub ice_password: String,
    pub connected: bool,
    /// Released as failed when not connected by then. `None` while nothing was negotiated
    /// yet (a subscriber connection before its first offer) and once connected.
    pub connect_deadline: Option<Instant>,
    /// The deadline of this connection's entry in the engine's timer heap.
    pub scheduled: Option<Instant>,
    local_candidate_added: bool,
    /// Publisher side: incoming media SSRC → publication.
    pub publications_by_ssrc: HashMap<u32, PubKey>,
    /// Publisher side: the client's track id → publication.
    pub publications_by_track: HashMap<String, PubKey>,
    /// Subscriber side: our outgoing SSRC (one per subscription) → publication. RTCP
    /// feedback (PLI, FIR, receiver reports) names these SSRCs.
    pub subscriptions_by_ssrc: HashMap<u32, PubKey>,
    /// Subscriber side: an offer is out and its answer has not arrived.
    pub awaiting_answer: bool,
    /// Subscriber side: tracks changed since the last offer.
    pub needs_offer: bool,
    /// Retransmissions this connection's NACK responder sent or suppressed, not yet folded
    /// into the engine's counters.
    pub nack_counters: Arc<NackCounters>,
    /// Where the peer is now, when its address changed under rtc's selected pair.
    pub path: super::path::PeerPath,
}

impl Connection {
    pub fn new(participant: ParticipantId, role: PeerRole, now: Instant) -> Result<Self, RtcError> {
        // Our own ICE credentials: the ufrag is how the demuxer finds this connection.
        let ufrag = Alphanumeric.sample_string(&mut rand::rng(), 16);
        let password = Alphanumeric.sample_string(&mut rand::rng(), 32);
        let settings = SettingEngineBuilder::new()
            .with_lite(true)
            .with_ice_credentials(ufrag.clone(), password.clone())
            // Browsers know our address from the SDP; we learn theirs from their checks.
            // Letting them start DTLS (we are the DTLS server) needs no address guessing.
            .with_answering_dtls_role(RTCDtlsRole::Server)
            .build();
        let mut media_engine = MediaEngine::default();
        media_engine.register_default_codecs()?;
        if role == PeerRole::Publisher {
            // Browsers then tag every audio packet with its level: active-speaker detection
            // without decoding audio.
            media_engine.register_header_extension(
                RTCRtpHeaderExtensionCapability {
                    uri: super::membership::AUDIO_LEVEL_URI.to_owned(),
                },
                RtpCodecKind::Audio,
                None,
            )?;
        }
        let nack_counters = Arc::new(NackCounters::default());
        let interceptors = interceptors(&mut media_engine, nack_counters.clone())?;
        let pc = RTCPeerConnectionBuilder::new()
            .with_configuration(RTCConfigurationBuilder::new().build())
            .with_setting_engine(settings)
            .with_media_engine(media_engine)
            .with_interceptor_registry(interceptors)
            .build(now)?;
        Ok(Self {
            pc,
            participant,
            role,
            ufrag,
            ice_password: password,
            connected: false,
            connect_deadline: None,
            scheduled: None,
            local_candidate_added: false,
            publications_by_ssrc: HashMap::new(),
            publications_by_track: HashMap::new(),
            subscriptions_by_ssrc: HashMap::new(),
            awaiting_answer: false,
            needs_offer: false,
            nack_counters,
            path: super::path::PeerPath::default(),
        })
    }

    /// Adds the SFU's one host candidate (the shared media socket), once, and closes
    /// gathering: an ICE-lite server has nothing else to offer.
    pub fn add_local_candidate_once(&mut self, media_addr: SocketAddr) -> Result<(), RtcError> {
        if self.local_candidate_added {
            return Ok(());
        }
        let candidate = CandidateHostConfig {
            base_config: CandidateConfig {
                network: "udp".to_owned(),
                address: media_addr.ip().to_string(),
                port: media_addr.port(),
                component: 1,
                ..Default::default()
            },
            ..Default::default()
        }
        .new_candidate_host()?;
        self.pc
            .add_local_candidate(RTCIceCandidate::from(&candidate).to_json()?)?;
        self.pc
            .add_local_candidate(RTCIceCandidateInit::default())?;
        self.local_candidate_added = true;
        Ok(())
    }

    /// Closes the connection; what it still wants to send (DTLS close_notify) stays
    /// queued for the caller to flush.
    pub fn close(&mut self) {
        let _ = self.pc.close();
    }
}
