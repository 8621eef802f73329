import type { Clock } from '../../base/clock.js';

/**
 * Token bucket on the injected clock (contract §6.4): refill `rpm/60` tokens per second, capped at
 * `capacity`, starts full, one token per upstream request. `pause()` honours an upstream
 * `Retry-After`: no token is handed out until it ends, and the bucket does not burst afterwards.
 */
export class TokenBucket {
  private level: number;
  private last: number;
  private pausedUntil = 0;

  constructor(
    private readonly clock: Clock,
    private rpm: number,
    private cap: number,
  ) {
    this.level = cap;
    this.last = clock.monotonic();
  }

  get capacity(): number {
    return this.cap;
  }
  get ratePerMinute(): number {
    return this.rpm;
  }

  /** Current tokens after refill. */
  tokens(): number {
    this.refill();
    return this.level;
  }

  /** Takes one token if one is there and no pause is active. */
  tryTake(): boolean {
    this.refill();
    if (this.clock.monotonic() < this.pausedUntil) return false;
    if (this.level < 1) return false;
    this.level -= 1;
    return true;
  }

  /** Milliseconds until `tryTake()` can succeed (0 = now). */
  msUntilToken(): number {
    this.refill();
    const now = this.clock.monotonic();
    const pause = Math.max(0, this.pausedUntil - now);
    if (this.level >= 1) return pause;
    const refill = ((1 - this.level) / this.rpm) * 60_000;
    return Math.max(pause, refill);
  }

  setRate(rpm: number): void {
    this.refill();
    this.rpm = rpm;
  }

  setCapacity(capacity: number): void {
    this.refill();
    this.cap = capacity;
    this.level = Math.min(this.level, capacity);
  }

  /** Stops handing out tokens for `ms` and drops any burst, so sending resumes at the refill rate. */
  pause(ms: number): void {
    this.refill();
    this.pausedUntil = Math.max(this.pausedUntil, this.clock.monotonic() + ms);
    this.level = Math.min(this.level, 1);
  }

  /** Milliseconds of pause left. */
  pauseLeftMs(): number {
    return Math.max(0, this.pausedUntil - this.clock.monotonic());
  }

  private refill(): void {
    const now = this.clock.monotonic();
    // Nothing accrues during a pause: after Retry-After the bucket resumes at its rate, without a burst.
    const from = Math.max(this.last, this.pausedUntil);
    if (now > from) this.level = Math.min(this.cap, this.level + ((now - from) / 60_000) * this.rpm);
    if (now > this.last) this.last = now;
  }
}
