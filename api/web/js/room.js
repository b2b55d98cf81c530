// The audio room this tab is in: creates and joins rooms through the API, runs the room's
// peer connection (the server sends the mix of the others), follows the room's events
// (who joined or left, who speaks, who is muted, lock, end) and carries out the moderator's
// actions. Views listen to 'change' (anything about the room), 'speaking' and 'tick'.
//
// Phases: 'idle' (in no room), 'joining', 'in', 'out' (left, removed, ended or lost: the
// screen says which and offers a way on).

import { ApiError } from './api.js';
import { completeOffer, createPeer, getMicrophone, RemoteAudio, stopStream } from './media.js';

const TICK_MS = 250;
const REFRESH_DELAY_MS = 250;
const RESTORED_NOTICE_MS = 15000;
const SAVED = 'chorus.room';

function saved() {
  try {
    return JSON.parse(sessionStorage.getItem(SAVED) || 'null');
  } catch {
    return null;
  }
}

function save(value) {
  if (value) sessionStorage.setItem(SAVED, JSON.stringify(value));
  else sessionStorage.removeItem(SAVED);
}

/** A room id from what someone typed or pasted: the id itself or an invite link. */
export function roomIdFrom(text) {
  const value = String(text || '').trim();
  const fromLink = value.match(/#\/rooms\/([A-Za-z0-9_-]{1,64})\s*$/);
  const id = fromLink ? fromLink[1] : value;
  return /^[A-Za-z0-9_-]{1,64}$/.test(id) ? id : '';
}

export function inviteLink(roomId) {
  return `${location.origin}${location.pathname}#/rooms/${encodeURIComponent(roomId)}`;
}

export class RoomError extends Error {
  constructor(code) {
    super(code);
    this.name = 'RoomError';
    this.code = code;
  }
}

export class RoomController extends EventTarget {
  constructor({ api, sounds, busy }) {
    super();
    this.api = api;
    this.sounds = sounds;
    this.busy = busy; // () => true while a one-to-one call is on
    this.audioElement = document.createElement('audio');
    this.audioElement.autoplay = true;
    this.audioElement.hidden = true;
    document.body.append(this.audioElement);
    this.remote = null;
    this.tickTimer = null;
    this.refreshTimer = null;
    this.attempt = 0; // each join gets a number; a newer one makes older ones moot
    this.onPageHide = () => this.pageHide();
    window.addEventListener('pagehide', this.onPageHide);
    this.clear();
  }

  clear() {
    this.phase = 'idle';
    this.roomId = null;
    this.pin = '';
    this.room = null; // the last GET /v1/rooms/{id}
    this.me = null; // this tab's participant id
    this.speaking = new Set();
    this.outcome = null; // {reason, error?, byMe?}
    this.media = 'none';
    this.recordings = null;
    this.restored = false;
    this.pc = null;
    this.stream = null;
    this.hz = 0;
    this.db = -Infinity;
    this.peaks = [];
  }

  get active() {
    return this.phase === 'joining' || this.phase === 'in';
  }

  get moderator() {
    return !!this.room?.moderator;
  }

  get mine() {
    return this.room?.participants.find((p) => p.participant_id === this.me) || null;
  }

  /** How the room's sound plays: 'playing', 'blocked' (autoplay), 'suspended' (WebAudio). */
  get audioState() {
    if (!this.remote) return 'none';
    if (this.remote.blocked) return 'blocked';
    return this.sounds.ctx?.state === 'running' ? 'playing' : (this.sounds.ctx?.state || 'none');
  }

  get muted() {
    return !!this.mine?.muted;
  }

  // ---------------------------------------------------------------------------- actions

  /** Starts a room (the creator moderates it) and joins it. Throws what went wrong. */
  async create({ name, pin, maxParticipants, record }) {
    const body = { record: !!record };
    if (name) body.name = name;
    if (pin) body.pin = pin;
    if (maxParticipants) body.max_participants = maxParticipants;
    if (this.busy()) throw new RoomError('in_call');
    const room = await this.api.createRoom(body);
    await this.join(room.room_id, { pin });
    return room;
  }

  /** Joins room `roomId`; throws ApiError (bad_pin, room_locked, room_full...) or MicError. */
  async join(roomId, { pin = '', restored = false } = {}) {
    if (this.busy()) throw new RoomError('in_call');
    if (this.active && this.roomId === roomId) return;
    if (this.active) await this.leave({ quiet: true });
    this.sounds.unlock();
    this.teardown();
    this.clear();
    const attempt = ++this.attempt;
    Object.assign(this, { phase: 'joining', roomId, pin: pin || '', restored });
    this.emit('change');
    const moot = () => attempt !== this.attempt;
    let stream;
    let pc;
    try {
      stream = await getMicrophone();
      if (moot()) {
        stopStream(stream);
        return;
      }
      this.stream = stream;
      this.remote = new RemoteAudio(this.sounds.context(), this.audioElement);
      pc = createPeer(stream, {
        onRemote: (remote) => {
          if (this.pc === pc) this.remote.attach(remote);
        },
        onState: (state) => this.mediaState(pc, state),
      });
      this.pc = pc;
      this.media = 'connecting';
      const offer = await completeOffer(pc);
      if (moot()) return;
      const joined = await this.api.joinRoom(roomId, offer, pin || undefined);
      if (moot()) {
        this.api.removeParticipant(roomId, joined.participant_id).catch(() => {});
        return;
      }
      this.me = joined.participant_id;
      save({ room_id: roomId, participant_id: this.me, pin: pin || '' });
      await pc.setRemoteDescription({ type: 'answer', sdp: joined.sdp });
    } catch (err) {
      if (moot()) return;
      if (this.me) this.api.removeParticipant(roomId, this.me).catch(() => {});
      this.teardown();
      this.clear();
      this.emit('change');
      throw err;
    }
    this.phase = 'in';
    this.startTicks();
    if (restored) {
      setTimeout(() => {
        if (attempt !== this.attempt || !this.restored) return;
        this.restored = false; // the notice has been read by now
        this.emit('change');
      }, RESTORED_NOTICE_MS);
    }
    this.emit('change');
    await this.refresh();
  }

  /** Leaves the room (the others see you go); the screen then offers to rejoin. */
  async leave({ quiet = false } = {}) {
    if (!this.active) return;
    const { roomId, me } = this;
    this.attempt += 1; // a join still under way gives up
    if (me) {
      // Say it before closing the media: a connection that just vanishes reads as a lost
      // participant on the server, which would then not know this one any more.
      try {
        await this.api.removeParticipant(roomId, me);
      } catch {
        // gone already (kicked, ended): leaving is done either way
      }
    }
    if (quiet) {
      this.teardown();
      this.clear();
      return;
    }
    this.finish({ reason: 'left', byMe: true });
    await this.loadRecordings();
  }

  async rejoin() {
    const { roomId, pin } = this;
    if (!roomId) return;
    await this.join(roomId, { pin });
  }

  /** Back to no room at all (after the "left" / "ended" screen). */
  reset() {
    if (this.active) return;
    this.teardown();
    this.clear();
    this.emit('change');
  }

  async toggleMute() {
    const mine = this.mine;
    if (!mine || this.phase !== 'in') return;
    await this.setMuted(mine.participant_id, !mine.muted);
  }

  /** Mutes or unmutes a participant (yourself, or anyone as moderator). */
  async setMuted(participantId, muted) {
    const updated = await this.api.setParticipantMuted(this.roomId, participantId, muted);
    this.patchParticipant(updated);
  }

  async kick(participantId) {
    await this.api.removeParticipant(this.roomId, participantId);
    this.dropParticipant(participantId);
  }

  async setLocked(locked) {
    this.room = await this.api.setRoomLocked(this.roomId, locked);
    this.emit('change');
  }

  async muteAll(muted) {
    this.room = await this.api.muteAll(this.roomId, muted);
    this.applyOwnMute();
    this.emit('change');
  }

  /** Ends the room for everyone (moderator). */
  async end() {
    await this.api.endRoom(this.roomId);
    this.finish({ reason: 'ended', byMe: true });
    if (this.outcome?.reason === 'ended') this.outcome.byMe = true; // the event came first
    await this.loadRecordings();
  }

  /** The moderator's recordings of this room (after it ended or they left). */
  async loadRecordings() {
    if (!this.room?.record || !this.room?.moderator) return;
    const roomId = this.roomId;
    try {
      const list = await this.api.recordings(roomId);
      if (this.roomId !== roomId) return;
      this.recordings = list;
    } catch (err) {
      this.recordings = { error: err };
    }
    this.emit('change');
  }

  resumeAudio() {
    this.sounds.unlock();
    this.remote?.resume().catch(() => {});
    this.emit('change');
  }

  // ----------------------------------------------------------------------------- events

  onEvent(event) {
    if (!event?.type?.startsWith('room.') || event.room_id !== this.roomId) return;
    if (!this.active) return;
    switch (event.type) {
      case 'room.speaking':
        this.speaking = new Set(event.participant_ids || []);
        this.emit('speaking');
        return;
      case 'room.participant_joined':
        if (this.room && !this.room.participants.some((p) => p.participant_id === event.participant_id)) {
          this.room.participants.push({
            participant_id: event.participant_id,
            display: event.display,
            kind: event.kind,
            muted: !!event.muted,
            muted_by_moderator: false,
            mine: false,
          });
          this.emit('joined', event);
        }
        break;
      case 'room.participant_left':
        if (event.participant_id === this.me) {
          const reason = {
            kicked: 'kicked', ended: 'ended', shutdown: 'shutdown', left: 'left',
          }[event.reason] || 'lost';
          if (reason !== 'left') this.finish({ reason });
          return;
        }
        if (this.dropParticipant(event.participant_id)) this.emit('left', event);
        break;
      case 'room.participant_muted':
        this.patchParticipant({
          participant_id: event.participant_id,
          muted: !!event.muted,
          muted_by_moderator: !!event.muted_by_moderator,
        });
        break;
      case 'room.locked':
        if (this.room) this.room.locked = !!event.locked;
        break;
      case 'room.ended':
        this.finish({ reason: event.reason === 'shutdown' ? 'shutdown' : 'ended' });
        return;
      default:
        return;
    }
    this.emit('change');
    this.refreshSoon();
  }

  /**
   * The events socket said hello. After a page load, go back into the room this tab was
   * in; after a reconnect, ask the server how the room stands (events may have been missed).
   */
  async onHello({ reconnect }) {
    if (reconnect) {
      if (this.phase === 'in') await this.refresh();
      return;
    }
    const last = saved();
    if (!last?.room_id || this.phase !== 'idle') return;
    save(null);
    if (last.participant_id && !last.left) {
      // the page was reloaded without saying goodbye: the old participant goes first
      await this.api.removeParticipant(last.room_id, last.participant_id).catch(() => {});
    }
    try {
      await this.join(last.room_id, { pin: last.pin || '', restored: true });
    } catch (err) {
      if (this.phase !== 'idle') return;
      this.roomId = last.room_id;
      this.pin = last.pin || '';
      this.phase = 'out';
      this.outcome = { reason: 'rejoinFailed', error: err };
      this.emit('change');
    }
  }

  /** Reads the room again; a room that is gone ends the visit. */
  async refresh() {
    clearTimeout(this.refreshTimer);
    if (this.phase !== 'in') return;
    const roomId = this.roomId;
    let room;
    try {
      room = await this.api.room(roomId);
    } catch (err) {
      if (this.roomId !== roomId || this.phase !== 'in') return;
      if (err instanceof ApiError && err.status === 404) this.finish({ reason: 'gone' });
      return;
    }
    if (this.roomId !== roomId || this.phase !== 'in') return;
    if (this.me && !room.participants.some((p) => p.participant_id === this.me)) {
      this.room = room;
      this.finish({ reason: 'lost' });
      return;
    }
    this.room = room;
    this.speaking = new Set(room.speaking || []);
    this.applyOwnMute();
    this.emit('change');
  }

  refreshSoon() {
    clearTimeout(this.refreshTimer);
    this.refreshTimer = setTimeout(() => this.refresh(), REFRESH_DELAY_MS);
  }

  // ---------------------------------------------------------------------------- helpers

  patchParticipant(update) {
    const list = this.room?.participants;
    const found = list?.find((p) => p.participant_id === update.participant_id);
    if (!found) return;
    Object.assign(found, update);
    if (update.participant_id === this.me) this.applyOwnMute();
    this.emit('change');
  }

  dropParticipant(participantId) {
    const list = this.room?.participants;
    const index = list ? list.findIndex((p) => p.participant_id === participantId) : -1;
    if (index < 0) return false;
    list.splice(index, 1);
    this.speaking.delete(participantId);
    this.emit('change');
    return true;
  }

  /** The microphone sends nothing while the server has this participant muted. */
  applyOwnMute() {
    const muted = this.muted;
    for (const track of this.stream?.getAudioTracks() || []) track.enabled = !muted;
  }

  mediaState(pc, state) {
    if (pc !== this.pc || this.phase === 'out') return;
    const media = {
      connected: 'connected', disconnected: 'interrupted', failed: 'lost', closed: 'lost',
    }[state];
    if (!media || media === this.media) return;
    this.media = media;
    if (media === 'lost' && this.phase === 'in') this.finish({ reason: 'lost' });
    else this.emit('change');
  }

  startTicks() {
    clearInterval(this.tickTimer);
    this.tickTimer = setInterval(() => {
      if (!this.remote || this.phase !== 'in') return;
      this.remote.wake();
      const { hz, db } = this.remote.read();
      this.hz = hz;
      this.db = db;
      this.peaks = this.remote.peaks();
      this.emit('tick');
    }, TICK_MS);
  }

  /** The visit is over: media closed, the screen says why. */
  finish(outcome) {
    if (this.phase === 'out' || this.phase === 'idle') return;
    this.attempt += 1;
    save(null);
    this.teardown();
    this.phase = 'out';
    this.outcome = outcome;
    this.speaking = new Set();
    this.emit('change');
  }

  teardown() {
    clearInterval(this.tickTimer);
    clearTimeout(this.refreshTimer);
    this.tickTimer = null;
    if (this.pc) {
      this.pc.onconnectionstatechange = null;
      this.pc.close();
      this.pc = null;
    }
    this.remote?.detach();
    this.remote = null;
    stopStream(this.stream);
    this.stream = null;
    this.media = 'none';
    this.hz = 0;
    this.db = -Infinity;
    this.peaks = [];
  }

  /** The tab is closing or reloading: leave at once, so the others see it. */
  pageHide() {
    if (this.phase !== 'in' || !this.me) return;
    this.api.leaveRoomOnUnload(this.roomId, this.me);
    const last = saved();
    if (last) save({ ...last, left: true });
  }

  /** Signing out: leave quietly and forget the room. */
  async signOut() {
    await this.leave({ quiet: true });
    this.forget();
  }

  /** The session is gone: close the media and forget the room (the server drops it). */
  forget() {
    this.attempt += 1;
    this.teardown();
    this.clear();
    save(null);
    this.emit('change');
  }

  emit(type, detail = null) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }
}
