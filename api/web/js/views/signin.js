// Sign in / create an account.

import { h, replace } from '../dom.js';
import { t } from '../i18n.js';
import { apiErrorText, languagePicker } from './widgets.js';

export function renderSignIn(root, { api, onSignedIn, message = '' }) {
  let mode = 'signin';
  let notice = message;

  function field(id, label, attrs) {
    return h('div', { class: 'field' },
      h('label', { for: id }, label),
      h('input', { id, name: id, ...attrs }));
  }

  function draw() {
    const signUp = mode === 'signup';
    const error = h('p', { id: 'auth-error', class: 'form-error', role: 'alert' }, notice);
    const form = h('form', { class: 'auth-form', novalidate: true, 'aria-describedby': 'auth-error' },
      field('username', t('auth.username'), {
        autocomplete: 'username', required: true, maxlength: 64, autocapitalize: 'none',
        spellcheck: 'false',
      }),
      field('password', t('auth.password'), {
        type: 'password', autocomplete: signUp ? 'new-password' : 'current-password',
        required: true, maxlength: 256,
      }),
      signUp ? field('display_name', t('auth.displayName'), {
        autocomplete: 'nickname', maxlength: 128,
      }) : null,
      h('label', { class: 'check' },
        h('input', { type: 'checkbox', name: 'remember', id: 'remember' }),
        h('span', {}, t('auth.remember'))),
      error,
      h('button', { type: 'submit', class: 'primary wide' },
        signUp ? t('auth.createAccount') : t('auth.signIn')));

    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const data = new FormData(form);
      const username = String(data.get('username') || '').trim();
      const password = String(data.get('password') || '');
      if (!username || !password) {
        error.textContent = t('auth.missing');
        form.querySelector(username ? '#password' : '#username').focus();
        return;
      }
      const submit = form.querySelector('button[type=submit]');
      submit.disabled = true;
      submit.setAttribute('aria-busy', 'true');
      error.textContent = '';
      try {
        if (signUp) {
          await api.signUp(username, password, String(data.get('display_name') || '').trim());
        }
        const session = await api.logIn(username, password);
        await onSignedIn(session, data.get('remember') === 'on');
      } catch (err) {
        error.textContent = apiErrorText(err);
        submit.disabled = false;
        submit.removeAttribute('aria-busy');
        form.querySelector('#username').focus();
      }
    });

    replace(root,
      h('div', { class: 'auth-page' },
        h('div', { class: 'auth-top' }, languagePicker('auth-lang')),
        h('main', { class: 'auth-card', id: 'auth-main', tabindex: '-1' },
          h('div', { class: 'brand big' }, h('span', { class: 'logo', 'aria-hidden': 'true' }),
            h('span', {}, 'Chorus')),
          h('p', { class: 'tagline' }, t('auth.tagline')),
          h('div', { class: 'segmented', role: 'group', 'aria-label': t('auth.mode') },
            ['signin', 'signup'].map((m) => h('button', {
              type: 'button', id: `tab-${m}`, 'aria-pressed': String(mode === m),
              'aria-controls': 'auth-panel',
              onclick: () => {
                mode = m;
                notice = '';
                draw();
                root.querySelector(`#tab-${m}`).focus();
              },
            }, m === 'signin' ? t('auth.signIn') : t('auth.createAccount')))),
          h('div', { id: 'auth-panel' },
            h('h1', { class: 'visually-hidden' },
              signUp ? t('auth.createAccount') : t('auth.signIn')),
            form))));
  }

  draw();
  root.hidden = false;
  const onLanguage = () => { if (!root.hidden) draw(); };
  document.addEventListener('chorus:language', onLanguage);
  root.querySelector('#username').focus();
  return () => {
    document.removeEventListener('chorus:language', onLanguage);
    root.hidden = true;
    root.replaceChildren();
  };
}
