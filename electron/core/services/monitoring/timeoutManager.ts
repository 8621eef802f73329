import type { Logger } from 'pino';
import type { Clock } from '../../base/clock.js';
import type { AuditPort } from '../../base/ports.js';
import type { GpuLockService } from './gpuLocks.js';
import type { HeartbeatService } from './heartbeats.js';
import type { MonitoringMetrics } from './monitoringMetrics.js';
import type { ClusterTask, ClusterTimeoutOutcome } from './clusterHeartbeats.js';
import { clusterLockKeyOf, lockKeyOf, type HistoryEntry, type LockRecord, type LockStore, type TaskRecord } from './lockStore.js';
import type { PersistentClock } from './persistentClock.js';
import type { TimeoutRecovery } from '../../../../shared/contracts/config/monitoring.js';

/** Actions the timeout manager takes (contract §7.5 `configured_actions`, plus the recovery). */
export type TimeoutAction = 'force_release_gpu_lock' | 'update_task_status' | 'log_timeout_event' | 'cancel_task' | 'retry_task' | 'notify';

export const CONFIGURED_ACTIONS = ['force_release_gpu_lock', 'update_task_status', 'log_timeout_event'] as const;

export interface TimeoutActionRecord {
  atWall: number;
  action: TimeoutAction | 'timeout_recovery';
  taskId: string | null;
  lockKey: string | null;
  result: 'success' | 'failed' | 'skipped';
  detail?: string;
}

/** Emitted for every timeout handled (the dashboard and the task owners listen). */
export interface TimeoutEvent {
  kind: 'task' | 'lock';
  taskId: string | null;
  lockKey: string | null;
  recovery: TimeoutRecovery | 'none';
  /** Retry attempt under `retry` (1-based). */
  attempt?: number;
  reason: string;
}

export interface TimeoutCheckResult {
  checkedLocks: string[];
  timeoutsDetected: number;
  actionsTaken: TimeoutActionRecord[];
}

export interface TimeoutStats {
  totalTimeoutsDetected: number;
  tasksRecovered: number;
  resourcesReleased: number;
  currentTimeouts: number;
}

export interface TimeoutManagerOptions {
  locks: GpuLockService;
  heartbeats: HeartbeatService;
  store: LockStore;
  clock: Clock;
  pclock: PersistentClock;
  logger: Logger;
  /** Counts every action in `timeoutActions`. */
  metrics: Pick<MonitoringMetrics, 'timeoutActions'>;
  /** A task's heartbeat is live within its own registered timeout (the configured heartbeat timeout by default). */
  settings: () => { autoRecovery: boolean; recovery: TimeoutRecovery; maxRetryAttempts: number; gpuTimeoutSeconds: number };
}

const ACTIONS_SHOWN = 50;

/** What the lease holder's sweep over the cluster's tasks needs (cluster only). */
export interface ClusterSweep {
  /** The node running the sweep (it holds the monitor lease). */
  self: string;
  /** Every node's tasks, read from Redis just now. */
  tasks: readonly ClusterTask[];
  /** The compare-and-set time-out in Redis; null when there was nothing to do. */
  timeOut(task: ClusterTask): Promise<ClusterTimeoutOutcome | null>;
  /** Frees the task's lock (only with the task's fencing token); true when it was freed. */
  releaseLock(task: ClusterTask, reason: string): Promise<boolean>;
  /** The audit log (one entry per task timed out). */
  audit: AuditPort;
}

/** A lock of another node, as the lease holder's lock-age sweep sees it (cluster only). */
export interface ClusterLockAge {
  node: string;
  gpuId: number;
  lock: LockRecord;
  /** Age of the lock, ms. */
  ageMs: number;
}

/** What the lease holder's sweep over other nodes' GPU locks needs (cluster only). */
export interface ClusterLockSweep {
  /** The node running the sweep (it holds the monitor lease). */
  self: string;
  /** Other nodes' held locks, read from Redis just now. */
  locks: readonly ClusterLockAge[];
  /** Whether the task the lock was taken for beats (on any node, by Redis time). */
  isLive(lock: ClusterLockAge): boolean;
  /** Frees the lock only if it still carries this token (compare-and-set); true when it was freed. */
  release(lock: ClusterLockAge, reason: string): Promise<boolean>;
  /** The audit log (one entry per lock freed). */
  audit: AuditPort;
}

/**
 * Finds missed heartbeats and timed-out locks, and recovers: mark the task timed out, release its
 * lock (fencing-checked: only the lock the task holds), log, then the configured recovery
 * (`cancel`: the owner's onTimeout handlers; `retry`: a fresh heartbeat window, up to
 * max_retry_attempts, with the task keeping its lock so its next beat is accepted; then cancel;
 * `notify`: an event only). Every action is logged, counted in
 * `console_monitoring_timeout_actions_total{action}` and kept in the action history.
 */
export class TimeoutManager {
  private readonly stats: TimeoutStats = { totalTimeoutsDetected: 0, tasksRecovered: 0, resourcesReleased: 0, currentTimeouts: 0 };
  private readonly actions: TimeoutActionRecord[] = [];
  private readonly listeners = new Set<(e: TimeoutEvent) => void>();

  constructor(private readonly o: TimeoutManagerOptions) {}

  async init(): Promise<void> {
    const stored = await this.o.store.recentHistory('timeout', null, ACTIONS_SHOWN);
    this.actions.splice(0, this.actions.length, ...stored.map((h) => this.fromHistory(h)));
  }

  onTimeout(listener: (e: TimeoutEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  getStats(): TimeoutStats {
    return { ...this.stats };
  }

  /** Newest first. */
  actionHistory(): TimeoutActionRecord[] {
    return [...this.actions];
  }

  /**
   * One check: expired TTLs, missed heartbeats, task locks past gpu_timeout without a live heartbeat.
   * `tasks: false` (cluster): leave the heartbeats to the monitor lease holder's {@link sweepCluster}.
   * `lockTaskLive` (cluster): whether a lock's task beats anywhere in the cluster (an app may hold a
   * lock here and send its heartbeats to another console); by default only this console's tasks count.
   */
  async check(gpuIds: readonly number[] = this.o.locks.gpuIds(), options: { tasks?: boolean; lockTaskLive?: (lock: LockRecord) => boolean } = {}): Promise<TimeoutCheckResult> {
    const settings = this.o.settings();
    const taken: TimeoutActionRecord[] = [];
    let detected = 0;

    // 1. Locks whose TTL ran out.
    if (settings.autoRecovery) {
      for (const lock of await this.o.locks.expireDue(gpuIds)) {
        detected++;
        this.stats.resourcesReleased++;
        taken.push(this.act('force_release_gpu_lock', { taskId: lock.taskId, lockKey: lockKeyOf(lock.gpuId), result: 'success', detail: `TTL of ${lock.ttlMs / 1000} s expired (holder ${lock.holder})` }));
      }
    }

    // 2. Tasks that missed their heartbeat.
    const overdue = options.tasks === false ? [] : this.o.heartbeats.overdue();
    this.stats.currentTimeouts = settings.autoRecovery ? 0 : overdue.length;
    for (const task of overdue) {
      detected++;
      if (!settings.autoRecovery) continue;
      taken.push(...(await this.recoverTask(task, settings)));
    }

    // 3. Locks older than gpu_timeout whose task has no live heartbeat: the task named by the lock's
    // task_id, or (locks taken without one, like training's) the task registered with the lock's token.
    const nowBasis = this.o.pclock.basis();
    for (const gpuId of gpuIds) {
      const lock = this.o.locks.current(gpuId);
      if (!lock) continue;
      if (nowBasis - lock.acquiredAt <= settings.gpuTimeoutSeconds * 1000) continue;
      const task = this.o.heartbeats.taskOfLock(lock);
      if (this.o.heartbeats.isLive(task) || options.lockTaskLive?.(lock) === true) continue;
      const taskId = lock.taskId ?? task?.taskId ?? null;
      detected++;
      if (!settings.autoRecovery) {
        this.stats.currentTimeouts++;
        continue;
      }
      const freed = await this.o.locks.forceRelease(gpuId, { actor: 'timeout-manager', reason: 'lock older than gpu_timeout without a live heartbeat', cause: 'timed_out', onlyToken: lock.token });
      if (freed) this.stats.resourcesReleased++;
      taken.push(this.act('force_release_gpu_lock', { taskId, lockKey: lockKeyOf(gpuId), result: freed ? 'success' : 'skipped', detail: `lock age over ${settings.gpuTimeoutSeconds} s, no live heartbeat (holder ${lock.holder})` }));
      this.emit({ kind: 'lock', taskId, lockKey: lockKeyOf(gpuId), recovery: 'none', reason: 'gpu_timeout' });
    }

    this.stats.totalTimeoutsDetected += detected;
    return { checkedLocks: gpuIds.map(lockKeyOf), timeoutsDetected: detected, actionsTaken: taken };
  }

  /**
   * The monitor lease holder's sweep over every node's tasks (heartbeats in Redis, Redis time): each
   * overdue task is timed out by a compare-and-set in Redis, so it is handled once across the cluster;
   * then its lock is freed (fencing-checked), logged, counted and audited here, once. The owning node
   * runs its own recovery (the task's onTimeout handlers) when it sees the new state ({@link ownerRecovery}).
   */
  async sweepCluster(c: ClusterSweep): Promise<TimeoutCheckResult> {
    const settings = this.o.settings();
    const taken: TimeoutActionRecord[] = [];
    let detected = 0;
    let waiting = 0;
    for (const task of c.tasks) {
      if (task.status !== 'running' || task.lastBeatAgeMs <= task.timeoutMs) continue;
      detected++;
      if (!settings.autoRecovery) {
        waiting++;
        continue;
      }
      const r = await c.timeOut(task);
      if (!r) continue;
      const lockKey = task.gpuId === null ? null : clusterLockKeyOf(task.node, task.gpuId);
      const taskRef = `${task.node}/${task.taskId}`;
      const reason = `no heartbeat from ${taskRef} for ${(r.ageMs / 1000).toFixed(1)} s (timeout ${task.timeoutMs / 1000} s)`;
      if (r.outcome === 'retry') {
        taken.push(this.act('update_task_status', { taskId: task.taskId, lockKey, result: 'success', detail: `${taskRef} re-armed (attempt ${r.retries}/${settings.maxRetryAttempts})` }));
        taken.push(this.act('retry_task', { taskId: task.taskId, lockKey, result: 'success', detail: `attempt ${r.retries}` }));
        this.emit({ kind: 'task', taskId: task.taskId, lockKey, recovery: 'retry', attempt: r.retries, reason });
        this.stats.tasksRecovered++;
        continue;
      }
      let released: boolean | null = null;
      if (task.gpuId !== null && task.fencingToken !== null) {
        try {
          released = await c.releaseLock(task, reason);
          if (released) this.stats.resourcesReleased++;
          taken.push(this.act('force_release_gpu_lock', { taskId: task.taskId, lockKey, result: released ? 'success' : 'skipped', detail: released ? reason : 'the task no longer held the lock' }));
        } catch (err) {
          taken.push(this.act('force_release_gpu_lock', { taskId: task.taskId, lockKey, result: 'failed', detail: (err as Error).message }));
        }
      }
      taken.push(this.act('update_task_status', { taskId: task.taskId, lockKey, result: 'success', detail: `${taskRef} timed_out` }));
      this.o.logger.warn({ taskId: task.taskId, node: task.node, owner: task.owner, lockKey, released, by: c.self }, `cluster task heartbeat timed out: ${reason}`);
      taken.push(this.act('log_timeout_event', { taskId: task.taskId, lockKey, result: 'success', detail: reason }));
      c.audit.record({ actor: `timeout-manager@${c.self}`, action: 'monitoring.task.timeout', target: taskRef, detail: { reason, lock_key: lockKey, lock_released: released, recovery: settings.recovery } });
      this.emit({ kind: 'task', taskId: task.taskId, lockKey, recovery: settings.recovery === 'notify' ? 'notify' : 'cancel', reason });
      this.stats.tasksRecovered++;
      taken.push(this.act('timeout_recovery', { taskId: task.taskId, lockKey, result: 'success', detail: settings.recovery }));
    }
    this.stats.currentTimeouts = waiting;
    this.stats.totalTimeoutsDetected += detected;
    return { checkedLocks: [], timeoutsDetected: detected, actionsTaken: taken };
  }

  /**
   * The lease holder's lock-age rule for other nodes' GPUs (a node that died cannot apply it to its
   * own locks): a lock older than gpu_timeout whose task has no live heartbeat anywhere in the cluster
   * is freed by a compare-and-set on its fencing token, so it is freed (and audited) once even while
   * the lease changes hands or the owner's own check acts at the same moment.
   */
  async sweepClusterLocks(c: ClusterLockSweep): Promise<TimeoutCheckResult> {
    const settings = this.o.settings();
    const taken: TimeoutActionRecord[] = [];
    let detected = 0;
    for (const l of c.locks) {
      if (l.ageMs <= settings.gpuTimeoutSeconds * 1000 || c.isLive(l)) continue;
      detected++;
      if (!settings.autoRecovery) {
        this.stats.currentTimeouts++;
        continue;
      }
      const lockKey = clusterLockKeyOf(l.node, l.gpuId);
      const reason = `${lockKey} held ${(l.ageMs / 1000).toFixed(0)} s (over gpu_timeout ${settings.gpuTimeoutSeconds} s) by ${l.lock.holder} without a live heartbeat`;
      let freed = false;
      try {
        freed = await c.release(l, reason);
      } catch (err) {
        taken.push(this.act('force_release_gpu_lock', { taskId: l.lock.taskId, lockKey, result: 'failed', detail: (err as Error).message }));
        continue;
      }
      taken.push(this.act('force_release_gpu_lock', { taskId: l.lock.taskId, lockKey, result: freed ? 'success' : 'skipped', detail: freed ? reason : 'the lock changed hands meanwhile' }));
      if (!freed) continue;
      this.stats.resourcesReleased++;
      this.o.logger.warn({ lockKey, holder: l.lock.holder, by: c.self }, `cluster GPU lock timed out: ${reason}`);
      c.audit.record({ actor: `timeout-manager@${c.self}`, action: 'monitoring.lock.timeout', target: lockKey, detail: { reason, holder: l.lock.holder, fencing_token: l.lock.token, task_id: l.lock.taskId } });
      this.emit({ kind: 'lock', taskId: l.lock.taskId, lockKey, recovery: 'none', reason: 'gpu_timeout' });
    }
    this.stats.totalTimeoutsDetected += detected;
    return { checkedLocks: c.locks.map((l) => clusterLockKeyOf(l.node, l.gpuId)), timeoutsDetected: detected, actionsTaken: taken };
  }

  /**
   * The owning node's half of a cluster time-out: the lease holder timed its task out in Redis (and
   * freed its lock); here the task's onTimeout handlers run (`cancel`), or only an event is sent (`notify`).
   */
  ownerRecovery(task: TaskRecord): void {
    const { recovery } = this.o.settings();
    const lockKey = task.gpuId === null ? null : lockKeyOf(task.gpuId);
    const reason = task.endReason ?? 'heartbeat timeout';
    if (recovery === 'notify') {
      this.act('notify', { taskId: task.taskId, lockKey, result: 'success', detail: reason });
      this.emit({ kind: 'task', taskId: task.taskId, lockKey, recovery: 'notify', reason });
      return;
    }
    const ran = this.o.heartbeats.fireTimeout(task.taskId);
    this.act('cancel_task', { taskId: task.taskId, lockKey, result: ran > 0 ? 'success' : 'skipped', detail: ran > 0 ? `${ran} handler(s) notified` : 'no handler registered' });
    this.emit({ kind: 'task', taskId: task.taskId, lockKey, recovery: 'cancel', reason });
  }

  private async recoverTask(task: TaskRecord, settings: ReturnType<TimeoutManagerOptions['settings']>): Promise<TimeoutActionRecord[]> {
    const out: TimeoutActionRecord[] = [];
    const lockKey = task.gpuId === null ? null : lockKeyOf(task.gpuId);
    const silentFor = (this.o.pclock.basis() - task.lastBeat) / 1000;
    const reason = `no heartbeat for ${silentFor.toFixed(1)} s (timeout ${task.timeoutMs / 1000} s)`;
    const retry = settings.recovery === 'retry' && task.retries < settings.maxRetryAttempts;

    // Release the GPU first, unless the task gets another heartbeat window: a retried task keeps its
    // lock (its next beat must be accepted, and it would lose the GPU to a waiter otherwise); the lock
    // goes when the retries run out, or earlier if its TTL ends.
    if (!retry && task.gpuId !== null && task.fencingToken !== null) {
      try {
        const freed = await this.o.locks.forceRelease(task.gpuId, { actor: 'timeout-manager', reason, cause: 'timed_out', onlyToken: task.fencingToken });
        if (freed) this.stats.resourcesReleased++;
        out.push(this.act('force_release_gpu_lock', { taskId: task.taskId, lockKey, result: freed ? 'success' : 'skipped', detail: freed ? reason : 'the task no longer held the lock' }));
      } catch (err) {
        out.push(this.act('force_release_gpu_lock', { taskId: task.taskId, lockKey, result: 'failed', detail: (err as Error).message }));
      }
    }
    if (retry) {
      await this.o.heartbeats.rearm(task.taskId);
      out.push(this.act('update_task_status', { taskId: task.taskId, lockKey, result: 'success', detail: `re-armed (attempt ${task.retries}/${settings.maxRetryAttempts})` }));
    } else {
      await this.o.heartbeats.end(task.taskId, 'timed_out', reason);
      out.push(this.act('update_task_status', { taskId: task.taskId, lockKey, result: 'success', detail: 'timed_out' }));
    }
    this.o.logger.warn({ taskId: task.taskId, owner: task.owner, lockKey, recovery: settings.recovery, retry }, `task heartbeat timed out: ${reason}`);
    out.push(this.act('log_timeout_event', { taskId: task.taskId, lockKey, result: 'success', detail: reason }));

    if (retry) {
      out.push(this.act('retry_task', { taskId: task.taskId, lockKey, result: 'success', detail: `attempt ${task.retries}` }));
      this.emit({ kind: 'task', taskId: task.taskId, lockKey, recovery: 'retry', attempt: task.retries, reason });
    } else if (settings.recovery === 'notify') {
      out.push(this.act('notify', { taskId: task.taskId, lockKey, result: 'success', detail: reason }));
      this.emit({ kind: 'task', taskId: task.taskId, lockKey, recovery: 'notify', reason });
    } else {
      const ran = this.o.heartbeats.fireTimeout(task.taskId);
      out.push(this.act('cancel_task', { taskId: task.taskId, lockKey, result: ran > 0 ? 'success' : 'skipped', detail: ran > 0 ? `${ran} handler(s) notified` : 'no handler registered' }));
      this.emit({ kind: 'task', taskId: task.taskId, lockKey, recovery: 'cancel', reason });
    }
    this.stats.tasksRecovered++;
    out.push(this.act('timeout_recovery', { taskId: task.taskId, lockKey, result: 'success', detail: settings.recovery }));
    return out;
  }

  private act(action: TimeoutActionRecord['action'], r: Omit<TimeoutActionRecord, 'atWall' | 'action'>): TimeoutActionRecord {
    const record: TimeoutActionRecord = { atWall: this.o.clock.now(), action, ...r };
    this.o.metrics.timeoutActions.inc({ action });
    this.actions.unshift(record);
    if (this.actions.length > ACTIONS_SHOWN) this.actions.length = ACTIONS_SHOWN;
    const entry: HistoryEntry = {
      atWall: record.atWall,
      kind: 'timeout',
      action,
      lockKey: record.lockKey,
      taskId: record.taskId,
      holder: null,
      success: record.result !== 'failed',
      detail: { result: record.result, ...(record.detail ? { detail: record.detail } : {}) },
    };
    this.o.store.appendHistory(entry).catch((err: unknown) => this.o.logger.warn({ err }, 'could not store timeout history'));
    return record;
  }

  private fromHistory(h: HistoryEntry): TimeoutActionRecord {
    const detail = h.detail ?? {};
    return {
      atWall: h.atWall,
      action: h.action as TimeoutActionRecord['action'],
      taskId: h.taskId,
      lockKey: h.lockKey,
      result: (detail.result as TimeoutActionRecord['result'] | undefined) ?? (h.success ? 'success' : 'failed'),
      ...(typeof detail.detail === 'string' ? { detail: detail.detail } : {}),
    };
  }

  private emit(e: TimeoutEvent): void {
    for (const l of this.listeners) {
      try {
        l(e);
      } catch (err) {
        this.o.logger.warn({ err }, 'timeout listener failed');
      }
    }
  }
}
