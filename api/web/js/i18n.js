// Translations: JSON dictionaries under /app/i18n/, English as the fallback. The language
// follows the browser unless the person picked one (kept in localStorage).

export const LANGUAGES = [
  { code: 'en', name: 'English' },
  { code: 'zh-CN', name: '中文' },
];
const KEY = 'chorus.lang';
const dictionaries = {};
let current = 'en';

export function preferredLanguage() {
  const saved = localStorage.getItem(KEY);
  if (LANGUAGES.some((l) => l.code === saved)) return saved;
  for (const tag of navigator.languages?.length ? navigator.languages : [navigator.language]) {
    if (/^zh\b/i.test(tag || '')) return 'zh-CN';
    if (/^en\b/i.test(tag || '')) return 'en';
  }
  return 'en';
}

async function load(code) {
  if (!dictionaries[code]) {
    const response = await fetch(`/app/i18n/${code}.json`);
    if (!response.ok) throw new Error(`no translation ${code}`);
    dictionaries[code] = await response.json();
  }
  return dictionaries[code];
}

/** Loads the language and translates the static page; listeners of 'chorus:language' redraw. */
export async function setLanguage(code, { remember = false } = {}) {
  await load('en');
  try {
    await load(code);
  } catch {
    code = 'en';
  }
  current = code;
  if (remember) localStorage.setItem(KEY, code);
  document.documentElement.lang = code;
  translatePage(document);
  document.dispatchEvent(new CustomEvent('chorus:language', { detail: code }));
}

export function language() {
  return current;
}

/** The text for `key`, with {name} placeholders filled from `params` (as plain text). */
export function t(key, params = {}) {
  const text = dictionaries[current]?.[key] ?? dictionaries.en?.[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (m, name) => (name in params ? String(params[name]) : m));
}

/** Translates elements marked data-i18n (text), data-i18n-label (aria-label), -placeholder. */
export function translatePage(root) {
  for (const el of root.querySelectorAll('[data-i18n]')) el.textContent = t(el.dataset.i18n);
  for (const el of root.querySelectorAll('[data-i18n-label]')) {
    el.setAttribute('aria-label', t(el.dataset.i18nLabel));
  }
  for (const el of root.querySelectorAll('[data-i18n-placeholder]')) {
    el.setAttribute('placeholder', t(el.dataset.i18nPlaceholder));
  }
  const title = document.querySelector('title[data-i18n]');
  if (title) document.title = title.textContent;
}

export function formatDateTime(iso) {
  const date = new Date(iso);
  const now = new Date();
  const sameDay = date.toDateString() === now.toDateString();
  const options = sameDay
    ? { hour: '2-digit', minute: '2-digit' }
    : { month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit' };
  return new Intl.DateTimeFormat(current, options).format(date);
}

/** 75 -> "1:15", 3725 -> "1:02:05". */
export function formatDuration(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  const parts = [Math.floor(s / 3600), Math.floor((s % 3600) / 60), s % 60];
  const pad = (n) => String(n).padStart(2, '0');
  return parts[0] ? `${parts[0]}:${pad(parts[1])}:${pad(parts[2])}` : `${parts[1]}:${pad(parts[2])}`;
}
