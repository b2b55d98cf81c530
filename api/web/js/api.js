// The public REST API (API.md), and nothing else. Errors arrive as ApiError with the
// server's {code, message}; a request that never reached the server has code 'network'.

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
  }
}

export class Api {
  /** `token()` gives the current bearer token; `onExpired()` runs when it is refused. */
  constructor({ token, onExpired }) {
    this.token = token;
    this.onExpired = onExpired;
  }

  async request(method, path, body = undefined, { auth = true } = {}) {
    const headers = { Accept: 'application/json' };
    const token = auth ? this.token() : null;
    if (token) headers.Authorization = `Bearer ${token}`;
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    let response;
    try {
      response = await fetch(path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        cache: 'no-store',
        credentials: 'omit',
      });
    } catch (err) {
      throw new ApiError(0, 'network', err?.message || 'network error');
    }
    if (response.status === 204) return null;
    let data = null;
    try {
      data = await response.json();
    } catch {
      data = null;
    }
    if (!response.ok) {
      const error = data?.error || {};
      const failure = new ApiError(
        response.status, error.code || `http_${response.status}`, error.message || response.statusText,
      );
      if (response.status === 401 && token) this.onExpired?.(failure);
      throw failure;
    }
    return data;
  }

  // users and sessions
  signUp(username, password, displayName) {
    const body = { username, password };
    if (displayName) body.display_name = displayName;
    return this.request('POST', '/v1/users', body, { auth: false });
  }
  logIn(username, password) {
    return this.request('POST', '/v1/sessions', { username, password }, { auth: false });
  }
  me() { return this.request('GET', '/v1/me'); }
  updateMe(changes) { return this.request('PATCH', '/v1/me', changes); }

  // contacts
  contacts() { return this.request('GET', '/v1/contacts'); }
  addContact(username, group) {
    const body = { username };
    if (group) body.group = group;
    return this.request('POST', '/v1/contacts', body);
  }
  removeContact(username) {
    return this.request('DELETE', `/v1/contacts/${encodeURIComponent(username)}`);
  }
  matchPhones(phones) { return this.request('POST', '/v1/contacts/match', { phones }); }

  // calls
  placeCall(to, sdp) { return this.request('POST', '/v1/calls', { to, sdp }); }
  answer(callId, sdp, deviceId) {
    return this.request('POST', `/v1/calls/${encodeURIComponent(callId)}/answer`, {
      sdp, device_id: deviceId || undefined,
    });
  }
  decline(callId) { return this.request('POST', `/v1/calls/${encodeURIComponent(callId)}/decline`); }
  hangup(callId) { return this.request('POST', `/v1/calls/${encodeURIComponent(callId)}/hangup`); }
  dtmf(callId, digits) {
    return this.request('POST', `/v1/calls/${encodeURIComponent(callId)}/dtmf`, { digits });
  }
  call(callId) { return this.request('GET', `/v1/calls/${encodeURIComponent(callId)}`); }
  history(limit = 50) { return this.request('GET', `/v1/calls?limit=${limit}`); }

  // ringback tones (when the server has them: features.js)
  tones({ q = '', category = '', limit = 100 } = {}) {
    const query = new URLSearchParams({ limit: String(limit) });
    if (q) query.set('q', q);
    if (category) query.set('category', category);
    return this.request('GET', `/v1/ringback/tones?${query}`);
  }
  toneCategories() { return this.request('GET', '/v1/ringback/categories'); }
  /** The tone's audio as a Blob (the endpoint needs the bearer token, so no plain <audio src>). */
  async toneAudio(toneId) {
    let response;
    try {
      response = await fetch(`/v1/ringback/tones/${encodeURIComponent(toneId)}/audio`, {
        headers: { Authorization: `Bearer ${this.token()}` }, credentials: 'omit',
      });
    } catch (err) {
      throw new ApiError(0, 'network', err?.message || 'network error');
    }
    if (!response.ok) throw new ApiError(response.status, 'tone_not_found', response.statusText);
    return response.blob();
  }
  /** Uploads a personal tone (multipart: file, title). */
  async uploadTone(file, title) {
    const form = new FormData();
    form.append('title', title);
    form.append('file', file);
    let response;
    try {
      response = await fetch('/v1/ringback/tones', {
        method: 'POST', body: form, headers: { Authorization: `Bearer ${this.token()}` },
        credentials: 'omit',
      });
    } catch (err) {
      throw new ApiError(0, 'network', err?.message || 'network error');
    }
    const data = await response.json().catch(() => null);
    if (!response.ok) {
      const error = data?.error || {};
      if (response.status === 401) this.onExpired?.();
      throw new ApiError(response.status, error.code || `http_${response.status}`,
        error.message || response.statusText);
    }
    return data;
  }
  ringback() { return this.request('GET', '/v1/me/ringback'); }
  putRingback(setting) { return this.request('PUT', '/v1/me/ringback', setting); }
  ringbackPreview(caller) {
    const query = caller ? `?caller=${encodeURIComponent(caller)}` : '';
    return this.request('GET', `/v1/me/ringback/preview${query}`);
  }
  toneBox() { return this.request('GET', '/v1/me/ringback/box'); }
  getTone(toneId) { return this.request('POST', '/v1/me/ringback/box', { tone_id: toneId }); }
  removeFromBox(toneId) {
    return this.request('DELETE', `/v1/me/ringback/box/${encodeURIComponent(toneId)}`);
  }

  // rooms (API.md "Rooms"; lock, mute_all and recordings are extensions of this server)
  createRoom(settings) { return this.request('POST', '/v1/rooms', settings); }
  rooms() { return this.request('GET', '/v1/rooms'); }
  room(roomId) { return this.request('GET', `/v1/rooms/${encodeURIComponent(roomId)}`); }
  joinRoom(roomId, sdp, pin) {
    const body = { sdp };
    if (pin) body.pin = pin;
    return this.request('POST', `/v1/rooms/${encodeURIComponent(roomId)}/participants`, body);
  }
  setParticipantMuted(roomId, participantId, muted) {
    return this.request('PATCH', `/v1/rooms/${encodeURIComponent(roomId)}/participants/`
      + `${encodeURIComponent(participantId)}`, { muted });
  }
  removeParticipant(roomId, participantId) {
    return this.request('DELETE', `/v1/rooms/${encodeURIComponent(roomId)}/participants/`
      + `${encodeURIComponent(participantId)}`);
  }
  /** Leaves without waiting, even while the page unloads (keepalive). */
  leaveRoomOnUnload(roomId, participantId) {
    const token = this.token();
    if (!token) return;
    try {
      fetch(`/v1/rooms/${encodeURIComponent(roomId)}/participants/`
        + `${encodeURIComponent(participantId)}`, {
        method: 'DELETE', keepalive: true, credentials: 'omit',
        headers: { Authorization: `Bearer ${token}` },
      }).catch(() => {});
    } catch {
      // the page is going away: the server drops the participant when its media stops
    }
  }
  setRoomLocked(roomId, locked) {
    return this.request('POST', `/v1/rooms/${encodeURIComponent(roomId)}/${locked ? 'lock' : 'unlock'}`);
  }
  muteAll(roomId, muted) {
    return this.request('POST',
      `/v1/rooms/${encodeURIComponent(roomId)}/${muted ? 'mute_all' : 'unmute_all'}`);
  }
  endRoom(roomId) { return this.request('DELETE', `/v1/rooms/${encodeURIComponent(roomId)}`); }
  recordings(roomId) {
    return this.request('GET', `/v1/rooms/${encodeURIComponent(roomId)}/recordings`);
  }
  /** A recording's audio as a Blob (the endpoint needs the bearer token). */
  recordingAudio(url) { return this.blob(url, 'recording_not_found'); }

  // hotlines and operator queues
  hotlines() { return this.request('GET', '/v1/hotlines'); }
  queue(name) { return this.request('GET', `/v1/queues/${encodeURIComponent(name)}`); }
  joinQueue(name) {
    return this.request('POST', `/v1/queues/${encodeURIComponent(name)}/agents`);
  }
  leaveQueue(name) {
    return this.request('DELETE', `/v1/queues/${encodeURIComponent(name)}/agents/me`);
  }
  setAgentState(state) { return this.request('PUT', '/v1/agents/me', { state }); }

  /** GET `path` with the bearer token, as a Blob. */
  async blob(path, notFoundCode) {
    let response;
    try {
      response = await fetch(path, {
        headers: { Authorization: `Bearer ${this.token()}` }, credentials: 'omit', cache: 'no-store',
      });
    } catch (err) {
      throw new ApiError(0, 'network', err?.message || 'network error');
    }
    if (!response.ok) {
      const data = await response.json().catch(() => null);
      if (response.status === 401) this.onExpired?.();
      throw new ApiError(response.status, data?.error?.code || notFoundCode,
        data?.error?.message || response.statusText);
    }
    return response.blob();
  }

  // what this server offers (the OpenAPI document agrees with API.md)
  openapi() { return this.request('GET', '/openapi.json', undefined, { auth: false }); }
}
