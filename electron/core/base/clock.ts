/**
 * Time source for everything that depends on time (token buckets, TTLs, heartbeats, periodic tasks).
 * Production uses {@link SystemClock}; tests use {@link FakeClock} to run minutes of behaviour in
 * milliseconds without sleeping.
 */
export interface TimerHandle {
  /** Cancels the timer; safe to call twice. */
  cancel(): void;
}

export interface Clock {
  /** Wall-clock time in milliseconds since the Unix epoch (for timestamps shown to people). */
  now(): number;
  /** Monotonic milliseconds (for durations, TTLs and expiry): never jumps with the wall clock. */
  monotonic(): number;
  /** Runs `fn` once after `ms` milliseconds. The timer never keeps the process alive by itself. */
  setTimeout(fn: () => void, ms: number): TimerHandle;
  /** Runs `fn` every `ms` milliseconds until cancelled. Never keeps the process alive by itself. */
  setInterval(fn: () => void, ms: number): TimerHandle;
  /** Resolves after `ms` milliseconds of this clock's time. */
  sleep(ms: number): Promise<void>;
}

/** The real clock: `Date.now()`, `performance.now()` and unref'd Node timers. */
export class SystemClock implements Clock {
  now(): number {
    return Date.now();
  }
  monotonic(): number {
    return performance.now();
  }
  setTimeout(fn: () => void, ms: number): TimerHandle {
    const t = setTimeout(fn, ms);
    t.unref();
    return { cancel: () => clearTimeout(t) };
  }
  setInterval(fn: () => void, ms: number): TimerHandle {
    const t = setInterval(fn, ms);
    t.unref();
    return { cancel: () => clearInterval(t) };
  }
  sleep(ms: number): Promise<void> {
    return new Promise((resolve) => setTimeout(resolve, ms));
  }
}

interface FakeTimer {
  id: number;
  at: number;
  every: number | null;
  fn: () => void;
}

/**
 * A manually driven clock for tests. `advance(ms)` moves both wall and monotonic time forward and
 * fires due timers in order. `jumpWall(ms)` moves only the wall clock (to test that expiry uses the
 * monotonic clock).
 */
export class FakeClock implements Clock {
  private wall: number;
  private mono = 0;
  private nextId = 1;
  private timers: FakeTimer[] = [];

  constructor(startWallMs = Date.UTC(2025, 0, 1)) {
    this.wall = startWallMs;
  }
  now(): number {
    return this.wall;
  }
  monotonic(): number {
    return this.mono;
  }
  setTimeout(fn: () => void, ms: number): TimerHandle {
    return this.add(fn, ms, null);
  }
  setInterval(fn: () => void, ms: number): TimerHandle {
    return this.add(fn, ms, Math.max(1, ms));
  }
  sleep(ms: number): Promise<void> {
    return new Promise((resolve) => this.setTimeout(resolve, ms));
  }
  /** Moves time forward by `ms`, firing every timer that falls due, in time order. */
  advance(ms: number): void {
    const target = this.mono + ms;
    for (;;) {
      const due = this.timers.filter((t) => t.at <= target).sort((a, b) => a.at - b.at || a.id - b.id)[0];
      if (!due) break;
      this.wall += due.at - this.mono;
      this.mono = due.at;
      if (due.every === null) this.timers = this.timers.filter((t) => t !== due);
      else due.at += due.every;
      due.fn();
    }
    this.wall += target - this.mono;
    this.mono = target;
  }
  /** Moves time forward and lets pending promise callbacks run after each fired timer. */
  async advanceAsync(ms: number, stepMs = ms): Promise<void> {
    let left = ms;
    while (left > 0) {
      const step = Math.min(stepMs, left);
      this.advance(step);
      left -= step;
      await new Promise<void>((r) => setImmediate(r));
    }
  }
  /** Jumps the wall clock only; monotonic time and timers are unaffected. */
  jumpWall(ms: number): void {
    this.wall += ms;
  }
  /** Number of timers still scheduled (tests use it to check that stop() cancelled everything). */
  pendingTimers(): number {
    return this.timers.length;
  }
  private add(fn: () => void, ms: number, every: number | null): TimerHandle {
    const timer: FakeTimer = { id: this.nextId++, at: this.mono + Math.max(0, ms), every, fn };
    this.timers.push(timer);
    return { cancel: () => (this.timers = this.timers.filter((t) => t !== timer)) };
  }
}
