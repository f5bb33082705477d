// The client state every other module reads and changes, the shape of a call in it, and which
// of the tracks we receive stand for whom. No DOM here beyond the render hook.

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
export const state = {
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

/** At most this many people in one call, counting those still ringing (protocol.md §7.1). */
export const MAX_PARTICIPANTS = 16;

let renderAll = () => {};

/**
 * Redraw everything from `state`. Actions and event handlers all end with this, but the views
 * they would redraw also call back into those actions (a lobby button starts a call), so the
 * entry point hands the renderer in here instead of every module importing the views.
 */
export function render() {
  renderAll();
}

export function setRenderer(fn) {
  renderAll = fn;
}

export function newCall(fields) {
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

/** The call a server event about `callId` concerns, or null. */
export function currentCall(callId) {
  const c = state.call;
  if (!c) return null;
  if (c.id === callId) return c;
  // The caller may hear about its call (call_ringing) before the initiate_call ack.
  if (!c.id && c.role === 'caller') return c;
  return null;
}

/**
 * What we show of `userId`: their microphone, camera and screen share among the tracks we
 * receive, by track_published.source. Should two publications of one source ever be offered
 * at once (a track_unpublished still on its way), the newest wins. A screen share stops
 * showing as soon as its owner says so (media_state.screen = false), even before its
 * track_unpublished and the subscriber offer without it arrive.
 */
export function mediaOf(c, userId) {
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
