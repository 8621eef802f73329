import type { Migration } from './index.js';

/** The limiter's learned rate per provider, so a restart does not hammer an upstream that just throttled it. */
export const migration0003Limiter: Migration = {
  version: 3,
  id: '0003-limiter',
  up(db) {
    db.exec(`
      CREATE TABLE limiter_learned_rate (
        provider TEXT PRIMARY KEY,
        rpm REAL NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('normal', 'retreat', 'recover')),
        base_rpm REAL NOT NULL,
        updated_at INTEGER NOT NULL
      );
    `);
  },
};
