import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { StoreAuditLog } from '../../../electron/core/base/audit.js';
import { FakeClock } from '../../../electron/core/base/clock.js';
import { ConfigStore, loadSettings } from '../../../electron/core/base/config.js';
import { ConfigAdmin } from '../../../electron/core/base/configAdmin.js';
import { AppError } from '../../../electron/core/base/errors.js';
import { Store } from '../../../electron/core/base/store.js';

describe('ConfigAdmin: config changes applied and audited in one place', () => {
  let dir: string;
  let store: Store;
  let clock: FakeClock;
  let config: ConfigStore;
  let admin: ConfigAdmin;

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'config-admin-'));
    store = new Store({ path: ':memory:' });
    clock = new FakeClock(Date.UTC(2026, 0, 2));
    config = new ConfigStore(loadSettings({ env: {}, dataDir: dir }));
    admin = new ConfigAdmin(config, new StoreAuditLog(store, clock));
  });
  afterEach(() => {
    store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('patch and replace apply, write config.json and audit the body with secrets masked, as the given actor at clock time', () => {
    admin.patch({ ops: { logLevel: 'debug' }, engine: { library: { hfToken: 'hf_secretvalue' } } }, 'admin');
    expect(config.get().ops.logLevel).toBe('debug');
    clock.advance(1000);
    admin.replace({ ops: { logLevel: 'warn' } }, 'tray');
    expect(config.get().ops.logLevel).toBe('warn');
    expect(JSON.parse(readFileSync(config.path, 'utf8'))).toEqual({ ops: { logLevel: 'warn' } });
    expect(store.recentAudit(10)).toEqual([
      { id: 2, at: Date.UTC(2026, 0, 2) + 1000, actor: 'tray', action: 'config.replace', target: null, detail: { ops: { logLevel: 'warn' } } },
      { id: 1, at: Date.UTC(2026, 0, 2), actor: 'admin', action: 'config.patch', target: null, detail: { ops: { logLevel: 'debug' }, engine: { library: { hfToken: 'hf_s****' } } } },
    ]);
  });

  it('an invalid change rejects with every bad field, changes nothing and is not audited', () => {
    const before = config.get();
    let err: unknown;
    try {
      admin.patch({ ops: { logLevel: 'loud' }, server: { port: -1 } }, 'admin');
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(AppError);
    expect((err as AppError).code).toBe('INVALID_REQUEST');
    const fields = (err as AppError).details?.map((d) => d.field) ?? [];
    expect(fields).toEqual(expect.arrayContaining(['ops.logLevel', 'server.port']));
    expect(config.get()).toBe(before);
    expect(store.recentAudit(10)).toEqual([]);
  });

  it('reload re-reads config.json and is audited without detail; a broken file is refused and not audited', () => {
    writeFileSync(config.path, JSON.stringify({ ops: { logLevel: 'error' } }));
    admin.reload('admin');
    expect(config.get().ops.logLevel).toBe('error');
    writeFileSync(config.path, '{ not json');
    expect(() => admin.reload('admin')).toThrow(AppError);
    expect(config.get().ops.logLevel).toBe('error');
    expect(store.recentAudit(10)).toMatchObject([{ actor: 'admin', action: 'config.reload', target: null, detail: null }]);
    expect(store.recentAudit(10)).toHaveLength(1);
  });
});
