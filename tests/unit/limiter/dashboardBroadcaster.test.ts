import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { FakeClock } from '../../../electron/core/base/clock.js';
import { MetricsRegistry } from '../../../electron/core/base/metrics.js';
import { CoreStats, SnapshotRegistry, SnapshotStream } from '../../../electron/core/base/snapshots.js';
import type { LimiterEvent } from '../../../electron/core/services/limiter/limiterService.js';
import { DashboardBroadcaster } from '../../../electron/core/server/http/plugins/limiter.js';

function events() {
  const listeners = new Set<(e: LimiterEvent) => void>();
  return {
    onEvent(l: (e: LimiterEvent) => void) {
      listeners.add(l);
      return () => listeners.delete(l);
    },
    emit(e: LimiterEvent) {
      for (const l of listeners) l(e);
    },
    listeners,
  };
}

describe('DashboardBroadcaster: the limiter part of the console snapshot stream', () => {
  it('one timer and one build per tick for limiter and console viewers together; transitions at once; stops with the last viewer', async () => {
    const clock = new FakeClock();
    const registry = new SnapshotRegistry();
    let builds = 0;
    let failing = false;
    registry.register('limiter', () => {
      builds++;
      if (failing) throw new Error('boom');
      return { timestamp: builds };
    });
    const stream = new SnapshotStream({ registry, clock, logger: pino({ level: 'silent' }), core: new CoreStats({ clock, metrics: new MetricsRegistry(), version: 't', startedMono: clock.monotonic() }) });
    const src = events();
    const b = new DashboardBroadcaster(src, stream);
    const got: string[][] = [[], [], []];
    const removers = got.map((frames) => b.add({ snapshot: (j) => frames.push(j), event: (j) => frames.push(`event:${j}`), close: () => undefined }));
    const consoleFrames: number[] = [];
    const offConsole = stream.subscribe((s) => consoleFrames.push(s.seq));
    expect(clock.pendingTimers()).toBe(1);
    await new Promise<void>((r) => setImmediate(r));
    expect(got.map((f) => f.length)).toEqual([1, 1, 1]); // the first frame on join
    const before = builds;
    await clock.advanceAsync(5000, 1000);
    expect(builds - before).toBe(5); // 5 ticks for 4 viewers, not 20
    expect(got.map((f) => f.length)).toEqual([6, 6, 6]);
    expect(new Set(got.map((f) => f[5])).size).toBe(1); // the same frame for everyone
    expect(JSON.parse(got[0]![5]!)).toEqual({ timestamp: builds }); // the limiter's own snapshot, as before
    expect(consoleFrames.length).toBe(6);
    src.emit({ type: 'transition', event: { provider: 'nvidia', from: 'normal', to: 'retreat', previous_rpm: 40, rpm: 30, ratio: 0.1, reason: 'retreat', timestamp: 1 } });
    expect(got.every((f) => f[f.length - 1]!.startsWith('event:'))).toBe(true);
    failing = true;
    await clock.advanceAsync(1000);
    expect(JSON.parse(got[0]![got[0]!.length - 1]!)).toEqual({ error: 'internal' });
    for (const r of removers) r();
    expect(src.listeners.size).toBe(0);
    expect(clock.pendingTimers()).toBe(1); // the console viewer still watches
    offConsole();
    expect(clock.pendingTimers()).toBe(0);
  });
});
