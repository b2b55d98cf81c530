// Contacts: add (with a group), filter, call, remove; your phone number and finding people
// from an address book by number.

import { avatar, h, replace, toast } from '../dom.js';
import { t } from '../i18n.js';
import { icon } from '../icons.js';
import { apiErrorText, card, emptyState } from './widgets.js';

export class ContactsView {
  constructor({ api, contacts, calls, session, onProfile }) {
    this.api = api;
    this.contacts = contacts;
    this.calls = calls;
    this.session = session;
    this.onProfile = onProfile;
    this.filter = '';
    this.confirming = null; // username whose removal asks for confirmation
    this.matches = null;
    this.root = null;
    this.onChange = () => this.drawList();
  }

  title() {
    return t('nav.contacts');
  }

  mount(root) {
    this.root = root;
    this.contacts.addEventListener('change', this.onChange);
    this.draw();
    this.contacts.refresh().catch((err) => this.showListError(err));
  }

  unmount() {
    this.contacts.removeEventListener('change', this.onChange);
    this.root = null;
  }

  draw() {
    const root = this.root;
    if (!root) return;
    replace(root,
      h('div', { class: 'page-head' },
        h('h1', { id: 'page-title' }, t('nav.contacts')),
        h('div', { class: 'search' },
          icon('search'),
          h('label', { for: 'contact-filter', class: 'visually-hidden' }, t('contacts.filter')),
          h('input', {
            id: 'contact-filter', type: 'search', placeholder: t('contacts.filter'),
            value: this.filter, autocomplete: 'off',
            oninput: (ev) => { this.filter = ev.target.value; this.drawList(); },
          }))),
      h('div', { class: 'columns' },
        h('div', { class: 'col-main' },
          h('div', { id: 'contact-list', class: 'contact-list' })),
        h('div', { class: 'col-side' }, this.addForm(), this.profile())));
    this.drawList();
  }

  addForm() {
    const error = h('p', { class: 'form-error', role: 'alert', id: 'add-error' });
    const groups = h('datalist', { id: 'group-options' },
      this.contacts.groups().map((g) => h('option', { value: g })));
    const form = h('form', { class: 'stack', novalidate: true, 'aria-describedby': 'add-error' },
      h('div', { class: 'field' },
        h('label', { for: 'add-username' }, t('contacts.username')),
        h('input', {
          id: 'add-username', name: 'username', required: true, maxlength: 64,
          autocomplete: 'off', autocapitalize: 'none', spellcheck: 'false',
        })),
      h('div', { class: 'field' },
        h('label', { for: 'add-group' }, t('contacts.group')),
        h('input', {
          id: 'add-group', name: 'group', maxlength: 64, list: 'group-options',
          placeholder: t('contacts.groupHint'), autocomplete: 'off',
        }), groups),
      error,
      h('button', { type: 'submit', class: 'primary' }, icon('userPlus'), t('contacts.add')));
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const data = new FormData(form);
      const username = String(data.get('username') || '').trim();
      if (!username) {
        error.textContent = t('contacts.needUsername');
        form.querySelector('#add-username').focus();
        return;
      }
      error.textContent = '';
      try {
        const added = await this.api.addContact(username, String(data.get('group') || '').trim());
        form.reset();
        await this.contacts.refresh();
        toast(t('contacts.added', { name: added.display_name || added.username }));
        this.root?.querySelector('#add-username')?.focus();
      } catch (err) {
        error.textContent = apiErrorText(err);
        form.querySelector('#add-username').focus();
      }
    });
    return card(t('contacts.addTitle'), form, { id: 'add-contact' });
  }

  profile() {
    const user = this.session.user;
    const status = h('p', { class: 'form-status', role: 'status' });
    const phoneForm = h('form', { class: 'inline-form', novalidate: true },
      h('div', { class: 'field grow' },
        h('label', { for: 'my-phone' }, t('profile.phone')),
        h('input', {
          id: 'my-phone', name: 'phone', type: 'tel', autocomplete: 'tel', maxlength: 32,
          value: user.phone || '', placeholder: '+86 138 0013 8000',
        })),
      h('button', { type: 'submit', class: 'secondary' }, t('profile.save')));
    phoneForm.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const phone = String(new FormData(phoneForm).get('phone') || '').trim();
      try {
        const updated = await this.api.updateMe({ phone });
        this.onProfile(updated);
        phoneForm.querySelector('#my-phone').value = updated.phone || '';
        status.textContent = updated.phone ? t('profile.saved', { phone: updated.phone })
          : t('profile.removed');
      } catch (err) {
        status.textContent = apiErrorText(err);
      }
    });

    const results = h('div', { class: 'match-results', 'aria-live': 'polite' });
    const matchForm = h('form', { class: 'stack', novalidate: true },
      h('div', { class: 'field' },
        h('label', { for: 'match-phones' }, t('match.label')),
        h('textarea', {
          id: 'match-phones', name: 'phones', rows: 3, placeholder: t('match.placeholder'),
        })),
      h('button', { type: 'submit', class: 'secondary' }, icon('search'), t('match.find')),
      results);
    matchForm.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const phones = String(new FormData(matchForm).get('phones') || '')
        .split(/[\n,;]+/).map((p) => p.trim()).filter(Boolean).slice(0, 500);
      if (!phones.length) {
        replace(results, h('p', { class: 'form-error' }, t('match.none')));
        return;
      }
      try {
        const { matches } = await this.api.matchPhones(phones);
        this.drawMatches(results, matches);
      } catch (err) {
        replace(results, h('p', { class: 'form-error', role: 'alert' }, apiErrorText(err)));
      }
    });
    return card(t('profile.title'), h('div', { class: 'stack' },
      h('p', { class: 'muted' }, t('profile.signedInAs', {
        name: user.display_name || user.username, username: user.username,
      })),
      phoneForm, status, matchForm), { id: 'profile' });
  }

  drawMatches(results, matches) {
    const me = this.session.user.username;
    const found = matches.filter((m) => m.username !== me);
    if (!found.length) {
      replace(results, h('p', { class: 'muted' }, t('match.noResults')));
      return;
    }
    replace(results, h('ul', { class: 'plain' }, found.map((m) => {
      const known = this.contacts.byUsername.has(m.username);
      return h('li', { class: 'match' },
        h('span', {}, `${m.phone} → @${m.username}`),
        known ? h('span', { class: 'muted' }, t('match.already')) : h('button', {
          type: 'button', class: 'link',
          onclick: async (ev) => {
            try {
              await this.api.addContact(m.username);
              await this.contacts.refresh();
              ev.target.replaceWith(h('span', { class: 'muted' }, t('match.already')));
            } catch (err) {
              toast(apiErrorText(err), { kind: 'error' });
            }
          },
        }, t('match.add', { username: m.username })));
    })));
  }

  showListError(err) {
    const list = this.root?.querySelector('#contact-list');
    if (!list) return;
    replace(list, h('div', { class: 'empty', role: 'alert' },
      h('p', {}, apiErrorText(err)),
      h('button', {
        type: 'button', class: 'secondary',
        onclick: () => this.contacts.refresh().catch((e) => this.showListError(e)),
      }, t('action.retry'))));
  }

  drawList() {
    const list = this.root?.querySelector('#contact-list');
    if (!list) return;
    const options = this.root.querySelector('#group-options');
    if (options) replace(options, this.contacts.groups().map((g) => h('option', { value: g })));
    if (!this.contacts.loaded) {
      replace(list, h('p', { class: 'muted loading' }, t('loading')));
      return;
    }
    if (!this.contacts.list.length) {
      replace(list, emptyState(t('contacts.empty'), t('contacts.emptyHint')));
      return;
    }
    const needle = this.filter.trim().toLocaleLowerCase();
    const shown = this.contacts.list.filter((c) => !needle
      || c.username.toLocaleLowerCase().includes(needle)
      || (c.display_name || '').toLocaleLowerCase().includes(needle)
      || (c.group || '').toLocaleLowerCase().includes(needle));
    if (!shown.length) {
      replace(list, emptyState(t('contacts.noMatch')));
      return;
    }
    const byGroup = new Map();
    for (const c of shown) {
      const key = c.group || '';
      if (!byGroup.has(key)) byGroup.set(key, []);
      byGroup.get(key).push(c);
    }
    const keys = [...byGroup.keys()].sort((a, b) => (a === '') - (b === '') || a.localeCompare(b));
    replace(list, keys.map((group) => h('section', { class: 'group' },
      h('h2', { class: 'group-title' }, group || t('contacts.noGroup'),
        h('span', { class: 'count' }, String(byGroup.get(group).length))),
      h('ul', { class: 'rows' }, byGroup.get(group).map((c) => this.row(c))))));
  }

  row(contact) {
    const name = contact.display_name || contact.username;
    const confirming = this.confirming === contact.username;
    const actions = confirming
      ? [
        h('span', { class: 'confirm-text' }, t('contacts.confirmRemove', { name })),
        h('button', {
          type: 'button', class: 'danger small', dataset: { action: 'confirm-remove' },
          onclick: () => this.remove(contact),
        }, t('contacts.remove')),
        h('button', {
          type: 'button', class: 'secondary small', dataset: { action: 'cancel-remove' },
          onclick: () => { this.confirming = null; this.drawList(); this.focusRow(contact); },
        }, t('action.cancel')),
      ]
      : [
        h('button', {
          type: 'button', class: 'call-button', dataset: { action: 'call' },
          'aria-label': t('contacts.callName', { name }),
          onclick: () => this.calls.dial(contact.username),
        }, icon('phone'), h('span', { 'aria-hidden': 'true' }, t('contacts.call'))),
        h('button', {
          type: 'button', class: 'icon-button', dataset: { action: 'remove' },
          'aria-label': t('contacts.removeName', { name }),
          title: t('contacts.removeName', { name }),
          onclick: () => {
            this.confirming = contact.username;
            this.drawList();
            this.root.querySelector('[data-action="confirm-remove"]')?.focus();
          },
        }, icon('trash')),
      ];
    return h('li', { class: 'row contact', dataset: { username: contact.username } },
      avatar(name),
      h('div', { class: 'row-text' },
        h('span', { class: 'row-title' }, name),
        h('span', { class: 'row-sub' }, `@${contact.username}`)),
      h('div', { class: 'row-actions' }, actions));
  }

  focusRow(contact) {
    const row = [...this.root.querySelectorAll('li.contact')]
      .find((li) => li.dataset.username === contact.username);
    row?.querySelector('[data-action="remove"]')?.focus();
  }

  async remove(contact) {
    try {
      await this.api.removeContact(contact.username);
      this.confirming = null;
      await this.contacts.refresh();
      toast(t('contacts.removed', { name: contact.display_name || contact.username }));
      this.root?.querySelector('#contact-filter')?.focus();
    } catch (err) {
      toast(apiErrorText(err), { kind: 'error' });
    }
  }
}
