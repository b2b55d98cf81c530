// The call screen: dialing, incoming (answer / decline), in call (mute, keypad, timer,
// quality, hang up) and ended. A modal over the app; the rest of the page is inert meanwhile.

import { announce, avatar, h, replace } from '../dom.js';
import { formatDuration, t } from '../i18n.js';
import { icon } from '../icons.js';

const KEYS = [
  ['1', ''], ['2', 'ABC'], ['3', 'DEF'], ['4', 'GHI'], ['5', 'JKL'], ['6', 'MNO'],
  ['7', 'PQRS'], ['8', 'TUV'], ['9', 'WXYZ'], ['*', ''], ['0', '+'], ['#', ''],
];

export class CallScreen {
  constructor({ root, app, controller, sounds, names }) {
    this.root = root; // the <section id="call">
    this.app = app; // the rest of the page, made inert while the screen shows
    this.controller = controller;
    this.sounds = sounds;
    this.names = names; // username -> display name (from contacts), or undefined
    this.keypadOpen = false;
    this.signal = 'online';
    this.returnFocus = null;
    this.lastAnnounced = '';
    controller.addEventListener('change', () => this.render());
    controller.addEventListener('tick', () => this.tick());
    root.addEventListener('keydown', (ev) => this.onKey(ev));
    document.addEventListener('chorus:language', () => this.render());
  }

  /** The events socket's status, shown while a call is on. */
  setSignal(status) {
    if (status === this.signal) return;
    this.signal = status;
    this.render();
  }

  render() {
    const call = this.controller.call;
    const wasOpen = !this.root.hidden;
    if (!call) {
      this.close(wasOpen);
      return;
    }
    if (!wasOpen) {
      this.returnFocus = document.activeElement;
      // a hotline is driven by keys: its keypad is open from the start
      this.keypadOpen = call.peer.startsWith('hotline:') && call.direction === 'out';
    }
    const focused = this.root.contains(document.activeElement)
      ? document.activeElement.dataset.action : null;
    const peer = this.peerName(call.peer, call.peerDisplay);
    this.root.dataset.phase = call.phase;
    this.root.dataset.direction = call.direction;
    this.root.dataset.ringing = String(this.sounds.ringing);
    if (call.id) this.root.dataset.callId = call.id;
    else delete this.root.dataset.callId;

    const statusText = this.statusText(call, peer);
    replace(this.root,
      h('div', { class: 'call-card' },
        h('p', { class: 'call-kind' }, this.kindText(call)),
        avatar(peer, 'xl'),
        h('h2', { id: 'call-name', class: 'call-name' }, peer),
        call.peer !== peer && !call.peer.startsWith('hotline:')
          ? h('p', { class: 'call-handle' }, `@${call.peer}`) : null,
        h('p', { id: 'call-status', class: 'call-status' }, statusText),
        call.phase === 'active' ? h('p', {
          class: 'call-timer', role: 'timer', 'aria-label': t('call.duration'),
        }, this.duration(call)) : null,
        this.contextBlock(call),
        this.qualityBlock(call),
        this.notices(call),
      ),
      this.keypadOpen && ['ringing', 'active'].includes(call.phase) ? this.keypad(call) : null,
      h('div', { class: 'call-actions' }, this.actions(call)),
    );
    this.root.hidden = false;
    this.app.inert = true;
    this.tick();

    const target = (focused && this.root.querySelector(`[data-action="${focused}"]`))
      || (!wasOpen || !this.root.contains(document.activeElement)
        ? this.root.querySelector('[data-primary]') : null);
    target?.focus();
    if (statusText !== this.lastAnnounced) {
      this.lastAnnounced = statusText;
      announce(call.phase === 'incoming' ? t('call.incomingFrom', { name: peer }) : statusText);
    }
  }

  close(wasOpen) {
    if (!wasOpen) return;
    this.root.hidden = true;
    this.root.replaceChildren();
    for (const key of ['phase', 'direction', 'ringing', 'callId', 'remoteHz', 'remoteDb',
      'dtmfPending']) {
      delete this.root.dataset[key];
    }
    this.app.inert = false;
    this.lastAnnounced = '';
    const back = this.returnFocus;
    this.returnFocus = null;
    if (back?.isConnected && typeof back.focus === 'function') back.focus();
    else document.getElementById('main')?.focus();
  }

  /** Fast updates: timer, level meter, quality, and the read-outs tests look at. */
  tick() {
    const call = this.controller.call;
    if (!call || this.root.hidden) return;
    this.root.dataset.remoteHz = String(call.hz || 0);
    this.root.dataset.remoteDb = String(Number.isFinite(call.db) ? call.db : -200);
    this.root.dataset.ringing = String(this.sounds.ringing);
    this.root.dataset.dtmfPending = String(call.dtmfPending || 0);
    const timer = this.root.querySelector('.call-timer');
    if (timer) timer.textContent = this.duration(call);
    const meter = this.root.querySelector('.level');
    if (meter) {
      const level = Number.isFinite(call.db) ? Math.max(0, Math.min(1, (call.db + 100) / 70)) : 0;
      meter.style.setProperty('--level', level.toFixed(2));
    }
    const quality = this.root.querySelector('.quality');
    if (quality) this.fillQuality(quality, call.quality);
    const button = this.root.querySelector('[data-action="resume-audio"]');
    const blocked = this.controller.remote?.blocked;
    if (button && !blocked) button.remove();
    else if (!button && blocked && call.phase !== 'ended') this.render();
  }

  duration(call) {
    const end = call.endedAt || Date.now();
    return call.answeredAt ? formatDuration((end - call.answeredAt) / 1000) : '0:00';
  }

  peerName(peer, display = '') {
    if (peer.startsWith('hotline:')) return t('hotline.name', { number: peer.slice(8) });
    return this.names(peer) || display || peer;
  }

  /**
   * A caller offered by an operator queue: which hotline they called, the way they took
   * through its menu and the digits they entered, so the operator knows what they want.
   */
  contextBlock(call) {
    const context = call.context;
    if (!context || call.phase === 'ended') return null;
    const path = Array.isArray(context.path) ? context.path.map(String) : [];
    const gathered = context.gathered && typeof context.gathered === 'object'
      ? Object.entries(context.gathered).map(([node, digits]) => [String(node), String(digits)])
      : [];
    const steps = path.map((step) => {
      const [node, option] = step.split(':');
      if (option === undefined) return h('li', { class: 'step step-node' }, node);
      const digits = option === 'collect'
        ? gathered.find(([n]) => n === node)?.[1] || '…' : option;
      return h('li', { class: 'step step-key' },
        h('span', { class: 'visually-hidden' }, t('call.context.pressed')), h('kbd', {}, digits));
    });
    const rows = [
      [t('call.context.hotline'), context.hotline ? String(context.hotline) : '—'],
      context.queue ? [t('call.context.queue'), String(context.queue)] : null,
    ].filter(Boolean);
    return h('section', {
      class: 'call-context', 'aria-labelledby': 'call-context-title', id: 'call-context',
    },
    h('h3', { id: 'call-context-title', class: 'call-context-title' }, t('call.context.title')),
    h('dl', {},
      rows.map(([label, value]) => [h('dt', {}, label), h('dd', {}, value)]),
      h('dt', {}, t('call.context.path')),
      h('dd', {}, steps.length ? h('ol', { class: 'menu-path', id: 'call-context-path' }, steps)
        : t('call.context.none')),
      h('dt', {}, t('call.context.digits')),
      h('dd', { id: 'call-context-digits' }, gathered.length
        ? gathered.map(([node, digits]) => `${node}: ${digits}`).join(' · ')
        : t('call.context.noDigits'))));
  }

  kindText(call) {
    if (call.context && call.phase === 'incoming') {
      return t('call.kind.queue', { queue: call.context.queue || '' });
    }
    if (call.phase === 'incoming') return t('call.kind.incoming');
    if (call.phase === 'ended') return t('call.kind.ended');
    if (call.phase === 'active') return t('call.kind.active');
    return call.direction === 'in' ? t('call.kind.incoming') : t('call.kind.outgoing');
  }

  statusText(call, name) {
    switch (call.phase) {
      case 'preparing': return t('call.status.preparing');
      case 'ringing': return t('call.status.ringing');
      case 'incoming': return t('call.status.incoming');
      case 'connecting': return t('call.status.connecting');
      case 'active': return call.media === 'connected' || call.media === 'connecting'
        ? t('call.status.active') : t('call.status.activeNoAudio');
      default: return this.endText(call, name);
    }
  }

  endText(call, name) {
    if (call.reason === 'error') return errorText(call.error);
    const missed = call.direction === 'in' && !call.answeredAt
      && ['cancelled', 'busy', 'no_answer', 'unreachable'].includes(call.reason);
    if (missed) return t('call.end.missed', { name });
    const key = `call.end.${call.reason}`;
    const text = t(key, { name });
    return text === key ? t('call.end.other', { reason: call.reason }) : text;
  }

  qualityBlock(call) {
    if (!['ringing', 'active', 'connecting'].includes(call.phase) || !call.pc) return null;
    return h('div', { class: 'call-meters' },
      h('div', { class: 'level', title: t('call.level') },
        h('span', { class: 'visually-hidden' }, t('call.level')), h('span')),
      h('div', { class: 'quality', role: 'status', dataset: { grade: 'unknown' } },
        h('span', { class: 'bars', 'aria-hidden': 'true' }, h('i'), h('i'), h('i')),
        h('span', { class: 'quality-text' }, t('quality.unknown'))));
  }

  fillQuality(el, q) {
    const grade = q?.grade || 'unknown';
    el.dataset.grade = grade;
    const parts = [t(`quality.${grade}`)];
    if (q?.lossPct != null) parts.push(t('quality.loss', { value: q.lossPct.toFixed(1) }));
    if (q?.jitterMs != null) parts.push(t('quality.jitter', { value: q.jitterMs }));
    if (q?.rttMs != null) parts.push(t('quality.rtt', { value: q.rttMs }));
    const text = parts.join(' · ');
    const label = el.querySelector('.quality-text');
    if (label.textContent !== text) label.textContent = text;
  }

  notices(call) {
    const items = [];
    if (call.phase === 'ended') return null;
    if (call.restored) items.push(['warn', t('call.notice.reloaded')]);
    else if (call.media === 'interrupted') items.push(['warn', t('call.notice.interrupted')]);
    else if (call.media === 'lost') items.push(['error', t('call.notice.lost')]);
    if (this.signal !== 'online') items.push(['warn', t('call.notice.signal')]);
    if (call.error?.kind === 'mic') items.push(['error', errorText(call.error)]);
    if (call.error?.kind === 'dtmf') items.push(['warn', t('call.notice.dtmf')]);
    if (call.phase === 'incoming' && !this.sounds.allowed) {
      items.push(['info', t('call.notice.soundOff')]);
    }
    if (call.farDigits) items.push(['info', t('call.notice.farDigits', { digits: call.farDigits })]);
    const blocked = this.controller.remote?.blocked;
    if (!items.length && !blocked) return null;
    return h('div', { class: 'call-notices' },
      items.map(([kind, text]) => h('p', {
        class: `notice ${kind}`, role: kind === 'error' ? 'alert' : null,
      }, text)),
      blocked ? h('button', {
        type: 'button', class: 'link', dataset: { action: 'resume-audio' },
        onclick: () => this.controller.resumeAudio(),
      }, t('call.resumeAudio')) : null);
  }

  keypad(call) {
    return h('div', { class: 'keypad', role: 'group', 'aria-label': t('call.keypad') },
      h('output', { class: 'keypad-display', 'aria-live': 'polite' }, call.digits || ' '),
      h('div', { class: 'keypad-grid' }, KEYS.map(([digit, letters]) => h('button', {
        type: 'button',
        class: 'key',
        dataset: { action: `key-${digit}`, digit },
        'aria-label': digit,
        onclick: () => this.controller.sendDigits(digit),
      }, h('span', { class: 'key-digit' }, digit), h('span', { class: 'key-letters' }, letters)))));
  }

  actions(call) {
    const c = this.controller;
    const button = (action, label, iconName, cls, onclick, extra = {}) => h('button', {
      type: 'button', class: `round ${cls}`, dataset: { action }, onclick, ...extra,
    }, icon(iconName), h('span', { class: 'round-label' }, label));

    if (call.phase === 'incoming') {
      return [
        button('decline', t('call.decline'), 'hangup', 'danger', () => c.decline()),
        button('answer', call.error ? t('call.retryAnswer') : t('call.answer'), 'phone',
          'success pulse', () => c.answer(), { 'data-primary': '' }),
      ];
    }
    if (call.phase === 'ended') {
      const again = !call.peer.startsWith('hotline:') || call.direction === 'out';
      return [
        button('close', t('call.close'), 'close', 'neutral', () => c.dismiss(),
          { 'data-primary': '' }),
        again ? button('call-again', call.reason === 'error' && call.error?.kind === 'mic'
          ? t('call.tryAgain') : t('call.callAgain'), 'phone', 'success',
        () => c.dial(call.peer)) : null,
      ];
    }
    const inCall = ['ringing', 'active'].includes(call.phase);
    return [
      button('mute', call.muted ? t('call.unmute') : t('call.mute'),
        call.muted ? 'micOff' : 'mic', call.muted ? 'toggled' : 'neutral',
        () => c.toggleMute(), { 'aria-pressed': String(call.muted), disabled: !call.stream }),
      button('keypad', t('call.keypad'), 'keypad', this.keypadOpen ? 'toggled' : 'neutral', () => {
        this.keypadOpen = !this.keypadOpen;
        this.render();
      }, { 'aria-expanded': String(this.keypadOpen), disabled: !inCall || !call.id }),
      button('hangup', t('call.hangup'), 'hangup', 'danger', () => c.hangup(),
        { 'data-primary': '' }),
    ];
  }

  onKey(ev) {
    const call = this.controller.call;
    if (!call) return;
    if (this.keypadOpen && /^[0-9*#]$/.test(ev.key) && !ev.ctrlKey && !ev.metaKey) {
      ev.preventDefault();
      this.controller.sendDigits(ev.key);
    } else if (ev.key === 'Escape') {
      if (this.keypadOpen) {
        this.keypadOpen = false;
        this.render();
      } else if (call.phase === 'ended') {
        this.controller.dismiss();
      }
    }
  }
}

/** Words for a failure the person can act on. */
export function errorText(error) {
  if (!error) return t('error.unknown');
  if (error.kind === 'mic') return t(`mic.${error.code}`);
  if (error.kind === 'media') return t('error.webrtc');
  const key = `error.${error.code}`;
  const text = t(key, { detail: error.message || '' });
  return text === key ? (error.message || t('error.unknown')) : text;
}
