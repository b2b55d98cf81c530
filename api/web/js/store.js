// Shared, refreshable data: the contact list (names for calls and history) and the history.

export class ContactStore extends EventTarget {
  constructor(api) {
    super();
    this.api = api;
    this.list = [];
    this.byUsername = new Map();
    this.loaded = false;
  }

  async refresh() {
    const list = await this.api.contacts();
    this.set(list);
    return list;
  }

  set(list) {
    this.list = [...list].sort((a, b) => label(a).localeCompare(label(b)));
    this.byUsername = new Map(this.list.map((c) => [c.username, c]));
    this.loaded = true;
    this.dispatchEvent(new CustomEvent('change'));
  }

  /** The display name of a username, when it is a contact. */
  name(username) {
    return this.byUsername.get(username)?.display_name || null;
  }

  groups() {
    return [...new Set(this.list.map((c) => c.group).filter(Boolean))].sort();
  }
}

export function label(contact) {
  return (contact.display_name || contact.username).toLocaleLowerCase();
}

const SEEN = 'chorus.history-seen';

/** Calls missed by `me`: rang here, never answered, not declined by `me`. */
export function isMissed(call, me) {
  return call.to === me && call.state === 'ended' && !call.answered_at
    && ['cancelled', 'busy', 'no_answer', 'unreachable'].includes(call.reason);
}

export class HistoryStore extends EventTarget {
  constructor(api) {
    super();
    this.api = api;
    this.calls = [];
    this.me = '';
  }

  async refresh() {
    this.calls = await this.api.history(100);
    this.dispatchEvent(new CustomEvent('change'));
    return this.calls;
  }

  /** Missed calls since the history was last looked at (the tab's badge). */
  unseenMissed() {
    const seen = Number(localStorage.getItem(`${SEEN}.${this.me}`) || 0);
    return this.calls.filter((c) => isMissed(c, this.me) && Date.parse(c.started_at) > seen).length;
  }

  markSeen() {
    const newest = this.calls.reduce((m, c) => Math.max(m, Date.parse(c.started_at)), 0);
    if (newest) localStorage.setItem(`${SEEN}.${this.me}`, String(newest));
    this.dispatchEvent(new CustomEvent('seen'));
  }
}
