// Media for one call (docs/protocol.md §6): the local camera/microphone and the two
// RTCPeerConnections to the SFU.
//
//   publisher  – we offer with our local tracks, the SFU answers (`webrtc_answer`).
//   subscriber – the SFU offers (`webrtc_offer`) whatever it forwards to us, we answer.
//
// A forwarded track's stream id (a=msid) is the publishing user's id: that is how remote media
// is mapped to a person's tile. Mute/camera-off swap the sender's track for null (packets stop,
// no renegotiation) and put it back on unmute.

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
   * @param {(userId: string, stream: MediaStream) => void} o.onRemoteStream
   * @param {(state: string) => void} o.onConnectionState  'connecting' | 'connected' | 'failed'
   * @param {() => string|null} o.fallbackRemoteId  used when a track arrives without a stream id
   */
  constructor(o) {
    this.callId = o.callId;
    this.localStream = o.localStream;
    this.signaling = o.signaling;
    this.onRemoteStream = o.onRemoteStream;
    this.onConnectionState = o.onConnectionState;
    this.fallbackRemoteId = o.fallbackRemoteId;
    this.publisher = null;
    this.subscriber = null;
    this.senders = { audio: null, video: null };
    this.tracks = { audio: null, video: null };
    this.closed = false;
    // Candidates found before our SDP went out are held back so the SFU sees the SDP first.
    this.sdpSent = { publisher: false, subscriber: false };
    this.pendingCandidates = { publisher: [], subscriber: [] };
    // Subscriber offers are applied strictly in order.
    this.subscriberQueue = Promise.resolve();
    this.remoteStreams = new Map();
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
    const offer = await pc.createOffer();
    await pc.setLocalDescription(offer);
    if (this.closed) return;
    await this.signaling.request('webrtc_offer', {
      call_id: this.callId,
      target: 'publisher',
      sdp: pc.localDescription.sdp,
    });
    this._flushCandidates('publisher');
  }

  /** The SFU's answer to our publisher offer. */
  async handleAnswer(msg) {
    if (this.closed || msg.target !== 'publisher' || !this.publisher) return;
    if (this.publisher.signalingState !== 'have-local-offer') return;
    await this.publisher.setRemoteDescription({ type: 'answer', sdp: msg.sdp });
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
    if (this.closed) return;
    await this.signaling.request('webrtc_answer', {
      call_id: this.callId,
      target: 'subscriber',
      sdp: pc.localDescription.sdp,
    });
    this._flushCandidates('subscriber');
  }

  _onTrack(ev) {
    let stream = ev.streams && ev.streams[0];
    let userId = stream && stream.id;
    if (!stream || !userId || userId === '-') {
      // No msid: attribute it to the only other participant we know of.
      userId = this.fallbackRemoteId() || 'unknown';
      stream = this.remoteStreams.get(userId) || new MediaStream();
      stream.addTrack(ev.track);
    }
    this.remoteStreams.set(userId, stream);
    this.onRemoteStream(userId, stream);
    ev.track.addEventListener('unmute', () => this.onRemoteStream(userId, stream));
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
