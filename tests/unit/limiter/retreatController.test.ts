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

function feed(c: RetreatController, clock: FakeClock, n: number, is429: boolean, stepMs = 100, saturated = true) {
  const out = [];
  for (let i = 0; i < n; i++) {
    clock.advance(stepMs);
    const t = c.record(is429, saturated);
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

  it('a base below retreat_min_rpm: a cut never raises the rate above the base, and it recovers to NORMAL', () => {
    const clock = new FakeClock();
    const c = new RetreatController({ ...seed, baseRpm: 3, ceilingRpm: 3 }, clock);
    const [t] = feed(c, clock, 1, true);
    expect(t).toMatchObject({ from: 'normal', to: 'retreat', previousRpm: 3, rpm: 3 });
    expect(c.rpm).toBe(3); // the seed jumped to the 5 RPM floor here, above the base
    feed(c, clock, 20, true, 1000);
    expect(c.rpm).toBe(3);
    // 120 s+ of clean responses: back to the base and NORMAL (it used to stay in RETREAT forever).
    clock.advance(120_000);
    feed(c, clock, 200, false, 1000);
    expect(c.state).toBe('normal');
    expect(c.rpm).toBe(3);
  });

  it('probe mode with a base below retreat_min_rpm stays at the base and NORMAL', () => {
    const clock = new FakeClock();
    const c = new RetreatController({ ...seed, baseRpm: 3, ceilingRpm: 3, recoverMode: 'probe' }, clock);
    feed(c, clock, 5, true, 1000);
    feed(c, clock, 200, false, 1000);
    expect(c.state).toBe('normal');
    expect(c.rpm).toBe(3);
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

  it('probe mode: cuts at the first 429, returns to 95 % of the bound, then probes ×factor once the hold ends', () => {
    const clock = new FakeClock();
    const c = new RetreatController({ ...seed, ceilingRpm: 100, recoverMode: 'probe' }, clock);
    feed(c, clock, 59, false, 1000, false); // demand below the rate: no probing yet
    const [cut] = feed(c, clock, 1, true, 1000); // 1/60 ≈ 1.7 %: below the step-mode threshold, but probe mode reacts
    expect(cut).toMatchObject({ from: 'normal', to: 'retreat', previousRpm: 40, rpm: 30 });
    expect(feed(c, clock, 1, true, 1000)).toEqual([]); // one cut per probe interval
    feed(c, clock, 9, false, 1000);
    expect(c.state).toBe('retreat');
    const [back] = feed(c, clock, 2, false, 1000);
    expect(back).toMatchObject({ to: 'recover', rpm: 38 }); // 95 % of the bound (40)
    feed(c, clock, 130, false, 1000); // the hold (one recover window after the cut) runs out...
    expect(c.rpm).toBeGreaterThan(38); // ...then ×1.25 per 10 s while demand waits
    const before = c.rpm;
    feed(c, clock, 10, false, 1000);
    expect(c.rpm).toBeCloseTo(Math.min(100, before * 1.25));
  });

  it('probe mode: the bound comes from the successes seen in the window', () => {
    const clock = new FakeClock();
    const c = new RetreatController({ ...seed, baseRpm: 100, ceilingRpm: 100, recoverMode: 'probe' }, clock);
    feed(c, clock, 24, false, 2500); // 24 successes in the last 60 s
    const [cut] = feed(c, clock, 1, true, 100);
    expect(cut?.rpm).toBeCloseTo(24 * 0.95); // not 75: the provider allowed ~24 per minute
  });

  it('resumes a learned rate', () => {
    const clock = new FakeClock();
    const c = new RetreatController(seed, clock, { rpm: 12, state: 'retreat' });
    expect(c.rpm).toBe(12);
    expect(c.state).toBe('retreat');
  });
});
