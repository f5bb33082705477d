// The grid of people in the call: my tile, one per joined participant (in the order they came)
// and a "Ringing…" tile per invitee, each with its badges, quality bars and the speaker
// outline; and the grid's shape for the number of tiles.

import { mediaOf, render, state } from './state.js';
import { $, element, paintAvatar } from './ui.js';

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

/** Point a media element at exactly `tracks` (a new stream only when they changed). */
export function setTracks(el, tracks) {
  const cur = el.srcObject ? el.srcObject.getTracks() : [];
  const same = cur.length === tracks.length && tracks.every((t) => cur.includes(t));
  if (same) return false;
  el.srcObject = tracks.length ? new MediaStream(tracks) : null;
  if (tracks.length) el.play().catch(() => {});
  return true;
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

/** A person's tile: `html` holds an `.avatar` and a `.tile-name`, painted with `name`. */
function makeTile(kind, id, name, html) {
  const tile = element('div', `tile ${kind}`, { testid: `${kind}-tile`, userId: id });
  tile.innerHTML = html;
  paintAvatar(tile.querySelector('.avatar'), name);
  tile.querySelector('.tile-name').textContent = name;
  return tile;
}

function makeRemoteTile(id, name) {
  return makeTile('remote', id, name, `
    <video data-testid="remote-video" autoplay playsinline muted></video>
    <audio data-testid="remote-audio" autoplay></audio>
    <div class="avatar"></div>
    <div class="tile-label"><span class="tile-name"></span>
      <span class="quality" data-testid="remote-quality" data-level="" hidden><i></i><i></i><i></i><i></i></span>
      <span class="badge muted-badge" data-testid="remote-muted-badge" hidden>Muted</span>
      <span class="badge camoff-badge" data-testid="remote-camera-off-badge" hidden>Camera off</span>
      <span class="badge sharing-badge" data-testid="remote-sharing-badge" hidden>Presenting</span>
    </div>`);
}

/** Someone invited who has not answered yet. */
function makeRingingTile(id, name) {
  return makeTile('ringing', id, name, `
    <div class="avatar"></div>
    <div class="tile-label"><span class="tile-name"></span><span class="badge ringing-badge">Ringing…</span></div>`);
}

export function renderTiles(c) {
  const me = state.session.user.id;
  const video = c.kind === 'video';

  // Local tile.
  const local = $('local-tile');
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
}
