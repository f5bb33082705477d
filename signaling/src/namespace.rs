//! The Socket.IO root namespace: connect-time authentication and one handler per client
//! event. Handlers only translate between Socket.IO and [`Hub`] operations: every failure
//! becomes both an error acknowledgement and an `error` event.
//!
//! Every event first passes the socket's and the user's rate limits ([`crate::limits`]); every
//! refused event is a strike, and a socket out of strikes gets `too_many_violations` and is
//! disconnected. Nothing else is affected (its own calls end as a disconnect would end them).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;

use serde_json::Value;
use socketioxide::extract::{AckSender, Event, SocketRef, State, TryData};
use socketioxide::handler::ConnectHandler;
use socketioxide::socket::Sid;
use socketioxide::SocketIo;
use tracing::{debug, warn};

use crate::hub::{Hub, Me};
use crate::identity::{unix_now, Identity, TokenError};
use crate::limits::{Session, SocketGuard};
use crate::payload::call_id_hint;
use crate::SignalingError;

/// Refusal of a connection. Its `Display` is the wire code, which socketioxide sends as the
/// `connect_error` message: a [`TokenError`] code, `too_many_connections`, `rate_limited` or
/// `shutting_down`.
#[derive(Debug)]
pub(crate) struct ConnectRefused(&'static str);

impl std::fmt::Display for ConnectRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

/// What `authenticate` learnt, for `on_connect`.
#[derive(Clone)]
struct Admitted {
    identity: Arc<Identity>,
    ip: Option<IpAddr>,
}

/// The client's address as limits count it: the TCP peer (when the server was started with
/// connect info), or the last `X-Forwarded-For` entry (which the reverse proxy appended) when
/// the peer is a trusted proxy ([`SignalingConfig::trusted_proxies`], or any peer with only
/// `trust_forwarded_for`). IPv6 addresses are cut to their `ipv6_prefix_len` prefix: one
/// subscriber's /64 holds 2^64 addresses.
fn client_ip(socket: &SocketRef, config: &crate::SignalingConfig) -> Option<IpAddr> {
    let parts = socket.req_parts();
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip());
    let believe_forwarded = if config.trusted_proxies.is_empty() {
        config.trust_forwarded_for
    } else {
        peer.is_some_and(|peer| {
            let peer = peer.to_canonical();
            config.trusted_proxies.iter().any(|net| net.contains(&peer))
        })
    };
    let ip = if believe_forwarded {
        let forwarded = parts
            .headers
            .get_all("x-forwarded-for")
            .iter()
            .next_back()
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.rsplit(',').next())
            .and_then(|ip| ip.trim().parse::<IpAddr>().ok());
        forwarded.or(peer)
    } else {
        peer
    };
    ip.map(|ip| match ip.to_canonical() {
        IpAddr::V6(v6) => ipnet::Ipv6Net::new(v6, config.ipv6_prefix_len)
            .map(|net| IpAddr::V6(net.trunc().addr()))
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    })
}

pub(crate) fn register(io: &SocketIo) {
    io.ns("/", on_connect.with(authenticate));
}

/// Verifies `auth: {token}` and pins the user to the socket.
async fn authenticate(
    socket: SocketRef,
    State(hub): State<Arc<Hub>>,
    TryData(auth): TryData<Value>,
) -> Result<(), ConnectRefused> {
    let token = match auth.ok().as_ref().and_then(|a| a.get("token")) {
        None | Some(Value::Null) => None,
        Some(Value::String(token)) => Some(token.clone()),
        Some(_) => return Err(ConnectRefused(TokenError::Invalid.code())),
    };
    // The address first: refusing a flood costs no token verification.
    let ip = client_ip(&socket, &hub.config);
    if let Some(ip) = ip {
        if !hub.shared_limits.admit_connect_from(ip) {
            debug!(sid = %socket.id, %ip, "connection refused: address over its connect rate");
            return Err(ConnectRefused("rate_limited"));
        }
    }
    let identity = hub.tokens.verify_identity(token.as_deref()).map_err(|e| {
        debug!(sid = %socket.id, code = e.code(), "connection refused");
        ConnectRefused(e.code())
    })?;
    if !hub.shared_limits.admit_connect_of(&identity.user.id) {
        debug!(sid = %socket.id, user_id = %identity.user.id, "connection refused: user over its connect rate");
        return Err(ConnectRefused("rate_limited"));
    }
    hub.precheck_connect(&identity.user.id, ip).map_err(|e| {
        debug!(sid = %socket.id, user_id = %identity.user.id, ?ip, error = %e, "connection refused");
        match e {
            SignalingError::LimitExceeded(_) => ConnectRefused("too_many_connections"),
            _ => ConnectRefused("shutting_down"),
        }
    })?;
    socket.extensions.insert(Admitted {
        identity: Arc::new(identity),
        ip,
    });
    Ok(())
}

async fn on_connect(socket: SocketRef, State(hub): State<Arc<Hub>>) {
    let Some(admitted) = socket.extensions.get::<Admitted>() else {
        // The middleware always sets it; refuse rather than serve an anonymous socket.
        warn!(sid = %socket.id, "connected socket without identity");
        let _ = socket.disconnect();
        return;
    };
    let me = Me {
        socket: socket.clone(),
        user: admitted.identity.user.clone(),
        identity: Arc::clone(&admitted.identity),
        ip: admitted.ip,
    };
    // Before anything is emitted to it: a socket that cannot take its events is evicted.
    socket.extensions.insert(hub.evictor());
    // Registration re-checks the socket limits atomically (connects race past the precheck).
    match hub.connect(&me) {
        Ok(()) => {}
        Err(e) => {
            debug!(sid = %socket.id, error = %e, "connection refused after connect");
            let _ = socket.emit("error", &e.event("connect", None));
            let _ = socket.disconnect();
            return;
        }
    }
    socket.extensions.insert(Session {
        identity: admitted.identity,
        ip: admitted.ip,
        guard: Arc::new(SocketGuard::new(&hub.config.limits)),
        shared: Arc::clone(&hub.shared_limits),
    });
    let expiry = tokio::spawn(disconnect_at_expiry(
        socket.id,
        Arc::downgrade(&hub),
        me.identity.expires_at,
    ));
    socket.extensions.insert(ExpiryTimer(expiry.abort_handle()));
    socket.on_disconnect(on_disconnect);
    if !socket.connected() {
        // Closed before the disconnect handler was in place: unregister here (idempotent).
        hub.disconnect(&me);
        return;
    }
    socket.on("initiate_call", on_initiate_call);
    socket.on("accept_call", on_accept_call);
    socket.on("reject_call", on_reject_call);
    socket.on("end_call", on_end_call);
    socket.on("leave_call", on_leave_call);
    socket.on("invite_participant", on_invite_participant);
    socket.on("webrtc_offer", on_webrtc_offer);
    socket.on("webrtc_answer", on_webrtc_answer);
    socket.on("webrtc_ice_candidate", on_webrtc_ice_candidate);
    socket.on("media_state", on_media_state);
    socket.on("start_recording", on_start_recording);
    socket.on("stop_recording", on_stop_recording);
    socket.on_fallback(on_unknown_event);
}

/// The task that disconnects a socket when its token expires.
#[derive(Clone)]
struct ExpiryTimer(tokio::task::AbortHandle);

/// How often an expired socket still in a call is looked at again.
const EXPIRED_RECHECK: Duration = Duration::from_secs(1);

/// Disconnects the socket at its token's `exp` (after telling it `expired_token`), or as
/// soon after as its user is in no call: an expired token must not keep receiving presence
/// and invitations forever, but a running call is not cut.
/// Holds only the socket's id and a weak hub while it sleeps: a socket gone meanwhile is not
/// kept alive by its timer.
async fn disconnect_at_expiry(sid: Sid, hub: std::sync::Weak<Hub>, expires_at: u64) {
    let now = unix_now();
    if expires_at > now {
        tokio::time::sleep(Duration::from_secs(expires_at - now)).await;
    }
    let Some(hub) = hub.upgrade() else {
        return;
    };
    let Some(socket) = hub.socket(sid) else {
        return;
    };
    let Some(session) = socket.extensions.get::<Session>() else {
        return;
    };
    while socket.connected() {
        if !hub.in_call(&session.identity.user.id) {
            debug!(sid = %socket.id, user_id = %session.identity.user.id, "token expired: disconnecting");
            let _ = socket.emit("error", &SignalingError::ExpiredToken.event("", None));
            let _ = socket.clone().disconnect();
            return;
        }
        tokio::time::sleep(EXPIRED_RECHECK).await;
    }
}

async fn on_disconnect(socket: SocketRef, State(hub): State<Arc<Hub>>) {
    if let Some(ExpiryTimer(timer)) = socket.extensions.get::<ExpiryTimer>() {
        timer.abort();
    }
    if let Some(session) = socket.extensions.get::<Session>() {
        hub.disconnect(&me_of(socket, &session));
    }
}

fn me_of(socket: SocketRef, session: &Session) -> Me {
    Me {
        socket,
        user: session.identity.user.clone(),
        identity: Arc::clone(&session.identity),
        ip: session.ip,
    }
}

/// Reports a refused event and counts the strike; out of strikes, disconnects the socket.
fn refuse(socket: &SocketRef, session: &Session, body: crate::ErrorEvent) {
    // A server fault is not the client's: no strike.
    let strike = body.code != "internal";
    let _ = socket.emit("error", &body);
    if strike && session.guard.strike() {
        warn!(sid = %socket.id, user_id = %session.identity.user.id, ip = ?session.ip, "too many refused events; disconnecting the socket");
        let e = SignalingError::TooManyViolations;
        let _ = socket.emit("error", &e.event(body.event.as_deref().unwrap_or(""), None));
        let _ = socket.clone().disconnect();
    }
}

/// Everything a handler needs about one incoming event.
struct Request {
    me: Me,
    session: Session,
    event: &'static str,
    value: Value,
    ack: Option<AckSender>,
}

impl Request {
    /// `None` when the event is not to be handled: the socket has no session (cannot happen
    /// after connect), is being disconnected, or is over its rate limit (then it was told).
    fn new(
        socket: SocketRef,
        event: &'static str,
        data: Result<Value, impl std::fmt::Display>,
        ack: AckSender,
    ) -> Option<Request> {
        let session = socket.extensions.get::<Session>()?;
        if session.guard.is_kicked() {
            return None;
        }
        // Payloads socketioxide could not even decode count as "not a JSON object".
        let value = data.unwrap_or_else(|e| {
            debug!(sid = %socket.id, event, error = %e, "undecodable payload");
            Value::Null
        });
        let request = Request {
            me: me_of(socket, &session),
            session,
            event,
            value,
            ack: Some(ack),
        };
        match request.session.admit_event() {
            Ok(()) => Some(request),
            Err(e) => {
                request.finish(Err(e));
                None
            }
        }
    }

    /// Reports a failure as an error ack (if not acked yet) and an `error` event.
    fn finish(mut self, result: Result<(), SignalingError>) {
        crate::metrics::event_handled(self.event, result.as_ref().err().map(|e| e.code()));
        let Err(e) = result else { return };
        let call_id = call_id_hint(&self.value);
        debug!(
            user_id = %self.me.user.id,
            event = self.event,
            call_id = call_id.as_deref(),
            code = e.code(),
            message = %e,
            "event refused"
        );
        if let SignalingError::Internal(_) = e {
            warn!(user_id = %self.me.user.id, event = self.event, call_id = call_id.as_deref(), error = %e, "internal error");
        }
        if let Some(ack) = self.ack.take() {
            let _ = ack.send(&e.ack());
        }
        refuse(&self.me.socket, &self.session, e.event(self.event, call_id));
    }
}

macro_rules! sync_handler {
    ($name:ident, $event:literal, $op:ident) => {
        async fn $name(
            socket: SocketRef,
            State(hub): State<Arc<Hub>>,
            TryData(data): TryData<Value>,
            ack: AckSender,
        ) {
            let Some(mut req) = Request::new(socket, $event, data, ack) else {
                return;
            };
            let result = hub.$op(&req.me, &req.value, &mut req.ack);
            req.finish(result);
        }
    };
}

macro_rules! async_handler {
    ($name:ident, $event:literal, $op:ident) => {
        async fn $name(
            socket: SocketRef,
            State(hub): State<Arc<Hub>>,
            TryData(data): TryData<Value>,
            ack: AckSender,
        ) {
            let Some(mut req) = Request::new(socket, $event, data, ack) else {
                return;
            };
            let result = hub.$op(&req.me, &req.value, &mut req.ack).await;
            req.finish(result);
        }
    };
}

sync_handler!(on_initiate_call, "initiate_call", initiate);
async_handler!(on_accept_call, "accept_call", accept);
sync_handler!(on_reject_call, "reject_call", reject);
sync_handler!(on_end_call, "end_call", leave);
sync_handler!(on_leave_call, "leave_call", leave);
sync_handler!(on_invite_participant, "invite_participant", invite);
async_handler!(on_webrtc_offer, "webrtc_offer", offer);
async_handler!(on_webrtc_answer, "webrtc_answer", answer);
async_handler!(on_webrtc_ice_candidate, "webrtc_ice_candidate", candidate);
sync_handler!(on_media_state, "media_state", media_state);
async_handler!(on_start_recording, "start_recording", start_recording);
async_handler!(on_stop_recording, "stop_recording", stop_recording);

async fn on_unknown_event(socket: SocketRef, Event(event): Event, ack: AckSender) {
    let Some(session) = socket.extensions.get::<Session>() else {
        return;
    };
    if session.guard.is_kicked() {
        return;
    }
    debug!(sid = %socket.id, event = %event.chars().take(64).collect::<String>(), "unknown event");
    let e = match session.admit_event() {
        Err(e) => e,
        Ok(()) => SignalingError::InvalidPayload(format!(
            "unknown event `{}`",
            event.chars().take(64).collect::<String>()
        )),
    };
    crate::metrics::event_handled("unknown", Some(e.code()));
    let _ = ack.send(&e.ack());
    let mut body = e.event("", None);
    // Echo the name back, bounded: it is attacker-chosen.
    body.event = Some(event.chars().take(64).collect());
    refuse(&socket, &session, body);
}
