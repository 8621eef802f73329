import type { Migration } from './index.js';

/**
 * Monitoring: GPU locks (one row per GPU, kept when free so the fencing token never goes back),
 * task heartbeats, and the lock/timeout history.
 *
 * Times: `*_wall` columns are Unix ms (shown to people); `expires_at` and `last_beat` are on the
 * monitoring's persistent monotonic basis (see `persistentClock.ts`), which survives restarts.
 */
export const migration0004Monitoring: Migration = {
  version: 4,
  id: '0004-monitoring',
  up(db) {
    db.exec(`
      CREATE TABLE gpu_locks (
        gpu_id INTEGER PRIMARY KEY,
        last_token INTEGER NOT NULL DEFAULT 0,
        holder TEXT,
        purpose TEXT,
        task_id TEXT,
        token INTEGER,
        ttl_ms INTEGER,
        acquired_wall INTEGER,
        acquired_at REAL,
        expires_at REAL
      );
      CREATE TABLE task_heartbeats (
        task_id TEXT PRIMARY KEY,
        owner TEXT NOT NULL,
        status TEXT NOT NULL,
        gpu_id INTEGER,
        fencing_token INTEGER,
        timeout_ms INTEGER NOT NULL,
        start_wall INTEGER NOT NULL,
        last_update_wall INTEGER NOT NULL,
        last_beat REAL NOT NULL,
        beats INTEGER NOT NULL DEFAULT 0,
        progress REAL,
        progress_detail TEXT,
        retries INTEGER NOT NULL DEFAULT 0,
        metadata TEXT,
        ended_wall INTEGER,
        end_reason TEXT
      );
      CREATE TABLE monitoring_history (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at_wall INTEGER NOT NULL,
        kind TEXT NOT NULL,
        action TEXT NOT NULL,
        lock_key TEXT,
        task_id TEXT,
        holder TEXT,
        success INTEGER NOT NULL,
        detail TEXT
      );
      CREATE INDEX monitoring_history_kind ON monitoring_history (kind, lock_key, id);
      CREATE TABLE monitoring_clock (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        basis REAL NOT NULL,
        wall INTEGER NOT NULL
      );
    `);
  },
};
