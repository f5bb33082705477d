//! The Socket.IO root namespace: connect-time authentication and one handler per client
//! event. Handlers only translate between Socket.IO and [`Hub`] operations: every failure
//! becomes both an error acknowledgement and an `error` event, and the socket stays up.

use std::sync::Arc;

use serde_json::Value;
use socketioxide::extract::{AckSender, Event, SocketRef, State, TryData};
use socketioxide::handler::ConnectHandler;
use socketioxide::SocketIo;
use tracing::{debug, warn};

use crate::hub::{Hub, Me};
use crate::identity::TokenError;
use crate::payload::call_id_hint;
use crate::{SignalingError, User};

/// Refusal of a connection. Its `Display` is the wire code, which socketioxide sends as the
/// `connect_error` message.
#[derive(Debug)]
pub(crate) struct ConnectRefused(TokenError);

impl std::fmt::Display for ConnectRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0.code())
    }
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
        Some(_) => return Err(ConnectRefused(TokenError::Invalid)),
    };
    match hub.tokens.verify(token.as_deref()) {
        Ok(user) => {
            socket.extensions.insert(user);
            Ok(())
        }
        Err(e) => {
            debug!(sid = %socket.id, code = e.code(), "connection refused");
            Err(ConnectRefused(e))
        }
    }
}

async fn on_connect(socket: SocketRef, State(hub): State<Arc<Hub>>) {
    let Some(user) = socket.extensions.get::<User>() else {
        // The middleware always sets it; refuse rather than serve an anonymous socket.
        warn!(sid = %socket.id, "connected socket without identity");
        let _ = socket.disconnect();
        return;
    };
    socket.on("initiate_call", on_initiate_call);
    socket.on("accept_call", on_accept_call);
    socket.on("reject_call", on_reject_call);
    socket.on("end_call", on_end_call);
    socket.on("webrtc_offer", on_webrtc_offer);
    socket.on("webrtc_answer", on_webrtc_answer);
    socket.on("webrtc_ice_candidate", on_webrtc_ice_candidate);
    socket.on("media_state", on_media_state);
    socket.on_fallback(on_unknown_event);
    socket.on_disconnect(on_disconnect);
    hub.connect(&Me { socket, user });
}

async fn on_disconnect(socket: SocketRef, State(hub): State<Arc<Hub>>) {
    if let Some(user) = socket.extensions.get::<User>() {
        hub.disconnect(&Me { socket, user });
    }
}

/// Everything a handler needs about one incoming event.
struct Request {
    me: Me,
    event: &'static str,
    value: Value,
    ack: Option<AckSender>,
}

impl Request {
    /// `None` when the socket has no identity (cannot happen after connect).
    fn new(
        socket: SocketRef,
        event: &'static str,
        data: Result<Value, impl std::fmt::Display>,
        ack: AckSender,
    ) -> Option<Request> {
        let user = socket.extensions.get::<User>()?;
        // Payloads socketioxide could not even decode count as "not a JSON object".
        let value = data.unwrap_or_else(|e| {
            debug!(sid = %socket.id, event, error = %e, "undecodable payload");
            Value::Null
        });
        Some(Request {
            me: Me { socket, user },
            event,
            value,
            ack: Some(ack),
        })
    }

    /// Reports a failure as an error ack (if not acked yet) and an `error` event.
    fn finish(mut self, result: Result<(), SignalingError>) {
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
        let _ = self.me.socket.emit("error", &e.event(self.event, call_id));
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
sync_handler!(on_end_call, "end_call", end);
async_handler!(on_webrtc_offer, "webrtc_offer", offer);
async_handler!(on_webrtc_answer, "webrtc_answer", answer);
async_handler!(on_webrtc_ice_candidate, "webrtc_ice_candidate", candidate);
sync_handler!(on_media_state, "media_state", media_state);

async fn on_unknown_event(socket: SocketRef, Event(event): Event, ack: AckSender) {
    debug!(sid = %socket.id, %event, "unknown event");
    let e = SignalingError::InvalidPayload(format!("unknown event `{event}`"));
    let _ = ack.send(&e.ack());
    let mut body = e.event("", None);
    body.event = Some(event);
    let _ = socket.emit("error", &body);
}
