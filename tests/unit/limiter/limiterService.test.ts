import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { FakeClock } from '../../../electron/core/base/clock.js';
import { ConfigStore, loadSettings, type Layer } from '../../../electron/core/base/config.js';
import { MetricsRegistry } from '../../../electron/core/base/metrics.js';
import { MemoryLearnedRateStore, type LearnedRate } from '../../../electron/core/services/limiter/learnedRateStore.js';
import { LimiterService } from '../../../electron/core/services/limiter/limiterService.js';
import { waitUntil } from '../../helpers/wait.js';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function build(limiter: Layer = {}, rates = new MemoryLearnedRateStore(), clock = new FakeClock()) {
  const dataDir = mkdtempSync(join(tmpdir(), 'limiter-unit-'));
  dirs.push(dataDir);
  const settings = loadSettings({ env: {}, dataDir, overrides: { limiter: { upstream_url: 'http://127.0.0.1:9/v1', ...limiter } } });
  const config = new ConfigStore(settings);
  const metrics = new MetricsRegistry();
  const service = new LimiterService({ config, clock, logger: pino({ level: 'silent' }), metrics, rates, env: {} });
  return { service, clock, rates, config, metrics };
}

describe('LimiterService', () => {
  it('routes configured prefixes to their provider, unknown provider-looking ids to a 404, the rest locally', async () => {
    const { service } = build({ providers: [{ name: 'openrouter', aliases: ['openrouter', 'or'], upstream_url: 'http://127.0.0.1:9/v1' }] });
    expect(service.route('nvidia/meta/llama-3.1-8b-instruct')).toEqual({ kind: 'provider', provider: 'nvidia' });
    expect(service.route('NVIDIAVX/meta/x')).toEqual({ kind: 'provider', provider: 'nvidia' });
    expect(service.route('or/meta-llama/llama-3')).toEqual({ kind: 'provider', provider: 'openrouter' });
    expect(service.route('acme/org/model')).toEqual({ kind: 'unknown-provider', prefix: 'acme' });
    for (const local of ['tinyllama', 'org/model', 'hf:user/repo:q4_k_m', 'default']) expect(service.route(local)).toEqual({ kind: 'local' });
    expect(service.unknownProviderError('acme', 'acme/org/model').message).toContain('openrouter (openrouter, or)');
  });

  it('shares one snapshot for at most a second of the injected clock', async () => {
    const { service, clock } = build();
    await service.start();
    const a = service.snapshot();
    clock.advance(999);
    expect(service.snapshot()).toBe(a);
    clock.advance(1);
    const b = service.snapshot();
    expect(b).not.toBe(a);
    expect(b.queue.per_priority).toEqual({ URGENT: 0, HIGH: 0, NORMAL: 0, LOW: 0 });
    await service.stop();
  });

  it('resumes the learned rate of a provider after a restart, unless the base rate changed', async () => {
    const rates = new MemoryLearnedRateStore();
    rates.save('nvidia', { rpm: 12.5, state: 'retreat', baseRpm: 40 }, 0);
    const same = build({}, rates);
    expect(same.service.status().retreat).toMatchObject({ state: 'retreat', effective_rpm: 12.5 });
    const changed = build({ rate_rpm: 60 }, rates);
    expect(changed.service.status().retreat).toMatchObject({ state: 'normal', effective_rpm: 60 });
  });

  it('counts every proxied request in its series by priority, also after a metrics reset (granted at once or queued)', async () => {
    const upstream = createServer((_req, res) => res.writeHead(200, { 'content-type': 'application/json' }).end('{}'));
    await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
    const url = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}/v1`;
    const { service, metrics } = build({ upstream_url: url, rate_rpm: 6000, bucket_capacity: 100 });
    await service.start();
    const call = async (priority: 'high' | 'low') => {
      const res = await service.proxy({ provider: 'nvidia', method: 'POST', path: '/chat/completions', headers: {}, body: '{}', priority, priorityInvalid: false, signal: new AbortController().signal, requestId: 'r' });
      await service.readBody('nvidia', res);
    };
    const value = async (name: string, labels: Record<string, string>) => {
      // A histogram's `_count` is one of its values (metricName), not a metric of its own.
      const metric = (await metrics.registry.getMetricsAsJSON()).find((m) => m.name === name.replace(/_count$/, ''));
      const v = metric?.values.find(
        (x) => ((x as { metricName?: string }).metricName ?? metric.name) === name && Object.entries(labels).every(([k, l]) => (x.labels as Record<string, unknown>)[k] === l),
      );
      return v?.value ?? 0;
    };
    try {
      await call('high');
      await call('high');
      await call('low');
      expect(await value('sidecar_requests_total', { provider: 'nvidia', priority: 'HIGH', status: 'success' })).toBe(2);
      expect(await value('sidecar_requests_total', { provider: 'nvidia', priority: 'LOW', status: 'success' })).toBe(1);
      expect(await value('sidecar_queue_latency_seconds_count', { provider: 'nvidia', priority: 'HIGH' })).toBe(2);
      expect(await value('sidecar_upstream_latency_seconds_count', { provider: 'nvidia' })).toBe(3);
      metrics.reset();
      await call('high');
      expect(await value('sidecar_requests_total', { provider: 'nvidia', priority: 'HIGH', status: 'success' })).toBe(1);
      expect(await value('sidecar_queue_latency_seconds_count', { provider: 'nvidia', priority: 'HIGH' })).toBe(1);
      expect(await value('sidecar_upstream_latency_seconds_count', { provider: 'nvidia' })).toBe(1);
    } finally {
      await service.stop();
      await new Promise((r) => upstream.close(r));
    }
  });

  it('writes a change of state at once, rate steps inside one state at most once per second (and on stop)', async () => {
    // A real upstream whose answer the test sets; the retreat machine runs on the fake clock.
    let status = 429;
    const upstream = createServer((_req, res) => res.writeHead(status, { 'content-type': 'application/json' }).end('{}'));
    await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
    const saves: Array<LearnedRate & { at: number }> = [];
    const rates = new (class extends MemoryLearnedRateStore {
      override save(provider: string, rate: LearnedRate, at: number): void {
        saves.push({ ...rate, at });
        super.save(provider, rate, at);
      }
    })();
    const url = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}/v1`;
    const { service, clock } = build({ upstream_url: url, rate_rpm: 600, bucket_capacity: 1000, recover_increment_rpm: 1 }, rates);
    await service.start();
    // A quarter second of the fake clock before each call: the bucket refills a token or more.
    const call = async () => {
      clock.advance(250);
      const res = await service.proxy({ provider: 'nvidia', method: 'POST', path: '/chat/completions', headers: {}, body: '{}', priority: 'normal', priorityInvalid: false, signal: new AbortController().signal, requestId: 'r' });
      await service.readBody('nvidia', res);
    };
    try {
      await call(); // a 429: RETREAT, written at once
      expect(saves.map((s) => s.state)).toEqual(['retreat']);
      for (let i = 0; i < 3; i++) await call(); // more 429s: cuts inside RETREAT
      status = 200;
      clock.advance(180_000); // quiet past both windows (the pending cut is written meanwhile)
      const r1 = (n: number) => Math.round(n * 10) / 10; // status shows one decimal
      expect(r1(rates.load('nvidia')!.rpm)).toBe(service.status().retreat.effective_rpm);
      await call(); // RECOVER starts: written at once
      expect(saves.at(-1)!.state).toBe('recover');
      expect(r1(saves.at(-1)!.rpm)).toBe(service.status().retreat.effective_rpm);
      const atRecover = saves.length;
      const rpmAtRecover = saves.at(-1)!.rpm;
      for (let i = 0; i < 20; i++) await call(); // twenty recovery steps (one per response) in 5 s
      expect(service.status().retreat).toMatchObject({ state: 'recover', effective_rpm: r1(rpmAtRecover + 20) });
      expect(saves.length - atRecover).toBeGreaterThanOrEqual(4);
      expect(saves.length - atRecover).toBeLessThanOrEqual(6); // not 20
      await service.stop(); // the last step is written on stop
      expect(rates.load('nvidia')!.state).toBe('recover');
      expect(rates.load('nvidia')!.rpm).toBeCloseTo(rpmAtRecover + 20, 6);
    } finally {
      await service.stop();
      await new Promise((r) => upstream.close(r));
    }
  });

  it('refuses to shrink the queue below its depth, and start/stop are safe twice', async () => {
    const { service } = build({ rate_rpm: 1, bucket_capacity: 1, queue_max_size: 10 });
    await service.start();
    await service.start();
    const ac = new AbortController();
    const calls = [0, 1, 2].map(() =>
      service.proxy({ provider: 'nvidia', method: 'POST', path: '/chat/completions', headers: {}, body: '{}', priority: 'normal', priorityInvalid: false, signal: ac.signal, requestId: 'r' }).catch((e: Error) => e),
    );
    await new Promise((r) => setImmediate(r));
    expect(service.status().queue.current_size).toBeGreaterThanOrEqual(2);
    expect(() => service.applyAdminPatch({ queue_max_size: 1 })).toThrow(/拒绝缩小/);
    ac.abort();
    await Promise.all(calls);
    expect(service.status().queue.current_size).toBe(0);
    await service.stop();
    await service.stop();
  });

  it('close() drains: a call already upstream gets its answer; one waiting for a token and a new one get 503 (stopping); the deadline cuts the rest', async () => {
    // A real upstream that answers only when the test lets it.
    const held: Array<() => void> = [];
    const upstream = createServer((_req, res) => void held.push(() => res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}')));
    await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
    const url = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}/v1`;
    // One token, refilled only on the fake clock (which stays still): a second call waits for a token.
    const { service } = build({ upstream_url: url, rate_rpm: 6, bucket_capacity: 1 });
    const call = () => service.proxy({ provider: 'nvidia', method: 'POST', path: '/chat/completions', headers: {}, body: '{}', priority: 'normal', priorityInvalid: false, signal: new AbortController().signal, requestId: 'r' });
    try {
      await service.start();
      const first = call();
      await waitUntil(() => held.length === 1, 5000, 'the first call to reach the upstream');
      const queued = call();
      queued.catch(() => undefined);
      await waitUntil(() => service.status().queue.current_size === 1, 5000, 'the second call to wait for a token');
      const closing = service.close();
      expect(service.draining).toBe(true);
      // Waiting for a token is not started work: refused at once, not held until the deadline.
      await expect(queued).rejects.toMatchObject({ code: 'UNAVAILABLE', message: expect.stringMatching(/is stopping/) });
      await expect(call()).rejects.toMatchObject({ code: 'UNAVAILABLE', message: 'The limiter is stopping' });
      held.shift()!();
      const res = await first;
      expect(res.status).toBe(200);
      expect((await service.readBody('nvidia', res)).toString()).toBe('{"ok":true}');
      await closing;
      expect(service.running).toBe(false);

      // Again with a deadline that fires while the call is still upstream: the call is cut.
      await service.start();
      const second = call();
      second.catch(() => undefined);
      await waitUntil(() => held.length === 1, 5000, 'the second call to reach the upstream');
      const deadline = new AbortController();
      const closingAgain = service.close({ deadline: deadline.signal });
      deadline.abort();
      await closingAgain;
      await expect(second).rejects.toBeTruthy();
      expect(service.running).toBe(false);
    } finally {
      await service.stop();
      upstream.closeAllConnections();
      await new Promise((r) => upstream.close(r));
    }
  });
});
