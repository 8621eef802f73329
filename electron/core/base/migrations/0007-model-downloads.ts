import type { Migration } from './index.js';

/** Model downloads (the models service): kept across restarts so an interrupted one resumes. */
export const migration0007ModelDownloads: Migration = {
  version: 7,
  id: '0007-model-downloads',
  up(db) {
    db.exec(`
      CREATE TABLE model_downloads (
        id TEXT PRIMARY KEY,
        uri TEXT NOT NULL,
        name TEXT NOT NULL,
        status TEXT NOT NULL,
        url TEXT NOT NULL,
        bytes_done INTEGER NOT NULL DEFAULT 0,
        bytes_total INTEGER,
        sha256 TEXT,
        attempts INTEGER NOT NULL DEFAULT 0,
        error TEXT,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        finished_at INTEGER
      );
      CREATE INDEX model_downloads_created ON model_downloads (created_at);
    `);
  },
};
