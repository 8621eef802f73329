import { afterEach, describe, expect, it } from 'vitest';
import { createHarness, rejection, type Harness } from './harness.js';

describe('GPU locks', () => {
  let h: Harness;
  afterEach(async () => {
    await h.dispose();
  });

  it('acquire → conflict with the holder → release by the holder → next token is higher', async () => {
    h = await createHarness();
    const locks = h.service.locks;
    const a = await locks.acquire({ gpuId: 0, holder: 'train-a', purpose: 'fine-tune', ttlSeconds: 60 });
    expect(a).toMatchObject({ gpuId: 0, holder: 'train-a', fencingToken: 1, ttlSeconds: 60 });
    const err = await rejection(locks.acquire({ gpuId: 0, holder: 'app-b', purpose: 'x' }));
    expect(err.status).toBe(409);
    expect(err.message).toContain('held by train-a');
    expect(err.details).toContainEqual(expect.objectContaining({ field: 'lock_holder', description: 'train-a' }));
    // a non-holder with the right token is still refused, and told who holds it
    const wrong = await rejection(locks.release(0, 'app-b', a.fencingToken));
    expect(wrong.status).toBe(409);
    expect(wrong.message).toContain('train-a');
    await locks.release(0, 'train-a', a.fencingToken);
    const b = await locks.acquire({ gpuId: 0, holder: 'app-b', purpose: 'x' });
    expect(b.fencingToken).toBe(2);
    expect(h.service.locks.stats(0)).toMatchObject({ totalAttempts: 3, successCount: 2, failureCount: 1 });
    expect(h.service.locks.history(0).map((e) => e.action)).toEqual(['acquire', 'release', 'acquire', 'acquire']);
  });

  it('only the holder renews or releases: token and holder name must both match; errors and the snapshot never show the token', async () => {
    h = await createHarness();
    const { locks, heartbeats } = h.service;
    const a = await locks.acquire({ gpuId: 0, holder: 'train-a', purpose: 'fine-tune', ttlSeconds: 60 });
    await heartbeats.register({ taskId: 'job-a', owner: 'train-a', gpuId: 0, fencingToken: a.fencingToken });
    // what a reader sees: holder, age, TTL; no token anywhere
    const snapshot = h.service.snapshot();
    expect(snapshot.locks[0]).toMatchObject({ lockKey: 'gpu_lock:0', isLocked: true, holder: 'train-a', ttlSeconds: 60, lockAgeSeconds: 0 });
    expect(JSON.stringify(snapshot)).not.toMatch(/token/i);
    const conflict = await rejection(locks.acquire({ gpuId: 0, holder: 'app-b', purpose: 'x' }));
    expect(`${conflict.message} ${JSON.stringify(conflict.details)}`).not.toMatch(/token/i);
    // the token without the holder's name (or with another name) is refused
    const noName = await rejection(locks.release(0, '', a.fencingToken));
    expect(noName.status).toBe(400);
    expect(noName.details?.map((d) => d.field)).toEqual(['task_name']);
    for (const op of [() => locks.renew(0, 'app-b', a.fencingToken, 600), () => locks.release(0, 'app-b', a.fencingToken)]) {
      const err = await rejection(op());
      expect(err.status).toBe(409);
      expect(err.message).not.toMatch(/token \d/);
    }
    // the holder's name without its token is refused too, and not told the right one
    const guess = await rejection(locks.release(0, 'train-a', a.fencingToken + 1));
    expect(guess.status).toBe(409);
    expect(guess.message).not.toContain(String(a.fencingToken));
    const beat = await rejection(heartbeats.beatTask('job-a', { fencingToken: a.fencingToken + 1 }));
    expect(`${beat.message} ${JSON.stringify(beat.details)}`).not.toMatch(/registered with \d|expected \d/);
    expect(locks.current(0)).toMatchObject({ holder: 'train-a', token: a.fencingToken, ttlMs: 60_000 });
    await locks.renew(0, 'train-a', a.fencingToken, 600);
    await locks.release(0, 'train-a', a.fencingToken);
    expect(locks.current(0)).toBeNull();
  });

  it('a holder paused past its TTL cannot renew, release or beat with its stale token', async () => {
    h = await createHarness();
    const { locks, heartbeats } = h.service;
    const a = await locks.acquire({ gpuId: 0, holder: 'a', purpose: '', ttlSeconds: 10 });
    await heartbeats.register({ taskId: 'task-a', owner: 'a', gpuId: 0, fencingToken: a.fencingToken, timeoutSeconds: 600 });
    h.clock.advance(11_000);
    const b = await locks.acquire({ gpuId: 0, holder: 'b', purpose: '' });
    expect(b.fencingToken).toBe(2);
    for (const op of [() => locks.renew(0, 'a', a.fencingToken, 10), () => locks.release(0, 'a', a.fencingToken), () => heartbeats.beat('task-a', { progress: 0.5 })]) {
      const err = await rejection(op());
      expect(err.status).toBe(409);
      expect(err.message).toMatch(/held by b|Stale fencing token|no longer holds/);
    }
    expect(locks.current(0)?.holder).toBe('b');
  });

  it('a wall-clock jump forward does not free a lock (expiry is monotonic)', async () => {
    h = await createHarness();
    await h.service.locks.acquire({ gpuId: 0, holder: 'a', purpose: '', ttlSeconds: 60 });
    h.clock.jumpWall(24 * 3600_000);
    await h.service.check();
    expect(h.service.locks.current(0)?.holder).toBe('a');
    expect((await rejection(h.service.locks.acquire({ gpuId: 0, holder: 'b', purpose: '' }))).status).toBe(409);
  });

  it('a wall-clock jump backward does not extend a lock', async () => {
    h = await createHarness();
    await h.service.locks.acquire({ gpuId: 0, holder: 'a', purpose: '', ttlSeconds: 60 });
    h.clock.advance(30_000);
    h.clock.jumpWall(-24 * 3600_000);
    expect(h.service.lockView(0).ttlRemainingSeconds).toBeCloseTo(30, 3);
    h.clock.advance(30_001);
    expect(h.service.locks.current(0)).toBeNull();
    const b = await h.service.locks.acquire({ gpuId: 0, holder: 'b', purpose: '' });
    expect(b.fencingToken).toBe(2);
    expect(h.service.locks.history(0)[1]).toMatchObject({ action: 'timeout', holder: 'a' });
  });

  it('renew extends the TTL from now', async () => {
    h = await createHarness();
    const a = await h.service.locks.acquire({ gpuId: 0, holder: 'a', purpose: '', ttlSeconds: 10 });
    h.clock.advance(8_000);
    const renewed = await h.service.locks.renew(0, 'a', a.fencingToken, 10);
    expect(renewed.fencingToken).toBe(a.fencingToken);
    h.clock.advance(8_000);
    expect(h.service.locks.current(0)?.token).toBe(a.fencingToken);
    h.clock.advance(2_001);
    expect(h.service.locks.current(0)).toBeNull();
  });

  it('rejects bad TTLs, waits and tokens with 400 listing the fields, and unknown GPUs with 404', async () => {
    h = await createHarness({ locks: { maxTtlSeconds: 3600 } });
    for (const ttl of [-1, 0, 3601, Number.NaN, Number.POSITIVE_INFINITY]) {
      const err = await rejection(h.service.locks.acquire({ gpuId: 0, holder: 'a', purpose: '', ttlSeconds: ttl }));
      expect(err.status).toBe(400);
      expect(err.details?.map((d) => d.field)).toEqual(['ttl_seconds']);
    }
    const many = await rejection(h.service.locks.acquire({ gpuId: 0, holder: '', purpose: '', ttlSeconds: -5 }, { waitSeconds: -1 }));
    expect(many.details?.map((d) => d.field).sort()).toEqual(['holder', 'ttl_seconds', 'wait_seconds']);
    expect((await rejection(h.service.locks.release(0, 'a', 0))).status).toBe(400);
    expect((await rejection(h.service.locks.acquire({ gpuId: 5, holder: 'a', purpose: '' }))).status).toBe(404);
  });

  it('an acquire with wait_seconds gets the GPU as soon as the holder releases it', async () => {
    h = await createHarness();
    const a = await h.service.locks.acquire({ gpuId: 0, holder: 'a', purpose: '' });
    const waiting = h.service.locks.acquire({ gpuId: 0, holder: 'b', purpose: '' }, { waitSeconds: 30 });
    await h.advance(2_000, 500);
    await h.service.locks.release(0, 'a', a.fencingToken);
    const b = await waiting;
    expect(b).toMatchObject({ holder: 'b', fencingToken: 2 });
  });

  it('an acquire with wait_seconds gives up with 409 after the wait', async () => {
    h = await createHarness();
    await h.service.locks.acquire({ gpuId: 0, holder: 'a', purpose: '' });
    const waiting = rejection(h.service.locks.acquire({ gpuId: 0, holder: 'b', purpose: '' }, { waitSeconds: 5 }));
    await h.advance(6_000, 1_000);
    expect((await waiting).status).toBe(409);
  });

  it('forced release frees the GPU, is audited with the reason, and tells listeners', async () => {
    h = await createHarness();
    const events: string[] = [];
    h.service.locks.onReleased((e) => events.push(`${e.reason}:${e.lock.holder}`));
    await h.service.locks.acquire({ gpuId: 0, holder: 'stuck', purpose: '' });
    const freed = await h.service.locks.forceRelease(0, { actor: 'admin', reason: 'driver reset' });
    expect(freed?.holder).toBe('stuck');
    expect(h.service.locks.current(0)).toBeNull();
    expect(events).toEqual(['force_released:stuck']);
    const audit = h.store.recentAudit(5);
    expect(audit[0]).toMatchObject({ actor: 'admin', action: 'monitoring.lock.force_release', target: 'gpu_lock:0' });
    expect(audit[0]!.detail).toMatchObject({ reason: 'driver reset', released: { holder: 'stuck', fencing_token: 1 } });
    expect(await h.service.locks.forceRelease(0, { actor: 'admin', reason: 'again' })).toBeNull();
  });

  it('a restart keeps an acknowledged lock (minus the downtime) and its token sequence', async () => {
    h = await createHarness();
    const a = await h.service.locks.acquire({ gpuId: 0, holder: 'a', purpose: '', ttlSeconds: 100 });
    h.clock.advance(10_000);
    h = await h.restart();
    h.clock.advance(5_000); // "downtime": wall and monotonic move on
    expect(h.service.locks.current(0)).toMatchObject({ holder: 'a', token: a.fencingToken });
    expect(h.service.lockView(0).ttlRemainingSeconds).toBeCloseTo(85, 0);
    await h.service.locks.release(0, 'a', a.fencingToken);
    expect((await h.service.locks.acquire({ gpuId: 0, holder: 'b', purpose: '' })).fencingToken).toBe(2);
  });

  it('a restart does not resurrect a lock that expired, even if the wall clock was set back while down', async () => {
    h = await createHarness({ monitor: { enabled: false } });
    await h.service.locks.acquire({ gpuId: 0, holder: 'short', purpose: '', ttlSeconds: 10 });
    h.clock.advance(20_000);
    await h.stop();
    h.clock.jumpWall(-3600_000);
    h = await h.restart();
    expect(h.service.locks.current(0)).toBeNull();
    const b = await h.service.locks.acquire({ gpuId: 0, holder: 'b', purpose: '' });
    expect(b.fencingToken).toBe(2);
  });

  it('a wall clock set back while down never gives a lock more than its acknowledged remaining TTL', async () => {
    h = await createHarness({ monitor: { enabled: false } });
    await h.service.locks.acquire({ gpuId: 0, holder: 'a', purpose: '', ttlSeconds: 100 });
    h.clock.advance(40_000);
    await h.stop();
    h.clock.jumpWall(-3600_000);
    h = await h.restart();
    expect(h.service.lockView(0).ttlRemainingSeconds).toBeLessThanOrEqual(60);
    expect(h.service.lockView(0).ttlRemainingSeconds).toBeGreaterThan(59);
  });

  it('stop() cancels every timer and wakes waiters', async () => {
    h = await createHarness({ telemetry: { enabled: false } });
    await h.service.locks.acquire({ gpuId: 0, holder: 'a', purpose: '' });
    const waiting = rejection(h.service.locks.acquire({ gpuId: 0, holder: 'b', purpose: '' }, { waitSeconds: 60 }));
    await h.stop();
    expect((await waiting).status).toBe(503);
    expect(h.clock.pendingTimers()).toBe(0);
    await h.service.stop(); // twice is fine
  });
});
