import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Store } from '../../../electron/core/base/store.js';
import { RedisConnection } from '../../../electron/core/base/redisConnection.js';
import { RedisLockStore } from '../../../electron/core/services/monitoring/redisLockStore.js';
import { SqliteLockStore } from '../../../electron/core/services/monitoring/sqliteLockStore.js';
import { redisMissingReason, TestRedis } from '../../helpers/redisServer.js';

const missing = redisMissingReason();
/** Fixed waits here let Redis's own clock (TIME, which expiry is judged on) move on; it cannot be faked. */
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The Redis LockStore's compare-and-set rules, against a real redis-server. */
describe.skipIf(missing !== null)(`RedisLockStore${missing ? ` (skipped: ${missing})` : ''}`, () => {
  let redis: TestRedis;
  let conn: RedisConnection;
  let sqlite: Store;
  let dir: string;
  let a: RedisLockStore;
  let b: RedisLockStore;
  const now = () => ({ basis: 1_000_000, wall: Date.now() });

  beforeAll(async () => {
    redis = await TestRedis.start();
    dir = mkdtempSync(join(tmpdir(), 'redis-lock-store-'));
    sqlite = new Store({ path: join(dir, 'console.db') });
    conn = new RedisConnection({ url: redis.url, logger: pino({ level: 'silent' }), commandTimeoutMs: 2000 });
    await conn.connect();
    const local = new SqliteLockStore(sqlite);
    a = new RedisLockStore({ redis: conn, node: 'n1', self: 'n1', local, maxTtlMs: () => 60_000 });
    await a.publishNode([0], true);
    // A second console's view of node n1's GPUs (its own highest-token memory).
    b = new RedisLockStore({ redis: conn, node: 'n1', self: 'n2', local, maxTtlMs: () => 60_000 });
  });
  afterAll(async () => {
    await conn?.close();
    await redis?.stop();
    sqlite?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('acquire is exclusive; renew and release need token and holder; times are translated to the caller basis', async () => {
    const got = await a.acquire({ gpuId: 0, holder: 'h1', purpose: 'p', taskId: null, ttlMs: 5000 }, now());
    expect(got.ok).toBe(true);
    if (!got.ok) return;
    expect(got.lock.expiresAt - got.lock.acquiredAt).toBe(5000);
    const other = await b.acquire({ gpuId: 0, holder: 'h2', purpose: '', taskId: null, ttlMs: 5000 }, now());
    expect(other).toMatchObject({ ok: false, current: { holder: 'h1', token: got.lock.token } });
    expect(await b.renew({ gpuId: 0, token: got.lock.token + 1, holder: 'h1' }, 5000, now())).toMatchObject({ ok: false, reason: 'stale_token' });
    expect(await b.renew({ gpuId: 0, token: got.lock.token, holder: 'h2' }, 5000, now())).toMatchObject({ ok: false, reason: 'wrong_holder' });
    const renewed = await b.renew({ gpuId: 0, token: got.lock.token, holder: 'h1' }, 8000, now());
    expect(renewed).toMatchObject({ ok: true, lock: { ttlMs: 8000, token: got.lock.token } });
    const rows = await a.loadLocks();
    expect(rows).toEqual([{ gpuId: 0, lastToken: got.lock.token, lock: expect.objectContaining({ holder: 'h1', ttlMs: 8000 }) }]);
    expect(await a.release({ gpuId: 0, token: got.lock.token, holder: 'h1' }, now())).toMatchObject({ ok: true });
    expect(await a.release({ gpuId: 0, token: got.lock.token, holder: 'h1' }, now())).toMatchObject({ ok: false, reason: 'not_held' });
  });

  it('expiry is decided on Redis time; a lock renewed through another console is not force-released as expired', async () => {
    const got = await a.acquire({ gpuId: 0, holder: 'short', purpose: '', taskId: null, ttlMs: 150 }, now());
    if (!got.ok) throw new Error('not acquired');
    // Renewed through b before it expires; a's view (a 150 ms lock) is stale.
    expect((await b.renew({ gpuId: 0, token: got.lock.token, holder: 'short' }, 5000, now())).ok).toBe(true);
    await sleep(200);
    expect(await a.forceRelease(0, now(), got.lock.token, true)).toBeNull();
    expect((await a.loadLocks())[0]?.lock?.holder).toBe('short');
    // Let it really expire: then renew says so, and another holder gets it with a higher token.
    expect((await b.release({ gpuId: 0, token: got.lock.token, holder: 'short' }, now())).ok).toBe(true);
    const again = await a.acquire({ gpuId: 0, holder: 'x', purpose: '', taskId: null, ttlMs: 100 }, now());
    if (!again.ok) throw new Error('not acquired');
    await sleep(150);
    expect(await a.renew({ gpuId: 0, token: again.lock.token, holder: 'x' }, 100, now())).toMatchObject({ ok: false, reason: 'expired' });
    const next = await b.acquire({ gpuId: 0, holder: 'y', purpose: '', taskId: null, ttlMs: 1000 }, now());
    expect(next).toMatchObject({ ok: true, expired: { holder: 'x' } });
    if (next.ok) expect(next.lock.token).toBeGreaterThan(again.lock.token);
    if (next.ok) expect(await a.forceRelease(0, now(), next.lock.token, true)).toBeNull();
    if (next.ok) expect(await a.forceRelease(0, now(), next.lock.token)).toMatchObject({ holder: 'y' });
  });
});
