import { Value } from '@sinclair/typebox/value';
import pino from 'pino';
import { createClient } from 'redis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LimitSettings } from '../../../shared/contracts/config/limiter.js';
import { RedisConnection } from '../../../electron/core/base/redisConnection.js';
import { retreatParams } from '../../../electron/core/services/limiter/providerLimiter.js';
import type { RetreatTransition } from '../../../electron/core/services/limiter/retreatController.js';
import { fingerprint, RedisBudgetStore } from '../../../electron/core/services/limiter/sharedBudget.js';
import { redisMissingReason, TestRedis } from '../../helpers/redisServer.js';
import { waitUntil } from '../../helpers/wait.js';

const missing = redisMissingReason();
const settings = (over: Partial<LimitSettings> = {}) => ({ ...(Value.Default(LimitSettings, {}) as LimitSettings), ...over });

/** Two nodes (two connections) on one real redis-server share one budget per provider key. */
describe.skipIf(missing !== null)(`RedisBudgetStore${missing ? ` (skipped: ${missing})` : ''}`, () => {
  let redis: TestRedis;
  const conns: RedisConnection[] = [];
  const stores: RedisBudgetStore[] = [];
  const seen: RetreatTransition[][] = [[], []];

  beforeAll(async () => {
    redis = await TestRedis.start();
    for (let i = 0; i < 2; i++) {
      const c = new RedisConnection({ url: redis.url, logger: pino({ level: 'silent' }), commandTimeoutMs: 2000 });
      await c.open();
      conns.push(c);
      const s = new RedisBudgetStore({ redis: c, logger: pino({ level: 'silent' }) });
      await s.start();
      stores.push(s);
    }
  });
  afterAll(async () => {
    for (const s of stores) await s.close();
    for (const c of conns) await c.close();
    await redis?.stop();
  });

  it('tokens are taken from one bucket on Redis time; the key is stored only as a fingerprint', async () => {
    const s = settings({ rate_rpm: 60, bucket_capacity: 3 });
    const [a, b] = stores.map((st) => st.open('p1', 'secret-key-1', retreatParams(s), 3, () => undefined));
    expect(await a!.take()).toEqual({ granted: true });
    expect(await b!.take()).toEqual({ granted: true });
    expect(await a!.take()).toEqual({ granted: true });
    const refused = await b!.take();
    expect(refused.granted).toBe(false);
    if (!refused.granted) expect(refused.waitMs).toBeGreaterThan(500); // 60 RPM: one token per second
    expect(b!.view.tokens).toBeLessThan(1);
    // Another key of the same provider has its own budget.
    const other = stores[0]!.open('p1', 'secret-key-2', retreatParams(s), 3, () => undefined);
    expect(await other.take()).toEqual({ granted: true });

    const client = createClient({ url: redis.url });
    await client.connect();
    try {
      const keys = await client.keys('limiter:p1:*');
      expect(keys).toContain(`limiter:p1:${fingerprint('secret-key-1')}`);
      expect(keys.join(' ')).not.toContain('secret-key');
    } finally {
      await client.quit();
    }
  });

  it('a 429 moves the shared machine to RETREAT; every node hears it; Retry-After pauses everyone; reset and a new base apply to all', async () => {
    const s = settings({ rate_rpm: 600, bucket_capacity: 5, retreat_window_seconds: 5, retreat_factor: 0.5 });
    const [a, b] = stores.map((st, i) => st.open('p2', 'k', retreatParams(s), 5, (t) => seen[i]!.push(t)));
    for (let i = 0; i < 5; i++) await b!.record(false, true, 0);
    expect(seen[0]).toEqual([]);
    await a!.record(true, true, 800);
    await waitUntil(() => seen[0]!.length === 1 && seen[1]!.length === 1, 2000, 'both nodes to hear the retreat', 10);
    for (const got of seen) expect(got[0]).toMatchObject({ from: 'normal', to: 'retreat', previousRpm: 600, rpm: 300, reason: 'retreat' });
    expect(a!.view).toMatchObject({ state: 'retreat', rpm: 300 });
    expect(b!.view).toMatchObject({ state: 'retreat', rpm: 300 });
    // The Retry-After of a's 429 holds b's requests too.
    const paused = await b!.take();
    expect(paused.granted).toBe(false);
    if (!paused.granted) expect(paused.waitMs).toBeGreaterThan(500);

    await b!.reset();
    await waitUntil(() => seen[0]!.length === 2, 2000, 'node a to hear the reset', 10);
    expect(seen[0]![1]).toMatchObject({ from: 'retreat', to: 'normal', rpm: 600, reason: 'reset' });
    expect(await a!.take()).toEqual({ granted: true });

    a!.setParams(retreatParams({ ...s, rate_rpm: 900 }), 5);
    await a!.take();
    await waitUntil(() => seen[1]!.length === 3, 2000, 'node b to hear the new base rate', 10);
    expect(seen[1]![2]).toMatchObject({ to: 'normal', previousRpm: 600, rpm: 900, reason: 'rate_changed' });
  });

  it('fails closed with a 503 while Redis is away and works again after it is back', async () => {
    const s = settings();
    const a = stores[0]!.open('p3', 'k', retreatParams(s), 40, () => undefined);
    await redis.stop();
    await expect(a.take()).rejects.toMatchObject({ code: 'UNAVAILABLE' });
    await redis.restart();
    await waitUntil(() => conns.every((c) => c.ready), 5000, 'both connections to be ready after Redis came back', 10);
    expect(await a.take()).toEqual({ granted: true });
    // The subscriber connection came back too: transitions still reach every node.
    const heard: string[] = [];
    const [x, y] = stores.map((st, i) => st.open('p4', 'k', retreatParams(s), 40, (t) => heard.push(`${i}:${t.to}`)));
    await waitUntil(
      async () => {
        await x!.record(true, true, 0);
        return heard.includes('0:retreat') && heard.includes('1:retreat');
      },
      5000,
      'both nodes to hear a retreat through the resubscribed channel',
      10,
    );
    expect(y!.view.state).toBe('retreat');
  });
});
