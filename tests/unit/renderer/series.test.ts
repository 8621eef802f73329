import { describe, expect, it } from 'vitest';
import { mergeWindows, RingSeries } from '../../../renderer/src/lib/series.js';

describe('RingSeries', () => {
  it('keeps the newest points up to its capacity', () => {
    const s = new RingSeries(3);
    for (let i = 1; i <= 5; i++) s.push(i * 1000, i);
    expect(s.size).toBe(3);
    expect(s.window(0).map((p) => p.v)).toEqual([3, 4, 5]);
    expect(s.last()).toEqual({ time: 5000, value: 5 });
  });
  it('returns only the window asked for', () => {
    const s = new RingSeries(100);
    for (let i = 0; i < 10; i++) s.push(i * 1000, i);
    expect(s.window(7000).map((p) => p.v)).toEqual([7, 8, 9]);
    expect(s.window(20_000)).toEqual([]);
  });
  it('downsamples 8 h of 1 Hz points to a few hundred by averaging, quickly', () => {
    const s = new RingSeries();
    for (let i = 0; i < 8 * 3600 + 100; i++) s.push(i * 1000, i % 2 === 0 ? 0 : 10);
    expect(s.size).toBe(8 * 3600);
    const t0 = performance.now();
    const w = s.window(0, 300);
    const ms = performance.now() - t0;
    expect(w.length).toBeLessThanOrEqual(300);
    expect(w.length).toBeGreaterThan(250);
    for (const p of w) expect(p.v).toBeCloseTo(5, 0);
    expect(ms).toBeLessThan(200);
  });
  it('merges several series by time', () => {
    const a = new RingSeries(10);
    const b = new RingSeries(10);
    a.push(1, 1);
    a.push(2, 2);
    b.push(2, 20);
    expect(mergeWindows({ a, b }, 0)).toEqual([{ t: 1, a: 1 }, { t: 2, a: 2, b: 20 }]);
  });
});
