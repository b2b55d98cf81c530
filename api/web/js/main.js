// Chorus in the browser: boots the app, keeps the session, the events socket and the call
// controller together, and switches between views (#/contacts, #/history, ...).

import { AgentDesk } from './agent.js';
import { Api } from './api.js';
import { CallController } from './call.js';
import { h, replace, toast } from './dom.js';
import { EventSocket } from './events.js';
import { detectFeatures } from './features.js';
import { preferredLanguage, setLanguage, t } from './i18n.js';
import { icon } from './icons.js';
import { RoomController } from './room.js';
import {
  clearSession, deviceId, loadSession, saveSession, setDeviceId, updateUser,
} from './session.js';
import { Sounds } from './sounds.js';
import { ContactStore, HistoryStore } from './store.js';
import { CallScreen } from './views/call.js';
import { ContactsView } from './views/contacts.js';
import { HistoryView } from './views/history.js';
import { HotlineView } from './views/hotline.js';
import { RingbackView } from './views/ringback.js';
import { RoomsView } from './views/rooms.js';
import { renderSignIn } from './views/signin.js';
import { languagePicker } from './views/widgets.js';

// The views. `needs` names a feature the server must offer (features.js). A view's
// `route(rest)` gets what follows its name in the address (#/rooms/<id>).
const VIEWS = [
  { id: 'contacts', icon: 'users', label: 'nav.contacts', make: (ctx) => new ContactsView(ctx) },
  { id: 'history', icon: 'clock', label: 'nav.history', make: (ctx) => new HistoryView(ctx) },
  {
    id: 'rooms', icon: 'rooms', label: 'nav.rooms', needs: 'rooms',
    make: (ctx) => new RoomsView(ctx),
  },
  {
    id: 'ringback', icon: 'music', label: 'nav.ringback', needs: 'ringback',
    make: (ctx) => new RingbackView(ctx),
  },
  {
    id: 'hotline', icon: 'hash', label: 'nav.hotline', needs: 'hotline',
    make: (ctx) => new HotlineView(ctx),
  },
];

class App {
  constructor() {
    this.sounds = new Sounds();
    this.session = null;
    this.features = {};
    this.view = null;
    this.viewId = null;
    this.closeSignIn = null;
    this.bannerTimer = null;
    this.wasOffline = false;
    this.api = new Api({ token: () => this.session?.token, onExpired: () => this.expired() });
    this.contacts = null;
    this.history = null;
    this.calls = new CallController({ api: this.api, sounds: this.sounds, deviceId });
    this.screen = new CallScreen({
      root: document.getElementById('call'),
      app: document.getElementById('app'),
      controller: this.calls,
      sounds: this.sounds,
      names: (username) => this.contacts?.name(username),
    });
    this.rooms = new RoomController({
      api: this.api, sounds: this.sounds, busy: () => this.calls.busy,
    });
    this.rooms.addEventListener('change', () => this.drawRoomDot());
    this.agent = null;
    this.calls.addEventListener('ended', () => this.history?.refresh().catch(() => {}));
    this.calls.addEventListener('waiting', (ev) => this.callWaiting(ev.detail));
    this.calls.addEventListener('restored-ended', async (ev) => {
      if (this.contacts && !this.contacts.loaded) await this.contacts.refresh().catch(() => {});
      const name = this.contacts?.name(ev.detail.peer) || ev.detail.peer;
      toast(t('call.restoredEnded', { name }), { kind: 'info', timeoutMs: 10000 });
    });
  }

  async start() {
    await setLanguage(preferredLanguage());
    // Browsers keep audio suspended until a gesture: the first click or key unlocks it.
    for (const type of ['pointerdown', 'keydown']) {
      document.addEventListener(type, () => this.sounds.unlock(), { capture: true });
    }
    document.addEventListener('chorus:language', () => this.redraw());
    document.getElementById('boot').hidden = true;
    this.session = loadSession();
    if (!this.session) {
      this.showSignIn();
      return;
    }
    try {
      updateUser(this.session, await this.api.me());
    } catch (err) {
      if (err.status === 401) return; // expired() shows the sign-in page
      // The server is unreachable: go on with the stored profile; the socket banner says so.
    }
    this.enter();
  }

  showSignIn(message = '') {
    document.getElementById('app').hidden = true;
    this.closeSignIn?.();
    this.closeSignIn = renderSignIn(document.getElementById('signin'), {
      api: this.api,
      message,
      onSignedIn: (session, remember) => {
        saveSession(session, remember);
        this.session = loadSession();
        this.closeSignIn();
        this.closeSignIn = null;
        this.enter();
      },
    });
  }

  enter() {
    const app = document.getElementById('app');
    app.hidden = false;
    this.contacts = new ContactStore(this.api);
    this.history = new HistoryStore(this.api);
    this.history.me = this.session.user.username;
    this.history.addEventListener('change', () => this.drawBadge());
    this.contacts.addEventListener('change', () => this.screen.render()); // names on the call
    this.history.addEventListener('seen', () => this.drawBadge());
    this.agent = new AgentDesk({ api: this.api, username: this.session.user.username });

    this.socket = new EventSocket({
      token: () => this.session.token,
      deviceId,
      check: () => this.api.me().catch(() => {}),
    });
    this.socket.addEventListener('hello', (ev) => {
      setDeviceId(ev.detail.device_id);
      this.calls.onHello(ev.detail);
      this.rooms.onHello(ev.detail);
      if (ev.detail.reconnect) this.history.refresh().catch(() => {});
      if (this.agent.isAgent) this.agent.load().catch(() => {});
    });
    this.socket.addEventListener('event', (ev) => {
      this.calls.onEvent(ev.detail);
      this.rooms.onEvent(ev.detail);
      this.agent?.onEvent(ev.detail);
    });
    this.socket.addEventListener('status', (ev) => this.socketStatus(ev.detail));
    this.socket.addEventListener('expired', () => this.expired());
    this.socket.start();

    document.getElementById('me-name').textContent = this.session.user.display_name
      || this.session.user.username;
    replace(document.getElementById('lang-slot'), languagePicker('app-lang'));
    const signOut = document.getElementById('signout');
    signOut.onclick = () => this.signOut();
    this.onHash = () => this.route({ focus: true });
    window.addEventListener('hashchange', this.onHash);
    this.drawTabs();
    this.route({ focus: false });
    this.contacts.refresh().catch(() => {});
    this.history.refresh().catch(() => {});
    detectFeatures(this.api).then((features) => {
      this.features = features;
      this.drawTabs();
      this.route({ focus: false }); // a reload on #/ringback lands there once it is known
    });
  }

  context() {
    return {
      api: this.api,
      contacts: this.contacts,
      history: this.history,
      calls: this.calls,
      rooms: this.rooms,
      agent: this.agent,
      session: this.session,
      onProfile: (user) => {
        updateUser(this.session, user);
        document.getElementById('me-name').textContent = user.display_name || user.username;
      },
    };
  }

  available() {
    return VIEWS.filter((v) => !v.needs || this.features[v.needs]);
  }

  drawTabs() {
    const current = this.viewId;
    replace(document.getElementById('tabs'), this.available().map((v) => h('li', {},
      h('a', {
        href: `#/${v.id}`, class: 'tab', id: `tab-${v.id}`,
        'aria-current': v.id === current ? 'page' : null,
      }, icon(v.icon), h('span', { class: 'tab-label' }, t(v.label)),
      v.id === 'history' ? h('span', { class: 'badge', id: 'missed-badge', hidden: true }) : null,
      v.id === 'rooms' ? h('span', { class: 'live-dot', id: 'room-live', hidden: true }) : null))));
    this.drawBadge();
    this.drawRoomDot();
  }

  /** The rooms tab shows a dot (and says so) while this tab is in a room. */
  drawRoomDot() {
    const dot = document.getElementById('room-live');
    if (!dot) return;
    dot.hidden = !this.rooms.active;
    dot.textContent = '';
    dot.append(Object.assign(document.createElement('span'), {
      className: 'visually-hidden', textContent: t('rooms.inRoomTab'),
    }));
  }

  drawBadge() {
    const badge = document.getElementById('missed-badge');
    if (!badge) return;
    const count = this.viewId === 'history' ? 0 : this.history.unseenMissed();
    badge.hidden = count === 0;
    badge.textContent = String(count);
    badge.setAttribute('aria-label', t('history.missedCount', { count }));
  }

  route({ focus }) {
    const [, wanted = 'contacts', rest = ''] = location.hash.match(/^#\/([a-z]+)(?:\/(.*))?$/) || [];
    const spec = this.available().find((v) => v.id === wanted) || VIEWS[0];
    if (spec.id === this.viewId && this.view) {
      this.view.route?.(rest);
      return;
    }
    this.view?.unmount();
    this.viewId = spec.id;
    this.view = spec.make(this.context());
    const main = document.getElementById('main');
    main.replaceChildren();
    this.view.mount(main, rest);
    document.title = `${this.view.title()} · Chorus`;
    for (const a of document.querySelectorAll('#tabs a')) {
      if (a.id === `tab-${spec.id}`) a.setAttribute('aria-current', 'page');
      else a.removeAttribute('aria-current');
    }
    this.drawBadge();
    if (focus) main.focus({ preventScroll: true }); // the tabs stay in view
  }

  redraw() {
    if (!this.session || document.getElementById('app').hidden) return;
    this.drawTabs();
    if (this.view) {
      const main = document.getElementById('main');
      this.view.unmount();
      this.view = VIEWS.find((v) => v.id === this.viewId).make(this.context());
      this.view.mount(main, (location.hash.match(/^#\/[a-z]+\/(.*)$/) || [])[1] || '');
      document.title = `${this.view.title()} · Chorus`;
    }
    this.socketStatus({ status: this.socket.status });
  }

  socketStatus({ status, retryAt }) {
    this.screen.setSignal(status);
    const pill = document.getElementById('conn');
    pill.dataset.status = status;
    pill.textContent = t(`conn.${status}`);
    const banner = document.getElementById('banner');
    clearInterval(this.bannerTimer);
    if (status === 'online') {
      banner.hidden = true;
      if (this.wasOffline) toast(t('conn.back'));
      this.wasOffline = false;
      return;
    }
    if (status !== 'offline') return; // 'connecting': keep whatever the banner says
    this.wasOffline = true;
    const draw = () => {
      const seconds = Math.max(0, Math.ceil(((retryAt || Date.now()) - Date.now()) / 1000));
      replace(banner, icon('wifiOff'),
        h('span', { class: 'banner-text' },
          navigator.onLine === false ? t('conn.deviceOffline') : t('conn.lost'), ' ',
          seconds ? t('conn.retryIn', { seconds }) : t('conn.retrying')),
        h('button', {
          type: 'button', class: 'secondary small', onclick: () => this.socket.retryNow(),
        }, t('conn.retryNow')));
      banner.hidden = false;
    };
    draw();
    this.bannerTimer = setInterval(draw, 1000);
  }

  callWaiting(event) {
    const name = this.contacts.name(event.from) || event.from;
    const close = toast(t('call.waiting', { name }), {
      kind: 'warn',
      timeoutMs: 30000,
      action: {
        label: t('call.decline'),
        run: () => this.api.decline(event.call_id).catch(() => {}),
      },
    });
    const onEnd = (ev) => {
      if (ev.detail.call_id !== event.call_id) return;
      close();
      this.calls.removeEventListener('waiting-ended', onEnd);
    };
    this.calls.addEventListener('waiting-ended', onEnd);
  }

  async signOut(message = '') {
    if (this.calls.busy) await this.calls.hangup();
    await this.rooms.signOut();
    this.leave();
    this.showSignIn(message);
  }

  expired() {
    if (!this.session) return;
    if (this.calls.busy) this.calls.hangup();
    this.rooms.forget();
    this.leave();
    this.showSignIn(t('auth.expired'));
  }

  leave() {
    this.socket?.stop();
    this.calls.dismiss();
    window.removeEventListener('hashchange', this.onHash);
    this.view?.unmount();
    this.view = null;
    this.viewId = null;
    clearInterval(this.bannerTimer);
    document.getElementById('banner').hidden = true;
    document.getElementById('main').replaceChildren();
    clearSession();
    this.session = null;
  }
}

window.addEventListener('unhandledrejection', (ev) => {
  // Nothing fails silently: an unexpected error still tells the person something.
  console.error(ev.reason);
  toast(t('error.unexpected'), { kind: 'error' });
});

new App().start().catch((err) => {
  console.error(err);
  const boot = document.getElementById('boot');
  boot.hidden = false;
  boot.classList.add('failed');
  replace(boot, h('p', {}, 'Chorus could not start. Reload the page to try again.'));
});
