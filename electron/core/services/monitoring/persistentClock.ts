import type { Clock } from '../../base/clock.js';
import type { TimeStamp } from './lockStore.js';

/**
 * Monotonic milliseconds that survive restarts: lock expiry and heartbeat ages are measured on it.
 *
 * While the console runs, the basis advances only with `Clock.monotonic()`, so a wall-clock jump
 * neither frees nor extends a lock. Every lock write also stores the pair (basis, wall). At start
 * the basis resumes from the last stored pair plus the wall-clock time since it was stored, clamped
 * at zero. So:
 * - a lock that expired before the restart (or while the console was down) is still expired;
 * - an acknowledged lock keeps what was left of its TTL, minus the downtime;
 * - a wall clock set back while the console was down counts as zero downtime: the lock then keeps
 *   at most the TTL it had left, never more than was acknowledged.
 * The one exposure to the wall clock is the span between the last stored pair and the restart; the
 * monitor loop stores the pair on every check to keep that span short.
 */
export class PersistentClock {
  private startBasis = 0;
  private startMono: number;

  constructor(private readonly clock: Clock) {
    this.startMono = clock.monotonic();
  }

  /** Resumes from the last stored pair (at start, before any lock operation). */
  resume(last: TimeStamp | undefined): void {
    this.startMono = this.clock.monotonic();
    this.startBasis = last ? last.basis + Math.max(0, this.clock.now() - last.wall) : 0;
  }

  /** Milliseconds on the persistent monotonic basis. */
  basis(): number {
    return this.startBasis + (this.clock.monotonic() - this.startMono);
  }

  stamp(): TimeStamp {
    return { basis: this.basis(), wall: this.clock.now() };
  }

  /** Wall-clock Unix ms that corresponds to a basis time (for display only). */
  toWall(basis: number): number {
    return this.clock.now() + (basis - this.basis());
  }
}
