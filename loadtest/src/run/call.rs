//! A room through Switchboard's real signaling: one group call (protocol §7.1).
//!
//! The room's members sign in and connect one after the other through the run's pacer,
//! publishers first. The first of them (the first publisher, or the first subscriber when
//! nobody publishes) then calls all the others with one `initiate_call`, and each accepts its
//! `incoming_call` in turn, without pacing: the ramp spaces sign-ins, as it always has for this
//! target, and nobody is left ringing towards the server's ring timeout while other rooms
//! sign in. Publishers send audio (and video in a video call); subscribers are receive-only
//! participants ([`ParticipantConfig::publish`] off), which still connect a publisher
//! connection, with nothing on it.
//!
//! How many may be in one call is the server's to say (`--max-participants-per-call`, 16 by
//! default): a larger room is refused with `limit_exceeded`, and the failure says so.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use webrtc::peer_connection::RTCPeerConnectionState;

use super::{expected_tracks, roster, Conn, Failures, Member, Pacer, Registry, RunConfig};
use crate::media::{self, SendStats};
use crate::{
    CallId, CallKind, MediaEvent, Participant, ParticipantConfig, ParticipantError,
    ParticipantEvent, ParticipantEvents, ServerEvent, SignalingError, UserId,
};

/// How long an invitee waits for its `incoming_call`. Signaling on loopback takes
/// milliseconds; this only bounds a hang.
const SIGNAL_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a publisher's media may take to be set up after it is in the call (its
/// `call_accepted` is handled after the accept's acknowledgement).
const MEDIA_SETUP_TIMEOUT: Duration = Duration::from_secs(5);

/// A member signed in and online, not in the call yet.
struct Online {
    name: String,
    publish: bool,
    participant: Participant,
    events: ParticipantEvents,
}

/// Makes room `room` one call of `config.publishers` publishers and `config.subscribers`
/// subscribers on the server at `url`. Returns the members that are in the call; the others
/// are counted in `registry.failed_joins` and their reasons pushed to `failures`.
pub(super) async fn join_call(
    url: &str,
    config: &RunConfig,
    room: usize,
    pacer: &Pacer,
    failures: &Arc<Failures>,
    registry: &Registry,
) -> Vec<Member> {
    let failed = |n: usize| {
        registry.failed_joins.fetch_add(n, Ordering::Relaxed);
    };
    let http = reqwest::Client::new();
    let mut online = Vec::new();
    for (name, publish) in roster(config, room) {
        let participant_config = ParticipantConfig {
            peer: config.peer.clone(),
            publish,
            ..ParticipantConfig::default()
        };
        pacer.wait().await;
        match Participant::join(&http, url, &name, participant_config).await {
            Ok((participant, events)) => online.push(Online {
                name,
                publish,
                participant,
                events,
            }),
            Err(e) => {
                failed(1);
                failures.push(format!("{name}: sign-in: {}", explain_join(&e)));
            }
        }
    }
    if online.len() < 2 {
        if !online.is_empty() {
            failed(online.len());
            failures.push(format!(
                "room {room}: a call needs two members, only {} signed in",
                online.len()
            ));
            close_all(online).await;
        }
        return Vec::new();
    }

    let mut online = online.into_iter();
    let caller = online.next().expect("two members online");
    let invitees: Vec<Online> = online.collect();
    let kind = if config.audio_only {
        CallKind::Voice
    } else {
        CallKind::Video
    };
    let callees: Vec<UserId> = invitees
        .iter()
        .map(|m| m.participant.user().id.clone())
        .collect();
    mark_started(&caller.participant);
    let call = match caller
        .participant
        .signaling()
        .initiate_group_call(&callees, kind)
        .await
    {
        Ok(call) => call,
        Err(e) => {
            let size = 1 + invitees.len();
            failed(size);
            failures.push(format!(
                "room {room}: {}: initiate_call: {}",
                caller.name,
                explain_initiate(&e, size)
            ));
            close_all(std::iter::once(caller).chain(invitees)).await;
            return Vec::new();
        }
    };

    // (publishes, member) of everyone in the call.
    let mut in_the_call = Vec::with_capacity(1 + invitees.len());
    let publish = caller.publish;
    let member = in_call(
        caller,
        &call,
        room,
        expected_tracks(config, publish),
        failures,
    );
    registry.add(&member);
    in_the_call.push((publish, member));
    for mut m in invitees {
        match accept(&mut m, &call).await {
            Ok(()) => {
                let publish = m.publish;
                let member = in_call(m, &call, room, expected_tracks(config, publish), failures);
                registry.add(&member);
                in_the_call.push((publish, member));
            }
            Err(e) => {
                failed(1);
                failures.push(format!("{}: {e}", m.name));
                m.participant.close().await;
            }
        }
    }
    // Not before: the caller sets its media up on the first accept.
    let mut members = Vec::with_capacity(in_the_call.len());
    for (publish, mut member) in in_the_call {
        if let (true, Conn::Call(participant, _)) = (publish, &member.conn) {
            member.send = publisher_stats(participant).await;
        }
        members.push(member);
    }
    members
}

/// Time to first packet counts from the moment a member enters the call.
fn mark_started(participant: &Participant) {
    participant
        .receive_stats()
        .started_us
        .store(media::unix_micros(), Ordering::Relaxed);
}

/// Waits for `m`'s `incoming_call` for `call`, then accepts it.
async fn accept(m: &mut Online, call: &CallId) -> Result<(), String> {
    let ring = async {
        while let Some(event) = m.events.recv().await {
            match event {
                ParticipantEvent::Signal(ServerEvent::IncomingCall { call_id, .. })
                    if call_id == *call =>
                {
                    return Ok(());
                }
                ParticipantEvent::Signal(ServerEvent::Disconnected { reason }) => {
                    return Err(format!("signaling disconnected: {reason}"));
                }
                _ => {}
            }
        }
        Err("event stream ended before incoming_call".to_owned())
    };
    tokio::time::timeout(SIGNAL_TIMEOUT, ring)
        .await
        .map_err(|_| format!("no incoming_call within {SIGNAL_TIMEOUT:?}"))??;
    mark_started(&m.participant);
    m.participant
        .signaling()
        .accept_call(call)
        .await
        .map_err(|e| format!("accept_call: {e}"))
}

/// `m` is in `call`: from here on, whatever ends its call or its media is a failure.
fn in_call(
    m: Online,
    call: &CallId,
    room: usize,
    expected_tracks: usize,
    failures: &Arc<Failures>,
) -> Member {
    let Online {
        name,
        participant,
        mut events,
        ..
    } = m;
    let (who, failures) = (name.clone(), Arc::clone(failures));
    tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            if let Some(failure) = failure(&event) {
                failures.push(format!("{who}: {failure}"));
            }
        }
    });
    Member {
        name,
        room,
        expected_tracks,
        send: None,
        receive: Arc::clone(participant.receive_stats()),
        conn: Conn::Call(Box::new(participant), Some(call.clone())),
    }
}

/// What in a participant's events means it is no longer fully in its call.
fn failure(event: &ParticipantEvent) -> Option<String> {
    match event {
        ParticipantEvent::Media(MediaEvent::Failed { error, .. }) => {
            Some(format!("media failed: {error}"))
        }
        ParticipantEvent::Media(MediaEvent::PeerState {
            target,
            state: RTCPeerConnectionState::Failed,
        }) => Some(format!("{target:?} connection failed")),
        ParticipantEvent::Signal(ServerEvent::Error(e)) => {
            Some(format!("server error {}: {}", e.code, e.message))
        }
        ParticipantEvent::Signal(ServerEvent::CallEnded { reason, .. }) => {
            Some(format!("call ended: {reason:?}"))
        }
        ParticipantEvent::Signal(ServerEvent::Disconnected { reason }) => {
            Some(format!("signaling disconnected: {reason}"))
        }
        _ => None,
    }
}

/// The publisher's send counters, once the participant has set its media up.
async fn publisher_stats(participant: &Participant) -> Option<Arc<SendStats>> {
    let deadline = tokio::time::Instant::now() + MEDIA_SETUP_TIMEOUT;
    loop {
        let media = participant.media();
        if let Some(publisher) = media.as_ref().and_then(|m| m.publisher.as_ref()) {
            return Some(Arc::clone(publisher.stats()));
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn close_all(members: impl IntoIterator<Item = Online>) {
    for m in members {
        m.participant.close().await;
    }
}

/// A sign-in failure, with what to do about the one limit a load test runs into.
fn explain_join(e: &ParticipantError) -> String {
    match e {
        ParticipantError::Signaling(SignalingError::ConnectRefused(code))
            if code == "too_many_connections" =>
        {
            format!(
                "{e} (the server takes at most --max-sockets-per-ip Socket.IO connections from \
                 one address, 64 by default, and every member is one)"
            )
        }
        _ => e.to_string(),
    }
}

/// An `initiate_call` failure; `limit_exceeded` here means the room is larger than a call.
fn explain_initiate(e: &SignalingError, size: usize) -> String {
    match e {
        SignalingError::Refused { code, message, .. } if code == "limit_exceeded" => format!(
            "the server refused a call of {size} members with limit_exceeded ({message}): \
             with --target switchboard a room is one call, so --publishers + --subscribers \
             must fit the server's --max-participants-per-call (16 by default); \
             --target sfu runs larger rooms"
        ),
        _ => e.to_string(),
    }
}
