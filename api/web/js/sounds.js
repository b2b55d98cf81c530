// Sounds made in the browser with WebAudio: the ring of an incoming call and keypad beeps.
// (The caller's ringback comes from the server, on the call's own audio.)

const DTMF = {
  1: [697, 1209], 2: [697, 1336], 3: [697, 1477],
  4: [770, 1209], 5: [770, 1336], 6: [770, 1477],
  7: [852, 1209], 8: [852, 1336], 9: [852, 1477],
  '*': [941, 1209], 0: [941, 1336], '#': [941, 1477],
};

export class Sounds {
  constructor() {
    this.ctx = null;
    this.ringTimer = null;
    this.ringGain = null;
  }

  /** The shared AudioContext (created on first use; resumed on any user gesture). */
  context() {
    if (!this.ctx) {
      const Ctor = window.AudioContext || window.webkitAudioContext;
      if (!Ctor) return null;
      this.ctx = new Ctor({ latencyHint: 'interactive' });
    }
    return this.ctx;
  }

  /** Browsers start audio suspended until the person interacts; true when sound can play. */
  get allowed() {
    return this.ctx?.state === 'running';
  }

  unlock() {
    const ctx = this.context();
    if (ctx && ctx.state !== 'running') ctx.resume().catch(() => {});
  }

  get ringing() {
    return this.ringTimer !== null;
  }

  /** A soft two-note chime, repeated every 3 s until stopRing(). */
  startRing() {
    const ctx = this.context();
    if (!ctx || this.ringing) return;
    this.ringGain = ctx.createGain();
    this.ringGain.gain.value = 0.25;
    this.ringGain.connect(ctx.destination);
    const ringOnce = () => {
      const t = ctx.currentTime + 0.05;
      [[659.25, 0], [830.61, 0.18], [659.25, 0.36], [830.61, 0.54], [987.77, 0.72]]
        .forEach(([hz, at]) => this.note(hz, t + at, 0.5, this.ringGain));
    };
    ringOnce();
    this.ringTimer = setInterval(ringOnce, 3000);
  }

  stopRing() {
    clearInterval(this.ringTimer);
    this.ringTimer = null;
    if (this.ringGain) {
      const gain = this.ringGain;
      this.ringGain = null;
      gain.gain.setTargetAtTime(0, this.ctx.currentTime, 0.02);
      setTimeout(() => gain.disconnect(), 200);
    }
  }

  /** The two tones of a keypad digit, 120 ms, quietly. */
  beep(digit) {
    const ctx = this.context();
    const pair = DTMF[digit];
    if (!ctx || !pair) return;
    const gain = ctx.createGain();
    gain.gain.value = 0.08;
    gain.connect(ctx.destination);
    const t = ctx.currentTime;
    for (const hz of pair) {
      const osc = ctx.createOscillator();
      osc.frequency.value = hz;
      osc.connect(gain);
      osc.start(t);
      osc.stop(t + 0.12);
    }
    setTimeout(() => gain.disconnect(), 300);
  }

  note(hz, at, length, destination) {
    const osc = this.ctx.createOscillator();
    const env = this.ctx.createGain();
    osc.type = 'sine';
    osc.frequency.value = hz;
    env.gain.setValueAtTime(0, at);
    env.gain.linearRampToValueAtTime(1, at + 0.015);
    env.gain.exponentialRampToValueAtTime(0.001, at + length);
    osc.connect(env).connect(destination);
    osc.start(at);
    osc.stop(at + length + 0.05);
  }
}
