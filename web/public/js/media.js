// Media for one call (docs/protocol.md §6): the local camera/microphone and the two
// RTCPeerConnections to the SFU.
//
//   publisher  – we offer with our local tracks, the SFU answers (`webrtc_answer`).
//   subscriber – the SFU offers (`webrtc_offer`) whatever it forwards to us, we answer.
//
// A forwarded track's a=msid is "<publishing user's id> <publication id>": the stream id says
// whose it is, the track id matches `track_published.track_id` (which says microphone, camera or
// screen). Remote tracks are read from the subscriber's transceivers and the offer's a=mid/a=msid
// lines after every negotiation, not from `event.track.id`: a transceiver the SFU reuses for a
// later publication keeps its first MediaStreamTrack (and that track's id).
// Mute/camera-off swap the sender's track for null (packets stop, no renegotiation) and put it
// back on unmute. Screen sharing adds a third sending track and renegotiates the publisher.

export const MEDIA_ERROR_TEXT = 'Could not access camera/microphone';

export class MediaUnavailableError extends Error {}

/** Ask for the camera (video calls) and microphone. Throws MediaUnavailableError. */
export async function getLocalMedia(kind) {
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    throw new MediaUnavailableError(
      `${MEDIA_ERROR_TEXT}: this page has no media device access (use https or localhost).`,
    );
  }
  try {
    return await navigator.mediaDevices.getUserMedia({
      audio: true,
      video: kind === 'video' ? { width: { ideal: 640 }, height: { ideal: 480 } } : false,
    });
  } catch (e) {
    const why =
      e && e.name === 'NotAllowedError'
        ? 'permission was denied'
        : e && e.name === 'NotFoundError'
          ? 'no device found'
          : e && e.name === 'NotReadableError'
            ? 'the device is in use'
            : (e && (e.message || e.name)) || 'unknown error';
    throw new MediaUnavailableError(`${MEDIA_ERROR_TEXT} (${why}).`);
  }
}

/**
 * Ask the browser for a screen, window or tab (getDisplayMedia; needs a click). Throws an Error
 * with a readable message; `.cancelled` is set when the user closed the picker.
 */
export async function getScreenMedia() {
  if (!navigator.mediaDevices || !navigator.mediaDevices.getDisplayMedia) {
    throw new Error('This browser cannot share its screen.');
  }
  try {
    // 15 fps is plenty for slides and code, and keeps the encoder cheap.
    return await navigator.mediaDevices.getDisplayMedia({
      video: { frameRate: { ideal: 15, max: 15 }, width: { max: 1920 }, height: { max: 1080 } },
      audio: false,
    });
  } catch (e) {
    const err = new Error(
      e && e.name === 'NotAllowedError'
        ? 'Screen sharing was cancelled or not allowed.'
        : `Could not share the screen (${(e && (e.message || e.name)) || 'unknown error'}).`,
    );
    err.cancelled = !!e && e.name === 'NotAllowedError';
    throw err;
  }
}

/**
 * The forwarded tracks an SDP offers: [{mid, streamId, trackId, kind}] for every m-section
 * that is live (port ≠ 0) and sends to us (sendonly/sendrecv from the offerer's side).
 */
export function offeredTracks(sdp) {
  const out = [];
  for (const section of String(sdp).split(/\r?\n(?=m=)/).slice(1)) {
    const lines = section.split(/\r?\n/);
    const m = /^m=(audio|video) (\d+)/.exec(lines[0]);
    if (!m || m[2] === '0') continue;
    const attr = (name) => {
      const l = lines.find((x) => x.startsWith(`a=${name}`));
      return l === undefined ? null : l.slice(name.length + 2).trim();
    };
    if (lines.some((l) => l === 'a=inactive' || l === 'a=recvonly')) continue;
    let msid = attr('msid:');
    if (!msid) {
      // Older style: a=ssrc:<ssrc> msid:<stream> <track>
      const l = lines.find((x) => /^a=ssrc:\d+ msid:/.test(x));
      if (l) msid = l.replace(/^a=ssrc:\d+ msid:/, '');
    }
    const mid = attr('mid:');
    if (!mid || !msid) continue;
    const [streamId, trackId] = msid.split(/\s+/);
    out.push({ mid, streamId, trackId: trackId || null, kind: m[1] });
  }
  return out;
}

export function stopStream(stream) {
  if (!stream) return;
  for (const t of stream.getTracks()) t.stop();
}

export class CallMedia {
  /**
   * @param {object} o
   * @param {string} o.callId
   * @param {MediaStream} o.localStream
   * @param {import('./signaling.js').Signaling} o.signaling
   * @param {(tracks: RemoteTrack[]) => void} o.onRemoteTracks  every forwarded track we receive
   *   now, after each subscriber negotiation: {mid, userId, trackId, kind, track}
   * @param {(state: string) => void} o.onConnectionState  'connecting' | 'connected' | 'failed'
   * @param {() => string|null} o.fallbackRemoteId  used when a track arrives without a stream id
   */
  constructor(o) {
    this.callId = o.callId;
    this.localStream = o.localStream;
    this.signaling = o.signaling;
    this.onRemoteTracks = o.onRemoteTracks;
    this.onConnectionState = o.onConnectionState;
    this.fallbackRemoteId = o.fallbackRemoteId;
    this.publisher = null;
    this.subscriber = null;
    this.senders = { audio: null, video: null };
    this.tracks = { audio: null, video: null };
    // The screen share being sent, if any: {track, stream, sender}.
    this.screen = null;
    this.closed = false;
    // Candidates found before our SDP went out are held back so the SFU sees the SDP first.
    this.sdpSent = { publisher: false, subscriber: false };
    this.pendingCandidates = { publisher: [], subscriber: [] };
    // Subscriber offers are applied strictly in order; so are publisher offers (each waits for
    // the SFU's answer before the next one goes out).
    this.subscriberQueue = Promise.resolve();
    this.publisherQueue = Promise.resolve();
    this.answerWaiter = null;
    this.remote = [];
  }

  _newPc(target) {
    // No iceServers: the SFU is ICE-lite with one host candidate in every SDP it sends.
    const pc = new RTCPeerConnection({ bundlePolicy: 'max-bundle', rtcpMuxPolicy: 'require' });
    pc.onicecandidate = (ev) => {
      if (!ev.candidate || !ev.candidate.candidate) return;
      const c = ev.candidate.toJSON();
      if (this.sdpSent[target]) this._sendCandidate(target, c);
      else this.pendingCandidates[target].push(c);
    };
    pc.onconnectionstatechange = () => this._reportState();
    return pc;
  }

  _sendCandidate(target, candidate) {
    if (this.closed) return;
    this.signaling.send('webrtc_ice_candidate', { call_id: this.callId, target, candidate });
  }

  _flushCandidates(target) {
    this.sdpSent[target] = true;
    for (const c of this.pendingCandidates[target].splice(0)) this._sendCandidate(target, c);
  }

  _reportState() {
    if (this.closed) return;
    const states = [this.publisher, this.subscriber].filter(Boolean).map((pc) => pc.connectionState);
    let s = 'connecting';
    if (states.some((x) => x === 'failed')) s = 'failed';
    else if (states.length && states.every((x) => x === 'connected')) s = 'connected';
    else if (states.some((x) => x === 'disconnected')) s = 'reconnecting';
    this.onConnectionState(s);
  }

  /** Open the publisher connection and offer our local tracks. */
  async startPublishing() {
    const pc = this._newPc('publisher');
    this.publisher = pc;
    for (const track of this.localStream.getTracks()) {
      this.tracks[track.kind] = track;
      this.senders[track.kind] = pc.addTrack(track, this.localStream);
    }
    await this._negotiatePublisher();
  }

  /** Each sending track's source by its id (= its a=msid track id), for `webrtc_offer.tracks`. */
  _declaredTracks() {
    const out = [];
    for (const kind of ['audio', 'video']) {
      const t = this.tracks[kind];
      if (t) out.push({ track_id: t.id, source: kind === 'audio' ? 'microphone' : 'camera' });
    }
    if (this.screen) out.push({ track_id: this.screen.track.id, source: 'screen' });
    return out;
  }

  /** (Re)offer the publisher connection and wait for the SFU's answer. Serialised. */
  _negotiatePublisher() {
    const run = async () => {
      const pc = this.publisher;
      if (this.closed || !pc) return;
      const offer = await pc.createOffer();
      await pc.setLocalDescription(offer);
      if (this.closed) return;
      const answered = new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('no answer from the server')), 15000);
        this.answerWaiter = (err) => {
          clearTimeout(timer);
          if (err) reject(err);
          else resolve();
        };
      });
      answered.catch(() => {}); // awaited below; a failed request must not leave it unhandled
      await this.signaling.request('webrtc_offer', {
        call_id: this.callId,
        target: 'publisher',
        sdp: pc.localDescription.sdp,
        tracks: this._declaredTracks(),
      });
      if (!this.sdpSent.publisher) this._flushCandidates('publisher');
      await answered;
    };
    const p = this.publisherQueue.then(run);
    this.publisherQueue = p.catch(() => {});
    return p;
  }

  /** The SFU's answer to our publisher offer. */
  async handleAnswer(msg) {
    if (this.closed || msg.target !== 'publisher' || !this.publisher) return;
    if (this.publisher.signalingState !== 'have-local-offer') return;
    const waiter = this.answerWaiter;
    this.answerWaiter = null;
    try {
      await this.publisher.setRemoteDescription({ type: 'answer', sdp: msg.sdp });
      if (waiter) waiter();
    } catch (e) {
      if (waiter) waiter(e);
      throw e;
    }
  }

  /** Send a getDisplayMedia stream's video as a third track (source "screen"), renegotiating. */
  async startScreen(stream) {
    const track = stream.getVideoTracks()[0];
    if (!track || !this.publisher || this.screen) return;
    const sender = this.publisher.addTrack(track, stream);
    this.screen = { track, stream, sender };
    await this._negotiatePublisher();
  }

  /** Stop sending the screen: remove its track, renegotiate, stop the capture. */
  async stopScreen() {
    const s = this.screen;
    if (!s) return;
    this.screen = null;
    stopStream(s.stream);
    if (this.closed || !this.publisher) return;
    try {
      this.publisher.removeTrack(s.sender);
    } catch {
      /* connection closed meanwhile */
    }
    await this._negotiatePublisher();
  }

  /** The SFU (re)offers the subscriber connection; answer it. Offers are applied in order. */
  handleOffer(msg) {
    if (msg.target !== 'subscriber') return Promise.resolve();
    this.subscriberQueue = this.subscriberQueue
      .then(() => this._answerSubscriber(msg.sdp))
      .catch((e) => console.warn('subscriber negotiation failed', e));
    return this.subscriberQueue;
  }

  async _answerSubscriber(sdp) {
    if (this.closed) return;
    this.subscriberOffers = (this.subscriberOffers || 0) + 1;
    if (!this.subscriber) {
      const pc = this._newPc('subscriber');
      pc.ontrack = (ev) => this._onTrack(ev);
      this.subscriber = pc;
    }
    const pc = this.subscriber;
    await pc.setRemoteDescription({ type: 'offer', sdp });
    const answer = await pc.createAnswer();
    await pc.setLocalDescription(answer);
    this._syncRemote();
    if (this.closed) return;
    await this.signaling.request('webrtc_answer', {
      call_id: this.callId,
      target: 'subscriber',
      sdp: pc.localDescription.sdp,
    });
    this._flushCandidates('subscriber');
  }

  _onTrack(ev) {
    ev.track.addEventListener('unmute', () => this._syncRemote());
    this._syncRemote();
  }

  /**
   * Rebuild the list of tracks we receive from the current offer (mid → msid) and the
   * subscriber's transceivers (mid → receiver track), and hand it to the call controller.
   */
  _syncRemote() {
    const pc = this.subscriber;
    if (this.closed || !pc || !pc.remoteDescription) return;
    const byMid = new Map();
    for (const t of pc.getTransceivers()) if (t.mid !== null && !t.stopped) byMid.set(t.mid, t);
    const list = [];
    for (const o of offeredTracks(pc.remoteDescription.sdp)) {
      const tr = byMid.get(o.mid);
      if (!tr) continue;
      let userId = o.streamId;
      if (!userId || userId === '-') userId = this.fallbackRemoteId() || 'unknown';
      list.push({ mid: o.mid, userId, trackId: o.trackId || tr.receiver.track.id, kind: o.kind, track: tr.receiver.track });
    }
    this.remote = list;
    this.onRemoteTracks(list);
  }

  /** Start/stop sending our microphone (true = sending). */
  async setAudio(on) {
    await this._setSending('audio', on);
  }

  /** Start/stop sending our camera (true = sending). */
  async setVideo(on) {
    await this._setSending('video', on);
  }

  async _setSending(kind, on) {
    const track = this.tracks[kind] || this.localStream.getTracks().find((t) => t.kind === kind);
    if (!track) return;
    this.tracks[kind] = track;
    // The local preview follows too (a muted mic / black self-view).
    track.enabled = on;
    const sender = this.senders[kind];
    if (sender) await sender.replaceTrack(on ? track : null);
  }

  /** Close both connections and stop every local track (the camera light goes off). */
  close() {
    this.closed = true;
    for (const pc of [this.publisher, this.subscriber]) {
      if (!pc) continue;
      pc.onicecandidate = null;
      pc.onconnectionstatechange = null;
      pc.ontrack = null;
      pc.close();
    }
    stopStream(this.localStream);
    if (this.screen) stopStream(this.screen.stream);
    this.screen = null;
    if (this.answerWaiter) this.answerWaiter(new Error('call ended'));
    this.answerWaiter = null;
  }

  /**
   * A compact digest of getStats() for both connections: inbound/outbound RTP per kind and the
   * selected candidate pair. Used by the tests (window.switchboard.stats()) and for debugging.
   */
  async summary() {
    const out = {};
    for (const [name, pc] of [
      ['publisher', this.publisher],
      ['subscriber', this.subscriber],
    ]) {
      out[name] = pc ? await summarizePc(pc) : null;
    }
    out.subscriberOffers = this.subscriberOffers || 0;
    return out;
  }
}

export async function summarizePc(pc) {
  const report = await pc.getStats();
  const byId = new Map();
  report.forEach((s) => byId.set(s.id, s));
  const res = {
    connectionState: pc.connectionState,
    iceConnectionState: pc.iceConnectionState,
    inbound: {},
    outbound: {},
    // Every inbound RTP stream (a group call has one per forwarded track), with its mid.
    inboundStreams: [],
    selectedPair: null,
  };
  report.forEach((s) => {
    if (s.type === 'inbound-rtp') {
      res.inbound[s.kind] = {
        packetsReceived: s.packetsReceived || 0,
        bytesReceived: s.bytesReceived || 0,
        framesDecoded: s.framesDecoded,
        framesReceived: s.framesReceived,
        keyFramesDecoded: s.keyFramesDecoded,
        frameWidth: s.frameWidth,
        pliCount: s.pliCount,
        firCount: s.firCount,
        nackCount: s.nackCount,
        packetsLost: s.packetsLost,
        codec: (byId.get(s.codecId) || {}).mimeType,
        trackIdentifier: s.trackIdentifier,
      };
      res.inboundStreams.push({
        kind: s.kind,
        mid: s.mid,
        trackIdentifier: s.trackIdentifier,
        packetsReceived: s.packetsReceived || 0,
        framesDecoded: s.framesDecoded,
        frameWidth: s.frameWidth,
        frameHeight: s.frameHeight,
      });
    } else if (s.type === 'outbound-rtp') {
      res.outbound[s.kind] = {
        packetsSent: s.packetsSent || 0,
        bytesSent: s.bytesSent || 0,
        framesEncoded: s.framesEncoded,
        keyFramesEncoded: s.keyFramesEncoded,
        pliCount: s.pliCount,
        firCount: s.firCount,
        nackCount: s.nackCount,
        codec: (byId.get(s.codecId) || {}).mimeType,
      };
    } else if (s.type === 'transport' && s.selectedCandidatePairId) {
      const pair = byId.get(s.selectedCandidatePairId);
      if (pair) {
        const local = byId.get(pair.localCandidateId) || {};
        const remote = byId.get(pair.remoteCandidateId) || {};
        res.selectedPair = {
          state: pair.state,
          local: { address: local.address || local.ip, port: local.port, type: local.candidateType },
          remote: { address: remote.address || remote.ip, port: remote.port, type: remote.candidateType },
        };
      }
    }
  });
  return res;
}
