//! The call state machine, as pure code: no sockets, no clock, no SFU. The namespace handlers
//! feed it what users asked for and act on what it answers.
//!
//! ```text
//!            accept (callee)
//! Ringing ───────────────────▶ Active
//!    │  reject (callee) / end / timeout /    │  end / disconnect /
//!    │  disconnect / fail / shutdown         │  fail / shutdown
//!    ▼                                       ▼
//!                    Ended(reason)
//! ```

use serde::{Deserialize, Serialize};

use crate::{CallId, User, UserId};

/// Voice or video, as chosen by the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallKind {
    Voice,
    Video,
}

/// Why a call ended (`call_ended.reason` on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    Hangup,
    Rejected,
    Cancelled,
    NoAnswer,
    Disconnected,
    MediaUnavailable,
    Failed,
    Shutdown,
}

impl EndReason {
    /// Every reason, for metrics that list them all up front.
    pub const ALL: [EndReason; 8] = [
        EndReason::Hangup,
        EndReason::Rejected,
        EndReason::Cancelled,
        EndReason::NoAnswer,
        EndReason::Disconnected,
        EndReason::MediaUnavailable,
        EndReason::Failed,
        EndReason::Shutdown,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::Hangup => "hangup",
            EndReason::Rejected => "rejected",
            EndReason::Cancelled => "cancelled",
            EndReason::NoAnswer => "no_answer",
            EndReason::Disconnected => "disconnected",
            EndReason::MediaUnavailable => "media_unavailable",
            EndReason::Failed => "failed",
            EndReason::Shutdown => "shutdown",
        }
    }
}

/// The reasons a participant may give in `end_call`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HangupReason {
    #[default]
    Hangup,
    MediaUnavailable,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallState {
    Ringing,
    Active,
    Ended(EndReason),
}

/// A participant's part in a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Caller,
    Callee,
}

/// A refused transition. Every variant maps to a stable wire code of docs/protocol.md §5.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    #[error("you cannot call yourself")]
    SelfCall,
    #[error("you are not a participant of this call")]
    NotAParticipant,
    #[error("the call has already ended")]
    AlreadyEnded,
    #[error("the call is {actual}, but this needs it {expected}")]
    InvalidState {
        expected: &'static str,
        actual: &'static str,
    },
    #[error("only the {0} may do this")]
    NotPermitted(&'static str),
}

impl CallError {
    pub fn code(&self) -> &'static str {
        match self {
            CallError::SelfCall => "self_call",
            CallError::NotAParticipant => "not_a_participant",
            CallError::AlreadyEnded => "unknown_call",
            CallError::InvalidState { .. } => "invalid_state",
            CallError::NotPermitted(_) => "not_permitted",
        }
    }
}

/// One call between a caller and a callee.
#[derive(Debug, Clone)]
pub struct Call {
    id: CallId,
    kind: CallKind,
    caller: User,
    callee: User,
    state: CallState,
}

impl Call {
    /// A new ringing call.
    pub fn new(id: CallId, kind: CallKind, caller: User, callee: User) -> Result<Call, CallError> {
        if caller.id == callee.id {
            return Err(CallError::SelfCall);
        }
        Ok(Call {
            id,
            kind,
            caller,
            callee,
            state: CallState::Ringing,
        })
    }

    pub fn id(&self) -> &CallId {
        &self.id
    }
    pub fn kind(&self) -> CallKind {
        self.kind
    }
    pub fn caller(&self) -> &User {
        &self.caller
    }
    pub fn callee(&self) -> &User {
        &self.callee
    }
    pub fn state(&self) -> CallState {
        self.state
    }
    pub fn is_ended(&self) -> bool {
        matches!(self.state, CallState::Ended(_))
    }

    /// Both participants, caller first.
    pub fn participants(&self) -> [&User; 2] {
        [&self.caller, &self.callee]
    }

    pub fn role_of(&self, user: &UserId) -> Option<Role> {
        if *user == self.caller.id {
            Some(Role::Caller)
        } else if *user == self.callee.id {
            Some(Role::Callee)
        } else {
            None
        }
    }

    /// The other participant.
    pub fn peer_of(&self, user: &UserId) -> Option<&User> {
        match self.role_of(user)? {
            Role::Caller => Some(&self.callee),
            Role::Callee => Some(&self.caller),
        }
    }

    /// Checks that `user` is in the call and the call has not ended.
    pub fn check_participant(&self, user: &UserId) -> Result<Role, CallError> {
        let role = self.role_of(user).ok_or(CallError::NotAParticipant)?;
        if self.is_ended() {
            return Err(CallError::AlreadyEnded);
        }
        Ok(role)
    }

    /// Checks that `user` may exchange media messages: a participant of an active call.
    pub fn check_media(&self, user: &UserId) -> Result<Role, CallError> {
        let role = self.check_participant(user)?;
        self.expect(CallState::Ringing, false)?;
        Ok(role)
    }

    /// The callee answers.
    pub fn accept(&mut self, by: &UserId) -> Result<(), CallError> {
        let role = self.check_participant(by)?;
        self.expect(CallState::Ringing, true)?;
        if role != Role::Callee {
            return Err(CallError::NotPermitted("callee"));
        }
        self.state = CallState::Active;
        Ok(())
    }

    /// The callee declines.
    pub fn reject(&mut self, by: &UserId) -> Result<EndReason, CallError> {
        let role = self.check_participant(by)?;
        self.expect(CallState::Ringing, true)?;
        if role != Role::Callee {
            return Err(CallError::NotPermitted("callee"));
        }
        Ok(self.finish(EndReason::Rejected))
    }

    /// A participant ends the call. While ringing, the caller ending it cancels it and the
    /// callee ending it rejects it; `media_unavailable` is kept as given.
    pub fn end(&mut self, by: &UserId, reason: HangupReason) -> Result<EndReason, CallError> {
        let role = self.check_participant(by)?;
        let reason = match (reason, self.state, role) {
            (HangupReason::MediaUnavailable, _, _) => EndReason::MediaUnavailable,
            (HangupReason::Hangup, CallState::Ringing, Role::Caller) => EndReason::Cancelled,
            (HangupReason::Hangup, CallState::Ringing, Role::Callee) => EndReason::Rejected,
            (HangupReason::Hangup, _, _) => EndReason::Hangup,
        };
        Ok(self.finish(reason))
    }

    /// The ring timeout fired. Only a ringing call is ended by it.
    pub fn timeout(&mut self) -> Result<EndReason, CallError> {
        if self.is_ended() {
            return Err(CallError::AlreadyEnded);
        }
        self.expect(CallState::Ringing, true)?;
        Ok(self.finish(EndReason::NoAnswer))
    }

    /// A participant's call socket went away.
    pub fn disconnect(&mut self, user: &UserId) -> Result<EndReason, CallError> {
        self.check_participant(user)?;
        Ok(self.finish(EndReason::Disconnected))
    }

    /// Ends the call for a reason that is nobody's action (`failed`, `shutdown`, ...).
    pub fn terminate(&mut self, reason: EndReason) -> Result<EndReason, CallError> {
        if self.is_ended() {
            return Err(CallError::AlreadyEnded);
        }
        Ok(self.finish(reason))
    }

    fn finish(&mut self, reason: EndReason) -> EndReason {
        self.state = CallState::Ended(reason);
        reason
    }

    /// Succeeds when the state is `state` (`equal`) or is not (`!equal`).
    fn expect(&self, state: CallState, equal: bool) -> Result<(), CallError> {
        if (self.state == state) == equal {
            return Ok(());
        }
        let name = |s: CallState| match s {
            CallState::Ringing => "ringing",
            CallState::Active => "active",
            CallState::Ended(_) => "ended",
        };
        Err(CallError::InvalidState {
            expected: if equal { name(state) } else { "active" },
            actual: name(self.state),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(id: &str) -> User {
        User {
            id: UserId::new(id),
            name: id.to_uppercase(),
        }
    }

    fn ringing() -> Call {
        Call::new(
            CallId::new("c1"),
            CallKind::Video,
            user("alice"),
            user("bob"),
        )
        .unwrap()
    }

    fn active() -> Call {
        let mut call = ringing();
        call.accept(&UserId::new("bob")).unwrap();
        call
    }

    const ALICE: &str = "alice";
    const BOB: &str = "bob";
    const EVE: &str = "eve";

    fn id(s: &str) -> UserId {
        UserId::new(s)
    }

    #[test]
    fn self_call_is_refused() {
        let err = Call::new(CallId::new("c"), CallKind::Voice, user(ALICE), user(ALICE));
        assert_eq!(err.unwrap_err().code(), "self_call");
    }

    #[test]
    fn new_call_rings() {
        let call = ringing();
        assert_eq!(call.state(), CallState::Ringing);
        assert_eq!(call.role_of(&id(ALICE)), Some(Role::Caller));
        assert_eq!(call.role_of(&id(BOB)), Some(Role::Callee));
        assert_eq!(call.role_of(&id(EVE)), None);
        assert_eq!(call.peer_of(&id(ALICE)).unwrap().id, id(BOB));
        assert_eq!(call.participants()[0].id, id(ALICE));
    }

    #[test]
    fn callee_accepts() {
        let call = active();
        assert_eq!(call.state(), CallState::Active);
    }

    #[test]
    fn caller_cannot_accept_or_reject() {
        let mut call = ringing();
        assert_eq!(call.accept(&id(ALICE)).unwrap_err().code(), "not_permitted");
        assert_eq!(call.reject(&id(ALICE)).unwrap_err().code(), "not_permitted");
        assert_eq!(call.state(), CallState::Ringing);
    }

    #[test]
    fn strangers_can_do_nothing() {
        let mut call = ringing();
        assert_eq!(
            call.accept(&id(EVE)).unwrap_err().code(),
            "not_a_participant"
        );
        assert_eq!(
            call.reject(&id(EVE)).unwrap_err().code(),
            "not_a_participant"
        );
        assert_eq!(
            call.end(&id(EVE), HangupReason::Hangup).unwrap_err().code(),
            "not_a_participant"
        );
        assert_eq!(
            call.check_media(&id(EVE)).unwrap_err().code(),
            "not_a_participant"
        );
        assert_eq!(
            call.disconnect(&id(EVE)).unwrap_err().code(),
            "not_a_participant"
        );
        assert_eq!(call.state(), CallState::Ringing);
    }

    #[test]
    fn accepting_twice_is_invalid_state() {
        let mut call = active();
        assert_eq!(call.accept(&id(BOB)).unwrap_err().code(), "invalid_state");
        assert_eq!(call.reject(&id(BOB)).unwrap_err().code(), "invalid_state");
        assert_eq!(call.state(), CallState::Active);
    }

    #[test]
    fn reject_ends_the_call() {
        let mut call = ringing();
        assert_eq!(call.reject(&id(BOB)), Ok(EndReason::Rejected));
        assert_eq!(call.state(), CallState::Ended(EndReason::Rejected));
        assert_eq!(call.accept(&id(BOB)).unwrap_err().code(), "unknown_call");
    }

    #[test]
    fn caller_ending_while_ringing_cancels() {
        let mut call = ringing();
        assert_eq!(
            call.end(&id(ALICE), HangupReason::Hangup),
            Ok(EndReason::Cancelled)
        );
    }

    #[test]
    fn callee_ending_while_ringing_rejects() {
        let mut call = ringing();
        assert_eq!(
            call.end(&id(BOB), HangupReason::Hangup),
            Ok(EndReason::Rejected)
        );
    }

    #[test]
    fn either_participant_hangs_up_an_active_call() {
        for who in [ALICE, BOB] {
            let mut call = active();
            assert_eq!(
                call.end(&id(who), HangupReason::Hangup),
                Ok(EndReason::Hangup)
            );
            assert!(call.is_ended());
        }
    }

    #[test]
    fn media_unavailable_is_kept() {
        let mut call = ringing();
        assert_eq!(
            call.end(&id(ALICE), HangupReason::MediaUnavailable),
            Ok(EndReason::MediaUnavailable)
        );
        let mut call = active();
        assert_eq!(
            call.end(&id(BOB), HangupReason::MediaUnavailable),
            Ok(EndReason::MediaUnavailable)
        );
    }

    #[test]
    fn ended_calls_refuse_everything() {
        let mut call = active();
        call.end(&id(ALICE), HangupReason::Hangup).unwrap();
        assert_eq!(
            call.end(&id(BOB), HangupReason::Hangup).unwrap_err().code(),
            "unknown_call"
        );
        assert_eq!(
            call.check_media(&id(BOB)).unwrap_err().code(),
            "unknown_call"
        );
        assert_eq!(call.timeout().unwrap_err().code(), "unknown_call");
        assert_eq!(
            call.disconnect(&id(BOB)).unwrap_err().code(),
            "unknown_call"
        );
        assert_eq!(
            call.terminate(EndReason::Failed).unwrap_err().code(),
            "unknown_call"
        );
        assert_eq!(call.state(), CallState::Ended(EndReason::Hangup));
    }

    #[test]
    fn timeout_only_ends_ringing_calls() {
        let mut call = ringing();
        assert_eq!(call.timeout(), Ok(EndReason::NoAnswer));
        let mut call = active();
        assert_eq!(call.timeout().unwrap_err().code(), "invalid_state");
        assert_eq!(call.state(), CallState::Active);
    }

    #[test]
    fn media_needs_an_active_call() {
        let call = ringing();
        assert_eq!(
            call.check_media(&id(ALICE)).unwrap_err().code(),
            "invalid_state"
        );
        let call = active();
        assert_eq!(call.check_media(&id(ALICE)), Ok(Role::Caller));
        assert_eq!(call.check_media(&id(BOB)), Ok(Role::Callee));
    }

    #[test]
    fn disconnect_and_terminate_end_any_live_call() {
        let mut call = ringing();
        assert_eq!(call.disconnect(&id(BOB)), Ok(EndReason::Disconnected));
        let mut call = active();
        assert_eq!(call.disconnect(&id(ALICE)), Ok(EndReason::Disconnected));
        let mut call = active();
        assert_eq!(call.terminate(EndReason::Failed), Ok(EndReason::Failed));
        let mut call = ringing();
        assert_eq!(call.terminate(EndReason::Shutdown), Ok(EndReason::Shutdown));
    }

    #[test]
    fn reasons_serialize_as_the_protocol_says() {
        for reason in [
            EndReason::Hangup,
            EndReason::Rejected,
            EndReason::Cancelled,
            EndReason::NoAnswer,
            EndReason::Disconnected,
            EndReason::MediaUnavailable,
            EndReason::Failed,
            EndReason::Shutdown,
        ] {
            let json = serde_json::to_string(&reason).unwrap();
            assert_eq!(json, format!("\"{}\"", reason.as_str()));
        }
    }
}
