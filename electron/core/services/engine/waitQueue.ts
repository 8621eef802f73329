import { PRIORITY_RANK, type Priority } from '../../../../shared/contracts/priority.js';
import { AppError, ErrorCode } from '../../base/errors.js';

/** Where a waiting request stands. */
export interface QueuePosition {
  /** 1-based place among the requests waiting for the same model (0 = not waiting). */
  position: number;
  /** Estimated milliseconds until it gets a sequence. */
  etaMs: number;
}

interface Waiter {
  id: string;
  key: string;
  priority: Priority;
  order: number;
  enqueuedAt: number;
  resolve: () => void;
  reject: (err: unknown) => void;
  onPosition?: (p: QueuePosition) => void;
  lastPosition: number;
  cleanup: () => void;
}

export interface WaitQueueOptions {
  /** Most requests that may wait, all keys together. */
  maxSize: () => number;
  /** Estimated wait (ms) for the request at `position` waiting for `key`. */
  estimate: (key: string, position: number) => number;
  now: () => number;
}

/** A waiting request as listed by the status endpoint. */
export interface WaitingRequest {
  id: string;
  modelId: string;
  priority: Priority;
  position: number;
  etaMs: number;
  waitedMs: number;
}

/**
 * Requests waiting for a context sequence, ordered by X-Priority (urgent first), then arrival.
 * Keyed by model: a free sequence of model A is offered only to requests for A. Bounded: a
 * request beyond `maxSize` is refused with 429 RATE_LIMITED and a Retry-After.
 */
export class WaitQueue {
  private readonly waiters: Waiter[] = [];
  private order = 0;

  constructor(private readonly options: WaitQueueOptions) {}

  get size(): number {
    return this.waiters.length;
  }

  sizeFor(key: string): number {
    let n = 0;
    for (const w of this.waiters) if (w.key === key) n++;
    return n;
  }

  depthByPriority(): Record<Priority, number> {
    const out: Record<Priority, number> = { urgent: 0, high: 0, normal: 0, low: 0 };
    for (const w of this.waiters) out[w.priority]++;
    return out;
  }

  /** Throws 429 when the queue is full (a Retry-After from the estimate of the last place). */
  assertRoom(key: string): void {
    const max = this.options.maxSize();
    if (this.waiters.length >= max) {
      const eta = this.options.estimate(key, this.sizeFor(key) + 1);
      const retryAfter = Math.max(1, Math.ceil(eta / 1000));
      throw new AppError(ErrorCode.RATE_LIMITED, `Engine queue is full (${this.waiters.length}/${max} requests waiting); retry after ${retryAfter}s`, {
        type: 'QueueFullError',
        headers: { 'retry-after': String(retryAfter) },
      });
    }
  }

  /**
   * Waits until `grant` hands this request a slot. Resolves then; rejects with the signal's reason
   * when aborted while waiting (the place is given up at once).
   */
  wait(id: string, key: string, priority: Priority, signal: AbortSignal | undefined, onPosition?: (p: QueuePosition) => void): Promise<void> {
    this.assertRoom(key);
    return new Promise<void>((resolve, reject) => {
      const onAbort = () => {
        this.remove(waiter);
        reject(signal?.reason ?? new Error('aborted'));
      };
      const waiter: Waiter = {
        id,
        key,
        priority,
        order: this.order++,
        enqueuedAt: this.options.now(),
        resolve,
        reject,
        onPosition,
        lastPosition: 0,
        cleanup: () => signal?.removeEventListener('abort', onAbort),
      };
      if (signal?.aborted) {
        reject(signal.reason ?? new Error('aborted'));
        return;
      }
      signal?.addEventListener('abort', onAbort, { once: true });
      // Insert in priority order (stable within a priority).
      const rank = PRIORITY_RANK[priority];
      let i = this.waiters.length;
      while (i > 0 && PRIORITY_RANK[this.waiters[i - 1]!.priority] > rank) i--;
      this.waiters.splice(i, 0, waiter);
      this.notify(key);
    });
  }

  /** Hands a freed slot of `key` to the first waiter for it; false when nobody waits. */
  grant(key: string): boolean {
    return this.grantWhere((k) => k === key);
  }

  /** Wakes the first waiter (by priority, then arrival) whose key matches; false when none does. */
  grantWhere(match: (key: string) => boolean): boolean {
    const i = this.waiters.findIndex((w) => match(w.key));
    if (i < 0) return false;
    const [w] = this.waiters.splice(i, 1);
    w!.cleanup();
    w!.resolve();
    this.notify(w!.key);
    return true;
  }

  /** Rejects every waiter (of one key, or all), e.g. when the model fails or the engine stops. */
  rejectAll(err: unknown, key?: string): void {
    for (const w of [...this.waiters]) {
      if (key !== undefined && w.key !== key) continue;
      this.remove(w);
      w.reject(err);
    }
  }

  list(): WaitingRequest[] {
    const positions = new Map<string, number>();
    const now = this.options.now();
    return this.waiters.map((w) => {
      const position = (positions.get(w.key) ?? 0) + 1;
      positions.set(w.key, position);
      return { id: w.id, modelId: w.key.replace(/^load:/, '').replace(/#embed$/, ''), priority: w.priority, position, etaMs: Math.round(this.options.estimate(w.key, position)), waitedMs: Math.round(now - w.enqueuedAt) };
    });
  }

  private remove(w: Waiter): void {
    const i = this.waiters.indexOf(w);
    if (i >= 0) this.waiters.splice(i, 1);
    w.cleanup();
    this.notify(w.key);
  }

  /** Tells each waiter of `key` whose place changed where it now stands. */
  private notify(key: string): void {
    let position = 0;
    for (const w of this.waiters) {
      if (w.key !== key) continue;
      position++;
      if (w.lastPosition !== position) {
        w.lastPosition = position;
        w.onPosition?.({ position, etaMs: Math.round(this.options.estimate(key, position)) });
      }
    }
  }
}

