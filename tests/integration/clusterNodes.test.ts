import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { redisMissingReason, TestRedis } from '../helpers/redisServer.js';
import { spawnServe, type ServeProcess } from '../helpers/spawnServe.js';
import { waitFor } from '../helpers/wait.js';

/*
 * Three console processes (nodes a, b, c: separate data dirs and node ids, one real redis-server).
 * Heartbeats live in Redis; one monitor at a time (the lease holder) times tasks out. The node that
 * holds the monitor lease (call it B; which of the three wins the lease at start is up to the race)
 * also holds a GPU lock with a heartbeat task, then is killed with -9: a survivor takes the lease
 * over and times B's task out, releasing its lock exactly once across the cluster.
 */
const missing = redisMissingReason();
const json = { 'content-type': 'application/json' };
type Body = Record<string, unknown>;
type Snapshot = {
  cluster: {
    redis_connected: boolean;
    error: string | null;
    lease_holder: string | null;
    nodes: Array<{ node_id: string; online: boolean; lockable: number[] }>;
    locks: Array<{ node_id: string; lock_key: string; is_locked: boolean; lock_holder: string | null }>;
    tasks: Array<{ node_id: string; task_id: string; status: string; gpu_lock: string | null; end_reason: string | null }>;
  } | null;
};
// Renewed every 0.5 s check; long enough that a check slowed by a busy machine does not lose it.
const LEASE_SECONDS = 5;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const until = <T>(what: string, fn: () => Promise<T | undefined>, ms: number): Promise<T> => waitFor(fn, ms, what, 150);

describe.skipIf(missing !== null)(`heartbeats shared by console processes through Redis${missing ? ` (skipped: ${missing})` : ''}`, () => {
  let redis: TestRedis;
  const procs: Record<string, ServeProcess> = {};
  const urls: Record<string, string> = {};
  const dirs: Record<string, string> = {};

  const spawnNode = (id: string) => {
    dirs[id] = mkdtempSync(join(tmpdir(), `console-hb-${id}-`));
    writeFileSync(
      join(dirs[id], 'config.json'),
      JSON.stringify({
        engine: { gpu: 'false', detectOnStart: false },
        cluster: { monitorLeaseSeconds: LEASE_SECONDS },
        monitoring: { monitor: { checkIntervalSeconds: 0.5 }, telemetry: { intervalSeconds: 1 } },
      }),
    );
    procs[id] = spawnServe(['--port', '0', '--grpc-port', '0'], { CONSOLE_DATA_DIR: dirs[id], CONSOLE_REDIS_URL: redis.url, CONSOLE_NODE_ID: id, CONSOLE_GPU_IDS: '0,1' });
    return procs[id].ready.then(({ url }) => void (urls[id] = url));
  };
  const post = async (node: string, path: string, body: unknown) => {
    const res = await fetch(`${urls[node]}/api/v1/monitoring${path}`, { method: 'POST', headers: json, body: JSON.stringify(body) });
    return { status: res.status, body: (await res.json()) as Body };
  };
  const get = async <T = Body>(node: string, path: string, headers: Record<string, string> = {}) => (await (await fetch(`${urls[node]}${path}`, { headers })).json()) as T;
  const snapshot = (node: string) => get<Snapshot>(node, '/api/v1/monitoring/snapshot');
  const leaseHolder = async (node: string) => ((await get<{ components: Record<string, { details: Record<string, unknown> }> }>(node, '/api/v1/health/details')).components.cluster?.details.monitorLeaseHolder ?? null) as string | null;
  const forcedReleases = async (node: string) => {
    const text = await (await fetch(`${urls[node]}/metrics`)).text();
    const m = /^console_monitoring_timeout_actions_total\{action="force_release_gpu_lock"\} (\d+)/m.exec(text);
    return m ? Number(m[1]) : 0;
  };
  const timeoutAudits = async (node: string, victim: string) => {
    const admin = { authorization: `Bearer ${readFileSync(join(dirs[node]!, 'admin-token'), 'utf8').trim()}` };
    const { entries } = await get<{ entries: Array<{ action: string; target: string | null }> }>(node, '/api/console/audit?limit=1000', admin);
    return entries.filter((e) => e.action === 'monitoring.task.timeout' && e.target === `${victim}/job-b`).length;
  };

  // B: the lease holder at start (it gets killed); A reads snapshots; C runs a task without a lock.
  let B = '';
  let A = '';
  let C = '';

  beforeAll(async () => {
    redis = await TestRedis.start();
    await Promise.all(['a', 'b', 'c'].map(spawnNode));
    B = await until(
      'the three to agree on one lease holder',
      async () => {
        const seen = await Promise.all(['a', 'b', 'c'].map(leaseHolder));
        return seen[0] !== null && seen.every((h) => h === seen[0]) ? seen[0] : undefined;
      },
      15_000,
    );
    [A, C] = ['a', 'b', 'c'].filter((n) => n !== B) as [string, string];
  }, 60_000);
  afterAll(async () => {
    for (const p of Object.values(procs)) {
      if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGTERM');
      await p.exited;
    }
    await redis?.stop();
    for (const d of Object.values(dirs)) rmSync(d, { recursive: true, force: true });
  }, 30_000);

  it('every node sees every node’s tasks and locks; the lease holder killed with -9 has its lock timed out once by the survivor that takes the lease over', async () => {
    const bLock = `gpu_lock:${B}:0`;
    // B: a GPU lock with a heartbeat task (short heartbeat timeout, long lock TTL).
    const lock = await post(B, '/gpu-lock/acquire', { lock_key: 'gpu_lock:0', task_name: 'job-b', task_id: 'job-b', ttl_seconds: 600 });
    expect(lock.status).toBe(200);
    expect((await post(B, '/heartbeat/task/job-b/start', { task_name: 'job-b', gpu_lock: 'gpu_lock:0', fencing_token: lock.body.fencing_token, timeout_seconds: 2 })).status).toBe(200);
    expect((await post(B, '/heartbeat/task/job-b', { progress: 0.1 })).status).toBe(200);
    // C: a task without a lock.
    expect((await post(C, '/heartbeat/task/job-c/start', { task_name: 'job-c', timeout_seconds: 600 })).status).toBe(200);
    expect((await post(C, '/heartbeat/task/job-c', { progress: 0.5 })).status).toBe(200);

    // A's snapshot lists C's and B's tasks with their node, B's lock, and every node's GPUs.
    const seen = await until(
      'A to see the whole cluster',
      async () => {
        const s = (await snapshot(A)).cluster;
        if (!s) return undefined;
        const ok = s.tasks.some((t) => t.node_id === C && t.task_id === 'job-c' && t.status === 'running') && s.locks.some((l) => l.node_id === B && l.lock_key === bLock && l.is_locked && l.lock_holder === 'job-b');
        return ok && s.nodes.filter((n) => n.online).length === 3 ? s : undefined;
      },
      10_000,
    );
    expect(seen.tasks.find((t) => t.task_id === 'job-b')).toMatchObject({ node_id: B, status: 'running', gpu_lock: bLock });
    expect(seen.nodes.map((n) => [n.node_id, n.lockable])).toEqual([['a', [0, 1]], ['b', [0, 1]], ['c', [0, 1]]]);
    expect(seen.lease_holder).toBe(B);
    expect(JSON.stringify(seen)).not.toContain('fencing_token');

    // B dies holding the monitor lease, its GPU lock and a running task.
    procs[B]!.child.kill('SIGKILL');
    await procs[B]!.exited;

    // A survivor takes the lease over (within about one TTL) and times B's task out, freeing its lock.
    await until(
      `${bLock} to be freed`,
      async () => ((await get<{ is_locked: boolean }>(A, `/api/v1/monitoring/gpu-lock/status?lock_key=${bLock}`)).is_locked ? undefined : true),
      20_000,
    );
    // A's view of the holder is refreshed at its own checks: it may still name the dead node for a moment.
    const holder = await until('A to see a surviving holder', async () => {
      const h = await leaseHolder(A);
      return h && h !== B ? h : undefined;
    }, 5000);
    expect([A, C]).toContain(holder);
    await until('C to see the same holder', async () => ((await leaseHolder(C)) === holder ? true : undefined), 5000);
    // Let several more checks run on both survivors: still exactly one forced release, one audit entry.
    await sleep(2000);
    expect((await forcedReleases(A)) + (await forcedReleases(C))).toBe(1);
    expect(await forcedReleases(holder)).toBe(1);
    expect((await timeoutAudits(A, B)) + (await timeoutAudits(C, B))).toBe(1);

    // The task shows as timed out (by the holder) on every survivor; C's task still runs.
    for (const node of [A, C]) {
      const s = (await snapshot(node)).cluster!;
      expect(s.tasks.find((t) => t.task_id === 'job-b')).toMatchObject({ node_id: B, status: 'timed_out' });
      expect(s.tasks.find((t) => t.task_id === 'job-c')).toMatchObject({ node_id: C, status: 'running' });
      expect(s.tasks.find((t) => t.task_id === 'job-b')?.end_reason).toContain(`monitor of ${holder}`);
      expect(s.nodes.find((n) => n.node_id === B)?.online).toBe(false);
    }
    // Another node can take the GPU now.
    const next = await post(C, '/gpu-lock/acquire', { lock_key: bLock, task_name: 'next-job' });
    expect(next.status).toBe(200);
    expect(next.body.fencing_token as number).toBeGreaterThan(lock.body.fencing_token as number);
  }, 60_000);

  it('Redis down: beats fail closed, nobody holds the lease (shown in the snapshot and health details); all recovers by itself', async () => {
    await redis.stop();
    const down = await until(
      'A to show Redis down',
      async () => {
        const s = (await snapshot(A)).cluster;
        return s && !s.redis_connected ? s : undefined;
      },
      10_000,
    );
    expect(down.lease_holder).toBeNull();
    await until('C to see no lease holder', async () => ((await leaseHolder(C)) === null ? true : undefined), 5000);
    const beat = await post(C, '/heartbeat/task/job-c', { progress: 0.6 });
    expect(beat.status).toBe(503);
    expect((beat.body.error as { code: string }).code).toBe('UNAVAILABLE');

    // Redis back (empty: no persistence): a survivor takes the lease again; C's task is shared again at its next beat.
    await redis.restart();
    await until('a survivor to hold the lease again', async () => (await leaseHolder(A)) ?? undefined, 15_000);
    await until('C’s beats to be accepted again', async () => ((await post(C, '/heartbeat/task/job-c', { progress: 0.7 })).status === 200 ? true : undefined), 10_000);
    const back = await until(
      'A to see C’s task again',
      async () => {
        const s = (await snapshot(A)).cluster;
        return s?.redis_connected && s.error === null && s.tasks.some((t) => t.task_id === 'job-c' && t.node_id === C && t.status === 'running') ? s : undefined;
      },
      10_000,
    );
    expect([A, C]).toContain(back.lease_holder);
  }, 40_000);
});
