//! Rooms and their members: joining, leaving, publishing, subscribing and the
//! offer/answer exchanges that follow.

use std::time::Instant;

use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::event::RTCTrackEventInit;
use rtc::peer_connection::sdp::RTCSessionDescription;
use rtc::peer_connection::transport::RTCIceCandidateInit;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind,
};
use tracing::{debug, info};

use super::offer_scan::{self, check_negotiated, sending_track_ids};
use super::{
    flush, ActiveSpeakerDetector, ConnId, Connection, Engine, Forwarder, Participant, PubKey,
    Publication, ReceiveStats, Room, Subscription,
};
use crate::{
    IceCandidate, MediaPolicy, ParticipantId, PeerRole, PublicationId, RoomId, SfuError, SfuEvent,
    TrackKind,
};

impl Engine {
    pub(super) fn join(
        &mut self,
        now: Instant,
        room_id: RoomId,
        participant: ParticipantId,
        stream_label: String,
        policy: MediaPolicy,
    ) -> Result<(), SfuError> {
        if self.participants.contains_key(&participant) {
            return Err(SfuError::DuplicateParticipant(participant));
        }
        let limit = self.config.max_participants_per_room;
        if self
            .rooms
            .get(&room_id)
            .is_some_and(|room| room.participants.len() >= limit)
        {
            return Err(SfuError::RoomFull {
                room: room_id,
                limit,
            });
        }
        let internal = |error: rtc::shared::error::Error| SfuError::Internal(error.to_string());
        // Each connection's connect deadline is armed when it is negotiated (the publisher's by
        // the client's offer, the subscriber's by ours): a receive-only participant never
        // offers a publisher connection and must not be released for it.
        let publisher =
            Connection::new(participant.clone(), PeerRole::Publisher, now).map_err(internal)?;
        let subscriber =
            Connection::new(participant.clone(), PeerRole::Subscriber, now).map_err(internal)?;
        let publisher_id = ConnId(self.next_id());
        let subscriber_id = ConnId(self.next_id());
        self.demux
            .register_ufrag(publisher.ufrag.clone(), publisher_id);
        // Without `subscribe` the subscriber connection is never offered: nobody learns its
        // ufrag, so nothing may reach it either.
        if policy.subscribe {
            self.demux
                .register_ufrag(subscriber.ufrag.clone(), subscriber_id);
        }
        self.conns.insert(publisher_id, publisher);
        self.conns.insert(subscriber_id, subscriber);
        self.participants.insert(
            participant.clone(),
            Participant {
                room: room_id.clone(),
                stream_label,
                publisher: publisher_id,
                subscriber: subscriber_id,
                publications: Vec::new(),
                recorder: None,
                policy,
            },
        );
        let speaker_config = self.config.speaker;
        let room = self.rooms.entry(room_id.clone()).or_insert_with(|| Room {
            participants: Vec::new(),
            speakers: ActiveSpeakerDetector::new(speaker_config),
            recording: None,
            media_flowing: false,
        });
        room.participants.push(participant.clone());
        room.speakers.add(participant.clone());
        info!(room = %room_id, %participant, "participant joined");

        // A late joiner receives everything already published in the room.
        let existing: Vec<PubKey> = room
            .participants
            .iter()
            .filter(|other| **other != participant)
            .filter_map(|other| self.participants.get(other))
            .flat_map(|other| other.publications.iter().copied())
            .collect();
        for publication in existing {
            self.subscribe(&participant, publication);
        }
        if self
            .rooms
            .get(&room_id)
            .is_some_and(|r| r.recording.is_some())
        {
            if let Err(error) = self.attach_recorder(&room_id, &participant) {
                tracing::warn!(room = %room_id, %participant, %error, "late joiner not recorded");
            }
        }
        self.negotiate(now, subscriber_id);
        Ok(())
    }

    pub(super) fn publish(
        &mut self,
        now: Instant,
        participant: &ParticipantId,
        offer_sdp: String,
    ) -> Result<String, SfuError> {
        let record = self.participant(participant)?;
        let conn_id = record.publisher;
        let policy = record.policy;
        let limit = policy
            .max_tracks
            .min(self.config.max_tracks_per_participant);
        let media_addr = self.media_addr;
        let invalid = |error: rtc::shared::error::Error| SfuError::InvalidSdp(error.to_string());
        // Parsed as `set_remote_description` parses it, and judged by its rules.
        let sections = offer_scan::sections(&offer_scan::parse(&offer_sdp)?);
        let sending = sending_track_ids(&sections);
        let offer = RTCSessionDescription::offer(offer_sdp).map_err(invalid)?;
        let conn = self
            .conns
            .get_mut(&conn_id)
            .expect("participant owns its connections");
        let first_offer = conn.pc.current_remote_description().is_none();
        let applied = conn
            .pc
            .set_remote_description(now, offer)
            .map_err(invalid)
            .and_then(|()| check_negotiated(&mut conn.pc, &sections, &policy, limit));
        if let Err(refusal) = applied {
            self.undo_offer(now, conn_id, first_offer);
            return Err(refusal);
        }
        let conn = self.conns.get_mut(&conn_id).expect("checked above");
        // webrtc-rs reports new tracks but never closes one a renegotiation stopped sending:
        // those are unpublished here, by what the offer still sends.
        let stopped: Vec<String> = match &sending {
            Some(sending) => conn
                .publications_by_track
                .keys()
                .filter(|track_id| !sending.contains(track_id))
                .cloned()
                .collect(),
            None => Vec::new(),
        };
        let answered = conn
            .add_local_candidate_once(media_addr)
            .map_err(|error| SfuError::Internal(error.to_string()))
            .and_then(|()| conn.pc.create_answer(None).map_err(invalid))
            .and_then(|answer| conn.pc.set_local_description(now, answer).map_err(invalid));
        if let Err(refusal) = answered {
            self.undo_offer(now, conn_id, first_offer);
            return Err(refusal);
        }
        let conn = self.conns.get_mut(&conn_id).expect("checked above");
        if !conn.connected && conn.connect_deadline.is_none() {
            conn.connect_deadline = Some(now + self.config.connect_timeout);
        }
        let sdp = conn
            .pc
            .local_description()
            .map(|description| description.sdp)
            .ok_or_else(|| SfuError::Internal("answer has no local description".into()))?;
        self.drive(now, conn_id);
        for track_id in stopped {
            self.publication_closed(now, conn_id, &track_id);
        }
        Ok(sdp)
    }

    /// Undoes a refused publisher offer, so the connection is as it was before it. A
    /// renegotiation is rolled back (RFC 9429 §5.7: the transceivers it created are removed);
    /// a refused first offer may already have started ICE and DTLS with its credentials, so
    /// the never-answered connection is replaced by a fresh one.
    fn undo_offer(&mut self, now: Instant, conn_id: ConnId, first_offer: bool) {
        let Some(conn) = self.conns.get_mut(&conn_id) else {
            return;
        };
        let participant = conn.participant.clone();
        if !first_offer {
            let pending = conn.pc.pending_remote_description().is_some();
            let rolled_back = !pending
                || RTCSessionDescription::rollback(None)
                    .and_then(|rollback| conn.pc.set_remote_description(now, rollback))
                    .is_ok();
            if rolled_back {
                return;
            }
            self.fail_participant(
                now,
                &participant,
                "a refused offer could not be rolled back",
            );
            return;
        }
        match Connection::new(participant.clone(), PeerRole::Publisher, now) {
            Ok(fresh) => {
                self.demux.forget(conn_id);
                self.demux.register_ufrag(fresh.ufrag.clone(), conn_id);
                if let Some(mut old) = self.conns.insert(conn_id, fresh) {
                    old.close();
                }
            }
            Err(error) => {
                self.fail_participant(
                    now,
                    &participant,
                    &format!("could not renew the publisher connection: {error}"),
                );
            }
        }
    }

    pub(super) fn subscriber_answer(
        &mut self,
        now: Instant,
        participant: &ParticipantId,
        answer_sdp: String,
    ) -> Result<(), SfuError> {
        let conn_id = self.participant(participant)?.subscriber;
        let conn = self
            .conns
            .get_mut(&conn_id)
            .expect("participant owns its connections");
        if !conn.awaiting_answer {
            return Err(SfuError::NoPendingOffer);
        }
        let invalid = |error: rtc::shared::error::Error| SfuError::InvalidSdp(error.to_string());
        let answer = RTCSessionDescription::answer(answer_sdp).map_err(invalid)?;
        conn.pc
            .set_remote_description(now, answer)
            .map_err(invalid)?;
        conn.awaiting_answer = false;
        self.bind_negotiated_payload_types(conn_id);
        self.request_keyframes_for_subscriber(now, conn_id);
        self.negotiate(now, conn_id);
        self.drive(now, conn_id);
        Ok(())
    }

    pub(super) fn remote_candidate(
        &mut self,
        participant: &ParticipantId,
        role: PeerRole,
        candidate: IceCandidate,
    ) -> Result<(), SfuError> {
        let record = self.participant(participant)?;
        let conn_id = match role {
            PeerRole::Publisher => record.publisher,
            PeerRole::Subscriber => record.subscriber,
        };
        // We are ICE-lite: we never send checks, we answer the client's. Its candidates are
        // therefore informational; mDNS ones (`.local`) cannot even be resolved here.
        if candidate.candidate.contains(".local ") {
            return Ok(());
        }
        let conn = self
            .conns
            .get_mut(&conn_id)
            .expect("participant owns its connections");
        conn.pc
            .add_remote_candidate(RTCIceCandidateInit {
                candidate: candidate.candidate,
                sdp_mid: candidate.sdp_mid,
                sdp_mline_index: candidate.sdp_mline_index,
                username_fragment: candidate.username_fragment,
                ..Default::default()
            })
            .map_err(|error| SfuError::InvalidCandidate(error.to_string()))
    }

    pub(super) fn leave(
        &mut self,
        now: Instant,
        participant: &ParticipantId,
    ) -> Result<(), SfuError> {
        self.remove_participant(now, participant)?;
        info!(%participant, "participant left");
        Ok(())
    }

    fn participant(&self, participant: &ParticipantId) -> Result<&Participant, SfuError> {
        self.participants
            .get(participant)
            .ok_or_else(|| SfuError::UnknownParticipant(participant.clone()))
    }

    /// Removes a participant and everything it had: its publications (and their
    /// subscriptions elsewhere, which renegotiates those subscribers), its subscriptions, and
    /// both its connections.
    pub(super) fn remove_participant(
        &mut self,
        now: Instant,
        participant: &ParticipantId,
    ) -> Result<(), SfuError> {
        let room_id = self
            .participants
            .get(participant)
            .map(|p| p.room.clone())
            .ok_or_else(|| SfuError::UnknownParticipant(participant.clone()))?;
        self.detach_recorder(&room_id, participant);
        let record = self
            .participants
            .remove(participant)
            .expect("checked above");
        let mut renegotiate = Vec::new();
        for key in &record.publications {
            if let Some(publication) = self.publications.remove(key) {
                renegotiate.extend(self.drop_subscriptions(&publication));
                self.announce_removed(publication);
            }
        }
        for publication in self.publications.values_mut() {
            publication
                .subscriptions
                .retain(|subscription| subscription.subscriber != *participant);
        }
        for conn_id in [record.publisher, record.subscriber] {
            if let Some(mut conn) = self.conns.remove(&conn_id) {
                conn.close();
                flush(&self.socket, &mut conn, &mut self.counters);
            }
            self.demux.forget(conn_id);
        }
        if let Some(room) = self.rooms.get_mut(&record.room) {
            room.participants.retain(|p| p != participant);
            room.speakers.remove(participant);
            if room.participants.is_empty() {
                if room.recording.is_some() {
                    let _ = self.events.send(SfuEvent::RecordingStopped {
                        room: record.room.clone(),
                        reason: crate::RecordingStopReason::RoomClosed,
                    });
                }
                self.rooms.remove(&record.room);
                debug!(room = %record.room, "room closed");
            }
        }
        for conn_id in renegotiate {
            self.negotiate(now, conn_id);
        }
        Ok(())
    }

    /// A new track arrived on a publisher connection: publish it to the room.
    pub(super) fn publication_opened(
        &mut self,
        now: Instant,
        conn_id: ConnId,
        track: RTCTrackEventInit,
    ) {
        let Some(conn) = self.conns.get_mut(&conn_id) else {
            return;
        };
        if conn.role != PeerRole::Publisher {
            return;
        }
        let Some(mut receiver) = conn.pc.rtp_receiver(track.receiver_id) else {
            return;
        };
        let kind = match receiver.track().kind() {
            RtpCodecKind::Audio => TrackKind::Audio,
            RtpCodecKind::Video => TrackKind::Video,
            _ => return,
        };
        let Some(codec) = receiver.track().codec(track.ssrc).cloned() else {
            return;
        };
        let audio_level_extension = receiver
            .get_parameters()
            .rtp_parameters
            .header_extensions
            .iter()
            .find(|extension| extension.uri == AUDIO_LEVEL_URI)
            .map(|extension| extension.id as u8)
            .filter(|_| kind == TrackKind::Audio);
        if let Some(&key) = conn.publications_by_track.get(&track.track_id) {
            // Already published: webrtc-rs reports a track again after a renegotiation.
            // Only its SSRC may be new (a sender restarted), which forwarding must follow.
            conn.publications_by_ssrc.insert(track.ssrc, key);
            if let Some(publication) = self.publications.get_mut(&key) {
                publication.media_ssrc = track.ssrc;
            }
            return;
        }
        let owner = conn.participant.clone();
        // The offer was checked against the owner's policy; this is the second line, on what
        // rtc actually opened (its kind and the count of publications).
        if let Some(record) = self.participants.get(&owner) {
            let limit = record
                .policy
                .max_tracks
                .min(self.config.max_tracks_per_participant);
            if !record.policy.may_publish(kind) || record.publications.len() >= limit {
                debug!(participant = %owner, ?kind, "track refused by the participant's policy");
                return;
            }
        }
        let key = PubKey(self.next_id());
        let id = PublicationId::new(format!("{}-{}", kind_name(kind), key.0));
        let conn = self.conns.get_mut(&conn_id).expect("checked above");
        conn.publications_by_ssrc.insert(track.ssrc, key);
        conn.publications_by_track
            .insert(track.track_id.clone(), key);
        let Some(room) = self.participants.get_mut(&owner).map(|p| {
            p.publications.push(key);
            p.room.clone()
        }) else {
            return;
        };
        info!(room = %room, participant = %owner, publication = %id, codec = %codec.mime_type, "track published");
        self.publications.insert(
            key,
            Publication {
                id: id.clone(),
                room: room.clone(),
                owner: owner.clone(),
                conn: conn_id,
                receiver: track.receiver_id,
                kind,
                codec,
                media_ssrc: track.ssrc,
                subscriptions: Vec::new(),
                last_keyframe_request: None,
                receive_stats: ReceiveStats::new(),
                audio_level_extension,
                recorder: self
                    .participants
                    .get(&owner)
                    .and_then(|p| p.recorder.clone()),
                forwarded_any: false,
            },
        );
        let others: Vec<ParticipantId> = self
            .rooms
            .get(&room)
            .map(|r| {
                r.participants
                    .iter()
                    .filter(|p| **p != owner)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        for subscriber in &others {
            self.subscribe(subscriber, key);
        }
        for subscriber in &others {
            if let Some(conn_id) = self.participants.get(subscriber).map(|p| p.subscriber) {
                self.negotiate(now, conn_id);
            }
        }
        let _ = self.events.send(SfuEvent::PublicationAdded {
            room,
            participant: owner,
            publication: id,
            kind,
            client_track_id: track.track_id,
        });
    }

    pub(super) fn publication_closed(&mut self, now: Instant, conn_id: ConnId, track_id: &str) {
        let Some(conn) = self.conns.get_mut(&conn_id) else {
            return;
        };
        let Some(key) = conn.publications_by_track.remove(track_id) else {
            return;
        };
        conn.publications_by_ssrc.retain(|_, k| *k != key);
        let Some(publication) = self.publications.remove(&key) else {
            return;
        };
        if let Some(owner) = self.participants.get_mut(&publication.owner) {
            owner.publications.retain(|k| *k != key);
        }
        info!(participant = %publication.owner, publication = %publication.id, "track unpublished");
        for conn_id in self.drop_subscriptions(&publication) {
            self.negotiate(now, conn_id);
        }
        self.announce_removed(publication);
    }

    fn announce_removed(&mut self, publication: Publication) {
        let _ = self.events.send(SfuEvent::PublicationRemoved {
            room: publication.room,
            participant: publication.owner,
            publication: publication.id,
        });
    }

    /// Detaches a removed publication from its subscribers' connections; returns those
    /// connections, which need a new offer.
    fn drop_subscriptions(&mut self, publication: &Publication) -> Vec<ConnId> {
        let mut touched = Vec::new();
        for subscription in &publication.subscriptions {
            if let Some(conn) = self.conns.get_mut(&subscription.conn) {
                let _ = conn.pc.remove_track(subscription.sender);
                conn.subscriptions_by_ssrc
                    .remove(&subscription.forwarder.ssrc());
                conn.needs_offer = true;
                touched.push(subscription.conn);
            }
        }
        touched
    }

    /// Adds one publication to one participant's subscriber connection (offered later by
    /// [`Engine::negotiate`]).
    fn subscribe(&mut self, subscriber: &ParticipantId, key: PubKey) {
        let Some(conn_id) = self
            .participants
            .get(subscriber)
            .filter(|p| p.policy.subscribe)
            .map(|p| p.subscriber)
        else {
            return;
        };
        let Some(publication) = self.publications.get_mut(&key) else {
            return;
        };
        let Some(stream_label) = self
            .participants
            .get(&publication.owner)
            .map(|owner| owner.stream_label.clone())
        else {
            return;
        };
        let Some(conn) = self.conns.get_mut(&conn_id) else {
            return;
        };
        let ssrc = rand::random::<u32>();
        let track = MediaStreamTrack::new(
            stream_label,
            publication.id.to_string(),
            publication.id.to_string(),
            match publication.kind {
                TrackKind::Audio => RtpCodecKind::Audio,
                TrackKind::Video => RtpCodecKind::Video,
            },
            vec![RTCRtpEncodingParameters {
                rtp_coding_parameters: RTCRtpCodingParameters {
                    ssrc: Some(ssrc),
                    ..Default::default()
                },
                codec: publication.codec.clone(),
                ..Default::default()
            }],
        );
        match conn.pc.add_track(track) {
            Ok(sender) => {
                conn.subscriptions_by_ssrc.insert(ssrc, key);
                conn.needs_offer = true;
                publication.subscriptions.push(Subscription {
                    subscriber: subscriber.clone(),
                    conn: conn_id,
                    sender,
                    forwarder: Forwarder::new(ssrc),
                    report: None,
                });
            }
            Err(error) => {
                debug!(%subscriber, publication = %publication.id, %error, "could not add subscription track");
            }
        }
    }

    /// Sends a new subscriber offer if tracks changed and no offer is outstanding; the
    /// answer handler calls this again, so changes during an exchange are not lost.
    pub(super) fn negotiate(&mut self, now: Instant, conn_id: ConnId) {
        let media_addr = self.media_addr;
        let timeout = self.config.connect_timeout;
        let Some(conn) = self.conns.get_mut(&conn_id) else {
            return;
        };
        if conn.awaiting_answer || !conn.needs_offer {
            return;
        }
        let participant = conn.participant.clone();
        let offer = conn
            .add_local_candidate_once(media_addr)
            .and_then(|_| conn.pc.create_offer(None))
            .and_then(|offer| conn.pc.set_local_description(now, offer));
        if let Err(error) = offer {
            self.fail_participant(
                now,
                &participant,
                &format!("could not create subscriber offer: {error}"),
            );
            return;
        }
        let Some(sdp) = conn.pc.local_description().map(|d| d.sdp) else {
            return;
        };
        conn.awaiting_answer = true;
        conn.needs_offer = false;
        if !conn.connected && conn.connect_deadline.is_none() {
            conn.connect_deadline = Some(now + timeout);
        }
        let _ = self
            .events
            .send(SfuEvent::SubscriberOffer { participant, sdp });
        self.drive(now, conn_id);
    }

    /// After an answer, each subscription learns the payload type its codec got on this
    /// connection; until then its forwarder holds packets back.
    fn bind_negotiated_payload_types(&mut self, conn_id: ConnId) {
        let Some(conn) = self.conns.get_mut(&conn_id) else {
            return;
        };
        let keys: Vec<PubKey> = conn.subscriptions_by_ssrc.values().copied().collect();
        for key in keys {
            let Some(publication) = self.publications.get_mut(&key) else {
                continue;
            };
            let mime = &publication.codec.mime_type;
            for subscription in publication
                .subscriptions
                .iter_mut()
                .filter(|s| s.conn == conn_id)
            {
                let Some(mut sender) = conn.pc.rtp_sender(subscription.sender) else {
                    continue;
                };
                let negotiated = sender
                    .get_parameters()
                    .rtp_parameters
                    .codecs
                    .iter()
                    .find(|codec| codec.rtp_codec.mime_type.eq_ignore_ascii_case(mime))
                    .map(|codec| codec.payload_type);
                match negotiated {
                    Some(payload_type) => subscription.forwarder.set_payload_type(payload_type),
                    None => {
                        debug!(subscriber = %subscription.subscriber, %mime, "subscriber did not accept the codec")
                    }
                }
            }
        }
    }
}

/// The RFC 6464 client-to-mixer audio level extension, negotiated on publisher connections.
pub(super) const AUDIO_LEVEL_URI: &str = "urn:ietf:params:rtp-hdrext:ssrc-audio-level";

fn kind_name(kind: TrackKind) -> &'static str {
    match kind {
        TrackKind::Audio => "audio",
        TrackKind::Video => "video",
    }
}
