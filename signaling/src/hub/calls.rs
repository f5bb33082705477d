//! Calls: placing, inviting, answering, leaving and ending (docs/protocol.md §3, §7).
//!
//! Each operation takes one step of the [`Call`] state machine under the hub's lock and then
//! tells the people concerned. A departure either leaves the call going
//! ([`Departure::Left`]: only the leaver is removed) or ends it ([`Departure::Ended`]:
//! everyone is told and freed).

use std::sync::Arc;
use std::time::Instant;

use serde_json::{json, Value};
use socketioxide::extract::AckSender;
use switchboard_sfu::{ParticipantId, RoomId};
use tracing::{debug, info, warn};

use super::{emit, ok_ack, participant_id, user_json, CallEntry, Hub, Me, Seat, State};
use crate::call::{Attendance, Call, CallRules, Departure, EndReason, HangupReason};
use crate::payload::{self, CallRef, EndCall, InitiateCall, InviteParticipant};
use crate::{CallId, SignalingError, User, UserId};

impl Hub {
    fn call_rules(&self) -> CallRules {
        CallRules {
            max_members: self.config.limits.max_participants_per_call,
            creator_ends_call: self.config.creator_ends_call,
        }
    }

    fn refuse_when_shutting_down(state: &State) -> Result<(), SignalingError> {
        if state.shutting_down {
            return Err(SignalingError::Internal(
                "the server is shutting down".into(),
            ));
        }
        Ok(())
    }

    /// Someone `me` may invite: another user, online, not in a call.
    fn invitable(&self, state: &State, me: &Me, id: &UserId) -> Result<User, SignalingError> {
        if *id == me.user.id {
            return Err(SignalingError::SelfCall);
        }
        // One answer for "never seen" and "offline": nothing tells which ids exist.
        let Some(user) = state.presence.user(id).cloned() else {
            return Err(SignalingError::UserOffline);
        };
        if state.user_calls.contains_key(id) {
            return Err(SignalingError::Busy(format!("{} is", user.name)));
        }
        let key = (me.user.id.clone(), id.clone());
        if state
            .declined
            .get(&key)
            .is_some_and(|until| *until > Instant::now())
        {
            return Err(SignalingError::LimitExceeded(format!(
                "{} declined your call; try again later",
                user.name
            )));
        }
        if !self.shared_limits.admit_ring(&me.user.id, id) {
            return Err(SignalingError::LimitExceeded(format!(
                "you called {} too often; try again later",
                user.name
            )));
        }
        Ok(user)
    }

    /// `callee` declined a call of `caller`: the caller may not ring them for a while.
    fn note_declined(&self, state: &mut State, caller: &UserId, callee: &UserId) {
        let now = Instant::now();
        if state.declined.len() >= 4096 {
            state.declined.retain(|_, until| *until > now);
        }
        state.declined.insert(
            (caller.clone(), callee.clone()),
            now + self.config.limits.decline_cooldown,
        );
    }

    /// Rings `user` for `call_id` until they answer or their ring timeout fires.
    fn ring(
        self: &Arc<Self>,
        state: &State,
        call_id: &CallId,
        user: &User,
        incoming: &Value,
    ) -> Seat {
        let timer = {
            let hub = Arc::clone(self);
            let (call_id, user_id) = (call_id.clone(), user.id.clone());
            let ring_timeout = self.config.ring_timeout;
            tokio::spawn(async move {
                tokio::time::sleep(ring_timeout).await;
                hub.ring_timeout(&call_id, &user_id);
            })
            .abort_handle()
        };
        state.send(state.sockets_of(&user.id), "incoming_call", incoming);
        Seat {
            ring_timer: Some(timer),
            ..Seat::default()
        }
    }

    pub fn initiate(
        self: &Arc<Self>,
        me: &Me,
        value: &Value,
        ack: &mut Option<AckSender>,
    ) -> Result<(), SignalingError> {
        let p: InitiateCall = payload::parse(value, self.config.max_payload_bytes)?;
        me.check_may_call()?;
        if me.identity.grants.rooms.is_some() {
            return Err(SignalingError::MissingGrant(
                "call (a token limited to given rooms cannot place new calls)",
            ));
        }
        let mut state = self.lock();
        Self::refuse_when_shutting_down(&state)?;
        if let Some(ringing_for) = state.user_calls.get(&me.user.id).cloned() {
            // Only ringing: placing a call declines the ring (a caller cannot keep someone
            // "busy" by ringing them); joined members stay busy.
            let entry = state
                .calls
                .get_mut(&ringing_for)
                .expect("user_calls names live calls");
            let ringing = entry
                .call
                .member(&me.user.id)
                .is_some_and(|m| m.attendance == Attendance::Ringing);
            if !ringing {
                return Err(SignalingError::Busy("you are".into()));
            }
            let caller = entry.call.caller().id.clone();
            let departure = entry.call.reject(&me.user.id)?;
            info!(call_id = %ringing_for, user_id = %me.user.id, "ring declined by placing a call");
            self.note_declined(&mut state, &caller, &me.user.id);
            self.apply_departure(
                &mut state,
                &ringing_for,
                &me.user,
                departure,
                Some(&me.user),
            );
        }
        let mut invitees: Vec<User> = Vec::new();
        for id in p.to.ids() {
            // Naming someone twice is harmless; they are invited once.
            if invitees.iter().all(|u| u.id != *id) {
                invitees.push(self.invitable(&state, me, id)?);
            }
        }
        let call_id = CallId::random();
        let call = Call::new(
            call_id.clone(),
            p.kind,
            me.user.clone(),
            invitees.clone(),
            self.call_rules(),
        )?;
        let mut entry = CallEntry::new(call);
        entry.seats.insert(
            me.user.id.clone(),
            Seat {
                socket: Some(me.sid()),
                policy: Some(self.media_policy(me)),
                ..Seat::default()
            },
        );
        info!(%call_id, user_id = %me.user.id, invitees = invitees.len(), kind = ?p.kind, "call ringing");
        self.history.started(&call_id, p.kind, &me.user, &invitees);
        ok_ack(ack, json!({ "call_id": call_id }));
        emit(
            &me.socket,
            "call_ringing",
            &json!({
                "call_id": call_id,
                "kind": p.kind,
                "to": user_json(&invitees[0]),
                "invitees": invitees.iter().map(user_json).collect::<Vec<_>>(),
            }),
        );
        let incoming = json!({
            "call_id": call_id,
            "kind": p.kind,
            "from": user_json(&me.user),
            "participants": [user_json(&me.user)],
            "ringing": invitees.iter().map(user_json).collect::<Vec<_>>(),
        });
        for invitee in &invitees {
            emit(
                &me.socket,
                "participant_invited",
                &json!({ "call_id": call_id, "user": user_json(invitee), "by": user_json(&me.user) }),
            );
            let seat = self.ring(&state, &call_id, invitee, &incoming);
            entry.seats.insert(invitee.id.clone(), seat);
            state.user_calls.insert(invitee.id.clone(), call_id.clone());
            state.presence_changed(&invitee.id);
        }
        state.user_calls.insert(me.user.id.clone(), call_id.clone());
        state.presence_changed(&me.user.id);
        state.calls.insert(call_id, entry);
        Ok(())
    }

    pub fn invite(
        self: &Arc<Self>,
        me: &Me,
        value: &Value,
        ack: &mut Option<AckSender>,
    ) -> Result<(), SignalingError> {
        let p: InviteParticipant = payload::parse(value, self.config.max_payload_bytes)?;
        me.check_may_call()?;
        let mut state = self.lock();
        Self::refuse_when_shutting_down(&state)?;
        state.call_of(me, &p.call_id)?;
        let invitee = self.invitable(&state, me, &p.user_id)?;
        let entry = state.calls.get_mut(&p.call_id).expect("checked above");
        entry.call.invite(&me.user.id, invitee.clone())?;
        let call_id = p.call_id;
        info!(%call_id, user_id = %me.user.id, invitee_id = %invitee.id, "participant invited");
        self.history.invited(&call_id, &invitee);
        ok_ack(ack, json!({}));
        let incoming = json!({
            "call_id": call_id,
            "kind": entry.call.kind(),
            "from": user_json(&me.user),
            "participants": entry.joined_json(),
            "ringing": entry.ringing_json(),
        });
        let invited =
            json!({ "call_id": call_id, "user": user_json(&invitee), "by": user_json(&me.user) });
        let joined = entry.joined_sockets();
        state.send(joined, "participant_invited", &invited);
        let seat = self.ring(&state, &call_id, &invitee, &incoming);
        let entry = state.calls.get_mut(&call_id).expect("checked above");
        entry.seats.insert(invitee.id.clone(), seat);
        state.presence_changed(&invitee.id);
        state.user_calls.insert(invitee.id, call_id);
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
        // Who joins the SFU room now: the accepter, and the caller when the call turns active.
        let (first, to_join) = {
            let mut state = self.lock();
            let entry = state.call_of_mut(me, &call_id)?;
            let first = entry.call.accept(&me.user.id)?;
            let mut to_join = vec![me.user.clone()];
            if first {
                self.history.answered(&call_id);
                entry.answered_at = Some(std::time::Instant::now());
                to_join.insert(0, entry.call.caller().clone());
            }
            if let Some(seat) = entry.seats.get_mut(&me.user.id) {
                seat.socket = Some(me.sid());
                seat.policy = Some(self.media_policy(me));
                seat.stop_ringing();
            }
            let to_join: Vec<_> = to_join
                .into_iter()
                .map(|user| {
                    let seat = entry.seats.get_mut(&user.id);
                    let pid = participant_id(&call_id, &user.id);
                    let policy = seat.map_or(Hub::NO_MEDIA, |seat| {
                        seat.media_requested = true;
                        seat.participant = Some(pid.clone());
                        seat.policy.unwrap_or(Hub::NO_MEDIA)
                    });
                    (user, pid, policy)
                })
                .collect();
            (first, to_join)
        };
        info!(%call_id, user_id = %me.user.id, first, "call accepted; joining the SFU room");

        // Joined before anyone hears `call_accepted`, so their first offer finds them.
        let room = RoomId::new(call_id.as_str());
        let mut joined = Ok(());
        for (user, pid, policy) in &to_join {
            if let Err(e) = self
                .sfu
                .join_with_policy(room.clone(), pid.clone(), user.id.as_str(), *policy)
                .await
            {
                warn!(%call_id, user_id = %user.id, error = %e, "SFU join failed");
                joined = Err(SignalingError::Internal(format!("media setup failed: {e}")));
                break;
            }
        }
        let pids: Vec<_> = to_join
            .iter()
            .map(|(user, pid, _)| (user.id.clone(), pid.clone()))
            .collect();
        let to_join: Vec<User> = to_join.into_iter().map(|(user, _, _)| user).collect();

        let mut state = self.lock();
        // Those who went (or whose call ended) while we were joining were asked to leave the
        // SFU then, but a join may have landed after that.
        let gone: Vec<UserId> = to_join
            .iter()
            .filter(|user| {
                !state.calls.get(&call_id).is_some_and(|e| {
                    e.call
                        .member(&user.id)
                        .is_some_and(|m| m.attendance == Attendance::Joined)
                })
            })
            .map(|user| user.id.clone())
            .collect();
        if !gone.is_empty() {
            self.spawn_leave(
                pids.iter()
                    .filter(|(user, _)| gone.contains(user))
                    .map(|(_, pid)| pid.clone()),
            );
        }
        let Some(entry) = state.calls.get_mut(&call_id) else {
            return Err(SignalingError::UnknownCall);
        };
        if gone.contains(&me.user.id) {
            return Err(SignalingError::UnknownCall);
        }
        if let Err(e) = joined {
            let departure = if first {
                entry
                    .call
                    .terminate(EndReason::Failed)
                    .map(Departure::Ended)
            } else {
                entry.call.fail(&me.user.id)
            };
            if let Ok(departure) = departure {
                self.apply_departure(&mut state, &call_id, &me.user, departure, None);
            }
            return Err(e);
        }
        let mut held_offers = Vec::new();
        for user in &to_join {
            if let Some(seat) = entry.seats.get_mut(&user.id) {
                seat.media_ready = true;
                if let (Some(sid), Some(sdp)) = (seat.socket, seat.held_offer.take()) {
                    held_offers.push((sid, sdp));
                }
            }
        }
        ok_ack(ack, json!({}));
        let accepted = json!({
            "call_id": call_id,
            "kind": entry.call.kind(),
            "participants": entry.joined_json(),
            "ringing": entry.ringing_json(),
        });
        let told: Vec<_> = to_join
            .iter()
            .filter_map(|user| entry.bound_socket(&user.id))
            .collect();
        let others: Vec<_> = entry
            .joined_sockets()
            .into_iter()
            .filter(|sid| !told.contains(sid))
            .collect();
        // What a late joiner missed: the tracks already published, and a running recording.
        let mut catch_up: Vec<(&str, Value)> = entry
            .tracks
            .iter()
            .filter(|(_, track)| track.user_id != me.user.id)
            .map(|(id, track)| {
                (
                    "track_published",
                    json!({
                        "call_id": call_id,
                        "user_id": track.user_id,
                        "track_id": id,
                        "kind": track.kind,
                        "source": track.source,
                    }),
                )
            })
            .collect();
        for (user_id, seat) in &entry.seats {
            if let (Some([audio, video, screen]), false) =
                (seat.media_state, *user_id == me.user.id)
            {
                catch_up.push((
                    "participant_media_state",
                    json!({
                        "call_id": call_id,
                        "user_id": user_id,
                        "audio": audio,
                        "video": video,
                        "screen": screen,
                    }),
                ));
            }
        }
        if let Some(super::recording::RecState::Active { by }) = &entry.recording {
            catch_up.push((
                "recording_started",
                json!({ "call_id": call_id, "by": user_json(by) }),
            ));
        }
        state.send(told, "call_accepted", &accepted);
        state.send(
            others,
            "participant_joined",
            &json!({ "call_id": call_id, "user": user_json(&me.user) }),
        );
        for (event, body) in &catch_up {
            emit(&me.socket, event, body);
        }
        for (sid, sdp) in held_offers {
            let offer = json!({ "call_id": call_id, "target": "subscriber", "sdp": sdp });
            state.send([sid], "webrtc_offer", &offer);
        }
        // The accepter's other sockets rang too: stop them.
        let elsewhere = json!({ "call_id": call_id, "reason": "answered_elsewhere" });
        let other_sockets = state
            .sockets_of(&me.user.id)
            .into_iter()
            .filter(|sid| *sid != me.sid());
        state.send(other_sockets, "call_ended", &elsewhere);
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
        let entry = state.call_of_mut(me, &p.call_id)?;
        let departure = entry.call.reject(&me.user.id)?;
        let caller = entry.call.caller().id.clone();
        info!(call_id = %p.call_id, user_id = %me.user.id, "call declined");
        self.note_declined(&mut state, &caller, &me.user.id);
        ok_ack(ack, json!({}));
        self.apply_departure(&mut state, &p.call_id, &me.user, departure, Some(&me.user));
        Ok(())
    }

    /// `leave_call` and `end_call`: the sender leaves; the call ends if too few remain.
    pub fn leave(
        &self,
        me: &Me,
        value: &Value,
        ack: &mut Option<AckSender>,
    ) -> Result<(), SignalingError> {
        let p: EndCall = payload::parse(value, self.config.max_payload_bytes)?;
        let mut state = self.lock();
        let entry = state.call_of_mut(me, &p.call_id)?;
        let reason = p.reason.unwrap_or(HangupReason::Hangup);
        let departure = entry.call.leave(&me.user.id, reason)?;
        info!(call_id = %p.call_id, user_id = %me.user.id, ?departure, "participant left");
        ok_ack(ack, json!({}));
        self.apply_departure(&mut state, &p.call_id, &me.user, departure, Some(&me.user));
        Ok(())
    }

    fn ring_timeout(&self, call_id: &CallId, user_id: &UserId) {
        let mut state = self.lock();
        let Some(entry) = state.calls.get_mut(call_id) else {
            return;
        };
        let Some(user) = entry.call.member(user_id).map(|m| m.user.clone()) else {
            return;
        };
        if let Ok(departure) = entry.call.timeout(user_id) {
            info!(%call_id, %user_id, "invitee did not answer in time");
            self.apply_departure(&mut state, call_id, &user, departure, None);
        }
    }

    // ---- departures and the end ----

    /// Acts on what a departure did: removes the member from a call that goes on, or ends it.
    pub(super) fn apply_departure(
        &self,
        state: &mut State,
        call_id: &CallId,
        user: &User,
        departure: Departure,
        by: Option<&User>,
    ) {
        match departure {
            Departure::Ended(reason) => self.finish_call(state, call_id, reason, by),
            Departure::Left(reason) => {
                let Some(entry) = state.calls.get_mut(call_id) else {
                    return;
                };
                let mut seat = entry.seats.remove(&user.id).unwrap_or_default();
                seat.stop_ringing();
                let remaining = entry.joined_sockets();
                if state.user_calls.get(&user.id) == Some(call_id) {
                    state.user_calls.remove(&user.id);
                    state.presence_changed(&user.id);
                }
                if seat.media_requested {
                    self.history.left(call_id, &user.id);
                    self.spawn_leave(seat.participant.take());
                }
                debug!(%call_id, user_id = %user.id, reason = reason.as_str(), "member removed");
                // The leaver's view of the call ends; a ringing invitee rang on every socket.
                let leaver_sockets = match seat.socket {
                    Some(sid) => vec![sid],
                    None => state.sockets_of(&user.id),
                };
                let mut ended = json!({ "call_id": call_id, "reason": reason.end_reason() });
                if let Some(by) = by {
                    ended["by"] = user_json(by);
                }
                state.send(leaver_sockets, "call_ended", &ended);
                state.send(
                    remaining,
                    "participant_left",
                    &json!({ "call_id": call_id, "user": user_json(user), "reason": reason.as_str() }),
                );
            }
        }
    }

    /// Removes an ended call, tells everyone in it (or ringing for it), and frees its SFU
    /// participants.
    pub(super) fn finish_call(
        &self,
        state: &mut State,
        call_id: &CallId,
        reason: EndReason,
        by: Option<&User>,
    ) {
        let Some(mut entry) = state.calls.remove(call_id) else {
            return;
        };
        let mut targets = Vec::new();
        let mut to_leave = Vec::new();
        for member in entry.call.members() {
            let user_id = &member.user.id;
            if state.user_calls.get(user_id) == Some(call_id) {
                state.user_calls.remove(user_id);
                state.presence_changed(user_id);
            }
            let Some(seat) = entry.seats.get_mut(user_id) else {
                continue;
            };
            seat.stop_ringing();
            match seat.socket {
                Some(sid) => targets.push(sid),
                None => targets.extend(state.sockets_of(user_id)),
            }
            if seat.media_requested {
                to_leave.extend(seat.participant.clone());
            }
        }
        info!(%call_id, reason = reason.as_str(), by = by.map(|u| u.id.as_str()), "call ended");
        self.history
            .ended(call_id, reason, entry.answered_at.is_some());
        self.recording_ends_with_call(state, &mut entry, call_id, reason);
        crate::metrics::call_ended(reason.as_str(), entry.answered_at.map(|at| at.elapsed()));

        if let (EndReason::Rejected, Some(by)) = (reason, by) {
            let caller = entry.call.caller();
            if let Some(sid) = entry.bound_socket(&caller.id) {
                let rejected = json!({ "call_id": call_id, "by": user_json(by) });
                state.send([sid], "call_rejected", &rejected);
            }
        }
        let mut ended = json!({ "call_id": call_id, "reason": reason });
        if let Some(by) = by {
            ended["by"] = user_json(by);
        }
        state.send(targets, "call_ended", &ended);
        if !to_leave.is_empty() {
            self.spawn_leave(to_leave);
        }
    }

    /// Frees SFU participants in the background. Each id names one join, so a late leave
    /// never removes the member's next join.
    pub(super) fn spawn_leave(&self, pids: impl IntoIterator<Item = ParticipantId>) {
        let pids: Vec<_> = pids.into_iter().collect();
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
        let to_leave: Vec<ParticipantId> = {
            let mut state = self.lock();
            state.shutting_down = true;
            let ids: Vec<CallId> = state.calls.keys().cloned().collect();
            let mut to_leave = Vec::new();
            for call_id in ids {
                let entry = state.calls.get_mut(&call_id).expect("listed above");
                for seat in entry.seats.values_mut() {
                    if seat.media_requested {
                        to_leave.extend(seat.participant.take());
                        // Freed below, synchronously, instead of by finish_call's spawned task.
                        seat.media_requested = false;
                    }
                }
                if let Ok(reason) = entry.call.terminate(EndReason::Shutdown) {
                    self.finish_call(&mut state, &call_id, reason, None);
                }
            }
            to_leave
        };
        for pid in to_leave {
            let _ = self.sfu.leave(pid).await;
        }
    }
}
