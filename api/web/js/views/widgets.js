// Small pieces shared by views.

import { h } from '../dom.js';
import { language, LANGUAGES, setLanguage, t } from '../i18n.js';

export function languagePicker(id) {
  const select = h('select', {
    id, class: 'lang', onchange: (ev) => setLanguage(ev.target.value, { remember: true }),
  }, LANGUAGES.map(({ code, name }) => h('option', { value: code, lang: code }, name)));
  select.value = language();
  return h('div', { class: 'lang-picker' },
    h('label', { for: id, class: 'visually-hidden' }, t('language')), select);
}

/** A titled card with an optional action area. */
export function card(title, body, { id = null, headingLevel = 2 } = {}) {
  return h('section', { class: 'card', 'aria-labelledby': id ? `${id}-title` : null, id },
    title ? h(`h${headingLevel}`, { class: 'card-title', id: id ? `${id}-title` : null }, title)
      : null,
    body);
}

export function emptyState(text, hint = '') {
  return h('div', { class: 'empty' }, h('p', { class: 'empty-text' }, text),
    hint ? h('p', { class: 'empty-hint' }, hint) : null);
}

/** Human words for an API failure. */
export function apiErrorText(err) {
  const key = `error.${err?.code}`;
  const text = t(key, { detail: err?.message || '' });
  return text === key ? (err?.message || t('error.unknown')) : text;
}
