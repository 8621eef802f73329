// `npm run bench -- cluster`: what sharing through Redis costs (issue 15), in one run against a
// throwaway local redis-server:
//  - GPU lock acquire+release cycles/s: SqliteLockStore (this box) vs RedisLockStore (cluster),
//    one caller in sequence, so the figure is the round trip of one decision;
//  - limiter decision latency (a request asks for a token and is granted): ProviderLimiter over its
//    in-process bucket vs over the shared Redis budget (Lua on Redis TIME), p50/p99.
// Rounds alternate between the variants and medians are reported, so load from other work on the
// machine hits both alike. Prints one JSON line.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Value } from '@sinclair/typebox/value';
import pino from 'pino';
import { LimitSettings } from '../../shared/contracts/config/limiter.js';
import { SystemClock } from '../../electron/core/base/clock.js';
import { RedisConnection } from '../../electron/core/base/redisConnection.js';
import { Store } from '../../electron/core/base/store.js';
import { ProviderLimiter, retreatParams } from '../../electron/core/services/limiter/providerLimiter.js';
import { RedisBudgetStore } from '../../electron/core/services/limiter/sharedBudget.js';
import type { LockStore, TimeStamp } from '../../electron/core/services/monitoring/lockStore.js';
import { RedisLockStore } from '../../electron/core/services/monitoring/redisLockStore.js';
import { SqliteLockStore } from '../../electron/core/services/monitoring/sqliteLockStore.js';
import { TestRedis } from '../../tests/helpers/redisServer.js';

const ROUNDS = 5;
const LOCK_MS = 1000;
const DECISIONS = 1000;

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? 0;
const quantile = (xs: number[], q: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))] ?? 0;
};
const round = (n: number, d = 3) => Math.round(n * 10 ** d) / 10 ** d;

async function lockCycles(store: LockStore, now: () => TimeStamp): Promise<number> {
  let n = 0;
  const t0 = performance.now();
  while (performance.now() - t0 < LOCK_MS) {
    const got = await store.acquire({ gpuId: 0, holder: 'bench', purpose: 'bench', taskId: null, ttlMs: 60_000 }, now());
    if (!got.ok) throw new Error('bench lock was not free');
    const rel = await store.release({ gpuId: 0, token: got.lock.token, holder: 'bench' }, now());
    if (!rel.ok) throw new Error(`release refused: ${rel.reason}`);
    n++;
  }
  return n / ((performance.now() - t0) / 1000);
}

/** Milliseconds from asking for a token to holding it, per decision (tokens always available). */
async function decisions(limiter: ProviderLimiter): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < DECISIONS; i++) {
    const t0 = performance.now();
    await limiter.acquire('normal');
    out.push(performance.now() - t0);
  }
  return out;
}

const redis = await TestRedis.start();
const dir = mkdtempSync(join(tmpdir(), 'bench-cluster-'));
const logger = pino({ level: 'silent' });
const clock = new SystemClock();
const store = new Store({ path: join(dir, 'console.db') });
const connection = new RedisConnection({ url: redis.url, logger, commandTimeoutMs: 2000 });
const release = await connection.open();
try {
  const sqliteLocks = new SqliteLockStore(store);
  const redisLocks = new RedisLockStore({ redis: connection, node: 'bench', self: 'bench', local: sqliteLocks, maxTtlMs: () => 60_000 });
  await redisLocks.publishNode([0], true);
  const now = (): TimeStamp => ({ basis: clock.monotonic(), wall: clock.now() });

  // Enough rate and burst that no decision waits for a refill: the figure is the decision itself.
  const settings = { ...(Value.Default(LimitSettings, {}) as LimitSettings), rate_rpm: 1_000_000, bucket_capacity: 1_000_000 };
  const budgets = new RedisBudgetStore({ redis: connection, logger });
  await budgets.start();
  const local = new ProviderLimiter('bench', settings, clock);
  const shared = new ProviderLimiter('bench', settings, clock, {}, undefined, undefined, budgets.open('bench', 'bench-key', retreatParams(settings), settings.bucket_capacity, () => undefined));

  const m = { sqlite: [] as number[], redis: [] as number[], local: [] as number[], shared: [] as number[] };
  // Warm-up (JIT, script cache, SQLite pages).
  await lockCycles(sqliteLocks, now);
  await lockCycles(redisLocks, now);
  await decisions(local);
  await decisions(shared);
  for (let r = 0; r < ROUNDS; r++) {
    m.sqlite.push(await lockCycles(sqliteLocks, now));
    m.redis.push(await lockCycles(redisLocks, now));
    m.local.push(...(await decisions(local)));
    m.shared.push(...(await decisions(shared)));
  }
  local.stop();
  shared.stop();
  await budgets.close();

  const sqliteCps = median(m.sqlite);
  const redisCps = median(m.redis);
  const p = (xs: number[]) => ({ p50: round(quantile(xs, 0.5), 4), p99: round(quantile(xs, 0.99), 4) });
  const lp = p(m.local);
  const sp = p(m.shared);
  process.stdout.write(
    JSON.stringify({
      bench: 'cluster',
      redis: 'local redis-server (loopback)',
      lock_cycles_per_s: { sqlite: Math.round(sqliteCps), redis: Math.round(redisCps), redis_over_sqlite: round(redisCps / sqliteCps) },
      limiter_decision_ms: { local: lp, redis: sp, redis_over_local_p50: round(sp.p50 / lp.p50, 1), redis_over_local_p99: round(sp.p99 / lp.p99, 1) },
      rounds: ROUNDS,
      decisions_per_round: DECISIONS,
    }) + '\n',
  );
} finally {
  await release();
  store.close();
  await redis.stop();
  rmSync(dir, { recursive: true, force: true });
}
