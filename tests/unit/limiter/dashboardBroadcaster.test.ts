import { describe, expect, it } from 'vitest';
import { FakeClock } from '../../../electron/core/base/clock.js';
import type { LimiterSnapshot } from '../../../shared/contracts/limiter.js';
import type { LimiterEvent } from '../../../electron/core/services/limiter/limiterService.js';
import { DashboardBroadcaster } from '../../../electron/core/server/http/plugins/limiter.js';

function source() {
  let builds = 0;
  const listeners = new Set<(e: LimiterEvent) => void>();
  return {
    get builds() {
      return builds;
    },
    snapshot: () => {
      builds++;
      return { timestamp: builds } as unknown as LimiterSnapshot;
    },
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

describe('DashboardBroadcaster: one snapshot per second for every viewer', () => {
  it('uses one timer and one build per tick however many viewers, pushes transitions at once, and stops with the last viewer', () => {
    const clock = new FakeClock();
    const src = source();
    const b = new DashboardBroadcaster(src, clock);
    const got: string[][] = [[], [], []];
    const removers = got.map((frames) => b.add({ snapshot: (j) => frames.push(j), event: (j) => frames.push(`event:${j}`), close: () => undefined }));
    expect(clock.pendingTimers()).toBe(1);
    const before = src.builds;
    clock.advance(5000);
    expect(src.builds - before).toBe(5); // 5 ticks, not 15
    expect(got.every((f) => f.length === 6)).toBe(true); // first frame on join + 5 ticks
    expect(new Set(got.map((f) => f[5])).size).toBe(1); // the same frame for everyone
    src.emit({ type: 'transition', event: { provider: 'nvidia', from: 'normal', to: 'retreat', previous_rpm: 40, rpm: 30, ratio: 0.1, reason: 'retreat', timestamp: 1 } });
    expect(got.every((f) => f[f.length - 1]!.startsWith('event:'))).toBe(true);
    for (const r of removers) r();
    expect(clock.pendingTimers()).toBe(0);
    expect(src.listeners.size).toBe(0);
  });
});
