//! The shared signaling state and every operation on it: presence, calls, and the bridge to
//! the SFU. Socket.IO specifics (extractors, acks) live in `namespace.rs`; this module only
//! needs to emit events to sockets.
//!
//! All state sits behind one `std::sync::Mutex`. Every operation is short and synchronous
//! under the lock (map lookups, a state-machine step, non-blocking socket emits), and the lock
//! is never held across an `.await`: SFU requests are made after unlocking and their results
//! are applied under a fresh lock, re-checking that the call still exists. Emitting *under*
//! the lock is deliberate: `SocketRef::emit` only queues the packet, and doing it there makes
//! every socket see events in the same order the state changed (a `call_ended` can never
//! overtake the `call_accepted` before it).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use serde::Serialize;
use serde_json::{json, Value};
use socketioxide::extract::{AckSender, SocketRef};
use socketioxide::socket::Sid;
use switchboard_sfu::{ParticipantId, PeerRole, RoomId, Sfu, SfuEvent, SfuEvents};
use tokio::task::AbortHandle;
use tracing::{debug, info, warn};

use crate::call::{Call, CallState, EndReason, HangupReason, Role};
use crate::identity::{Identity, NameError, TokenIssuer};
use crate::limits::{self, Bucket};
use crate::payload::{
    self, CallRef, EndCall, MediaState, WebrtcAnswer, WebrtcIceCandidate, WebrtcOffer,
};
use crate::presence::Presence;
use crate::{CallId, SignalingConfig, SignalingError, User, UserId};

pub(crate) mod recording;

/// The identity of one connected socket, fixed at connect.
#[derive(Clone)]
pub(crate) struct Me {
    pub socket: SocketRef,
    pub user: User,
    /// The verified token: grants and expiry, checked per event.
    pub identity: Arc<Identity>,
    /// The client's IP, when known: counted against `max_sockets_per_ip`.
    pub ip: Option<IpAddr>,
}

impl Me {
    fn sid(&self) -> Sid {
        self.socket.id
    }

    /// Refuses starting something new (placing or accepting a call) on an expired token, or
    /// without the `call` grant. Calls already running are not affected.
    fn check_may_call(&self) -> Result<(), SignalingError> {
        if self.identity.is_expired() {
            return Err(SignalingError::ExpiredToken);
        }
        if !self.identity.grants.call {
            return Err(SignalingError::MissingGrant("call"));
        }
        Ok(())
    }
}

/// Signaling counters for operators and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SignalingStats {
    pub online_users: usize,
    pub sockets: usize,
    pub calls: usize,
    pub active_calls: usize,
}

pub(crate) struct Hub {
    pub config: SignalingConfig,
    pub tokens: TokenIssuer,
    pub sfu: Sfu,
    state: Mutex<State>,
    /// Call transitions go to the call history through this (never blocks).
    history: crate::history_bridge::HistoryBridge,
    recording_config: recording::RecordingConfig,
}

#[derive(Default)]
struct State {
    presence: Presence<Sid>,
    sockets: HashMap<Sid, SocketRef>,
    /// Users who signed in through this server (online or not): tells `unknown_user` from
    /// `user_offline`. Tokens outlive a restart, so a reconnecting user is added at connect.
    known: HashMap<UserId, User>,
    calls: HashMap<CallId, CallEntry>,
    /// The call each user is in (ringing or active): the `busy` flag.
    user_calls: HashMap<UserId, CallId>,
    /// SFU participant → its call and socket, to route [`SfuEvent`]s.
    participants: HashMap<ParticipantId, (CallId, Sid)>,
    /// Connected sockets per client IP (IPs with none are removed).
    sockets_per_ip: HashMap<IpAddr, usize>,
    /// Per-user event bucket, shared by the user's sockets while they have one.
    user_events: HashMap<UserId, Arc<Bucket>>,
    shutting_down: bool,
}

struct CallEntry {
    call: Call,
    caller_socket: Sid,
    /// Set when the callee accepts; until then every socket of the callee rings.
    callee_socket: Option<Sid>,
    ring_timer: Option<AbortHandle>,
    /// `sfu.join` was requested for both participants: they must `leave` when the call ends.
    media_requested: bool,
    /// Both joins completed: media messages may flow.
    media_ready: bool,
    /// Trickled candidates so far, by `[role][target]` (caller/callee × publisher/subscriber).
    candidates: [[u32; 2]; 2],
    /// Whether the call is being recorded (`None`: not).
    recording: Option<recording::RecState>,
    /// For the setup-time and duration metrics.
    initiated_at: std::time::Instant,
    answered_at: Option<std::time::Instant>,
}

impl CallEntry {
    /// Checks that `me` belongs to the call: a participant, and (once the call is bound to a
    /// socket of theirs) on that socket.
    fn check_socket(&self, me: &Me) -> Result<Role, SignalingError> {
        let role = self.call.check_participant(&me.user.id)?;
        let bound = match role {
            Role::Caller => Some(self.caller_socket),
            Role::Callee => self.callee_socket,
        };
        match bound {
            Some(sid) if sid != me.sid() => Err(SignalingError::NotAParticipant),
            _ => Ok(role),
        }
    }

    fn socket_of(&self, role: Role) -> Option<Sid> {
        match role {
            Role::Caller => Some(self.caller_socket),
            Role::Callee => self.callee_socket,
        }
    }
}

/// The SFU participant of `user` in `call`: unique per call and user.
pub(crate) fn participant_id(call: &CallId, user: &UserId) -> ParticipantId {
    ParticipantId::new(format!("{call}/{user}"))
}

fn ok_ack(ack: &mut Option<AckSender>, extra: Value) {
    if let Some(ack) = ack.take() {
        let mut body = json!({ "ok": true });
        if let (Value::Object(body), Value::Object(extra)) = (&mut body, extra) {
            body.extend(extra);
        }
        // A socket that went away cannot be acked; nothing else to do.
        let _ = ack.send(&body);
    }
}

fn emit<T: Serialize + ?Sized>(socket: &SocketRef, event: &str, data: &T) {
    if let Err(e) = socket.emit(event, data) {
        debug!(sid = %socket.id, event, error = %e, "emit failed (socket closing)");
    }
}

fn user_json(user: &User) -> Value {
    json!({ "id": user.id, "name": user.name })
}

impl Hub {
    pub fn new(config: SignalingConfig, sfu: Sfu) -> Self {
        let tokens = TokenIssuer::new(&config.token_secret, config.token_lifetime);
        Self {
            config,
            tokens,
            sfu,
            state: Mutex::new(State::default()),
            history: crate::history_bridge::HistoryBridge::disabled(),
            recording_config: recording::RecordingConfig::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic under the lock would be a bug; the state is still consistent enough to keep
        // serving other users, so poisoning is ignored.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Issues a session token and remembers the user.
    pub fn issue(&self, name: &str) -> Result<(String, User), NameError> {
        let (token, user) = self.tokens.issue(name)?;
        self.lock().known.insert(user.id.clone(), user.clone());
        info!(user_id = %user.id, "session issued");
        Ok((token, user))
    }

    pub fn stats(&self) -> SignalingStats {
        let state = self.lock();
        SignalingStats {
            online_users: state.presence.snapshot(|_| false).len(),
            sockets: state.sockets.len(),
            calls: state.calls.len(),
            active_calls: state
                .calls
                .values()
                .filter(|e| e.call.state() == CallState::Active)
                .count(),
        }
    }

    // ---- connection lifecycle ----

    /// Whether one more socket of `user` from `ip` fits the limits. Checked at connect (for a
    /// precise `connect_error`) and again, atomically with registration, by [`Hub::connect`].
    fn check_socket_limits(
        &self,
        state: &State,
        user: &UserId,
        ip: Option<IpAddr>,
    ) -> Result<(), SignalingError> {
        let limits = &self.config.limits;
        if state.presence.sockets_of(user).count() >= limits.max_sockets_per_user {
            return Err(SignalingError::LimitExceeded(format!(
                "at most {} connections per user",
                limits.max_sockets_per_user
            )));
        }
        if let Some(ip) = ip {
            if state.sockets_per_ip.get(&ip).copied().unwrap_or(0) >= limits.max_sockets_per_ip {
                return Err(SignalingError::LimitExceeded(format!(
                    "at most {} connections per IP address",
                    limits.max_sockets_per_ip
                )));
            }
        }
        Ok(())
    }

    pub fn precheck_connect(
        &self,
        user: &UserId,
        ip: Option<IpAddr>,
    ) -> Result<(), SignalingError> {
        let state = self.lock();
        if state.shutting_down {
            return Err(SignalingError::Internal(
                "the server is shutting down".into(),
            ));
        }
        self.check_socket_limits(&state, user, ip)
    }

    /// Registers a connected socket. On `Err` nothing was registered and the socket must be
    /// disconnected. Returns the user's shared event bucket.
    pub fn connect(&self, me: &Me) -> Result<Arc<Bucket>, SignalingError> {
        let mut state = self.lock();
        self.check_socket_limits(&state, &me.user.id, me.ip)?;
        if let Some(ip) = me.ip {
            *state.sockets_per_ip.entry(ip).or_insert(0) += 1;
        }
        let limits = &self.config.limits;
        let bucket = Arc::clone(
            state
                .user_events
                .entry(me.user.id.clone())
                .or_insert_with(|| {
                    Arc::new(limits::bucket(
                        limits.user_events_per_sec,
                        limits.user_event_burst,
                    ))
                }),
        );
        state.known.insert(me.user.id.clone(), me.user.clone());
        state.sockets.insert(me.sid(), me.socket.clone());
        state.presence.add_socket(&me.user, me.sid());
        info!(user_id = %me.user.id, sid = %me.sid(), "socket connected");
        broadcast_presence(&state);
        Ok(bucket)
    }

    pub fn disconnect(&self, me: &Me) {
        let mut state = self.lock();
        let sid = me.sid();
        if state.sockets.remove(&sid).is_none() {
            // Already disconnected (the connect path may race the disconnect handler).
            return;
        }
        let went_offline = state.presence.remove_socket(&me.user.id, &sid);
        if went_offline {
            state.user_events.remove(&me.user.id);
        }
        if let Some(ip) = me.ip {
            if let Some(count) = state.sockets_per_ip.get_mut(&ip) {
                *count = count.saturating_sub(1);
                if *count == 0 {
                    state.sockets_per_ip.remove(&ip);
                }
            }
        }
        let ended: Vec<CallId> = state
            .calls
            .iter()
            .filter(|(_, e)| {
                e.caller_socket == sid
                    || e.callee_socket == Some(sid)
                    || (went_offline
                        && e.callee_socket.is_none()
                        && e.call.callee().id == me.user.id)
            })
            .map(|(id, _)| id.clone())
            .collect();
        for call_id in ended {
            let entry = state.calls.get_mut(&call_id).expect("collected above");
            if let Ok(reason) = entry.call.disconnect(&me.user.id) {
                self.finish_call(&mut state, &call_id, reason, Some(&me.user));
            }
        }
        info!(user_id = %me.user.id, %sid, went_offline, "socket disconnected");
        broadcast_presence(&state);
    }

    // ---- calls ----

    pub fn initiate(
        self: &Arc<Self>,
        me: &Me,
        value: &Value,
        ack: &mut Option<AckSender>,
    ) -> Result<(), SignalingError> {
        let p: payload::InitiateCall = payload::parse(value, self.config.max_payload_bytes)?;
        me.check_may_call()?;
        if me.identity.grants.rooms.is_some() {
            return Err(SignalingError::MissingGrant(
                "call (a token limited to given rooms cannot place new calls)",
            ));
        }
        let mut state = self.lock();
        if state.shutting_down {
            return Err(SignalingError::Internal(
                "the server is shutting down".into(),
            ));
        }
        if p.to == me.user.id {
            return Err(SignalingError::SelfCall);
        }
        let Some(callee) = state.presence.user(&p.to).cloned() else {
            return Err(if state.known.contains_key(&p.to) {
                SignalingError::UserOffline
            } else {
                SignalingError::UnknownUser
            });
        };
        if state.user_calls.contains_key(&me.user.id) {
            return Err(SignalingError::Busy("you are"));
        }
        if state.user_calls.contains_key(&callee.id) {
            return Err(SignalingError::Busy("the callee is"));
        }
        let call_id = CallId::random();
        let call = Call::new(call_id.clone(), p.kind, me.user.clone(), callee.clone())?;

        let timer = {
            let hub = Arc::clone(self);
            let call_id = call_id.clone();
            let ring_timeout = self.config.ring_timeout;
            tokio::spawn(async move {
                tokio::time::sleep(ring_timeout).await;
                hub.ring_timeout(&call_id);
            })
            .abort_handle()
        };
        state.calls.insert(
            call_id.clone(),
            CallEntry {
                call,
                caller_socket: me.sid(),
                callee_socket: None,
                ring_timer: Some(timer),
                media_requested: false,
                media_ready: false,
                candidates: [[0; 2]; 2],
                recording: None,
                initiated_at: std::time::Instant::now(),
                answered_at: None,
            },
        );
        state.user_calls.insert(me.user.id.clone(), call_id.clone());
        state.user_calls.insert(callee.id.clone(), call_id.clone());
        info!(%call_id, user_id = %me.user.id, callee_id = %callee.id, kind = ?p.kind, "call ringing");
        self.history.started(&call_id, p.kind, &me.user, &callee);

        ok_ack(ack, json!({ "call_id": call_id }));
        emit(
            &me.socket,
            "call_ringing",
            &json!({ "call_id": call_id, "kind": p.kind, "to": user_json(&callee) }),
        );
        let incoming = json!({ "call_id": call_id, "kind": p.kind, "from": user_json(&me.user) });
        for sid in state.presence.sockets_of(&callee.id) {
            if let Some(socket) = state.sockets.get(sid) {
                emit(socket, "incoming_call", &incoming);
            }
        }
        broadcast_presence(&state);
        Ok(())
    }

    pub async fn accept(
        self: &Arc<Self>,
        me: &Me,
        value: &Value,
        ack: &mut Option<AckSender>,
    ) -> Result<(), SignalingError> {
        let p: CallRef = payload::parse(value, self.config.max_payload_bytes)?;
        let call_id = p.call_id;
        me.check_may_call()?;
        if !me.identity.grants.allows_room(call_id.as_str()) {
            return Err(SignalingError::MissingGrant(
                "rooms (this call is not in them)",
            ));
        }
        let (caller, callee) = {
            let mut state = self.lock();
            let entry = state
                .calls
                .get_mut(&call_id)
                .ok_or(SignalingError::UnknownCall)?;
            entry.check_socket(me)?;
            entry.call.accept(&me.user.id)?;
            entry.callee_socket = Some(me.sid());
            entry.media_requested = true;
            self.history.answered(&call_id);
            entry.answered_at = Some(std::time::Instant::now());
            if let Some(timer) = entry.ring_timer.take() {
                timer.abort();
            }
            let caller = entry.call.caller().clone();
            let callee = entry.call.callee().clone();
            let caller_socket = entry.caller_socket;
            for (user, sid) in [(&caller, caller_socket), (&callee, me.sid())] {
                state
                    .participants
                    .insert(participant_id(&call_id, &user.id), (call_id.clone(), sid));
            }
            (caller, callee)
        };
        info!(%call_id, user_id = %me.user.id, "call accepted; joining the SFU room");

        // Join both before anyone hears `call_accepted`, so their first offer finds them.
        let room = RoomId::new(call_id.as_str());
        let mut joined = Ok(());
        for user in [&caller, &callee] {
            let pid = participant_id(&call_id, &user.id);
            if let Err(e) = self.sfu.join(room.clone(), pid, user.id.as_str()).await {
                warn!(%call_id, user_id = %user.id, error = %e, "SFU join failed");
                joined = Err(SignalingError::Internal(format!("media setup failed: {e}")));
                break;
            }
        }

        let mut state = self.lock();
        let still_active = state
            .calls
            .get(&call_id)
            .is_some_and(|e| e.call.state() == CallState::Active);
        if !still_active {
            // Ended while we were joining; its end already asked the SFU to free the
            // participants, but a join may have landed after that.
            self.spawn_leave(&call_id, [&caller.id, &callee.id]);
            return Err(SignalingError::UnknownCall);
        }
        if let Err(e) = joined {
            let entry = state.calls.get_mut(&call_id).expect("checked above");
            if let Ok(reason) = entry.call.terminate(EndReason::Failed) {
                self.finish_call(&mut state, &call_id, reason, None);
            }
            return Err(e);
        }
        let entry = state.calls.get_mut(&call_id).expect("checked above");
        entry.media_ready = true;
        let kind = entry.call.kind();
        let sockets = [entry.caller_socket, me.sid()];
        ok_ack(ack, json!({}));
        let accepted = json!({
            "call_id": call_id,
            "kind": kind,
            "participants": [user_json(&caller), user_json(&callee)],
        });
        for sid in sockets {
            if let Some(socket) = state.sockets.get(&sid) {
                emit(socket, "call_accepted", &accepted);
            }
        }
        // The callee's other sockets rang too: stop them.
        let elsewhere = json!({ "call_id": call_id, "reason": "answered_elsewhere" });
        for sid in state.presence.sockets_of(&callee.id) {
            if *sid != me.sid() {
                if let Some(socket) = state.sockets.get(sid) {
                    emit(socket, "call_ended", &elsewhere);
                }
            }
        }
        Ok(())
    }

    pub fn reject(
        &self,
        me: &Me,
        value: &Value,
        ack: &mut Option<AckSender>,
    ) -> Result<(), SignalingError> {
        let p: CallRef = payload::parse(value, self.config.max_payload_bytes)?;
        let mut state = self.lock();
        let entry = state
            .calls
            .get_mut(&p.call_id)
            .ok_or(SignalingError::UnknownCall)?;
        entry.check_socket(me)?;
        let reason = entry.call.reject(&me.user.id)?;
        info!(call_id = %p.call_id, user_id = %me.user.id, "call rejected");
        ok_ack(ack, json!({}));
        self.finish_call(&mut state, &p.call_id, reason, Some(&me.user));
        Ok(())
    }

    pub fn end(
        &self,
        me: &Me,
        value: &Value,
        ack: &mut Option<AckSender>,
    ) -> Result<(), SignalingError> {
        let p: EndCall = payload::parse(value, self.config.max_payload_bytes)?;
        let mut state = self.lock();
        let entry = state
            .calls
            .get_mut(&p.call_id)
            .ok_or(SignalingError::UnknownCall)?;
        entry.check_socket(me)?;
        let reason = entry
            .call
            .end(&me.user.id, p.reason.unwrap_or(HangupReason::Hangup))?;
        info!(call_id = %p.call_id, user_id = %me.user.id, reason = reason.as_str(), "call ended by participant");
        ok_ack(ack, json!({}));
        self.finish_call(&mut state, &p.call_id, reason, Some(&me.user));
        Ok(())
    }

    fn ring_timeout(&self, call_id: &CallId) {
        let mut state = self.lock();
        let Some(entry) = state.calls.get_mut(call_id) else {
            return;
        };
        if let Ok(reason) = entry.call.timeout() {
            info!(%call_id, "call not answered in time");
            self.finish_call(&mut state, call_id, reason, None);
        }
    }

    // ---- media ----

    /// Checks that `me` may send media messages in `call_id` and returns its SFU participant.
    fn media_participant(
        &self,
        me: &Me,
        call_id: &CallId,
    ) -> Result<ParticipantId, SignalingError> {
        let state = self.lock();
        let entry = state
            .calls
            .get(call_id)
            .ok_or(SignalingError::UnknownCall)?;
        entry.check_socket(me)?;
        entry.call.check_media(&me.user.id)?;
        if !entry.media_ready {
            return Err(SignalingError::InvalidState(
                "the call's media is still being set up".into(),
            ));
        }
        Ok(participant_id(call_id, &me.user.id))
    }

    fn check_sdp_size(&self, sdp: &str) -> Result<(), SignalingError> {
        let limit = self.config.limits.max_sdp_bytes;
        if sdp.len() > limit {
            return Err(SignalingError::PayloadTooLarge {
                size: sdp.len(),
                limit,
            });
        }
        Ok(())
    }

    /// Counts one trickled candidate against `max_candidates_per_connection`.
    fn count_candidate(
        &self,
        me: &Me,
        call_id: &CallId,
        target: PeerRole,
    ) -> Result<(), SignalingError> {
        let mut state = self.lock();
        let entry = state
            .calls
            .get_mut(call_id)
            .ok_or(SignalingError::UnknownCall)?;
        let role = entry.check_socket(me)?;
        let count = &mut entry.candidates[role as usize][match target {
            PeerRole::Publisher => 0,
            PeerRole::Subscriber => 1,
        }];
        let limit = self.config.limits.max_candidates_per_connection;
        if *count >= limit {
            return Err(SignalingError::LimitExceeded(format!(
                "at most {limit} ICE candidates per connection"
            )));
        }
        *count += 1;
        Ok(())
    }

    /// Re-checks after an SFU request that the call is still there.
    fn still_in_call(
        &self,
        me: &Me,
        call_id: &CallId,
    ) -> Result<MutexGuard<'_, State>, SignalingError> {
        let state = self.lock();
        let entry = state
            .calls
            .get(call_id)
            .ok_or(SignalingError::UnknownCall)?;
        entry.check_socket(me)?;
        Ok(state)
    }

    pub async fn offer(
        &self,
        me: &Me,
        value: &Value,
        ack: &mut Option<AckSender>,
    ) -> Result<(), SignalingError> {
        let p: WebrtcOffer = payload::parse(value, self.config.max_payload_bytes)?;
        self.check_sdp_size(&p.sdp)?;
        let summary = crate::sdp::summarize(&p.sdp);
        let grants = &me.identity.grants;
        if summary.sending_audio > 0 && !grants.may_publish(crate::identity::PublishSource::Audio) {
            return Err(SignalingError::MissingGrant("publish audio"));
        }
        if summary.sending_video > 0 && !grants.may_publish_video() {
            return Err(SignalingError::MissingGrant("publish video or screen"));
        }
        let max_tracks = self.config.limits.max_tracks_per_participant;
        if summary.sending_tracks() > max_tracks {
            return Err(SignalingError::LimitExceeded(format!(
                "at most {max_tracks} published tracks per participant"
            )));
        }
        let pid = self.media_participant(me, &p.call_id)?;
        let answer = self.sfu.publish(pid, p.sdp).await.inspect_err(|e| {
            warn!(call_id = %p.call_id, user_id = %me.user.id, error = %e, "publisher offer refused");
        })?;
        let _state = self.still_in_call(me, &p.call_id)?;
        ok_ack(ack, json!({}));
        emit(
            &me.socket,
            "webrtc_answer",
            &json!({ "call_id": p.call_id, "target": "publisher", "sdp": answer }),
        );
        Ok(())
    }

    pub async fn answer(
        &self,
        me: &Me,
        value: &Value,
        ack: &mut Option<AckSender>,
    ) -> Result<(), SignalingError> {
        let p: WebrtcAnswer = payload::parse(value, self.config.max_payload_bytes)?;
        self.check_sdp_size(&p.sdp)?;
        if !me.identity.grants.subscribe {
            return Err(SignalingError::MissingGrant("subscribe"));
        }
        let pid = self.media_participant(me, &p.call_id)?;
        self.sfu.subscriber_answer(pid, p.sdp).await.inspect_err(|e| {
            warn!(call_id = %p.call_id, user_id = %me.user.id, error = %e, "subscriber answer refused");
        })?;
        let _state = self.still_in_call(me, &p.call_id)?;
        ok_ack(ack, json!({}));
        Ok(())
    }

    pub async fn candidate(
        &self,
        me: &Me,
        value: &Value,
        ack: &mut Option<AckSender>,
    ) -> Result<(), SignalingError> {
        let p: WebrtcIceCandidate = payload::parse(value, self.config.max_payload_bytes)?;
        let pid = self.media_participant(me, &p.call_id)?;
        self.count_candidate(me, &p.call_id, p.target)?;
        self.sfu
            .add_remote_candidate(pid, p.target, p.candidate)
            .await?;
        let _state = self.still_in_call(me, &p.call_id)?;
        ok_ack(ack, json!({}));
        Ok(())
    }

    pub fn media_state(
        &self,
        me: &Me,
        value: &Value,
        ack: &mut Option<AckSender>,
    ) -> Result<(), SignalingError> {
        let p: MediaState = payload::parse(value, self.config.max_payload_bytes)?;
        let state = self.lock();
        let entry = state
            .calls
            .get(&p.call_id)
            .ok_or(SignalingError::UnknownCall)?;
        let role = entry.check_socket(me)?;
        entry.call.check_media(&me.user.id)?;
        ok_ack(ack, json!({}));
        let other = match role {
            Role::Caller => Role::Callee,
            Role::Callee => Role::Caller,
        };
        if let Some(socket) = entry
            .socket_of(other)
            .and_then(|sid| state.sockets.get(&sid))
        {
            emit(
                socket,
                "participant_media_state",
                &json!({ "call_id": p.call_id, "user_id": me.user.id, "audio": p.audio, "video": p.video }),
            );
        }
        Ok(())
    }

    // ---- SFU events ----

    /// Consumes the SFU's events until the SFU stops.
    pub async fn run_sfu_events(self: Arc<Self>, mut events: SfuEvents) {
        while let Some(event) = events.recv().await {
            self.on_sfu_event(event);
        }
        debug!("SFU event stream closed");
    }

    fn on_sfu_event(&self, event: SfuEvent) {
        let mut state = self.lock();
        match event {
            SfuEvent::SubscriberOffer { participant, sdp } => {
                let Some((call_id, sid)) = state.participants.get(&participant) else {
                    debug!(%participant, "subscriber offer for a participant no longer in a call");
                    return;
                };
                if let Some(socket) = state.sockets.get(sid) {
                    emit(
                        socket,
                        "webrtc_offer",
                        &json!({ "call_id": call_id, "target": "subscriber", "sdp": sdp }),
                    );
                }
            }
            SfuEvent::ParticipantFailed {
                participant,
                reason,
            } => {
                let Some((call_id, _)) = state.participants.get(&participant).cloned() else {
                    return;
                };
                warn!(%call_id, %participant, %reason, "media connection failed; ending the call");
                if let Some((_, user_id)) = recording::user_of(&participant) {
                    self.history.left(&call_id, &user_id);
                }
                if let Some(entry) = state.calls.get_mut(&call_id) {
                    if let Ok(reason) = entry.call.terminate(EndReason::Failed) {
                        self.finish_call(&mut state, &call_id, reason, None);
                    }
                }
            }
            SfuEvent::Connected { participant, role } => {
                debug!(%participant, ?role, "media connected");
                if state.participants.contains_key(&participant) {
                    if let Some((call_id, user_id)) = recording::user_of(&participant) {
                        self.history.joined(&call_id, &user_id);
                    }
                }
            }
            SfuEvent::PublicationAdded {
                participant,
                publication,
                kind,
                ..
            } => {
                debug!(%participant, ?kind, "publication added");
                self.relay_to_call(
                    &state,
                    &participant,
                    "track_published",
                    json!({ "track_id": publication.as_str(), "kind": kind }),
                );
            }
            SfuEvent::MediaFlowing { room } => {
                if let Some(entry) = state.calls.get(&CallId::new(room.as_str())) {
                    crate::metrics::call_media_started(entry.initiated_at.elapsed());
                }
            }
            SfuEvent::Quality {
                participant,
                quality,
                ..
            } => {
                // Aggregated per participant for the history; reports after the end are late.
                if state.participants.contains_key(&participant) {
                    if let Some((call_id, user_id)) = recording::user_of(&participant) {
                        self.history.quality(&call_id, &user_id, quality);
                    }
                    self.relay_to_call(
                        &state,
                        &participant,
                        "participant_quality",
                        json!({ "quality": quality }),
                    );
                }
            }
            SfuEvent::RecordingStopped { room, reason } => {
                self.on_recording_stopped(&mut state, &room, &reason);
            }
            SfuEvent::RecordingFinished {
                room,
                participant,
                result,
            } => self.on_recording_finished(&room, &participant, &result),
            // Group-call events (track list, active speaker) are not relayed yet.
            SfuEvent::PublicationRemoved {
                participant,
                publication,
                ..
            } => self.relay_to_call(
                &state,
                &participant,
                "track_unpublished",
                json!({ "track_id": publication.as_str() }),
            ),
            SfuEvent::ActiveSpeaker { participant, .. } => {
                self.relay_to_call(&state, &participant, "active_speaker", json!({}))
            }
        }
    }

    /// Tells everyone in `participant`'s call something about that participant: `body` gains
    /// the `call_id` and the `user_id` it is about.
    fn relay_to_call(
        &self,
        state: &State,
        participant: &ParticipantId,
        event: &str,
        mut body: serde_json::Value,
    ) {
        let Some((call_id, user_id)) = recording::user_of(participant) else {
            return;
        };
        let Some(entry) = state.calls.get(&call_id) else {
            return; // reports racing the call's end
        };
        body["call_id"] = json!(call_id);
        body["user_id"] = json!(user_id);
        recording::to_participants(state, entry, event, &body);
    }

    // ---- ending ----

    /// Removes an ended call, tells its participants, and frees its SFU participants.
    fn finish_call(
        &self,
        state: &mut State,
        call_id: &CallId,
        reason: EndReason,
        by: Option<&User>,
    ) {
        let Some(mut entry) = state.calls.remove(call_id) else {
            return;
        };
        if let Some(timer) = entry.ring_timer.take() {
            timer.abort();
        }
        let (caller, callee) = (entry.call.caller().clone(), entry.call.callee().clone());
        for user in [&caller, &callee] {
            if state.user_calls.get(&user.id) == Some(call_id) {
                state.user_calls.remove(&user.id);
            }
            state
                .participants
                .remove(&participant_id(call_id, &user.id));
        }
        info!(%call_id, reason = reason.as_str(), by = by.map(|u| u.id.as_str()), "call ended");
        self.history
            .ended(call_id, reason, entry.callee_socket.is_some());
        self.recording_ends_with_call(state, &mut entry, call_id, reason);
        crate::metrics::call_ended(reason.as_str(), entry.answered_at.map(|at| at.elapsed()));

        let mut targets = vec![entry.caller_socket];
        match entry.callee_socket {
            Some(sid) => targets.push(sid),
            // Still ringing: every socket of the callee rings and must stop.
            None => targets.extend(state.presence.sockets_of(&callee.id).copied()),
        }
        if reason == EndReason::Rejected {
            if let Some(socket) = state.sockets.get(&entry.caller_socket) {
                emit(
                    socket,
                    "call_rejected",
                    &json!({ "call_id": call_id, "by": user_json(&callee) }),
                );
            }
        }
        let mut ended = json!({ "call_id": call_id, "reason": reason });
        if let Some(by) = by {
            ended["by"] = user_json(by);
        }
        for sid in targets {
            if let Some(socket) = state.sockets.get(&sid) {
                emit(socket, "call_ended", &ended);
            }
        }
        broadcast_presence(state);
        if entry.media_requested {
            self.spawn_leave(call_id, [&caller.id, &callee.id]);
        }
    }

    fn spawn_leave(&self, call_id: &CallId, users: [&UserId; 2]) {
        let pids = users.map(|u| participant_id(call_id, u));
        let sfu = self.sfu.clone();
        tokio::spawn(async move {
            for pid in pids {
                // Unknown participants are fine: leave may race a join that never happened.
                if let Err(e) = sfu.leave(pid.clone()).await {
                    debug!(participant = %pid, error = %e, "SFU leave");
                }
            }
        });
    }

    /// Ends every call with `shutdown`, refuses new ones, and waits until the SFU has freed
    /// the participants.
    pub async fn shutdown(&self) {
        let to_leave: Vec<(CallId, [UserId; 2])> = {
            let mut state = self.lock();
            state.shutting_down = true;
            let ids: Vec<CallId> = state.calls.keys().cloned().collect();
            let mut to_leave = Vec::new();
            for call_id in ids {
                let entry = state.calls.get_mut(&call_id).expect("listed above");
                if entry.media_requested {
                    to_leave.push((
                        call_id.clone(),
                        [
                            entry.call.caller().id.clone(),
                            entry.call.callee().id.clone(),
                        ],
                    ));
                    // Freed below, synchronously, instead of by finish_call's spawned task.
                    entry.media_requested = false;
                }
                if let Ok(reason) = entry.call.terminate(EndReason::Shutdown) {
                    self.finish_call(&mut state, &call_id, reason, None);
                }
            }
            to_leave
        };
        for (call_id, users) in to_leave {
            for user in users {
                let _ = self.sfu.leave(participant_id(&call_id, &user)).await;
            }
        }
    }
}

fn broadcast_presence(state: &State) {
    let users = state
        .presence
        .snapshot(|id| state.user_calls.contains_key(id));
    let payload = json!({ "users": users });
    for socket in state.sockets.values() {
        emit(socket, "presence", &payload);
    }
}
