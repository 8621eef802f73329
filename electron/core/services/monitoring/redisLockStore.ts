import type {
  AcquireOutcome,
  AcquireRequest,
  HistoryEntry,
  HistoryKind,
  LockRecord,
  LockRefusal,
  LockRow,
  LockStore,
  TaskRecord,
  TimeStamp,
  TokenOutcome,
  TokenRequest,
} from './lockStore.js';
import { AppError, ErrorCode } from '../../base/errors.js';
import type { RedisConnection } from '../../base/redisConnection.js';

const EPOCH_KEY = 'cluster:epoch';
const GRACE_KEY = 'cluster:grace';
const NODES_KEY = 'cluster:nodes';

/*
 * Every script reads the time from Redis (TIME), never from a node: expiry is decided on one clock
 * for the whole cluster. Lock hash fields: holder, purpose, task_id ('' = none), token, ttl_ms,
 * acquired_at and expires_at (Redis ms), via (node that granted it). The fencing counter is a
 * separate key that is never deleted, so tokens keep increasing across restarts of any node;
 * `floor` (the highest token the caller has seen) keeps them increasing even if Redis lost it.
 *
 * Redis that lost its data (restarted without persistence) has lost the locks too, while their
 * holders may still be working. Every console marks a Redis it joins (`cluster:epoch`, set at its
 * start); an acquire that finds the mark missing knows the data is gone, sets it again and refuses
 * every acquire for the longest TTL a lock can have (`cluster:grace`), so no lock granted before can
 * still be in use when a new one is granted. Renewals of lost locks fail (`not_held`).
 */
const NOW = `local t = redis.call('TIME'); local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)`;

const ACQUIRE = `${NOW}
if redis.call('EXISTS', KEYS[3]) == 0 then
  redis.call('SET', KEYS[3], now)
  if tonumber(ARGV[7]) > 0 then redis.call('SET', KEYS[4], now, 'PX', ARGV[7]) end
end
local grace = redis.call('PTTL', KEYS[4])
if grace > 0 then return {2, now, {}, grace} end
local cur = redis.call('HGETALL', KEYS[1])
local exp = redis.call('HGET', KEYS[1], 'expires_at')
if exp and tonumber(exp) > now then return {0, now, cur, 0} end
local tok = redis.call('INCR', KEYS[2])
local floor = tonumber(ARGV[5])
if tok <= floor then tok = floor + 1; redis.call('SET', KEYS[2], tok) end
local ttl = tonumber(ARGV[4])
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'holder', ARGV[1], 'purpose', ARGV[2], 'task_id', ARGV[3], 'token', tok, 'ttl_ms', ttl, 'acquired_at', now, 'expires_at', now + ttl, 'via', ARGV[6])
return {1, now, cur, tok}`;

/** Shared by renew and release: the caller's token and holder name must match the current lock. */
const CHECK = `${NOW}
local h = redis.call('HGETALL', KEYS[1])
if #h == 0 then return {'not_held', now, h} end
if redis.call('HGET', KEYS[1], 'token') ~= ARGV[1] then return {'stale_token', now, h} end
if redis.call('HGET', KEYS[1], 'holder') ~= ARGV[2] then return {'wrong_holder', now, h} end`;

const RENEW = `${CHECK}
if tonumber(redis.call('HGET', KEYS[1], 'expires_at')) <= now then return {'expired', now, h} end
local ttl = tonumber(ARGV[3])
redis.call('HSET', KEYS[1], 'ttl_ms', ttl, 'expires_at', now + ttl)
return {'ok', now, redis.call('HGETALL', KEYS[1])}`;

const RELEASE = `${CHECK}
redis.call('DEL', KEYS[1])
return {'ok', now, h}`;

/** ARGV: only this token ('' = any), '1' = only if expired by Redis time. */
const FORCE = `${NOW}
local h = redis.call('HGETALL', KEYS[1])
if #h == 0 then return {'none', now, h} end
if ARGV[1] ~= '' and redis.call('HGET', KEYS[1], 'token') ~= ARGV[1] then return {'none', now, h} end
if ARGV[2] == '1' and tonumber(redis.call('HGET', KEYS[1], 'expires_at')) > now then return {'none', now, h} end
redis.call('DEL', KEYS[1])
return {'ok', now, h}`;

const READ = `${NOW}
return {now, redis.call('HGETALL', KEYS[1]), redis.call('GET', KEYS[2]) or '0'}`;

type Flat = string[];

function hash(flat: Flat): Record<string, string> {
  const out: Record<string, string> = {};
  for (let i = 0; i + 1 < flat.length; i += 2) out[flat[i]!] = flat[i + 1]!;
  return out;
}

export interface RedisLockStoreOptions {
  redis: RedisConnection;
  /** Node whose GPUs this store locks (`gpu_lock:<node>:<id>`). */
  node: string;
  /** This console's node id (recorded as `via` on the locks it grants). */
  self: string;
  /** Heartbeats, history and the clock basis stay in this console's own store. */
  local: LockStore;
  /** Highest fencing token seen per lock key (shared by the stores of one console). */
  seen?: Map<string, number>;
  /** Longest TTL a lock can be granted (ms): the grace period after Redis lost its data. */
  maxTtlMs: () => number;
}

/**
 * {@link LockStore} whose locks live in Redis, shared by every console of a cluster. Each
 * operation is one Lua script (atomic in Redis); times come from Redis and are translated to the
 * caller's persistent basis (`now`) only for display and the local read cache.
 */
export class RedisLockStore implements LockStore {
  readonly shared = true;
  private readonly seen: Map<string, number>;
  private basisNow: () => number = () => 0;

  constructor(private readonly o: RedisLockStoreOptions) {
    this.seen = o.seen ?? new Map();
  }

  get node(): string {
    return this.o.node;
  }

  /** Store for another node's GPUs over the same connection. */
  forNode(node: string): RedisLockStore {
    const store = new RedisLockStore({ ...this.o, node, seen: this.seen });
    store.basisNow = this.basisNow;
    return store;
  }

  attachClock(clock: { basis(): number }): void {
    this.basisNow = () => clock.basis();
  }

  lockKey(gpuId: number): string {
    return `gpu_lock:${this.o.node}:${gpuId}`;
  }

  private tokenKey(gpuId: number): string {
    return `gpu_lock_token:${this.o.node}:${gpuId}`;
  }

  private record(gpuId: number, flat: Flat, redisNow: number, basisNow: number): LockRecord | null {
    if (flat.length === 0) return null;
    const h = hash(flat);
    const acquired = Number(h.acquired_at);
    const toBasis = (t: number) => basisNow + (t - redisNow);
    const token = Number(h.token);
    this.see(gpuId, token);
    return {
      gpuId,
      holder: h.holder ?? '',
      purpose: h.purpose ?? '',
      taskId: h.task_id ? h.task_id : null,
      token,
      ttlMs: Number(h.ttl_ms),
      acquiredWall: acquired,
      acquiredAt: toBasis(acquired),
      expiresAt: toBasis(Number(h.expires_at)),
    };
  }

  private see(gpuId: number, token: number): void {
    const key = this.lockKey(gpuId);
    if (Number.isSafeInteger(token) && token > (this.seen.get(key) ?? 0)) this.seen.set(key, token);
  }

  private eval(what: string, script: string, keys: string[], args: string[]): Promise<unknown[]> {
    return this.o.redis.run(what, (c) => c.eval(script, { keys, arguments: args }) as Promise<unknown[]>);
  }

  loadClock(): Promise<TimeStamp | undefined> {
    return this.o.local.loadClock();
  }

  saveClock(now: TimeStamp): Promise<void> {
    return this.o.local.saveClock(now);
  }

  /** Every lock of this store's node. */
  async loadLocks(): Promise<LockRow[]> {
    const prefix = `gpu_lock:${this.o.node}:`;
    const keys = await this.o.redis.run('load locks', async (c) => {
      const out: string[] = [];
      for await (const key of c.scanIterator({ MATCH: `${prefix}*`, COUNT: 100 })) out.push(key);
      return out;
    });
    const ids = [...new Set(keys.map((k) => Number(k.slice(prefix.length))).filter((n) => Number.isInteger(n) && n >= 0))].sort((a, b) => a - b);
    const rows: LockRow[] = [];
    for (const gpuId of ids) {
      const basis = this.basisNow();
      const [now, flat, last] = (await this.eval('load lock', READ, [this.lockKey(gpuId), this.tokenKey(gpuId)], [])) as [number, Flat, string];
      const lock = this.record(gpuId, flat, Number(now), basis);
      rows.push({ gpuId, lastToken: Math.max(Number(last), lock?.token ?? 0), lock });
    }
    return rows;
  }

  async acquire(request: AcquireRequest, now: TimeStamp): Promise<AcquireOutcome> {
    const floor = this.seen.get(this.lockKey(request.gpuId)) ?? 0;
    const [ok, redisNow, cur, token] = (await this.eval('acquire', ACQUIRE, [this.lockKey(request.gpuId), this.tokenKey(request.gpuId), EPOCH_KEY, GRACE_KEY], [
      request.holder,
      request.purpose,
      request.taskId ?? '',
      String(request.ttlMs),
      String(floor),
      this.o.self,
      String(Math.max(0, Math.round(this.o.maxTtlMs()))),
    ])) as [number, number, Flat, number];
    const rnow = Number(redisNow);
    if (Number(ok) === 2) {
      const left = Number(token);
      throw new AppError(ErrorCode.UNAVAILABLE, `Cluster lock store recovering: Redis lost its data (restarted without persistence?), so locks granted before may still be in use; no GPU lock is granted for another ${(left / 1000).toFixed(1)} s`, {
        details: [{ type: 'cluster_recovering', field: 'cluster.redisUrl', description: `retry in ${Math.ceil(left / 1000)} s` }],
        headers: { 'retry-after': String(Math.ceil(left / 1000)) },
      });
    }
    const current = this.record(request.gpuId, cur, rnow, now.basis);
    if (Number(ok) !== 1) return { ok: false, current: current! };
    this.see(request.gpuId, Number(token));
    return {
      ok: true,
      lock: {
        gpuId: request.gpuId,
        holder: request.holder,
        purpose: request.purpose,
        taskId: request.taskId,
        token: Number(token),
        ttlMs: request.ttlMs,
        acquiredWall: rnow,
        acquiredAt: now.basis,
        expiresAt: now.basis + request.ttlMs,
      },
      expired: current,
    };
  }

  async renew(request: TokenRequest, ttlMs: number, now: TimeStamp): Promise<TokenOutcome> {
    const reply = (await this.eval('renew', RENEW, [this.lockKey(request.gpuId)], [String(request.token), request.holder, String(ttlMs)])) as [string, number, Flat];
    return this.tokenOutcome(request.gpuId, reply, now);
  }

  async release(request: TokenRequest, now: TimeStamp): Promise<TokenOutcome> {
    const reply = (await this.eval('release', RELEASE, [this.lockKey(request.gpuId)], [String(request.token), request.holder])) as [string, number, Flat];
    return this.tokenOutcome(request.gpuId, reply, now);
  }

  async forceRelease(gpuId: number, now: TimeStamp, onlyToken?: number, onlyIfExpired?: boolean): Promise<LockRecord | null> {
    const [status, redisNow, h] = (await this.eval('force release', FORCE, [this.lockKey(gpuId)], [onlyToken === undefined ? '' : String(onlyToken), onlyIfExpired ? '1' : '0'])) as [
      string,
      number,
      Flat,
    ];
    return status === 'ok' ? this.record(gpuId, h, Number(redisNow), now.basis) : null;
  }

  private tokenOutcome(gpuId: number, [status, redisNow, h]: [string, number, Flat], now: TimeStamp): TokenOutcome {
    const lock = this.record(gpuId, h, Number(redisNow), now.basis);
    if (status === 'ok') return { ok: true, lock: lock! };
    return { ok: false, reason: status as LockRefusal, current: lock };
  }

  loadTasks(): Promise<TaskRecord[]> {
    return this.o.local.loadTasks();
  }

  putTask(task: TaskRecord, now: TimeStamp): Promise<void> {
    return this.o.local.putTask(task, now);
  }

  beat(task: TaskRecord): Promise<void> {
    return this.o.local.beat(task);
  }

  deleteTasks(taskIds: readonly string[]): Promise<number> {
    return this.o.local.deleteTasks(taskIds);
  }

  appendHistory(entry: HistoryEntry): Promise<void> {
    return this.o.local.appendHistory(entry);
  }

  recentHistory(kind: HistoryKind, lockKey: string | null, limit: number): Promise<HistoryEntry[]> {
    return this.o.local.recentHistory(kind, lockKey, limit);
  }

  pruneHistory(keep: number): Promise<void> {
    return this.o.local.pruneHistory(keep);
  }

  /**
   * Publishes this node's lockable GPUs (so other nodes accept `gpu_lock:<node>:<id>`); at start
   * (`joining`) it also marks the Redis as known (see the grace rule above).
   */
  async publishNode(gpuIds: readonly number[], joining: boolean): Promise<void> {
    await this.o.redis.run('register node', async (c) => {
      if (joining) await c.set(EPOCH_KEY, String(Date.now()), { NX: true });
      await c.hSet(NODES_KEY, this.o.node, JSON.stringify({ gpus: [...gpuIds] }));
    });
  }

  /** GPU ids a node published, or undefined for a node that never joined. */
  async nodeGpus(node: string): Promise<number[] | undefined> {
    const raw = await this.o.redis.run('read node', (c) => c.hGet(NODES_KEY, node));
    if (raw === undefined || raw === null) return undefined;
    const parsed = JSON.parse(raw) as { gpus?: unknown };
    return Array.isArray(parsed.gpus) ? parsed.gpus.filter((g): g is number => Number.isInteger(g)) : [];
  }
}
