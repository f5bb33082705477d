// What is on screen, drawn from `state`: sign-in or lobby, the incoming-call modal, and the
// call view (title, status, tiles, spotlight, controls). Each part's details live in its own
// module; this one decides which show and in what order they are drawn.

import { ICONS } from './icons.js';
import { renderInvite } from './invite.js';
import { renderUsers } from './lobby.js';
import { renderHistory } from './recent-calls.js';
import { renderRecording } from './recording.js';
import { renderScreenButton, renderSpotlight } from './screen.js';
import { state } from './state.js';
import { renderTiles } from './tiles.js';
import { $, formatNames, kindLabel, paintToggle } from './ui.js';

// What the mute and camera buttons show when not pressed (off) and pressed (on).
const MUTE = {
  off: { label: 'Mute microphone', icon: ICONS.mic, text: 'Mute' },
  on: { label: 'Unmute microphone', icon: ICONS.micOff, text: 'Unmute' },
};
const CAMERA = {
  off: { label: 'Turn camera off', icon: ICONS.camera, text: 'Camera off' },
  on: { label: 'Turn camera on', icon: ICONS.cameraOff, text: 'Camera on' },
};

export function render() {
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

export function renderCall() {
  const c = state.call;
  const view = $('call-view');
  const show = !!c && c.phase !== 'incoming';
  view.hidden = !show;
  document.body.classList.toggle('in-call', show);
  if (!show) {
    $('invite-panel').hidden = true;
    return;
  }
  view.dataset.phase = c.phase;
  view.dataset.kind = c.kind;
  $('call-title').textContent = callTitle(c);
  $('call-status').textContent = callStatusText(c);
  $('call-timer').hidden = c.phase !== 'active';

  renderTiles(c);
  renderSpotlight(c);

  // Controls.
  const mute = $('toggle-mute');
  paintToggle(mute, !c.audio, MUTE);
  const cam = $('toggle-camera');
  cam.hidden = c.kind !== 'video';
  paintToggle(cam, !c.video, CAMERA);
  const canToggle = c.phase === 'active' || c.phase === 'calling';
  mute.disabled = !canToggle || !c.localStream;
  cam.disabled = !canToggle || !c.localStream;

  renderScreenButton(c);
  renderInvite(c);
  renderRecording(c);
}
