import type { Database } from 'better-sqlite3';
import { migration0001Core } from './0001-core.js';
import { migration0003Limiter } from './0003-limiter.js';
import { migration0004Monitoring } from './0004-monitoring.js';
import { migration0005Runtime } from './0005-runtime.js';
import { migration0006Training } from './0006-training.js';
import { migration0007ModelDownloads } from './0007-model-downloads.js';

/**
 * A numbered, append-only schema change. Never edit a released migration; add the next number.
 * Reserved numbers: 2 engine, 3 limiter, 4 monitoring, 5 runtime, 6 training, 7 models.
 */
export interface Migration {
  version: number;
  /** Stable id, e.g. `0001-core`. */
  id: string;
  up(db: Database): void;
}

export const migrations: readonly Migration[] = [
  migration0001Core,
  migration0003Limiter,
  migration0004Monitoring,
  migration0005Runtime,
  migration0006Training,
  migration0007ModelDownloads,
];
