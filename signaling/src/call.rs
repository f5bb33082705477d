//! The call state machine, as pure code: no sockets, no clock, no SFU. The namespace handlers
//! feed it what users asked for and act on what it answers.
//!
//! A call has a creator (the caller) and invitees. Each member is either still *ringing* or
//! has *joined*; the call is `Ringing` until the first invitee accepts, then `Active`.
//!
//! ```text
//!            first accept
//! Ringing ───────────────────▶ Active ──┐ accept / invite / a departure that
//!    │                           │  ◀───┘ leaves two or more people (or one
//!    │ the caller gives up, or   │        waiting for someone still ringing)
//!    │ nobody is left ringing    │ fewer than two remain (the last but one
//!    ▼                           ▼ leaves), or the creator leaves with
//!               Ended(reason)      `creator_ends_call`, or fail / shutdown
//! ```
//!
//! A two-person call is a group call with one invitee: every rule of the original 1:1 app
//! (reject, cancel, no answer, hang up, disconnect) falls out of the general rules.

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

/// The reasons a participant may give in `end_call` / `leave_call`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HangupReason {
    #[default]
    Hangup,
    MediaUnavailable,
}

/// Why one member left a call that goes on (`participant_left.reason` on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LeaveReason {
    /// Hung up (`leave_call` / `end_call`).
    Left,
    /// Declined while ringing.
    Rejected,
    /// Rang until the ring timeout.
    NoAnswer,
    /// Their socket (or, while ringing, their last socket) went away.
    Disconnected,
    /// Could not access camera/microphone.
    MediaUnavailable,
    /// Their media connection failed.
    Failed,
}

impl LeaveReason {
    pub fn as_str(self) -> &'static str {
        match self {
            LeaveReason::Left => "left",
            LeaveReason::Rejected => "rejected",
            LeaveReason::NoAnswer => "no_answer",
            LeaveReason::Disconnected => "disconnected",
            LeaveReason::MediaUnavailable => "media_unavailable",
            LeaveReason::Failed => "failed",
        }
    }

    /// The call's end reason when this departure ends it.
    pub fn end_reason(self) -> EndReason {
        match self {
            LeaveReason::Left => EndReason::Hangup,
            LeaveReason::Rejected => EndReason::Rejected,
            LeaveReason::NoAnswer => EndReason::NoAnswer,
            LeaveReason::Disconnected => EndReason::Disconnected,
            LeaveReason::MediaUnavailable => EndReason::MediaUnavailable,
            LeaveReason::Failed => EndReason::Failed,
        }
    }
}

impl From<HangupReason> for LeaveReason {
    fn from(reason: HangupReason) -> Self {
        match reason {
            HangupReason::Hangup => LeaveReason::Left,
            HangupReason::MediaUnavailable => LeaveReason::MediaUnavailable,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallState {
    Ringing,
    Active,
    Ended(EndReason),
}

/// A member's part in a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Started the call.
    Caller,
    /// Was invited (by the caller or anyone who joined).
    Callee,
}

/// Whether a member is in the call yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attendance {
    Ringing,
    Joined,
}

/// One person in a call.
#[derive(Debug, Clone)]
pub struct Member {
    pub user: User,
    pub role: Role,
    pub attendance: Attendance,
}

/// What a member's departure did to the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Departure {
    /// The call goes on without them (they are no longer a member).
    Left(LeaveReason),
    /// Their departure ended the call (they stay listed, so they hear `call_ended` too).
    Ended(EndReason),
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
    #[error("only {0} may do this")]
    NotPermitted(&'static str),
    #[error("{0} is already in this call")]
    AlreadyInCall(String),
    #[error("a call needs at least one invitee")]
    NobodyInvited,
    #[error("at most {0} participants per call")]
    Full(usize),
}

impl CallError {
    pub fn code(&self) -> &'static str {
        match self {
            CallError::SelfCall => "self_call",
            CallError::NotAParticipant => "not_a_participant",
            CallError::AlreadyEnded => "unknown_call",
            CallError::InvalidState { .. } => "invalid_state",
            CallError::NotPermitted(_) => "not_permitted",
            CallError::AlreadyInCall(_) => "busy",
            CallError::NobodyInvited => "invalid_payload",
            CallError::Full(_) => "limit_exceeded",
        }
    }
}

/// How a call behaves, from configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallRules {
    /// Members (joined or ringing) one call may have, the caller included.
    pub max_members: usize,
    /// The creator leaving ends the call for everyone.
    pub creator_ends_call: bool,
}

impl Default for CallRules {
    fn default() -> Self {
        Self {
            max_members: 16,
            creator_ends_call: false,
        }
    }
}

/// One call: a creator and the people invited to it.
#[derive(Debug, Clone)]
pub struct Call {
    id: CallId,
    kind: CallKind,
    rules: CallRules,
    /// The creator first, then invitees in invitation order.
    members: Vec<Member>,
    state: CallState,
}

impl Call {
    /// A new ringing call from `caller` to `invitees` (at least one, nobody twice).
    pub fn new(
        id: CallId,
        kind: CallKind,
        caller: User,
        invitees: Vec<User>,
        rules: CallRules,
    ) -> Result<Call, CallError> {
        if invitees.is_empty() {
            return Err(CallError::NobodyInvited);
        }
        let mut call = Call {
            id,
            kind,
            rules,
            members: vec![Member {
                user: caller,
                role: Role::Caller,
                attendance: Attendance::Joined,
            }],
            state: CallState::Ringing,
        };
        for invitee in invitees {
            call.add_invitee(invitee)?;
        }
        Ok(call)
    }

    pub fn id(&self) -> &CallId {
        &self.id
    }
    pub fn kind(&self) -> CallKind {
        self.kind
    }
    pub fn state(&self) -> CallState {
        self.state
    }
    pub fn is_ended(&self) -> bool {
        matches!(self.state, CallState::Ended(_))
    }
    /// The creator.
    pub fn caller(&self) -> &User {
        &self.members[0].user
    }
    /// Everyone, joined or ringing, the creator first.
    pub fn members(&self) -> &[Member] {
        &self.members
    }
    pub fn member(&self, user: &UserId) -> Option<&Member> {
        self.members.iter().find(|m| m.user.id == *user)
    }
    /// Those who have joined, the creator first.
    pub fn joined(&self) -> impl Iterator<Item = &User> {
        self.members
            .iter()
            .filter(|m| m.attendance == Attendance::Joined)
            .map(|m| &m.user)
    }

    /// Invites `user` on behalf of `by`, who must have joined.
    pub fn invite(&mut self, by: &UserId, user: User) -> Result<(), CallError> {
        let inviter = self.check_participant(by)?;
        if inviter.attendance != Attendance::Joined {
            return Err(CallError::NotPermitted("those who joined the call"));
        }
        if user.id == *by {
            return Err(CallError::SelfCall);
        }
        self.add_invitee(user)
    }

    fn add_invitee(&mut self, user: User) -> Result<(), CallError> {
        if self.member(&user.id).is_some() {
            return Err(if user.id == self.caller().id {
                CallError::SelfCall
            } else {
                CallError::AlreadyInCall(user.name)
            });
        }
        if self.members.len() >= self.rules.max_members {
            return Err(CallError::Full(self.rules.max_members));
        }
        self.members.push(Member {
            user,
            role: Role::Callee,
            attendance: Attendance::Ringing,
        });
        Ok(())
    }

    /// Checks that `user` is a member and the call has not ended.
    pub fn check_participant(&self, user: &UserId) -> Result<&Member, CallError> {
        let member = self.member(user).ok_or(CallError::NotAParticipant)?;
        if self.is_ended() {
            return Err(CallError::AlreadyEnded);
        }
        Ok(member)
    }

    /// Checks that `user` may exchange media messages: joined, in an active call.
    pub fn check_media(&self, user: &UserId) -> Result<(), CallError> {
        let member = self.check_participant(user)?;
        if self.state == CallState::Ringing || member.attendance == Attendance::Ringing {
            return Err(CallError::InvalidState {
                expected: "active",
                actual: "ringing",
            });
        }
        Ok(())
    }

    /// An invitee answers. Returns whether this made the call active (the first answer).
    pub fn accept(&mut self, by: &UserId) -> Result<bool, CallError> {
        self.check_ringing_invitee(by)?;
        self.set_attendance(by, Attendance::Joined);
        let first = self.state == CallState::Ringing;
        self.state = CallState::Active;
        Ok(first)
    }

    /// An invitee declines.
    pub fn reject(&mut self, by: &UserId) -> Result<Departure, CallError> {
        self.check_ringing_invitee(by)?;
        Ok(self.depart(by, LeaveReason::Rejected))
    }

    /// A member leaves. While ringing, an invitee leaving declines (`rejected`).
    pub fn leave(&mut self, by: &UserId, reason: HangupReason) -> Result<Departure, CallError> {
        let member = self.check_participant(by)?;
        let reason = match (member.attendance, reason) {
            (Attendance::Ringing, HangupReason::Hangup) => LeaveReason::Rejected,
            (_, reason) => reason.into(),
        };
        Ok(self.depart(by, reason))
    }

    /// `user`'s ring timeout fired. Only a member still ringing is affected.
    pub fn timeout(&mut self, user: &UserId) -> Result<Departure, CallError> {
        self.check_ringing_invitee(user)?;
        Ok(self.depart(user, LeaveReason::NoAnswer))
    }

    /// A member's call socket (or, while ringing, their last socket) went away.
    pub fn disconnect(&mut self, user: &UserId) -> Result<Departure, CallError> {
        self.check_participant(user)?;
        Ok(self.depart(user, LeaveReason::Disconnected))
    }

    /// A member's media connection failed.
    pub fn fail(&mut self, user: &UserId) -> Result<Departure, CallError> {
        self.check_participant(user)?;
        Ok(self.depart(user, LeaveReason::Failed))
    }

    /// Ends the call for a reason that is nobody's action (`failed`, `shutdown`, ...).
    pub fn terminate(&mut self, reason: EndReason) -> Result<EndReason, CallError> {
        if self.is_ended() {
            return Err(CallError::AlreadyEnded);
        }
        self.state = CallState::Ended(reason);
        Ok(reason)
    }

    fn check_ringing_invitee(&self, user: &UserId) -> Result<(), CallError> {
        let member = self.check_participant(user)?;
        match (member.role, member.attendance) {
            (_, Attendance::Ringing) => Ok(()),
            (Role::Caller, _) => Err(CallError::NotPermitted("an invitee")),
            (Role::Callee, Attendance::Joined) => Err(CallError::InvalidState {
                expected: "ringing",
                actual: "active",
            }),
        }
    }

    fn set_attendance(&mut self, user: &UserId, attendance: Attendance) {
        if let Some(member) = self.members.iter_mut().find(|m| m.user.id == *user) {
            member.attendance = attendance;
        }
    }

    /// Applies the departure rules. `user` is a member of a call that has not ended.
    fn depart(&mut self, user: &UserId, reason: LeaveReason) -> Departure {
        let is_caller = self.caller().id == *user;
        let remaining = self.members.iter().filter(|m| m.user.id != *user);
        let joined = remaining
            .clone()
            .filter(|m| m.attendance == Attendance::Joined)
            .count();
        let ringing = remaining
            .filter(|m| m.attendance == Attendance::Ringing)
            .count();
        let end = match self.state {
            // Before anyone answered: the caller giving up, or the last invitee declining.
            CallState::Ringing if is_caller => Some(match reason {
                LeaveReason::Left => EndReason::Cancelled,
                other => other.end_reason(),
            }),
            CallState::Ringing => (ringing == 0).then(|| reason.end_reason()),
            // Answered: it goes on while two remain, or one waits for someone ringing.
            _ if is_caller && self.rules.creator_ends_call => Some(reason.end_reason()),
            _ if joined >= 2 || (joined == 1 && ringing > 0) => None,
            _ => Some(reason.end_reason()),
        };
        match end {
            Some(reason) => {
                self.state = CallState::Ended(reason);
                Departure::Ended(reason)
            }
            None => {
                self.members.retain(|m| m.user.id != *user);
                Departure::Left(reason)
            }
        }
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

    fn id(s: &str) -> UserId {
        UserId::new(s)
    }

    fn call_with(invitees: &[&str], rules: CallRules) -> Call {
        Call::new(
            CallId::new("c1"),
            CallKind::Video,
            user("alice"),
            invitees.iter().map(|i| user(i)).collect(),
            rules,
        )
        .unwrap()
    }

    /// Alice calls Bob.
    fn ringing() -> Call {
        call_with(&["bob"], CallRules::default())
    }

    fn active() -> Call {
        let mut call = ringing();
        assert!(call.accept(&id("bob")).unwrap());
        call
    }

    /// Alice, Bob, Carol and Dave, all joined.
    fn group() -> Call {
        let mut call = call_with(&["bob", "carol", "dave"], CallRules::default());
        for who in ["bob", "carol", "dave"] {
            call.accept(&id(who)).unwrap();
        }
        call
    }

    fn joined_ids(call: &Call) -> Vec<&str> {
        call.joined().map(|u| u.id.as_str()).collect()
    }

    // ---- the original 1:1 rules ----

    #[test]
    fn self_call_and_empty_calls_are_refused() {
        let err = Call::new(
            CallId::new("c"),
            CallKind::Voice,
            user("alice"),
            vec![user("alice")],
            CallRules::default(),
        );
        assert_eq!(err.unwrap_err().code(), "self_call");
        let err = Call::new(
            CallId::new("c"),
            CallKind::Voice,
            user("alice"),
            vec![],
            CallRules::default(),
        );
        assert_eq!(err.unwrap_err(), CallError::NobodyInvited);
    }

    #[test]
    fn new_call_rings_and_first_accept_activates() {
        let mut call = ringing();
        assert_eq!(call.state(), CallState::Ringing);
        assert_eq!(call.member(&id("alice")).unwrap().role, Role::Caller);
        assert_eq!(call.member(&id("bob")).unwrap().role, Role::Callee);
        assert_eq!(
            call.member(&id("bob")).unwrap().attendance,
            Attendance::Ringing
        );
        assert!(call.member(&id("eve")).is_none());
        assert_eq!(joined_ids(&call), ["alice"]);
        assert!(call.accept(&id("bob")).unwrap());
        assert_eq!(call.state(), CallState::Active);
        assert_eq!(joined_ids(&call), ["alice", "bob"]);
    }

    #[test]
    fn caller_cannot_accept_or_reject() {
        let mut call = ringing();
        assert_eq!(
            call.accept(&id("alice")).unwrap_err().code(),
            "not_permitted"
        );
        assert_eq!(
            call.reject(&id("alice")).unwrap_err().code(),
            "not_permitted"
        );
        assert_eq!(call.state(), CallState::Ringing);
    }

    #[test]
    fn strangers_can_do_nothing() {
        let mut call = ringing();
        let eve = id("eve");
        assert_eq!(call.accept(&eve).unwrap_err().code(), "not_a_participant");
        assert_eq!(call.reject(&eve).unwrap_err().code(), "not_a_participant");
        let leave = call.leave(&eve, HangupReason::Hangup);
        assert_eq!(leave.unwrap_err().code(), "not_a_participant");
        assert_eq!(
            call.check_media(&eve).unwrap_err().code(),
            "not_a_participant"
        );
        assert_eq!(
            call.disconnect(&eve).unwrap_err().code(),
            "not_a_participant"
        );
        let invite = call.invite(&eve, user("zed"));
        assert_eq!(invite.unwrap_err().code(), "not_a_participant");
        assert_eq!(call.state(), CallState::Ringing);
    }

    #[test]
    fn accepting_twice_is_invalid_state() {
        let mut call = active();
        assert_eq!(call.accept(&id("bob")).unwrap_err().code(), "invalid_state");
        assert_eq!(call.reject(&id("bob")).unwrap_err().code(), "invalid_state");
        assert_eq!(call.state(), CallState::Active);
    }

    #[test]
    fn reject_ends_a_one_to_one_call() {
        let mut call = ringing();
        let departure = call.reject(&id("bob")).unwrap();
        assert_eq!(departure, Departure::Ended(EndReason::Rejected));
        assert_eq!(call.state(), CallState::Ended(EndReason::Rejected));
        // Everyone stays listed, so everyone hears the end.
        assert_eq!(call.members().len(), 2);
    }

    #[test]
    fn ending_while_ringing_cancels_or_rejects() {
        let mut call = ringing();
        let by_caller = call.leave(&id("alice"), HangupReason::Hangup).unwrap();
        assert_eq!(by_caller, Departure::Ended(EndReason::Cancelled));
        let mut call = ringing();
        let by_callee = call.leave(&id("bob"), HangupReason::Hangup).unwrap();
        assert_eq!(by_callee, Departure::Ended(EndReason::Rejected));
    }

    #[test]
    fn hanging_up_an_active_one_to_one_call_ends_it() {
        for who in ["alice", "bob"] {
            let mut call = active();
            let departure = call.leave(&id(who), HangupReason::Hangup).unwrap();
            assert_eq!(departure, Departure::Ended(EndReason::Hangup));
        }
        let mut call = active();
        let departure = call.leave(&id("bob"), HangupReason::MediaUnavailable);
        assert_eq!(
            departure.unwrap(),
            Departure::Ended(EndReason::MediaUnavailable)
        );
    }

    #[test]
    fn timeout_ends_only_a_ringing_invitee() {
        let mut call = ringing();
        assert_eq!(
            call.timeout(&id("bob")).unwrap(),
            Departure::Ended(EndReason::NoAnswer)
        );
        let mut call = active();
        assert_eq!(
            call.timeout(&id("bob")).unwrap_err().code(),
            "invalid_state"
        );
        assert_eq!(call.state(), CallState::Active);
    }

    #[test]
    fn disconnect_and_failure_end_a_one_to_one_call() {
        let mut call = active();
        assert_eq!(
            call.disconnect(&id("alice")).unwrap(),
            Departure::Ended(EndReason::Disconnected)
        );
        let mut call = ringing();
        assert_eq!(
            call.disconnect(&id("bob")).unwrap(),
            Departure::Ended(EndReason::Disconnected)
        );
        let mut call = active();
        assert_eq!(
            call.fail(&id("bob")).unwrap(),
            Departure::Ended(EndReason::Failed)
        );
    }

    #[test]
    fn nothing_happens_after_the_end() {
        let mut call = active();
        call.leave(&id("alice"), HangupReason::Hangup).unwrap();
        assert_eq!(
            call.leave(&id("bob"), HangupReason::Hangup)
                .unwrap_err()
                .code(),
            "unknown_call"
        );
        assert_eq!(
            call.disconnect(&id("bob")).unwrap_err().code(),
            "unknown_call"
        );
        assert_eq!(
            call.terminate(EndReason::Failed).unwrap_err().code(),
            "unknown_call"
        );
        assert_eq!(
            call.check_media(&id("bob")).unwrap_err().code(),
            "unknown_call"
        );
        assert_eq!(call.state(), CallState::Ended(EndReason::Hangup));
    }

    #[test]
    fn media_needs_an_active_call_and_a_joined_member() {
        let call = ringing();
        assert_eq!(
            call.check_media(&id("alice")).unwrap_err().code(),
            "invalid_state"
        );
        let mut call = call_with(&["bob", "carol"], CallRules::default());
        call.accept(&id("bob")).unwrap();
        assert!(call.check_media(&id("alice")).is_ok());
        assert!(call.check_media(&id("bob")).is_ok());
        assert_eq!(
            call.check_media(&id("carol")).unwrap_err().code(),
            "invalid_state"
        );
    }

    // ---- group calls ----

    #[test]
    fn a_group_call_goes_on_until_the_last_but_one_leaves() {
        let mut call = group();
        assert_eq!(
            call.leave(&id("dave"), HangupReason::Hangup).unwrap(),
            Departure::Left(LeaveReason::Left)
        );
        assert_eq!(joined_ids(&call), ["alice", "bob", "carol"]);
        // Even the creator may leave without ending it (the default rules).
        assert_eq!(
            call.disconnect(&id("alice")).unwrap(),
            Departure::Left(LeaveReason::Disconnected)
        );
        assert_eq!(joined_ids(&call), ["bob", "carol"]);
        assert_eq!(call.state(), CallState::Active);
        assert_eq!(
            call.leave(&id("carol"), HangupReason::Hangup).unwrap(),
            Departure::Ended(EndReason::Hangup)
        );
    }

    #[test]
    fn creator_ends_call_for_everyone_when_configured() {
        let rules = CallRules {
            creator_ends_call: true,
            ..CallRules::default()
        };
        let mut call = call_with(&["bob", "carol"], rules);
        call.accept(&id("bob")).unwrap();
        call.accept(&id("carol")).unwrap();
        assert_eq!(
            call.leave(&id("bob"), HangupReason::Hangup).unwrap(),
            Departure::Left(LeaveReason::Left)
        );
        let mut call = call_with(&["bob", "carol"], rules);
        call.accept(&id("bob")).unwrap();
        call.accept(&id("carol")).unwrap();
        assert_eq!(
            call.leave(&id("alice"), HangupReason::Hangup).unwrap(),
            Departure::Ended(EndReason::Hangup)
        );
    }

    #[test]
    fn one_declining_invitee_does_not_end_a_group_call() {
        let mut call = call_with(&["bob", "carol"], CallRules::default());
        assert_eq!(
            call.reject(&id("bob")).unwrap(),
            Departure::Left(LeaveReason::Rejected)
        );
        assert!(call.member(&id("bob")).is_none());
        assert_eq!(call.state(), CallState::Ringing);
        // The last one ringing times out: nobody answered.
        assert_eq!(
            call.timeout(&id("carol")).unwrap(),
            Departure::Ended(EndReason::NoAnswer)
        );
    }

    #[test]
    fn someone_alone_waits_for_an_invitee_still_ringing() {
        let mut call = call_with(&["bob", "carol"], CallRules::default());
        call.accept(&id("bob")).unwrap();
        assert_eq!(
            call.leave(&id("bob"), HangupReason::Hangup).unwrap(),
            Departure::Left(LeaveReason::Left)
        );
        assert_eq!(joined_ids(&call), ["alice"]);
        // Carol never answers: Alice is alone, the call ends.
        assert_eq!(
            call.timeout(&id("carol")).unwrap(),
            Departure::Ended(EndReason::NoAnswer)
        );
    }

    #[test]
    fn invitations_come_from_joined_members_and_respect_the_limit() {
        let rules = CallRules {
            max_members: 3,
            ..CallRules::default()
        };
        let mut call = call_with(&["bob"], rules);
        let by_ringing = call.invite(&id("bob"), user("carol"));
        assert_eq!(by_ringing.unwrap_err().code(), "not_permitted");
        call.accept(&id("bob")).unwrap();
        call.invite(&id("bob"), user("carol")).unwrap();
        assert_eq!(
            call.member(&id("carol")).unwrap().attendance,
            Attendance::Ringing
        );
        assert_eq!(
            call.invite(&id("alice"), user("dave")).unwrap_err(),
            CallError::Full(3)
        );
        assert_eq!(
            call.invite(&id("alice"), user("carol")).unwrap_err().code(),
            "busy"
        );
        assert_eq!(
            call.invite(&id("alice"), user("alice")).unwrap_err().code(),
            "self_call"
        );
        // A late accept joins an active call without re-activating it.
        assert!(!call.accept(&id("carol")).unwrap());
        assert_eq!(joined_ids(&call), ["alice", "bob", "carol"]);
    }

    #[test]
    fn too_many_invitees_at_once_are_refused() {
        let rules = CallRules {
            max_members: 2,
            ..CallRules::default()
        };
        let err = Call::new(
            CallId::new("c"),
            CallKind::Video,
            user("alice"),
            vec![user("bob"), user("carol")],
            rules,
        );
        assert_eq!(err.unwrap_err(), CallError::Full(2));
        let twice = Call::new(
            CallId::new("c"),
            CallKind::Video,
            user("alice"),
            vec![user("bob"), user("bob")],
            CallRules::default(),
        );
        assert_eq!(twice.unwrap_err().code(), "busy");
    }

    #[test]
    fn a_failed_member_leaves_a_group_call() {
        let mut call = group();
        assert_eq!(
            call.fail(&id("carol")).unwrap(),
            Departure::Left(LeaveReason::Failed)
        );
        assert_eq!(joined_ids(&call), ["alice", "bob", "dave"]);
    }

    #[test]
    fn wire_names_are_stable() {
        let reasons = [
            (LeaveReason::Left, "left"),
            (LeaveReason::Rejected, "rejected"),
            (LeaveReason::NoAnswer, "no_answer"),
            (LeaveReason::Disconnected, "disconnected"),
            (LeaveReason::MediaUnavailable, "media_unavailable"),
            (LeaveReason::Failed, "failed"),
        ];
        for (reason, name) in reasons {
            assert_eq!(reason.as_str(), name);
            assert_eq!(serde_json::to_value(reason).unwrap(), name);
        }
        for reason in EndReason::ALL {
            assert_eq!(serde_json::to_value(reason).unwrap(), reason.as_str());
        }
    }
}
