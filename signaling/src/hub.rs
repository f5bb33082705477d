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
use switchboard_sfu::{ParticipantId, Sfu, TrackKind};
use tokio::task::AbortHandle;
use tracing::{debug, info};

use crate::call::{Call, CallState, Member};
use crate::identity::{Identity, NameError, TokenIssuer};
use crate::limits::{self, Bucket};
use crate::payload::TrackSource;
use crate::presence::Presence;
use crate::{CallId, SignalingConfig, SignalingError, User, UserId};

mod calls;
mod media;
pub(crate) mod recording;
mod sfu_events;

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
    /// The call each user is in (ringing or joined): the `busy` flag.
    user_calls: HashMap<UserId, CallId>,
    /// Connected sockets per client IP (IPs with none are removed).
    sockets_per_ip: HashMap<IpAddr, usize>,
    /// Per-user event bucket, shared by the user's sockets while they have one.
    user_events: HashMap<UserId, Arc<Bucket>>,
    shutting_down: bool,
}

impl State {
    /// Emits `event` to each of `sids` that is still connected.
    fn send(&self, sids: impl IntoIterator<Item = Sid>, event: &str, body: &Value) {
        for sid in sids {
            if let Some(socket) = self.sockets.get(&sid) {
                emit(socket, event, body);
            }
        }
    }

    /// The call `call_id`, checked to be one `me` may act in (see [`CallEntry::check_socket`]).
    fn call_of(&self, me: &Me, call_id: &CallId) -> Result<&CallEntry, SignalingError> {
        let entry = self.calls.get(call_id).ok_or(SignalingError::UnknownCall)?;
        entry.check_socket(me)?;
        Ok(entry)
    }

    /// [`State::call_of`], mutable.
    fn call_of_mut(&mut self, me: &Me, call_id: &CallId) -> Result<&mut CallEntry, SignalingError> {
        let entry = self
            .calls
            .get_mut(call_id)
            .ok_or(SignalingError::UnknownCall)?;
        entry.check_socket(me)?;
        Ok(entry)
    }

    /// The call and seat of an SFU participant whose member is still in the call (asked to
    /// join the SFU room and not gone): how SFU events find their member. Reports about anyone
    /// else are late and ignored.
    fn seat_of(&mut self, participant: &ParticipantId) -> Option<(CallId, UserId, &mut Seat)> {
        let (call_id, user_id) = recording::user_of(participant)?;
        // The full id, generation included: reports about an earlier join are stale.
        let seat = self
            .calls
            .get_mut(&call_id)?
            .seats
            .get_mut(&user_id)
            .filter(|seat| {
                seat.media_requested && seat.participant.as_ref() == Some(participant)
            })?;
        Some((call_id, user_id, seat))
    }

    /// Every socket of `user` (an invitee rings on all of them).
    fn sockets_of(&self, user: &UserId) -> Vec<Sid> {
        self.presence.sockets_of(user).copied().collect()
    }
}

/// One call and everything the hub keeps about it besides the state machine.
struct CallEntry {
    call: Call,
    /// Per member (joined or ringing): socket binding and media bookkeeping.
    seats: HashMap<UserId, Seat>,
    /// Whether the call is being recorded (`None`: not).
    recording: Option<recording::RecState>,
    /// Tracks published in the call, by publication id: announced again to late joiners.
    tracks: HashMap<String, PublishedTrack>,
    /// For the setup-time and duration metrics.
    initiated_at: std::time::Instant,
    answered_at: Option<std::time::Instant>,
}

/// A member's place in a call.
#[derive(Default)]
struct Seat {
    /// The socket the member acts from: the caller's from `initiate_call`, an invitee's from
    /// `accept_call`. `None` while ringing: every socket of theirs rings.
    socket: Option<Sid>,
    ring_timer: Option<AbortHandle>,
    /// `sfu.join` was requested: the member must `leave` the SFU when they go.
    media_requested: bool,
    /// The join completed: media messages may flow.
    media_ready: bool,
    /// Trickled candidates so far, per connection (publisher, subscriber).
    candidates: [u32; 2],
    /// Sources the member declared in its last publisher offer, by its own track id.
    sources: HashMap<String, TrackSource>,
    /// A subscriber offer the SFU made while the member was still joining: sent after
    /// `call_accepted`, which is when clients set up their connections.
    held_offer: Option<String>,
    /// The member's last `media_state` (audio, video, screen), replayed to late joiners.
    media_state: Option<[bool; 3]>,
    /// What the SFU lets the member do, from the token of the socket the seat is bound to
    /// (set with `socket`; see `Hub::media_policy`).
    policy: Option<switchboard_sfu::MediaPolicy>,
    /// The member's SFU participant (this join's id) once `sfu.join` was requested.
    participant: Option<ParticipantId>,
}

impl Seat {
    fn stop_ringing(&mut self) {
        if let Some(timer) = self.ring_timer.take() {
            timer.abort();
        }
    }
}

/// A track someone publishes in a call.
struct PublishedTrack {
    user_id: UserId,
    kind: TrackKind,
    source: TrackSource,
}

impl CallEntry {
    fn new(call: Call) -> Self {
        Self {
            call,
            seats: HashMap::new(),
            recording: None,
            tracks: HashMap::new(),
            initiated_at: std::time::Instant::now(),
            answered_at: None,
        }
    }

    /// Checks that `me` belongs to the call: a member, and (once their place is bound to a
    /// socket) on that socket.
    fn check_socket(&self, me: &Me) -> Result<&Member, SignalingError> {
        let member = self.call.check_participant(&me.user.id)?;
        match self.bound_socket(&me.user.id) {
            Some(sid) if sid != me.sid() => Err(SignalingError::NotAParticipant),
            _ => Ok(member),
        }
    }

    /// The socket `user` acts from, once bound.
    fn bound_socket(&self, user: &UserId) -> Option<Sid> {
        self.seats.get(user)?.socket
    }

    /// The bound sockets of everyone who joined.
    fn joined_sockets(&self) -> Vec<Sid> {
        self.call
            .joined()
            .filter_map(|user| self.seats.get(&user.id)?.socket)
            .collect()
    }

    /// Everyone who joined, as `{id, name}`.
    fn joined_json(&self) -> Value {
        Value::Array(self.call.joined().map(user_json).collect())
    }

    /// Everyone still ringing, as `{id, name}`.
    fn ringing_json(&self) -> Value {
        Value::Array(
            self.call
                .members()
                .iter()
                .filter(|m| m.attendance == crate::call::Attendance::Ringing)
                .map(|m| user_json(&m.user))
                .collect(),
        )
    }
}

/// A new SFU participant id for `user` joining `call`: `"{call}/{user}/{n}"`, with `n` unique
/// per join (security review finding 12), so a re-joined member is never confused with its
/// previous incarnation (a late `leave`, a stale SFU event) and never collides with it.
pub(crate) fn participant_id(call: &CallId, user: &UserId) -> ParticipantId {
    static JOINS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let n = JOINS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    ParticipantId::new(format!("{call}/{user}/{n}"))
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
        // The calls this socket acts in, and those ringing for a user now offline.
        let affected: Vec<CallId> = state
            .calls
            .iter()
            .filter(|(_, e)| match e.call.member(&me.user.id) {
                None => false,
                Some(_) => match e.bound_socket(&me.user.id) {
                    Some(bound) => bound == sid,
                    None => went_offline,
                },
            })
            .map(|(id, _)| id.clone())
            .collect();
        for call_id in affected {
            let entry = state.calls.get_mut(&call_id).expect("collected above");
            if let Ok(departure) = entry.call.disconnect(&me.user.id) {
                self.apply_departure(&mut state, &call_id, &me.user, departure, Some(&me.user));
            }
        }
        info!(user_id = %me.user.id, %sid, went_offline, "socket disconnected");
        broadcast_presence(&state);
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
