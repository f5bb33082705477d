//! Panic isolation: a panic while handling one connection's datagram, timer or command fails
//! that participant only, instead of ending the media task (and with it every call on the
//! server; security review, finding 6). webrtc-rs has `assert!`s on paths an authenticated
//! peer feeds, so "bad input never panics" cannot be promised for code we do not own.
//!
//! If the media task ends anyway (a panic outside these guards), [`crate::Sfu::closed`]
//! completes and the server binary exits non-zero so a supervisor restarts it.

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Instant;

use tracing::error;

use super::{ConnId, Engine};
use crate::{ParticipantId, SfuEvent};

/// Reported to signaling as the reason of the `ParticipantFailed`.
const REASON: &str = "internal media error";

impl Engine {
    /// Runs `work` for `conn_id`; a panic in it fails that connection's participant.
    pub(super) fn isolated(
        &mut self,
        now: Instant,
        conn_id: ConnId,
        work: impl FnOnce(&mut Engine),
    ) {
        if let Err(panic) = catch_unwind(AssertUnwindSafe(|| work(self))) {
            let participant = self.conns.get(&conn_id).map(|c| c.participant.clone());
            self.contain_panic(now, participant, panic.as_ref());
        }
    }

    /// Releases `participant` after a panic in its processing. The engine's state about it
    /// may be half-updated; if the normal removal panics too, its connections and routes are
    /// dropped directly.
    pub(super) fn contain_panic(
        &mut self,
        now: Instant,
        participant: Option<ParticipantId>,
        panic: &(dyn Any + Send),
    ) {
        let message = panic
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
            .unwrap_or("(no message)");
        let Some(participant) = participant else {
            error!(
                panic = message,
                "panic in the media task outside any participant; continuing"
            );
            return;
        };
        error!(%participant, panic = message, "panic while handling a participant's media; releasing it");
        let removed = catch_unwind(AssertUnwindSafe(|| {
            let _ = self.remove_participant(now, &participant);
        }));
        if removed.is_err() {
            if let Some(record) = self.participants.remove(&participant) {
                for conn_id in [record.publisher, record.subscriber] {
                    self.conns.remove(&conn_id);
                    self.demux.forget(conn_id);
                }
            }
        }
        let _ = self.events.send(SfuEvent::ParticipantFailed {
            participant,
            reason: REASON.to_owned(),
        });
    }
}

/// Test-only fault injection (cargo feature `fault-injection`, enabled only by this crate's
/// own dev-dependency on itself, never in a release build): an RTP payload starting with
/// [`PANIC_PAYLOAD`] panics while it is handled, one starting with [`KILL_TASK_PAYLOAD`]
/// panics the media task outside the per-connection guards.
#[cfg(feature = "fault-injection")]
pub(super) mod fault {
    pub const PANIC_PAYLOAD: &[u8] = b"SWITCHBOARD-FAULT-PANIC";
    pub const KILL_TASK_PAYLOAD: &[u8] = b"SWITCHBOARD-FAULT-KILL-TASK";

    /// Panics for [`PANIC_PAYLOAD`]; true for [`KILL_TASK_PAYLOAD`].
    pub fn inject(payload: &[u8]) -> bool {
        if payload.starts_with(PANIC_PAYLOAD) {
            panic!("injected fault");
        }
        payload.starts_with(KILL_TASK_PAYLOAD)
    }
}
