import type { Logger } from 'pino';
import type { Clock, TimerHandle } from '../../base/clock.js';
import { AppError, ErrorCode, type ErrorDetail } from '../../base/errors.js';
import type { AuditPort, GpuLease, GpuLockPort, GpuLockRequest } from '../../base/ports.js';
import { lockKeyOf, type HistoryEntry, type LockRecord, type LockRefusal, type LockStore } from './lockStore.js';
import type { PersistentClock } from './persistentClock.js';

/** Why a lock stopped being held. */
export type LockEndReason = 'released' | 'force_released' | 'expired' | 'timed_out';

export interface LockReleasedEvent {
  lock: LockRecord;
  reason: LockEndReason;
  /** Who forced it and why (forced releases). */
  actor?: string;
  detail?: string;
}

export interface GpuLockServiceOptions {
  store: LockStore;
  clock: Clock;
  pclock: PersistentClock;
  logger: Logger;
  limits: () => { defaultTtlSeconds: number; maxTtlSeconds: number; maxWaitSeconds: number; maxRetryAttempts: number };
  /** GPU ids that exist (config plus telemetry). */
  knownGpus: () => ReadonlySet<number>;
  /** Lock key shown for a GPU (default `gpu_lock:<id>`; another node's GPUs: `gpu_lock:<node>:<id>`). */
  keyOf?: (gpuId: number) => string;
  /** The audit log (forced releases are recorded there). */
  audit: AuditPort;
}

/** Per-GPU counters since start (contract §7.1 `statistics`). */
export interface LockStats {
  totalAttempts: number;
  successCount: number;
  timeoutCount: number;
  failureCount: number;
  /** Mean seconds a lock was held, over released locks. */
  averageExecutionTime: number;
  /** Success rate of the last 20 attempts (1 when there were none). */
  recentSuccessRate: number;
}

interface GpuState {
  gpuId: number;
  lock: LockRecord | null;
  attempts: number;
  successes: number;
  failures: number;
  timeouts: number;
  heldMsTotal: number;
  heldCount: number;
  recentAttempts: boolean[];
  history: HistoryEntry[];
  /** Occupancy accounting for the current monitor window. */
  busyMs: number;
  windowStart: number;
  waiters: Set<() => void>;
}

const HISTORY_SHOWN = 20;
/** How often a waiting acquire re-tries a shared (cluster) store. */
const SHARED_POLL_MS = 200;

export interface AcquireOptions {
  /** Task the lock is taken for (lets the timeout manager link lock and heartbeat). */
  taskId?: string;
  /** Wait up to this long for the GPU to become free (0 = fail at once). */
  waitSeconds?: number;
}

/**
 * GPU locks with TTL and fencing tokens. Every decision (free? token right? expired?) is made
 * atomically by the {@link LockStore}; this class validates input, keeps a read cache for cheap
 * status and snapshots, counts, keeps history, and wakes waiters.
 */
export class GpuLockService implements GpuLockPort {
  private readonly gpus = new Map<number, GpuState>();
  private readonly listeners = new Set<(e: LockReleasedEvent) => void>();
  private closed = true;

  constructor(private readonly o: GpuLockServiceOptions) {}

  /** The lock key of a GPU as callers name it. */
  key(gpuId: number): string {
    return this.o.keyOf ? this.o.keyOf(gpuId) : lockKeyOf(gpuId);
  }

  /** Loads locks and recent history from the store. */
  async init(): Promise<void> {
    this.closed = false;
    for (const row of await this.o.store.loadLocks()) this.state(row.gpuId).lock = row.lock;
    for (const gpuId of this.gpus.keys()) {
      this.state(gpuId).history = await this.o.store.recentHistory('lock', this.key(gpuId), HISTORY_SHOWN);
    }
  }

  /**
   * Re-reads the locks from a shared store (other consoles change them); no-op for a store only this
   * console writes, whose cache is always current.
   */
  async refresh(): Promise<void> {
    if (!this.o.store.shared) return;
    const rows = await this.o.store.loadLocks();
    const held = new Map(rows.map((r) => [r.gpuId, r.lock]));
    for (const gpuId of new Set([...this.gpus.keys(), ...held.keys()])) this.state(gpuId).lock = held.get(gpuId) ?? null;
  }

  /** Wakes every waiter (they fail with UNAVAILABLE); used on stop. */
  close(): void {
    this.closed = true;
    for (const s of this.gpus.values()) for (const w of [...s.waiters]) w();
  }

  /** Called when a lock ends for any reason other than a normal acquire. */
  onReleased(listener: (e: LockReleasedEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  async acquire(request: GpuLockRequest, options: AcquireOptions = {}): Promise<GpuLease> {
    const limits = this.o.limits();
    const details: ErrorDetail[] = [];
    if (!Number.isInteger(request.gpuId) || request.gpuId < 0) details.push({ type: 'validation', field: 'gpuId', description: 'must be a non-negative integer' });
    if (typeof request.holder !== 'string' || request.holder.trim() === '' || request.holder.length > 200) {
      details.push({ type: 'validation', field: 'holder', description: 'must be a non-empty string of at most 200 characters' });
    }
    const ttlMs = this.ttlMs(request.ttlSeconds, details);
    const waitSeconds = options.waitSeconds ?? 0;
    if (!(Number.isFinite(waitSeconds) && waitSeconds >= 0 && waitSeconds <= limits.maxWaitSeconds)) {
      details.push({ type: 'validation', field: 'wait_seconds', description: `must be between 0 and ${limits.maxWaitSeconds}` });
    }
    if (details.length > 0) throw new AppError(ErrorCode.INVALID_REQUEST, 'Invalid lock request', { details });
    this.requireKnown(request.gpuId);
    const s = this.state(request.gpuId);
    const deadline = this.o.clock.monotonic() + waitSeconds * 1000;
    for (;;) {
      this.ensureOpen();
      const now = this.o.pclock.stamp();
      const outcome = await this.o.store.acquire(
        { gpuId: request.gpuId, holder: request.holder, purpose: request.purpose ?? '', taskId: options.taskId ?? null, ttlMs },
        now,
      );
      if (outcome.ok) {
        if (outcome.expired) this.ended(outcome.expired, 'expired', now.basis);
        s.lock = outcome.lock;
        this.count(s, true);
        this.addHistory(s, { action: 'acquire', lock: outcome.lock, success: true, detail: { fencing_token: outcome.lock.token, purpose: outcome.lock.purpose } });
        return this.lease(outcome.lock);
      }
      s.lock = outcome.current;
      const left = deadline - this.o.clock.monotonic();
      if (left <= 0) {
        this.count(s, false);
        this.addHistory(s, { action: 'acquire', holder: request.holder, success: false, detail: { held_by: outcome.current.holder } });
        throw this.conflict(request.gpuId, 'held', outcome.current);
      }
      // A shared store's releases by other consoles wake nobody here: poll it.
      const poll = this.o.store.shared ? SHARED_POLL_MS : Infinity;
      await this.waitForChange(s, Math.min(left, poll, Math.max(1, outcome.current.expiresAt - now.basis)));
    }
  }

  /**
   * Extends the caller's lock. Only the holder may: it proves it with the fencing token its acquire
   * returned and its holder name (both must match; readers see the holder, never the token).
   */
  async renew(gpuId: number, holder: string, fencingToken: number, ttlSeconds?: number): Promise<GpuLease> {
    this.ensureOpen();
    const details: ErrorDetail[] = [];
    const ttlMs = this.ttlMs(ttlSeconds, details);
    this.checkHolder(holder, details);
    this.checkToken(fencingToken, details);
    if (details.length > 0) throw new AppError(ErrorCode.INVALID_REQUEST, 'Invalid renew request', { details });
    this.requireKnown(gpuId);
    const s = this.state(gpuId);
    const outcome = await this.o.store.renew({ gpuId, token: fencingToken, holder }, ttlMs, this.o.pclock.stamp());
    if (!outcome.ok) {
      s.lock = outcome.current;
      throw this.conflict(gpuId, outcome.reason, outcome.current);
    }
    s.lock = outcome.lock;
    return this.lease(outcome.lock);
  }

  /** Frees the caller's lock; like renew, only the holder may (token and holder name must match). */
  async release(gpuId: number, holder: string, fencingToken: number): Promise<void> {
    this.ensureOpen();
    const details: ErrorDetail[] = [];
    this.checkHolder(holder, details);
    this.checkToken(fencingToken, details);
    if (details.length > 0) throw new AppError(ErrorCode.INVALID_REQUEST, 'Invalid release request', { details });
    this.requireKnown(gpuId);
    const s = this.state(gpuId);
    const now = this.o.pclock.stamp();
    const outcome = await this.o.store.release({ gpuId, token: fencingToken, holder }, now);
    if (!outcome.ok) {
      s.lock = outcome.current;
      throw this.conflict(gpuId, outcome.reason, outcome.current);
    }
    this.addHeld(s, outcome.lock, now.basis);
    s.lock = null;
    this.addHistory(s, { action: 'release', lock: outcome.lock, success: true, detail: { fencing_token: outcome.lock.token } });
    this.wake(s);
  }

  /**
   * Frees a GPU whoever holds it (admin emergency release, timeouts). The store write is retried
   * up to `maxRetryAttempts` times. Returns the lock that was freed, or null if it was free.
   */
  async forceRelease(gpuId: number, how: { actor: string; reason: string; cause?: 'force_released' | 'timed_out'; onlyToken?: number }): Promise<LockRecord | null> {
    this.requireKnown(gpuId);
    const s = this.state(gpuId);
    const attempts = this.o.limits().maxRetryAttempts + 1;
    let freed: LockRecord | null = null;
    let now = this.o.pclock.stamp();
    for (let i = 1; ; i++) {
      try {
        now = this.o.pclock.stamp();
        freed = await this.o.store.forceRelease(gpuId, now, how.onlyToken);
        break;
      } catch (err) {
        this.o.logger.warn({ err, gpuId, attempt: i }, 'forced lock release failed');
        if (i >= attempts) throw err;
      }
    }
    const cause = how.cause ?? 'force_released';
    if (cause === 'force_released') {
      this.o.audit.record({ actor: how.actor, action: 'monitoring.lock.force_release', target: this.key(gpuId), detail: { reason: how.reason, released: freed ? { holder: freed.holder, fencing_token: freed.token, purpose: freed.purpose } : null } });
    }
    if (!freed) {
      if (how.onlyToken === undefined) {
        const r = await this.o.store.loadLocks();
        s.lock = r.find((x) => x.gpuId === gpuId)?.lock ?? null;
      }
      if (cause === 'force_released') this.addHistory(s, { action: 'force_release', holder: how.actor, success: false, detail: { reason: how.reason } });
      return null;
    }
    this.ended(freed, cause, now.basis, how.actor, how.reason);
    return freed;
  }

  /** Frees every lock (of `gpuIds`, default all) whose TTL ran out; returns them. */
  async expireDue(gpuIds?: readonly number[]): Promise<LockRecord[]> {
    const nowBasis = this.o.pclock.basis();
    const out: LockRecord[] = [];
    for (const [gpuId, s] of this.gpus) {
      if (gpuIds && !gpuIds.includes(gpuId)) continue;
      if (!s.lock || s.lock.expiresAt > nowBasis) continue;
      const now = this.o.pclock.stamp();
      // Only if the store agrees it expired (a shared store's clock decides; the holder may have renewed through another node).
      const freed = await this.o.store.forceRelease(gpuId, now, s.lock.token, true);
      if (freed) {
        this.ended(freed, 'expired', now.basis);
        out.push(freed);
      } else {
        s.lock = (await this.o.store.loadLocks()).find((x) => x.gpuId === gpuId)?.lock ?? null;
      }
    }
    return out;
  }

  /** The current lock of a GPU (from the cache; expired locks are reported as free). */
  current(gpuId: number): LockRecord | null {
    const lock = this.gpus.get(gpuId)?.lock ?? null;
    return lock && lock.expiresAt > this.o.pclock.basis() ? lock : null;
  }

  /** Every GPU with state (known or ever locked). */
  gpuIds(): number[] {
    const ids = new Set<number>([...this.o.knownGpus(), ...this.gpus.keys()]);
    return [...ids].sort((a, b) => a - b);
  }

  isKnown(gpuId: number): boolean {
    return this.o.knownGpus().has(gpuId) || this.gpus.has(gpuId);
  }

  stats(gpuId: number): LockStats {
    const s = this.state(gpuId);
    const recent = s.recentAttempts;
    return {
      totalAttempts: s.attempts,
      successCount: s.successes,
      timeoutCount: s.timeouts,
      failureCount: s.failures,
      averageExecutionTime: s.heldCount === 0 ? 0 : s.heldMsTotal / s.heldCount / 1000,
      recentSuccessRate: recent.length === 0 ? 1 : recent.filter(Boolean).length / recent.length,
    };
  }

  /** The last 20 lock history entries of a GPU, newest first. */
  history(gpuId: number): HistoryEntry[] {
    return [...this.state(gpuId).history];
  }

  private addHistory(s: GpuState, e: { action: string; lock?: LockRecord; holder?: string; success: boolean; detail?: Record<string, unknown> }): void {
    const entry: HistoryEntry = {
      atWall: this.o.clock.now(),
      kind: 'lock',
      action: e.action,
      lockKey: this.key(e.lock?.gpuId ?? s.gpuId),
      taskId: e.lock?.taskId ?? null,
      holder: e.lock?.holder ?? e.holder ?? null,
      success: e.success,
      detail: e.detail ?? null,
    };
    s.history.unshift(entry);
    if (s.history.length > HISTORY_SHOWN) s.history.length = HISTORY_SHOWN;
    this.o.store.appendHistory(entry).catch((err: unknown) => this.o.logger.warn({ err }, 'could not store lock history'));
  }

  /** Fraction of the time since the last call that the GPU was locked; starts a new window. */
  takeOccupancy(gpuId: number): number {
    const s = this.state(gpuId);
    const now = this.o.pclock.basis();
    const window = now - s.windowStart;
    let busy = s.busyMs;
    if (s.lock) busy += Math.max(0, Math.min(now, s.lock.expiresAt) - Math.max(s.lock.acquiredAt, s.windowStart));
    s.busyMs = 0;
    s.windowStart = now;
    return window <= 0 ? 0 : Math.min(1, busy / window);
  }

  /** Lease view of a lock. */
  lease(lock: LockRecord): GpuLease {
    return {
      gpuId: lock.gpuId,
      holder: lock.holder,
      purpose: lock.purpose,
      fencingToken: lock.token,
      ttlSeconds: lock.ttlMs / 1000,
      expiresAt: Math.round(this.o.pclock.toWall(lock.expiresAt)),
    };
  }

  private ended(lock: LockRecord, reason: LockEndReason, nowBasis: number, actor?: string, detail?: string): void {
    const s = this.state(lock.gpuId);
    if (s.lock?.token === lock.token || (s.lock && s.lock.token < lock.token)) s.lock = null;
    this.addHeld(s, lock, nowBasis);
    if (reason === 'expired' || reason === 'timed_out') s.timeouts++;
    this.addHistory(s, { action: reason === 'force_released' ? 'force_release' : 'timeout', lock, success: true, detail: { fencing_token: lock.token, reason: detail ?? reason, ...(actor ? { actor } : {}) } });
    this.o.logger.info({ lockKey: this.key(lock.gpuId), holder: lock.holder, token: lock.token, reason, actor, detail }, 'gpu lock ended');
    for (const l of this.listeners) {
      try {
        l({ lock, reason, actor, detail });
      } catch (err) {
        this.o.logger.warn({ err }, 'lock listener failed');
      }
    }
    this.wake(s);
  }

  private addHeld(s: GpuState, lock: LockRecord, nowBasis: number): void {
    const end = Math.min(nowBasis, lock.expiresAt);
    s.heldMsTotal += Math.max(0, end - lock.acquiredAt);
    s.heldCount++;
    s.busyMs += Math.max(0, end - Math.max(lock.acquiredAt, s.windowStart));
  }

  private count(s: GpuState, ok: boolean): void {
    s.attempts++;
    if (ok) s.successes++;
    else s.failures++;
    s.recentAttempts.push(ok);
    if (s.recentAttempts.length > HISTORY_SHOWN) s.recentAttempts.shift();
  }

  private wake(s: GpuState): void {
    for (const w of [...s.waiters]) w();
  }

  private waitForChange(s: GpuState, ms: number): Promise<void> {
    return new Promise((resolve) => {
      let timer: TimerHandle | null = null;
      const done = () => {
        timer?.cancel();
        s.waiters.delete(done);
        resolve();
      };
      s.waiters.add(done);
      timer = this.o.clock.setTimeout(done, ms);
    });
  }

  private ttlMs(ttlSeconds: number | undefined, details: ErrorDetail[]): number {
    const { defaultTtlSeconds, maxTtlSeconds } = this.o.limits();
    if (ttlSeconds === undefined) return Math.round(defaultTtlSeconds * 1000);
    if (typeof ttlSeconds !== 'number' || !Number.isFinite(ttlSeconds) || ttlSeconds <= 0 || ttlSeconds > maxTtlSeconds) {
      details.push({ type: 'validation', field: 'ttl_seconds', description: `must be > 0 and at most ${maxTtlSeconds} seconds` });
      return 0;
    }
    return Math.max(1, Math.round(ttlSeconds * 1000));
  }

  private checkHolder(holder: string, details: ErrorDetail[]): void {
    if (typeof holder !== 'string' || holder.trim() === '' || holder.length > 200) {
      details.push({ type: 'validation', field: 'task_name', description: 'the holder name the lock was acquired with is required' });
    }
  }

  private checkToken(token: number, details: ErrorDetail[]): void {
    if (!Number.isSafeInteger(token) || token < 1) details.push({ type: 'validation', field: 'fencing_token', description: 'must be a positive integer' });
  }

  private ensureOpen(): void {
    if (this.closed) throw new AppError(ErrorCode.UNAVAILABLE, 'GPU locks are not available: monitoring is not running');
  }

  private requireKnown(gpuId: number): void {
    if (!this.isKnown(gpuId)) throw new AppError(ErrorCode.NOT_FOUND, `Unknown GPU: ${this.key(gpuId)} (known: ${this.gpuIds().map((id) => this.key(id)).join(', ') || 'none'})`);
  }

  private conflict(gpuId: number, reason: LockRefusal | 'held', current: LockRecord | null): AppError {
    const key = this.key(gpuId);
    const remaining = current ? Math.max(0, (current.expiresAt - this.o.pclock.basis()) / 1000) : 0;
    // Never the token: it is the holder's proof, and this message goes to any caller.
    const holderText = current ? `held by ${current.holder} (expires in ${remaining.toFixed(1)} s)` : 'not held';
    const message: Record<LockRefusal | 'held', string> = {
      held: `${key} is ${holderText}`,
      not_held: `${key} is not held (it was released or expired)`,
      stale_token: `Stale fencing token for ${key}: the lock is now ${holderText}`,
      wrong_holder: `${key} is ${holderText}, not by the caller`,
      expired: `The lock on ${key} expired; acquire it again`,
    };
    const details: ErrorDetail[] = [{ type: reason === 'held' ? 'lock_held' : reason, field: 'lock_key', description: message[reason] }];
    if (current) details.push({ type: 'holder', field: 'lock_holder', description: current.holder });
    return new AppError(ErrorCode.CONFLICT, message[reason], { details });
  }

  private state(gpuId: number): GpuState {
    let s = this.gpus.get(gpuId);
    if (!s) {
      s = {
        gpuId,
        lock: null,
        attempts: 0,
        successes: 0,
        failures: 0,
        timeouts: 0,
        heldMsTotal: 0,
        heldCount: 0,
        recentAttempts: [],
        history: [],
        busyMs: 0,
        windowStart: this.o.pclock.basis(),
        waiters: new Set(),
      };
      this.gpus.set(gpuId, s);
    }
    return s;
  }
}
