import type { Migration } from './index.js';

/**
 * Training jobs (durable: written on the synchronous=FULL connection), their log lines and loss
 * points (hot data: written on the bulk connection). Timestamps are Unix ms.
 */
export const migration0006Training: Migration = {
  version: 6,
  id: '0006-training',
  up(db) {
    db.exec(`
      CREATE TABLE training_jobs (
        id TEXT PRIMARY KEY,
        status TEXT NOT NULL,
        backend TEXT NOT NULL,
        base_model TEXT NOT NULL,
        output_dir TEXT NOT NULL,
        dataset_path TEXT NOT NULL,
        request TEXT NOT NULL,
        plan TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        started_at INTEGER,
        completed_at INTEGER,
        error TEXT,
        progress TEXT,
        result TEXT
      );
      CREATE INDEX training_jobs_status ON training_jobs (status, created_at);
      CREATE INDEX training_jobs_created ON training_jobs (created_at);
      CREATE TABLE training_logs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        job_id TEXT NOT NULL,
        at INTEGER NOT NULL,
        level TEXT NOT NULL,
        message TEXT NOT NULL
      );
      CREATE INDEX training_logs_job ON training_logs (job_id, id);
      CREATE TABLE training_loss (
        job_id TEXT NOT NULL,
        kind TEXT NOT NULL,
        step INTEGER NOT NULL,
        epoch INTEGER NOT NULL,
        loss REAL NOT NULL,
        accuracy REAL,
        at INTEGER NOT NULL,
        PRIMARY KEY (job_id, kind, step)
      );
    `);
  },
};
