// Small DOM helpers. Every string goes into the page as text (Text nodes, textContent,
// setAttribute), never as HTML: the server's CSP enforces Trusted Types, so an HTML string
// sink would throw anyway.

/**
 * h('button', {class: 'primary', type: 'button', onclick: fn}, 'Call', icon)
 * Props: `class`, `text`, `dataset`, `hidden`, `on<event>` (functions only), other attributes.
 */
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  setProps(el, props);
  append(el, children);
  return el;
}

export function setProps(el, props) {
  for (const [key, value] of Object.entries(props || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith('on')) {
      if (typeof value !== 'function') throw new TypeError(`${key} must be a function`);
      el.addEventListener(key.slice(2), value);
    } else if (key === 'class') {
      el.className = value;
    } else if (key === 'text') {
      el.textContent = value;
    } else if (key === 'dataset') {
      Object.assign(el.dataset, value);
    } else if (key === 'hidden') {
      el.hidden = true;
    } else if (key === 'value') {
      el.value = value;
    } else if (key === 'checked') {
      el.checked = true;
    } else {
      el.setAttribute(key, value === true ? '' : String(value));
    }
  }
}

export function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

/** Replaces every child of `el` with `children`. */
export function replace(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

/** Two-letter initials for an avatar, from a display name or username. */
export function initials(name) {
  const words = String(name || '?').trim().split(/\s+/).filter(Boolean);
  const letters = words.length > 1 ? [words[0], words[words.length - 1]] : [words[0] || '?'];
  return letters.map((w) => Array.from(w)[0]).join('').toUpperCase();
}

/** A stable hue for a name, so each person keeps their avatar colour. */
export function hue(name) {
  let hash = 0;
  for (const ch of String(name)) hash = (hash * 31 + ch.codePointAt(0)) >>> 0;
  return hash % 360;
}

export function avatar(name, size = '') {
  const el = h('span', { class: `avatar ${size}`.trim(), 'aria-hidden': 'true' }, initials(name));
  el.style.setProperty('--hue', String(hue(name)));
  return el;
}

let announcer = null;

/** Says `message` to screen readers (an assertive live region). */
export function announce(message) {
  announcer = announcer || document.getElementById('announcer');
  if (!announcer) return;
  announcer.textContent = '';
  // A separate task, so the same message twice in a row is still read out.
  setTimeout(() => { announcer.textContent = message; }, 50);
}

/** Short-lived message at the bottom of the screen; `action` is {label, run}. */
export function toast(message, { kind = 'info', action = null, timeoutMs = 6000 } = {}) {
  const region = document.getElementById('toasts');
  if (!region) return () => {};
  const close = () => item.remove();
  const item = h('div', { class: `toast ${kind}`, role: kind === 'error' ? 'alert' : 'status' },
    h('span', { class: 'toast-text' }, message));
  if (action) {
    item.append(h('button', {
      type: 'button', class: 'link', onclick: () => { close(); action.run(); },
    }, action.label));
  }
  item.append(h('button', {
    type: 'button', class: 'toast-close', 'aria-label': action?.closeLabel || '×', onclick: close,
  }, '×'));
  region.append(item);
  if (timeoutMs) setTimeout(close, timeoutMs);
  return close;
}
