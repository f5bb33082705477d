// Switchboard browser demo: sign in, see who is online, place and take voice/video calls that
// run through the Switchboard SFU. The wire contract is docs/protocol.md; this file is the call
// controller (state + UI). Modules: js/signaling.js (HTTP + Socket.IO), js/media.js (getUserMedia
// and the two peer connections), js/ringtone.js (WebAudio ring), js/icons.js (inline SVG).

import { hydrateIcons, ICONS } from './js/icons.js';
import { Ringtone } from './js/ringtone.js';
import {
  AUTH_ERRORS,
  Signaling,
  clearSession,
  loadSession,
  saveSession,
  signIn,
} from './js/signaling.js';
import {
  CallMedia,
  MEDIA_ERROR_TEXT,
  MediaUnavailableError,
  getLocalMedia,
  stopStream,
} from './js/media.js';
import { describeCall, downloadRecording, fetchCalls, fmtBytes, outcomeText, relativeTime } from './js/history.js';

const $ = (id) => document.querySelector(`[data-testid="${id}"]`);

const ringtone = new Ringtone();

/**
 * The whole client state. `call` is null when idle, otherwise:
 *   { id, kind, role: 'caller'|'callee',
 *     phase: 'media'     (caller: waiting for camera/mic)
 *          | 'calling'   (caller: ringing the other side)
 *          | 'incoming'  (callee: the modal is up)
 *          | 'accepting' (callee: accepted, getting camera/mic)
 *          | 'active',
 *     peer: {id, name}, participants, localStream, media, accepted, startedAt,
 *     audio, video (what we send), remote: Map<userId, {name, audio, video}>,
 *     recording: null | {by: {id, name}}, recordingBusy: bool (a start/stop is in flight) }
 *
 * `history` is the "Recent calls" panel: the last GET /api/calls page, newest first.
 */
const state = {
  session: null,
  signaling: null,
  connected: false,
  users: [],
  call: null,
  timer: null,
  history: { calls: [], loaded: false, error: null, seq: 0, timers: [] },
  // Kept after a call for the tests' "everything was released" assertions.
  last: { localStream: null, publisher: null, subscriber: null },
};

// ---------------------------------------------------------------------------------------------
// Small UI helpers

function initials(name) {
  const parts = String(name || '?').trim().split(/\s+/).filter(Boolean);
  const s = parts.length > 1 ? parts[0][0] + parts[parts.length - 1][0] : (parts[0] || '?').slice(0, 2);
  return s.toUpperCase();
}

/** A stable hue per name so avatars are told apart at a glance. */
function hue(text) {
  let h = 0;
  for (const ch of String(text)) h = (h * 31 + ch.codePointAt(0)) % 360;
  return h;
}

function paintAvatar(el, name) {
  el.textContent = initials(name);
  el.style.setProperty('--avatar-hue', String(hue(name)));
  el.title = name;
}

function fmtDuration(ms) {
  const total = Math.max(0, Math.floor(ms / 1000));
  const m = Math.floor(total / 60);
  const s = total % 60;
  return `${String(m).padStart(2, '0')}:${String(s).padStart(2, '0')}`;
}

function kindLabel(kind) {
  return kind === 'video' ? 'Video call' : 'Voice call';
}

function toast(message, level = 'error') {
  const el = document.createElement('div');
  el.className = `toast ${level}`;
  el.dataset.testid = 'toast';
  el.setAttribute('role', level === 'error' ? 'alert' : 'status');
  el.textContent = message;
  $('toasts').appendChild(el);
  setTimeout(() => el.classList.add('leaving'), 5500);
  setTimeout(() => el.remove(), 6000);
}

/** The persistent banner above the lobby: last call outcome or a problem. */
function notice(message, level = 'info') {
  const box = $('notice');
  if (!message) {
    box.hidden = true;
    return;
  }
  box.dataset.level = level;
  $('notice-text').textContent = message;
  box.hidden = false;
}

// ---------------------------------------------------------------------------------------------
// Rendering

function render() {
  const signedIn = !!state.session;
  $('signin-view').hidden = signedIn;
  $('lobby-view').hidden = !signedIn;
  $('history-view').hidden = !signedIn;
  $('me').hidden = !signedIn;
  if (signedIn) {
    $('me-name').textContent = state.session.user.name;
    const dot = $('connection-status');
    dot.dataset.state = state.connected ? 'online' : 'connecting';
    dot.title = state.connected ? 'Connected' : 'Connecting…';
  }
  renderUsers();
  renderHistory();
  renderIncoming();
  renderCall();
}

function renderUsers() {
  const list = $('user-list');
  const me = state.session && state.session.user.id;
  const others = state.users.filter((u) => u.id !== me);
  const inCall = !!state.call;
  list.replaceChildren(
    ...others.map((u) => {
      const li = document.createElement('li');
      li.className = 'user';
      li.dataset.testid = 'user';
      li.dataset.userId = u.id;
      li.dataset.userName = u.name;
      const av = document.createElement('span');
      av.className = 'avatar small';
      paintAvatar(av, u.name);
      const who = document.createElement('span');
      who.className = 'who';
      const name = document.createElement('span');
      name.className = 'name';
      name.textContent = u.name;
      const status = document.createElement('span');
      status.className = `status ${u.busy ? 'busy' : 'free'}`;
      status.dataset.testid = 'user-status';
      status.textContent = u.busy ? 'In a call' : 'Available';
      who.append(name, status);
      const actions = document.createElement('span');
      actions.className = 'actions';
      for (const kind of ['voice', 'video']) {
        const b = document.createElement('button');
        b.type = 'button';
        b.className = `icon-button ${kind}`;
        b.dataset.testid = `${kind}-call-button`;
        const label = `${kind === 'voice' ? 'Voice' : 'Video'} call ${u.name}`;
        b.title = label;
        b.setAttribute('aria-label', label);
        b.innerHTML = kind === 'voice' ? ICONS.phone : ICONS.video;
        b.disabled = inCall || u.busy || !state.connected;
        b.addEventListener('click', () => startCall({ id: u.id, name: u.name }, kind));
        actions.appendChild(b);
      }
      li.append(av, who, actions);
      return li;
    }),
  );
  $('no-users').hidden = others.length > 0;
}

function renderIncoming() {
  const c = state.call;
  const show = !!c && c.phase === 'incoming';
  const box = $('incoming-call');
  box.hidden = !show;
  if (!show) return;
  $('incoming-caller').textContent = c.peer.name;
  $('incoming-kind').textContent = `Incoming ${c.kind} call`;
  box.dataset.kind = c.kind;
}

function callStatusText(c) {
  switch (c.phase) {
    case 'media':
      return 'Waiting for camera/microphone…';
    case 'calling':
      return 'Calling…';
    case 'accepting':
      return 'Connecting…';
    case 'active':
      return c.connection === 'connected'
        ? 'Connected'
        : c.connection === 'failed'
          ? 'Connection failed'
          : c.connection === 'reconnecting'
            ? 'Reconnecting…'
            : 'Connecting…';
    default:
      return '';
  }
}

function renderCall() {
  const c = state.call;
  const view = $('call-view');
  const show = !!c && c.phase !== 'incoming';
  view.hidden = !show;
  document.body.classList.toggle('in-call', show);
  if (!show) return;
  view.dataset.phase = c.phase;
  view.dataset.kind = c.kind;
  $('call-title').textContent = `${kindLabel(c.kind)} with ${c.peer.name}`;
  $('call-status').textContent = callStatusText(c);
  $('call-timer').hidden = c.phase !== 'active';

  // Local tile.
  const local = $('local-tile');
  const video = c.kind === 'video';
  local.dataset.audio = String(c.audio);
  local.dataset.video = String(video && c.video);
  paintAvatar($('local-avatar'), state.session.user.name);
  $('local-muted-badge').hidden = c.audio;
  paintQuality($('local-quality'), c.quality.get(state.session.user.id));
  local.classList.toggle('speaking', c.speaker === state.session.user.id);
  $('local-camera-off-badge').hidden = !video || c.video;
  const lv = $('local-video');
  if (c.localStream && lv.srcObject !== c.localStream) lv.srcObject = c.localStream;
  if (!c.localStream) lv.srcObject = null;

  // Remote tiles, one per other participant.
  const tiles = $('tiles');
  for (const [id, r] of c.remote) {
    let tile = tiles.querySelector(`[data-testid="remote-tile"][data-user-id="${CSS.escape(id)}"]`);
    if (!tile) tile = tiles.appendChild(makeRemoteTile(id, r.name));
    tile.dataset.audio = String(r.audio);
    tile.dataset.video = String(video && r.video);
    tile.dataset.hasVideo = String(!!r.hasVideo);
    tile.querySelector('[data-testid="remote-muted-badge"]').hidden = r.audio;
    paintQuality(tile.querySelector('[data-testid="remote-quality"]'), c.quality.get(id));
    tile.classList.toggle('speaking', c.speaker === id);
    tile.querySelector('[data-testid="remote-camera-off-badge"]').hidden = !video || r.video;
  }
  for (const tile of tiles.querySelectorAll('[data-testid="remote-tile"]')) {
    if (!c.remote.has(tile.dataset.userId)) tile.remove();
  }

  // Controls.
  const mute = $('toggle-mute');
  mute.setAttribute('aria-pressed', String(!c.audio));
  mute.setAttribute('aria-label', c.audio ? 'Mute microphone' : 'Unmute microphone');
  mute.title = mute.getAttribute('aria-label');
  mute.querySelector('[data-icon]').innerHTML = c.audio ? ICONS.mic : ICONS.micOff;
  mute.querySelector('.label').textContent = c.audio ? 'Mute' : 'Unmute';
  const cam = $('toggle-camera');
  cam.hidden = !video;
  cam.setAttribute('aria-pressed', String(!c.video));
  cam.setAttribute('aria-label', c.video ? 'Turn camera off' : 'Turn camera on');
  cam.title = cam.getAttribute('aria-label');
  cam.querySelector('[data-icon]').innerHTML = c.video ? ICONS.camera : ICONS.cameraOff;
  cam.querySelector('.label').textContent = c.video ? 'Camera off' : 'Camera on';
  const canToggle = c.phase === 'active' || c.phase === 'calling';
  mute.disabled = !canToggle || !c.localStream;
  cam.disabled = !canToggle || !c.localStream;

  // Recording: the indicator follows the server's events; the button only asks.
  const rec = $('rec-indicator');
  rec.hidden = !c.recording;
  $('rec-by').textContent = c.recording ? `Recording started by ${c.recording.by.name}` : '';
  const recBtn = $('toggle-recording');
  const recording = !!c.recording;
  recBtn.setAttribute('aria-pressed', String(recording));
  recBtn.setAttribute('aria-label', recording ? 'Stop recording' : 'Record call');
  recBtn.title = recBtn.getAttribute('aria-label');
  recBtn.querySelector('[data-icon]').innerHTML = recording ? ICONS.stop : ICONS.record;
  recBtn.querySelector('.label').textContent = recording ? 'Stop recording' : 'Record';
  recBtn.disabled = c.phase !== 'active' || !c.accepted || !!c.recordingBusy;
}

// ---------------------------------------------------------------------------------------------
// Recent calls (GET /api/calls, docs/protocol.md §9)

/** Fetch the newest 20 calls; a later call supersedes an earlier one still in flight. */
async function refreshHistory() {
  const session = state.session;
  if (!session) return;
  const h = state.history;
  const seq = ++h.seq;
  try {
    const calls = await fetchCalls(session.token, 20);
    if (seq !== h.seq || state.session !== session) return;
    h.calls = calls;
    h.error = null;
  } catch (e) {
    if (seq !== h.seq || state.session !== session) return;
    h.error = e.status === 401 ? 'Your session has expired: sign in again to see your calls.' : `Could not load recent calls (${e.message}).`;
  }
  h.loaded = true;
  renderHistory();
}

/**
 * After a call (or a recording) ends the server writes the history and finalises recording
 * files a moment later: refresh now and a few times more.
 */
function scheduleHistoryRefresh() {
  const h = state.history;
  for (const t of h.timers) clearTimeout(t);
  h.timers = [300, 1500, 4000, 9000].map((ms) => setTimeout(refreshHistory, ms));
}

function clearHistory() {
  const h = state.history;
  for (const t of h.timers) clearTimeout(t);
  h.seq++;
  h.timers = [];
  h.calls = [];
  h.loaded = false;
  h.error = null;
}

function renderHistory() {
  const list = $('history-list');
  const status = $('history-status');
  const h = state.history;
  if (!state.session) {
    list.replaceChildren();
    return;
  }
  const me = state.session.user.id;
  status.textContent = h.error || (!h.loaded ? 'Loading…' : h.calls.length ? '' : 'No calls yet.');
  status.hidden = !status.textContent;
  status.dataset.level = h.error ? 'error' : 'info';
  list.replaceChildren(...h.calls.map((call) => historyItem(call, me)));
}

function historyItem(call, me) {
  const d = describeCall(call, me);
  const li = document.createElement('li');
  li.className = 'call-item';
  li.dataset.testid = 'history-item';
  li.dataset.callId = call.id;
  li.dataset.direction = d.outgoing ? 'outgoing' : 'incoming';
  li.dataset.outcome = call.outcome || 'live';
  li.dataset.kind = call.kind;
  li.dataset.peerId = d.other.user_id || '';
  li.dataset.missed = String(d.missed);
  if (d.missed) li.classList.add('missed');

  const dir = document.createElement('span');
  dir.className = 'dir';
  dir.dataset.testid = 'history-direction';
  dir.innerHTML = d.outgoing ? ICONS.outgoing : ICONS.incoming;
  const dirText = d.outgoing ? 'Outgoing' : 'Incoming';
  dir.title = dirText;
  dir.setAttribute('aria-label', dirText);
  dir.setAttribute('role', 'img');

  const main = document.createElement('span');
  main.className = 'who';
  const name = document.createElement('span');
  name.className = 'name';
  name.dataset.testid = 'history-peer';
  name.textContent = d.others.length ? d.others.map((p) => p.name).join(', ') : d.other.name;
  const meta = document.createElement('span');
  meta.className = 'meta';
  const kind = document.createElement('span');
  kind.className = 'kind';
  kind.dataset.testid = 'history-kind';
  kind.innerHTML = call.kind === 'video' ? ICONS.video : ICONS.phone;
  kind.title = kindLabel(call.kind);
  kind.setAttribute('role', 'img');
  kind.setAttribute('aria-label', kindLabel(call.kind));
  const outcome = document.createElement('span');
  outcome.className = 'outcome';
  outcome.dataset.testid = 'history-outcome';
  outcome.textContent = `${dirText} · ${outcomeText(call, d)}`;
  const dur = document.createElement('span');
  dur.className = 'duration';
  dur.dataset.testid = 'history-duration';
  if (call.outcome === 'completed' && typeof call.duration_ms === 'number') {
    dur.textContent = fmtDuration(call.duration_ms);
    dur.dataset.ms = String(call.duration_ms);
  } else dur.hidden = true;
  const when = document.createElement('time');
  when.className = 'when';
  when.dataset.testid = 'history-time';
  when.dateTime = new Date(call.ringing_at).toISOString();
  when.title = new Date(call.ringing_at).toLocaleString();
  when.textContent = relativeTime(call.ringing_at);
  meta.append(kind, outcome, dur, when);
  main.append(name, meta);

  // Call back, same kind, if the other party is online and free.
  const actions = document.createElement('span');
  actions.className = 'actions';
  const peer = d.other.user_id ? state.users.find((u) => u.id === d.other.user_id) : null;
  const b = document.createElement('button');
  b.type = 'button';
  b.className = `icon-button ${call.kind === 'video' ? 'video' : 'voice'}`;
  b.dataset.testid = 'history-callback';
  b.innerHTML = call.kind === 'video' ? ICONS.video : ICONS.phone;
  const label = `Call ${d.other.name} back (${call.kind})`;
  b.setAttribute('aria-label', label);
  let why = '';
  if (!peer) why = `${d.other.name} is offline`;
  else if (peer.busy) why = `${d.other.name} is in a call`;
  else if (state.call) why = 'You are in a call';
  else if (!state.connected) why = 'Not connected to the server';
  b.disabled = !!why;
  // A disabled button gets no pointer events in some browsers: the wrapper carries the tooltip too.
  b.title = why || label;
  actions.title = why || label;
  b.addEventListener('click', () => {
    if (peer) startCall({ id: peer.id, name: peer.name }, call.kind === 'video' ? 'video' : 'voice');
  });
  actions.appendChild(b);

  li.append(dir, main, actions);

  const recs = Array.isArray(call.recordings) ? call.recordings : [];
  if (recs.length) {
    const ul = document.createElement('ul');
    ul.className = 'recordings';
    ul.dataset.testid = 'history-recordings';
    const nameOf = (id) => (call.participants || []).find((p) => p.user_id === id)?.name || 'Unknown';
    recs.forEach((r, i) => {
      const item = document.createElement('li');
      item.className = 'recording';
      item.dataset.testid = 'history-recording';
      item.dataset.recordingId = r.id;
      const text = document.createElement('span');
      text.className = 'rec-text';
      text.textContent = `Recording ${i + 1}: ${nameOf(r.participant)} · ${fmtDuration(r.duration_ms || 0)} · ${fmtBytes(r.bytes)}`;
      const dl = document.createElement('button');
      dl.type = 'button';
      dl.className = 'link-button download';
      dl.dataset.testid = 'recording-download';
      dl.innerHTML = `${ICONS.download}<span>Download</span>`;
      dl.setAttribute('aria-label', `Download recording ${i + 1} (${nameOf(r.participant)})`);
      dl.addEventListener('click', async () => {
        dl.disabled = true;
        try {
          const stamp = new Date(r.created_at || call.ringing_at).toISOString().replace(/[:.]/g, '-');
          await downloadRecording(state.session.token, r.id, `switchboard-${stamp}-${nameOf(r.participant)}.webm`);
        } catch (e) {
          toast(`Could not download the recording: ${e.message}`);
        } finally {
          dl.disabled = false;
        }
      });
      item.append(text, dl);
      ul.appendChild(item);
    });
    li.appendChild(ul);
  }
  return li;
}

// ---------------------------------------------------------------------------------------------
// Recording (docs/protocol.md §8)

const RECORDING_ERRORS = {
  missing_grant: 'You are not allowed to record calls.',
  already_recording: 'This call is already being recorded.',
  not_recording: 'This call is not being recorded.',
  invalid_state: 'The call can only be recorded once it is connected.',
  internal: 'The server cannot record right now.',
  expired_token: 'Your session has expired: recording cannot start.',
};

const RECORDING_STOPPED = {
  requested: 'Recording stopped.',
  call_ended: 'Recording stopped: the call ended.',
  disk_full: 'Recording stopped: server disk is full',
  shutdown: 'Recording stopped: the server is shutting down.',
};

async function toggleRecording() {
  const call = state.call;
  if (!call || call.phase !== 'active' || !call.id || call.recordingBusy) return;
  const event = call.recording ? 'stop_recording' : 'start_recording';
  call.recordingBusy = true;
  render();
  try {
    await state.signaling.request(event, { call_id: call.id });
    // The indicator changes on recording_started / recording_stopped, which follow the ack.
  } catch (e) {
    if (state.call === call) toast(`${RECORDING_ERRORS[e.code] || e.message} (${e.code})`);
  } finally {
    call.recordingBusy = false;
    if (state.call === call) render();
  }
}

/** Signal bars for a `participant_quality` report, the numbers in the tooltip. */
function paintQuality(el, q) {
  el.hidden = !q;
  if (!q) return;
  el.dataset.level = q.level;
  const mbps = (q.bitrate_bps / 1e6).toFixed(2);
  el.title = `Connection ${q.level}: loss ${q.loss_percent.toFixed(1)} %, jitter ${Math.round(q.jitter_ms)} ms, ` +
    `round trip ${Math.round(q.rtt_ms)} ms, ${mbps} Mbit/s (MOS ${q.mos.toFixed(1)})`;
  el.setAttribute('aria-label', el.title);
}

function makeRemoteTile(id, name) {
  const tile = document.createElement('div');
  tile.className = 'tile remote';
  tile.dataset.testid = 'remote-tile';
  tile.dataset.userId = id;
  tile.innerHTML = `
    <video data-testid="remote-video" autoplay playsinline muted></video>
    <audio data-testid="remote-audio" autoplay></audio>
    <div class="avatar"></div>
    <div class="tile-label"><span class="tile-name"></span>
      <span class="quality" data-testid="remote-quality" data-level="" hidden><i></i><i></i><i></i><i></i></span>
      <span class="badge muted-badge" data-testid="remote-muted-badge" hidden>Muted</span>
      <span class="badge camoff-badge" data-testid="remote-camera-off-badge" hidden>Camera off</span>
    </div>`;
  paintAvatar(tile.querySelector('.avatar'), name);
  tile.querySelector('.tile-name').textContent = name;
  return tile;
}

function startTimer() {
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

// ---------------------------------------------------------------------------------------------
// Call flow

function newCall(fields) {
  return {
    id: null,
    participants: [],
    localStream: null,
    media: null,
    accepted: false,
    startedAt: null,
    connection: 'connecting',
    audio: true,
    video: true,
    remote: new Map(),
    // userId → latest participant_quality report (self included); the dominant speaker.
    quality: new Map(),
    speaker: null,
    recording: null,
    recordingBusy: false,
    ...fields,
  };
}

/** Caller: camera/mic first (the permission prompt belongs to the click), then ring. */
async function startCall(peer, kind) {
  if (state.call) {
    toast('You are already in a call.');
    return;
  }
  if (!state.signaling || !state.connected) {
    toast('Not connected to the server yet.');
    return;
  }
  notice(null);
  const call = newCall({ kind, role: 'caller', phase: 'media', peer });
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
    const ack = await state.signaling.request('initiate_call', { to: peer.id, kind });
    if (state.call !== call) {
      // Hung up before the server told us the call id: cancel it now.
      state.signaling.send('end_call', { call_id: ack.call_id, reason: 'hangup' });
      return;
    }
    if (!call.id) call.id = ack.call_id;
  } catch (e) {
    if (state.call === call) finishCall(initiateErrorText(e, peer), 'error');
  }
}

function initiateErrorText(e, peer) {
  switch (e.code) {
    case 'user_offline':
      return `${peer.name} is offline.`;
    case 'unknown_user':
      return `${peer.name} is not a known user.`;
    case 'busy':
      return `${peer.name} is busy in another call.`;
    case 'self_call':
      return 'You cannot call yourself.';
    default:
      return `Could not call ${peer.name}: ${e.message}`;
  }
}

function mediaErrorText(e) {
  return e instanceof MediaUnavailableError ? e.message : `${MEDIA_ERROR_TEXT}.`;
}

/** Callee: accept at once (so the caller stops ringing), then get camera/mic. */
async function acceptCall() {
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
    // Tell the caller why the call is over, then show the reason here.
    state.signaling.send('end_call', { call_id: call.id, reason: 'media_unavailable' });
    finishCall(mediaErrorText(r.error), 'error');
    return;
  }
  call.localStream = r.stream;
  state.last.localStream = r.stream;
  if (call.phase === 'accepting' && call.accepted) call.phase = 'active';
  render();
  maybeStartMedia(call);
}

function rejectCall() {
  const call = state.call;
  if (!call || call.phase !== 'incoming') return;
  state.signaling.send('reject_call', { call_id: call.id });
  finishCall(`You declined the ${call.kind} call from ${call.peer.name}.`);
}

function hangUp() {
  const call = state.call;
  if (!call) return;
  if (call.id) state.signaling.send('end_call', { call_id: call.id, reason: 'hangup' });
  const dur = call.startedAt ? ` after ${fmtDuration(Date.now() - call.startedAt)}` : '';
  finishCall(
    call.phase === 'active' ? `Call with ${call.peer.name} ended${dur}.` : `Call to ${call.peer.name} cancelled.`,
  );
}

/** Both peer connections start once the call is accepted AND our camera/mic are ready. */
function maybeStartMedia(call) {
  if (call.media || !call.accepted || !call.localStream || state.call !== call) return;
  const media = new CallMedia({
    callId: call.id,
    localStream: call.localStream,
    signaling: state.signaling,
    onRemoteStream: (userId, stream) => attachRemote(call, userId, stream),
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

function rememberPcs() {
  const m = state.call && state.call.media;
  if (!m) return;
  if (m.publisher) state.last.publisher = m.publisher;
  if (m.subscriber) state.last.subscriber = m.subscriber;
}

function attachRemote(call, userId, stream) {
  if (state.call !== call) return;
  if (!call.remote.has(userId)) {
    const p = call.participants.find((x) => x.id === userId);
    call.remote.set(userId, { name: p ? p.name : 'Guest', audio: true, video: true });
  }
  const r = call.remote.get(userId);
  render();
  const tile = document.querySelector(`[data-testid="remote-tile"][data-user-id="${CSS.escape(userId)}"]`);
  if (!tile) return;
  const v = tile.querySelector('video');
  const a = tile.querySelector('audio');
  if (v.srcObject !== stream) v.srcObject = stream;
  if (a.srcObject !== stream) a.srcObject = stream;
  // Show the video (instead of the avatar) once frames are actually decoded.
  v.onloadeddata = () => {
    if (state.call !== call) return;
    r.hasVideo = true;
    render();
  };
  if (v.readyState >= 2) r.hasVideo = true;
  v.play().catch(() => {});
  a.play().catch(() => {});
  rememberPcs();
}

function sendMediaState(call) {
  if (!call.id || !call.accepted) return;
  state.signaling.send('media_state', { call_id: call.id, audio: call.audio, video: call.kind === 'video' && call.video });
}

async function toggleMute() {
  const call = state.call;
  if (!call || !call.localStream) return;
  call.audio = !call.audio;
  render();
  if (call.media) await call.media.setAudio(call.audio);
  else for (const t of call.localStream.getAudioTracks()) t.enabled = call.audio;
  sendMediaState(call);
}

async function toggleCamera() {
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
function finishCall(message, level = 'info') {
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
    for (const el of $('tiles').querySelectorAll('video, audio')) el.srcObject = null;
    for (const tile of $('tiles').querySelectorAll('[data-testid="remote-tile"]')) tile.remove();
  }
  state.call = null;
  render();
  if (message) notice(message, level);
  if (call) scheduleHistoryRefresh();
}

function endedText(call, reason, by) {
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

function currentCall(callId) {
  const c = state.call;
  if (!c) return null;
  if (c.id === callId) return c;
  // The caller may hear about its call (call_ringing) before the initiate_call ack.
  if (!c.id && c.role === 'caller') return c;
  return null;
}

// ---------------------------------------------------------------------------------------------
// Socket events

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
  sig.on('presence', (msg) => {
    state.users = Array.isArray(msg && msg.users) ? msg.users : [];
    renderUsers();
    renderHistory();
  });
  sig.on('recording_started', (msg) => {
    const c = currentCall(msg && msg.call_id);
    if (!c) return;
    c.recording = { by: (msg.by && msg.by.name ? msg.by : { id: null, name: 'someone' }) };
    render();
  });
  sig.on('recording_stopped', (msg) => {
    const c = currentCall(msg && msg.call_id);
    if (!c || !c.recording) return;
    c.recording = null;
    render();
    // call_ended follows a call_ended stop at once: the end banner says enough.
    if (msg.reason !== 'call_ended') {
      toast(RECORDING_STOPPED[msg.reason] || `Recording stopped (${msg.reason}).`, msg.reason === 'requested' ? 'info' : 'error');
    }
    scheduleHistoryRefresh();
  });
  sig.on('call_ringing', (msg) => {
    const c = currentCall(msg.call_id);
    if (!c || c.role !== 'caller') return;
    c.id = msg.call_id;
    render();
  });
  sig.on('incoming_call', (msg) => {
    if (state.call) return; // the server does not ring busy users; ignore if it does
    notice(null);
    state.call = newCall({ id: msg.call_id, kind: msg.kind, role: 'callee', phase: 'incoming', peer: msg.from });
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
        c.remote.set(p.id, { name: p.name, audio: true, video: true });
      }
    }
    if (c.localStream) c.phase = 'active';
    ringtone.stop();
    startTimer();
    render();
    maybeStartMedia(c);
  });
  sig.on('call_rejected', (msg) => {
    const c = currentCall(msg.call_id);
    if (!c) return;
    finishCall(`Call rejected by ${(msg.by && msg.by.name) || c.peer.name}.`);
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
      r = { name: 'Guest', audio: true, video: true };
      c.remote.set(msg.user_id, r);
    }
    r.audio = !!msg.audio;
    r.video = !!msg.video;
    render();
  });
  sig.on('error', (msg) => {
    if (!msg || typeof msg !== 'object') return;
    // Recording requests show their own, friendlier error from the ack.
    if (msg.event === 'start_recording' || msg.event === 'stop_recording') return;
    toast(msg.message || msg.code || 'Server error');
  });
}

// ---------------------------------------------------------------------------------------------
// Session

function connect(session) {
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

function wireDom() {
  hydrateIcons();
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
  $('notice-close').addEventListener('click', () => notice(null));
  $('accept-call').addEventListener('click', acceptCall);
  $('reject-call').addEventListener('click', rejectCall);
  $('end-call').addEventListener('click', hangUp);
  $('toggle-mute').addEventListener('click', toggleMute);
  $('toggle-camera').addEventListener('click', toggleCamera);
  $('toggle-recording').addEventListener('click', toggleRecording);
  $('history-refresh').addEventListener('click', refreshHistory);
  document.addEventListener('keydown', (ev) => {
    if (ev.key === 'Escape' && state.call && state.call.phase === 'incoming') rejectCall();
  });
}

// Debug hooks for the browser tests (and for poking at a call from DevTools).
window.switchboard = {
  state() {
    const c = state.call;
    return {
      signedIn: !!state.session,
      me: state.session ? state.session.user : null,
      connected: state.connected,
      users: state.users,
      history: state.history.calls,
      ringing: ringtone.playing,
      ringtoneAudio: ringtone.audioState,
      call: c && {
        id: c.id,
        kind: c.kind,
        role: c.role,
        phase: c.phase,
        peer: c.peer,
        audio: c.audio,
        video: c.video,
        connection: c.connection,
        recording: c.recording || null,
        remote: Object.fromEntries(c.remote),
        quality: Object.fromEntries(c.quality),
        speaker: c.speaker || null,
      },
    };
  },
  pcs() {
    const m = state.call && state.call.media;
    return { publisher: (m && m.publisher) || null, subscriber: (m && m.subscriber) || null };
  },
  /** The most recent call's connections and local stream, kept after it ends. */
  last() {
    return state.last;
  },
  async stats() {
    const m = state.call && state.call.media;
    return m ? m.summary() : null;
  },
  startCall: (peer, kind) => startCall(peer, kind),
  socket: () => state.signaling && state.signaling.socket,
};

wireDom();
// Keep "just now" / "5 min ago" honest without refetching.
setInterval(() => {
  if (state.session && !document.hidden) renderHistory();
}, 30_000);
const saved = loadSession();
if (saved) connect(saved);
else render();
