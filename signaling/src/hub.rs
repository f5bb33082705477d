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
//! overtake the `call_accepted` before it). Presence is the exception: it is O(sockets), so it
//! is only marked under the lock and sent later, serialized once, outside it
//! ([`delivery`]). A socket whose queue cannot take an event is disconnected, never left
//! believing a state that moved on.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use serde::Serialize;
use serde_json::{json, Value};
use socketioxide::extract::{AckSender, SocketRef};
use socketioxide::socket::Sid;
use switchboard_sfu::{ParticipantId, Sfu, TrackKind};
use tokio::sync::{mpsc, Notify};
use tokio::task::AbortHandle;
use tracing::info;

use crate::call::{Call, CallState, Member};
use crate::identity::{Identity, NameError, TokenIssuer};
use crate::limits::SharedLimits;
use crate::payload::TrackSource;
use crate::presence::Presence;
use crate::{CallId, SignalingConfig, SignalingError, User, UserId};

mod calls;
mod delivery;
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
    /// Wakes the presence flusher when something changed.
    presence_wake: Arc<Notify>,
    /// Sockets that could not take an event, for the eviction task.
    evictions: mpsc::UnboundedSender<SocketRef>,
    eviction_queue: Mutex<Option<mpsc::UnboundedReceiver<SocketRef>>>,
    /// Per-user and per-address limiters that outlive connections.
    pub shared_limits: Arc<SharedLimits>,
    /// Call transitions go to the call history through this (never blocks).
    history: crate::history_bridge::HistoryBridge,
    recording_config: recording::RecordingConfig,
}

struct State {
    presence: Presence<Sid>,
    /// The presence flusher's wake-up (shared with the hub).
    presence_wake: Arc<Notify>,
    sockets: HashMap<Sid, SocketRef>,
    calls: HashMap<CallId, CallEntry>,
    /// The call each user is in (ringing or joined): the `busy` flag.
    user_calls: HashMap<UserId, CallId>,
    /// Connected sockets per client IP (IPs with none are removed).
    sockets_per_ip: HashMap<IpAddr, usize>,
    /// (caller, callee) → until when the caller may not ring the callee again: they declined.
    declined: HashMap<(UserId, UserId), Instant>,
    shutting_down: bool,
}

impl State {
    fn new(presence_wake: Arc<Notify>) -> Self {
        Self {
            presence: Presence::default(),
            presence_wake,
            sockets: HashMap::new(),
            calls: HashMap::new(),
            user_calls: HashMap::new(),
            sockets_per_ip: HashMap::new(),
            declined: HashMap::new(),
            shutting_down: false,
        }
    }

    /// Notes that `user` may have changed in presence (online, offline, busy): sent with
    /// the next flush.
    fn presence_changed(&mut self, user: &UserId) {
        self.presence.mark(user);
        // Stores at most one permit: cheap, and the flusher gathers until its next pass.
        self.presence_wake.notify_one();
    }

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

/// Queues `event` for `socket`. If its queue is full the socket cannot keep up with its
/// calls: it is handed to the eviction task (disconnected, its calls updated) instead of
/// silently missing the event.
fn emit<T: Serialize + ?Sized>(socket: &SocketRef, event: &str, data: &T) {
    delivery::emit(socket, event, data);
}

/// The hub's state, locked; the hold time goes to a histogram when it is released.
struct StateGuard<'a> {
    guard: MutexGuard<'a, State>,
    since: Instant,
}

impl std::ops::Deref for StateGuard<'_> {
    type Target = State;
    fn deref(&self) -> &State {
        &self.guard
    }
}

impl std::ops::DerefMut for StateGuard<'_> {
    fn deref_mut(&mut self) -> &mut State {
        &mut self.guard
    }
}

impl Drop for StateGuard<'_> {
    fn drop(&mut self) {
        crate::metrics::hub_lock_held(self.since.elapsed());
    }
}

fn user_json(user: &User) -> Value {
    json!({ "id": user.id, "name": user.name })
}

impl Hub {
    pub fn new(config: SignalingConfig, sfu: Sfu) -> Self {
        let secret_only = [crate::identity::TokenKey {
            kid: None,
            secret: config.token_secret.clone(),
        }];
        let keys = if config.token_keys.is_empty() {
            &secret_only[..]
        } else {
            &config.token_keys[..]
        };
        let tokens =
            TokenIssuer::with_keys(keys, config.token_lifetime, config.token_policy.clone());
        let shared_limits = Arc::new(SharedLimits::new(&config.limits));
        let presence_wake = Arc::new(Notify::new());
        let (evictions, eviction_queue) = mpsc::unbounded_channel();
        Self {
            config,
            tokens,
            sfu,
            state: Mutex::new(State::new(Arc::clone(&presence_wake))),
            presence_wake,
            evictions,
            eviction_queue: Mutex::new(Some(eviction_queue)),
            shared_limits,
            history: crate::history_bridge::HistoryBridge::disabled(),
            recording_config: recording::RecordingConfig::default(),
        }
    }

    fn lock(&self) -> StateGuard<'_> {
        // A panic under the lock would be a bug; the state is still consistent enough to keep
        // serving other users, so poisoning is ignored.
        let guard = self.state.lock().unwrap_or_else(|e| e.into_inner());
        StateGuard {
            guard,
            since: Instant::now(),
        }
    }

    /// Issues a session token and remembers the user.
    pub fn issue(&self, name: &str) -> Result<(String, User), NameError> {
        let (token, user) = self.tokens.issue(name)?;
        info!(user_id = %user.id, "session issued");
        Ok((token, user))
    }

    pub fn stats(&self) -> SignalingStats {
        let state = self.lock();
        SignalingStats {
            // Counted, never listed: scrapes must not hold the lock for O(users) work.
            online_users: state.presence.online_users(),
            sockets: state.sockets.len(),
            calls: state.calls.len(),
            active_calls: state
                .calls
                .values()
                .filter(|e| e.call.state() == CallState::Active)
                .count(),
        }
    }

    /// The registered socket `sid`, if still connected.
    pub fn socket(&self, sid: Sid) -> Option<SocketRef> {
        self.lock().sockets.get(&sid).cloned()
    }

    /// Whether `user` is in a call (ringing or joined).
    pub fn in_call(&self, user: &UserId) -> bool {
        self.lock().user_calls.contains_key(user)
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
    /// disconnected.
    pub fn connect(&self, me: &Me) -> Result<(), SignalingError> {
        let mut state = self.lock();
        self.check_socket_limits(&state, &me.user.id, me.ip)?;
        if let Some(ip) = me.ip {
            *state.sockets_per_ip.entry(ip).or_insert(0) += 1;
        }
        state.sockets.insert(me.sid(), me.socket.clone());
        let dirs = self.presence_dirs(me);
        state.presence.add_socket(&me.user, me.sid(), dirs.clone());
        state.presence_changed(&me.user.id);
        info!(user_id = %me.user.id, sid = %me.sid(), "socket connected");
        // Under the lock so that no delta can overtake it; serialized once per interval and
        // group, so this only copies it.
        let entry = crate::presence::PresenceEntry {
            id: me.user.id.clone(),
            name: me.user.name.clone(),
            busy: state.user_calls.contains_key(&me.user.id),
        };
        let snapshot = state.presence.snapshot_for(&dirs, &entry);
        emit(&me.socket, "presence", &*snapshot);
        Ok(())
    }

    pub fn disconnect(&self, me: &Me) {
        let mut state = self.lock();
        let sid = me.sid();
        if state.sockets.remove(&sid).is_none() {
            // Already disconnected (the connect path may race the disconnect handler).
            return;
        }
        let went_offline = state.presence.remove_socket(&me.user.id, &sid);
        state.presence_changed(&me.user.id);
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
    }
}
