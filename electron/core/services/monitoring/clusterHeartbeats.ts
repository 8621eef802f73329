import { AppError, ErrorCode } from '../../base/errors.js';
import type { HeartbeatStore, TaskRecord, TaskStatus, TimeStamp } from './lockStore.js';
import type { RedisConnection } from '../../base/redisConnection.js';

/*
 * Heartbeats of a cluster live in Redis, next to the GPU locks: one hash per task
 * (`hb_task:<node>:<task id>`) and one set of every task (`hb_tasks`, members `<node>:<task id>`).
 * The last beat is Redis TIME, so every node judges "overdue" on the same clock. The monitor lease
 * (`cluster:monitor_lease`) names the one node whose monitor times tasks out; the time-out itself is
 * a compare-and-set in Redis too, so a task is timed out once even while the lease changes hands.
 * Each node also publishes its GPU telemetry summary (`cluster:gpus:<node>`, with a TTL: a node that
 * stopped publishing disappears from the list by itself).
 */
const NOW = `local t = redis.call('TIME'); local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)`;
const INDEX_KEY = 'hb_tasks';
const LEASE_KEY = 'cluster:monitor_lease';
const GPUS_PREFIX = 'cluster:gpus:';
const NODES_KEY = 'cluster:nodes';

/** ARGV: member, '1' = the beat clock starts now (register, re-arm), then field/value pairs. */
const PUT = `${NOW}
redis.call('HSET', KEYS[1], unpack(ARGV, 3))
if ARGV[2] == '1' or redis.call('HEXISTS', KEYS[1], 'last_beat') == 0 then redis.call('HSET', KEYS[1], 'last_beat', now) end
redis.call('SADD', KEYS[2], ARGV[1])
return now`;

/** A beat of a running task; refused (with the status) once the task ended, e.g. timed out by the lease holder. */
const BEAT = `${NOW}
local st = redis.call('HGET', KEYS[1], 'status')
if not st then return {'missing', ''} end
if st ~= 'running' then return {st, redis.call('HGET', KEYS[1], 'end_reason') or ''} end
redis.call('HSET', KEYS[1], 'last_beat', now, 'last_update_wall', ARGV[1], 'beats', ARGV[2], 'progress', ARGV[3], 'detail', ARGV[4])
return {'ok', ''}`;

/**
 * The time-out, decided in Redis: only a running task whose last beat is older than its timeout by
 * Redis time. ARGV: recovery, max retries, the node acting. Returns {outcome, age ms, retries}.
 */
const TIMEOUT = `${NOW}
if redis.call('HGET', KEYS[1], 'status') ~= 'running' then return {'none', 0, 0} end
local age = now - tonumber(redis.call('HGET', KEYS[1], 'last_beat'))
local limit = tonumber(redis.call('HGET', KEYS[1], 'timeout_ms'))
if age <= limit then return {'none', age, 0} end
local retries = tonumber(redis.call('HGET', KEYS[1], 'retries') or '0')
if ARGV[1] == 'retry' and retries < tonumber(ARGV[2]) then
  redis.call('HSET', KEYS[1], 'retries', retries + 1, 'last_beat', now)
  return {'retry', age, retries + 1}
end
redis.call('HSET', KEYS[1], 'status', 'timed_out', 'ended_wall', now, 'end_reason',
  'no heartbeat for ' .. string.format('%.1f', age / 1000) .. ' s (timeout ' .. string.format('%g', limit / 1000) .. ' s; timed out by the monitor of ' .. ARGV[3] .. ')')
return {'timed_out', age, retries}`;

/** Every task: {now, {member, fields, member, fields, ...}}; members whose hash is gone leave the index. */
const LIST = `${NOW}
local out = {}
for _, m in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local h = redis.call('HGETALL', ARGV[1] .. m)
  if #h == 0 then redis.call('SREM', KEYS[1], m) else out[#out + 1] = m; out[#out + 1] = h end
end
return {now, out}`;

const RENEW_LEASE = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0`;
const DROP_LEASE = `if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0`;

/** A task as the cluster sees it: a TaskRecord of some node, with its last beat's age by Redis time. */
export interface ClusterTask extends Omit<TaskRecord, 'lastBeat'> {
  node: string;
  lastBeatAgeMs: number;
}

export type ClusterTimeoutOutcome = { outcome: 'retry' | 'timed_out'; ageMs: number; retries: number };

const taskKey = (node: string, taskId: string) => `hb_task:${node}:${taskId}`;
const str = (v: number | null) => (v === null ? '' : String(v));
const num = (v: string | undefined) => (v === undefined || v === '' ? null : Number(v));
const json = (v: string | undefined): Record<string, unknown> | null => {
  if (v === undefined || v === '') return null;
  try {
    const parsed: unknown = JSON.parse(v);
    return parsed !== null && typeof parsed === 'object' && !Array.isArray(parsed) ? (parsed as Record<string, unknown>) : null;
  } catch {
    return null;
  }
};

function fields(task: TaskRecord): string[] {
  return [
    'owner', task.owner,
    'status', task.status,
    'gpu_id', str(task.gpuId),
    'token', str(task.fencingToken),
    'timeout_ms', String(task.timeoutMs),
    'start_wall', String(task.startWall),
    'last_update_wall', String(task.lastUpdateWall),
    'beats', String(task.beats),
    'progress', str(task.progress),
    'retries', String(task.retries),
    'ended_wall', str(task.endedWall),
    'end_reason', task.endReason ?? '',
    'metadata', task.metadata ? JSON.stringify(task.metadata) : '',
    'detail', task.progressDetail ? JSON.stringify(task.progressDetail) : '',
  ];
}

function hash(flat: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (let i = 0; i + 1 < flat.length; i += 2) out[flat[i]!] = flat[i + 1]!;
  return out;
}

export interface RedisHeartbeatStoreOptions {
  redis: RedisConnection;
  /** This console's node id: its tasks are `hb_task:<node>:*`. */
  node: string;
  /** This console's own copy (SQLite): what a restart loads. */
  local: HeartbeatStore;
}

/**
 * {@link HeartbeatStore} of a cluster node: every write goes to Redis first (a write Redis refused
 * fails with 503, closed), then to the node's own store. Reads of the whole cluster's tasks
 * ({@link clusterTasks}) and the time-out compare-and-set are for the monitor.
 */
export class RedisHeartbeatStore implements HeartbeatStore {
  constructor(private readonly o: RedisHeartbeatStoreOptions) {}

  get node(): string {
    return this.o.node;
  }

  private eval(what: string, script: string, keys: string[], args: string[]): Promise<unknown> {
    return this.o.redis.run(what, (c) => c.eval(script, { keys, arguments: args }));
  }

  loadTasks(): Promise<TaskRecord[]> {
    return this.o.local.loadTasks();
  }

  async putTask(task: TaskRecord, now: TimeStamp): Promise<void> {
    await this.share(task, task.status === 'running' && (task.beats === 0 || task.lastBeat === now.basis));
    await this.o.local.putTask(task, now);
  }

  private async share(task: TaskRecord, restartBeat: boolean): Promise<void> {
    await this.eval('store task', PUT, [taskKey(this.o.node, task.taskId), INDEX_KEY], [`${this.o.node}:${task.taskId}`, restartBeat ? '1' : '0', ...fields(task)]);
  }

  async beat(task: TaskRecord): Promise<void> {
    const [status, reason] = (await this.eval('beat', BEAT, [taskKey(this.o.node, task.taskId)], [
      String(task.lastUpdateWall),
      String(task.beats),
      str(task.progress),
      task.progressDetail ? JSON.stringify(task.progressDetail) : '',
    ])) as [string, string];
    // Redis lost its data (restarted without persistence): share the task again, its clock restarting now.
    if (status === 'missing') await this.share(task, true);
    else if (status !== 'ok') {
      throw new AppError(ErrorCode.CONFLICT, `Task ${task.taskId} is ${status}${reason ? ` (${reason})` : ''}; register it again to resume`, {
        details: [{ type: 'task_ended', field: 'task_id', description: status }],
      });
    }
    await this.o.local.beat(task);
  }

  async deleteTasks(taskIds: readonly string[]): Promise<number> {
    if (taskIds.length > 0) {
      await this.o.redis.run('delete tasks', async (c) => {
        await c.del(taskIds.map((id) => taskKey(this.o.node, id)));
        await c.sRem(INDEX_KEY, taskIds.map((id) => `${this.o.node}:${id}`));
      });
    }
    return this.o.local.deleteTasks(taskIds);
  }

  /** Removes ended tasks of any node from Redis (the lease holder's retention: a dead node forgets nothing). */
  async forget(tasks: ReadonlyArray<{ node: string; taskId: string }>): Promise<void> {
    if (tasks.length === 0) return;
    await this.o.redis.run('forget tasks', async (c) => {
      await c.del(tasks.map((t) => taskKey(t.node, t.taskId)));
      await c.sRem(INDEX_KEY, tasks.map((t) => `${t.node}:${t.taskId}`));
    });
  }

  /** Every node's tasks, each with its node id and the age of its last beat by Redis time. */
  async clusterTasks(): Promise<ClusterTask[]> {
    const [now, flat] = (await this.eval('list tasks', LIST, [INDEX_KEY], ['hb_task:'])) as [number, Array<string | string[]>];
    const out: ClusterTask[] = [];
    for (let i = 0; i + 1 < flat.length; i += 2) {
      const member = flat[i] as string;
      const h = hash(flat[i + 1] as string[]);
      const sep = member.indexOf(':');
      out.push({
        node: member.slice(0, sep),
        taskId: member.slice(sep + 1),
        owner: h.owner ?? '',
        status: (h.status ?? 'running') as TaskStatus,
        gpuId: num(h.gpu_id),
        fencingToken: num(h.token),
        timeoutMs: Number(h.timeout_ms),
        startWall: Number(h.start_wall),
        lastUpdateWall: Number(h.last_update_wall),
        lastBeatAgeMs: Math.max(0, Number(now) - Number(h.last_beat)),
        beats: Number(h.beats ?? 0),
        progress: num(h.progress),
        progressDetail: json(h.detail),
        retries: Number(h.retries ?? 0),
        metadata: json(h.metadata),
        endedWall: num(h.ended_wall),
        endReason: h.end_reason ? h.end_reason : null,
      });
    }
    return out.sort((a, b) => a.node.localeCompare(b.node) || a.taskId.localeCompare(b.taskId));
  }

  /**
   * Times a task out if Redis agrees it is overdue and still running (compare-and-set): under the
   * `retry` recovery with retries left it gets a fresh window instead. Null: nothing to do (it beat,
   * ended, or another monitor handled it).
   */
  async timeOut(node: string, taskId: string, recovery: string, maxRetries: number): Promise<ClusterTimeoutOutcome | null> {
    const [outcome, age, retries] = (await this.eval('time out task', TIMEOUT, [taskKey(node, taskId)], [recovery, String(maxRetries), this.o.node])) as [string, number, number];
    if (outcome !== 'retry' && outcome !== 'timed_out') return null;
    return { outcome, ageMs: Number(age), retries: Number(retries) };
  }
}

/**
 * The monitor lease: `SET cluster:monitor_lease <node> NX PX ttl`, renewed by a compare-and-pexpire.
 * Only its holder sweeps heartbeat timeouts; a holder that dies loses it within one TTL.
 */
export class MonitorLease {
  private heldByMe = false;
  private lastHolder: string | null = null;

  constructor(private readonly o: { redis: RedisConnection; node: string; ttlMs: () => number }) {}

  /** Renews or takes the lease; true while this node holds it. Redis away: false (fail closed). */
  async tick(): Promise<boolean> {
    try {
      const ttl = String(Math.max(1, Math.round(this.o.ttlMs())));
      const held = await this.o.redis.run('monitor lease', async (c) => {
        if (Number(await c.eval(RENEW_LEASE, { keys: [LEASE_KEY], arguments: [this.o.node, ttl] })) === 1) return this.o.node;
        if ((await c.set(LEASE_KEY, this.o.node, { NX: true, PX: Number(ttl) })) === 'OK') return this.o.node;
        return c.get(LEASE_KEY);
      });
      this.lastHolder = held;
      this.heldByMe = held === this.o.node;
    } catch (err) {
      this.heldByMe = false;
      this.lastHolder = null;
      throw err;
    }
    return this.heldByMe;
  }

  get held(): boolean {
    return this.heldByMe;
  }

  /** The holder seen at the last tick (null: none, or Redis away). */
  get holder(): string | null {
    return this.lastHolder;
  }

  /** Gives the lease up (on stop), so a survivor takes it at its next check instead of after the TTL. */
  async release(): Promise<void> {
    if (!this.heldByMe) return;
    this.heldByMe = false;
    this.lastHolder = null;
    await this.o.redis.run('release monitor lease', (c) => c.eval(DROP_LEASE, { keys: [LEASE_KEY], arguments: [this.o.node] }));
  }
}

/** A node's GPUs as it publishes them (telemetry summary). */
export interface NodeGpus {
  node: string;
  /** False: the node stopped publishing (stopped, killed or cut off): its entry expired. */
  online: boolean;
  at: number | null;
  lockable: number[];
  nvidiaAvailable: boolean;
  gpus: Array<{ index: number; name: string | null; utilizationGpu: number | null; memoryUsedMiB: number | null; memoryTotalMiB: number | null; temperatureC: number | null }>;
}

/** Publishes this node's GPU summary (expires after `ttlMs` unless published again). */
export async function publishNodeGpus(redis: RedisConnection, summary: Omit<NodeGpus, 'online'>, ttlMs: number): Promise<void> {
  await redis.run('publish gpus', (c) => c.set(`${GPUS_PREFIX}${summary.node}`, JSON.stringify(summary), { PX: Math.max(1, Math.round(ttlMs)) }));
}

/** Every node that joined the cluster, with its last published GPU summary. */
export async function listNodeGpus(redis: RedisConnection): Promise<NodeGpus[]> {
  return redis.run('list nodes', async (c) => {
    const joined = await c.hGetAll(NODES_KEY);
    const names = Object.keys(joined).sort();
    const live = names.length === 0 ? [] : await c.mGet(names.map((n) => `${GPUS_PREFIX}${n}`));
    return names.map((node, i): NodeGpus => {
      const raw = live[i];
      if (raw) {
        const parsed = JSON.parse(raw) as Omit<NodeGpus, 'online'>;
        return { ...parsed, node, online: true };
      }
      const lockable = (JSON.parse(joined[node] ?? '{}') as { gpus?: number[] }).gpus ?? [];
      return { node, online: false, at: null, lockable, nvidiaAvailable: false, gpus: [] };
    });
  });
}
