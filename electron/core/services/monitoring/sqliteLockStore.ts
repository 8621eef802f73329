import type { Statement } from 'better-sqlite3';
import type { Store } from '../../base/store.js';
import type {
  AcquireOutcome,
  AcquireRequest,
  HistoryEntry,
  HistoryKind,
  LockRecord,
  LockRow,
  LockStore,
  TaskRecord,
  TaskStatus,
  TimeStamp,
  TokenOutcome,
  TokenRequest,
} from './lockStore.js';

interface LockDbRow {
  gpu_id: number;
  last_token: number;
  holder: string | null;
  purpose: string | null;
  task_id: string | null;
  token: number | null;
  ttl_ms: number | null;
  acquired_wall: number | null;
  acquired_at: number | null;
  expires_at: number | null;
}

interface TaskDbRow {
  task_id: string;
  owner: string;
  status: string;
  gpu_id: number | null;
  fencing_token: number | null;
  timeout_ms: number;
  start_wall: number;
  last_update_wall: number;
  last_beat: number;
  beats: number;
  progress: number | null;
  progress_detail: string | null;
  retries: number;
  metadata: string | null;
  ended_wall: number | null;
  end_reason: string | null;
}

interface HistoryDbRow {
  at_wall: number;
  kind: string;
  action: string;
  lock_key: string | null;
  task_id: string | null;
  holder: string | null;
  success: number;
  detail: string | null;
}

function toLock(row: LockDbRow | undefined): LockRecord | null {
  if (!row || row.holder === null || row.token === null) return null;
  return {
    gpuId: row.gpu_id,
    holder: row.holder,
    purpose: row.purpose ?? '',
    taskId: row.task_id,
    token: row.token,
    ttlMs: row.ttl_ms ?? 0,
    acquiredWall: row.acquired_wall ?? 0,
    acquiredAt: row.acquired_at ?? 0,
    expiresAt: row.expires_at ?? 0,
  };
}

const parseJson = (text: string | null): Record<string, unknown> | null => (text === null ? null : (JSON.parse(text) as Record<string, unknown>));

interface QueuedOp {
  run: () => unknown;
  resolve: (value: never) => void;
  reject: (err: unknown) => void;
}

export interface SqliteLockStoreOptions {
  /**
   * Group commit (default on): operations that arrive in the same turn of the event loop run
   * one after another in ONE transaction, so they share one fsync; each still sees the effect of
   * the ones before it, and none is acknowledged before the commit.
   */
  groupCommit?: boolean;
}

/**
 * SQLite implementation of {@link LockStore}. Lock operations and task registrations run in
 * transactions on the store's synchronous=FULL connection, so an acquire that was acknowledged is
 * on disk; beats and history go through the synchronous=NORMAL connection (WAL: they survive a
 * crash of the process, and at worst the last beats are lost on power failure, which only makes a
 * task look a little older).
 */
export class SqliteLockStore implements LockStore {
  private queue: QueuedOp[] = [];
  private commits = 0;
  private operations = 0;
  private flushScheduled = false;
  private readonly groupCommit: boolean;
  private readonly batchTx: (ops: QueuedOp[]) => Array<{ ok: true; value: unknown } | { ok: false; error: unknown }>;
  private readonly s: {
    getLock: Statement<[number]>;
    allLocks: Statement<[]>;
    ensure: Statement<[number]>;
    take: Statement<[string, string, string | null, number, number, number, number, number, number, number]>;
    extend: Statement<[number, number, number]>;
    free: Statement<[number]>;
    saveClock: Statement<[number, number]>;
    loadClock: Statement<[]>;
    putTask: Statement<unknown[]>;
    beat: Statement<unknown[]>;
    allTasks: Statement<[]>;
    deleteTask: Statement<[string]>;
    addHistory: Statement<unknown[]>;
    historyAll: Statement<[string, number]>;
    historyFor: Statement<[string, string, number]>;
    prune: Statement<[string, string, number]>;
  };
  private readonly acquireTx: (request: AcquireRequest, now: TimeStamp) => AcquireOutcome;
  private readonly renewTx: (request: TokenRequest, ttlMs: number, now: TimeStamp) => TokenOutcome;
  private readonly releaseTx: (request: TokenRequest, now: TimeStamp) => TokenOutcome;
  private readonly forceTx: (gpuId: number, now: TimeStamp, onlyToken?: number, onlyIfExpired?: boolean) => LockRecord | null;

  constructor(store: Store, options: SqliteLockStoreOptions = {}) {
    this.groupCommit = options.groupCommit ?? true;
    const db = store.db;
    const bulk = store.bulk;
    this.s = {
      getLock: db.prepare('SELECT * FROM gpu_locks WHERE gpu_id = ?'),
      allLocks: db.prepare('SELECT * FROM gpu_locks ORDER BY gpu_id'),
      ensure: db.prepare('INSERT OR IGNORE INTO gpu_locks (gpu_id, last_token) VALUES (?, 0)'),
      take: db.prepare(
        'UPDATE gpu_locks SET holder = ?, purpose = ?, task_id = ?, token = ?, last_token = ?, ttl_ms = ?, acquired_wall = ?, acquired_at = ?, expires_at = ? WHERE gpu_id = ?',
      ),
      extend: db.prepare('UPDATE gpu_locks SET ttl_ms = ?, expires_at = ? WHERE gpu_id = ?'),
      free: db.prepare(
        'UPDATE gpu_locks SET holder = NULL, purpose = NULL, task_id = NULL, token = NULL, ttl_ms = NULL, acquired_wall = NULL, acquired_at = NULL, expires_at = NULL WHERE gpu_id = ?',
      ),
      saveClock: db.prepare('INSERT INTO monitoring_clock (id, basis, wall) VALUES (1, ?, ?) ON CONFLICT(id) DO UPDATE SET basis = excluded.basis, wall = excluded.wall'),
      loadClock: db.prepare('SELECT basis, wall FROM monitoring_clock WHERE id = 1'),
      putTask: db.prepare(
        `INSERT OR REPLACE INTO task_heartbeats (task_id, owner, status, gpu_id, fencing_token, timeout_ms, start_wall, last_update_wall, last_beat, beats,
           progress, progress_detail, retries, metadata, ended_wall, end_reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      ),
      beat: bulk.prepare('UPDATE task_heartbeats SET last_update_wall = ?, last_beat = ?, beats = ?, progress = ?, progress_detail = ? WHERE task_id = ?'),
      allTasks: db.prepare('SELECT * FROM task_heartbeats'),
      deleteTask: db.prepare('DELETE FROM task_heartbeats WHERE task_id = ?'),
      addHistory: bulk.prepare('INSERT INTO monitoring_history (at_wall, kind, action, lock_key, task_id, holder, success, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?)'),
      historyAll: bulk.prepare('SELECT * FROM monitoring_history WHERE kind = ? ORDER BY id DESC LIMIT ?'),
      historyFor: bulk.prepare('SELECT * FROM monitoring_history WHERE kind = ? AND lock_key = ? ORDER BY id DESC LIMIT ?'),
      prune: bulk.prepare('DELETE FROM monitoring_history WHERE kind = ? AND id <= (SELECT id FROM monitoring_history WHERE kind = ? ORDER BY id DESC LIMIT 1 OFFSET ?)'),
    };
    const stamp = (now: TimeStamp) => this.s.saveClock.run(now.basis, now.wall);
    const row = (gpuId: number): LockDbRow => {
      this.s.ensure.run(gpuId);
      return this.s.getLock.get(gpuId) as LockDbRow;
    };
    // Checks token and holder of the current lock; shared by renew and release.
    const check = (current: LockRecord | null, request: TokenRequest): TokenOutcome | null => {
      if (!current) return { ok: false, reason: 'not_held', current: null };
      if (current.token !== request.token) return { ok: false, reason: 'stale_token', current };
      if (request.holder !== current.holder) return { ok: false, reason: 'wrong_holder', current };
      return null;
    };

    this.acquireTx = db.transaction((request: AcquireRequest, now: TimeStamp): AcquireOutcome => {
      const r = row(request.gpuId);
      const current = toLock(r);
      if (current && current.expiresAt > now.basis) return { ok: false, current };
      const token = r.last_token + 1;
      const lock: LockRecord = {
        gpuId: request.gpuId,
        holder: request.holder,
        purpose: request.purpose,
        taskId: request.taskId,
        token,
        ttlMs: request.ttlMs,
        acquiredWall: now.wall,
        acquiredAt: now.basis,
        expiresAt: now.basis + request.ttlMs,
      };
      this.s.take.run(lock.holder, lock.purpose, lock.taskId, token, token, lock.ttlMs, lock.acquiredWall, lock.acquiredAt, lock.expiresAt, lock.gpuId);
      stamp(now);
      return { ok: true, lock, expired: current };
    });
    this.renewTx = db.transaction((request: TokenRequest, ttlMs: number, now: TimeStamp): TokenOutcome => {
      const current = toLock(row(request.gpuId));
      const refused = check(current, request);
      if (refused) return refused;
      if (current!.expiresAt <= now.basis) return { ok: false, reason: 'expired', current };
      const lock = { ...current!, ttlMs, expiresAt: now.basis + ttlMs };
      this.s.extend.run(ttlMs, lock.expiresAt, request.gpuId);
      stamp(now);
      return { ok: true, lock };
    });
    this.releaseTx = db.transaction((request: TokenRequest, now: TimeStamp): TokenOutcome => {
      const current = toLock(row(request.gpuId));
      const refused = check(current, request);
      if (refused) return refused;
      this.s.free.run(request.gpuId);
      stamp(now);
      return { ok: true, lock: current! };
    });
    this.forceTx = db.transaction((gpuId: number, now: TimeStamp, onlyToken?: number, onlyIfExpired?: boolean): LockRecord | null => {
      const current = toLock(row(gpuId));
      if (!current || (onlyToken !== undefined && current.token !== onlyToken)) return null;
      if (onlyIfExpired && current.expiresAt > now.basis) return null;
      this.s.free.run(gpuId);
      stamp(now);
      return current;
    });
    // Each operation is itself a transaction function: nested here it becomes a savepoint, so a
    // failing one rolls back alone and the others commit.
    this.batchTx = db.transaction((ops: QueuedOp[]) =>
      ops.map((op) => {
        try {
          return { ok: true as const, value: op.run() };
        } catch (error) {
          return { ok: false as const, error };
        }
      }),
    );
  }

  commitStats(): { commits: number; operations: number } {
    return { commits: this.commits, operations: this.operations };
  }

  /** Runs `fn` on the durable connection, batched with the other operations of this turn. */
  private durable<T>(fn: () => T): Promise<T> {
    if (!this.groupCommit) {
      this.commits++;
      this.operations++;
      try {
        return Promise.resolve(fn());
      } catch (err) {
        return Promise.reject(err);
      }
    }
    return new Promise<T>((resolve, reject) => {
      this.queue.push({ run: fn, resolve: resolve as (v: never) => void, reject });
      if (!this.flushScheduled) {
        this.flushScheduled = true;
        setImmediate(() => this.flush());
      }
    });
  }

  private flush(): void {
    this.flushScheduled = false;
    const batch = this.queue;
    this.queue = [];
    if (batch.length === 0) return;
    let results: ReturnType<typeof this.batchTx>;
    try {
      results = this.batchTx(batch);
      this.commits++;
      this.operations += batch.length;
    } catch (err) {
      for (const op of batch) op.reject(err);
      return;
    }
    batch.forEach((op, i) => {
      const r = results[i]!;
      if (r.ok) op.resolve(r.value as never);
      else op.reject(r.error);
    });
  }

  loadClock(): Promise<TimeStamp | undefined> {
    return this.durable(() => this.s.loadClock.get() as TimeStamp | undefined);
  }
  saveClock(now: TimeStamp): Promise<void> {
    return this.durable(() => {
      this.s.saveClock.run(now.basis, now.wall);
    });
  }
  loadLocks(): Promise<LockRow[]> {
    return this.durable(() => (this.s.allLocks.all() as LockDbRow[]).map((r) => ({ gpuId: r.gpu_id, lastToken: r.last_token, lock: toLock(r) })));
  }
  acquire(request: AcquireRequest, now: TimeStamp): Promise<AcquireOutcome> {
    return this.durable(() => this.acquireTx(request, now));
  }
  renew(request: TokenRequest, ttlMs: number, now: TimeStamp): Promise<TokenOutcome> {
    return this.durable(() => this.renewTx(request, ttlMs, now));
  }
  release(request: TokenRequest, now: TimeStamp): Promise<TokenOutcome> {
    return this.durable(() => this.releaseTx(request, now));
  }
  forceRelease(gpuId: number, now: TimeStamp, onlyToken?: number, onlyIfExpired?: boolean): Promise<LockRecord | null> {
    return this.durable(() => this.forceTx(gpuId, now, onlyToken, onlyIfExpired));
  }

  loadTasks(): Promise<TaskRecord[]> {
    return this.durable(() => (this.s.allTasks.all() as TaskDbRow[]).map((r) => ({
      taskId: r.task_id,
      owner: r.owner,
      status: r.status as TaskStatus,
      gpuId: r.gpu_id,
      fencingToken: r.fencing_token,
      timeoutMs: r.timeout_ms,
      startWall: r.start_wall,
      lastUpdateWall: r.last_update_wall,
      lastBeat: r.last_beat,
      beats: r.beats,
      progress: r.progress,
      progressDetail: parseJson(r.progress_detail),
      retries: r.retries,
      metadata: parseJson(r.metadata),
      endedWall: r.ended_wall,
      endReason: r.end_reason,
    })));
  }
  putTask(t: TaskRecord, now: TimeStamp): Promise<void> {
    const json = (v: Record<string, unknown> | null) => (v === null ? null : JSON.stringify(v));
    // a snapshot of the record: the caller may change it before the batch runs
    const values = [
      t.taskId, t.owner, t.status, t.gpuId, t.fencingToken, t.timeoutMs, t.startWall, t.lastUpdateWall, t.lastBeat, t.beats,
      t.progress, json(t.progressDetail), t.retries, json(t.metadata), t.endedWall, t.endReason,
    ];
    return this.durable(() => {
      this.s.putTask.run(...values);
      this.s.saveClock.run(now.basis, now.wall);
    });
  }
  async beat(t: TaskRecord): Promise<void> {
    this.s.beat.run(t.lastUpdateWall, t.lastBeat, t.beats, t.progress, t.progressDetail === null ? null : JSON.stringify(t.progressDetail), t.taskId);
  }
  deleteTasks(taskIds: readonly string[]): Promise<number> {
    const ids = [...taskIds];
    return this.durable(() => ids.reduce((n, id) => n + this.s.deleteTask.run(id).changes, 0));
  }

  async appendHistory(e: HistoryEntry): Promise<void> {
    this.s.addHistory.run(e.atWall, e.kind, e.action, e.lockKey, e.taskId, e.holder, e.success ? 1 : 0, e.detail === null ? null : JSON.stringify(e.detail));
  }
  async recentHistory(kind: HistoryKind, lockKey: string | null, limit: number): Promise<HistoryEntry[]> {
    const rows = (lockKey === null ? this.s.historyAll.all(kind, limit) : this.s.historyFor.all(kind, lockKey, limit)) as HistoryDbRow[];
    return rows.map((r) => ({
      atWall: r.at_wall,
      kind: r.kind as HistoryKind,
      action: r.action,
      lockKey: r.lock_key,
      taskId: r.task_id,
      holder: r.holder,
      success: r.success === 1,
      detail: parseJson(r.detail),
    }));
  }
  async pruneHistory(keep: number): Promise<void> {
    for (const kind of ['lock', 'timeout'] as const) this.s.prune.run(kind, kind, keep);
  }
}
