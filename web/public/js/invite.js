// "Add people" during a call: the Add button, the panel listing the online users who are free
// and not in the call yet, and invite_participant (protocol.md §7.1).

import { MAX_PARTICIPANTS, render, state } from './state.js';
import { $, element, paintAvatar, toast } from './ui.js';

/** The Add button and, while it is open, the panel. */
export function renderInvite(c) {
  const add = $('add-participant');
  const size = 1 + c.remote.size + [...c.ringing.keys()].filter((id) => !c.remote.has(id)).length;
  add.disabled = !c.id || !(c.phase === 'active' || (c.phase === 'calling' && c.role === 'caller'));
  add.setAttribute('aria-expanded', String(!!c.inviteOpen));
  add.title = size >= MAX_PARTICIPANTS ? `The call is full (${MAX_PARTICIPANTS} people)` : 'Add someone to this call';
  renderInvitePanel(c, size, add.disabled);
}

/** "Add people": online users who are free and not in this call yet. */
function renderInvitePanel(c, size, disabled) {
  const panel = $('invite-panel');
  const open = !!c.inviteOpen && !disabled;
  panel.hidden = !open;
  if (!open) return;
  const me = state.session.user.id;
  const free = state.users.filter((u) => u.id !== me && !u.busy && !c.remote.has(u.id) && !c.ringing.has(u.id));
  const full = size >= MAX_PARTICIPANTS;
  $('invite-empty').hidden = free.length > 0;
  $('invite-full').hidden = !full;
  $('invite-list').replaceChildren(
    ...free.map((u) => {
      const li = element('li', 'user', { testid: 'invite-user', userId: u.id });
      const av = element('span', 'avatar small');
      paintAvatar(av, u.name);
      const name = element('span', 'who name');
      name.textContent = u.name;
      const b = element('button', 'primary small', { testid: 'invite-button' });
      b.type = 'button';
      b.textContent = 'Add';
      b.setAttribute('aria-label', `Add ${u.name} to the call`);
      b.disabled = full || c.inviting.has(u.id);
      b.addEventListener('click', () => inviteParticipant(c, u));
      li.append(av, name, b);
      return li;
    }),
  );
}

/** Any joined participant adds someone (invite_participant, protocol.md §7.1). */
async function inviteParticipant(call, user) {
  if (state.call !== call || !call.id || call.inviting.has(user.id)) return;
  call.inviting.add(user.id);
  render();
  try {
    await state.signaling.request('invite_participant', { call_id: call.id, user_id: user.id });
    // participant_invited follows; show the tile now in case it is slow.
    if (state.call === call && !call.remote.has(user.id)) call.ringing.set(user.id, { name: user.name });
  } catch (e) {
    if (state.call === call) toast(inviteErrorText(e, user));
  } finally {
    call.inviting.delete(user.id);
    if (state.call === call) render();
  }
}

function inviteErrorText(e, user) {
  switch (e.code) {
    case 'busy':
      return `${user.name} is busy in another call.`;
    case 'user_offline':
      return `${user.name} is offline.`;
    case 'limit_exceeded':
      return `The call is full: ${user.name} cannot be added.`;
    case 'missing_grant':
      return `You are not allowed to add people to calls (${e.code}).`;
    default:
      return `Could not add ${user.name}: ${e.message} (${e.code})`;
  }
}
