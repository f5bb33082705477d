// Call history over HTTP (docs/protocol.md §9): the user's recent calls and recording
// downloads. Every request carries `Authorization: Bearer <token>`; a plain `<a href>` cannot,
// so recordings are fetched here and handed to the browser as a blob URL.

/** An Error with `.status` and `.code` from the API's `{"error": {code, message}}` body. */
async function apiError(res) {
  let info = {};
  try {
    info = ((await res.json()) || {}).error || {};
  } catch {
    /* not JSON */
  }
  const e = new Error(info.message || `HTTP ${res.status}`);
  e.status = res.status;
  e.code = info.code || `http_${res.status}`;
  return e;
}

/** GET /api/calls?limit= → the newest `limit` calls the user took part in. */
export async function fetchCalls(token, limit = 20) {
  const res = await fetch(`/api/calls?limit=${encodeURIComponent(limit)}`, {
    headers: { authorization: `Bearer ${token}` },
    cache: 'no-store',
  });
  if (!res.ok) throw await apiError(res);
  const body = await res.json();
  return Array.isArray(body && body.calls) ? body.calls : [];
}

/** Download recording `id` (GET /api/recordings/{id}) and save it as `filename`. */
export async function downloadRecording(token, id, filename) {
  const res = await fetch(`/api/recordings/${encodeURIComponent(id)}`, {
    headers: { authorization: `Bearer ${token}` },
  });
  if (!res.ok) throw await apiError(res);
  const blob = await res.blob();
  const url = URL.createObjectURL(blob);
  const a = document.createElement('a');
  a.href = url;
  a.download = filename;
  a.hidden = true;
  document.body.appendChild(a);
  a.click();
  a.remove();
  // The download has started from the blob; free it a little later.
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
  return blob.size;
}

/**
 * How a call looks from `myId`'s side: direction, the other party, whether it was missed.
 * A call I did not pick up (rang out, or the caller gave up while it rang) is a missed call.
 */
export function describeCall(call, myId) {
  const parts = Array.isArray(call.participants) ? call.participants : [];
  const outgoing = call.created_by === myId;
  const others = parts.filter((p) => p.user_id !== myId);
  const other = others[0] || { user_id: null, name: 'Unknown' };
  const outcome = call.outcome || null;
  const missed = !outgoing && (outcome === 'missed' || outcome === 'no_answer' || outcome === 'cancelled');
  return { outgoing, other, others, outcome, missed };
}

/** A user-facing word for the outcome, from my side of the call. */
export function outcomeText(call, d) {
  switch (d.outcome) {
    case null:
      return call.answered_at ? 'In progress' : 'Ringing';
    case 'completed':
      return 'Completed';
    case 'missed':
    case 'no_answer':
      return d.outgoing ? 'No answer' : 'Missed';
    case 'rejected':
      return d.outgoing ? 'Declined' : 'You declined';
    case 'cancelled':
      return d.outgoing ? 'Cancelled' : 'Missed';
    case 'failed':
      return 'Failed';
    default:
      return String(d.outcome);
  }
}

/** "just now", "5 min ago", "3 h ago", else the local date and time. */
export function relativeTime(ms, now = Date.now()) {
  const s = Math.round((now - ms) / 1000);
  if (s < 45) return 'just now';
  if (s < 3600) return `${Math.max(1, Math.round(s / 60))} min ago`;
  if (s < 6 * 3600) return `${Math.round(s / 3600)} h ago`;
  return new Date(ms).toLocaleString([], { dateStyle: 'medium', timeStyle: 'short' });
}

export function fmtBytes(n) {
  if (!(n >= 0)) return '';
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(0)} KB`;
  return `${(n / 1024 / 1024).toFixed(1)} MB`;
}
