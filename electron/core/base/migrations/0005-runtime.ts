import type { Migration } from './index.js';

/**
 * Processes the runtime supervisor has spawned and not yet seen exit. A row left over after the
 * console dies (kill -9, crash) lets the next run recognise the process as an orphan: the pid
 * plus the kernel's start time of that pid tell it apart from an unrelated process that reused
 * the pid.
 */
export const migration0005Runtime: Migration = {
  version: 5,
  id: '0005-runtime',
  up(db) {
    db.exec(`
      CREATE TABLE runtime_processes (
        name TEXT PRIMARY KEY,
        pid INTEGER NOT NULL,
        proc_start TEXT,
        started_at INTEGER NOT NULL,
        console_pid INTEGER NOT NULL,
        run_id TEXT,
        mode TEXT,
        command TEXT NOT NULL
      );
    `);
  },
};
