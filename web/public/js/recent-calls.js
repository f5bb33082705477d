// The "Recent calls" panel under "Online now" (GET /api/calls, docs/protocol.md §9): loading
// and refreshing the list, one row per call with its call-back button and recordings.

import { describeCall, downloadRecording, fetchCalls, fmtBytes, outcomeText, relativeTime } from './history.js';
import { ICONS } from './icons.js';
import { state } from './state.js';
import { $, element, fmtDuration, kindLabel, toast } from './ui.js';

// What a call-back button does: call.js's startCall, handed in by wireHistory because call.js
// imports this module (to refresh the list when a call ends).
let callBack = () => {};

/** Fetch the newest 20 calls; a later call supersedes an earlier one still in flight. */
export async function refreshHistory() {
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
export function scheduleHistoryRefresh() {
  const h = state.history;
  for (const t of h.timers) clearTimeout(t);
  h.timers = [300, 1500, 4000, 9000].map((ms) => setTimeout(refreshHistory, ms));
}

export function clearHistory() {
  const h = state.history;
  for (const t of h.timers) clearTimeout(t);
  h.seq++;
  h.timers = [];
  h.calls = [];
  h.loaded = false;
  h.error = null;
}

export function renderHistory() {
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
  const li = element('li', 'call-item', {
    testid: 'history-item',
    callId: call.id,
    direction: d.outgoing ? 'outgoing' : 'incoming',
    outcome: call.outcome || 'live',
    kind: call.kind,
    peerId: d.other.user_id || '',
    missed: String(d.missed),
  });
  if (d.missed) li.classList.add('missed');

  const dir = element('span', 'dir', { testid: 'history-direction' });
  dir.innerHTML = d.outgoing ? ICONS.outgoing : ICONS.incoming;
  const dirText = d.outgoing ? 'Outgoing' : 'Incoming';
  dir.title = dirText;
  dir.setAttribute('aria-label', dirText);
  dir.setAttribute('role', 'img');

  const main = element('span', 'who');
  const name = element('span', 'name', { testid: 'history-peer' });
  name.textContent = d.others.length ? d.others.map((p) => p.name).join(', ') : d.other.name;
  const meta = element('span', 'meta');
  const kind = element('span', 'kind', { testid: 'history-kind' });
  kind.innerHTML = call.kind === 'video' ? ICONS.video : ICONS.phone;
  kind.title = kindLabel(call.kind);
  kind.setAttribute('role', 'img');
  kind.setAttribute('aria-label', kindLabel(call.kind));
  const outcome = element('span', 'outcome', { testid: 'history-outcome' });
  outcome.textContent = `${dirText} · ${outcomeText(call, d)}`;
  const dur = element('span', 'duration', { testid: 'history-duration' });
  if (call.outcome === 'completed' && typeof call.duration_ms === 'number') {
    dur.textContent = fmtDuration(call.duration_ms);
    dur.dataset.ms = String(call.duration_ms);
  } else dur.hidden = true;
  const when = element('time', 'when', { testid: 'history-time' });
  when.dateTime = new Date(call.ringing_at).toISOString();
  when.title = new Date(call.ringing_at).toLocaleString();
  when.textContent = relativeTime(call.ringing_at);
  meta.append(kind, outcome, dur, when);
  main.append(name, meta);

  // Call back, same kind, if the other party is online and free.
  const actions = element('span', 'actions');
  const peer = d.other.user_id ? state.users.find((u) => u.id === d.other.user_id) : null;
  const b = element('button', `icon-button ${call.kind === 'video' ? 'video' : 'voice'}`, { testid: 'history-callback' });
  b.type = 'button';
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
    if (peer) callBack({ id: peer.id, name: peer.name }, call.kind === 'video' ? 'video' : 'voice');
  });
  actions.appendChild(b);

  li.append(dir, main, actions);

  // Files still being written are listed by the server (state "recording") but not
  // downloadable yet (409): show finished and interrupted ones.
  const recs = (Array.isArray(call.recordings) ? call.recordings : []).filter(
    (r) => r.state !== 'recording',
  );
  if (recs.length) {
    const ul = element('ul', 'recordings', { testid: 'history-recordings' });
    const nameOf = (id) => (call.participants || []).find((p) => p.user_id === id)?.name || 'Unknown';
    recs.forEach((r, i) => {
      const item = element('li', 'recording', { testid: 'history-recording', recordingId: r.id });
      const text = element('span', 'rec-text');
      text.textContent = `Recording ${i + 1}: ${nameOf(r.participant)} · ${fmtDuration(r.duration_ms || 0)} · ${fmtBytes(r.bytes)}`;
      const dl = element('button', 'link-button download', { testid: 'recording-download' });
      dl.type = 'button';
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

/** The Refresh link, the call-back action, and a timer that keeps "5 min ago" honest. */
export function wireHistory(startCall) {
  callBack = startCall;
  $('history-refresh').addEventListener('click', refreshHistory);
  // Keep "just now" / "5 min ago" honest without refetching.
  setInterval(() => {
    if (state.session && !document.hidden) renderHistory();
  }, 30_000);
}
