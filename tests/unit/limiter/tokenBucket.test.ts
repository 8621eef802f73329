import { describe, expect, it } from 'vitest';
import { FakeClock } from '../../../electron/core/base/clock.js';
import { TokenBucket } from '../../../electron/core/services/limiter/tokenBucket.js';

describe('TokenBucket (contract §6.4)', () => {
  it('starts full, refills rpm/60 per second and caps at capacity', () => {
    const clock = new FakeClock();
    const b = new TokenBucket(clock, 40, 40);
    expect(b.tokens()).toBe(40);
    for (let i = 0; i < 40; i++) expect(b.tryTake()).toBe(true);
    expect(b.tryTake()).toBe(false);
    expect(b.msUntilToken()).toBeCloseTo(1500); // 40 RPM = one token per 1.5 s
    clock.advance(1500);
    expect(b.tryTake()).toBe(true);
    clock.advance(600_000);
    expect(b.tokens()).toBe(40);
  });

  it('a rate change applies from now on', () => {
    const clock = new FakeClock();
    const b = new TokenBucket(clock, 60, 1);
    b.tryTake();
    b.setRate(6);
    expect(b.msUntilToken()).toBeCloseTo(10_000);
  });

  it('pause (Retry-After) hands out nothing until it ends, then resumes without a burst', () => {
    const clock = new FakeClock();
    const b = new TokenBucket(clock, 60, 40);
    b.pause(30_000);
    expect(b.tryTake()).toBe(false);
    expect(b.msUntilToken()).toBe(30_000);
    clock.advance(30_000);
    expect(b.tryTake()).toBe(true); // the one token kept
    expect(b.tryTake()).toBe(false); // nothing accrued during the pause
    clock.advance(1000);
    expect(b.tryTake()).toBe(true);
  });
});
