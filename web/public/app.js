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
  getScreenMedia,
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
 *     peer: {id, name} (who invited us, or the first person we called), participants,
 *     localStream, media, accepted, startedAt,
 *     audio, video (what we send), screen: null | {stream, track} (our screen share),
 *     remote: Map<userId, {name, audio, video, screen, hasVideo}>  (joined, not us),
 *     ringing: Map<userId, {name}>  (invited, not answered yet: "Ringing…" tiles),
 *     published: Map<trackId, {userId, kind, source, seq}>  (from track_published; seq orders them),
 *     tracks: [{mid, userId, trackId, kind, track}]  (what the subscriber receives now),
 *     recording: null | {by: {id, name}}, recordingBusy: bool (a start/stop is in flight) }
 *
 * `selected` is the lobby's group-call selection (user ids).
 * `history` is the "Recent calls" panel: the last GET /api/calls page, newest first.
 */
const state = {
  session: null,
  signaling: null,
  connected: false,
  users: [],
  selected: new Set(),
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

/** "Bob", "Bob and Carol", "Bob, Carol and Dave", "Bob, Carol and 3 others". */
function formatNames(names) {
  if (names.length <= 1) return names[0] || '';
  if (names.length <= 3) return `${names.slice(0, -1).join(', ')} and ${names[names.length - 1]}`;
  return `${names.slice(0, 2).join(', ')} and ${names.length - 2} others`;
}

/** At most this many people in one call, counting those still ringing (protocol.md §7.1). */
const MAX_PARTICIPANTS = 16;

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
  const full = state.selected.size >= MAX_PARTICIPANTS - 1;
  list.replaceChildren(
    ...others.map((u) => {
      const li = document.createElement('li');
      li.className = 'user';
      li.dataset.testid = 'user';
      li.dataset.userId = u.id;
      li.dataset.userName = u.name;
      // Tick several people, then call them all at once from the group bar.
      const pick = document.createElement('input');
      pick.type = 'checkbox';
      pick.className = 'pick';
      pick.dataset.testid = 'select-user';
      pick.setAttribute('aria-label', `Select ${u.name} for a group call`);
      pick.checked = state.selected.has(u.id);
      pick.disabled = inCall || u.busy || !state.connected || (full && !pick.checked);
      pick.title = u.busy ? `${u.name} is in a call` : pick.getAttribute('aria-label');
      pick.addEventListener('change', () => {
        if (pick.checked) state.selected.add(u.id);
        else state.selected.delete(u.id);
        renderUsers();
      });
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
        b.addEventListener('click', () => startCall([{ id: u.id, name: u.name }], kind));
        actions.appendChild(b);
      }
      li.append(pick, av, who, actions);
      return li;
    }),
  );
  $('no-users').hidden = others.length > 0;

  // The group bar: who is ticked, and one button per kind to call them all.
  const picked = selectedUsers();
  const bar = $('group-bar');
  bar.hidden = picked.length === 0;
  $('group-count').textContent = `${picked.length} selected: ${formatNames(picked.map((u) => u.name))}`;
  for (const kind of ['voice', 'video']) {
    const b = $(`group-${kind}-call`);
    b.disabled = inCall || !state.connected || picked.length === 0;
    const label = `${kind === 'voice' ? 'Voice' : 'Video'} call ${picked.length} ${picked.length === 1 ? 'person' : 'people'}`;
    b.setAttribute('aria-label', label);
    b.title = label;
  }
}

/** The ticked users who are still online and free, in list order. */
function selectedUsers() {
  return state.users.filter((u) => state.selected.has(u.id) && !u.busy);
}

/** Drop ticks for users who went offline or busy. */
function pruneSelection() {
  for (const id of [...state.selected]) {
    const u = state.users.find((x) => x.id === id);
    if (!u || u.busy) state.selected.delete(id);
  }
}

function renderIncoming() {
  const c = state.call;
  const show = !!c && c.phase === 'incoming';
  const box = $('incoming-call');
  box.hidden = !show;
  if (!show) return;
  $('incoming-caller').textContent = c.peer.name;
  $('incoming-kind').textContent = `Incoming ${c.kind} call`;
  // A group call: say who else is in it already.
  const me = state.session.user.id;
  const others = c.participants.filter((p) => p.id !== me && p.id !== c.peer.id).map((p) => p.name);
  const more = $('incoming-others');
  more.hidden = others.length === 0;
  more.textContent = others.length ? `with ${formatNames(others)}` : '';
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

function callTitle(c) {
  const joined = [...c.remote.values()].map((r) => r.name);
  const ringing = [...c.ringing.values()].map((r) => r.name);
  const names = joined.length ? joined : ringing.length ? ringing : [c.peer.name];
  return `${kindLabel(c.kind)} with ${formatNames(names)}`;
}

/**
 * Columns x rows for `n` tiles: 1, 2, 4, 9, 16 → 1x1, 2x1, 2x2, 3x3, 4x4 on a wide screen; on a
 * phone in portrait the grid is taller than wide (2 → 1x2, 6 → 2x3, 12 → 3x4).
 */
function gridFor(n) {
  const count = Math.max(1, n);
  const wideCols = Math.ceil(Math.sqrt(count));
  const narrowCols = count <= 2 ? 1 : count <= 6 ? 2 : count <= 12 ? 3 : 4;
  return {
    wide: { cols: wideCols, rows: Math.ceil(count / wideCols) },
    narrow: { cols: narrowCols, rows: Math.ceil(count / narrowCols) },
  };
}

/**
 * What we show of `userId`: their microphone, camera and screen share among the tracks we
 * receive, by track_published.source. Should two publications of one source ever be offered
 * at once (a track_unpublished still on its way), the newest wins. A screen share stops
 * showing as soon as its owner says so (media_state.screen = false), even before its
 * track_unpublished and the subscriber offer without it arrive.
 */
function mediaOf(c, userId) {
  const best = new Map(); // source → {t, seq}
  for (const t of c.tracks) {
    if (t.userId !== userId || t.track.readyState === 'ended') continue;
    const pub = c.published.get(t.trackId);
    // Not announced (yet): a plain microphone or camera, used only if nothing newer is known.
    const source = pub ? pub.source : t.kind === 'audio' ? 'microphone' : 'camera';
    const seq = pub ? pub.seq : -1;
    const cur = best.get(source);
    if (!cur || seq > cur.seq) best.set(source, { t, seq });
  }
  const r = c.remote.get(userId);
  const screen = best.get('screen');
  return {
    audio: best.has('microphone') ? [best.get('microphone').t.track] : [],
    camera: best.has('camera') ? best.get('camera').t.track : null,
    screens: screen && !(r && r.screen === false) ? [screen.t] : [],
  };
}

/** Point a media element at exactly `tracks` (a new stream only when they changed). */
function setTracks(el, tracks) {
  const cur = el.srcObject ? el.srcObject.getTracks() : [];
  const same = cur.length === tracks.length && tracks.every((t) => cur.includes(t));
  if (same) return false;
  el.srcObject = tracks.length ? new MediaStream(tracks) : null;
  if (tracks.length) el.play().catch(() => {});
  return true;
}

function renderCall() {
  const c = state.call;
  const view = $('call-view');
  const show = !!c && c.phase !== 'incoming';
  view.hidden = !show;
  document.body.classList.toggle('in-call', show);
  if (!show) {
    $('invite-panel').hidden = true;
    return;
  }
  const me = state.session.user.id;
  view.dataset.phase = c.phase;
  view.dataset.kind = c.kind;
  $('call-title').textContent = callTitle(c);
  $('call-status').textContent = callStatusText(c);
  $('call-timer').hidden = c.phase !== 'active';

  // Local tile.
  const local = $('local-tile');
  const video = c.kind === 'video';
  local.dataset.audio = String(c.audio);
  local.dataset.video = String(video && c.video);
  paintAvatar($('local-avatar'), state.session.user.name);
  $('local-muted-badge').hidden = c.audio;
  paintQuality($('local-quality'), c.quality.get(me));
  local.classList.toggle('speaking', c.speaker === me);
  $('local-camera-off-badge').hidden = !video || c.video;
  const lv = $('local-video');
  if (c.localStream && lv.srcObject !== c.localStream) lv.srcObject = c.localStream;
  if (!c.localStream) lv.srcObject = null;

  // Remote tiles, one per other participant, in the order they came.
  const tiles = $('tiles');
  for (const [id, r] of c.remote) {
    let tile = tiles.querySelector(`[data-testid="remote-tile"][data-user-id="${CSS.escape(id)}"]`);
    if (!tile) tile = tiles.appendChild(makeRemoteTile(id, r.name));
    const m = mediaOf(c, id);
    const v = tile.querySelector('video');
    if (setTracks(v, m.camera ? [m.camera] : [])) {
      r.hasVideo = !!m.camera && v.readyState >= 2;
      v.onloadeddata = () => {
        if (state.call !== c || !c.remote.has(id)) return;
        c.remote.get(id).hasVideo = true;
        render();
      };
    }
    setTracks(tile.querySelector('audio'), m.audio);
    tile.dataset.audio = String(r.audio);
    tile.dataset.video = String(video && r.video);
    tile.dataset.hasVideo = String(!!r.hasVideo && !!m.camera);
    tile.querySelector('[data-testid="remote-muted-badge"]').hidden = r.audio;
    paintQuality(tile.querySelector('[data-testid="remote-quality"]'), c.quality.get(id));
    tile.classList.toggle('speaking', c.speaker === id);
    tile.querySelector('[data-testid="remote-camera-off-badge"]').hidden = !video || r.video;
    tile.querySelector('[data-testid="remote-sharing-badge"]').hidden = m.screens.length === 0;
  }
  for (const tile of tiles.querySelectorAll('[data-testid="remote-tile"]')) {
    if (!c.remote.has(tile.dataset.userId)) {
      for (const el of tile.querySelectorAll('video, audio')) el.srcObject = null;
      tile.remove();
    }
  }
  // Invited, not answered yet.
  for (const [id, r] of c.ringing) {
    if (c.remote.has(id)) continue;
    if (!tiles.querySelector(`[data-testid="ringing-tile"][data-user-id="${CSS.escape(id)}"]`)) {
      tiles.appendChild(makeRingingTile(id, r.name));
    }
  }
  for (const tile of tiles.querySelectorAll('[data-testid="ringing-tile"]')) {
    const id = tile.dataset.userId;
    if (!c.ringing.has(id) || c.remote.has(id)) tile.remove();
  }
  const count = tiles.querySelectorAll('.tile').length;
  const grid = gridFor(count);
  tiles.dataset.count = String(count);
  tiles.dataset.dense = String(count > 4);
  tiles.style.setProperty('--cols', String(grid.wide.cols));
  tiles.style.setProperty('--rows', String(grid.wide.rows));
  tiles.style.setProperty('--cols-narrow', String(grid.narrow.cols));
  tiles.style.setProperty('--rows-narrow', String(grid.narrow.rows));

  renderSpotlight(c);

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

  const share = $('toggle-screen');
  const sharing = !!c.screen;
  share.setAttribute('aria-pressed', String(sharing));
  share.setAttribute('aria-label', sharing ? 'Stop sharing your screen' : 'Share your screen');
  share.title = share.getAttribute('aria-label');
  share.querySelector('[data-icon]').innerHTML = sharing ? ICONS.screenOff : ICONS.screen;
  share.querySelector('.label').textContent = sharing ? 'Stop sharing' : 'Share screen';
  share.disabled = c.phase !== 'active' || !c.media || !c.media.publisher || !!c.screenBusy;

  const add = $('add-participant');
  const size = 1 + c.remote.size + [...c.ringing.keys()].filter((id) => !c.remote.has(id)).length;
  add.disabled = !c.id || !(c.phase === 'active' || (c.phase === 'calling' && c.role === 'caller'));
  add.setAttribute('aria-expanded', String(!!c.inviteOpen));
  add.title = size >= MAX_PARTICIPANTS ? `The call is full (${MAX_PARTICIPANTS} people)` : 'Add someone to this call';
  renderInvitePanel(c, size, add.disabled);

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

/** Screen shares get the big area above the grid: everyone's, ours included. */
function renderSpotlight(c) {
  const spot = $('spotlight');
  const me = state.session.user.id;
  const wanted = new Map(); // trackId → {userId, name, track}
  for (const [id, r] of c.remote) {
    for (const s of mediaOf(c, id).screens) wanted.set(s.trackId, { userId: id, name: r.name, track: s.track });
  }
  if (c.screen) wanted.set(c.screen.track.id, { userId: me, name: null, track: c.screen.track });
  for (const tile of spot.querySelectorAll('[data-testid="screen-tile"]')) {
    if (!wanted.has(tile.dataset.trackId)) {
      tile.querySelector('video').srcObject = null;
      tile.remove();
    }
  }
  for (const [trackId, s] of wanted) {
    let tile = spot.querySelector(`[data-testid="screen-tile"][data-track-id="${CSS.escape(trackId)}"]`);
    if (!tile) {
      tile = document.createElement('div');
      tile.className = `tile screen${s.userId === me ? ' local' : ''}`;
      tile.dataset.testid = 'screen-tile';
      tile.dataset.userId = s.userId;
      tile.dataset.trackId = trackId;
      tile.innerHTML = `<video data-testid="screen-video" autoplay playsinline muted></video>
        <div class="tile-label"><span class="tile-name"></span></div>`;
      tile.querySelector('.tile-name').textContent = s.name === null ? 'Your screen' : `${s.name}'s screen`;
      spot.appendChild(tile);
    }
    setTracks(tile.querySelector('video'), [s.track]);
  }
  spot.hidden = wanted.size === 0;
  spot.dataset.count = String(wanted.size);
  $('call-view').classList.toggle('has-spotlight', wanted.size > 0);
}

/** "Add people": online users who are free and not in this call yet. */
function renderInvitePanel(c, size, disabled) {
  const panel = $('invite-panel');
  const open = !!c.inviteOpen && !disabled;
  panel.hidden = !open;
  if (!open) return;
  const me = state.session.user.id;
  const free = state.users.filter((u) => u.id !== me && !u.busy && !c.remote.has(u.id) && !c.ringing.has(u.id));
  const full = size >= MAX_PARTICIPANTS;
  $('invite-empty').hidden = free.length > 0;
  $('invite-full').hidden = !full;
  $('invite-list').replaceChildren(
    ...free.map((u) => {
      const li = document.createElement('li');
      li.className = 'user';
      li.dataset.testid = 'invite-user';
      li.dataset.userId = u.id;
      const av = document.createElement('span');
      av.className = 'avatar small';
      paintAvatar(av, u.name);
      const name = document.createElement('span');
      name.className = 'who name';
      name.textContent = u.name;
      const b = document.createElement('button');
      b.type = 'button';
      b.className = 'primary small';
      b.dataset.testid = 'invite-button';
      b.textContent = 'Add';
      b.setAttribute('aria-label', `Add ${u.name} to the call`);
      b.disabled = full || c.inviting.has(u.id);
      b.addEventListener('click', () => inviteParticipant(c, u));
      li.append(av, name, b);
      return li;
    }),
  );
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
      <span class="badge sharing-badge" data-testid="remote-sharing-badge" hidden>Presenting</span>
    </div>`;
  paintAvatar(tile.querySelector('.avatar'), name);
  tile.querySelector('.tile-name').textContent = name;
  return tile;
}

/** Someone invited who has not answered yet. */
function makeRingingTile(id, name) {
  const tile = document.createElement('div');
  tile.className = 'tile ringing';
  tile.dataset.testid = 'ringing-tile';
  tile.dataset.userId = id;
  tile.innerHTML = `
    <div class="avatar"></div>
    <div class="tile-label"><span class="tile-name"></span><span class="badge ringing-badge">Ringing…</span></div>`;
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
    screen: null,
    screenBusy: false,
    remote: new Map(),
    ringing: new Map(),
    published: new Map(),
    publishedSeq: 0,
    tracks: [],
    inviteOpen: false,
    inviting: new Set(),
    // userId → latest participant_quality report (self included); the dominant speaker.
    quality: new Map(),
    speaker: null,
    recording: null,
    recordingBusy: false,
    ...fields,
  };
}

/**
 * Caller: camera/mic first (the permission prompt belongs to the click), then ring everyone in
 * `peers` ({id, name}, one for a 1:1 call, several for a group call).
 */
async function startCall(peers, kind) {
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

/** Any joined participant adds someone (invite_participant, protocol.md §7.1). */
async function inviteParticipant(call, user) {
  if (state.call !== call || !call.id || call.inviting.has(user.id)) return;
  call.inviting.add(user.id);
  render();
  try {
    await state.signaling.request('invite_participant', { call_id: call.id, user_id: user.id });
    // participant_invited follows; show the tile now in case it is slow.
    if (state.call === call && !call.remote.has(user.id)) call.ringing.set(user.id, { name: user.name });
  } catch (e) {
    if (state.call === call) toast(inviteErrorText(e, user));
  } finally {
    call.inviting.delete(user.id);
    if (state.call === call) render();
  }
}

function inviteErrorText(e, user) {
  switch (e.code) {
    case 'busy':
      return `${user.name} is busy in another call.`;
    case 'user_offline':
      return `${user.name} is offline.`;
    case 'limit_exceeded':
      return `The call is full: ${user.name} cannot be added.`;
    case 'missing_grant':
      return `You are not allowed to add people to calls (${e.code}).`;
    default:
      return `Could not add ${user.name}: ${e.message} (${e.code})`;
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

function rejectCall() {
  const call = state.call;
  if (!call || call.phase !== 'incoming') return;
  state.signaling.send('reject_call', { call_id: call.id });
  finishCall(`You declined the ${call.kind} call from ${call.peer.name}.`);
}

function hangUp() {
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
function maybeStartMedia(call) {
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

function rememberPcs() {
  const m = state.call && state.call.media;
  if (!m) return;
  if (m.publisher) state.last.publisher = m.publisher;
  if (m.subscriber) state.last.subscriber = m.subscriber;
}

function sendMediaState(call) {
  if (!call.id || !call.accepted) return;
  state.signaling.send('media_state', {
    call_id: call.id,
    audio: call.audio,
    video: call.kind === 'video' && call.video,
    screen: !!call.screen,
  });
}

/** Share a screen (getDisplayMedia) during a voice or video call, or stop sharing it. */
async function toggleScreen() {
  const call = state.call;
  if (!call || call.phase !== 'active' || !call.media || call.screenBusy) return;
  if (call.screen) {
    await stopScreen(call);
    return;
  }
  call.screenBusy = true;
  render();
  let stream;
  try {
    stream = await getScreenMedia();
  } catch (e) {
    call.screenBusy = false;
    if (state.call === call) {
      if (!e.cancelled) toast(e.message);
      render();
    }
    return;
  }
  if (state.call !== call) {
    stopStream(stream);
    return;
  }
  const track = stream.getVideoTracks()[0];
  // The browser's own "Stop sharing" bar ends the track.
  track.addEventListener('ended', () => {
    if (state.call === call && call.screen && call.screen.track === track) stopScreen(call);
  });
  call.screen = { stream, track };
  render();
  try {
    await call.media.startScreen(stream);
    sendMediaState(call);
  } catch (e) {
    if (state.call === call) {
      toast(`Could not share the screen: ${e.message}`);
      await stopScreen(call);
    }
  } finally {
    call.screenBusy = false;
    if (state.call === call) render();
  }
}

async function stopScreen(call) {
  if (!call.screen) return;
  stopStream(call.screen.stream);
  call.screen = null;
  render();
  try {
    await call.media.stopScreen();
  } catch (e) {
    if (state.call === call) console.warn('could not renegotiate after the screen share', e);
  }
  if (state.call === call) sendMediaState(call);
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

function leftText(name, reason, wasIn) {
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
    pruneSelection();
    renderUsers();
    renderHistory();
    if (state.call && state.call.inviteOpen) renderCall();
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
  $('toggle-screen').addEventListener('click', toggleScreen);
  $('add-participant').addEventListener('click', () => {
    const c = state.call;
    if (!c) return;
    c.inviteOpen = !c.inviteOpen;
    renderCall();
    if (c.inviteOpen) ($('invite-list').querySelector('button:not(:disabled)') || $('invite-close')).focus();
  });
  $('invite-close').addEventListener('click', () => {
    if (state.call) state.call.inviteOpen = false;
    renderCall();
  });
  $('group-clear').addEventListener('click', () => {
    state.selected.clear();
    renderUsers();
  });
  for (const kind of ['voice', 'video']) {
    $(`group-${kind}-call`).addEventListener('click', () => {
      const peers = selectedUsers().map((u) => ({ id: u.id, name: u.name }));
      if (peers.length) startCall(peers, kind);
    });
  }
  $('history-refresh').addEventListener('click', refreshHistory);
  document.addEventListener('keydown', (ev) => {
    if (ev.key !== 'Escape' || !state.call) return;
    if (state.call.phase === 'incoming') rejectCall();
    else if (state.call.inviteOpen) {
      state.call.inviteOpen = false;
      renderCall();
    }
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
        remote: Object.fromEntries([...c.remote].map(([id, r]) => [id, { ...r }])),
        ringing: Object.fromEntries(c.ringing),
        published: Object.fromEntries(c.published),
        tracks: c.tracks.map((t) => ({ mid: t.mid, userId: t.userId, trackId: t.trackId, kind: t.kind })),
        screen: !!c.screen,
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
  /**
   * Every inbound RTP stream of the subscriber connection, with whose it is (user id, track id,
   * source) from the offer's mid → msid and track_published.
   */
  async remoteMedia() {
    const c = state.call;
    const m = c && c.media;
    if (!m || !m.subscriber) return [];
    const s = await m.summary();
    const shown = new Set();
    for (const id of c.remote.keys()) {
      const x = mediaOf(c, id);
      for (const t of [...x.audio, x.camera, ...x.screens.map((y) => y.track)]) if (t) shown.add(t);
    }
    return s.subscriber.inboundStreams.map((st) => {
      const t = c.tracks.find((x) => x.mid === st.mid);
      const pub = t && c.published.get(t.trackId);
      return {
        ...st,
        userId: t ? t.userId : null,
        trackId: t ? t.trackId : null,
        source: pub ? pub.source : null,
        // On screen (or playing) now: the newest publication of its owner and source.
        shown: !!t && shown.has(t.track),
      };
    });
  },
  /** `peer` = {id, name} or a list of them (a group call). */
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
