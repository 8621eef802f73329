import { describe, expect, it } from 'vitest';
import { Value } from '@sinclair/typebox/value';
import { LimitSettings } from '../../../shared/contracts/config/limiter.js';
import type { Priority } from '../../../shared/contracts/priority.js';
import { FakeClock } from '../../../electron/core/base/clock.js';
import { AppError } from '../../../electron/core/base/errors.js';
import { ProviderLimiter, type ProviderLimiterHooks } from '../../../electron/core/services/limiter/providerLimiter.js';

const defaults = Value.Default(LimitSettings, {}) as LimitSettings;

function make(over: Partial<LimitSettings> = {}, hooks: ProviderLimiterHooks = {}) {
  const clock = new FakeClock();
  const limiter = new ProviderLimiter('nvidia', { ...defaults, ...over }, clock, hooks);
  return { clock, limiter };
}

/** Collects settled results of acquire() without awaiting (FakeClock drives time). */
function track(p: Promise<unknown>) {
  const r: { value?: unknown; error?: AppError; settled: boolean } = { settled: false };
  p.then(
    (v) => Object.assign(r, { value: v, settled: true }),
    (e: AppError) => Object.assign(r, { error: e, settled: true }),
  );
  return r;
}
const flush = () => new Promise<void>((r) => setImmediate(r));

describe('ProviderLimiter: queue and bucket', () => {
  it('serves in priority order, FIFO within a level', async () => {
    const { clock, limiter } = make({ bucket_capacity: 1, rate_rpm: 60 });
    await limiter.acquire('normal'); // empties the bucket
    const order: string[] = [];
    const go = (p: Priority, tag: string) => void limiter.acquire(p).then(() => order.push(tag), () => order.push(`${tag}:timeout`));
    go('low', 'low1');
    go('normal', 'n1');
    go('high', 'h1');
    go('normal', 'n2');
    go('urgent', 'u1');
    for (let i = 0; i < 5; i++) {
      await clock.advanceAsync(1000);
    }
    expect(order.filter((t) => !t.startsWith('low'))).toEqual(['u1', 'h1', 'n1', 'n2']);
    expect(order).toContain('low1:timeout');
    // low gave up after its 2 s token timeout (it was never first)
  });

  it('ages waiting requests so lower levels are not starved', async () => {
    const { clock, limiter } = make({ bucket_capacity: 1, rate_rpm: 6, aging_seconds: 10, request_timeout: 300 });
    await limiter.acquire('normal');
    const order: string[] = [];
    void limiter.acquire('normal').then(() => order.push('old-normal'));
    // A stream of new HIGH requests, one every 5 s; a token every 10 s.
    for (let i = 0; i < 6; i++) {
      void limiter.acquire('high').then(() => order.push(`high${i}`));
      await clock.advanceAsync(5000);
    }
    await clock.advanceAsync(20_000);
    // Without aging the old NORMAL would wait behind every HIGH; with 10 s aging it is served by its 2nd token.
    expect(order.indexOf('old-normal')).toBeLessThanOrEqual(1);
  });

  it('LOW gives up after 2 s with 429 RateLimitedError and the contract message', async () => {
    const { clock, limiter } = make({ bucket_capacity: 1, rate_rpm: 1 });
    await limiter.acquire('normal');
    const low = track(limiter.acquire('low'));
    await clock.advanceAsync(1999);
    expect(low.settled).toBe(false);
    await clock.advanceAsync(1);
    expect(low.error?.status).toBe(429);
    expect(low.error?.type).toBe('RateLimitedError');
    expect(low.error?.message).toContain('低优先级请求令牌等待超时 (2.0s)');
    expect(low.error?.headers['retry-after']).toBeDefined();
    expect(limiter.queueSize).toBe(0);
  });

  it('other levels wait up to request_timeout (hot-changeable)', async () => {
    const { clock, limiter } = make({ bucket_capacity: 1, rate_rpm: 0.5, request_timeout: 60 });
    await limiter.acquire('normal');
    const n = track(limiter.acquire('normal'));
    await clock.advanceAsync(59_000);
    expect(n.settled).toBe(false);
    await clock.advanceAsync(1000);
    expect(n.error?.message).toContain('令牌等待超时 (60s)');
  });

  it('queue full + reject → 503 QueueFullError at once', async () => {
    const { limiter } = make({ bucket_capacity: 1, queue_max_size: 2, fallback_enabled_passthrough: false });
    await limiter.acquire('normal');
    void limiter.acquire('normal').catch(() => undefined);
    void limiter.acquire('normal').catch(() => undefined);
    const r = track(limiter.acquire('urgent'));
    await flush();
    expect(r.error?.status).toBe(503);
    expect(r.error?.type).toBe('QueueFullError');
    expect(r.error?.message).toContain('队列已满,当前策略: reject');
    expect(limiter.counters.queueFullRejects).toBe(1);
    limiter.stop();
  });

  it('queue full + drop_lowest evicts the lowest-priority newest request with an immediate 503', async () => {
    const { limiter } = make({ bucket_capacity: 1, queue_max_size: 3, queue_full_policy: 'drop_lowest' });
    await limiter.acquire('normal');
    const lowOld = track(limiter.acquire('low'));
    const lowNew = track(limiter.acquire('low'));
    const high = track(limiter.acquire('high'));
    const urgent = track(limiter.acquire('urgent'));
    await flush();
    expect(lowNew.error?.status).toBe(503);
    expect(lowNew.error?.message).toContain('dropped');
    expect(lowOld.settled).toBe(false);
    expect(high.settled || urgent.settled).toBe(false);
    expect(limiter.queueSize).toBe(3);
    expect(limiter.counters.totalDropped).toBe(1);
    limiter.stop();
  });

  it('queue full + passthrough skips the queue but still needs a token', async () => {
    const { clock, limiter } = make({ bucket_capacity: 1, rate_rpm: 60, queue_max_size: 1, queue_full_policy: 'passthrough' });
    await limiter.acquire('normal');
    const queued = track(limiter.acquire('normal'));
    const pass = track(limiter.acquire('normal'));
    await flush();
    expect(pass.settled).toBe(false); // no token yet
    await clock.advanceAsync(1000);
    expect(pass.value).toMatchObject({ passthrough: true });
    expect(queued.settled).toBe(false); // passthroughs go first
    await clock.advanceAsync(1000);
    expect(queued.value).toMatchObject({ passthrough: false });
    expect(limiter.counters.passthrough).toBe(1);
  });

  it('queue-full passthroughs never overtake a queued request of higher priority', async () => {
    const { clock, limiter } = make({ bucket_capacity: 1, rate_rpm: 60, queue_max_size: 2, queue_full_policy: 'passthrough', request_timeout: 300, low_priority_timeout: 300 });
    await limiter.acquire('normal'); // empties the bucket
    const order: string[] = [];
    const go = (p: Priority, tag: string) => void limiter.acquire(p).then(() => order.push(tag));
    go('urgent', 'urgent');
    go('normal', 'normal');
    // The queue is full now: these overflow.
    go('low', 'low-over');
    go('high', 'high-over');
    for (let i = 0; i < 4; i++) await clock.advanceAsync(1000);
    // An overflow goes before queued requests of its level or lower, never before a higher one.
    expect(order).toEqual(['urgent', 'high-over', 'normal', 'low-over']);
    expect(limiter.counters.passthrough).toBe(2);
  });

  it('the passthrough overflow list is bounded: beyond queue_max_size more, 503 QueueFullError', async () => {
    const { limiter } = make({ bucket_capacity: 1, rate_rpm: 60, queue_max_size: 2, queue_full_policy: 'passthrough', request_timeout: 300 });
    await limiter.acquire('normal');
    const all = Array.from({ length: 5 }, () => track(limiter.acquire('normal')));
    await flush();
    expect(all.slice(0, 4).every((r) => !r.settled)).toBe(true); // 2 queued + 2 passing through
    expect(all[4]!.error).toBeInstanceOf(AppError);
    expect(all[4]!.error!.status).toBe(503);
    expect(all[4]!.error!.type).toBe('QueueFullError');
    expect(all[4]!.error!.message).toContain('队列已满');
    expect(limiter.counters).toMatchObject({ passthrough: 2, queueFullRejects: 1 });
    expect(limiter.waiting).toBe(4);
    limiter.stop();
    await flush();
  });

  it('an aborted request leaves the queue at once and frees its slot', async () => {
    const { limiter } = make({ bucket_capacity: 1, queue_max_size: 1, fallback_enabled_passthrough: false });
    await limiter.acquire('normal');
    const ac = new AbortController();
    const r = track(limiter.acquire('normal', ac.signal));
    expect(limiter.queueSize).toBe(1);
    ac.abort();
    await flush();
    expect(r.error).toBeInstanceOf(AppError);
    expect(limiter.queueSize).toBe(0);
    const next = track(limiter.acquire('normal'));
    await flush();
    expect(next.error).toBeUndefined(); // the slot is free again (queued, not rejected)
    limiter.stop();
  });

  it('a 429 with Retry-After pauses the bucket', async () => {
    const { clock, limiter } = make({ bucket_capacity: 10, rate_rpm: 600 });
    limiter.recordResponse(429, 5);
    const r = track(limiter.acquire('urgent'));
    await clock.advanceAsync(4900, 100);
    expect(r.settled).toBe(false);
    await clock.advanceAsync(200, 100);
    expect(r.value).toBeDefined();
  });

  it('a retreat slows the bucket down at once', () => {
    const { limiter } = make();
    const t = limiter.recordResponse(429);
    expect(t?.to).toBe('retreat');
    expect(limiter.bucket.ratePerMinute).toBe(30);
  });

  it('stop() answers every waiting request and leaves no timer', async () => {
    const { clock, limiter } = make({ bucket_capacity: 1 });
    await limiter.acquire('normal');
    const a = track(limiter.acquire('urgent'));
    const b = track(limiter.acquire('low'));
    limiter.stop();
    limiter.stop();
    await flush();
    expect(a.error?.status).toBe(503);
    expect(b.error?.status).toBe(503);
    expect(clock.pendingTimers()).toBe(0);
  });
});

describe('ProviderLimiter: the seed deadlock regression (nested locks / awaiting inside the critical section)', () => {
  it('observers that call back in (record, acquire, reset, status) while a transition or grant is being applied never hang', async () => {
    const box: { limiter?: ProviderLimiter } = {};
    const self = () => box.limiter!;
    let reentered = 0;
    const hooks: ProviderLimiterHooks = {
      // Re-entrant calls from inside state changes: the seed's evaluate_retreat → get_429_rate → set_rate path.
      onTransition: () => {
        reentered++;
        self().retreat.ratio('recover');
        self().bucket.tokens();
        if (reentered % 3 === 0) self().recordResponse(200);
        void self().acquire('high').catch(() => undefined);
      },
      onGrant: () => {
        self().depths();
        if (reentered % 2 === 0) self().recordResponse(reentered % 5 === 0 ? 429 : 200);
      },
    };
    const made = make({ bucket_capacity: 5, rate_rpm: 600, request_timeout: 300, queue_max_size: 10_000 }, hooks);
    const limiter = made.limiter;
    box.limiter = limiter;
    const results: Array<ReturnType<typeof track>> = [];
    // Interleave 1000 responses (10 % 429) with 500 acquisitions and periodic resets, like the seed's 4 threads.
    for (let i = 0; i < 1000; i++) {
      limiter.recordResponse(i % 10 === 0 ? 429 : 200);
      if (i % 2 === 0) results.push(track(limiter.acquire((['urgent', 'high', 'normal', 'low'] as const)[i % 4]!)));
      if (i % 250 === 0) limiter.reset();
      if (i % 50 === 0) await made.clock.advanceAsync(100);
    }
    expect(reentered).toBeGreaterThan(5);
    // Everything settles once time passes: no request is stuck behind a lost wake-up.
    await made.clock.advanceAsync(400_000, 1000);
    expect(results.every((r) => r.settled)).toBe(true);
    expect(limiter.waiting).toBe(0);
    const unexpected = results.filter((r) => r.error && r.error.status !== 429);
    expect(unexpected).toEqual([]);
    limiter.stop();
  });
});
