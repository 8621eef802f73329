import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Store } from '../../../electron/core/base/store.js';
import { MonitorLease, RedisHeartbeatStore } from '../../../electron/core/services/monitoring/clusterHeartbeats.js';
import type { TaskRecord } from '../../../electron/core/services/monitoring/lockStore.js';
import { RedisConnection } from '../../../electron/core/base/redisConnection.js';
import { SqliteLockStore } from '../../../electron/core/services/monitoring/sqliteLockStore.js';
import { redisMissingReason, TestRedis } from '../../helpers/redisServer.js';
import { waitUntil } from '../../helpers/wait.js';

const missing = redisMissingReason();
/** Fixed waits here let Redis's own clock (TIME, which timeouts and leases are judged on) move on; it cannot be faked. */
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const task = (taskId: string, timeoutMs: number): TaskRecord => ({
  taskId,
  owner: `owner-${taskId}`,
  status: 'running',
  gpuId: 0,
  fencingToken: 7,
  timeoutMs,
  startWall: Date.now(),
  lastUpdateWall: Date.now(),
  lastBeat: 1000,
  beats: 0,
  progress: null,
  progressDetail: null,
  retries: 0,
  metadata: { job: taskId },
  endedWall: null,
  endReason: null,
});

/** The cluster heartbeat store and the monitor lease, against a real redis-server. */
describe.skipIf(missing !== null)(`RedisHeartbeatStore and MonitorLease${missing ? ` (skipped: ${missing})` : ''}`, () => {
  let redis: TestRedis;
  let conn: RedisConnection;
  const sqlite: Store[] = [];
  let dir: string;
  let n1: RedisHeartbeatStore;
  let n2: RedisHeartbeatStore;
  const stamp = () => ({ basis: 1000, wall: Date.now() });

  beforeAll(async () => {
    redis = await TestRedis.start();
    dir = mkdtempSync(join(tmpdir(), 'cluster-hb-'));
    conn = new RedisConnection({ url: redis.url, logger: pino({ level: 'silent' }), commandTimeoutMs: 1000 });
    await conn.connect();
    const local = (name: string) => {
      const s = new Store({ path: join(dir, `${name}.db`) });
      sqlite.push(s);
      return new SqliteLockStore(s);
    };
    n1 = new RedisHeartbeatStore({ redis: conn, node: 'n1', local: local('n1') });
    n2 = new RedisHeartbeatStore({ redis: conn, node: 'n2', local: local('n2') });
  });
  afterAll(async () => {
    await conn?.close();
    await redis?.stop();
    for (const s of sqlite) s.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('every node reads every node’s tasks; a time-out is a compare-and-set on Redis time, so two monitors time a task out once', async () => {
    const t = task('job-1', 300);
    await n1.putTask(t, stamp());
    await n2.putTask(task('job-2', 60_000), stamp());
    const listed = await n2.clusterTasks();
    expect(listed.map((x) => [x.node, x.taskId, x.status])).toEqual([['n1', 'job-1', 'running'], ['n2', 'job-2', 'running']]);
    expect(listed[0]).toMatchObject({ owner: 'owner-job-1', gpuId: 0, fencingToken: 7, timeoutMs: 300, metadata: { job: 'job-1' } });
    // The node's own store keeps its copy (what a restart loads).
    expect((await n1.loadTasks()).map((x) => x.taskId)).toEqual(['job-1']);

    // Beating keeps it alive: not overdue, nothing to time out.
    await sleep(200);
    await n1.beat({ ...t, beats: 1, progress: 0.5 });
    await sleep(200);
    expect(await n2.timeOut('n1', 'job-1', 'cancel', 3)).toBeNull();
    expect((await n2.clusterTasks())[0]).toMatchObject({ beats: 1, progress: 0.5 });

    // Silent past its timeout: two monitors race, exactly one times it out.
    await sleep(250);
    const results = await Promise.all([n1.timeOut('n1', 'job-1', 'cancel', 3), n2.timeOut('n1', 'job-1', 'cancel', 3), n2.timeOut('n1', 'job-1', 'cancel', 3)]);
    expect(results.filter((r) => r?.outcome === 'timed_out')).toHaveLength(1);
    expect(results.filter((r) => r === null)).toHaveLength(2);
    const after = (await n1.clusterTasks()).find((x) => x.taskId === 'job-1')!;
    expect(after.status).toBe('timed_out');
    expect(after.endReason).toMatch(/no heartbeat for .* s \(timeout 0.3 s; timed out by the monitor of n[12]\)/);
    // The owner's late beat is refused: the task ended.
    await expect(n1.beat({ ...t, beats: 2 })).rejects.toMatchObject({ code: 'CONFLICT', details: [{ type: 'task_ended' }] });
    expect(await n2.timeOut('n2', 'job-2', 'cancel', 3)).toBeNull();

    await n1.deleteTasks(['job-1']);
    await n2.deleteTasks(['job-2']);
    expect(await n1.clusterTasks()).toEqual([]);
  });

  it('retry recovery re-arms in Redis up to max retries, then times out; a task Redis lost is shared again on its next beat', async () => {
    const t = task('job-r', 100);
    await n1.putTask(t, stamp());
    await sleep(150);
    expect(await n2.timeOut('n1', 'job-r', 'retry', 1)).toMatchObject({ outcome: 'retry', retries: 1 });
    expect(await n2.timeOut('n1', 'job-r', 'retry', 1)).toBeNull();
    await sleep(150);
    expect(await n2.timeOut('n1', 'job-r', 'retry', 1)).toMatchObject({ outcome: 'timed_out', retries: 1 });
    await n1.deleteTasks(['job-r']);

    const kept = task('job-k', 60_000);
    await n1.putTask(kept, stamp());
    await conn.run('test', (c) => c.flushAll());
    expect(await n1.clusterTasks()).toEqual([]);
    await n1.beat({ ...kept, beats: 1 });
    expect((await n2.clusterTasks()).map((x) => [x.node, x.taskId, x.status])).toEqual([['n1', 'job-k', 'running']]);
    await n1.deleteTasks(['job-k']);
  });

  it('the monitor lease: one holder; renewed by its holder only; taken over after its TTL when the holder stops renewing; handed over at once on release', async () => {
    const l1 = new MonitorLease({ redis: conn, node: 'n1', ttlMs: () => 800 });
    const l2 = new MonitorLease({ redis: conn, node: 'n2', ttlMs: () => 800 });
    expect(await l1.tick()).toBe(true);
    expect(await l2.tick()).toBe(false);
    expect(l2.holder).toBe('n1');
    // n1 keeps renewing: n2 never gets it.
    for (let i = 0; i < 4; i++) {
      await sleep(250);
      expect(await l1.tick()).toBe(true);
      expect(await l2.tick()).toBe(false);
    }
    // n1 dies (stops renewing): n2 takes over within about one TTL, and n1 learns it lost it.
    expect(await l2.tick()).toBe(false);
    await sleep(850);
    expect(await l2.tick()).toBe(true);
    expect(await l1.tick()).toBe(false);
    expect(l1.holder).toBe('n2');
    // A clean stop hands it over at once; a non-holder's release does nothing.
    await l1.release();
    expect(await l2.tick()).toBe(true);
    await l2.release();
    expect(await l1.tick()).toBe(true);
    await l1.release();
  });

  it('Redis away: the lease is not held and task writes fail closed with 503; both recover by themselves', async () => {
    const lease = new MonitorLease({ redis: conn, node: 'n1', ttlMs: () => 5000 });
    expect(await lease.tick()).toBe(true);
    await redis.stop();
    await expect(lease.tick()).rejects.toMatchObject({ code: 'UNAVAILABLE' });
    expect(lease.held).toBe(false);
    expect(lease.holder).toBeNull();
    await expect(n1.putTask(task('job-x', 1000), stamp())).rejects.toMatchObject({ code: 'UNAVAILABLE' });
    await redis.restart();
    await waitUntil(() => conn.ready, 5000, 'the connection to be ready again after Redis restarted', 100);
    expect(await lease.tick()).toBe(true);
    await n1.putTask(task('job-x', 1000), stamp());
    expect((await n2.clusterTasks()).map((x) => x.taskId)).toEqual(['job-x']);
    await lease.release();
  });
});
