//! The little of SDP signaling reads itself: which media sections a client's SDP would send.
//! Used to enforce publish grants and the tracks limit before the SFU parses the SDP fully.
//! Input is untrusted; nothing here panics or allocates per line (a fuzz target covers it).

/// What an SDP's media sections would send.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SdpSummary {
    /// `m=` sections of any kind, rejected ones (port 0) included.
    pub sections: usize,
    /// `m=audio` sections that send (`sendrecv`/`sendonly`, the default) and are not rejected.
    pub sending_audio: usize,
    /// Same for `m=video`.
    pub sending_video: usize,
}

impl SdpSummary {
    /// Sending audio and video sections: the tracks this SDP publishes.
    pub fn sending_tracks(&self) -> usize {
        self.sending_audio + self.sending_video
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Audio,
    Video,
    Other,
}

struct Section {
    kind: Kind,
    rejected: bool,
    sends: bool,
}

/// Summarizes `sdp` (lines end with CRLF or LF). Malformed lines are ignored: this is not a
/// validator, the SFU's parser decides whether the SDP is acceptable.
pub fn summarize(sdp: &str) -> SdpSummary {
    let mut summary = SdpSummary::default();
    let mut current: Option<Section> = None;
    // Session-level direction applies to sections that do not set their own.
    let mut session_sends = true;
    let mut section_direction: Option<bool> = None;
    let close =
        |summary: &mut SdpSummary, section: Option<Section>, dir: Option<bool>, session: bool| {
            if let Some(section) = section {
                let sends = dir.unwrap_or(session) && section.sends;
                if !section.rejected && sends {
                    match section.kind {
                        Kind::Audio => summary.sending_audio += 1,
                        Kind::Video => summary.sending_video += 1,
                        Kind::Other => {}
                    }
                }
            }
        };
    for line in sdp.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if let Some(media) = line.strip_prefix("m=") {
            close(
                &mut summary,
                current.take(),
                section_direction.take(),
                session_sends,
            );
            summary.sections += 1;
            let mut fields = media.split(' ');
            let kind = match fields.next() {
                Some("audio") => Kind::Audio,
                Some("video") => Kind::Video,
                _ => Kind::Other,
            };
            let rejected = fields.next().is_some_and(|port| port == "0");
            current = Some(Section {
                kind,
                rejected,
                sends: true,
            });
        } else if let Some(attribute) = line.strip_prefix("a=") {
            let direction = match attribute {
                "sendrecv" | "sendonly" => Some(true),
                "recvonly" | "inactive" => Some(false),
                _ => None,
            };
            if let Some(sends) = direction {
                if current.is_some() {
                    section_direction = Some(sends);
                } else {
                    session_sends = sends;
                }
            }
        }
    }
    close(
        &mut summary,
        current.take(),
        section_direction.take(),
        session_sends,
    );
    summary
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_sending_sections() {
        let sdp = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n\
            m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\na=sendrecv\r\n\
            m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:1\r\na=sendonly\r\n\
            m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:2\r\na=recvonly\r\n\
            m=video 0 UDP/TLS/RTP/SAVPF 96\r\na=mid:3\r\n\
            m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n";
        let s = summarize(sdp);
        assert_eq!(s.sections, 5);
        assert_eq!(s.sending_audio, 1);
        assert_eq!(s.sending_video, 1);
        assert_eq!(s.sending_tracks(), 2);
    }

    #[test]
    fn default_direction_is_sendrecv_and_session_level_applies() {
        assert_eq!(summarize("m=audio 9 RTP/AVP 0\n").sending_audio, 1);
        let s =
            summarize("v=0\na=inactive\nm=audio 9 RTP/AVP 0\nm=video 9 RTP/AVP 96\na=sendonly\n");
        assert_eq!((s.sending_audio, s.sending_video), (0, 1));
    }

    #[test]
    fn garbage_is_harmless() {
        for input in [
            "",
            "m=",
            "m=audio",
            "\r\n\r\n",
            "a=sendrecv",
            "m=video x\n",
            "\u{0}m=video 1",
        ] {
            let s = summarize(input);
            assert!(s.sending_tracks() <= s.sections);
        }
    }
}
