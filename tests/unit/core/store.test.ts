import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Store, StoreVersionError } from '../../../electron/core/base/store.js';
import { migrations } from '../../../electron/core/base/migrations/index.js';

describe('Store', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'console-store-'));
  });
  afterEach(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  it('migrates an empty file to the latest version, in WAL mode', () => {
    const store = new Store({ path: join(dir, 'a.db') });
    expect(store.version()).toBe(Math.max(...migrations.map((m) => m.version)));
    expect(store.db.pragma('journal_mode', { simple: true })).toBe('wal');
    expect(store.db.pragma('synchronous', { simple: true })).toBe(2); // FULL
    expect(store.bulk.pragma('synchronous', { simple: true })).toBe(1); // NORMAL
    store.close();
  });

  it('re-opens without re-running migrations and keeps data', () => {
    const path = join(dir, 'b.db');
    const first = new Store({ path });
    first.setState('k', { a: 1 }, 1000);
    first.audit({ actor: 'admin', action: 'test', at: 1000 });
    first.close();
    const again = new Store({ path });
    expect(again.getState('k')).toEqual({ a: 1 });
    expect(again.recentAudit().map((a) => a.action)).toEqual(['test']);
    const applied = again.db.prepare('SELECT COUNT(*) AS n FROM schema_version').get() as { n: number };
    expect(applied.n).toBe(migrations.length);
    expect(again.integrityCheck()).toBe('ok');
    again.close();
  });

  it('refuses a database written by a newer version, without touching it', () => {
    const path = join(dir, 'c.db');
    const store = new Store({ path });
    store.db.prepare("INSERT INTO schema_version (version, id, applied_at) VALUES (999, '0999-future', 0)").run();
    store.close();
    expect(() => new Store({ path })).toThrow(StoreVersionError);
    const reopened = new Store({ path, migrations: [...migrations, { version: 999, id: '0999-future', up: () => undefined }] });
    expect(reopened.version()).toBe(999);
    reopened.close();
  });

  it('rolls a failed transaction back', () => {
    const store = new Store({ path: join(dir, 'd.db') });
    expect(() =>
      store.transaction(() => {
        store.setState('x', 1, 0);
        throw new Error('fail');
      }),
    ).toThrow('fail');
    expect(store.getState('x')).toBeUndefined();
    store.close();
  });
});
