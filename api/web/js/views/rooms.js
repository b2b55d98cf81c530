// Rooms: start a room (name, PIN, size, recording) or join one by id, PIN or invite link
// (#/rooms/<id>); in the room, the participants with who is speaking and who is muted, mute
// yourself, copy the invite link, leave; the moderator mutes or removes others, locks the
// room, mutes everyone and ends it, then downloads the recording.

import { announce, avatar, h, replace, toast } from '../dom.js';
import { formatDuration, t } from '../i18n.js';
import { icon } from '../icons.js';
import { inviteLink, roomIdFrom } from '../room.js';
import { apiErrorText, card, emptyState } from './widgets.js';

const PIN = /^[0-9]{4,16}$/;
const MAX_SIZE = 100;

/** Words for a failure to join or to act in a room. */
export function roomErrorText(err, { pinGiven = true } = {}) {
  if (err?.name === 'MicError') return t(`mic.${err.kind}`);
  if (err?.name === 'RoomError') return t(`rooms.error.${err.code}`);
  if (err?.code === 'bad_pin' && !pinGiven) return t('rooms.error.needPin');
  if (err?.code === 'bad_pin') {
    // the server counts wrong PINs per person and says how many tries are left
    const left = Number((String(err.message).match(/(\d+) attempt/) || [])[1] || 0);
    return left ? t('rooms.error.bad_pin', { left }) : t('rooms.error.badPinLast');
  }
  const key = `rooms.error.${err?.code}`;
  const text = t(key, { detail: err?.message || '' });
  return text === key ? apiErrorText(err) : text;
}

export class RoomsView {
  constructor({ api, rooms, calls, session }) {
    this.api = api;
    this.rooms = rooms;
    this.calls = calls;
    this.session = session;
    this.root = null;
    this.hashId = '';
    this.mode = null; // 'lobby' | 'room'
    this.confirm = null; // 'end' or 'kick:<participant id>': asks before doing it
    this.busy = false;
    this.myRooms = null;
    this.onChange = () => this.update();
    this.onSpeaking = () => this.drawSpeaking();
    this.onTick = () => this.tick();
    this.onJoined = (ev) => announce(t('rooms.joinedName', { name: ev.detail.display }));
    this.onLeft = (ev) => announce(t(ev.detail.reason === 'kicked' ? 'rooms.kickedName'
      : 'rooms.leftName', { name: ev.detail.display }));
  }

  title() {
    return t('nav.rooms');
  }

  mount(root, rest = '') {
    this.root = root;
    this.hashId = roomIdFrom(rest);
    this.rooms.addEventListener('change', this.onChange);
    this.rooms.addEventListener('speaking', this.onSpeaking);
    this.rooms.addEventListener('tick', this.onTick);
    this.rooms.addEventListener('joined', this.onJoined);
    this.rooms.addEventListener('left', this.onLeft);
    this.update();
  }

  route(rest) {
    const id = roomIdFrom(rest);
    if (id === this.hashId && this.mode) return; // nothing new: keep what is typed
    this.hashId = id;
    this.mode = null;
    this.update();
  }

  unmount() {
    this.rooms.removeEventListener('change', this.onChange);
    this.rooms.removeEventListener('speaking', this.onSpeaking);
    this.rooms.removeEventListener('tick', this.onTick);
    this.rooms.removeEventListener('joined', this.onJoined);
    this.rooms.removeEventListener('left', this.onLeft);
    this.root = null;
  }

  /** Which screen: the room this tab is in (or just left), or the lobby. */
  wanted() {
    const r = this.rooms;
    if (r.phase === 'idle' || (this.hashId && this.hashId !== r.roomId)) return 'lobby';
    // a join started from the lobby's forms keeps the lobby (and its errors) until it is done
    return r.phase === 'joining' && this.busy ? 'lobby' : 'room';
  }

  update() {
    if (!this.root) return;
    const mode = this.wanted();
    if (mode === 'room') {
      const hash = `#/rooms/${this.rooms.roomId}`;
      if (location.hash !== hash) history.replaceState(null, '', hash);
      this.hashId = this.rooms.roomId;
    }
    if (mode !== this.mode) {
      this.mode = mode;
      this.confirm = null;
      if (mode === 'lobby') {
        this.drawLobby();
      } else {
        // the room's name takes the focus, unless the person is busy elsewhere on the page
        const active = document.activeElement;
        this.drawRoom({
          focusHeading: !active || active === document.body || this.root.contains(active),
        });
      }
      return;
    }
    if (mode === 'room') this.drawRoom();
  }

  // ------------------------------------------------------------------------------ lobby

  drawLobby() {
    const invited = this.hashId && this.hashId !== this.rooms.roomId ? this.hashId : '';
    replace(this.root,
      h('div', { class: 'page-head' }, h('h1', { id: 'page-title' }, t('nav.rooms'))),
      h('p', { class: 'muted lead' }, t('rooms.intro')),
      h('div', { class: 'columns' },
        h('div', { class: 'col-main stack-lg' },
          this.joinCard(invited),
          this.myRoomsCard()),
        h('div', { class: 'col-side' }, this.createCard())));
    this.loadMyRooms();
    if (invited) this.root.querySelector('#join-pin')?.focus();
  }

  joinCard(invited) {
    const error = h('p', { class: 'form-error', role: 'alert', id: 'join-error' });
    const form = h('form', { class: 'stack', novalidate: true, id: 'join-form' },
      invited ? h('p', { class: 'notice-inline', id: 'invite-note' },
        icon('link'), t('rooms.invited', { id: invited })) : null,
      this.rooms.active && invited ? h('p', { class: 'muted' }, t('rooms.joinLeavesCurrent')) : null,
      h('div', { class: 'field' },
        h('label', { for: 'join-room' }, t('rooms.roomId')),
        h('input', {
          id: 'join-room', name: 'room', value: invited, autocomplete: 'off', maxlength: 2048,
          autocapitalize: 'none', spellcheck: 'false', 'aria-describedby': 'join-room-hint join-error',
        }),
        h('p', { class: 'hint', id: 'join-room-hint' }, t('rooms.roomIdHint'))),
      h('div', { class: 'field' },
        h('label', { for: 'join-pin' }, t('rooms.pinOptional')),
        h('input', {
          id: 'join-pin', name: 'pin', inputmode: 'numeric', autocomplete: 'off', maxlength: 16,
          'aria-describedby': 'join-error',
        })),
      error,
      h('button', { type: 'submit', class: 'primary', id: 'join-submit' },
        icon('rooms'), t('rooms.join')));
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      if (this.busy) return;
      const data = new FormData(form);
      const roomId = roomIdFrom(data.get('room'));
      const pin = String(data.get('pin') || '').trim();
      if (!roomId) {
        error.textContent = t('rooms.needRoomId');
        form.querySelector('#join-room').focus();
        return;
      }
      if (pin && !PIN.test(pin)) {
        error.textContent = t('rooms.error.bad_pin_format');
        form.querySelector('#join-pin').focus();
        return;
      }
      error.textContent = '';
      await this.run(form, async () => {
        this.hashId = roomId;
        await this.rooms.join(roomId, { pin });
      }, (err) => {
        error.textContent = roomErrorText(err, { pinGiven: !!pin });
        const field = err?.code === 'bad_pin' || err?.code === 'too_many_attempts'
          ? '#join-pin' : '#join-room';
        form.querySelector(field)?.focus();
      });
    });
    return card(invited ? t('rooms.joinInvited') : t('rooms.joinTitle'), form, { id: 'room-join' });
  }

  createCard() {
    const error = h('p', { class: 'form-error', role: 'alert', id: 'create-error' });
    const form = h('form', { class: 'stack', novalidate: true, id: 'create-form' },
      h('div', { class: 'field' },
        h('label', { for: 'room-name' }, t('rooms.name')),
        h('input', {
          id: 'room-name', name: 'name', maxlength: 100, autocomplete: 'off',
          placeholder: t('rooms.namePlaceholder'),
        })),
      h('div', { class: 'field' },
        h('label', { for: 'room-pin' }, t('rooms.pinNew')),
        h('input', {
          id: 'room-pin', name: 'pin', inputmode: 'numeric', autocomplete: 'off', maxlength: 16,
          'aria-describedby': 'room-pin-hint create-error',
        }),
        h('p', { class: 'hint', id: 'room-pin-hint' }, t('rooms.pinHint'))),
      h('div', { class: 'field' },
        h('label', { for: 'room-max' }, t('rooms.maxParticipants')),
        h('input', {
          id: 'room-max', name: 'max', type: 'number', min: 2, max: MAX_SIZE, step: 1,
          inputmode: 'numeric', placeholder: String(MAX_SIZE), class: 'narrow',
          'aria-describedby': 'create-error',
        })),
      h('label', { class: 'check' },
        h('input', { type: 'checkbox', name: 'record', id: 'room-record' }),
        h('span', {}, t('rooms.record'))),
      error,
      h('button', { type: 'submit', class: 'primary', id: 'create-submit' },
        icon('phone'), t('rooms.start')));
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      if (this.busy) return;
      const data = new FormData(form);
      const name = String(data.get('name') || '').trim();
      const pin = String(data.get('pin') || '').trim();
      const maxText = String(data.get('max') || '').trim();
      const max = maxText ? Number(maxText) : null;
      if (pin && !PIN.test(pin)) {
        error.textContent = t('rooms.error.bad_pin_format');
        form.querySelector('#room-pin').focus();
        return;
      }
      if (max !== null && !(Number.isInteger(max) && max >= 2 && max <= MAX_SIZE)) {
        error.textContent = t('rooms.badSize', { max: MAX_SIZE });
        form.querySelector('#room-max').focus();
        return;
      }
      error.textContent = '';
      await this.run(form, async () => {
        this.hashId = '';
        await this.rooms.create({
          name, pin, maxParticipants: max, record: data.get('record') === 'on',
        });
      }, (err) => {
        error.textContent = roomErrorText(err);
        form.querySelector(err?.code === 'bad_size' ? '#room-max' : '#room-name')?.focus();
      });
    });
    return card(t('rooms.startTitle'), form, { id: 'room-create' });
  }

  /** Runs a form's action with its buttons disabled; `onError` shows what went wrong. */
  async run(form, action, onError) {
    this.busy = true;
    const buttons = form ? [...form.querySelectorAll('button')] : [];
    for (const b of buttons) b.disabled = true;
    form?.setAttribute('aria-busy', 'true');
    announce(t('rooms.status.joining'));
    let failure = null;
    try {
      await action();
    } catch (err) {
      failure = err;
    } finally {
      this.busy = false;
      for (const b of buttons) b.disabled = false;
      form?.removeAttribute('aria-busy');
    }
    if (failure && this.root && this.mode === 'lobby' && (!form || form.isConnected)) {
      onError(failure);
    } else if (failure) {
      toast(roomErrorText(failure), { kind: 'error' });
    }
    this.update();
  }

  myRoomsCard() {
    return card(t('rooms.mine'), h('div', { id: 'my-rooms', 'aria-live': 'polite' },
      h('p', { class: 'muted loading' }, t('loading'))), { id: 'my-rooms-card' });
  }

  async loadMyRooms() {
    let list;
    try {
      list = await this.api.rooms();
    } catch (err) {
      list = { error: err };
    }
    this.myRooms = list;
    this.drawMyRooms();
  }

  drawMyRooms() {
    const box = this.root?.querySelector('#my-rooms');
    if (!box) return;
    const list = this.myRooms;
    if (list?.error) {
      replace(box, h('p', { class: 'form-error', role: 'alert' }, apiErrorText(list.error)),
        h('button', { type: 'button', class: 'secondary small', onclick: () => this.loadMyRooms() },
          t('action.retry')));
      return;
    }
    if (!list.length) {
      replace(box, emptyState(t('rooms.mineEmpty'), t('rooms.mineEmptyHint')));
      return;
    }
    replace(box, h('ul', { class: 'rows compact' }, list.map((room) => {
      const current = room.room_id === this.rooms.roomId && this.rooms.active;
      const confirming = this.confirm === `end-listed:${room.room_id}`;
      const count = room.participants.length;
      return h('li', { class: 'row room-row', dataset: { roomId: room.room_id } },
        h('span', { class: 'room-icon', 'aria-hidden': 'true' }, icon('rooms')),
        h('div', { class: 'row-text' },
          h('span', { class: 'row-title' }, room.name),
          h('span', { class: 'row-sub' },
            t('rooms.people', { count }),
            room.moderator ? h('span', { class: 'chip' }, t('rooms.youModerate')) : null,
            room.locked ? h('span', { class: 'chip warn' }, t('rooms.locked')) : null)),
        h('div', { class: 'row-actions' }, confirming ? [
          h('span', { class: 'confirm-text' }, t('rooms.confirmEnd')),
          h('button', {
            type: 'button', class: 'danger small', dataset: { action: 'confirm-end' },
            onclick: async () => {
              try {
                await this.api.endRoom(room.room_id);
                toast(t('rooms.endedName', { name: room.name }));
              } catch (err) {
                toast(roomErrorText(err), { kind: 'error' });
              }
              this.confirm = null;
              this.loadMyRooms();
            },
          }, t('rooms.end')),
          h('button', {
            type: 'button', class: 'secondary small',
            onclick: () => { this.confirm = null; this.drawMyRooms(); },
          }, t('action.cancel')),
        ] : [
          h('button', {
            type: 'button', class: 'secondary small', dataset: { action: 'open-room' },
            onclick: () => {
              if (current) {
                location.hash = `#/rooms/${room.room_id}`;
                return;
              }
              this.run(null, () => this.rooms.join(room.room_id),
                (err) => toast(roomErrorText(err), { kind: 'error' }));
            },
          }, current ? t('rooms.backToRoom') : t('rooms.join')),
          room.moderator && !current ? h('button', {
            type: 'button', class: 'icon-button', dataset: { action: 'end-listed' },
            'aria-label': t('rooms.endName', { name: room.name }),
            title: t('rooms.endName', { name: room.name }),
            onclick: () => {
              this.confirm = `end-listed:${room.room_id}`;
              this.drawMyRooms();
              this.root.querySelector('[data-action="confirm-end"]')?.focus();
            },
          }, icon('power')) : null,
        ]));
    })));
  }

  // ------------------------------------------------------------------------------- room

  drawRoom({ focusHeading = false } = {}) {
    const r = this.rooms;
    const root = this.root;
    const focusKey = root.contains(document.activeElement)
      ? document.activeElement.dataset.focus : null;
    if (r.phase === 'out') {
      replace(root, this.outScreen());
    } else {
      replace(root, this.roomScreen());
    }
    const again = focusKey && root.querySelector(`[data-focus="${CSS.escape(focusKey)}"]`);
    if (again) again.focus({ preventScroll: true });
    else if (focusHeading || (focusKey && !again)) {
      root.querySelector('#page-title')?.focus({ preventScroll: true });
    }
    this.tick();
  }

  roomScreen() {
    const r = this.rooms;
    const room = r.room;
    const name = room?.name || t('rooms.joining');
    const participants = room?.participants || [];
    const status = r.phase === 'joining' ? t('rooms.status.joining')
      : { connected: t('rooms.status.in'), interrupted: t('rooms.status.interrupted') }[r.media]
        || t('rooms.status.connecting');
    return h('section', {
      id: 'room', class: 'room', 'aria-labelledby': 'page-title',
      dataset: {
        phase: r.phase, roomId: r.roomId || '', me: r.me || '',
        muted: String(r.muted), moderator: String(r.moderator),
      },
    },
    h('div', { class: 'page-head room-head' },
      h('div', { class: 'room-title' },
        h('h1', { id: 'page-title', tabindex: '-1' }, name),
        h('p', { class: 'row-sub', id: 'room-flags' },
          h('span', { class: 'room-status', role: 'status' }, status),
          r.moderator ? h('span', { class: 'chip' }, t('rooms.youModerate')) : null,
          room?.locked ? h('span', { class: 'chip warn', id: 'room-locked' }, icon('lock'),
            t('rooms.locked')) : null,
          room?.pin_required ? h('span', { class: 'chip' }, t('rooms.pinProtected')) : null,
          room?.record ? h('span', { class: 'chip rec' }, t('rooms.recording')) : null))),
    this.roomNotices(),
    h('div', { class: 'columns' },
      h('div', { class: 'col-main' },
        card(t('rooms.participants', { count: participants.length }),
          participants.length
            ? h('ul', { class: 'rows participants', id: 'participants' },
              participants.map((p) => this.participantRow(p)))
            : h('p', { class: 'muted loading' }, t('loading')),
          { id: 'participants-card' })),
      h('div', { class: 'col-side' },
        this.controls(),
        this.inviteCard())));
  }

  roomNotices() {
    const r = this.rooms;
    const items = [];
    if (r.restored) items.push(['info', t('rooms.notice.restored')]);
    if (r.media === 'interrupted') items.push(['warn', t('rooms.notice.interrupted')]);
    const mine = r.mine;
    if (mine?.muted_by_moderator) items.push(['warn', t('rooms.notice.mutedByModerator')]);
    const blocked = r.remote?.blocked;
    if (!items.length && !blocked) return null;
    return h('div', { class: 'room-notices' },
      items.map(([kind, text]) => h('p', { class: `notice-inline ${kind}` }, text)),
      blocked ? h('button', {
        type: 'button', class: 'secondary', dataset: { focus: 'resume-audio' },
        onclick: () => r.resumeAudio(),
      }, t('rooms.resumeAudio')) : null);
  }

  participantRow(p) {
    const r = this.rooms;
    const mineRow = p.participant_id === r.me;
    const speaking = r.speaking.has(p.participant_id) && !p.muted;
    const name = p.display;
    const state = p.muted
      ? (p.muted_by_moderator ? t('rooms.mutedByModerator') : t('rooms.muted'))
      : (speaking ? t('rooms.speaking') : '');
    const pid = p.participant_id;
    let actions = [];
    if (r.moderator && !mineRow && r.phase === 'in') {
      if (this.confirm === `kick:${pid}`) {
        actions = [
          h('span', { class: 'confirm-text' }, t('rooms.confirmKick', { name })),
          h('button', {
            type: 'button', class: 'danger small', dataset: { action: 'confirm-kick', focus: `confirm-kick-${pid}` },
            onclick: () => this.act(() => r.kick(pid), () => { this.confirm = null; }),
          }, t('rooms.kick')),
          h('button', {
            type: 'button', class: 'secondary small', dataset: { focus: `cancel-kick-${pid}` },
            onclick: () => {
              this.confirm = null;
              this.drawRoom();
              this.root.querySelector(`[data-focus="kick-${CSS.escape(pid)}"]`)?.focus();
            },
          }, t('action.cancel')),
        ];
      } else {
        actions = [
          h('button', {
            type: 'button', class: `icon-button mod ${p.muted ? 'on' : ''}`,
            dataset: { action: p.muted ? 'unmute' : 'mute', focus: `mute-${pid}` },
            'aria-label': t(p.muted ? 'rooms.unmuteName' : 'rooms.muteName', { name }),
            title: t(p.muted ? 'rooms.unmuteName' : 'rooms.muteName', { name }),
            onclick: () => this.act(() => r.setMuted(pid, !p.muted)),
          }, icon(p.muted ? 'micOff' : 'mic')),
          h('button', {
            type: 'button', class: 'icon-button', dataset: { action: 'kick', focus: `kick-${pid}` },
            'aria-label': t('rooms.kickName', { name }), title: t('rooms.kickName', { name }),
            onclick: () => {
              this.confirm = `kick:${pid}`;
              this.drawRoom();
              this.root.querySelector(`[data-focus="confirm-kick-${CSS.escape(pid)}"]`)?.focus();
            },
          }, icon('userX')),
        ];
      }
    }
    const badge = avatar(name);
    return h('li', {
      class: `row participant${speaking ? ' speaking' : ''}`,
      dataset: {
        pid, speaking: String(speaking), muted: String(!!p.muted), mine: String(mineRow),
        kind: p.kind || 'webrtc',
      },
    },
    h('span', { class: 'speak-ring' }, badge),
    h('div', { class: 'row-text' },
      h('span', { class: 'row-title' }, name,
        mineRow ? h('span', { class: 'you' }, ` ${t('rooms.you')}`) : null),
      h('span', { class: 'row-sub participant-state' },
        p.muted ? icon('micOff', 'small') : null,
        h('span', { class: 'state-text' }, state),
        p.kind === 'rtp' ? h('span', { class: 'chip' }, t('rooms.phoneLine')) : null)),
    h('div', { class: 'row-actions' }, actions));
  }

  drawSpeaking() {
    const r = this.rooms;
    for (const li of this.root?.querySelectorAll('#participants li.participant') || []) {
      const p = r.room?.participants.find((x) => x.participant_id === li.dataset.pid);
      if (!p) continue;
      const speaking = r.speaking.has(p.participant_id) && !p.muted;
      if (li.dataset.speaking === String(speaking)) continue;
      li.dataset.speaking = String(speaking);
      li.classList.toggle('speaking', speaking);
      if (!p.muted) li.querySelector('.state-text').textContent = speaking ? t('rooms.speaking') : '';
    }
  }

  controls() {
    const r = this.rooms;
    const inRoom = r.phase === 'in';
    const mine = r.mine;
    const lockedByMod = !!mine?.muted_by_moderator;
    const muted = r.muted;
    const buttons = [
      h('button', {
        type: 'button', class: `round-small ${muted ? 'toggled' : ''}`,
        dataset: { action: 'mute-self', focus: 'mute-self' }, 'aria-pressed': String(muted),
        'aria-disabled': !inRoom || !mine || (muted && lockedByMod) ? 'true' : null,
        'aria-describedby': lockedByMod ? 'mute-self-note' : null,
        onclick: () => {
          if (!inRoom || !mine || (muted && lockedByMod)) return;
          this.act(() => r.toggleMute());
        },
      }, icon(muted ? 'micOff' : 'mic'), h('span', {}, muted ? t('call.unmute') : t('call.mute'))),
      h('button', {
        type: 'button', class: 'round-small danger', dataset: { action: 'leave', focus: 'leave' },
        onclick: () => this.act(() => r.leave()),
      }, icon('hangup'), h('span', {}, r.phase === 'joining' ? t('action.cancel') : t('rooms.leave'))),
    ];
    const mod = r.moderator && inRoom ? this.moderatorControls() : null;
    return card(t('rooms.controls'), h('div', { class: 'stack' },
      h('div', { class: 'hear' },
        h('span', { class: 'hint', id: 'room-level-label' }, t('rooms.level')),
        h('div', {
          class: 'level room-level', role: 'img', 'aria-labelledby': 'room-level-label',
        }, h('span'))),
      h('div', { class: 'room-bar', role: 'group', 'aria-label': t('rooms.controls') }, buttons),
      lockedByMod ? h('p', { class: 'hint', id: 'mute-self-note' }, t('rooms.notice.mutedByModerator'))
        : null,
      mod), { id: 'room-controls' });
  }

  moderatorControls() {
    const r = this.rooms;
    const locked = !!r.room?.locked;
    const ending = this.confirm === 'end';
    return h('div', { class: 'stack moderator', role: 'group', 'aria-labelledby': 'mod-title' },
      h('h3', { class: 'sub-title', id: 'mod-title' }, t('rooms.moderator')),
      h('div', { class: 'button-row' },
        h('button', {
          type: 'button', class: 'secondary small', 'aria-pressed': String(locked),
          dataset: { action: 'lock', focus: 'lock' },
          onclick: () => this.act(() => r.setLocked(!locked),
            () => announce(t(locked ? 'rooms.unlockedNow' : 'rooms.lockedNow'))),
        }, icon(locked ? 'lock' : 'unlock'), locked ? t('rooms.unlock') : t('rooms.lock')),
        h('button', {
          type: 'button', class: 'secondary small', dataset: { action: 'mute-all', focus: 'mute-all' },
          onclick: () => this.act(() => r.muteAll(true), () => announce(t('rooms.mutedAll'))),
        }, icon('micOff'), t('rooms.muteAll')),
        h('button', {
          type: 'button', class: 'secondary small', dataset: { action: 'unmute-all', focus: 'unmute-all' },
          onclick: () => this.act(() => r.muteAll(false), () => announce(t('rooms.unmutedAll'))),
        }, icon('mic'), t('rooms.unmuteAll'))),
      h('p', { class: 'hint' }, locked ? t('rooms.lockedHint') : t('rooms.unlockedHint')),
      ending ? h('div', { class: 'confirm-box', role: 'group', 'aria-label': t('rooms.confirmEnd') },
        h('p', { class: 'confirm-text' }, t('rooms.confirmEnd')),
        h('div', { class: 'button-row' },
          h('button', {
            type: 'button', class: 'danger small', dataset: { action: 'confirm-end', focus: 'confirm-end' },
            onclick: () => this.act(() => r.end()),
          }, t('rooms.endForAll')),
          h('button', {
            type: 'button', class: 'secondary small', dataset: { focus: 'cancel-end' },
            onclick: () => {
              this.confirm = null;
              this.drawRoom();
              this.root.querySelector('[data-focus="end"]')?.focus();
            },
          }, t('action.cancel'))))
        : h('button', {
          type: 'button', class: 'danger small', dataset: { action: 'end', focus: 'end' },
          onclick: () => {
            this.confirm = 'end';
            this.drawRoom();
            this.root.querySelector('[data-focus="confirm-end"]')?.focus();
          },
        }, icon('power'), t('rooms.endRoom')));
  }

  inviteCard() {
    const r = this.rooms;
    if (!r.roomId) return null;
    const link = inviteLink(r.roomId);
    return card(t('rooms.invite'), h('div', { class: 'stack' },
      h('div', { class: 'field' },
        h('label', { for: 'invite-link' }, t('rooms.inviteLink')),
        h('div', { class: 'copy-row' },
          h('input', {
            id: 'invite-link', readonly: true, value: link, spellcheck: 'false',
            dataset: { focus: 'invite-link' },
            onfocus: (ev) => ev.target.select(),
          }),
          h('button', {
            type: 'button', class: 'secondary', dataset: { action: 'copy-invite', focus: 'copy-invite' },
            onclick: () => this.copyInvite(link),
          }, icon('link'), t('rooms.copy')))),
      h('p', { class: 'muted small-text' }, t('rooms.roomIdIs'), ' ',
        h('code', { id: 'room-id' }, r.roomId)),
      r.room?.pin_required ? h('p', { class: 'hint' }, t('rooms.pinSeparately')) : null),
    { id: 'room-invite' });
  }

  async copyInvite(link) {
    try {
      await navigator.clipboard.writeText(link);
      toast(t('rooms.copied'));
    } catch {
      const input = this.root?.querySelector('#invite-link');
      input?.focus();
      input?.select();
      toast(t('rooms.copyByHand'), { kind: 'warn' });
    }
  }

  /** A room action; its failure is said in a toast (the room screen stays). */
  async act(action, after = null) {
    try {
      await action();
      after?.();
    } catch (err) {
      toast(roomErrorText(err), { kind: 'error' });
    }
    if (this.root && this.mode === 'room') this.drawRoom();
  }

  outScreen() {
    const r = this.rooms;
    const outcome = r.outcome || { reason: 'left' };
    const name = r.room?.name || r.roomId;
    let message;
    if (outcome.reason === 'ended') {
      message = outcome.byMe ? t('rooms.out.endedByMe') : t('rooms.out.ended');
    } else if (outcome.reason === 'rejoinFailed') {
      message = t('rooms.out.rejoinFailed', { reason: roomErrorText(outcome.error) });
    } else {
      message = t(`rooms.out.${outcome.reason}`);
    }
    const canRejoin = ['left', 'lost', 'rejoinFailed'].includes(outcome.reason);
    return h('section', {
      id: 'room', class: 'room out', 'aria-labelledby': 'page-title',
      dataset: { phase: 'out', reason: outcome.reason, roomId: r.roomId || '' },
    },
    h('div', { class: 'card out-card' },
      h('p', { class: 'call-kind muted' }, name),
      h('h1', { id: 'page-title', tabindex: '-1' }, message),
      outcome.reason === 'kicked' ? h('p', { class: 'muted' }, t('rooms.out.kickedHint')) : null,
      this.recordingsBlock(),
      h('div', { class: 'button-row' },
        canRejoin ? h('button', {
          type: 'button', class: 'primary', dataset: { action: 'rejoin', focus: 'rejoin' },
          onclick: () => this.act(() => r.rejoin()),
        }, icon('rooms'), t('rooms.rejoin')) : null,
        h('button', {
          type: 'button', class: 'secondary', dataset: { action: 'back', focus: 'back' },
          onclick: () => {
            this.hashId = '';
            r.reset();
            location.hash = '#/rooms';
          },
        }, t('rooms.back')))));
  }

  recordingsBlock() {
    const list = this.rooms.recordings;
    if (!this.rooms.room?.record || !this.rooms.room?.moderator) return null;
    if (list === null) return h('p', { class: 'muted' }, t('rooms.recordingsLoading'));
    if (list.error) {
      return h('p', { class: 'form-error', role: 'alert' }, roomErrorText(list.error));
    }
    if (!list.length) return h('p', { class: 'muted' }, t('rooms.noRecording'));
    return h('div', { class: 'stack', id: 'recordings' },
      h('h2', { class: 'sub-title' }, t('rooms.recordings')),
      h('ul', { class: 'plain' }, list.map((rec, i) => h('li', { class: 'recording' },
        !rec.ended_at ? h('span', { class: 'muted' }, t('rooms.stillRecording')) : h('button', {
          type: 'button', class: 'secondary small', dataset: { action: 'download-recording', focus: `rec-${i}` },
          onclick: () => this.download(rec),
        }, icon('download'), t('rooms.download', {
          duration: formatDuration(rec.duration_s), size: formatSize(rec.bytes),
        }))))));
  }

  async download(rec) {
    try {
      const blob = await this.api.recordingAudio(rec.url);
      const url = URL.createObjectURL(blob);
      const a = h('a', { href: url, download: `room-${rec.room_id}-${rec.recording_id}.opus`, hidden: true });
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 60000);
    } catch (err) {
      toast(roomErrorText(err), { kind: 'error' });
    }
  }

  /** Fast read-outs: the level meter and what the analyser hears (tests read these). */
  tick() {
    const section = this.root?.querySelector('#room');
    if (!section) return;
    const r = this.rooms;
    section.dataset.remoteHz = String(r.hz || 0);
    section.dataset.remoteDb = String(Number.isFinite(r.db) ? r.db : -200);
    section.dataset.peaks = r.peaks.map((p) => p.hz).join(',');
    section.dataset.peakLevels = r.peaks.map((p) => `${p.hz}:${p.db}`).join(',');
    section.dataset.media = r.media;
    section.dataset.audio = r.audioState;
    const meter = section.querySelector('.room-level');
    if (meter) {
      const level = Number.isFinite(r.db) ? Math.max(0, Math.min(1, (r.db + 100) / 70)) : 0;
      meter.style.setProperty('--level', level.toFixed(2));
    }
    const blocked = !!r.remote?.blocked;
    const button = section.querySelector('[data-focus="resume-audio"]');
    if (blocked !== !!button && r.phase === 'in') this.drawRoom();
  }
}

function formatSize(bytes) {
  if (bytes >= 1e6) return `${(bytes / 1e6).toFixed(1)} MB`;
  return `${Math.max(1, Math.round(bytes / 1e3))} kB`;
}
