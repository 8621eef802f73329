import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startUpstreamSim, type UpstreamSim, type UpstreamSimStats } from '../../scripts/upstream-sim.js';
import { redisMissingReason, TestRedis } from '../helpers/redisServer.js';
import { startConsole, type TestConsole } from '../helpers/startConsole.js';

/*
 * Two consoles proxy one provider key to the upstream simulator, whose capacity (1200 RPM per 1 s
 * window = 20 requests/s) they are not told: both are configured with 1800 RPM. Scaled-up windows
 * (seconds instead of minutes) keep the test short; the rules are the seed's NORMAL/RETREAT/RECOVER.
 */
const missing = redisMissingReason();
const KEY = 'sk-cluster-budget-secret-0123456789';
const CAPACITY_RPM = 1200;
const CAPACITY_PER_S = CAPACITY_RPM / 60;
const WARMUP_MS = 4000;
// The simulator counts in fixed windows; with 1 s (20 requests) the jitter of arrival times alone overflows
// windows at 0.97× capacity. 2 s windows (40 requests) are still short and far less noisy.
const SIM_WINDOW_MS = 2000;
const MEASURE_MS = 10_000;

const limiterConfig = (upstream: string) => ({
  upstream_url: upstream,
  upstream_api_key: KEY,
  rate_rpm: 1800,
  bucket_capacity: 2,
  retreat_window_seconds: 2,
  recover_window_seconds: 2,
  retreat_factor: 0.85,
  // Cut at 3 % (seed default 5 %): the steady state hovers just under the cut threshold, and the goal is ≤ 5 %.
  retreat_429_threshold: 0.03,
  recover_increment_rpm: 2,
  request_timeout: 30,
  low_priority_timeout: 30,
});

type ErrorBody = { error?: { code: string; message: string } };

function chat(c: TestConsole): Promise<Response> {
  return fetch(`${c.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'nvidia/meta/x', messages: [{ role: 'user', content: 'hi' }] }),
  });
}

/** Keeps `workers` requests in flight on each console until `stop` says so. */
function load(consoles: TestConsole[], workers: number, stop: { done: boolean }): Promise<number[]> {
  const statuses: number[] = [];
  const loops = consoles.flatMap((c) =>
    Array.from({ length: workers }, async () => {
      while (!stop.done) {
        const res = await chat(c);
        await res.arrayBuffer();
        statuses.push(res.status);
      }
    }),
  );
  return Promise.all(loops).then(() => statuses);
}

/** Steady state: what the upstream saw between the end of the warm-up and the end of the run. */
async function measure(sim: UpstreamSim, consoles: TestConsole[], measureMs: number): Promise<{ goodput: number; share429: number; attemptsPerCapacity: number; share429All: number }> {
  const stop = { done: false };
  const start = sim.stats();
  const running = load(consoles, 6, stop);
  await new Promise((r) => setTimeout(r, WARMUP_MS));
  const a: UpstreamSimStats = sim.stats();
  const t0 = performance.now();
  await new Promise((r) => setTimeout(r, measureMs));
  const b = sim.stats();
  const seconds = (performance.now() - t0) / 1000;
  stop.done = true;
  await running;
  const attempts = b.attempts - a.attempts;
  return {
    goodput: (b.ok - a.ok) / seconds / CAPACITY_PER_S,
    share429: attempts === 0 ? 0 : (b.rateLimited - a.rateLimited) / attempts,
    attemptsPerCapacity: attempts / seconds / CAPACITY_PER_S,
    // The whole run, the start included (both consoles begin at their configured 1800 RPM).
    share429All: (b.rateLimited - start.rateLimited) / Math.max(1, b.attempts - start.attempts),
  };
}

describe.skipIf(missing !== null)(`one provider budget shared by two consoles through Redis${missing ? ` (skipped: ${missing})` : ''}`, () => {
  let redis: TestRedis;
  let sim: UpstreamSim;
  let a: TestConsole;
  let b: TestConsole;

  beforeAll(async () => {
    redis = await TestRedis.start();
    sim = await startUpstreamSim({ capacity: CAPACITY_RPM, windowMs: SIM_WINDOW_MS, retryAfter: 'fractional', apiKey: KEY });
    const node = (id: string) => startConsole({ config: { cluster: { redisUrl: redis.url, nodeId: id }, limiter: limiterConfig(sim.baseUrl) } });
    a = await node('a');
    b = await node('b');
  }, 30_000);
  afterAll(async () => {
    await a?.close();
    await b?.close();
    await sim?.close();
    await redis?.stop();
  }, 30_000);

  it('converges to the upstream capacity together: goodput ≥ 0.8×, 429s ≤ 5 %; the key never reaches Redis', async () => {
    const shared = await measure(sim, [a, b], MEASURE_MS);
    console.log(`shared budget: ${JSON.stringify(shared)}`);
    expect(shared.goodput).toBeGreaterThanOrEqual(0.8);
    expect(shared.share429).toBeLessThanOrEqual(0.05);

    // Both nodes show the one shared state; Redis holds a fingerprint, never the key.
    const status = async (c: TestConsole) => ((await (await fetch(`${c.url}/api/limiter/status`)).json()) as { retreat: { effective_rpm: number } }).retreat.effective_rpm;
    const [ra, rb] = [await status(a), await status(b)];
    expect(ra).toBeLessThan(1800);
    expect(Math.abs(ra - rb)).toBeLessThanOrEqual(ra * 0.1);
    const { createClient } = await import('redis');
    const client = createClient({ url: redis.url });
    await client.connect();
    try {
      const keys = await client.keys('limiter:*');
      expect(keys.some((k) => /^limiter:nvidia:[0-9a-f]{16}$/.test(k))).toBe(true);
      for (const k of keys) {
        expect(k).not.toContain(KEY);
        if ((await client.type(k)) === 'hash') expect(JSON.stringify(await client.hGetAll(k))).not.toContain(KEY);
      }
    } finally {
      await client.quit();
    }
    // Every node logged the transitions any node made (published through Redis).
    expect(a.logs.some((l) => l.includes('"retreat_transition"'))).toBe(true);
    expect(b.logs.some((l) => l.includes('"retreat_transition"'))).toBe(true);
  }, 30_000);

  it('Redis stopped mid-run: clear 503s, shown in health details, no crash; recovers after the restart', async () => {
    await redis.stop();
    const res = await chat(a);
    expect(res.status).toBe(503);
    const body = (await res.json()) as ErrorBody;
    expect(body.error?.code).toBe('UNAVAILABLE');
    expect(body.error?.message).toMatch(/Redis/);
    const details = (await (await fetch(`${b.url}/api/v1/health/details`)).json()) as { components: Record<string, { status: string; details: Record<string, unknown> }> };
    expect(details.components.cluster).toMatchObject({ status: 'DOWN', details: { connected: false } });
    expect(String(details.components.cluster!.details.providerBudgets)).toMatch(/503/);
    expect((await chat(b)).status).toBe(503);
    const limiterHealth = (await (await fetch(`${b.url}/api/v1/health/details`)).json()) as { components: Record<string, { status: string; details: Record<string, unknown> }> };
    expect(limiterHealth.components.limiter).toMatchObject({ status: 'DOWN', details: { budget: 'shared (cluster Redis)' } });

    await redis.restart();
    const deadline = Date.now() + 10_000;
    for (;;) {
      const [ra, rb] = await Promise.all([chat(a), chat(b)]);
      await Promise.all([ra.arrayBuffer(), rb.arrayBuffer()]);
      if (ra.status === 200 && rb.status === 200) break;
      if (Date.now() > deadline) throw new Error(`no recovery after Redis came back: ${ra.status} ${rb.status}`);
      await new Promise((r) => setTimeout(r, 200));
    }
    const after = (await (await fetch(`${b.url}/api/v1/health/details`)).json()) as { components: Record<string, { status: string }> };
    expect(after.components.cluster?.status).toBe('UP');
    expect(after.components.limiter?.status).toBe('UP');
  }, 30_000);
});

describe('two independent consoles (no Redis) on the same key', () => {
  it('overshoot the upstream capacity', async () => {
    const sim = await startUpstreamSim({ capacity: CAPACITY_RPM, windowMs: SIM_WINDOW_MS, retryAfter: 'fractional', apiKey: KEY });
    const a = await startConsole({ config: { limiter: limiterConfig(sim.baseUrl) } });
    const b = await startConsole({ config: { limiter: limiterConfig(sim.baseUrl) } });
    try {
      const independent = await measure(sim, [a, b], 4000);
      console.log(`independent budgets: ${JSON.stringify(independent)}`);
      // Each console starts at its own 1800 RPM (2× the configured rate hits one key) and backs off
      // on its own; over the run far more than 5 % of the upstream calls are refused.
      // Together they send more than the upstream takes (the shared budget stays at or below it).
      expect(independent.attemptsPerCapacity).toBeGreaterThan(1.02);
      expect(independent.share429All).toBeGreaterThan(0.03);
    } finally {
      await a.close();
      await b.close();
      await sim.close();
    }
  }, 30_000);
});
