// Debug hooks for the browser tests (and for poking at a call from DevTools): the state as plain
// data, the peer connections (kept after a call for "everything was released" assertions),
// getStats() digests, whose each received stream is, and placing a call without the UI.

import { ringtone, startCall } from './call.js';
import { mediaOf, state } from './state.js';

/** Installs `window.switchboard`; the tests read the call through it (docs/web.md lists what it offers). */
export function installTestHooks() {
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
}
