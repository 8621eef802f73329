import { PRIORITIES, PRIORITY_RANK, type Priority } from '../../../../shared/contracts/priority.js';
import type { LimitSettings } from '../../../../shared/contracts/config/limiter.js';
import type { Clock, TimerHandle } from '../../base/clock.js';
import { AppError, ErrorCode } from '../../base/errors.js';
import { PriorityQueue } from './priorityQueue.js';
import type { BudgetView, SharedBudget } from './sharedBudget.js';
import { RetreatController, type RetreatParams, type RetreatState, type RetreatTransition } from './retreatController.js';
import { TokenBucket } from './tokenBucket.js';

export type QueueFullPolicy = 'passthrough' | 'reject' | 'drop_lowest';

/** How a request left the limiter, for the `status` label of `sidecar_requests_total`. */
export type Outcome = 'success' | 'ratelimited' | 'error';

/** A token handed to a request: it may now call the upstream. */
export interface Grant {
  /** Milliseconds spent waiting for the token. */
  waitedMs: number;
  /** True when the queue was full and the request skipped it (passthrough policy). */
  passthrough: boolean;
}

/**
 * What sets the bucket's rate from upstream feedback. The retreat machine is the limiter's own;
 * the benchmark plugs in baselines (fixed, AIMD, CUBIC-style, oracle) through the same seam.
 */
export interface RateControl {
  readonly rpm: number;
  record(is429: boolean, saturated: boolean): RetreatTransition | null;
}

/** Observers of one provider's limiter (the service turns them into logs, metrics and stream events). */
export interface ProviderLimiterHooks {
  onTransition?(t: RetreatTransition): void;
  onGrant?(priority: Priority, waitedMs: number): void;
  onRejected?(priority: Priority, reason: 'timeout' | 'queue_full' | 'dropped' | 'cancelled' | 'stopped' | 'unavailable'): void;
  /** A shared budget (Redis) could not record an upstream answer. */
  onSharedError?(err: Error): void;
}

/** The grant of a request that did not wait. */
const IMMEDIATE: Grant = Object.freeze({ waitedMs: 0, passthrough: false });

interface Ticket {
  readonly priority: Priority;
  readonly enqueuedAt: number;
  readonly passthrough: boolean;
  resolve(grant: Grant): void;
  reject(err: Error): void;
  timer: TimerHandle | null;
  done: boolean;
  cleanup: (() => void) | null;
}

export interface ProviderCounters {
  total: number;
  passthrough: number;
  ratelimited: number;
  queueFullRejects: number;
  upstreamErrors: number;
  totalEnqueued: number;
  totalDequeued: number;
  totalDropped: number;
}

/** Contract §6.4 timeouts in seconds, formatted like the seed (`2.0s`, `60s`). */
function seconds(s: number): string {
  return Number.isInteger(s) && s >= 10 ? `${s}s` : `${s.toFixed(1)}s`;
}

export function retreatParams(s: LimitSettings): RetreatParams {
  return {
    baseRpm: s.rate_rpm,
    ceilingRpm: s.max_rpm > 0 ? s.max_rpm : s.rate_rpm,
    retreatWindowSeconds: s.retreat_window_seconds,
    retreat429Threshold: s.retreat_429_threshold,
    retreatFactor: s.retreat_factor,
    retreatMinRpm: s.retreat_min_rpm,
    recoverWindowSeconds: s.recover_window_seconds,
    recover429Threshold: s.recover_429_threshold,
    recoverIncrementRpm: s.recover_increment_rpm,
    recoverMode: s.recover_mode,
    probeFactor: s.probe_factor,
    probeIntervalSeconds: s.probe_interval_seconds,
  };
}

export function fullPolicy(s: LimitSettings): QueueFullPolicy {
  return s.queue_full_policy ?? (s.fallback_enabled_passthrough ? 'passthrough' : 'reject');
}

/**
 * One provider's admission control: a 4-level priority queue in front of an adaptive token bucket
 * whose rate follows the retreat machine. Event-driven on the injected clock: a request is granted
 * as soon as a token is there (one timer wakes the queue when the next token is due), and gives up
 * with 429 after its token timeout. Everything runs synchronously on the event loop: no lock, and no
 * await inside a state change, so observers may call back in (the seed's deadlock lesson).
 */
export class ProviderLimiter {
  readonly bucket: TokenBucket;
  readonly retreat: RetreatController;
  readonly counters: ProviderCounters = {
    total: 0,
    passthrough: 0,
    ratelimited: 0,
    queueFullRejects: 0,
    upstreamErrors: 0,
    totalEnqueued: 0,
    totalDequeued: 0,
    totalDropped: 0,
  };
  private readonly queue: PriorityQueue<Ticket>;
  /**
   * Queue-full passthroughs: they skip the queue but still need a token. They go before queued
   * requests of the same or a lower (aged) priority, never before a higher one, and there are at most
   * `queue_max_size` of them; beyond that the request gets the 503 `QueueFullError`.
   */
  private readonly bypass: Ticket[] = [];
  private wake: TimerHandle | null = null;
  private wakeAt = Infinity;
  private pumping = false;
  private pumpAgain = false;
  private stopped = false;
  /** False after a transport error until the next upstream response (sidecar_health_status). */
  healthy = true;
  /** A take from the shared budget is in flight (one at a time per node). */
  private taking = false;
  /** The last shared-budget call failed (Redis away): requests get 503 until one succeeds. */
  private sharedError: Error | null = null;

  constructor(
    readonly name: string,
    private settings: LimitSettings,
    private readonly clock: Clock,
    private readonly hooks: ProviderLimiterHooks = {},
    initial?: { rpm: number; state: RetreatState },
    /** Replaces the retreat machine as the rate source (benchmark baselines only). */
    private readonly control?: RateControl,
    /**
     * The cluster's budget for this provider key (Redis): tokens, 429 window and retreat state are
     * shared; the local bucket and retreat machine are then unused and only this node's queue is local.
     */
    private readonly shared?: SharedBudget,
  ) {
    this.retreat = new RetreatController(retreatParams(settings), clock, initial);
    this.bucket = new TokenBucket(clock, control?.rpm ?? this.retreat.rpm, settings.bucket_capacity);
    this.queue = new PriorityQueue<Ticket>(settings.aging_seconds * 1000);
  }

  get limits(): LimitSettings {
    return this.settings;
  }
  get policy(): QueueFullPolicy {
    return fullPolicy(this.settings);
  }
  get queueSize(): number {
    return this.queue.size;
  }
  get waiting(): number {
    return this.queue.size + this.bypass.length;
  }
  depth(priority: Priority): number {
    return this.queue.depth(priority);
  }
  /** True when the budget is shared with other consoles (Redis). */
  get isShared(): boolean {
    return this.shared !== undefined;
  }
  /** Why the shared budget cannot hand out tokens now (null when it can, or when not shared). */
  get sharedUnavailable(): string | null {
    return this.sharedError?.message ?? null;
  }

  /** Rate, state, tokens and 429 share now: this node's own, or the cluster's as last seen. */
  view(): BudgetView {
    if (this.shared) return { ...this.shared.view };
    return { state: this.retreat.state, rpm: this.retreat.rpm, tokens: this.bucket.tokens(), ratio: this.retreat.ratio('retreat'), pauseLeftMs: this.bucket.pauseLeftMs() };
  }

  /**
   * Waits for a token. Rejects with 429 `RateLimitedError` after the token timeout (LOW:
   * `low_priority_timeout`, others `request_timeout`), 503 `QueueFullError` when the queue is full
   * under `reject` or when this request is evicted by `drop_lowest`. Aborting `signal` (client gone)
   * removes the request at once.
   */
  acquire(priority: Priority, signal?: AbortSignal): Promise<Grant> {
    if (this.stopped) return Promise.reject(new AppError(ErrorCode.UNAVAILABLE, `Limiter for provider ${this.name} is stopped`));
    if (signal?.aborted) return Promise.reject(new AppError(ErrorCode.UNAVAILABLE, 'Client disconnected'));
    this.counters.total++;
    let passthrough = false;
    if (this.queue.size >= this.settings.queue_max_size) {
      const policy = this.policy;
      if (policy === 'reject') {
        this.counters.queueFullRejects++;
        this.hooks.onRejected?.(priority, 'queue_full');
        return Promise.reject(
          new AppError(ErrorCode.UNAVAILABLE, `Service Unavailable — 队列已满,当前策略: reject (provider ${this.name}, ${this.settings.queue_max_size} queued)`, {
            type: 'QueueFullError',
          }),
        );
      }
      if (policy === 'drop_lowest') {
        const victim = this.queue.lowest();
        if (victim) {
          this.counters.totalDropped++;
          this.finish(
            victim,
            new AppError(ErrorCode.UNAVAILABLE, `Service Unavailable — 队列已满: request dropped for a newer one (policy drop_lowest, provider ${this.name})`, {
              type: 'QueueFullError',
            }),
          );
          this.hooks.onRejected?.(victim.priority, 'dropped');
        }
      } else {
        if (this.bypass.length >= this.settings.queue_max_size) {
          this.counters.queueFullRejects++;
          this.hooks.onRejected?.(priority, 'queue_full');
          return Promise.reject(
            new AppError(
              ErrorCode.UNAVAILABLE,
              `Service Unavailable — 队列已满,当前策略: passthrough (provider ${this.name}: ${this.settings.queue_max_size} queued and ${this.bypass.length} passing through)`,
              { type: 'QueueFullError' },
            ),
          );
        }
        passthrough = true;
        this.counters.passthrough++;
      }
    }
    // Nothing waits and a token is there: granted at once, without a ticket, a timeout timer or an
    // abort listener (the common case below the rate; priorities only matter when requests wait).
    if (!passthrough && !this.shared && this.queue.size === 0 && this.bypass.length === 0 && this.bucket.tryTake()) {
      this.counters.totalEnqueued++; // it went through the queue, in no time
      this.counters.totalDequeued++;
      this.hooks.onGrant?.(priority, 0);
      return Promise.resolve(IMMEDIATE);
    }
    return new Promise<Grant>((resolve, reject) => {
      const ticket: Ticket = {
        priority,
        enqueuedAt: this.clock.monotonic(),
        passthrough,
        resolve,
        reject,
        timer: null,
        done: false,
        cleanup: null,
      };
      const low = priority === 'low';
      const timeoutS = low ? this.settings.low_priority_timeout : this.settings.request_timeout;
      ticket.timer = this.clock.setTimeout(() => {
        this.counters.ratelimited++;
        const msg = passthrough
          ? `Too Many Requests — 令牌不足(队列满 + passthrough),${low ? '' : '等待'}超时 ${seconds(timeoutS)}`
          : low
            ? `Too Many Requests — 低优先级请求令牌等待超时 (${seconds(timeoutS)})`
            : `Too Many Requests — 令牌等待超时 (${seconds(timeoutS)})`;
        this.hooks.onRejected?.(priority, 'timeout');
        const retryAfter = this.shared ? Math.max(1, Math.ceil(this.shared.view.pauseLeftMs / 1000)) : Math.max(1, Math.ceil(this.bucket.msUntilToken() / 1000));
        this.finish(ticket, new AppError(ErrorCode.RATE_LIMITED, `${msg} (provider ${this.name})`, { type: 'RateLimitedError', headers: { 'retry-after': String(retryAfter) } }));
      }, timeoutS * 1000);
      if (signal) {
        const onAbort = () => {
          this.hooks.onRejected?.(priority, 'cancelled');
          this.finish(ticket, new AppError(ErrorCode.UNAVAILABLE, 'Client disconnected while queued'));
        };
        signal.addEventListener('abort', onAbort, { once: true });
        ticket.cleanup = () => signal.removeEventListener('abort', onAbort);
      }
      if (passthrough) this.bypass.push(ticket);
      else {
        this.queue.push(ticket);
        this.counters.totalEnqueued++;
      }
      this.pump();
    });
  }

  /**
   * Feeds one upstream response into the retreat machine (contract §6.6) and honours
   * `Retry-After` (seconds) on a 429.
   */
  recordResponse(status: number, retryAfterSeconds?: number): RetreatTransition | null {
    this.healthy = true;
    const is429 = status === 429;
    if (status < 200 || status >= 300) this.counters.upstreamErrors++;
    if (this.shared) {
      // Transitions come back through the budget's pub/sub (every node logs and streams them).
      const pauseMs = is429 && retryAfterSeconds !== undefined && retryAfterSeconds > 0 ? retryAfterSeconds * 1000 : 0;
      this.shared.record(is429, this.waiting > 0 || this.shared.view.tokens < 1, pauseMs).then(
        () => this.sharedOk(),
        (err: Error) => {
          this.sharedError = err;
          this.hooks.onSharedError?.(err);
        },
      );
      return null;
    }
    if (is429) {
      const pauseMs = retryAfterSeconds !== undefined && retryAfterSeconds > 0 ? retryAfterSeconds * 1000 : 0;
      this.bucket.pause(pauseMs);
    }
    const saturated = this.waiting > 0 || this.bucket.tokens() < 1;
    const t = (this.control ?? this.retreat).record(is429, saturated);
    this.applyRate(t);
    return t;
  }

  /** A transport failure (connect error, timeout): not a response, so the 429 window is unchanged. */
  recordTransportError(): void {
    this.healthy = false;
    this.counters.upstreamErrors++;
  }

  /** Admin reset of the cluster's shared budget (rejects with 503 while Redis is away). */
  async resetShared(): Promise<void> {
    if (!this.shared) {
      this.reset();
      return;
    }
    await this.shared.reset();
    this.sharedOk();
  }

  /** Admin reset (contract §6.8). */
  reset(): RetreatTransition {
    const t = this.retreat.reset();
    this.applyRate(t);
    return t;
  }

  /** Hot update; a new `rate_rpm` sets base and current rate and resets to NORMAL. */
  updateSettings(next: LimitSettings): RetreatTransition | null {
    this.settings = next;
    this.bucket.setCapacity(next.bucket_capacity);
    this.queue.setAging(next.aging_seconds * 1000);
    if (this.shared) {
      // The cluster's state changes in Redis (a new base resets it there, published as rate_changed).
      this.shared.setParams(retreatParams(next), next.bucket_capacity);
      this.retreat.setParams(retreatParams(next));
      this.pump();
      return null;
    }
    const t = this.retreat.setParams(retreatParams(next));
    this.applyRate(t);
    if (!t) this.bucket.setRate(this.retreat.rpm);
    this.pump();
    return t;
  }

  /** Rejects everything waiting (503) and cancels the wake timer. Safe twice. */
  stop(): void {
    this.stopped = true;
    this.wake?.cancel();
    this.wake = null;
    const err = () => new AppError(ErrorCode.UNAVAILABLE, `Limiter for provider ${this.name} is stopping`);
    for (const t of [...this.bypass, ...this.queue.drain()]) {
      this.hooks.onRejected?.(t.priority, 'stopped');
      this.finish(t, err());
    }
    this.bypass.length = 0;
  }

  private applyRate(t: RetreatTransition | null): void {
    if (!t) return;
    this.bucket.setRate((this.control ?? this.retreat).rpm);
    this.hooks.onTransition?.(t);
    this.pump();
  }

  private finish(ticket: Ticket, outcome: Error | Grant): void {
    if (ticket.done) return;
    ticket.done = true;
    ticket.timer?.cancel();
    ticket.cleanup?.();
    if (ticket.passthrough) {
      const i = this.bypass.indexOf(ticket);
      if (i >= 0) this.bypass.splice(i, 1);
    } else if (this.queue.remove(ticket)) {
      this.counters.totalDequeued++;
    }
    if (outcome instanceof Error) ticket.reject(outcome);
    else ticket.resolve(outcome);
  }

  /** Hands tokens to waiting requests in priority order; re-entrant calls fold into the running one. */
  private pump(): void {
    if (this.shared) {
      this.pumpShared(this.shared);
      return;
    }
    if (this.pumping) {
      this.pumpAgain = true;
      return;
    }
    this.pumping = true;
    try {
      do {
        this.pumpAgain = false;
        for (;;) {
          const now = this.clock.monotonic();
          const next = this.next(now);
          if (!next) break;
          if (!this.bucket.tryTake()) {
            this.scheduleWake(this.bucket.msUntilToken());
            break;
          }
          const waitedMs = now - next.enqueuedAt;
          this.hooks.onGrant?.(next.priority, waitedMs);
          this.finish(next, { waitedMs, passthrough: next.passthrough });
        }
      } while (this.pumpAgain);
    } finally {
      this.pumping = false;
    }
  }

  private sharedOk(): void {
    if (this.sharedError === null) return;
    this.sharedError = null;
    this.pump();
  }

  /**
   * Shared budget: one token take in flight per node. The token goes to the best request waiting
   * when it arrives (so priorities hold inside this node's queue); without one, the wake timer asks
   * again when Redis says the next token is due. Redis away: every waiting request gets the 503 at
   * once (fail closed: no token means no upstream call), and so does each new one until Redis answers.
   */
  private pumpShared(shared: SharedBudget): void {
    if (this.taking || this.stopped || !this.next(this.clock.monotonic())) return;
    this.taking = true;
    shared.take().then(
      (r) => {
        this.taking = false;
        this.sharedError = null;
        if (this.stopped) return;
        if (!r.granted) {
          this.scheduleWake(r.waitMs);
          return;
        }
        const now = this.clock.monotonic();
        const next = this.next(now);
        if (next) {
          const waitedMs = now - next.enqueuedAt;
          this.hooks.onGrant?.(next.priority, waitedMs);
          this.finish(next, { waitedMs, passthrough: next.passthrough });
        }
        this.pumpShared(shared);
      },
      (err: Error) => {
        this.taking = false;
        this.sharedError = err;
        for (const t of [...this.bypass, ...this.queue.drain()]) {
          this.hooks.onRejected?.(t.priority, 'unavailable');
          this.finish(t, err);
        }
        this.bypass.length = 0;
      },
    );
  }

  /**
   * The request the next token goes to: the best passthrough (highest priority, then oldest) unless
   * the queue's next request has a strictly higher (aged) priority, so overflow never overtakes it.
   */
  private next(now: number): Ticket | undefined {
    const queued = this.queue.peek(now);
    let bypassed: Ticket | undefined;
    for (const t of this.bypass) {
      if (!bypassed || PRIORITY_RANK[t.priority] < PRIORITY_RANK[bypassed.priority]) bypassed = t;
    }
    if (!bypassed) return queued;
    if (!queued) return bypassed;
    return this.queue.rank(queued, now) < PRIORITY_RANK[bypassed.priority] ? queued : bypassed;
  }

  private scheduleWake(ms: number): void {
    if (this.stopped) return;
    const at = this.clock.monotonic() + Math.max(1, ms);
    if (this.wake && this.wakeAt <= at) return;
    this.wake?.cancel();
    this.wakeAt = at;
    this.wake = this.clock.setTimeout(() => {
      this.wake = null;
      this.wakeAt = Infinity;
      this.pump();
    }, Math.max(1, Math.ceil(ms)));
  }

  /** Queue depth per level, all four always present. */
  depths(): Record<Priority, number> {
    return Object.fromEntries(PRIORITIES.map((p) => [p, this.queue.depth(p)])) as Record<Priority, number>;
  }
}
