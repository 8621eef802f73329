/**
 * Where GPU locks, task heartbeats and monitoring history live. The first implementation is SQLite
 * (`SqliteLockStore`); the interface is asynchronous and every lock operation is a single
 * compare-and-set decided inside the store, so a Redis implementation (keys `gpu_lock:{id}`, one
 * Lua script per operation) can replace it for several workstations without touching the service.
 *
 * Times: `*Wall` fields are Unix ms; `acquiredAt`, `expiresAt` and `lastBeat` are milliseconds on
 * the persistent monotonic basis (see persistentClock.ts).
 */

/** A held lock. */
export interface LockRecord {
  gpuId: number;
  holder: string;
  purpose: string;
  /** Task the lock was taken for (links the lock to a heartbeat), if any. */
  taskId: string | null;
  /** Fencing token: strictly increasing per GPU. */
  token: number;
  ttlMs: number;
  acquiredWall: number;
  acquiredAt: number;
  expiresAt: number;
}

/** One GPU's row: the last token ever issued (kept when the lock is free) and the lock if held. */
export interface LockRow {
  gpuId: number;
  lastToken: number;
  lock: LockRecord | null;
}

/** "Now" on both bases; every write also records it so a restart can rebuild the basis. */
export interface TimeStamp {
  basis: number;
  wall: number;
}

export interface AcquireRequest {
  gpuId: number;
  holder: string;
  purpose: string;
  taskId: string | null;
  ttlMs: number;
}

export type AcquireOutcome =
  /** `expired`: a lock whose TTL had run out and was replaced by this acquire. */
  | { ok: true; lock: LockRecord; expired: LockRecord | null }
  | { ok: false; current: LockRecord };

export type LockRefusal = 'not_held' | 'stale_token' | 'wrong_holder' | 'expired';
export type TokenOutcome = { ok: true; lock: LockRecord } | { ok: false; reason: LockRefusal; current: LockRecord | null };

/**
 * A lock operation by the holder: it must present the fencing token its acquire returned and its
 * holder name; both must match the current lock.
 */
export interface TokenRequest {
  gpuId: number;
  token: number;
  holder: string;
}

export type TaskStatus = 'running' | 'completed' | 'failed' | 'cancelled' | 'timed_out';

export interface TaskRecord {
  taskId: string;
  owner: string;
  status: TaskStatus;
  gpuId: number | null;
  fencingToken: number | null;
  timeoutMs: number;
  startWall: number;
  lastUpdateWall: number;
  /** Last beat on the persistent monotonic basis. */
  lastBeat: number;
  beats: number;
  /** 0–1 when the task reports it. */
  progress: number | null;
  progressDetail: Record<string, unknown> | null;
  /** Re-arms used under the `retry` recovery. */
  retries: number;
  metadata: Record<string, unknown> | null;
  endedWall: number | null;
  endReason: string | null;
}

export type HistoryKind = 'lock' | 'timeout';

export interface HistoryEntry {
  atWall: number;
  kind: HistoryKind;
  /** lock: acquire | renew | release | force_release | timeout; timeout: the action taken. */
  action: string;
  lockKey: string | null;
  taskId: string | null;
  holder: string | null;
  success: boolean;
  detail: Record<string, unknown> | null;
}

export interface LockStore {
  /** True when other consoles change the locks too (Redis): readers then refresh from the store. */
  readonly shared?: boolean;
  loadClock(): Promise<TimeStamp | undefined>;
  saveClock(now: TimeStamp): Promise<void>;

  loadLocks(): Promise<LockRow[]>;
  /** Takes the GPU if it is free or its lock expired at `now.basis`; the token is last+1. Atomic. */
  acquire(request: AcquireRequest, now: TimeStamp): Promise<AcquireOutcome>;
  /** Extends the lock to `now + ttlMs` if `token` and holder match and it has not expired. Atomic. */
  renew(request: TokenRequest, ttlMs: number, now: TimeStamp): Promise<TokenOutcome>;
  /** Frees the lock if `token` and holder match. An expired lock may still be released by its holder. Atomic. */
  release(request: TokenRequest, now: TimeStamp): Promise<TokenOutcome>;
  /**
   * Frees the lock whatever its holder (only if its token is `onlyToken`, when given, and only if it
   * has expired at the store's time, when `onlyIfExpired`); returns what was freed.
   */
  forceRelease(gpuId: number, now: TimeStamp, onlyToken?: number, onlyIfExpired?: boolean): Promise<LockRecord | null>;

  loadTasks(): Promise<TaskRecord[]>;
  /** Inserts or replaces a task (durable). */
  putTask(task: TaskRecord, now: TimeStamp): Promise<void>;
  /** Records a beat (hot path; may be less durable than putTask). */
  beat(task: TaskRecord): Promise<void>;
  deleteTasks(taskIds: readonly string[]): Promise<number>;

  appendHistory(entry: HistoryEntry): Promise<void>;
  /** Newest first. */
  recentHistory(kind: HistoryKind, lockKey: string | null, limit: number): Promise<HistoryEntry[]>;
  /** Keeps the newest `keep` entries of each kind. */
  pruneHistory(keep: number): Promise<void>;

  /** Gives the store the service's persistent basis (a shared store translates its own times to it). */
  attachClock?(clock: { basis(): number }): void;

  /** Durable commits and the operations they carried (group commit makes operations ≥ commits). */
  commitStats?(): { commits: number; operations: number };
}

/**
 * Where task heartbeats live: the lock store (SQLite) on a single box; in a cluster a
 * RedisHeartbeatStore that also shares every task with the other nodes (clusterHeartbeats.ts).
 */
export type HeartbeatStore = Pick<LockStore, 'loadTasks' | 'putTask' | 'beat' | 'deleteTasks'>;

/** `gpu_lock:<id>` for this node's GPUs; `gpu_lock:<node>:<id>` for another node's (cluster). */
export const lockKeyOf = (gpuId: number): string => `gpu_lock:${gpuId}`;
export const clusterLockKeyOf = (node: string, gpuId: number): string => `gpu_lock:${node}:${gpuId}`;

/** Parses `gpu_lock:<int>`; undefined when malformed (or node-qualified: see {@link parseClusterLockKey}). */
export function parseLockKey(key: string): number | undefined {
  const m = /^gpu_lock:(\d{1,4})$/.exec(key);
  return m?.[1] === undefined ? undefined : Number(m[1]);
}

/** Parses `gpu_lock:<int>` or `gpu_lock:<node>:<int>` (node undefined: this node); undefined when malformed. */
export function parseClusterLockKey(key: string): { node: string | undefined; gpuId: number } | undefined {
  const m = /^gpu_lock:(?:([A-Za-z0-9][A-Za-z0-9_.-]{0,63}):)?(\d{1,4})$/.exec(key);
  return m?.[2] === undefined ? undefined : { node: m[1], gpuId: Number(m[2]) };
}
