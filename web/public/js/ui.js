// Small DOM and text helpers shared by every view: element lookup by data-testid and creation,
// avatars, toggle buttons, durations, name lists, toasts and the banner above the lobby.

export const $ = (id) => document.querySelector(`[data-testid="${id}"]`);

/** A new `tag` element with its class and `data-*` attributes (`{testid: 'user'}` → data-testid). */
export function element(tag, className, data = {}) {
  const el = document.createElement(tag);
  el.className = className;
  Object.assign(el.dataset, data);
  return el;
}

function initials(name) {
  const parts = String(name || '?').trim().split(/\s+/).filter(Boolean);
  const s = parts.length > 1 ? parts[0][0] + parts[parts.length - 1][0] : (parts[0] || '?').slice(0, 2);
  return s.toUpperCase();
}

/** A stable hue per name so avatars are told apart at a glance. */
function hue(text) {
  let h = 0;
  for (const ch of String(text)) h = (h * 31 + ch.codePointAt(0)) % 360;
  return h;
}

export function paintAvatar(el, name) {
  el.textContent = initials(name);
  el.style.setProperty('--avatar-hue', String(hue(name)));
  el.title = name;
}

export function fmtDuration(ms) {
  const total = Math.max(0, Math.floor(ms / 1000));
  const m = Math.floor(total / 60);
  const s = total % 60;
  return `${String(m).padStart(2, '0')}:${String(s).padStart(2, '0')}`;
}

export function kindLabel(kind) {
  return kind === 'video' ? 'Video call' : 'Voice call';
}

/** "Bob", "Bob and Carol", "Bob, Carol and Dave", "Bob, Carol and 3 others". */
export function formatNames(names) {
  if (names.length <= 1) return names[0] || '';
  if (names.length <= 3) return `${names.slice(0, -1).join(', ')} and ${names[names.length - 1]}`;
  return `${names.slice(0, 2).join(', ')} and ${names.length - 2} others`;
}

/**
 * A call control that toggles: aria-pressed, and from `faces.on` (pressed) or `faces.off` its
 * accessible name (the tooltip too), icon and caption.
 */
export function paintToggle(button, pressed, faces) {
  const face = pressed ? faces.on : faces.off;
  button.setAttribute('aria-pressed', String(pressed));
  button.setAttribute('aria-label', face.label);
  button.title = face.label;
  button.querySelector('[data-icon]').innerHTML = face.icon;
  button.querySelector('.label').textContent = face.text;
}

export function toast(message, level = 'error') {
  const el = element('div', `toast ${level}`, { testid: 'toast' });
  el.setAttribute('role', level === 'error' ? 'alert' : 'status');
  el.textContent = message;
  $('toasts').appendChild(el);
  setTimeout(() => el.classList.add('leaving'), 5500);
  setTimeout(() => el.remove(), 6000);
}

/** The persistent banner above the lobby: last call outcome or a problem. */
export function notice(message, level = 'info') {
  const box = $('notice');
  if (!message) {
    box.hidden = true;
    return;
  }
  box.dataset.level = level;
  $('notice-text').textContent = message;
  box.hidden = false;
}
