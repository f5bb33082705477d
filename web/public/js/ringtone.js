// A ringtone synthesised with WebAudio: two mixed sine oscillators (440 Hz + 480 Hz, the North
// American ring signal) gated by a looping "ring-ring ... pause" envelope. No audio file needed.

const ON = 0.4; // seconds of tone per burst
const GAP = 0.2; // silence between the two bursts
const PERIOD = 3.0; // one full ring-ring cycle

export class Ringtone {
  constructor() {
    this.ctx = null;
    this.timer = null;
    this.nodes = [];
  }

  get playing() {
    return this.timer !== null;
  }

  /** Debug: the AudioContext state ("running" means sound is really coming out). */
  get audioState() {
    return this.ctx ? this.ctx.state : 'none';
  }

  start() {
    if (this.playing) return;
    const Ctx = window.AudioContext || window.webkitAudioContext;
    if (!Ctx) return;
    if (!this.ctx || this.ctx.state === 'closed') this.ctx = new Ctx();
    // Autoplay policy: a context created without a user gesture may start suspended. Try now,
    // and again on the next click anywhere (the user reaching for Accept counts).
    this.ctx.resume().catch(() => {});
    this._unlock = () => this.ctx && this.ctx.resume().catch(() => {});
    document.addEventListener('pointerdown', this._unlock, { once: true });

    const gain = this.ctx.createGain();
    gain.gain.value = 0;
    gain.connect(this.ctx.destination);
    const oscs = [440, 480].map((f) => {
      const o = this.ctx.createOscillator();
      o.type = 'sine';
      o.frequency.value = f;
      o.connect(gain);
      o.start();
      return o;
    });
    this.nodes = [gain, ...oscs];

    const schedule = () => {
      const t = this.ctx.currentTime + 0.05;
      const g = gain.gain;
      for (const start of [t, t + ON + GAP]) {
        g.setValueAtTime(0, start);
        g.linearRampToValueAtTime(0.18, start + 0.02);
        g.setValueAtTime(0.18, start + ON - 0.02);
        g.linearRampToValueAtTime(0, start + ON);
      }
    };
    schedule();
    this.timer = setInterval(schedule, PERIOD * 1000);
  }

  stop() {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
    if (this._unlock) document.removeEventListener('pointerdown', this._unlock);
    for (const n of this.nodes) {
      try {
        if (n.stop) n.stop();
        n.disconnect();
      } catch {
        /* already stopped */
      }
    }
    this.nodes = [];
    if (this.ctx) {
      this.ctx.close().catch(() => {});
      this.ctx = null;
    }
  }
}
