// The info hotline: the server's hotlines (what their menu says first), dial one or any
// number; its menu is driven from the call screen's keypad. And the operator desk: answer
// the callers of a queue, available or away. Shown only when the server has hotlines
// (GET /v1/hotlines in its OpenAPI document).

import { h, replace, toast } from '../dom.js';
import { t } from '../i18n.js';
import { icon } from '../icons.js';
import { DEFAULT_QUEUE, validQueueName } from '../agent.js';
import { apiErrorText, card, emptyState } from './widgets.js';

const NUMBER = /^[0-9A-Za-z*#+_.-]{1,32}$/;

export class HotlineView {
  constructor({ api, calls, agent }) {
    this.api = api;
    this.calls = calls;
    this.agent = agent;
    this.root = null;
    this.hotlines = null;
    this.onAgent = () => this.drawDesk();
  }

  title() {
    return t('nav.hotline');
  }

  mount(root) {
    this.root = root;
    this.agent.addEventListener('change', this.onAgent);
    const error = h('p', { class: 'form-error', role: 'alert', id: 'hotline-error' });
    const form = h('form', { class: 'inline-form', novalidate: true, id: 'hotline-form' },
      h('div', { class: 'field grow' },
        h('label', { for: 'hotline-number' }, t('hotline.number')),
        h('input', {
          id: 'hotline-number', name: 'number', inputmode: 'tel', maxlength: 32,
          autocomplete: 'off', 'aria-describedby': 'hotline-error',
        })),
      h('button', { type: 'submit', class: 'primary' }, icon('phone'), t('hotline.dial')));
    form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      const number = String(new FormData(form).get('number') || '').trim();
      if (!NUMBER.test(number)) {
        error.textContent = t('hotline.badNumber');
        form.querySelector('input').focus();
        return;
      }
      error.textContent = '';
      this.calls.dial(`hotline:${number}`);
    });
    replace(root,
      h('div', { class: 'page-head' }, h('h1', { id: 'page-title' }, t('nav.hotline'))),
      h('div', { class: 'columns' },
        h('div', { class: 'col-main stack-lg' },
          card(t('hotline.title'), h('div', { class: 'stack' },
            h('p', { class: 'muted' }, t('hotline.help')),
            h('div', { id: 'hotline-list', 'aria-live': 'polite' },
              h('p', { class: 'muted loading' }, t('loading'))),
            form, error), { id: 'hotline-dial' })),
        h('div', { class: 'col-side' },
          card(t('desk.title'), h('div', { id: 'desk', class: 'stack' }), { id: 'desk-card' }))));
    this.drawDesk();
    this.loadHotlines();
  }

  unmount() {
    this.agent.removeEventListener('change', this.onAgent);
    this.root = null;
  }

  async loadHotlines() {
    try {
      this.hotlines = await this.api.hotlines();
    } catch (err) {
      this.hotlines = { error: err };
    }
    this.drawHotlines();
  }

  drawHotlines() {
    const box = this.root?.querySelector('#hotline-list');
    if (!box) return;
    const list = this.hotlines;
    if (list?.error) {
      replace(box, h('p', { class: 'form-error', role: 'alert' }, apiErrorText(list.error)));
      return;
    }
    if (!list.length) {
      replace(box, emptyState(t('hotline.none')));
      return;
    }
    replace(box, h('ul', { class: 'rows compact' }, list.map((line) => {
      const menu = line.menu || {};
      const name = typeof menu.name === 'string' && menu.name ? menu.name
        : t('hotline.name', { number: line.number });
      const first = menu.menus?.[menu.start]?.prompt?.say;
      return h('li', { class: 'row hotline', dataset: { number: line.number } },
        h('span', { class: 'hotline-number', 'aria-hidden': 'true' }, line.number),
        h('div', { class: 'row-text' },
          h('span', { class: 'row-title' }, name),
          typeof first === 'string' ? h('span', { class: 'row-sub' }, first) : null),
        h('div', { class: 'row-actions' },
          h('button', {
            type: 'button', class: 'call-button', dataset: { action: 'dial' },
            'aria-label': t('hotline.dialName', { number: line.number, name }),
            onclick: () => this.calls.dial(`hotline:${line.number}`),
          }, icon('phone'), h('span', { 'aria-hidden': 'true' }, t('hotline.dial')))));
    })));
  }

  // --------------------------------------------------------------------- operator desk

  drawDesk() {
    const box = this.root?.querySelector('#desk');
    if (!box) return;
    const agent = this.agent;
    const status = h('p', { class: 'form-error', role: 'alert', id: 'desk-error' });
    if (!agent.isAgent) {
      const form = h('form', { class: 'inline-form', novalidate: true, id: 'queue-join' },
        h('div', { class: 'field grow' },
          h('label', { for: 'queue-name' }, t('desk.queue')),
          h('input', {
            id: 'queue-name', name: 'queue', value: DEFAULT_QUEUE, maxlength: 64,
            autocomplete: 'off', autocapitalize: 'none', spellcheck: 'false',
            'aria-describedby': 'desk-error',
          })),
        h('button', { type: 'submit', class: 'secondary' }, icon('headset'), t('desk.join')));
      form.addEventListener('submit', async (ev) => {
        ev.preventDefault();
        const name = String(new FormData(form).get('queue') || '').trim();
        if (!validQueueName(name)) {
          status.textContent = t('desk.badQueue');
          form.querySelector('input').focus();
          return;
        }
        try {
          await agent.join(name);
          toast(t('desk.joined', { queue: name }));
          this.root?.querySelector('#agent-toggle [data-state="available"]')?.focus();
        } catch (err) {
          status.textContent = apiErrorText(err);
        }
      });
      replace(box, h('p', { class: 'muted' }, t('desk.help')), form, status);
      return;
    }
    const state = agent.state || 'away';
    const choice = (value, label) => h('button', {
      type: 'button', dataset: { state: value }, 'aria-pressed': String(state === value),
      onclick: async () => {
        if (state === value) return;
        try {
          await agent.setState(value);
        } catch (err) {
          const line = this.root?.querySelector('#desk-error');
          if (line) line.textContent = apiErrorText(err);
        }
      },
    }, label);
    const fixed = state === 'on_call' || state === 'wrap_up';
    replace(box,
      h('p', { class: 'agent-state', id: 'agent-state', dataset: { state }, role: 'status' },
        h('span', { class: 'state-dot', 'aria-hidden': 'true' }),
        t(`desk.state.${state}`) === `desk.state.${state}` ? state : t(`desk.state.${state}`)),
      h('div', {
        class: 'segmented', role: 'group', 'aria-label': t('desk.setState'), id: 'agent-toggle',
      }, choice('available', t('desk.available')), choice('away', t('desk.away'))),
      h('p', { class: 'hint' }, fixed ? t('desk.busyHint') : (state === 'available'
        ? t('desk.availableHint') : t('desk.awayHint'))),
      h('div', { class: 'stack' },
        h('h3', { class: 'sub-title' }, t('desk.queues')),
        h('ul', { class: 'plain', id: 'agent-queues' }, agent.queues.map((name) => h('li', {
          class: 'match', dataset: { queue: name },
        }, h('span', {}, name), h('button', {
          type: 'button', class: 'link', 'aria-label': t('desk.leaveName', { queue: name }),
          onclick: async () => {
            try {
              await agent.leave(name);
              toast(t('desk.left', { queue: name }));
            } catch (err) {
              toast(apiErrorText(err), { kind: 'error' });
            }
          },
        }, t('desk.leave')))))),
      status);
  }
}
