import { existsSync, mkdirSync, readdirSync, renameSync, rmSync, copyFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import Database from 'better-sqlite3';
import type { Database as Db } from 'better-sqlite3';

/** File names of rolling backups: `console-<UTC yyyymmddThhmmssmmm>Z[-n].db`, newest sorts last. */
const BACKUP_NAME = /^console-(\d{8}T\d{9})Z(?:-(\d+))?\.db$/;

/** A backup file on disk. */
export interface BackupFile {
  path: string;
  name: string;
}

function stamp(at: number): string {
  return new Date(at).toISOString().replace(/[-:.]/g, '').replace(/Z$/, '');
}

/** Rolling backups in `dir`, newest first. */
export function listBackups(dir: string): BackupFile[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .map((name) => ({ name, m: BACKUP_NAME.exec(name) }))
    .filter((x): x is { name: string; m: RegExpExecArray } => x.m !== null)
    .sort((a, b) => (a.m[1] === b.m[1] ? Number(b.m[2] ?? 0) - Number(a.m[2] ?? 0) : a.m[1]! < b.m[1]! ? 1 : -1))
    .map(({ name }) => ({ name, path: join(dir, name) }));
}

/**
 * Writes one consistent copy of the open database with SQLite's online backup (readers and writers
 * keep going), then removes the oldest copies beyond `keep`. The copy is written to a temp name and
 * renamed, so a crash mid-backup never leaves a half file that looks like a backup.
 */
export async function backupStore(db: Db, dir: string, keep: number, at: number): Promise<string> {
  mkdirSync(dir, { recursive: true });
  const base = `console-${stamp(at)}Z`;
  let name = `${base}.db`;
  for (let n = 1; existsSync(join(dir, name)); n++) name = `${base}-${n}.db`;
  const tmp = join(dir, `.${name}.tmp`);
  try {
    await db.backup(tmp);
    renameSync(tmp, join(dir, name));
  } finally {
    rmSync(tmp, { force: true });
  }
  for (const old of listBackups(dir).slice(Math.max(1, keep))) rmSync(old.path, { force: true });
  return join(dir, name);
}

/** `ok`, or what SQLite's `PRAGMA integrity_check` (or opening the file) says is wrong. */
export function checkDatabaseFile(path: string, nativeBinding?: string): string {
  let db: Db | undefined;
  try {
    db = new Database(path, { readonly: true, fileMustExist: true, ...(nativeBinding ? { nativeBinding } : {}) });
    const rows = db.pragma('integrity_check') as Array<{ integrity_check: string }>;
    const text = rows.map((r) => r.integrity_check).join('; ');
    return text === '' ? 'no result' : text;
  } catch (err) {
    return (err as Error).message;
  } finally {
    db?.close();
  }
}

/** No backup could be restored: start-up stops (exit code 2) and nothing else is touched. */
export class StoreRestoreError extends Error {
  readonly code = 'STORE_RESTORE_FAILED';
  constructor(message: string) {
    super(message);
    this.name = 'StoreRestoreError';
  }
}

export interface RestoreResult {
  /** Where the damaged file (and its -wal/-shm) now lies. */
  movedAside: string;
  /** The backup copied into place. */
  restoredFrom: string;
  /** Backups skipped because they failed the integrity check, with why. */
  skipped: Array<{ path: string; problem: string }>;
}

/**
 * Replaces a damaged database with the newest backup that passes `PRAGMA integrity_check`. The
 * damaged file is renamed to `<db>.corrupt-<stamp>` (never deleted), its WAL and shared-memory files
 * with it, so a stale WAL is never replayed onto the restored copy.
 */
export function restoreLastBackup(dbPath: string, dir: string, at: number, nativeBinding?: string): RestoreResult {
  const skipped: RestoreResult['skipped'] = [];
  let chosen: BackupFile | undefined;
  for (const b of listBackups(dir)) {
    const problem = checkDatabaseFile(b.path, nativeBinding);
    if (problem === 'ok') {
      chosen = b;
      break;
    }
    skipped.push({ path: b.path, problem });
  }
  if (!chosen) {
    const why = skipped.length > 0 ? ` (${skipped.length} found, none passes the integrity check: ${skipped.map((s) => `${basename(s.path)}: ${s.problem}`).join('; ')})` : ' (none found)';
    throw new StoreRestoreError(
      `Cannot restore ${dbPath}: no good backup in ${dir}${why}. Nothing was changed. ` +
        `To start with an empty store, move ${dbPath} aside yourself (jobs, locks and other stored state start empty).`,
    );
  }
  const aside = `${dbPath}.corrupt-${stamp(at)}Z`;
  if (existsSync(dbPath)) renameSync(dbPath, aside);
  for (const suffix of ['-wal', '-shm']) {
    if (existsSync(`${dbPath}${suffix}`)) renameSync(`${dbPath}${suffix}`, `${aside}${suffix}`);
  }
  const tmp = `${dbPath}.restore.tmp`;
  copyFileSync(chosen.path, tmp);
  renameSync(tmp, dbPath);
  return { movedAside: aside, restoredFrom: chosen.path, skipped };
}
