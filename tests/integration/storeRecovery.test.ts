import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadSettings } from '../../electron/core/base/config.js';
import { Store, StoreCorruptError } from '../../electron/core/base/store.js';
import { backupStore, listBackups, restoreLastBackup, StoreRestoreError } from '../../electron/core/base/storeBackup.js';
import { spawnServe } from '../helpers/spawnServe.js';
import { startConsole } from '../helpers/startConsole.js';

const dirs: string[] = [];
function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'console-store-'));
  dirs.push(d);
  return d;
}
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** Bytes that are certainly not an SQLite file (no header), as a disk fault or stray write leaves them. */
const GARBAGE = Buffer.from('this is not a database\n'.repeat(400));

describe('damaged console.db', () => {
  const dataDir = tempDir();
  const dbPath = join(dataDir, 'console.db');

  it('a console keeps a backup taken at start, after migrations', async () => {
    const c = await startConsole({ dataDir });
    c.console.store.setState('hardening.marker', { written: 'before the damage' }, Date.now());
    await c.close();
    // The next start backs up the store holding the marker.
    const c2 = await startConsole({ dataDir });
    expect(c2.console.store.getState('hardening.marker')).toEqual({ written: 'before the damage' });
    await c2.close();
    expect(listBackups(join(dataDir, 'backups')).length).toBeGreaterThanOrEqual(2);
  });

  it('garbage in console.db stops start-up with a clear error naming the file and the restore option; nothing is changed', async () => {
    writeFileSync(dbPath, GARBAGE);
    for (const s of ['-wal', '-shm']) rmSync(`${dbPath}${s}`, { force: true });
    const err = await startConsole({ dataDir }).then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(StoreCorruptError);
    const message = (err as Error).message;
    expect(message).toContain(dbPath);
    expect(message).toContain('file is not a database');
    expect(message).toContain('--restore-last-backup');
    expect(message).toContain('CONSOLE_RESTORE_BACKUP=1');
    expect(readFileSync(dbPath).equals(GARBAGE)).toBe(true);
    expect(readdirSync(dataDir).filter((n) => n.includes('corrupt'))).toEqual([]);
  });

  it('`npm run serve` prints that message (no stack trace) and exits 2', async () => {
    const p = spawnServe(['--data-dir', dataDir, '--port', '0', '--grpc-port', '0']);
    expect(await p.exited).toBe(2);
    expect(p.stderr()).toContain(`The database ${dbPath} is damaged`);
    expect(p.stderr()).toContain('--restore-last-backup');
    expect(p.stderr()).not.toMatch(/\n\s+at /);
    expect(readFileSync(dbPath).equals(GARBAGE)).toBe(true);
  }, 60_000);

  it('with CONSOLE_RESTORE_BACKUP=1 it moves the damaged file aside and starts from the newest good backup', async () => {
    const c = await startConsole({ dataDir, env: { CONSOLE_RESTORE_BACKUP: '1' } });
    try {
      expect(c.console.store.getState('hardening.marker')).toEqual({ written: 'before the damage' });
      const aside = readdirSync(dataDir).filter((n) => /^console\.db\.corrupt-/.test(n) && !/-(wal|shm)$/.test(n));
      expect(aside).toHaveLength(1);
      expect(readFileSync(join(dataDir, aside[0]!)).equals(GARBAGE)).toBe(true);
      expect(c.logs.some((l) => l.includes('started from the last good backup'))).toBe(true);
    } finally {
      await c.close();
    }
  });
});

describe('the restore option', () => {
  it('is off by default, on with --restore-last-backup or CONSOLE_RESTORE_BACKUP=1', () => {
    const dataDir = tempDir();
    expect(loadSettings({ dataDir, env: {} }).restoreLastBackup).toBe(false);
    expect(loadSettings({ dataDir, env: {}, argv: ['--restore-last-backup'] }).restoreLastBackup).toBe(true);
    expect(loadSettings({ dataDir, env: { CONSOLE_RESTORE_BACKUP: '1' } }).restoreLastBackup).toBe(true);
    expect(loadSettings({ dataDir, env: { CONSOLE_RESTORE_BACKUP: '0' } }).restoreLastBackup).toBe(false);
  });

  it('a healthy store ignores it (nothing moved, nothing restored)', async () => {
    const c = await startConsole({ env: { CONSOLE_RESTORE_BACKUP: '1' } });
    try {
      expect(readdirSync(c.dataDir).filter((n) => n.includes('corrupt'))).toEqual([]);
    } finally {
      await c.close();
    }
  });
});

describe('rolling backups', () => {
  it('keep the newest N and restore skips copies that fail the integrity check', async () => {
    const dir = tempDir();
    const backups = join(dir, 'backups');
    const store = new Store({ path: join(dir, 'console.db') });
    const made: string[] = [];
    try {
      for (let i = 0; i < 5; i++) {
        store.setState('n', i, 1000 + i);
        made.push(await backupStore(store.db, backups, 3, Date.UTC(2026, 0, 1, 0, 0, i)));
      }
    } finally {
      store.close();
    }
    const kept = listBackups(backups).map((b) => b.path);
    expect(kept).toEqual([made[4], made[3], made[2]]);
    expect(readdirSync(backups).filter((n) => n.endsWith('.tmp'))).toEqual([]);

    // The newest copy is damaged: the restore takes the one before it.
    writeFileSync(made[4]!, GARBAGE);
    writeFileSync(join(dir, 'console.db'), GARBAGE);
    const result = restoreLastBackup(join(dir, 'console.db'), backups, Date.now());
    expect(result.restoredFrom).toBe(made[3]);
    expect(result.skipped.map((s) => s.path)).toEqual([made[4]]);
    expect(existsSync(result.movedAside)).toBe(true);
    const restored = new Store({ path: join(dir, 'console.db') });
    try {
      expect(restored.getState('n')).toBe(3);
    } finally {
      restored.close();
    }
  });

  it('two backups in the same millisecond never overwrite each other', async () => {
    const dir = tempDir();
    const store = new Store({ path: join(dir, 'console.db') });
    try {
      const a = await backupStore(store.db, join(dir, 'b'), 5, 42);
      const b = await backupStore(store.db, join(dir, 'b'), 5, 42);
      expect(a).not.toBe(b);
      expect(listBackups(join(dir, 'b')).map((x) => x.path)).toEqual([b, a]);
    } finally {
      store.close();
    }
  });

  it('without a good backup the restore refuses and changes nothing', () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'console.db'), GARBAGE);
    expect(() => restoreLastBackup(join(dir, 'console.db'), join(dir, 'backups'), Date.now())).toThrow(StoreRestoreError);
    expect(readdirSync(dir)).toEqual(['console.db']);
  });

  it('backups are off with ops.storeBackup.keep = 0', async () => {
    const c = await startConsole({ config: { ops: { storeBackup: { keep: 0 } } } });
    try {
      expect(c.console.periodic.get('store-backup')).toBeUndefined();
      expect(existsSync(join(c.dataDir, 'backups'))).toBe(false);
    } finally {
      await c.close();
    }
  });
});
