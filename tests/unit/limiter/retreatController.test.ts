import { describe, expect, it } from 'vitest';
import { FakeClock } from '../../../electron/core/base/clock.js';
import { RetreatController, type RetreatParams } from '../../../electron/core/services/limiter/retreatController.js';

const seed: RetreatParams = {
  baseRpm: 40,
  ceilingRpm: 40,
  retreatWindowSeconds: 60,
  retreat429Threshold: 0.05,
  retreatFactor: 0.75,
  retreatMinRpm: 5,
  recoverWindowSeconds: 120,
  recover429Threshold: 0.02,
  recoverIncrementRpm: 2,
  recoverMode: 'step',
  probeFactor: 1.25,
  probeIntervalSeconds: 10,
};

function feed(c: RetreatController, clock: FakeClock, n: number, is429: boolean, stepMs = 100) {
  const out = [];
  for (let i = 0; i < n; i++) {
    clock.advance(stepMs);
    const t = c.record(is429);
    if (t) out.push(t);
  }
  return out;
}

describe('RetreatController (contract §6.6)', () => {
  it('stays NORMAL below 5 % 429 and retreats ×0.75 at 5 %', () => {
    const clock = new FakeClock();
    const c = new RetreatController(seed, clock);
    feed(c, clock, 96, false);
    expect(feed(c, clock, 4, true)).toEqual([]); // 4/100 = 4 %
    expect(c.state).toBe('normal');
    const [t] = feed(c, clock, 1, true); // 5/101 ≈ 4.95 %? no: still below
    expect(t).toBeUndefined();
    const [t2] = feed(c, clock, 1, true); // 6/102 ≈ 5.9 %
    expect(t2).toMatchObject({ from: 'normal', to: 'retreat', previousRpm: 40, rpm: 30, reason: 'retreat' });
    expect(c.state).toBe('retreat');
  });

  it('retreats again only at ≥ 10 % and never below the 5 RPM floor (40 → 30 → 22.5 → … → 5)', () => {
    const clock = new FakeClock();
    const c = new RetreatController(seed, clock);
    const rates = feed(c, clock, 40, true).map((t) => Math.round(t.rpm * 10) / 10);
    expect(rates).toEqual([30, 22.5, 16.9, 12.7, 9.5, 7.1, 5.3, 5]);
    expect(c.rpm).toBe(5);
    expect(c.state).toBe('retreat');
  });

  it('holds the rate in RETREAT between 5 % and 10 %', () => {
    const clock = new FakeClock();
    const c = new RetreatController(seed, clock);
    feed(c, clock, 1, true); // 100 % → retreat to 30
    expect(c.rpm).toBe(30);
    feed(c, clock, 26, false); // 1/27
    // a second 429 brings the window to 2/28 ≈ 7 %: between the thresholds
    const changes = [...feed(c, clock, 1, true), ...feed(c, clock, 13, false)];
    expect(changes).toEqual([]);
    expect(c.rpm).toBe(30);
  });

  it('recovers after 120 s under 2 %, +2 RPM per response up to the ceiling, then NORMAL', () => {
    const clock = new FakeClock();
    const c = new RetreatController(seed, clock);
    feed(c, clock, 1, true);
    expect(c.rpm).toBe(30);
    // 119 s of clean traffic: still RETREAT (the 429 is in the window until 120 s and the dwell time is short)
    clock.advance(60_000);
    feed(c, clock, 50, false, 1000);
    expect(c.state).toBe('retreat');
    clock.advance(20_000);
    const [start] = feed(c, clock, 1, false);
    expect(start).toMatchObject({ from: 'retreat', to: 'recover', rpm: 32, reason: 'recover_start' });
    const steps = feed(c, clock, 6, false);
    expect(steps.map((t) => t.rpm)).toEqual([34, 36, 38, 40, 40]);
    expect(steps[steps.length - 1]).toMatchObject({ from: 'recover', to: 'normal', reason: 'recovered' });
    expect(c.state).toBe('normal');
  });

  it('goes back to RETREAT when 429s return during RECOVER', () => {
    const clock = new FakeClock();
    const c = new RetreatController(seed, clock);
    feed(c, clock, 1, true);
    clock.advance(121_000);
    feed(c, clock, 1, false);
    expect(c.state).toBe('recover');
    const [t] = feed(c, clock, 1, true); // 1/2 in the 60 s window
    expect(t).toMatchObject({ from: 'recover', to: 'retreat' });
    expect(c.rpm).toBeCloseTo(32 * 0.75);
  });

  it('reset returns to base and NORMAL with an empty window', () => {
    const clock = new FakeClock();
    const c = new RetreatController(seed, clock);
    feed(c, clock, 5, true);
    const t = c.reset();
    expect(t).toMatchObject({ to: 'normal', rpm: 40, reason: 'reset' });
    expect(c.ratio()).toBe(0);
    expect(c.state).toBe('normal');
  });

  it('a new base rate resets to it (contract §6.8)', () => {
    const clock = new FakeClock();
    const c = new RetreatController(seed, clock);
    feed(c, clock, 1, true);
    const t = c.setParams({ ...seed, baseRpm: 60, ceilingRpm: 60 });
    expect(t).toMatchObject({ to: 'normal', rpm: 60, reason: 'rate_changed' });
  });

  it('with a ceiling above the base, climbs past the base only while demand is waiting', () => {
    const clock = new FakeClock();
    const c = new RetreatController({ ...seed, ceilingRpm: 50 }, clock);
    clock.advance(121_000);
    expect(c.record(false, false)).toBeNull();
    expect(c.rpm).toBe(40);
    const t = c.record(false, true);
    expect(t).toMatchObject({ from: 'normal', to: 'recover', rpm: 42 });
    for (let i = 0; i < 10; i++) c.record(false, true);
    expect(c.rpm).toBe(50);
    expect(c.state).toBe('normal');
  });

  it('probe mode multiplies the rate once per probe interval without 429', () => {
    const clock = new FakeClock();
    const c = new RetreatController({ ...seed, ceilingRpm: 100, recoverMode: 'probe' }, clock);
    feed(c, clock, 1, true);
    expect(c.rpm).toBe(30);
    clock.advance(10_000);
    feed(c, clock, 100, false, 10); // window still holds the 429 but the ratio is < 2 %
    expect(c.state).toBe('recover');
    expect(c.rpm).toBeCloseTo(37.5);
    clock.advance(10_000);
    c.record(false);
    expect(c.rpm).toBeCloseTo(46.875);
  });

  it('resumes a learned rate', () => {
    const clock = new FakeClock();
    const c = new RetreatController(seed, clock, { rpm: 12, state: 'retreat' });
    expect(c.rpm).toBe(12);
    expect(c.state).toBe('retreat');
  });
});
