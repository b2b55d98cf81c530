// The one-to-one call as this tab sees it: places, answers, declines and ends calls through
// the API, runs the peer connection, and follows the server's call events. Views listen to
// 'change' (anything about the call), 'tick' (level and quality read-outs), 'ended' and
// 'waiting' (another call rings while this one is on).

import { ApiError } from './api.js';
import { completeOffer, createPeer, getMicrophone, RemoteAudio, stopStream } from './media.js';
import { QualityMeter } from './quality.js';
import { rememberCall, rememberedCall } from './session.js';

const TICK_MS = 250;
const QUALITY_EVERY_MS = 2000;
const BUSY_TONE_MS = 3500; // the server plays the busy tone for 3 s on a refused call
const ROUTINE_ENDS = new Set(['completed', 'cancelled', 'answered_elsewhere', 'hung_up']);
const AUTO_DISMISS_MS = 8000;

export class CallController extends EventTarget {
  constructor({ api, sounds, deviceId }) {
    super();
    this.api = api;
    this.sounds = sounds;
    this.deviceId = deviceId; // () => this tab's device id (from the socket's hello)
    this.call = null;
    this.pending = new Map(); // events for calls whose POST has not answered yet
    this.audioElement = document.createElement('audio');
    this.audioElement.autoplay = true;
    this.audioElement.hidden = true;
    document.body.append(this.audioElement);
    this.tickTimer = null;
  }

  get busy() {
    return !!this.call && this.call.phase !== 'ended';
  }

  // ---------------------------------------------------------------------------- actions

  /** Calls `to` (a username, or 'hotline:<number>'). */
  async dial(to) {
    if (this.busy) return;
    this.sounds.unlock();
    const call = this.begin({ direction: 'out', peer: to, phase: 'preparing' });
    const stream = await this.microphone(call);
    if (!stream) return;
    let answer;
    try {
      const sdp = await completeOffer(this.startMedia(call, stream));
      if (call.phase === 'ended') return;
      answer = await this.api.placeCall(to, sdp);
    } catch (err) {
      this.fail(call, err);
      return;
    }
    call.id = answer.call_id;
    if (call.phase === 'ended') {
      // hung up while the offer was on its way: end it on the server too
      this.api.hangup(call.id).catch(() => {});
      return;
    }
    this.remember(call);
    try {
      await call.pc.setRemoteDescription({ type: 'answer', sdp: answer.sdp });
    } catch (err) {
      this.api.hangup(call.id).catch(() => {});
      this.fail(call, err);
      return;
    }
    if (answer.state === 'ended') {
      // busy or unreachable: the server plays the busy tone on this connection for a moment
      this.end(call, answer.reason || 'failed', { lingerMs: BUSY_TONE_MS });
      return;
    }
    if (answer.state === 'answered') {
      // a service (the hotline) answers at once
      this.update(call, { phase: 'active', answeredAt: call.answeredAt || Date.now() });
    } else {
      this.update(call, { phase: 'ringing' });
    }
    for (const event of this.pending.get(call.id) || []) this.onEvent(event);
    this.pending.clear();
  }

  async answer() {
    const call = this.call;
    if (!call || call.phase !== 'incoming') return;
    this.sounds.unlock();
    this.sounds.stopRing();
    this.update(call, { phase: 'connecting', error: null });
    const stream = await this.microphone(call, { keepCall: true });
    if (!stream) return;
    try {
      const sdp = await completeOffer(this.startMedia(call, stream));
      if (call.phase === 'ended') return;
      const answer = await this.api.answer(call.id, sdp, this.deviceId());
      if (call.phase === 'ended') return;
      await call.pc.setRemoteDescription({ type: 'answer', sdp: answer.sdp });
    } catch (err) {
      if (err instanceof ApiError && ['call_not_ringing', 'call_ended'].includes(err.code)) {
        this.end(call, 'answered_elsewhere');
        return;
      }
      this.api.decline(call.id).catch(() => {});
      this.fail(call, err);
      return;
    }
    this.update(call, { phase: 'active', answeredAt: call.answeredAt || Date.now() });
  }

  async decline() {
    const call = this.call;
    if (!call || call.phase !== 'incoming') return;
    this.end(call, 'declined_by_me');
    try {
      await this.api.decline(call.id);
    } catch {
      // it ended already (the caller gave up or another device took it): nothing to undo
    }
  }

  async hangup() {
    const call = this.call;
    if (!call || call.phase === 'ended') return;
    if (call.direction === 'in' && call.phase === 'incoming') {
      await this.decline();
      return;
    }
    const reason = call.phase === 'active' ? 'hung_up' : 'cancelled';
    // Say it to the server before closing the media: a peer connection that just vanishes
    // reads as a lost leg there, and the hangup would then find the call already over.
    this.end(call, reason, { keepMedia: true });
    if (call.id) {
      try {
        await this.api.hangup(call.id);
      } catch {
        // already over on the server: the local end stands
      }
    }
    this.teardown(call);
  }

  toggleMute() {
    const call = this.call;
    if (!call || !call.stream) return;
    const muted = !call.muted;
    for (const track of call.stream.getAudioTracks()) track.enabled = !muted;
    this.update(call, { muted });
  }

  sendDigits(digits) {
    const call = this.call;
    if (!call?.id || !['ringing', 'active'].includes(call.phase)) return Promise.resolve();
    this.sounds.beep(digits);
    this.update(call, { digits: (call.digits + digits).slice(-24) });
    // One request at a time: keys pressed quickly must reach the far end in their order
    // (concurrent requests may arrive in any order).
    call.dtmfPending += 1;
    call.dtmfQueue = (call.dtmfQueue || Promise.resolve()).then(async () => {
      try {
        if (call.phase !== 'ended') await this.api.dtmf(call.id, digits);
      } catch (err) {
        this.update(call, { error: { kind: 'dtmf', code: err.code, message: err.message } });
      } finally {
        call.dtmfPending -= 1;
        this.emit('tick');
      }
    });
    return call.dtmfQueue;
  }

  /** Closes the ended call's screen. */
  dismiss() {
    if (this.call && this.call.phase === 'ended') {
      clearTimeout(this.call.dismissTimer);
      this.teardown(this.call);
      this.call = null;
      this.emit('change');
    }
  }

  /** After "audio blocked": a click lets the page play the far end's audio. */
  resumeAudio() {
    this.sounds.unlock();
    this.remote?.resume().catch(() => {});
    this.emit('change');
  }

  // ----------------------------------------------------------------------------- events

  onEvent(event) {
    const call = this.call;
    switch (event.type) {
      case 'call.incoming':
        if (call?.id === event.call_id) return; // told again (a reconnect replays it)
        if (this.busy) {
          this.emit('waiting', event);
          return;
        }
        this.dismiss();
        this.begin({
          id: event.call_id,
          direction: 'in',
          peer: event.from,
          peerDisplay: typeof event.from_display === 'string' ? event.from_display : '',
          context: event.context && typeof event.context === 'object' ? event.context : null,
          phase: 'incoming',
        });
        this.remember(this.call);
        this.sounds.startRing();
        this.emit('change');
        break;
      case 'call.state':
        if (!call || call.id !== event.call_id) {
          if (call && !call.id && call.direction === 'out') {
            const list = this.pending.get(event.call_id) || [];
            this.pending.set(event.call_id, [...list, event].slice(-10));
          }
          if (event.state === 'ended') this.emit('waiting-ended', event);
          return;
        }
        if (event.state === 'ended') {
          this.end(call, event.reason || 'completed');
        } else if (event.state === 'answered' && call.phase !== 'active') {
          if (call.direction === 'in' && call.phase === 'incoming') {
            this.end(call, 'answered_elsewhere'); // not this device: its own state says so
          } else {
            this.update(call, { phase: 'active', answeredAt: call.answeredAt || Date.now() });
          }
        }
        break;
      case 'call.dtmf':
        if (call?.id === event.call_id && call.phase !== 'ended') {
          this.update(call, { farDigits: (call.farDigits + event.digits).slice(-24) });
        }
        break;
      default:
        break;
    }
  }

  /**
   * The events socket said hello. After a page load, find the call this tab was in; after a
   * reconnect, ask the server how the current call stands (events may have been missed).
   */
  async onHello({ reconnect }) {
    const call = this.call;
    if (reconnect) {
      if (call?.id && call.phase !== 'ended') await this.resync(call);
      return;
    }
    const saved = rememberedCall();
    if (!saved?.id || call?.id === saved.id) return;
    let view;
    try {
      view = await this.api.call(saved.id);
    } catch (err) {
      if (err.code !== 'network') rememberCall(null);
      return;
    }
    if (this.call?.id === saved.id) return; // the replayed call.incoming got there first
    if (view.state === 'ended') {
      rememberCall(null);
      this.emit('restored-ended', { ...saved, reason: view.reason });
      return;
    }
    if (saved.direction === 'in' && view.state === 'ringing') return; // it rings again
    if (this.busy) return;
    // The page was reloaded mid-call: the view comes back, the audio cannot (the API has no
    // way to re-attach media to a call), so the screen says so and offers to hang up.
    this.begin({
      id: saved.id,
      direction: saved.direction,
      peer: saved.peer,
      phase: view.state === 'answered' ? 'active' : 'ringing',
      answeredAt: view.answered_at ? Date.parse(view.answered_at) : null,
      media: 'lost',
      restored: true,
    });
    this.emit('change');
  }

  async resync(call) {
    let view;
    try {
      view = await this.api.call(call.id);
    } catch {
      return;
    }
    if (this.call !== call || call.phase === 'ended') return;
    if (view.state === 'ended') this.end(call, view.reason || 'failed');
    else if (view.state === 'answered' && call.phase === 'ringing') {
      this.update(call, { phase: 'active', answeredAt: Date.parse(view.answered_at) || Date.now() });
    }
  }

  // ---------------------------------------------------------------------------- helpers

  begin(fields) {
    this.dismiss();
    this.call = {
      id: null,
      direction: 'out',
      peer: '',
      peerDisplay: '',
      context: null, // a queue call: {hotline, path, gathered, queue}
      phase: 'preparing',
      reason: null,
      error: null,
      answeredAt: null,
      endedAt: null,
      muted: false,
      media: 'none',
      restored: false,
      digits: '',
      dtmfPending: 0, // keys pressed, not yet accepted by the server
      farDigits: '',
      hz: 0,
      db: -Infinity,
      quality: null,
      pc: null,
      stream: null,
      ...fields,
    };
    this.emit('change');
    return this.call;
  }

  async microphone(call, { keepCall = false } = {}) {
    try {
      const stream = await getMicrophone();
      if (this.call !== call || call.phase === 'ended') {
        stopStream(stream);
        return null;
      }
      return stream;
    } catch (err) {
      if (keepCall && this.call === call && call.phase !== 'ended') {
        // answering: stay on the incoming screen with the reason, so they can fix and retry
        this.update(call, { phase: 'incoming', error: { kind: 'mic', code: err.kind } });
      } else {
        this.fail(call, err);
      }
      return null;
    }
  }

  startMedia(call, stream) {
    call.stream = stream;
    call.media = 'connecting';
    this.remote = new RemoteAudio(this.sounds.context(), this.audioElement);
    call.pc = createPeer(stream, {
      onRemote: (remote) => {
        if (this.call === call) this.remote.attach(remote);
      },
      onState: (state) => this.mediaState(call, state),
    });
    call.meter = new QualityMeter(call.pc);
    this.startTicks(call);
    return call.pc;
  }

  mediaState(call, state) {
    if (this.call !== call || call.phase === 'ended') return;
    const media = {
      connected: 'connected', disconnected: 'interrupted', failed: 'lost', closed: 'lost',
    }[state];
    if (media && media !== call.media) this.update(call, { media });
  }

  startTicks(call) {
    clearInterval(this.tickTimer);
    let lastQuality = 0;
    this.tickTimer = setInterval(async () => {
      if (this.call !== call || !call.pc) return;
      const { hz, db } = this.remote.read();
      call.hz = hz;
      call.db = db;
      if (Date.now() - lastQuality >= QUALITY_EVERY_MS) {
        lastQuality = Date.now();
        call.quality = await call.meter.sample();
      }
      this.emit('tick');
    }, TICK_MS);
  }

  fail(call, err) {
    let error;
    if (err?.name === 'MicError') error = { kind: 'mic', code: err.kind };
    else if (err instanceof ApiError) error = { kind: 'api', code: err.code, message: err.message };
    else error = { kind: 'media', code: 'webrtc', message: String(err?.message || err) };
    if (this.call === call) call.error = error;
    this.end(call, 'error');
  }

  end(call, reason, { lingerMs = 0, keepMedia = false } = {}) {
    if (call.phase === 'ended') return;
    this.sounds.stopRing();
    call.phase = 'ended';
    call.reason = reason;
    call.endedAt = Date.now();
    rememberCall(null);
    if (lingerMs) setTimeout(() => this.teardown(call), lingerMs);
    else if (!keepMedia) this.teardown(call);
    if (ROUTINE_ENDS.has(reason)) {
      call.dismissTimer = setTimeout(() => {
        if (this.call === call) this.dismiss();
      }, AUTO_DISMISS_MS);
    }
    this.emit('change');
    this.emit('ended', { ...call, pc: null, stream: null, meter: null });
  }

  teardown(call) {
    if (this.call === call || !this.call) clearInterval(this.tickTimer);
    if (call.pc) {
      call.pc.onconnectionstatechange = null;
      call.pc.close();
      call.pc = null;
      if (this.remote && (this.call === call || !this.call?.pc)) this.remote.detach();
    }
    stopStream(call.stream);
    call.stream = null;
  }

  remember(call) {
    if (call?.id) rememberCall({ id: call.id, direction: call.direction, peer: call.peer });
  }

  update(call, fields) {
    if (this.call !== call) return;
    Object.assign(call, fields);
    this.emit('change');
  }

  emit(type, detail = this.call) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }
}
