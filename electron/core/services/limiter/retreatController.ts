import type { Clock } from '../../base/clock.js';

/** Contract §6.6 states (API strings are lower-case; the metric encodes 0/1/2). */
export type RetreatState = 'normal' | 'retreat' | 'recover';
export const RETREAT_STATE_CODE: Readonly<Record<RetreatState, number>> = { normal: 0, retreat: 1, recover: 2 };

/** Parameters of the retreat state machine, in RPM and seconds (contract §6.6 names). */
export interface RetreatParams {
  baseRpm: number;
  /** Recovery never goes above this (the seed: = baseRpm). */
  ceilingRpm: number;
  retreatWindowSeconds: number;
  retreat429Threshold: number;
  retreatFactor: number;
  retreatMinRpm: number;
  recoverWindowSeconds: number;
  recover429Threshold: number;
  recoverIncrementRpm: number;
  /** `step`: the seed's +increment per response once recovering; `probe`: ×probeFactor per probe interval. */
  recoverMode: 'step' | 'probe';
  probeFactor: number;
  probeIntervalSeconds: number;
}

/** One rate or state change, as logged, counted and pushed to the dashboard stream. */
export interface RetreatTransition {
  from: RetreatState;
  to: RetreatState;
  previousRpm: number;
  rpm: number;
  /** 429 ratio of the retreat window when it happened. */
  ratio: number;
  reason: 'retreat' | 'retreat_again' | 'recover_start' | 'recover_step' | 'recovered' | 'probe' | 'reset' | 'rate_changed';
  /** Wall-clock ms. */
  at: number;
}

interface Sample {
  t: number;
  is429: boolean;
}

/** Counts of one sliding window over the shared sample log. */
class WindowCounter {
  head = 0;
  total = 0;
  n429 = 0;
  constructor(public seconds: number) {}
}

/**
 * The NORMAL → RETREAT → RECOVER machine of contract §6.6, driven by upstream responses
 * (event-driven: every response is recorded and then the state is evaluated; no timer).
 * One deviation from the seed: a rate cut needs a fresh 429. The seed evaluated cuts after every
 * response, so while one old 429 kept the window ratio ≥ 10 % each following *success* cut the rate
 * again, and a single 429 after an idle spell collapsed the rate to the floor.
 * Synchronous and lock-free: all state changes happen inside one call, so there is nothing to
 * deadlock on (the seed's two-lock design is the reason for the regression test).
 */
export class RetreatController {
  private samples: Sample[] = [];
  private readonly retreatWin: WindowCounter;
  private readonly recoverWin: WindowCounter;
  private rate: number;
  private current: RetreatState = 'normal';
  private tChange: number;
  private last429 = Number.NEGATIVE_INFINITY;
  /** Probe mode: the rate in effect at the last cut, and when (a remembered upper bound). */
  private lastBadRpm = Number.POSITIVE_INFINITY;
  private lastCutAt = Number.NEGATIVE_INFINITY;
  /** Probe mode: how long the bound is trusted; doubles after each failed probe (max 4 recover windows). */
  private holdMs = 0;

  constructor(
    private params: RetreatParams,
    private readonly clock: Clock,
    initial?: { rpm: number; state: RetreatState },
  ) {
    this.retreatWin = new WindowCounter(params.retreatWindowSeconds);
    this.recoverWin = new WindowCounter(params.recoverWindowSeconds);
    this.rate = params.baseRpm;
    this.tChange = clock.monotonic();
    if (initial && initial.rpm > 0) {
      this.rate = Math.min(Math.max(initial.rpm, this.floor()), this.ceiling());
      this.current = initial.state;
    }
  }

  get rpm(): number {
    return this.rate;
  }
  get state(): RetreatState {
    return this.current;
  }
  get baseRpm(): number {
    return this.params.baseRpm;
  }
  ceiling(): number {
    return Math.max(this.params.ceilingRpm, this.params.baseRpm);
  }
  /**
   * The lowest rate a cut may reach: `retreatMinRpm`, but never above the base. With a base below
   * the configured floor the seed raised the rate *to* the floor on the first cut (above the base,
   * which then could never be recovered from); here the rate holds at the base instead.
   */
  floor(): number {
    return Math.min(this.params.retreatMinRpm, this.params.baseRpm);
  }

  /** 429 ratio inside the retreat window (`recover` = the recover window); 0 when empty. */
  ratio(which: 'retreat' | 'recover' = 'retreat'): number {
    const now = this.clock.monotonic();
    const w = which === 'retreat' ? this.retreatWin : this.recoverWin;
    this.prune(w, now);
    return w.total === 0 ? 0 : w.n429 / w.total;
  }

  /**
   * Records one upstream response and evaluates the machine. `saturated` says whether demand is
   * waiting on the bucket; raising the rate above the base (or probing) needs that evidence.
   */
  record(is429: boolean, saturated = true): RetreatTransition | null {
    const now = this.clock.monotonic();
    this.samples.push({ t: now, is429 });
    for (const w of [this.retreatWin, this.recoverWin]) {
      w.total++;
      if (is429) w.n429++;
    }
    if (is429) this.last429 = now;
    this.compact();
    return this.evaluate(now, is429, saturated);
  }

  private evaluate(now: number, is429: boolean, saturated: boolean): RetreatTransition | null {
    const p = this.params;
    const retreatRatio = this.ratio('retreat');
    const recoverRatio = this.ratio('recover');
    const since = (now - this.tChange) / 1000;
    const from = this.current;
    const before = this.rate;
    const make = (to: RetreatState, reason: RetreatTransition['reason']): RetreatTransition | null => {
      if (to === from && this.rate === before) return null;
      return { from, to, previousRpm: before, rpm: this.rate, ratio: retreatRatio, reason, at: this.clock.now() };
    };
    const floor = this.floor();
    const cut = () => {
      this.lastBadRpm = this.rate;
      this.lastCutAt = now;
      this.rate = Math.max(floor, this.rate * p.retreatFactor);
    };
    const canRaise = this.rate < this.ceiling() && (saturated || this.rate < p.baseRpm);

    // Probe mode reacts to the first 429 (at most one cut per probe interval), not to a window ratio.
    if (p.recoverMode === 'probe' && is429) {
      if (now - this.lastCutAt < p.probeIntervalSeconds * 1000 || this.rate <= floor) return null;
      // Successes inside the retreat window estimate what the provider allows per window.
      const w = this.retreatWin;
      const okPerMinute = ((w.total - w.n429) * 60) / p.retreatWindowSeconds;
      this.lastBadRpm = Math.min(this.rate, Math.max(okPerMinute, floor));
      // A cut soon after the hold ended means the probe above the bound failed: trust the bound longer.
      const base = p.recoverWindowSeconds * 1000;
      const failedProbe = now - this.lastCutAt < this.holdMs + 6 * p.probeIntervalSeconds * 1000;
      this.holdMs = failedProbe ? Math.min(4 * base, Math.max(base, this.holdMs * 2)) : base;
      this.lastCutAt = now;
      this.rate = Math.max(floor, Math.min(this.rate * p.retreatFactor, this.lastBadRpm * 0.95));
      this.enter('retreat', now);
      return make('retreat', from === 'retreat' ? 'retreat_again' : 'retreat');
    }

    switch (this.current) {
      case 'normal':
        if (is429 && retreatRatio >= p.retreat429Threshold) {
          cut();
          this.enter('retreat', now);
          return make('retreat', 'retreat');
        }
        // Above-base recovery (ceiling > base) or a rate learned before a restart.
        if (p.recoverMode === 'probe') {
          const target = canRaise ? this.probeTarget(now) : null;
          if (target === null) return null;
          this.rate = target;
          this.enter(this.rate >= this.ceiling() ? 'normal' : 'recover', now);
          return make(this.current, 'probe');
        }
        if (canRaise && recoverRatio < p.recover429Threshold && since >= p.recoverWindowSeconds) {
          this.raise();
          this.enter(this.rate >= this.ceiling() ? 'normal' : 'recover', now);
          return make(this.current, 'recover_step');
        }
        return null;
      case 'retreat':
        if (retreatRatio >= p.retreat429Threshold * 2) {
          if (is429 && this.rate > floor) {
            cut();
            return make('retreat', 'retreat_again');
          }
          return null;
        }
        // Nothing to climb (a cut held at a base below the floor, or a ceiling lowered meanwhile):
        // once the recovery conditions hold, back to NORMAL instead of staying in RETREAT forever.
        if (this.rate >= this.ceiling() && this.quietFor(now, recoverRatio, since)) {
          this.rate = this.ceiling();
          this.enter('normal', now);
          return make('normal', 'recovered');
        }
        if (p.recoverMode === 'probe') {
          const target = canRaise ? this.probeTarget(now) : null;
          if (target === null) return null;
          this.rate = target;
          this.enter('recover', now);
          return make('recover', 'recover_start');
        }
        if (recoverRatio < p.recover429Threshold && since >= p.recoverWindowSeconds && canRaise) {
          this.raise();
          this.enter('recover', now);
          return make('recover', 'recover_start');
        }
        return null;
      case 'recover':
        if (is429 && retreatRatio >= p.retreat429Threshold) {
          cut();
          this.enter('retreat', now);
          return make('retreat', 'retreat');
        }
        if (this.rate >= this.ceiling()) {
          this.rate = this.ceiling();
          this.enter('normal', now);
          return make('normal', 'recovered');
        }
        if (!canRaise) return null;
        if (p.recoverMode === 'probe') {
          const target = this.probeTarget(now);
          if (target === null) return null;
          this.rate = target;
          this.tChange = now;
          return make('recover', 'probe');
        }
        this.raise();
        return make('recover', 'recover_step');
    }
  }

  /** The recovery conditions: step mode §6.6 (recover-window ratio and time), probe mode one quiet probe interval. */
  private quietFor(now: number, recoverRatio: number, since: number): boolean {
    const p = this.params;
    if (p.recoverMode === 'probe') {
      const intervalMs = p.probeIntervalSeconds * 1000;
      return now - this.last429 >= intervalMs && now - this.tChange >= intervalMs;
    }
    return recoverRatio < p.recover429Threshold && since >= p.recoverWindowSeconds;
  }

  /** Step mode (the seed): +increment up to the ceiling. */
  private raise(): void {
    this.rate = Math.min(this.ceiling(), this.rate + this.params.recoverIncrementRpm);
  }

  /**
   * Probe mode (faster, documented in README): one raise per probe interval without a 429. While
   * the last cut is recent (inside the recover window) the rate jumps straight back to 95 % of the
   * rate that drew it (a remembered upper bound; each 429 there lowers the bound, so it converges
   * from above in a few steps); once that memory expires it grows by `probeFactor` per interval to
   * find new capacity. Returns the new rate, or null to hold.
   */
  private probeTarget(now: number): number | null {
    const p = this.params;
    const intervalMs = p.probeIntervalSeconds * 1000;
    if (now - this.last429 < intervalMs || now - this.tChange < intervalMs) return null;
    if (now - this.lastCutAt < this.holdMs) {
      const target = Math.min(this.ceiling(), this.lastBadRpm * 0.95);
      return this.rate < target - 1e-9 ? target : null;
    }
    const next = Math.min(this.ceiling(), this.rate * p.probeFactor);
    return next > this.rate + 1e-9 ? next : null;
  }

  private enter(state: RetreatState, now: number): void {
    this.current = state;
    this.tChange = now;
  }

  /** Admin reset (contract §6.8): rate = base, NORMAL, window cleared. */
  reset(reason: 'reset' | 'rate_changed' = 'reset'): RetreatTransition {
    const t: RetreatTransition = {
      from: this.current,
      to: 'normal',
      previousRpm: this.rate,
      rpm: this.params.baseRpm,
      ratio: this.ratio('retreat'),
      reason,
      at: this.clock.now(),
    };
    this.rate = this.params.baseRpm;
    this.current = 'normal';
    this.tChange = this.clock.monotonic();
    this.lastBadRpm = Number.POSITIVE_INFINITY;
    this.lastCutAt = Number.NEGATIVE_INFINITY;
    this.holdMs = 0;
    this.samples = [];
    for (const w of [this.retreatWin, this.recoverWin]) {
      w.head = 0;
      w.total = 0;
      w.n429 = 0;
    }
    return t;
  }

  /** Hot update of the parameters; a new base resets to it (contract §6.8 decision). */
  setParams(params: RetreatParams): RetreatTransition | null {
    const baseChanged = params.baseRpm !== this.params.baseRpm;
    this.params = params;
    this.retreatWin.seconds = params.retreatWindowSeconds;
    this.recoverWin.seconds = params.recoverWindowSeconds;
    if (baseChanged) return this.reset('rate_changed');
    if (this.rate > this.ceiling()) this.rate = this.ceiling();
    return null;
  }

  /** Milliseconds since the last 429 (Infinity when none). */
  msSinceLast429(): number {
    return this.clock.monotonic() - this.last429;
  }

  private prune(w: WindowCounter, now: number): void {
    const cutoff = now - w.seconds * 1000;
    while (w.head < this.samples.length && this.samples[w.head]!.t < cutoff) {
      w.total--;
      if (this.samples[w.head]!.is429) w.n429--;
      w.head++;
    }
  }

  private compact(): void {
    const now = this.clock.monotonic();
    this.prune(this.retreatWin, now);
    this.prune(this.recoverWin, now);
    const drop = Math.min(this.retreatWin.head, this.recoverWin.head);
    if (drop > 1024 && drop * 2 > this.samples.length) {
      this.samples = this.samples.slice(drop);
      this.retreatWin.head -= drop;
      this.recoverWin.head -= drop;
    }
  }
}
