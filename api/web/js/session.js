// Where the session lives: sessionStorage (this tab) unless the person asked to be
// remembered (localStorage). The token never goes into a URL except the events socket's.

const KEY = 'chorus.session';
const DEVICE = 'chorus.device';
const CALL = 'chorus.call';

function read(storage, key) {
  try {
    return JSON.parse(storage.getItem(key) || 'null');
  } catch {
    return null;
  }
}

export function loadSession() {
  const session = read(sessionStorage, KEY) || read(localStorage, KEY);
  if (!session?.token) return null;
  if (session.expires_at && Date.parse(session.expires_at) <= Date.now()) {
    clearSession();
    return null;
  }
  return session;
}

export function saveSession({ token, expires_at, user }, remember) {
  clearSession();
  const storage = remember ? localStorage : sessionStorage;
  storage.setItem(KEY, JSON.stringify({ token, expires_at, user, remember: !!remember }));
}

export function updateUser(session, user) {
  session.user = user;
  const storage = session.remember ? localStorage : sessionStorage;
  storage.setItem(KEY, JSON.stringify(session));
}

export function clearSession() {
  sessionStorage.removeItem(KEY);
  localStorage.removeItem(KEY);
  sessionStorage.removeItem(CALL);
}

/** This tab's device id: kept across reloads so the server sees the same device come back. */
export function deviceId() {
  let id = sessionStorage.getItem(DEVICE);
  if (!id || !/^[A-Za-z0-9_-]{1,64}$/.test(id)) {
    const bytes = crypto.getRandomValues(new Uint8Array(8));
    id = `web-${Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('')}`;
    sessionStorage.setItem(DEVICE, id);
  }
  return id;
}

export function setDeviceId(id) {
  if (/^[A-Za-z0-9_-]{1,64}$/.test(id)) sessionStorage.setItem(DEVICE, id);
}

/** The call this tab is in, so a reload can find it again. */
export function rememberCall(call) {
  if (call) sessionStorage.setItem(CALL, JSON.stringify(call));
  else sessionStorage.removeItem(CALL);
}

export function rememberedCall() {
  return read(sessionStorage, CALL);
}
