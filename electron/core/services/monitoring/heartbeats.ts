import type { Logger } from 'pino';
import type { Clock } from '../../base/clock.js';
import { AppError, ErrorCode, type ErrorDetail } from '../../base/errors.js';
import type { HeartbeatPort, TaskRegistration } from '../../base/ports.js';
import type { GpuLockService } from './gpuLocks.js';
import { lockKeyOf, type HeartbeatStore, type LockRecord, type TaskRecord, type TaskStatus } from './lockStore.js';
import type { PersistentClock } from './persistentClock.js';

export interface HeartbeatServiceOptions {
  store: HeartbeatStore;
  clock: Clock;
  pclock: PersistentClock;
  logger: Logger;
  locks: GpuLockService;
  /** Told of every beat's result (refused: unknown or ended task, lost lock, stale token); feeds the failure-rate metric. */
  onBeat?: (result: 'ok' | 'refused') => void;
  settings: () => {
    timeoutSeconds: number;
    autoRegister: boolean;
    maxTimeoutSeconds: number;
    /** After a start, a running task gets at least this long to beat before it can time out (the beat interval). */
    startGraceSeconds: number;
  };
}

/** A beat: progress 0–1 and/or free-form detail, the fencing token when the task holds a lock. */
export interface BeatInput {
  progress?: number;
  detail?: Record<string, unknown>;
  fencingToken?: number;
  /** A final status ends the task (same as complete()). */
  status?: 'running' | 'completed' | 'failed' | 'cancelled';
}

export type OrphanReason = 'heartbeat_timeout' | 'lock_lost' | 'lock_without_task';

export interface OrphanInfo {
  taskId: string | null;
  lockKey: string | null;
  lastUpdateWall: number | null;
  reason: OrphanReason;
  /** True when the orphan is a task past its heartbeat timeout. */
  timeout: boolean;
}

export interface HeartbeatOverview {
  active: TaskRecord[];
  dead: TaskRecord[];
  orphaned: OrphanInfo[];
  /**
   * Tasks watched, each counted once: active, dead, orphaned tasks, plus locks whose task is not
   * known at all (a lock orphan whose task is already counted as dead adds nothing). `orphaned.length`
   * never exceeds it, so orphaned / total is a rate in [0, 1].
   */
  total: number;
  /** Mean seconds between beats over tasks with at least two beats (0 if none). */
  averageInterval: number;
}

const TASK_ID = /^[A-Za-z0-9._:@-]{1,200}$/;
/** Largest JSON of a beat's detail or a task's metadata (they are stored on every write). */
const MAX_JSON_BYTES = 16 * 1024;
const tooBig = (v: Record<string, unknown> | undefined): boolean => v !== undefined && JSON.stringify(v).length > MAX_JSON_BYTES;

/**
 * Task heartbeats (implements {@link HeartbeatPort}). A task registered with a GPU lock must keep
 * that lock: a beat whose lock is gone or whose fencing token is stale is refused with 409, so a
 * task paused past its TTL learns it lost the GPU before acting on it.
 */
export class HeartbeatService implements HeartbeatPort {
  private readonly tasks = new Map<string, TaskRecord>();
  private readonly timeoutHandlers = new Map<string, Set<() => void>>();
  constructor(private readonly o: HeartbeatServiceOptions) {}

  async init(): Promise<void> {
    this.tasks.clear();
    // A console down for longer than a task's timeout must not time the task out before it could
    // beat again: a running task gets one beat interval after the start (kept in memory only; the
    // stored last beat, and last_update, stay what the task last sent).
    const now = this.o.pclock.basis();
    const graceMs = this.o.settings().startGraceSeconds * 1000;
    for (const t of await this.o.store.loadTasks()) {
      if (t.status === 'running') t.lastBeat = Math.max(t.lastBeat, now - t.timeoutMs + Math.min(graceMs, t.timeoutMs));
      this.tasks.set(t.taskId, t);
    }
  }

  async register(task: TaskRegistration): Promise<void> {
    const details: ErrorDetail[] = [];
    if (typeof task.taskId !== 'string' || !TASK_ID.test(task.taskId)) details.push({ type: 'validation', field: 'task_id', description: 'must be 1-200 characters of letters, digits and . _ : @ -' });
    if (typeof task.owner !== 'string' || task.owner.trim() === '' || task.owner.length > 200) details.push({ type: 'validation', field: 'task_name', description: 'must be a non-empty string of at most 200 characters' });
    const { timeoutSeconds, maxTimeoutSeconds } = this.o.settings();
    const timeout = task.timeoutSeconds ?? timeoutSeconds;
    if (typeof timeout !== 'number' || !Number.isFinite(timeout) || timeout <= 0 || timeout > maxTimeoutSeconds) {
      details.push({ type: 'validation', field: 'timeout_seconds', description: `must be > 0 and at most ${maxTimeoutSeconds}` });
    }
    if (task.gpuId !== undefined && (!Number.isInteger(task.gpuId) || task.gpuId < 0)) details.push({ type: 'validation', field: 'gpu_lock', description: 'must name a GPU lock (gpu_lock:<id>)' });
    if (task.fencingToken !== undefined && (!Number.isSafeInteger(task.fencingToken) || task.fencingToken < 1)) details.push({ type: 'validation', field: 'fencing_token', description: 'must be a positive integer' });
    if (tooBig(task.metadata)) details.push({ type: 'validation', field: 'metadata', description: `must be at most ${MAX_JSON_BYTES} bytes of JSON` });
    if (details.length > 0) throw new AppError(ErrorCode.INVALID_REQUEST, 'Invalid heartbeat registration', { details });
    if (task.gpuId !== undefined) {
      if (!this.o.locks.isKnown(task.gpuId)) throw new AppError(ErrorCode.NOT_FOUND, `Unknown GPU: ${lockKeyOf(task.gpuId)}`);
      const lock = this.o.locks.current(task.gpuId);
      const token = task.fencingToken ?? (lock && lock.taskId === task.taskId ? lock.token : undefined);
      if (!lock || token === undefined || lock.token !== token) {
        throw new AppError(ErrorCode.CONFLICT, `${lockKeyOf(task.gpuId)} is ${lock ? `held by ${lock.holder}, not with the fencing_token given` : 'not held'}; acquire it first and pass its fencing_token`, {
          details: [{ type: 'lock_not_held', field: 'fencing_token', description: 'the task must hold the GPU lock it names' }],
        });
      }
      task = { ...task, fencingToken: token };
    }
    const now = this.o.pclock.stamp();
    const record: TaskRecord = {
      taskId: task.taskId,
      owner: task.owner,
      status: 'running',
      gpuId: task.gpuId ?? null,
      fencingToken: task.fencingToken ?? null,
      timeoutMs: Math.round(timeout * 1000),
      startWall: now.wall,
      lastUpdateWall: now.wall,
      lastBeat: now.basis,
      beats: 0,
      progress: null,
      progressDetail: null,
      retries: 0,
      metadata: task.metadata ?? null,
      endedWall: null,
      endReason: null,
    };
    await this.o.store.putTask(record, now);
    this.tasks.set(record.taskId, record);
    this.o.logger.debug({ taskId: record.taskId, owner: record.owner, gpuId: record.gpuId }, 'task heartbeat registered');
  }

  /** HeartbeatPort: `progress.progress` (0–1), if a number, becomes the task's progress. */
  async beat(taskId: string, progress?: Record<string, unknown>): Promise<void> {
    const p = progress?.progress;
    await this.beatTask(taskId, { progress: typeof p === 'number' ? p : undefined, detail: progress });
  }

  async beatTask(taskId: string, input: BeatInput): Promise<TaskRecord> {
    try {
      const task = await this.applyBeat(taskId, input);
      this.o.onBeat?.('ok');
      return task;
    } catch (err) {
      // A malformed beat is the caller's bug, not a heartbeat failure; the rest are.
      if (!(err instanceof AppError && err.code === ErrorCode.INVALID_REQUEST)) this.o.onBeat?.('refused');
      throw err;
    }
  }

  private async applyBeat(taskId: string, input: BeatInput): Promise<TaskRecord> {
    const details: ErrorDetail[] = [];
    if (input.progress !== undefined && !(typeof input.progress === 'number' && input.progress >= 0 && input.progress <= 1)) {
      details.push({ type: 'validation', field: 'progress', description: 'must be a number from 0 to 1' });
    }
    if (input.fencingToken !== undefined && (!Number.isSafeInteger(input.fencingToken) || input.fencingToken < 1)) details.push({ type: 'validation', field: 'fencing_token', description: 'must be a positive integer' });
    if (tooBig(input.detail)) details.push({ type: 'validation', field: 'detail', description: `must be at most ${MAX_JSON_BYTES} bytes of JSON` });
    if (details.length > 0) throw new AppError(ErrorCode.INVALID_REQUEST, 'Invalid heartbeat', { details });
    let task = this.tasks.get(taskId);
    if (!task) {
      if (!this.o.settings().autoRegister) throw new AppError(ErrorCode.NOT_FOUND, `Unknown task: ${taskId} (start its heartbeat first: POST /api/v1/monitoring/heartbeat/task/${taskId}/start)`);
      await this.register({ taskId, owner: taskId });
      task = this.tasks.get(taskId)!;
    }
    if (task.status !== 'running') {
      throw new AppError(ErrorCode.CONFLICT, `Task ${taskId} is ${task.status}${task.endReason ? ` (${task.endReason})` : ''}; register it again to resume`, {
        details: [{ type: 'task_ended', field: 'task_id', description: task.status }],
      });
    }
    if (task.gpuId !== null) {
      const lock = this.o.locks.current(task.gpuId);
      if (input.fencingToken !== undefined && input.fencingToken !== task.fencingToken) {
        throw new AppError(ErrorCode.CONFLICT, `Stale fencing token ${input.fencingToken} for task ${taskId}: it is not the token the task registered with`, { details: [{ type: 'stale_token', field: 'fencing_token', description: 'not the token the task registered with' }] });
      }
      if (!lock || lock.token !== task.fencingToken) {
        throw new AppError(ErrorCode.CONFLICT, `Task ${taskId} no longer holds ${lockKeyOf(task.gpuId)}${lock ? ` (now held by ${lock.holder})` : ''}: stop using the GPU`, {
          details: [{ type: 'lock_lost', field: 'fencing_token', description: lock ? `held by ${lock.holder}` : 'not held' }],
        });
      }
    }
    if (input.status !== undefined && input.status !== 'running') {
      if (input.progress !== undefined) task.progress = input.progress;
      await this.complete(taskId, input.status);
      return this.tasks.get(taskId)!;
    }
    const now = this.o.pclock.basis();
    task.lastBeat = now;
    task.lastUpdateWall = this.o.clock.now();
    task.beats++;
    if (input.progress !== undefined) task.progress = input.progress;
    if (input.detail !== undefined) task.progressDetail = input.detail;
    await this.o.store.beat(task);
    return task;
  }

  async complete(taskId: string, outcome: 'completed' | 'failed' | 'cancelled'): Promise<void> {
    await this.end(taskId, outcome, outcome);
  }

  /** Marks a task ended (status and reason); unknown → 404. */
  async end(taskId: string, status: Exclude<TaskStatus, 'running'>, reason: string): Promise<TaskRecord> {
    const task = this.tasks.get(taskId);
    if (!task) throw new AppError(ErrorCode.NOT_FOUND, `Unknown task: ${taskId}`);
    const now = this.o.pclock.stamp();
    task.status = status;
    task.endedWall = now.wall;
    task.endReason = reason;
    await this.o.store.putTask(task, now);
    return task;
  }

  /**
   * Takes over what the cluster's monitor decided for one of this node's tasks (cluster): a task it
   * timed out ends here too ('ended'); a task it re-armed gets a fresh window here too ('rearmed').
   */
  async adoptClusterState(remote: { taskId: string; status: TaskStatus; endReason: string | null; retries: number }): Promise<'ended' | 'rearmed' | null> {
    const task = this.tasks.get(remote.taskId);
    if (!task || task.status !== 'running') return null;
    if (remote.status !== 'running') {
      await this.end(task.taskId, remote.status, remote.endReason ?? remote.status);
      return 'ended';
    }
    if (remote.retries > task.retries) {
      task.retries = remote.retries;
      task.lastBeat = this.o.pclock.basis();
      return 'rearmed';
    }
    return null;
  }

  /** Gives a timed-out task a fresh heartbeat window (the `retry` recovery). */
  async rearm(taskId: string): Promise<TaskRecord> {
    const task = this.tasks.get(taskId);
    if (!task) throw new AppError(ErrorCode.NOT_FOUND, `Unknown task: ${taskId}`);
    const now = this.o.pclock.stamp();
    task.retries++;
    task.lastBeat = now.basis;
    await this.o.store.putTask(task, now);
    return task;
  }

  onTimeout(taskId: string, handler: () => void): () => void {
    let set = this.timeoutHandlers.get(taskId);
    if (!set) this.timeoutHandlers.set(taskId, (set = new Set()));
    set.add(handler);
    return () => {
      set.delete(handler);
      if (set.size === 0) this.timeoutHandlers.delete(taskId);
    };
  }

  /** Calls the task's onTimeout handlers; returns how many ran. */
  fireTimeout(taskId: string): number {
    const handlers = [...(this.timeoutHandlers.get(taskId) ?? [])];
    for (const h of handlers) {
      try {
        h();
      } catch (err) {
        this.o.logger.warn({ err, taskId }, 'timeout handler failed');
      }
    }
    return handlers.length;
  }

  get(taskId: string): TaskRecord | undefined {
    return this.tasks.get(taskId);
  }

  all(): TaskRecord[] {
    return [...this.tasks.values()];
  }

  /** Running tasks whose last beat is older than their timeout. */
  overdue(): TaskRecord[] {
    const now = this.o.pclock.basis();
    return this.all().filter((t) => t.status === 'running' && now - t.lastBeat > t.timeoutMs);
  }

  /** Seconds since the oldest running task's last beat (0 when none runs). */
  maxBeatAgeSeconds(): number {
    const now = this.o.pclock.basis();
    let max = 0;
    for (const t of this.tasks.values()) if (t.status === 'running') max = Math.max(max, (now - t.lastBeat) / 1000);
    return max;
  }

  /** A running task that beat within its timeout. */
  isLive(task: TaskRecord | undefined): boolean {
    return task?.status === 'running' && this.o.pclock.basis() - task.lastBeat <= task.timeoutMs;
  }

  /**
   * The task a lock was taken for: by the lock's `task_id`, else the task registered with this
   * lock's fencing token (training takes its lock without a task id, then registers its heartbeat
   * with the token). Undefined when no task is linked.
   */
  taskOfLock(lock: LockRecord): TaskRecord | undefined {
    if (lock.taskId !== null) return this.tasks.get(lock.taskId);
    let found: TaskRecord | undefined;
    for (const t of this.tasks.values()) {
      if (t.gpuId !== lock.gpuId || t.fencingToken !== lock.token) continue;
      if (t.status === 'running') return t;
      found ??= t;
    }
    return found;
  }

  overview(): HeartbeatOverview {
    const now = this.o.pclock.basis();
    const active: TaskRecord[] = [];
    const dead: TaskRecord[] = [];
    const orphaned: OrphanInfo[] = [];
    let intervalSum = 0;
    let intervalCount = 0;
    const liveTaskIds = new Set<string>();
    for (const t of this.tasks.values()) {
      if (t.status !== 'running') {
        dead.push(t);
        continue;
      }
      if (now - t.lastBeat > t.timeoutMs) {
        orphaned.push({ taskId: t.taskId, lockKey: t.gpuId === null ? null : lockKeyOf(t.gpuId), lastUpdateWall: t.lastUpdateWall, reason: 'heartbeat_timeout', timeout: true });
        continue;
      }
      liveTaskIds.add(t.taskId);
      if (t.gpuId !== null && this.o.locks.current(t.gpuId)?.token !== t.fencingToken) {
        orphaned.push({ taskId: t.taskId, lockKey: lockKeyOf(t.gpuId), lastUpdateWall: t.lastUpdateWall, reason: 'lock_lost', timeout: false });
        continue;
      }
      active.push(t);
      if (t.beats >= 2) {
        intervalSum += (t.lastUpdateWall - t.startWall) / t.beats / 1000;
        intervalCount++;
      }
    }
    for (const gpuId of this.o.locks.gpuIds()) {
      const lock = this.o.locks.current(gpuId);
      if (!lock) continue;
      const linked = lock.taskId ?? this.all().find((t) => t.gpuId === gpuId && t.fencingToken === lock.token)?.taskId ?? null;
      if (linked !== null && !liveTaskIds.has(linked) && !orphaned.some((x) => x.taskId === linked)) {
        const t = this.tasks.get(linked);
        orphaned.push({ taskId: linked, lockKey: lockKeyOf(gpuId), lastUpdateWall: t?.lastUpdateWall ?? null, reason: 'lock_without_task', timeout: false });
      }
    }
    const deadIds = new Set(dead.map((t) => t.taskId));
    const lockOnly = orphaned.filter((x) => x.reason === 'lock_without_task' && (x.taskId === null || !deadIds.has(x.taskId))).length;
    const total = active.length + dead.length + orphaned.filter((x) => x.reason !== 'lock_without_task').length + lockOnly;
    return { active, dead, orphaned, total, averageInterval: intervalCount === 0 ? 0 : intervalSum / intervalCount };
  }

  /** Forgets tasks that ended more than `retentionMs` ago (wall clock); returns their ids. */
  async expireEnded(retentionMs: number): Promise<string[]> {
    const cutoff = this.o.clock.now() - retentionMs;
    const expired = this.all().filter((t) => t.status !== 'running' && (t.endedWall ?? t.lastUpdateWall) <= cutoff).map((t) => t.taskId);
    if (expired.length === 0) return [];
    await this.o.store.deleteTasks(expired);
    for (const id of expired) {
      this.tasks.delete(id);
      this.timeoutHandlers.delete(id);
    }
    return expired;
  }

  /** Forgets ended tasks; returns their ids. */
  async removeEnded(): Promise<string[]> {
    const ended = this.all().filter((t) => t.status !== 'running').map((t) => t.taskId);
    await this.o.store.deleteTasks(ended);
    for (const id of ended) {
      this.tasks.delete(id);
      this.timeoutHandlers.delete(id);
    }
    return ended;
  }
}
