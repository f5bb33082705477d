// The lobby's "Online now" list: who is online and free, a voice and a video button per
// person, and the group selection (tick several people, call them all from the group bar).

import { startCall } from './call.js';
import { ICONS } from './icons.js';
import { MAX_PARTICIPANTS, state } from './state.js';
import { $, element, formatNames, paintAvatar } from './ui.js';

export function renderUsers() {
  const list = $('user-list');
  const me = state.session && state.session.user.id;
  const others = state.users.filter((u) => u.id !== me);
  const inCall = !!state.call;
  const full = state.selected.size >= MAX_PARTICIPANTS - 1;
  list.replaceChildren(
    ...others.map((u) => {
      const li = element('li', 'user', { testid: 'user', userId: u.id, userName: u.name });
      // Tick several people, then call them all at once from the group bar.
      const pick = element('input', 'pick', { testid: 'select-user' });
      pick.type = 'checkbox';
      pick.setAttribute('aria-label', `Select ${u.name} for a group call`);
      pick.checked = state.selected.has(u.id);
      pick.disabled = inCall || u.busy || !state.connected || (full && !pick.checked);
      pick.title = u.busy ? `${u.name} is in a call` : pick.getAttribute('aria-label');
      pick.addEventListener('change', () => {
        if (pick.checked) state.selected.add(u.id);
        else state.selected.delete(u.id);
        renderUsers();
      });
      const av = element('span', 'avatar small');
      paintAvatar(av, u.name);
      const who = element('span', 'who');
      const name = element('span', 'name');
      name.textContent = u.name;
      const status = element('span', `status ${u.busy ? 'busy' : 'free'}`, { testid: 'user-status' });
      status.textContent = u.busy ? 'In a call' : 'Available';
      who.append(name, status);
      const actions = element('span', 'actions');
      for (const kind of ['voice', 'video']) {
        const b = element('button', `icon-button ${kind}`, { testid: `${kind}-call-button` });
        b.type = 'button';
        const label = `${kind === 'voice' ? 'Voice' : 'Video'} call ${u.name}`;
        b.title = label;
        b.setAttribute('aria-label', label);
        b.innerHTML = kind === 'voice' ? ICONS.phone : ICONS.video;
        b.disabled = inCall || u.busy || !state.connected;
        b.addEventListener('click', () => startCall([{ id: u.id, name: u.name }], kind));
        actions.appendChild(b);
      }
      li.append(pick, av, who, actions);
      return li;
    }),
  );
  $('no-users').hidden = others.length > 0;

  // The group bar: who is ticked, and one button per kind to call them all.
  const picked = selectedUsers();
  const bar = $('group-bar');
  bar.hidden = picked.length === 0;
  $('group-count').textContent = `${picked.length} selected: ${formatNames(picked.map((u) => u.name))}`;
  for (const kind of ['voice', 'video']) {
    const b = $(`group-${kind}-call`);
    b.disabled = inCall || !state.connected || picked.length === 0;
    const label = `${kind === 'voice' ? 'Voice' : 'Video'} call ${picked.length} ${picked.length === 1 ? 'person' : 'people'}`;
    b.setAttribute('aria-label', label);
    b.title = label;
  }
}

/** The ticked users who are still online and free, in list order. */
function selectedUsers() {
  return state.users.filter((u) => state.selected.has(u.id) && !u.busy);
}

/** Drop ticks for users who went offline or busy. */
export function pruneSelection() {
  for (const id of [...state.selected]) {
    const u = state.users.find((x) => x.id === id);
    if (!u || u.busy) state.selected.delete(id);
  }
}

export function wireLobby() {
  $('group-clear').addEventListener('click', () => {
    state.selected.clear();
    renderUsers();
  });
  for (const kind of ['voice', 'video']) {
    $(`group-${kind}-call`).addEventListener('click', () => {
      const peers = selectedUsers().map((u) => ({ id: u.id, name: u.name }));
      if (peers.length) startCall(peers, kind);
    });
  }
}
