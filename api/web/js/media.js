// Microphone, peer connection and what the app hears. The server answers one Opus audio
// stream; offers go out complete (non-trickle), so we wait for ICE gathering to finish.

const GATHER_TIMEOUT_MS = 5000;

/** Why the microphone is not available: 'insecure' | 'denied' | 'missing' | 'busy' | 'unknown'. */
export class MicError extends Error {
  constructor(kind, cause) {
    super(`microphone: ${kind}`);
    this.name = 'MicError';
    this.kind = kind;
    this.cause = cause;
  }
}

export async function getMicrophone() {
  if (!window.isSecureContext || !navigator.mediaDevices?.getUserMedia) {
    throw new MicError('insecure');
  }
  try {
    return await navigator.mediaDevices.getUserMedia({ audio: true, video: false });
  } catch (err) {
    const kinds = {
      NotAllowedError: 'denied',
      SecurityError: 'denied',
      PermissionDeniedError: 'denied',
      NotFoundError: 'missing',
      DevicesNotFoundError: 'missing',
      OverconstrainedError: 'missing',
      NotReadableError: 'busy',
      TrackStartError: 'busy',
      AbortError: 'busy',
    };
    throw new MicError(kinds[err?.name] || 'unknown', err);
  }
}

export function stopStream(stream) {
  for (const track of stream?.getTracks() || []) track.stop();
}

/**
 * A peer connection sending `stream`'s audio. `onRemote(stream)` gets the far end's audio,
 * `onState(connectionState)` every transport change.
 */
export function createPeer(stream, { onRemote, onState }) {
  // No ICE servers: the server's address is reachable directly (it gives its own host
  // candidates); an empty list also keeps the browser from contacting a third party.
  const pc = new RTCPeerConnection({ iceServers: [], bundlePolicy: 'max-bundle' });
  for (const track of stream.getAudioTracks()) pc.addTrack(track, stream);
  pc.ontrack = (ev) => onRemote(ev.streams[0] || new MediaStream([ev.track]));
  pc.onconnectionstatechange = () => onState(pc.connectionState);
  return pc;
}

/** Creates the offer and waits for every ICE candidate to be in it. */
export async function completeOffer(pc) {
  await pc.setLocalDescription(await pc.createOffer());
  if (pc.iceGatheringState !== 'complete') {
    await new Promise((resolve) => {
      const timer = setTimeout(done, GATHER_TIMEOUT_MS); // send what we have by then
      function done() {
        clearTimeout(timer);
        pc.removeEventListener('icegatheringstatechange', check);
        resolve();
      }
      function check() {
        if (pc.iceGatheringState === 'complete') done();
      }
      pc.addEventListener('icegatheringstatechange', check);
    });
  }
  return pc.localDescription.sdp;
}

/**
 * Plays the far end's audio and measures it: `read()` gives the dominant frequency and level,
 * which the call screen shows as a level meter (and tests read from data attributes).
 */
export class RemoteAudio {
  constructor(audioContext, element) {
    this.ctx = audioContext;
    this.element = element;
    this.stream = null;
    this.source = null;
    this.analyser = null;
    this.bins = null;
    this.playFailed = false;
    // A context made without a user gesture (a page reloaded in a room) starts suspended;
    // when it runs later, the analyser is built again: a source made while suspended may
    // stay silent.
    this.onContextState = () => {
      if (this.ctx.state === 'running' && this.stream) this.listen();
    };
  }

  attach(stream) {
    this.detach();
    this.stream = stream;
    this.element.srcObject = stream;
    this.playFailed = false;
    // Autoplay policy may refuse; the call screen then offers a button (a user gesture).
    this.element.play().catch(() => { this.playFailed = true; });
    if (!this.ctx) return;
    this.ctx.addEventListener('statechange', this.onContextState);
    this.listen();
    this.wake();
  }

  /** Asks a suspended context to run (allowed once the page may play sound). */
  wake() {
    if (this.ctx && this.ctx.state === 'suspended') this.ctx.resume().catch(() => {});
  }

  listen() {
    // Chrome only feeds a remote WebRTC stream into WebAudio while a media element plays it,
    // which the <audio> element above does.
    this.source?.disconnect();
    this.source = this.ctx.createMediaStreamSource(this.stream);
    this.analyser = this.ctx.createAnalyser();
    this.analyser.fftSize = 8192;
    this.analyser.smoothingTimeConstant = 0.5;
    this.bins = new Float32Array(this.analyser.frequencyBinCount);
    this.source.connect(this.analyser);
  }

  get blocked() {
    return this.playFailed && !!this.element.srcObject && this.element.paused;
  }

  async resume() {
    this.ctx?.resume().catch(() => {});
    await this.element.play();
    this.playFailed = false;
  }

  /** {hz, db}: the strongest frequency between 60 Hz and 4 kHz and its level (dBFS). */
  read() {
    if (!this.analyser) return { hz: 0, db: -Infinity };
    this.analyser.getFloatFrequencyData(this.bins);
    const binHz = this.ctx.sampleRate / this.analyser.fftSize;
    let best = -1;
    let bestDb = -Infinity;
    const last = Math.min(this.bins.length - 1, Math.floor(4000 / binHz));
    for (let i = Math.ceil(60 / binHz); i <= last; i += 1) {
      if (this.bins[i] > bestDb) {
        bestDb = this.bins[i];
        best = i;
      }
    }
    if (best < 0 || bestDb < -100) return { hz: 0, db: bestDb };
    return { hz: Math.round(best * binHz), db: Math.round(bestDb) };
  }

  /**
   * The distinct tones in what is heard: [{hz, db}] (strongest first) of the spectral peaks
   * within `rangeDb` of the strongest one and above `floorDb`. A room's mix of several
   * voices (or test tones) shows as several peaks; the room screen exposes them to tests.
   */
  peaks({ rangeDb = 30, floorDb = -85, max = 8, minGapHz = 40 } = {}) {
    if (!this.analyser) return [];
    this.analyser.getFloatFrequencyData(this.bins);
    const binHz = this.ctx.sampleRate / this.analyser.fftSize;
    const first = Math.ceil(60 / binHz);
    const last = Math.min(this.bins.length - 2, Math.floor(4000 / binHz));
    let top = -Infinity;
    for (let i = first; i <= last; i += 1) top = Math.max(top, this.bins[i]);
    const threshold = Math.max(top - rangeDb, floorDb);
    const found = [];
    for (let i = first; i <= last; i += 1) {
      const v = this.bins[i];
      if (v >= threshold && v >= this.bins[i - 1] && v > this.bins[i + 1]) found.push([i * binHz, v]);
    }
    found.sort((x, y) => y[1] - x[1]);
    const chosen = [];
    for (const [hz, db] of found) {
      if (chosen.every((c) => Math.abs(c.hz - hz) >= minGapHz)) chosen.push({ hz, db });
      if (chosen.length >= max) break;
    }
    return chosen.map(({ hz, db }) => ({ hz: Math.round(hz), db: Math.round(db) }));
  }

  detach() {
    this.ctx?.removeEventListener('statechange', this.onContextState);
    this.stream = null;
    this.source?.disconnect();
    this.source = this.analyser = null;
    this.element.pause();
    this.element.srcObject = null;
  }
}
