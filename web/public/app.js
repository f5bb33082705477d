// Switchboard browser demo: sign in, see who is online, place and take voice/video calls that
// run through the Switchboard SFU. The wire contract is docs/protocol.md. This entry point only
// wires the modules in js/ together (docs/web.md describes each): the renderer into the shared
// state, the buttons to their actions, the test hooks, and a saved session back in.

import { acceptCall, hangUp, rejectCall, startCall, toggleCamera, toggleMute } from './js/call.js';
import { hydrateIcons } from './js/icons.js';
import { wireLobby } from './js/lobby.js';
import { wireHistory } from './js/recent-calls.js';
import { toggleRecording } from './js/recording.js';
import { toggleScreen } from './js/screen.js';
import { connect, wireSignIn } from './js/session.js';
import { loadSession } from './js/signaling.js';
import { setRenderer, state } from './js/state.js';
import { installTestHooks } from './js/testhooks.js';
import { $, notice } from './js/ui.js';
import { render, renderCall } from './js/view.js';

setRenderer(render);

function wireDom() {
  hydrateIcons();
  wireSignIn();
  $('notice-close').addEventListener('click', () => notice(null));
  $('accept-call').addEventListener('click', acceptCall);
  $('reject-call').addEventListener('click', rejectCall);
  $('end-call').addEventListener('click', hangUp);
  $('toggle-mute').addEventListener('click', toggleMute);
  $('toggle-camera').addEventListener('click', toggleCamera);
  $('toggle-recording').addEventListener('click', toggleRecording);
  $('toggle-screen').addEventListener('click', toggleScreen);
  // "Add" opens the invite panel (js/invite.js draws it); its close button and Escape shut it.
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
  wireLobby();
  wireHistory(startCall);
  document.addEventListener('keydown', (ev) => {
    if (ev.key !== 'Escape' || !state.call) return;
    if (state.call.phase === 'incoming') rejectCall();
    else if (state.call.inviteOpen) {
      state.call.inviteOpen = false;
      renderCall();
    }
  });
}

installTestHooks();
wireDom();
const saved = loadSession();
if (saved) connect(saved);
else render();
