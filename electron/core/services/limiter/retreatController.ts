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
      this.rate = Math.min(Math.max(initial.rpm, params.retreatMinRpm), this.ceiling());
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
    const cut = () => (this.rate = Math.max(p.retreatMinRpm, this.rate * p.retreatFactor));
    const canRaise = this.rate < this.ceiling() && (saturated || this.rate < p.baseRpm);

    switch (this.current) {
      case 'normal':
        if (is429 && retreatRatio >= p.retreat429Threshold) {
          cut();
          this.enter('retreat', now);
          return make('retreat', 'retreat');
        }
        // Above-base recovery (ceiling > base) or a rate learned before a restart.
        if (canRaise && recoverRatio < p.recover429Threshold && since >= this.raiseWaitSeconds()) {
          this.raise();
          this.enter(this.rate >= this.ceiling() ? 'normal' : 'recover', now);
          return make(this.current, p.recoverMode === 'probe' ? 'probe' : 'recover_step');
        }
        return null;
      case 'retreat':
        if (retreatRatio >= p.retreat429Threshold * 2) {
          if (is429 && this.rate > p.retreatMinRpm) {
            cut();
            return make('retreat', 'retreat_again');
          }
          return null;
        }
        if (recoverRatio < p.recover429Threshold && since >= this.raiseWaitSeconds() && canRaise) {
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
        if (p.recoverMode === 'probe' && (now - this.tChange) / 1000 < p.probeIntervalSeconds) return null;
        this.raise();
        if (p.recoverMode === 'probe') this.tChange = now;
        return make('recover', p.recoverMode === 'probe' ? 'probe' : 'recover_step');
    }
  }

  /** Seconds of calm needed before the first raise: the recover window (step) or one probe interval after the last 429 (probe). */
  private raiseWaitSeconds(): number {
    return this.params.recoverMode === 'probe' ? this.params.probeIntervalSeconds : this.params.recoverWindowSeconds;
  }

  private raise(): void {
    const p = this.params;
    const next = p.recoverMode === 'probe' ? this.rate * p.probeFactor : this.rate + p.recoverIncrementRpm;
    this.rate = Math.min(this.ceiling(), next);
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
