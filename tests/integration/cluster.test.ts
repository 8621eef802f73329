import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { redisMissingReason, TestRedis } from '../helpers/redisServer.js';
import { startConsole, type TestConsole } from '../helpers/startConsole.js';
import { waitFor, waitUntil } from '../helpers/wait.js';

/*
 * Three consoles (nodes a, b, c: separate data dirs, one process) share GPU locks through one real
 * redis-server. Locks are named `gpu_lock:<node>:<id>`; `gpu_lock:<id>` is the console's own GPU.
 */
const missing = redisMissingReason();
const json = { 'content-type': 'application/json' };
type Body = Record<string, unknown> & { error?: { code: string; message: string; details?: Array<{ type: string; description: string }> } };
const MAX_TTL = 6;

describe.skipIf(missing !== null)(`GPU locks shared by several consoles through Redis${missing ? ` (skipped: ${missing})` : ''}`, () => {
  let redis: TestRedis;
  const nodes: Record<string, TestConsole> = {};
  const dirs: Record<string, string> = {};
  const ids = ['a', 'b', 'c'] as const;

  const startNode = async (id: string) => {
    nodes[id] = await startConsole({
      dataDir: dirs[id],
      config: { cluster: { redisUrl: redis.url, nodeId: id }, monitoring: { locks: { gpuIds: [0, 1], maxTtlSeconds: MAX_TTL } } },
    });
  };
  const post = async (node: string, path: string, body: unknown) => {
    const res = await fetch(`${nodes[node]!.url}/api/v1/monitoring${path}`, { method: 'POST', headers: json, body: JSON.stringify(body) });
    return { status: res.status, body: (await res.json()) as Body };
  };
  const get = async (node: string, path: string) => {
    const res = await fetch(`${nodes[node]!.url}${path}`);
    return { status: res.status, body: (await res.json()) as Body };
  };

  beforeAll(async () => {
    redis = await TestRedis.start();
    for (const id of ids) {
      dirs[id] = mkdtempSync(join(tmpdir(), `console-cluster-${id}-`));
      await startNode(id);
    }
  }, 60_000);
  afterAll(async () => {
    for (const id of ids) await nodes[id]?.close();
    await redis?.stop();
    for (const id of ids) if (dirs[id]) rmSync(dirs[id], { recursive: true, force: true });
  }, 60_000);

  it('a 40-way acquire race over HTTP, spread over three nodes, has exactly one winner', async () => {
    const results = await Promise.all(
      Array.from({ length: 40 }, (_, i) => post(ids[i % 3]!, '/gpu-lock/acquire', { lock_key: 'gpu_lock:a:0', task_name: `racer-${i}`, ttl_seconds: MAX_TTL })),
    );
    const winners = results.filter((r) => r.status === 200);
    expect(winners).toHaveLength(1);
    expect(results.filter((r) => r.status === 409)).toHaveLength(39);
    const winner = winners[0]!.body;
    const holder = winner.lock_holder as string;
    const token = winner.fencing_token as number;

    // Every node sees the same lock; node a calls it gpu_lock:0. Readers never see the token.
    for (const [node, key] of [['a', 'gpu_lock:0'], ['b', 'gpu_lock:a:0'], ['c', 'gpu_lock:a:0']] as const) {
      const s = await get(node, `/api/v1/monitoring/gpu-lock/status?lock_key=${key}`);
      expect(s.status).toBe(200);
      expect(s.body).toMatchObject({ lock_key: key, is_locked: true, lock_holder: holder });
      expect(JSON.stringify(s.body)).not.toContain('fencing_token');
    }
    // Release needs the holder's token and name, on any node.
    expect((await post('b', '/gpu-lock/release', { lock_key: 'gpu_lock:a:0', task_name: 'someone-else', fencing_token: token })).status).toBe(409);
    expect((await post('b', '/gpu-lock/release', { lock_key: 'gpu_lock:a:0', task_name: holder, fencing_token: token + 1 })).status).toBe(409);
    const rel = await post('c', '/gpu-lock/release', { lock_key: 'gpu_lock:a:0', task_name: holder, fencing_token: token });
    expect(rel.status).toBe(200);
    expect((await get('a', '/api/v1/monitoring/gpu-lock/status?lock_key=gpu_lock:0')).body.is_locked).toBe(false);
    // Unknown node → 404; a node's own id names its own GPU.
    expect((await post('a', '/gpu-lock/acquire', { lock_key: 'gpu_lock:nosuchnode:0', task_name: 'x' })).status).toBe(404);
    expect((await post('a', '/gpu-lock/acquire', { lock_key: 'gpu_lock:b:7', task_name: 'x' })).status).toBe(404);
  });

  it('GET /heartbeat/all on any node lists every node\'s tasks with their node id', async () => {
    // (the heartbeat timeout is capped by locks.maxTtlSeconds)
    const start = (node: string, id: string, name: string) => post(node, `/heartbeat/task/${id}/start`, { task_name: name, timeout_seconds: MAX_TTL });
    expect(await start('a', 'extract-1', 'ffmpeg')).toMatchObject({ status: 200 });
    expect(await start('b', 'extract-1', 'whisper')).toMatchObject({ status: 200 });
    expect(await start('b', 'extract-2', 'done-soon')).toMatchObject({ status: 200 });
    const stop = await fetch(`${nodes.b!.url}/api/v1/monitoring/heartbeat/task/extract-2`, { method: 'DELETE' });
    expect(stop.status).toBe(200);

    const onC = (await get('c', '/api/v1/monitoring/heartbeat/all')).body as Body & { active_tasks: Record<string, unknown>; dead_tasks: Array<Record<string, unknown>>; statistics: Record<string, number> };
    expect(onC.active_tasks).toEqual({
      'a/extract-1': expect.objectContaining({ node: 'a', task_id: 'extract-1', task_name: 'ffmpeg', status: 'running' }),
      'b/extract-1': expect.objectContaining({ node: 'b', task_id: 'extract-1', task_name: 'whisper', status: 'running' }),
    });
    expect(onC.dead_tasks).toEqual([expect.objectContaining({ node: 'b', task_id: 'extract-2', status: 'completed' })]);
    expect(onC.statistics).toMatchObject({ total_tasks: 3, active_count: 2, dead_count: 1, orphaned_count: 0 });
    // A node's own task keeps its plain key (as on a single box), with its node id added.
    const onA = (await get('a', '/api/v1/monitoring/heartbeat/all')).body as Body & { active_tasks: Record<string, unknown> };
    expect(Object.keys(onA.active_tasks).sort()).toEqual(['b/extract-1', 'extract-1']);
    expect(onA.active_tasks['extract-1']).toMatchObject({ node: 'a', task_name: 'ffmpeg' });

    for (const [node, id] of [['a', 'extract-1'], ['b', 'extract-1']] as const) {
      expect((await fetch(`${nodes[node]!.url}/api/v1/monitoring/heartbeat/task/${id}`, { method: 'DELETE' })).status).toBe(200);
    }
  });

  it('fencing tokens increase across nodes and across a restart of a node', async () => {
    const tokens: number[] = [];
    const round = async (via: string, key: string) => {
      const a = await post(via, '/gpu-lock/acquire', { lock_key: key, task_name: `job-${via}`, ttl_seconds: MAX_TTL });
      expect(a.status).toBe(200);
      tokens.push(a.body.fencing_token as number);
      expect((await post(via, '/gpu-lock/release', { lock_key: key, task_name: `job-${via}`, fencing_token: a.body.fencing_token })).status).toBe(200);
    };
    for (const via of ['a', 'b', 'c', 'a', 'c']) await round(via, 'gpu_lock:b:1');
    await round('b', 'gpu_lock:1');

    // Node b restarts (same data dir and node id); its GPU's counter lives in Redis.
    await nodes.b!.close();
    await startNode('b');
    await round('b', 'gpu_lock:1');
    await round('a', 'gpu_lock:b:1');
    for (let i = 1; i < tokens.length; i++) expect(tokens[i]!).toBeGreaterThan(tokens[i - 1]!);
  }, 30_000);

  it('Redis down: fail closed with 503 (shown in health), no double grant after it comes back empty, recovery by itself', async () => {
    const held = await post('a', '/gpu-lock/acquire', { lock_key: 'gpu_lock:c:0', task_name: 'long-job', ttl_seconds: MAX_TTL });
    expect(held.status).toBe(200);
    const heldToken = held.body.fencing_token as number;

    await redis.stop();
    for (const via of ids) {
      const r = await post(via, '/gpu-lock/acquire', { lock_key: 'gpu_lock:c:0', task_name: `intruder-${via}` });
      expect(r.status).toBe(503);
      expect(r.body.error?.code).toBe('UNAVAILABLE');
      expect(r.body.error?.message).toMatch(/Redis/);
    }
    expect((await post('c', '/gpu-lock/renew', { lock_key: 'gpu_lock:0', task_name: 'long-job', fencing_token: heldToken })).status).toBe(503);
    const down = await get('b', '/api/v1/health/details');
    expect((down.body.components as Record<string, { status: string; details: Record<string, unknown> }>).cluster).toMatchObject({ status: 'DOWN', details: { nodeId: 'b', connected: false } });
    // Readiness: not ready while Redis is away (nothing shared can be granted).
    const notReady = await get('b', '/health/ready');
    expect(notReady.status).toBe(503);
    expect(notReady.body).toMatchObject({ ready: false, cluster_redis_reachable: false });

    // Redis comes back without its data (no persistence): the lock of long-job is gone from it.
    await redis.restart();
    await waitUntil(
      async () => {
        const states = await Promise.all(ids.map(async (id) => ((await get(id, '/api/v1/health/details')).body.components as Record<string, { status: string }>).cluster?.status));
        return states.every((st) => st === 'UP');
      },
      10_000,
      'every node to report the cluster UP again after Redis came back',
      100,
    );
    const ready = await get('b', '/health/ready');
    expect(ready.body).toMatchObject({ ready: true, cluster_redis_reachable: true });
    expect(ready.status).toBe(200);
    // long-job may still be using the GPU: nobody gets it until the longest TTL has passed.
    const early = await post('b', '/gpu-lock/acquire', { lock_key: 'gpu_lock:c:0', task_name: 'intruder-b' });
    expect(early.status).toBe(503);
    expect(early.body.error?.message).toMatch(/lost its data/);
    // The holder learns it lost the lock.
    expect((await post('a', '/gpu-lock/renew', { lock_key: 'gpu_lock:c:0', task_name: 'long-job', fencing_token: heldToken })).status).toBe(409);

    // After the grace period: granted again, with a token above every earlier one.
    const after = await waitFor(
      async () => {
        const r = await post('a', '/gpu-lock/acquire', { lock_key: 'gpu_lock:c:0', task_name: 'next-job' });
        if (r.status === 200) return r;
        expect(r.status).toBe(503); // still in the grace period
        return undefined;
      },
      (MAX_TTL + 5) * 1000,
      'the lock to be granted again once the grace period is over',
      250,
    );
    expect(after.body.fencing_token as number).toBeGreaterThan(heldToken);
    // Still exactly one holder.
    expect((await post('c', '/gpu-lock/acquire', { lock_key: 'gpu_lock:0', task_name: 'other' })).status).toBe(409);
  }, 40_000);
});

describe.skipIf(missing !== null)('cluster start-up errors', () => {
  it('an unreachable Redis stops the start with a clear error', async () => {
    await expect(startConsole({ config: { cluster: { redisUrl: 'redis://127.0.0.1:1', nodeId: 'x' } } })).rejects.toThrow(/Cannot reach Redis at redis:\/\/127\.0\.0\.1:1/);
  });
  it('a console stops promptly while Redis is down', async () => {
    const redis = await TestRedis.start();
    try {
      const c = await startConsole({ config: { cluster: { redisUrl: redis.url, nodeId: 'lonely' } } });
      await redis.stop();
      const t0 = Date.now();
      await c.close();
      expect(Date.now() - t0).toBeLessThan(5000);
    } finally {
      await redis.stop();
    }
  }, 20_000);
  it('a malformed URL is a config error', async () => {
    await expect(startConsole({ config: { cluster: { redisUrl: 'http://nope' } } })).rejects.toThrow(/cluster\.redisUrl/);
  });
});

describe.skipIf(missing !== null)('the monitor lease holder applies the lock-age rule to other nodes\' GPU locks', () => {
  let redis: TestRedis;
  const nodes: Record<string, TestConsole> = {};
  const GPU_TIMEOUT = 2;

  beforeAll(async () => {
    redis = await TestRedis.start();
    for (const id of ['x', 'y', 'z']) {
      nodes[id] = await startConsole({
        config: {
          cluster: { redisUrl: redis.url, nodeId: id, monitorLeaseSeconds: 3 },
          monitoring: { monitor: { checkIntervalSeconds: 0.3 }, locks: { gpuIds: [0, 1], maxTtlSeconds: 60, gpuTimeoutSeconds: GPU_TIMEOUT } },
        },
      });
    }
  }, 60_000);
  afterAll(async () => {
    for (const c of Object.values(nodes)) await c.close();
    await redis?.stop();
  }, 60_000);

  it('a lock on a dead node past gpu_timeout without a live heartbeat is released once; a lock whose task beats is kept', async () => {
    const post = async (node: string, path: string, body: unknown) => {
      const res = await fetch(`${nodes[node]!.url}/api/v1/monitoring${path}`, { method: 'POST', headers: json, body: JSON.stringify(body) });
      return { status: res.status, body: (await res.json()) as Body };
    };
    const locked = async (key: string) => ((await (await fetch(`${nodes.x!.url}/api/v1/monitoring/gpu-lock/status?lock_key=${key}`)).json()) as Body).is_locked;
    // Node y is gone (its own monitor no longer applies the rule to its GPUs).
    await nodes.y!.close();
    delete nodes.y;
    // Both taken through x on y's GPUs, long TTLs: only the lock-age rule can free them in time.
    const orphan = await post('x', '/gpu-lock/acquire', { lock_key: 'gpu_lock:y:0', task_name: 'forgotten', ttl_seconds: 60 });
    expect(orphan.status).toBe(200);
    // keeper's task beats on z (another node than the lock's): its lock stays.
    expect((await post('z', '/heartbeat/task/keeper/start', { task_name: 'keeper', timeout_seconds: 30 })).status).toBe(200);
    expect((await post('x', '/gpu-lock/acquire', { lock_key: 'gpu_lock:y:1', task_name: 'keeper', ttl_seconds: 60, task_id: 'keeper' })).status).toBe(200);

    const deadline = Date.now() + 15_000;
    while ((await locked('gpu_lock:y:0')) !== false) {
      if (Date.now() > deadline) throw new Error('gpu_lock:y:0 was not released');
      await new Promise((r) => setTimeout(r, 200));
    }
    // A few more checks by whoever holds the lease: nothing more happens.
    await new Promise((r) => setTimeout(r, 1500));
    expect(await locked('gpu_lock:y:1')).toBe(true);
    let audits = 0;
    for (const c of Object.values(nodes)) {
      const { entries } = (await (await fetch(`${c.url}/api/console/audit?limit=1000`, { headers: c.admin })).json()) as { entries: Array<{ action: string; target: string | null; actor: string }> };
      audits += entries.filter((e) => e.action === 'monitoring.lock.timeout' && e.target === 'gpu_lock:y:0').length;
      expect(entries.some((e) => e.action === 'monitoring.lock.timeout' && e.target === 'gpu_lock:y:1')).toBe(false);
    }
    expect(audits).toBe(1);
    // The next holder gets it at once, with a larger token.
    const next = await post('z', '/gpu-lock/acquire', { lock_key: 'gpu_lock:y:0', task_name: 'next', ttl_seconds: 5 });
    expect(next.status).toBe(200);
    expect(next.body.fencing_token as number).toBeGreaterThan(orphan.body.fencing_token as number);
  }, 40_000);

  it("a node's own lock-age check counts heartbeats sent to other nodes: the lock is kept while they beat, freed once they stop", async () => {
    const post = async (node: string, path: string, body: unknown) => {
      const res = await fetch(`${nodes[node]!.url}/api/v1/monitoring${path}`, { method: 'POST', headers: json, body: JSON.stringify(body) });
      return { status: res.status, body: (await res.json()) as Body };
    };
    const locked = async () => ((await (await fetch(`${nodes.x!.url}/api/v1/monitoring/gpu-lock/status?lock_key=gpu_lock:0`)).json()) as Body).is_locked;
    // A lock on x's own GPU whose task reports to z (an app that talks to another console).
    expect((await post('z', '/heartbeat/task/roamer/start', { task_name: 'roamer', timeout_seconds: 30 })).status).toBe(200);
    expect((await post('x', '/gpu-lock/acquire', { lock_key: 'gpu_lock:0', task_name: 'roamer', ttl_seconds: 60, task_id: 'roamer' })).status).toBe(200);
    // Well past gpu_timeout, with x checking every 0.3 s: the task beats (on z), so x keeps the lock.
    await new Promise((r) => setTimeout(r, (GPU_TIMEOUT + 2) * 1000)); // nothing may happen here
    expect(await locked()).toBe(true);
    // The task ends on z: no live heartbeat anywhere, the lock is old, so it is freed.
    const stop = await fetch(`${nodes.z!.url}/api/v1/monitoring/heartbeat/task/roamer`, { method: 'DELETE' });
    expect(stop.status).toBe(200);
    await waitUntil(async () => (await locked()) === false, 10_000, 'gpu_lock:0 of x freed by the lock-age rule');
  }, 30_000);
});
