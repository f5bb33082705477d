//! What a publisher's offer says it sends, read straight from the SDP text: the few facts the
//! SFU needs before (or besides) handing the offer to webrtc-rs.

/// Audio and video sections that are not rejected (port 0), sending or not.
pub(super) fn count_media_sections(sdp: &str) -> usize {
    sdp.lines()
        .filter(|line| line.starts_with("m=audio ") || line.starts_with("m=video "))
        .filter(|line| line.split(' ').nth(1) != Some("0"))
        .count()
}

/// The `a=msid` track ids of the audio and video sections the offerer *sends* (`sendrecv`,
/// `sendonly`, or no direction, which means `sendrecv`). A track the client removed is in a
/// `recvonly`/`inactive` section (or a rejected one) and is not listed. `None` when a sending
/// section names no track: then the offer cannot tell which tracks stopped.
pub(super) fn sending_track_ids(sdp: &str) -> Option<Vec<String>> {
    let mut ids = Some(Vec::new());
    let mut section: Option<Section> = None;
    for line in sdp.lines().map(str::trim_end) {
        if let Some(media) = line.strip_prefix("m=") {
            if let Some(done) = section.take() {
                done.collect_into(&mut ids);
            }
            let mut fields = media.split(' ');
            let kind = fields.next().unwrap_or("");
            let port = fields.next().unwrap_or("0");
            section = Some(Section {
                media: (kind == "audio" || kind == "video") && port != "0",
                sending: true,
                track_ids: Vec::new(),
            });
            continue;
        }
        let Some(section) = section.as_mut() else {
            continue; // session-level lines
        };
        match line {
            "a=recvonly" | "a=inactive" => section.sending = false,
            "a=sendrecv" | "a=sendonly" => section.sending = true,
            _ => {
                if let Some(msid) = line.strip_prefix("a=msid:") {
                    if let Some(track) = msid.split_whitespace().nth(1) {
                        section.track_ids.push(track.to_owned());
                    }
                }
            }
        }
    }
    if let Some(done) = section {
        done.collect_into(&mut ids);
    }
    ids
}

struct Section {
    media: bool,
    sending: bool,
    track_ids: Vec<String>,
}

impl Section {
    fn collect_into(self, ids: &mut Option<Vec<String>>) {
        if !(self.media && self.sending) {
            return;
        }
        match ids {
            Some(list) if !self.track_ids.is_empty() => list.extend(self.track_ids),
            _ => *ids = None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OFFER: &str = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n\
        a=group:BUNDLE 0 1 2\r\n\
        m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=mid:0\r\na=sendrecv\r\na=msid:user mic-1\r\n\
        m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:1\r\na=recvonly\r\na=msid:user cam-1\r\n\
        m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=mid:2\r\na=msid:user screen-1\r\n\
        m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=mid:3\r\n\
        m=video 0 UDP/TLS/RTP/SAVPF 96\r\na=mid:4\r\na=sendonly\r\na=msid:user old-1\r\n";

    #[test]
    fn lists_only_tracks_being_sent() {
        // cam-1 was removed (recvonly), old-1's section is rejected (port 0); a section with
        // no direction sends.
        assert_eq!(
            sending_track_ids(OFFER),
            Some(vec!["mic-1".to_owned(), "screen-1".to_owned()])
        );
    }

    #[test]
    fn a_sending_section_without_msid_makes_the_list_unknown() {
        let sdp = "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=msid:s mic\r\n\
                   m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=sendonly\r\n";
        assert_eq!(sending_track_ids(sdp), None);
        assert_eq!(sending_track_ids(""), Some(vec![]));
    }

    #[test]
    fn counts_audio_and_video_sections_that_are_not_rejected() {
        assert_eq!(count_media_sections(OFFER), 3);
    }

    #[test]
    fn garbage_does_not_panic() {
        for sdp in [
            "",
            "a=msid:x y",
            "m=audio\r\na=msid:",
            "m=video 9\r\na=msid:onlystream",
        ] {
            let ids = sending_track_ids(sdp);
            assert!(ids.is_none_or(|ids| ids.is_empty()), "{sdp:?}");
        }
    }
}
