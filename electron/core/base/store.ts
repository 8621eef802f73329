import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import type { Database as Db } from 'better-sqlite3';
import { migrations as defaultMigrations, type Migration } from './migrations/index.js';

export type { Migration };
export type SqliteDatabase = Db;

/** The database was written by a newer build: refuse to open it rather than corrupt it. */
export class StoreVersionError extends Error {
  readonly code = 'STORE_TOO_NEW';
  constructor(
    readonly path: string,
    readonly found: number,
    readonly supported: number,
  ) {
    super(
      `The database ${path} has schema version ${found}, newer than this build supports (${supported}). ` +
        'Upgrade the console, or start it with another data dir (--data-dir).',
    );
    this.name = 'StoreVersionError';
  }
}

export interface StoreOptions {
  /** SQLite file path, or ':memory:'. */
  path: string;
  migrations?: readonly Migration[];
  /**
   * Path to a better-sqlite3 native binary. Electron passes its own build (a different ABI) here so
   * the Node build that tests use is never rebuilt over.
   */
  nativeBinding?: string;
}

/**
 * SQLite store (better-sqlite3, WAL). Two connections on one file: `db` with synchronous=FULL for
 * what must not be lost (jobs, locks, admin actions) and `bulk` with synchronous=NORMAL for hot,
 * re-creatable data (metrics samples, logs). Versioned migrations run at open.
 */
export class Store {
  readonly db: Db;
  readonly bulk: Db;
  readonly path: string;
  private closed = false;

  constructor(options: StoreOptions) {
    this.path = options.path;
    if (options.path !== ':memory:') mkdirSync(dirname(options.path), { recursive: true });
    const dbOptions = options.nativeBinding ? { nativeBinding: options.nativeBinding } : {};
    this.db = new Database(options.path, dbOptions);
    try {
      this.db.pragma('journal_mode = WAL');
      this.db.pragma('synchronous = FULL');
      this.db.pragma('foreign_keys = ON');
      this.db.pragma('busy_timeout = 5000');
      this.migrate(options.migrations ?? defaultMigrations);
    } catch (err) {
      this.db.close();
      throw err;
    }
    this.bulk = options.path === ':memory:' ? this.db : new Database(options.path, dbOptions);
    if (this.bulk !== this.db) {
      this.bulk.pragma('synchronous = NORMAL');
      this.bulk.pragma('busy_timeout = 5000');
    }
  }

  /** Schema version after migrations. */
  version(): number {
    const row = this.db.prepare('SELECT MAX(version) AS v FROM schema_version').get() as { v: number | null };
    return row.v ?? 0;
  }

  /** Runs `fn` in one transaction on the durable connection. */
  transaction<T>(fn: () => T): T {
    return this.db.transaction(fn)();
  }

  /** Appends an admin action to the audit log (durable). */
  audit(entry: { actor: string; action: string; target?: string; detail?: unknown; at: number }): void {
    this.db
      .prepare('INSERT INTO audit_log (at, actor, action, target, detail) VALUES (?, ?, ?, ?, ?)')
      .run(entry.at, entry.actor, entry.action, entry.target ?? null, entry.detail === undefined ? null : JSON.stringify(entry.detail));
  }

  recentAudit(limit = 100): Array<{ id: number; at: number; actor: string; action: string; target: string | null; detail: unknown }> {
    const rows = this.db.prepare('SELECT id, at, actor, action, target, detail FROM audit_log ORDER BY id DESC LIMIT ?').all(limit) as Array<{
      id: number;
      at: number;
      actor: string;
      action: string;
      target: string | null;
      detail: string | null;
    }>;
    return rows.map((r) => ({ ...r, detail: r.detail === null ? null : (JSON.parse(r.detail) as unknown) }));
  }

  /** Key-value state worth keeping across restarts (e.g. the limiter's learned rate). */
  getState<T>(key: string): T | undefined {
    const row = this.db.prepare('SELECT value FROM kv_state WHERE key = ?').get(key) as { value: string } | undefined;
    return row ? (JSON.parse(row.value) as T) : undefined;
  }
  setState(key: string, value: unknown, at: number): void {
    this.db
      .prepare('INSERT INTO kv_state (key, value, updated_at) VALUES (?, ?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at')
      .run(key, JSON.stringify(value), at);
  }

  /** Moves the WAL into the main file without blocking writers (a periodic task runs this). */
  checkpoint(): void {
    if (!this.closed) this.db.pragma('wal_checkpoint(PASSIVE)');
  }

  integrityCheck(): string {
    const row = this.db.pragma('integrity_check', { simple: true });
    return String(row);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.bulk !== this.db) this.bulk.close();
    this.db.close();
  }

  private migrate(list: readonly Migration[]): void {
    this.db.exec('CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, id TEXT NOT NULL, applied_at INTEGER NOT NULL)');
    const sorted = [...list].sort((a, b) => a.version - b.version);
    const supported = sorted.length > 0 ? sorted[sorted.length - 1]!.version : 0;
    const applied = new Set((this.db.prepare('SELECT version FROM schema_version').all() as Array<{ version: number }>).map((r) => r.version));
    const newest = Math.max(0, ...applied);
    if (newest > supported) throw new StoreVersionError(this.path, newest, supported);
    for (const m of sorted) {
      if (applied.has(m.version)) continue;
      this.db.transaction(() => {
        m.up(this.db);
        this.db.prepare('INSERT INTO schema_version (version, id, applied_at) VALUES (?, ?, ?)').run(m.version, m.id, Date.now());
      })();
    }
  }
}
