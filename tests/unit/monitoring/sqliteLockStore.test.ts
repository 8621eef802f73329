import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Store } from '../../../electron/core/base/store.js';
import { SqliteLockStore } from '../../../electron/core/services/monitoring/sqliteLockStore.js';

describe('SqliteLockStore', () => {
  let dir: string;
  let store: Store;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'lockstore-'));
    store = new Store({ path: join(dir, 'console.db') });
  });
  afterEach(() => {
    store.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const now = (basis: number) => ({ basis, wall: 1_700_000_000_000 + basis });
  const req = (holder: string, gpuId = 0) => ({ gpuId, holder, purpose: '', taskId: null, ttlMs: 10_000 });

  for (const groupCommit of [true, false]) {
    it(`same-turn acquires: exactly one wins, in order (groupCommit=${groupCommit})`, async () => {
      const locks = new SqliteLockStore(store, { groupCommit });
      const outcomes = await Promise.all(Array.from({ length: 25 }, (_, i) => locks.acquire(req(`c${i}`), now(0))));
      expect(outcomes.filter((o) => o.ok)).toEqual([expect.objectContaining({ ok: true, lock: expect.objectContaining({ holder: 'c0', token: 1 }) })]);
      expect(outcomes.slice(1).every((o) => !o.ok && o.current.holder === 'c0')).toBe(true);
      expect(locks.commitStats()).toEqual(groupCommit ? { commits: 1, operations: 25 } : { commits: 25, operations: 25 });
    });
  }

  it('forceRelease with onlyIfExpired frees only a lock whose TTL ran out (expiry after a renew is not freed)', async () => {
    const locks = new SqliteLockStore(store);
    await locks.acquire(req('a'), now(0));
    expect((await locks.renew({ gpuId: 0, token: 1, holder: 'a' }, 10_000, now(9_000))).ok).toBe(true);
    expect(await locks.forceRelease(0, now(10_001), 1, true)).toBeNull();
    expect(await locks.forceRelease(0, now(19_001), 1, true)).toMatchObject({ holder: 'a', token: 1 });
  });

  it('operations batched in one commit see each other: acquire, release, acquire → tokens 1 and 2', async () => {
    const locks = new SqliteLockStore(store);
    const a = locks.acquire(req('a'), now(0));
    const r = locks.release({ gpuId: 0, token: 1, holder: 'a' }, now(1));
    const b = locks.acquire(req('b'), now(2));
    const stale = locks.renew({ gpuId: 0, token: 1, holder: 'a' }, 5_000, now(3));
    expect(await a).toMatchObject({ ok: true, lock: { token: 1 } });
    expect(await r).toMatchObject({ ok: true });
    expect(await b).toMatchObject({ ok: true, lock: { token: 2, holder: 'b' } });
    expect(await stale).toMatchObject({ ok: false, reason: 'stale_token', current: { holder: 'b' } });
    // committed: a second connection sees it
    const other = new Store({ path: join(dir, 'console.db') });
    const rows = await new SqliteLockStore(other).loadLocks();
    other.close();
    expect(rows).toEqual([{ gpuId: 0, lastToken: 2, lock: expect.objectContaining({ holder: 'b', token: 2 }) }]);
  });

  it('expired locks are taken over with the next token; an expired lock cannot be renewed', async () => {
    const locks = new SqliteLockStore(store);
    await locks.acquire(req('a'), now(0));
    expect(await locks.renew({ gpuId: 0, token: 1, holder: 'a' }, 10_000, now(10_000))).toMatchObject({ ok: false, reason: 'expired' });
    const b = await locks.acquire(req('b'), now(10_000));
    expect(b).toMatchObject({ ok: true, lock: { token: 2 }, expired: { holder: 'a', token: 1 } });
    expect(await locks.forceRelease(0, now(10_001), 1)).toBeNull();
    expect(await locks.forceRelease(0, now(10_001), 2)).toMatchObject({ holder: 'b' });
    expect(await locks.loadClock()).toEqual(now(10_001));
  });
});
