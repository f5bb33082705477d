//! What a publisher's offer negotiates, judged the way webrtc-rs applies it (security review
//! finding 1): never by scanning the SDP text.
//!
//! - Sections come from rtc's own parser (`rtc::sdp`, the function `set_remote_description`
//!   runs), so whitespace, tabs and line endings mean what they mean to rtc.
//! - Like rtc, the m-line port is ignored (RFC 8843 `a=bundle-only` sections have port 0 and
//!   still send), the *first* direction attribute of a section wins, and a section without a
//!   direction or of another kind creates no transceiver.
//! - What may receive is read from the peer connection itself after the offer was applied:
//!   every transceiver whose direction has `recv`. Only its kind comes from the section with
//!   its mid (rtc 0.21 does not expose a transceiver's kind); `publication_opened` checks the
//!   kind of every track rtc actually opens as a second line.

use rtc::peer_connection::RTCPeerConnection;
use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use rtc::rtp_transceiver::RTCRtpTransceiverDirection;
use rtc::sdp::{MediaDescription, SessionDescription};

use crate::{MediaPolicy, SfuError, TrackKind};

/// One section of an offer as webrtc-rs reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfferSection {
    pub mid: Option<String>,
    /// `None` for anything but audio and video (rtc makes no transceiver for those).
    pub kind: Option<TrackKind>,
    /// rtc's peer direction: the first direction attribute, `Unspecified` when none.
    pub direction: RTCRtpTransceiverDirection,
    /// The `a=msid` track ids of the section.
    pub track_ids: Vec<String>,
    /// `m=application` (data channels).
    pub application: bool,
}

impl OfferSection {
    /// Whether the offerer sends on this section (rtc creates a receiving transceiver for it).
    pub fn sends(&self) -> bool {
        self.kind.is_some()
            && matches!(
                self.direction,
                RTCRtpTransceiverDirection::Sendrecv | RTCRtpTransceiverDirection::Sendonly
            )
    }
}

/// The sections of a parsed offer, in order.
pub fn sections(parsed: &SessionDescription) -> Vec<OfferSection> {
    parsed.media_descriptions.iter().map(section).collect()
}

fn section(media: &MediaDescription) -> OfferSection {
    let kind = match RtpCodecKind::from(media.media_name.media.as_str()) {
        RtpCodecKind::Audio => Some(TrackKind::Audio),
        RtpCodecKind::Video => Some(TrackKind::Video),
        _ => None,
    };
    let mut mid = None;
    let mut direction = RTCRtpTransceiverDirection::Unspecified;
    let mut track_ids = Vec::new();
    for attribute in &media.attributes {
        // rtc's `get_mid_value`: the first `a=mid`.
        if attribute.key == "mid" && mid.is_none() {
            mid = Some(attribute.value.clone().unwrap_or_default());
        }
        // rtc's `get_peer_direction`: the first attribute that names a direction.
        if direction == RTCRtpTransceiverDirection::Unspecified {
            direction = RTCRtpTransceiverDirection::from(attribute.key.as_str());
        }
        if attribute.key == "msid" {
            if let Some(track) = attribute
                .value
                .as_deref()
                .and_then(|v| v.split_whitespace().nth(1))
            {
                track_ids.push(track.to_owned());
            }
        }
    }
    OfferSection {
        mid,
        kind,
        direction,
        track_ids,
        application: media.media_name.media == "application",
    }
}

/// Checks an applied offer against `policy`: no data channel, no receiving transceiver of a
/// kind the participant may not publish, and at most `limit` receiving transceivers.
pub fn check_negotiated(
    pc: &mut RTCPeerConnection,
    sections: &[OfferSection],
    policy: &MediaPolicy,
    limit: usize,
) -> Result<(), SfuError> {
    if sections.iter().any(|s| s.application) {
        return Err(SfuError::DataChannelRefused);
    }
    let mut receiving = 0usize;
    let ids: Vec<_> = pc.get_transceivers().collect();
    for id in ids {
        let Some(transceiver) = pc.rtp_transceiver(id) else {
            continue;
        };
        if !transceiver.direction().has_recv() {
            continue;
        }
        receiving += 1;
        let mid = transceiver.mid().clone();
        // A receiving transceiver whose mid this offer does not name was accepted by an
        // earlier offer; it still counts towards the limit.
        let kind = sections
            .iter()
            .find(|s| s.mid.is_some() && s.mid == mid)
            .and_then(|s| s.kind);
        if let Some(kind) = kind {
            if !policy.may_publish(kind) {
                return Err(SfuError::KindNotAllowed { kind });
            }
        }
    }
    if receiving > limit {
        return Err(SfuError::TooManyTracks { limit });
    }
    Ok(())
}

/// The `a=msid` track ids of the audio and video sections the offerer *sends*. A track the
/// client removed is in a `recvonly`/`inactive` section and is not listed. `None` when a
/// sending section names no track: then the offer cannot tell which tracks stopped.
pub fn sending_track_ids(sections: &[OfferSection]) -> Option<Vec<String>> {
    let mut ids = Vec::new();
    for section in sections.iter().filter(|s| s.sends()) {
        if section.track_ids.is_empty() {
            return None;
        }
        ids.extend(section.track_ids.iter().cloned());
    }
    Some(ids)
}

/// Parses `sdp` exactly as `set_remote_description` does.
pub fn parse(sdp: &str) -> Result<SessionDescription, SfuError> {
    SessionDescription::unmarshal(&mut std::io::Cursor::new(sdp.as_bytes()))
        .map_err(|error| SfuError::InvalidSdp(error.to_string()))
}

/// The fuzz target `publisher_offer`: applies arbitrary bytes as a publisher offer to a real
/// publisher connection, then checks (differentially) that our reading of the sections
/// matches what rtc did with them, and that an accepted offer never receives an ungranted kind
/// or more than the limit.
pub fn fuzz_publisher_offer(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(parsed) = parse(text) else {
        return;
    };
    let read = sections(&parsed);
    assert_eq!(read.len(), parsed.media_descriptions.len());
    let now = std::time::Instant::now();
    let participant = crate::ParticipantId::new("fuzz");
    let Ok(mut conn) = super::Connection::new(participant, crate::PeerRole::Publisher, now) else {
        return;
    };
    let Ok(offer) = rtc::peer_connection::sdp::RTCSessionDescription::offer(text.to_owned()) else {
        return;
    };
    if conn.pc.set_remote_description(now, offer).is_err() {
        return;
    }
    // Differential: every section we read as sending (with a mid) got a receiving
    // transceiver from rtc, and every receiving transceiver's mid is a section we read.
    let mut receiving_mids = Vec::new();
    let ids: Vec<_> = conn.pc.get_transceivers().collect();
    for id in ids {
        if let Some(t) = conn.pc.rtp_transceiver(id) {
            if t.direction().has_recv() {
                receiving_mids.push(t.mid().clone());
            }
        }
    }
    for section in read.iter().filter(|s| s.sends() && !s.application) {
        if read.iter().filter(|s| s.mid == section.mid).count() == 1 {
            assert!(
                receiving_mids.contains(&section.mid),
                "rtc does not receive a section we read as sending: {section:?}"
            );
        }
    }
    for mid in &receiving_mids {
        assert!(
            read.iter().any(|s| s.mid == *mid && s.kind.is_some()),
            "rtc receives on mid {mid:?}, which we did not read as audio/video"
        );
    }
    let audio_only = MediaPolicy {
        publish_audio: true,
        publish_video: false,
        subscribe: true,
        max_tracks: 1,
    };
    if check_negotiated(&mut conn.pc, &read, &audio_only, 1).is_ok() {
        assert!(receiving_mids.len() <= 1);
        for mid in &receiving_mids {
            let kinds: Vec<_> = read
                .iter()
                .filter(|s| s.mid == *mid)
                .map(|s| s.kind)
                .collect();
            assert!(
                !kinds.contains(&Some(TrackKind::Video)),
                "video accepted: {mid:?}"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer(body: &str) -> String {
        format!("v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n{body}")
    }

    fn read(body: &str) -> Vec<OfferSection> {
        sections(&parse(&offer(body)).expect("parses"))
    }

    #[test]
    fn port_zero_tabs_and_bundle_only_sections_send() {
        let s = read(
            "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\na=sendrecv\r\na=msid:user mic-1\r\n\
             m=video 0 UDP/TLS/RTP/SAVPF 96\r\na=mid:1\r\na=bundle-only\r\na=sendonly\r\na=msid:user cam-1\r\n\
             m=video\t9\tUDP/TLS/RTP/SAVPF\t96\r\na=mid:2\r\na=sendonly\r\na=msid:user screen-1\r\n",
        );
        assert_eq!(s.len(), 3);
        assert!(s.iter().all(OfferSection::sends), "{s:?}");
        assert_eq!(s[2].kind, Some(TrackKind::Video));
        assert_eq!(
            sending_track_ids(&s),
            Some(vec!["mic-1".into(), "cam-1".into(), "screen-1".into()])
        );
    }

    #[test]
    fn the_first_direction_wins_and_no_direction_is_no_transceiver() {
        let s = read(
            "m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:0\r\na=sendonly\r\na=inactive\r\na=msid:s v\r\n\
             m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:1\r\na=recvonly\r\na=sendonly\r\na=msid:s w\r\n\
             m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:2\r\na=msid:s a\r\n\
             m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=mid:3\r\n",
        );
        assert!(s[0].sends());
        assert!(!s[1].sends());
        assert_eq!(s[2].direction, RTCRtpTransceiverDirection::Unspecified);
        assert!(!s[2].sends());
        assert!(s[3].application && s[3].kind.is_none());
        assert_eq!(sending_track_ids(&s), Some(vec!["v".into()]));
    }

    #[test]
    fn a_sending_section_without_msid_makes_the_list_unknown() {
        let s = read("m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:0\r\na=sendonly\r\n");
        assert_eq!(sending_track_ids(&s), None);
        assert_eq!(sending_track_ids(&[]), Some(vec![]));
    }

    #[test]
    fn the_fuzz_entry_accepts_hostile_and_honest_offers() {
        let fingerprint = "a=fingerprint:sha-256 00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF\r\n";
        let body = format!(
            "a=ice-ufrag:abcd\r\na=ice-pwd:aaaaaaaaaaaaaaaaaaaaaaaa\r\n{fingerprint}a=setup:actpass\r\n\
             m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\na=sendonly\r\na=rtpmap:111 opus/48000/2\r\n\
             m=video\t0\tUDP/TLS/RTP/SAVPF\t96\r\na=mid:1\r\na=bundle-only\r\na=sendonly\r\na=inactive\r\na=rtpmap:96 VP8/90000\r\n"
        );
        fuzz_publisher_offer(offer(&body).as_bytes());
        fuzz_publisher_offer(b"v=0\r\n");
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        for sdp in ["", "m=audio\r\n", "v=0\r\nm=video 9\r\n", "\u{0}"] {
            let _ = parse(sdp);
        }
    }
}
