// The call lifecycle: place, accept, decline and leave a call, start both peer connections once
// the call is accepted and our camera/microphone are ready, mute and camera-off, and release
// everything when the call is over. The wording of each outcome is here too.

import {
  CallMedia,
  MEDIA_ERROR_TEXT,
  MediaUnavailableError,
  getLocalMedia,
  stopStream,
} from './media.js';
import { scheduleHistoryRefresh } from './recent-calls.js';
import { Ringtone } from './ringtone.js';
import { MAX_PARTICIPANTS, newCall, render, state } from './state.js';
import { $, fmtDuration, formatNames, notice, toast } from './ui.js';

export const ringtone = new Ringtone();

export function startTimer() {
  stopTimer();
  const tick = () => {
    const c = state.call;
    if (c && c.startedAt) $('call-timer').textContent = fmtDuration(Date.now() - c.startedAt);
  };
  tick();
  state.timer = setInterval(tick, 500);
}

function stopTimer() {
  if (state.timer) clearInterval(state.timer);
  state.timer = null;
  $('call-timer').textContent = '00:00';
}

/**
 * Caller: camera/mic first (the permission prompt belongs to the click), then ring everyone in
 * `peers` ({id, name}, one for a 1:1 call, several for a group call).
 */
export async function startCall(peers, kind) {
  peers = Array.isArray(peers) ? peers : [peers];
  if (state.call) {
    toast('You are already in a call.');
    return;
  }
  if (!state.signaling || !state.connected) {
    toast('Not connected to the server yet.');
    return;
  }
  if (!peers.length) return;
  notice(null);
  const call = newCall({ kind, role: 'caller', phase: 'media', peer: peers[0] });
  for (const p of peers) call.ringing.set(p.id, { name: p.name });
  state.call = call;
  render();
  let stream;
  try {
    stream = await getLocalMedia(kind);
  } catch (e) {
    if (state.call === call) finishCall(mediaErrorText(e), 'error');
    return;
  }
  if (state.call !== call) {
    stopStream(stream); // hung up while the permission prompt was open
    return;
  }
  call.localStream = stream;
  state.last.localStream = stream;
  call.phase = 'calling';
  render();
  try {
    const to = peers.length === 1 ? peers[0].id : peers.map((p) => p.id);
    const ack = await state.signaling.request('initiate_call', { to, kind });
    if (state.call !== call) {
      // Hung up before the server told us the call id: cancel it now.
      leaveCall(ack.call_id, 'hangup');
      return;
    }
    if (!call.id) call.id = ack.call_id;
    state.selected.clear();
    render();
  } catch (e) {
    if (state.call === call) finishCall(initiateErrorText(e, peers), 'error');
  }
}

function initiateErrorText(e, peers) {
  const who = formatNames(peers.map((p) => p.name));
  const one = peers.length === 1;
  switch (e.code) {
    case 'user_offline':
      return one ? `${who} is offline.` : `Could not call ${who}: someone went offline (${e.message}).`;
    case 'unknown_user':
      return one ? `${who} is not a known user.` : `Could not call ${who}: ${e.message}`;
    case 'busy':
      return one ? `${who} is busy in another call.` : `Could not call ${who}: someone is busy (${e.message}).`;
    case 'self_call':
      return 'You cannot call yourself.';
    case 'limit_exceeded':
      return `Too many people for one call (at most ${MAX_PARTICIPANTS}).`;
    default:
      return `Could not call ${who}: ${e.message}`;
  }
}

/** Tell the server we are leaving; the call goes on for the others (protocol.md §7.1). */
function leaveCall(callId, reason) {
  state.signaling.send('leave_call', { call_id: callId, reason });
}

function mediaErrorText(e) {
  return e instanceof MediaUnavailableError ? e.message : `${MEDIA_ERROR_TEXT}.`;
}

/** Callee: accept at once (so the caller stops ringing), then get camera/mic. */
export async function acceptCall() {
  const call = state.call;
  if (!call || call.phase !== 'incoming') return;
  ringtone.stop();
  call.phase = 'accepting';
  render();
  const mediaP = getLocalMedia(call.kind).then(
    (stream) => ({ stream }),
    (error) => ({ error }),
  );
  try {
    await state.signaling.request('accept_call', { call_id: call.id });
  } catch (e) {
    mediaP.then((r) => stopStream(r.stream));
    if (state.call === call) finishCall(`Could not accept the call: ${e.message}`, 'error');
    return;
  }
  const r = await mediaP;
  if (state.call !== call) {
    stopStream(r.stream);
    return;
  }
  if (r.error) {
    // Tell the others why we are gone, then show the reason here.
    leaveCall(call.id, 'media_unavailable');
    finishCall(mediaErrorText(r.error), 'error');
    return;
  }
  call.localStream = r.stream;
  state.last.localStream = r.stream;
  if (call.phase === 'accepting' && call.accepted) call.phase = 'active';
  render();
  maybeStartMedia(call);
}

export function rejectCall() {
  const call = state.call;
  if (!call || call.phase !== 'incoming') return;
  state.signaling.send('reject_call', { call_id: call.id });
  finishCall(`You declined the ${call.kind} call from ${call.peer.name}.`);
}

export function hangUp() {
  const call = state.call;
  if (!call) return;
  if (call.id) leaveCall(call.id, 'hangup');
  const dur = call.startedAt ? ` after ${fmtDuration(Date.now() - call.startedAt)}` : '';
  const group = call.remote.size + call.ringing.size > 1;
  const names = formatNames([...call.ringing.values()].map((r) => r.name)) || call.peer.name;
  finishCall(
    call.phase !== 'active'
      ? `Call to ${names} cancelled.`
      : group
        ? `You left the call${dur}.`
        : `Call with ${call.peer.name} ended${dur}.`,
  );
}

/** Both peer connections start once the call is accepted AND our camera/mic are ready. */
export function maybeStartMedia(call) {
  if (call.media || !call.accepted || !call.localStream || state.call !== call) return;
  const media = new CallMedia({
    callId: call.id,
    localStream: call.localStream,
    signaling: state.signaling,
    onRemoteTracks: (tracks) => {
      if (state.call !== call) return;
      call.tracks = tracks;
      for (const t of tracks) {
        // Media from someone we have not heard of yet (a join racing its event).
        if (!call.remote.has(t.userId) && t.userId !== state.session.user.id) {
          const p = call.participants.find((x) => x.id === t.userId) || call.ringing.get(t.userId);
          call.remote.set(t.userId, { name: p ? p.name : 'Guest', audio: true, video: true, screen: null });
          call.ringing.delete(t.userId);
        }
      }
      rememberPcs();
      render();
    },
    onConnectionState: (s) => {
      if (state.call !== call) return;
      call.connection = s;
      render();
    },
    fallbackRemoteId: () => (call.remote.size === 1 ? [...call.remote.keys()][0] : null),
  });
  call.media = media;
  state.last.publisher = null;
  state.last.subscriber = null;
  // An early subscriber offer (it may beat our publisher offer) was parked on the call.
  for (const msg of call.pendingOffers || []) media.handleOffer(msg).then(rememberPcs);
  call.pendingOffers = [];
  media
    .startPublishing()
    .then(rememberPcs)
    .catch((e) => {
      if (state.call !== call) return;
      console.warn('publish failed', e);
      toast(`Could not start sending media: ${e.message}`);
    });
  rememberPcs();
  // Apply a mute/camera-off chosen while it was still ringing.
  if (!call.audio) media.setAudio(false);
  if (!call.video) media.setVideo(false);
  if (!call.audio || !call.video) sendMediaState(call);
}

export function rememberPcs() {
  const m = state.call && state.call.media;
  if (!m) return;
  if (m.publisher) state.last.publisher = m.publisher;
  if (m.subscriber) state.last.subscriber = m.subscriber;
}

export function sendMediaState(call) {
  if (!call.id || !call.accepted) return;
  state.signaling.send('media_state', {
    call_id: call.id,
    audio: call.audio,
    video: call.kind === 'video' && call.video,
    screen: !!call.screen,
  });
}

export async function toggleMute() {
  const call = state.call;
  if (!call || !call.localStream) return;
  call.audio = !call.audio;
  render();
  if (call.media) await call.media.setAudio(call.audio);
  else for (const t of call.localStream.getAudioTracks()) t.enabled = call.audio;
  sendMediaState(call);
}

export async function toggleCamera() {
  const call = state.call;
  if (!call || !call.localStream || call.kind !== 'video') return;
  call.video = !call.video;
  render();
  if (call.media) await call.media.setVideo(call.video);
  else for (const t of call.localStream.getVideoTracks()) t.enabled = call.video;
  sendMediaState(call);
}

/**
 * Leave the call locally: ringtone off, peer connections closed, every local track stopped,
 * back to the lobby with `message` in the banner. Safe to call twice.
 */
export function finishCall(message, level = 'info') {
  const call = state.call;
  ringtone.stop();
  stopTimer();
  if (call) {
    if (call.media) {
      state.last.publisher = call.media.publisher;
      state.last.subscriber = call.media.subscriber;
      call.media.close();
    }
    stopStream(call.localStream);
    if (call.screen) stopStream(call.screen.stream);
    for (const el of $('call-view').querySelectorAll('video, audio')) el.srcObject = null;
    const others = '[data-testid="remote-tile"], [data-testid="ringing-tile"], [data-testid="screen-tile"]';
    for (const tile of $('call-view').querySelectorAll(others)) tile.remove();
  }
  state.call = null;
  render();
  if (message) notice(message, level);
  if (call) scheduleHistoryRefresh();
}

export function endedText(call, reason, by) {
  const me = state.session.user;
  const byMe = by && by.id === me.id;
  const who = (by && by.name) || call.peer.name;
  const dur = call.startedAt ? ` (${fmtDuration(Date.now() - call.startedAt)})` : '';
  switch (reason) {
    case 'hangup':
      return byMe ? `Call ended${dur}.` : `${who} ended the call${dur}.`;
    case 'rejected':
      return call.role === 'caller' ? `Call rejected by ${who}.` : 'Call declined.';
    case 'cancelled':
      return call.role === 'callee' ? `Missed ${call.kind} call from ${call.peer.name}.` : 'Call cancelled.';
    case 'no_answer':
      return call.role === 'callee'
        ? `Missed ${call.kind} call from ${call.peer.name} (unanswered).`
        : `No answer from ${call.peer.name}: call unanswered.`;
    case 'disconnected':
      return `${who} disconnected. Call ended${dur}.`;
    case 'media_unavailable':
      return byMe
        ? `${MEDIA_ERROR_TEXT}.`
        : `Call ended: ${who} could not access their camera/microphone.`;
    case 'failed':
      return 'Call failed: the media connection could not be established.';
    case 'answered_elsewhere':
      return `The call from ${call.peer.name} was answered in another tab.`;
    case 'shutdown':
      return 'Call ended: the server is shutting down.';
    default:
      return `Call ended (${reason}).`;
  }
}

export function leftText(name, reason, wasIn) {
  switch (reason) {
    case 'rejected':
      return `${name} declined.`;
    case 'no_answer':
      return `${name} did not answer.`;
    case 'disconnected':
      return wasIn ? `${name} disconnected.` : `${name} went offline.`;
    case 'media_unavailable':
      return `${name} could not access their camera/microphone.`;
    case 'failed':
      return `${name}'s connection failed.`;
    default:
      return `${name} left the call.`;
  }
}
