import type { Migration } from './index.js';

/** Audit log of admin actions and a small key-value table for state worth keeping across restarts. */
export const migration0001Core: Migration = {
  version: 1,
  id: '0001-core',
  up(db) {
    db.exec(`
      CREATE TABLE audit_log (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at INTEGER NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        target TEXT,
        detail TEXT
      );
      CREATE INDEX audit_log_at ON audit_log (at);
      CREATE TABLE kv_state (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL,
        updated_at INTEGER NOT NULL
      );
    `);
  },
};
