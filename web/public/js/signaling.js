// Signaling client: sign-in over HTTP and the Socket.IO connection (docs/protocol.md §1–§4).
// Knows nothing about the UI; the call controller subscribes to its events.

const STORAGE_KEY = 'switchboard.session';

/** The saved session ({token, user}) of this tab, or null. sessionStorage survives reloads. */
export function loadSession() {
  try {
    const s = JSON.parse(sessionStorage.getItem(STORAGE_KEY) || 'null');
    return s && s.token && s.user && s.user.id ? s : null;
  } catch {
    return null;
  }
}

export function saveSession(session) {
  sessionStorage.setItem(STORAGE_KEY, JSON.stringify(session));
}

export function clearSession() {
  sessionStorage.removeItem(STORAGE_KEY);
}

/** POST /api/session {name} -> {token, user}. Throws an Error whose message is user-readable. */
export async function signIn(name) {
  let res;
  try {
    res = await fetch('/api/session', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ name }),
    });
  } catch {
    throw new Error('Could not reach the server.');
  }
  let body = null;
  try {
    body = await res.json();
  } catch {
    /* not JSON */
  }
  if (!res.ok || !body || !body.token) {
    const msg = body && body.error && body.error.message;
    throw new Error(msg || `Sign-in failed (HTTP ${res.status}).`);
  }
  return { token: body.token, user: body.user };
}

/** Token problems the server reports in connect_error; the saved session is useless then. */
export const AUTH_ERRORS = new Set(['missing_token', 'invalid_token', 'expired_token']);

export class Signaling {
  constructor(token) {
    // `io` is the global from vendor/socket.io.min.js.
    this.socket = window.io({ auth: { token }, transports: ['websocket', 'polling'] });
  }

  on(event, fn) {
    this.socket.on(event, fn);
  }

  /**
   * Emit with an acknowledgement. Resolves with the ack body when `ok`, rejects with an Error
   * carrying `.code` otherwise (the server also emits an `error` event for those).
   */
  request(event, payload, timeoutMs = 10000) {
    return new Promise((resolve, reject) => {
      this.socket.timeout(timeoutMs).emit(event, payload, (err, ack) => {
        if (err) {
          const e = new Error(`No reply to ${event}`);
          e.code = 'timeout';
          reject(e);
        } else if (ack && ack.ok) {
          resolve(ack);
        } else {
          const info = (ack && ack.error) || {};
          const e = new Error(info.message || `${event} failed`);
          e.code = info.code || 'unknown';
          reject(e);
        }
      });
    });
  }

  /** Fire-and-forget emit; failures still arrive as `error` events. */
  send(event, payload) {
    this.socket.emit(event, payload, () => {});
  }

  close() {
    this.socket.removeAllListeners();
    this.socket.disconnect();
  }
}
