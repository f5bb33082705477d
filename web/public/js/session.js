// A signed-in session: the sign-in form, the Socket.IO connection and what each server event
// does to the state (docs/protocol.md), and signing out.

import {
  endedText,
  finishCall,
  leftText,
  maybeStartMedia,
  rememberPcs,
  ringtone,
  startTimer,
} from './call.js';
import { pruneSelection, renderUsers } from './lobby.js';
import { clearHistory, refreshHistory, renderHistory } from './recent-calls.js';
import { wireRecordingEvents } from './recording.js';
import { AUTH_ERRORS, Signaling, clearSession, saveSession, signIn } from './signaling.js';
import { currentCall, newCall, render, state } from './state.js';
import { $, notice, toast } from './ui.js';
import { renderCall } from './view.js';

export function connect(session) {
  state.session = session;
  if (state.signaling) state.signaling.close();
  state.signaling = new Signaling(session.token);
  wireSignaling(state.signaling);
  render();
}

function signOut(message) {
  if (state.call) finishCall(null);
  if (state.signaling) state.signaling.close();
  state.signaling = null;
  state.session = null;
  state.connected = false;
  state.users = [];
  clearHistory();
  clearSession();
  render();
  notice(message || null, message ? 'error' : 'info');
}

export function wireSignIn() {
  $('signin-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const err = $('signin-error');
    const name = $('name-input').value.trim();
    err.hidden = true;
    if (!name) {
      err.textContent = 'Please enter a name.';
      err.hidden = false;
      return;
    }
    $('signin-button').disabled = true;
    try {
      const session = await signIn(name);
      saveSession(session);
      notice(null);
      connect(session);
    } catch (e) {
      err.textContent = e.message;
      err.hidden = false;
    } finally {
      $('signin-button').disabled = false;
    }
  });
  $('sign-out').addEventListener('click', () => signOut());
}

/** What each server event does to the state (and the screen). */
function wireSignaling(sig) {
  sig.on('connect', () => {
    state.connected = true;
    render();
    refreshHistory();
  });
  sig.on('disconnect', () => {
    state.connected = false;
    if (state.call) finishCall('Lost the connection to the server. Call ended.', 'error');
    render();
  });
  sig.on('connect_error', (err) => {
    state.connected = false;
    if (AUTH_ERRORS.has(err && err.message)) {
      signOut(`Your session is no longer valid (${err.message}). Please sign in again.`);
      return;
    }
    render();
  });
  // Presence: one snapshot on connect, then deltas (`users` who came online or changed,
  // `offline` ids) batched by the server. The list stays sorted by name, then id.
  const presenceChanged = () => {
    state.users.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    pruneSelection();
    renderUsers();
    renderHistory();
    if (state.call && state.call.inviteOpen) renderCall();
  };
  sig.on('presence', (msg) => {
    state.users = Array.isArray(msg && msg.users) ? msg.users : [];
    presenceChanged();
  });
  sig.on('presence_update', (msg) => {
    const gone = new Set(Array.isArray(msg && msg.offline) ? msg.offline : []);
    const changed = Array.isArray(msg && msg.users) ? msg.users : [];
    for (const u of changed) gone.add(u.id);
    state.users = state.users.filter((u) => !gone.has(u.id)).concat(changed);
    presenceChanged();
  });
  wireRecordingEvents(sig);
  sig.on('call_ringing', (msg) => {
    const c = currentCall(msg.call_id);
    if (!c || c.role !== 'caller') return;
    c.id = msg.call_id;
    render();
  });
  sig.on('incoming_call', (msg) => {
    if (state.call) return; // the server does not ring busy users; ignore if it does
    notice(null);
    state.call = newCall({
      id: msg.call_id,
      kind: msg.kind,
      role: 'callee',
      phase: 'incoming',
      peer: msg.from,
      participants: Array.isArray(msg.participants) ? msg.participants : [],
    });
    render();
    ringtone.start();
  });
  sig.on('call_accepted', (msg) => {
    const c = currentCall(msg.call_id);
    if (!c) return;
    if (c.phase === 'incoming') {
      // Another tab of ours took it.
      finishCall(`The call from ${c.peer.name} was answered elsewhere.`);
      return;
    }
    c.id = msg.call_id;
    c.accepted = true;
    c.participants = msg.participants || [];
    c.startedAt = Date.now();
    for (const p of c.participants) {
      if (p.id !== state.session.user.id && !c.remote.has(p.id)) {
        c.remote.set(p.id, { name: p.name, audio: true, video: true, screen: null });
      }
      c.ringing.delete(p.id);
    }
    // A late joiner also hears who is still ringing ("Ringing…" tiles).
    for (const r of Array.isArray(msg.ringing) ? msg.ringing : []) {
      if (r.id !== state.session.user.id && !c.remote.has(r.id)) c.ringing.set(r.id, { name: r.name });
    }
    if (c.localStream) c.phase = 'active';
    ringtone.stop();
    startTimer();
    render();
    maybeStartMedia(c);
  });
  // The invitee declined. A 1:1 call ends with the call_ended that follows (its text names
  // them); a group call goes on with the others.
  sig.on('call_rejected', (msg) => {
    const c = currentCall(msg.call_id);
    if (!c || !msg.by) return;
    c.ringing.delete(msg.by.id);
    render();
  });
  sig.on('participant_invited', (msg) => {
    const c = currentCall(msg && msg.call_id);
    if (!c || !msg.user || msg.user.id === state.session.user.id || c.remote.has(msg.user.id)) return;
    c.ringing.set(msg.user.id, { name: msg.user.name });
    render();
  });
  sig.on('participant_joined', (msg) => {
    const c = currentCall(msg && msg.call_id);
    if (!c || !msg.user || msg.user.id === state.session.user.id) return;
    c.ringing.delete(msg.user.id);
    if (!c.participants.some((p) => p.id === msg.user.id)) c.participants.push(msg.user);
    if (!c.remote.has(msg.user.id)) c.remote.set(msg.user.id, { name: msg.user.name, audio: true, video: true, screen: null });
    render();
  });
  sig.on('participant_left', (msg) => {
    const c = currentCall(msg && msg.call_id);
    if (!c || !msg.user) return;
    const id = msg.user.id;
    const wasIn = c.remote.has(id);
    c.ringing.delete(id);
    c.remote.delete(id);
    c.participants = c.participants.filter((p) => p.id !== id);
    for (const [trackId, pub] of c.published) if (pub.userId === id) c.published.delete(trackId);
    c.tracks = c.tracks.filter((t) => t.userId !== id);
    c.quality.delete(id);
    if (c.speaker === id) c.speaker = null;
    render();
    toast(leftText(msg.user.name, msg.reason, wasIn), 'info');
  });
  sig.on('track_published', (msg) => {
    const c = currentCall(msg && msg.call_id);
    if (!c || !msg.track_id) return;
    const source = msg.source || (msg.kind === 'audio' ? 'microphone' : 'camera');
    c.published.set(msg.track_id, { userId: msg.user_id, kind: msg.kind, source, seq: ++c.publishedSeq });
    render();
  });
  sig.on('track_unpublished', (msg) => {
    const c = currentCall(msg && msg.call_id);
    if (!c || !msg.track_id) return;
    c.published.delete(msg.track_id);
    // The subscriber offer that drops it follows; stop showing it now.
    c.tracks = c.tracks.filter((t) => t.trackId !== msg.track_id);
    render();
  });
  sig.on('call_ended', (msg) => {
    const c = currentCall(msg.call_id);
    if (!c) return;
    finishCall(endedText(c, msg.reason, msg.by), msg.reason === 'hangup' ? 'info' : 'warn');
  });
  sig.on('webrtc_answer', (msg) => {
    const c = currentCall(msg.call_id);
    if (!c || !c.media) return;
    c.media.handleAnswer(msg).catch((e) => toast(`Media negotiation failed: ${e.message}`));
  });
  sig.on('webrtc_offer', (msg) => {
    const c = currentCall(msg.call_id);
    if (!c) return;
    if (!c.media) {
      (c.pendingOffers ||= []).push(msg);
      return;
    }
    c.media.handleOffer(msg).then(rememberPcs);
  });
  sig.on('participant_quality', (msg) => {
    const c = currentCall(msg && msg.call_id);
    if (!c || !msg.quality) return;
    c.quality.set(msg.user_id, msg.quality);
    render();
  });
  sig.on('active_speaker', (msg) => {
    const c = currentCall(msg && msg.call_id);
    if (!c) return;
    c.speaker = msg.user_id;
    render();
  });
  sig.on('participant_media_state', (msg) => {
    const c = currentCall(msg.call_id);
    if (!c) return;
    let r = c.remote.get(msg.user_id);
    if (!r) {
      const p = c.participants.find((x) => x.id === msg.user_id) || c.ringing.get(msg.user_id);
      r = { name: p ? p.name : 'Guest', audio: true, video: true, screen: null };
      c.remote.set(msg.user_id, r);
      c.ringing.delete(msg.user_id);
    }
    r.audio = !!msg.audio;
    r.video = !!msg.video;
    if ('screen' in msg) r.screen = !!msg.screen;
    render();
  });
  sig.on('error', (msg) => {
    if (!msg || typeof msg !== 'object') return;
    // These requests show their own, friendlier error from the ack; a refused leave_call
    // (the call already ended) concerns a call we have left.
    if (['start_recording', 'stop_recording', 'invite_participant', 'leave_call'].includes(msg.event)) return;
    toast(msg.message || msg.code || 'Server error');
  });
}
