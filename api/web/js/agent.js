// Operator mode: the queues this user answers for (hotline callers who pressed the operator
// key) and their state: 'available' or 'away' by choice, 'on_call' and 'wrap_up' by the
// server. The server says the state in `agent.state` events; which queues the user belongs
// to it says only in those events, so the names are also kept in localStorage and read back
// with GET /v1/queues/{name} when the page loads.

import { ApiError } from './api.js';

export const DEFAULT_QUEUE = 'operators';
const QUEUE_NAME = /^[A-Za-z0-9._-]{1,64}$/;

export function validQueueName(name) {
  return QUEUE_NAME.test(name);
}

export class AgentDesk extends EventTarget {
  constructor({ api, username }) {
    super();
    this.api = api;
    this.key = `chorus.queues.${username}`;
    this.username = username;
    this.queues = [];
    this.state = null; // null: not an agent (as far as this page knows)
    this.loaded = false;
    try {
      this.queues = JSON.parse(localStorage.getItem(this.key) || '[]').filter(validQueueName);
    } catch {
      this.queues = [];
    }
  }

  get isAgent() {
    return this.queues.length > 0;
  }

  /** Asks the server how this user stands in the queues remembered here. */
  async load() {
    const kept = [];
    let state = null;
    for (const name of this.queues) {
      try {
        const queue = await this.api.queue(name);
        const me = queue.agents.find((a) => a.username === this.username);
        if (me) {
          kept.push(name);
          state = state || me.state;
        }
      } catch (err) {
        if (!(err instanceof ApiError) || err.status !== 404) kept.push(name); // keep on doubt
      }
    }
    this.queues = kept;
    this.state = kept.length ? state : null;
    this.loaded = true;
    this.save();
    this.emit();
  }

  async join(name) {
    const agent = await this.api.joinQueue(name);
    if (!this.queues.includes(name)) this.queues = [...this.queues, name].sort();
    this.state = this.state || agent.state;
    this.save();
    this.emit();
  }

  async leave(name) {
    try {
      await this.api.leaveQueue(name);
    } catch (err) {
      if (!(err instanceof ApiError) || err.status !== 404) throw err;
    }
    this.queues = this.queues.filter((q) => q !== name);
    if (!this.queues.length) this.state = null;
    this.save();
    this.emit();
  }

  /** 'available' or 'away', in every queue this user belongs to. */
  async setState(state) {
    const agent = await this.api.setAgentState(state);
    this.state = agent.state;
    this.emit();
  }

  onEvent(event) {
    if (event?.type !== 'agent.state') return;
    this.state = event.state;
    if (Array.isArray(event.queues)) {
      this.queues = event.queues.filter(validQueueName).sort();
      this.save();
    }
    this.emit();
  }

  save() {
    if (this.queues.length) localStorage.setItem(this.key, JSON.stringify(this.queues));
    else localStorage.removeItem(this.key);
  }

  emit() {
    this.dispatchEvent(new CustomEvent('change'));
  }
}
