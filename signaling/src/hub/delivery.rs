//! Getting events to sockets: presence deltas sent outside the hub lock, and the eviction of
//! sockets that cannot keep up (docs/security.md, finding 4 of the 2026-12 review).
//!
//! A socket's outgoing queue holds `send_queue_packets` packets. When it is full the client
//! is not reading (or its network is far slower than its calls need): every further event
//! would be lost without a trace and the client would act on a state that moved on. Such a
//! socket is evicted instead: the hub forgets it at once (its calls go on without it or end,
//! as for a disconnect), and the transport is closed as soon as it takes the disconnect
//! packet (the engine.io heartbeat closes it anyway if it never does).

use std::sync::{Arc, Weak};
use std::time::Duration;

use serde::Serialize;
use socketioxide::extract::SocketRef;
use socketioxide::{SendError, SocketError};
use tokio::sync::{mpsc, Notify};
use tracing::{debug, warn};

use super::{Hub, Me};
use crate::limits::Session;
use crate::presence::{self, Dirs};
use crate::PresenceScope;

/// How a socket reaches the eviction task; kept in the socket's extensions.
#[derive(Clone)]
pub(crate) struct Evictor(mpsc::UnboundedSender<SocketRef>);

pub(super) fn emit<T: Serialize + ?Sized>(socket: &SocketRef, event: &str, data: &T) {
    match socket.emit(event, data) {
        Ok(()) => {}
        Err(SendError::Socket(SocketError::InternalChannelFull)) => {
            warn!(sid = %socket.id, event, "send queue full: evicting the socket");
            match socket.extensions.get::<Evictor>() {
                Some(Evictor(tx)) => {
                    let _ = tx.send(socket.clone());
                }
                None => {
                    let _ = socket.clone().disconnect();
                }
            }
        }
        Err(e) => debug!(sid = %socket.id, event, error = %e, "emit failed (socket closing)"),
    }
}

impl Hub {
    /// Starts the presence flusher and the eviction task. Both stop once the hub is gone.
    pub(crate) fn start_background_tasks(self: &Arc<Self>) {
        let queue = self
            .eviction_queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(queue) = queue {
            tokio::spawn(run_evictions(Arc::downgrade(self), queue));
        }
        tokio::spawn(run_presence(
            Arc::downgrade(self),
            Arc::clone(&self.presence_wake),
        ));
    }

    pub(crate) fn evictor(&self) -> Evictor {
        Evictor(self.evictions.clone())
    }

    /// The presence directories a socket sees and is listed in (see [`presence`]).
    pub(super) fn presence_dirs(&self, me: &Me) -> Dirs {
        match self.config.presence_scope {
            PresenceScope::Everyone => presence::dirs(["*"]),
            PresenceScope::Rooms => presence::dirs(me.identity.grants.rooms.iter().flatten()),
            PresenceScope::Nobody => presence::dirs(std::iter::empty::<&str>()),
        }
    }

    /// Sends every presence change since the last flush: computed and serialized under the
    /// lock (once per group of sockets that see the same people), emitted after it.
    fn flush_presence(&self) {
        let outgoing: Vec<_> = {
            let mut guard = self.lock();
            let state = &mut *guard;
            let user_calls = &state.user_calls;
            let outgoing = state.presence.flush(|id| user_calls.contains_key(id));
            outgoing
                .into_iter()
                .map(|o| {
                    let sockets: Vec<SocketRef> = o
                        .sockets
                        .iter()
                        .filter_map(|sid| state.sockets.get(sid).cloned())
                        .collect();
                    (sockets, o.payload)
                })
                .collect()
        };
        for (sockets, payload) in &outgoing {
            for socket in sockets {
                emit(socket, "presence_update", &**payload);
            }
        }
    }
}

async fn run_presence(hub: Weak<Hub>, wake: Arc<Notify>) {
    loop {
        wake.notified().await;
        let Some(interval) = hub.upgrade().map(|h| h.config.presence_interval) else {
            return;
        };
        // Gather what else changes meanwhile: one update per interval at most.
        tokio::time::sleep(interval).await;
        let Some(hub) = hub.upgrade() else {
            return;
        };
        hub.flush_presence();
    }
}

async fn run_evictions(hub: Weak<Hub>, mut queue: mpsc::UnboundedReceiver<SocketRef>) {
    while let Some(socket) = queue.recv().await {
        let Some(hub) = hub.upgrade() else {
            return;
        };
        let Some(session) = socket.extensions.get::<Session>() else {
            // Not registered yet (or any more): only the transport is left to close.
            tokio::spawn(close_when_possible(socket));
            continue;
        };
        if !session.guard.evict() {
            continue; // already evicted: one failed emit is enough
        }
        crate::metrics::socket_evicted();
        warn!(sid = %socket.id, user_id = %session.identity.user.id, "socket evicted: it could not take its events");
        hub.disconnect(&Me {
            socket: socket.clone(),
            user: session.identity.user.clone(),
            identity: Arc::clone(&session.identity),
            ip: session.ip,
        });
        tokio::spawn(close_when_possible(socket));
    }
}

/// Sends the disconnect packet once the socket's queue has room for it; bounded (the
/// engine.io heartbeat closes a transport that never drains).
async fn close_when_possible(socket: SocketRef) {
    for _ in 0..300 {
        if !socket.connected() || socket.clone().disconnect().is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
