// Call history, newest first: direction, who, when, how long; missed calls stand out and
// every row can call back.

import { avatar, h, replace } from '../dom.js';
import { formatDateTime, formatDuration, t } from '../i18n.js';
import { icon } from '../icons.js';
import { isMissed } from '../store.js';
import { apiErrorText, emptyState } from './widgets.js';

export class HistoryView {
  constructor({ history, contacts, calls, session }) {
    this.history = history;
    this.contacts = contacts;
    this.calls = calls;
    this.session = session;
    this.root = null;
    this.onlyMissed = false;
    this.onChange = () => this.drawList();
  }

  title() {
    return t('nav.history');
  }

  mount(root) {
    this.root = root;
    this.history.addEventListener('change', this.onChange);
    this.contacts.addEventListener('change', this.onChange);
    this.loaded = false;
    this.draw();
    this.refresh();
  }

  unmount() {
    this.history.removeEventListener('change', this.onChange);
    this.contacts.removeEventListener('change', this.onChange);
    this.root = null;
  }

  async refresh() {
    try {
      await this.history.refresh();
      this.loaded = true;
      this.drawList();
      this.history.markSeen();
    } catch (err) {
      const list = this.root?.querySelector('#history-list');
      if (list) {
        replace(list, h('div', { class: 'empty', role: 'alert' }, h('p', {}, apiErrorText(err)),
          h('button', { type: 'button', class: 'secondary', onclick: () => this.refresh() },
            t('action.retry'))));
      }
    }
  }

  draw() {
    replace(this.root,
      h('div', { class: 'page-head' },
        h('h1', { id: 'page-title' }, t('nav.history')),
        h('div', { class: 'segmented small', role: 'group', 'aria-label': t('history.show') },
          [false, true].map((missed) => h('button', {
            type: 'button', 'aria-pressed': String(this.onlyMissed === missed),
            onclick: () => { this.onlyMissed = missed; this.draw(); },
          }, missed ? t('history.missedOnly') : t('history.all'))))),
      h('div', { id: 'history-list', class: 'history-list' }));
    this.drawList();
  }

  drawList() {
    const list = this.root?.querySelector('#history-list');
    if (!list) return;
    if (!this.loaded) {
      replace(list, h('p', { class: 'muted loading' }, t('loading')));
      return;
    }
    const me = this.session.user.username;
    const calls = this.history.calls.filter((c) => !this.onlyMissed || isMissed(c, me));
    if (!calls.length) {
      replace(list, emptyState(this.onlyMissed ? t('history.noMissed') : t('history.empty'),
        this.onlyMissed ? '' : t('history.emptyHint')));
      return;
    }
    replace(list, h('ul', { class: 'rows' }, calls.map((c) => this.row(c, me))));
  }

  row(call, me) {
    const outgoing = call.from === me;
    const other = outgoing ? call.to : call.from;
    const hotline = other.startsWith('hotline:');
    const name = hotline ? t('hotline.name', { number: other.slice(8) })
      : (this.contacts.name(other) || other);
    const missed = isMissed(call, me);
    const kind = missed ? 'missed' : (outgoing ? 'outgoing' : 'incoming');
    const seconds = call.answered_at && call.ended_at
      ? (Date.parse(call.ended_at) - Date.parse(call.answered_at)) / 1000 : null;
    let outcome;
    if (call.state !== 'ended') outcome = t(`history.state.${call.state}`);
    else if (seconds !== null) outcome = formatDuration(seconds);
    else if (missed) outcome = t(`history.missedReason.${call.reason}`);
    else outcome = t(`history.reason.${call.reason}`);
    return h('li', { class: `row call-row ${missed ? 'missed' : ''}`, dataset: { callId: call.call_id, kind } },
      avatar(name),
      h('div', { class: 'row-text' },
        h('span', { class: 'row-title' }, name),
        h('span', { class: 'row-sub' },
          h('span', { class: `dir ${kind}` }, icon(kind), t(`history.kind.${kind}`)),
          h('span', { class: 'sep', 'aria-hidden': 'true' }, '·'),
          h('time', { datetime: call.started_at }, formatDateTime(call.started_at)),
          h('span', { class: 'sep', 'aria-hidden': 'true' }, '·'),
          h('span', { class: 'outcome' }, outcome))),
      h('div', { class: 'row-actions' },
        h('button', {
          type: 'button', class: 'call-button', dataset: { action: 'call-back' },
          'aria-label': t('history.callBack', { name }),
          onclick: () => this.calls.dial(other),
        }, icon('phone'), h('span', { 'aria-hidden': 'true' }, t('history.callBackShort')))));
  }
}
