import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import type { Database as Db } from 'better-sqlite3';
import { migrations as defaultMigrations, type Migration } from './migrations/index.js';
import { listBackups } from './storeBackup.js';

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

/** The start-up flag and env variable that restore the newest good backup over a damaged store. */
export const RESTORE_FLAG = '--restore-last-backup';
export const RESTORE_ENV = 'CONSOLE_RESTORE_BACKUP=1';

/**
 * The database file is damaged (not a database, or corrupt pages): start-up stops with this message,
 * which names the file, what SQLite said, and how to start from the last good backup. Nothing is
 * changed on disk.
 */
export class StoreCorruptError extends Error {
  readonly code = 'STORE_CORRUPT';
  constructor(
    readonly path: string,
    readonly problem: string,
    readonly backupDir: string | undefined,
  ) {
    const backups = backupDir ? listBackups(backupDir) : [];
    const hint =
      backups.length > 0
        ? `Start with ${RESTORE_FLAG} (or env ${RESTORE_ENV}) to move it aside (it is kept, never deleted) and start from the newest good backup in ${backupDir} (${backups.length} found, newest ${backups[0]!.name}).`
        : `No backup was found${backupDir ? ` in ${backupDir}` : ''}, so ${RESTORE_FLAG} (env ${RESTORE_ENV}) cannot help; move the file aside to start with an empty store, or restore a copy of it yourself.`;
    super(`The database ${path} is damaged (${problem}). Nothing was changed. ${hint}`);
    this.name = 'StoreCorruptError';
  }
}

/** SQLite's answer for a file that is not a database or has corrupt pages. */
export function isCorruptionError(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && (code === 'SQLITE_NOTADB' || code.startsWith('SQLITE_CORRUPT'));
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
  /** Where rolling backups live; named in the message of a StoreCorruptError. */
  backupDir?: string;
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
      if (isCorruptionError(err)) throw new StoreCorruptError(options.path, (err as Error).message, options.backupDir);
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
