// The events WebSocket, kept open: reconnects with exponential backoff (and at once when the
// browser comes back online), pings to notice a dead connection, and reports its status.
//
// Emits: 'status' {status: 'connecting'|'online'|'offline', retryAt?, attempt?},
//        'hello' {device_id, user, reconnect}, 'event' (a server event), 'expired'.

const BASE_DELAY_MS = 500;
const MAX_DELAY_MS = 30000;
const PING_EVERY_MS = 20000;
const SILENCE_LIMIT_MS = 45000;
const CONNECT_TIMEOUT_MS = 10000;

export class EventSocket extends EventTarget {
  constructor({ token, deviceId, check = null }) {
    super();
    this.token = token; // () => current token
    this.deviceId = deviceId; // () => device id to ask for
    // A refused handshake (a bad token) reaches the browser as a bare close (1006), so after
    // a socket that never said hello, `check()` asks the API whether the session still holds.
    this.check = check;
    this.helloSeen = false;
    this.ws = null;
    this.attempt = 0;
    this.retryTimer = null;
    this.pingTimer = null;
    this.connectTimer = null;
    this.stopped = true;
    this.status = 'offline';
    this.connectedOnce = false;
    this.lastMessageAt = 0;
    this.onOnline = () => this.retryNow();
    this.onVisible = () => {
      if (document.visibilityState === 'visible' && this.status === 'offline') this.retryNow();
    };
  }

  start() {
    if (!this.stopped) return;
    this.stopped = false;
    window.addEventListener('online', this.onOnline);
    document.addEventListener('visibilitychange', this.onVisible);
    this.connect();
  }

  stop() {
    this.stopped = true;
    window.removeEventListener('online', this.onOnline);
    document.removeEventListener('visibilitychange', this.onVisible);
    this.clearTimers();
    this.drop();
    this.setStatus('offline');
  }

  retryNow() {
    if (this.stopped || this.status !== 'offline') return;
    clearTimeout(this.retryTimer);
    this.connect();
  }

  send(message) {
    if (this.ws?.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(message));
  }

  url() {
    const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
    const query = new URLSearchParams({ token: this.token(), device_id: this.deviceId() });
    return `${scheme}//${location.host}/v1/events?${query}`;
  }

  connect() {
    this.clearTimers();
    this.setStatus('connecting');
    let ws;
    try {
      ws = new WebSocket(this.url());
    } catch {
      this.scheduleRetry();
      return;
    }
    this.ws = ws;
    this.helloSeen = false;
    this.connectTimer = setTimeout(() => this.lost(ws), CONNECT_TIMEOUT_MS);
    ws.onmessage = (msg) => this.receive(ws, msg);
    ws.onclose = (ev) => {
      if (ev.code === 4401) {
        this.stop();
        this.dispatchEvent(new CustomEvent('expired'));
        return;
      }
      this.lost(ws);
    };
    ws.onerror = () => {}; // onclose follows and decides
  }

  receive(ws, msg) {
    if (ws !== this.ws) return;
    this.lastMessageAt = Date.now();
    let event;
    try {
      event = JSON.parse(msg.data);
    } catch {
      return;
    }
    if (event?.type === 'hello') {
      clearTimeout(this.connectTimer);
      this.helloSeen = true;
      this.attempt = 0;
      const reconnect = this.connectedOnce;
      this.connectedOnce = true;
      this.setStatus('online');
      this.startPings(ws);
      this.dispatchEvent(new CustomEvent('hello', { detail: { ...event, reconnect } }));
    } else if (event?.type !== 'pong') {
      this.dispatchEvent(new CustomEvent('event', { detail: event }));
    }
  }

  startPings(ws) {
    clearInterval(this.pingTimer);
    this.pingTimer = setInterval(() => {
      if (Date.now() - this.lastMessageAt > SILENCE_LIMIT_MS) {
        this.lost(ws); // no pong for too long: the connection is dead even if not closed
        return;
      }
      this.send({ type: 'ping' });
    }, PING_EVERY_MS);
  }

  /** The socket `ws` is gone (closed, timed out or silent): forget it and retry later. */
  lost(ws) {
    if (ws !== this.ws) return;
    const saidHello = this.helloSeen;
    this.drop();
    if (this.stopped) return;
    this.scheduleRetry();
    if (!saidHello) this.check?.();
  }

  drop() {
    const ws = this.ws;
    this.ws = null;
    clearInterval(this.pingTimer);
    clearTimeout(this.connectTimer);
    if (ws) {
      ws.onmessage = ws.onclose = ws.onerror = null;
      if (ws.readyState <= WebSocket.OPEN) ws.close(1000, 'bye');
    }
  }

  scheduleRetry() {
    const delay = Math.min(MAX_DELAY_MS, BASE_DELAY_MS * 2 ** this.attempt);
    const jittered = Math.round(delay * (0.8 + 0.4 * Math.random()));
    this.attempt += 1;
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => this.connect(), jittered);
    this.setStatus('offline', { retryAt: Date.now() + jittered, attempt: this.attempt });
  }

  clearTimers() {
    clearTimeout(this.retryTimer);
    clearTimeout(this.connectTimer);
    clearInterval(this.pingTimer);
  }

  setStatus(status, extra = {}) {
    this.status = status;
    this.dispatchEvent(new CustomEvent('status', { detail: { status, ...extra } }));
  }
}
