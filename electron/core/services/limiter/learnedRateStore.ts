import type { SqliteDatabase } from '../../base/store.js';
import type { RetreatState } from './retreatController.js';

/** A provider's rate as last learned by the retreat machine. */
export interface LearnedRate {
  rpm: number;
  state: RetreatState;
  /** The base it was learned under; a different base (config change) discards it. */
  baseRpm: number;
}

/** Where the learned rate per provider survives a restart (table `limiter_learned_rate`, migration 0003). */
export interface LearnedRateStore {
  load(provider: string): LearnedRate | undefined;
  save(provider: string, rate: LearnedRate, at: number): void;
}

export class SqliteLearnedRateStore implements LearnedRateStore {
  constructor(private readonly db: SqliteDatabase) {}

  load(provider: string): LearnedRate | undefined {
    const row = this.db.prepare('SELECT rpm, state, base_rpm FROM limiter_learned_rate WHERE provider = ?').get(provider) as
      | { rpm: number; state: RetreatState; base_rpm: number }
      | undefined;
    return row ? { rpm: row.rpm, state: row.state, baseRpm: row.base_rpm } : undefined;
  }

  save(provider: string, rate: LearnedRate, at: number): void {
    this.db
      .prepare(
        `INSERT INTO limiter_learned_rate (provider, rpm, state, base_rpm, updated_at) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT(provider) DO UPDATE SET rpm = excluded.rpm, state = excluded.state, base_rpm = excluded.base_rpm, updated_at = excluded.updated_at`,
      )
      .run(provider, rate.rpm, rate.state, rate.baseRpm, at);
  }
}

/** In-memory store (benchmarks and unit tests). */
export class MemoryLearnedRateStore implements LearnedRateStore {
  private readonly rates = new Map<string, LearnedRate>();
  load(provider: string): LearnedRate | undefined {
    return this.rates.get(provider);
  }
  save(provider: string, rate: LearnedRate, _at?: number): void {
    this.rates.set(provider, rate);
  }
}
