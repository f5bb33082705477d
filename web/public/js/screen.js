// Screen sharing: starting and stopping our own share (getDisplayMedia, a publisher
// renegotiation, media_state.screen) and the spotlight above the grid where everyone's
// shares, ours included, are shown.

import { sendMediaState } from './call.js';
import { ICONS } from './icons.js';
import { getScreenMedia, stopStream } from './media.js';
import { mediaOf, render, state } from './state.js';
import { setTracks } from './tiles.js';
import { $, element, paintToggle, toast } from './ui.js';

// What the share button shows when not sharing (off) and sharing (on).
const SHARE = {
  off: { label: 'Share your screen', icon: ICONS.screen, text: 'Share screen' },
  on: { label: 'Stop sharing your screen', icon: ICONS.screenOff, text: 'Stop sharing' },
};

/** Screen shares get the big area above the grid: everyone's, ours included. */
export function renderSpotlight(c) {
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
      tile = element('div', `tile screen${s.userId === me ? ' local' : ''}`, {
        testid: 'screen-tile',
        userId: s.userId,
        trackId,
      });
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

export function renderScreenButton(c) {
  const share = $('toggle-screen');
  const sharing = !!c.screen;
  paintToggle(share, sharing, SHARE);
  share.disabled = c.phase !== 'active' || !c.media || !c.media.publisher || !!c.screenBusy;
}

/** Share a screen (getDisplayMedia) during a voice or video call, or stop sharing it. */
export async function toggleScreen() {
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
