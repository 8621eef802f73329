import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { FakeClock } from '../../../electron/core/base/clock.js';
import { ConfigStore, loadSettings } from '../../../electron/core/base/config.js';
import { Store } from '../../../electron/core/base/store.js';
import { ModelLibrary } from '../../../electron/core/services/models/modelLibrary.js';
import type { DownloadView } from '../../../shared/contracts/models.js';
import { FakeHf } from '../../helpers/fakeHf.js';
import { tinyGguf } from '../../helpers/gguf.js';
import { StoreAuditLog } from '../../../electron/core/base/audit.js';
import { MetricsRegistry } from '../../../electron/core/base/metrics.js';

/** Waits for I/O (not for time: the clock is fake) until `ok` holds. */
async function until(ok: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 20_000; i++) {
    if (ok()) return;
    await new Promise((r) => setImmediate(r));
  }
  throw new Error(`never happened: ${what}`);
}

describe('download retries run on the injected clock', () => {
  const hf = new FakeHf();
  let root: string;
  let clock: FakeClock;
  let store: Store;
  let library: ModelLibrary;

  beforeAll(async () => {
    await hf.start();
  });
  afterAll(async () => {
    await hf.close();
  });
  afterEach(async () => {
    await library.stop();
    store.close();
    rmSync(root, { recursive: true, force: true });
  });

  async function open(retries: number): Promise<void> {
    root = mkdtempSync(join(tmpdir(), 'models-dl-unit-'));
    clock = new FakeClock();
    const settings = loadSettings({ env: {}, dataDir: root, overrides: { engine: { library: { hfEndpoint: hf.url, downloadRetries: retries } } } });
    store = new Store({ path: join(root, 'console.db') });
    library = new ModelLibrary({ config: new ConfigStore(settings), dataDir: root, clock, logger: pino({ level: 'silent' }), store, metrics: new MetricsRegistry(), audit: new StoreAuditLog(store, clock) });
    await library.start();
  }
  const fileRequests = (repo: string) => hf.requests.filter((r) => r.url.startsWith(`/cdn/${repo}/`)).length;
  const current = (id: string): DownloadView => library.downloads.get(id);

  it('backs off 250 ms (clock time) after a 503, then resumes and completes', async () => {
    await open(3);
    hf.addRepo('unit/flaky', [{ path: 'flaky.gguf', bytes: tinyGguf({ elements: 1024 }), failTimes: 1 }]);
    const view = await library.downloads.create({ uri: 'hf:unit/flaky' }, 'admin');
    await until(() => current(view.id).error !== undefined, 'first failure');
    expect(current(view.id)).toMatchObject({ status: 'downloading', attempts: 1 });
    expect(current(view.id).error).toMatch(/HTTP 503.*retrying in 250 ms/);
    expect(fileRequests('unit/flaky')).toBe(1);
    clock.advance(249);
    // A fixed wait on purpose: the retry must NOT start 1 ms early, and there is no event to wait
    // for; 20 ms gives a wrongly scheduled retry the time to reach the fake hub.
    await new Promise((r) => setTimeout(r, 20));
    expect(fileRequests('unit/flaky')).toBe(1);
    clock.advance(1);
    await until(() => current(view.id).status === 'completed', 'completion');
    expect(current(view.id)).toMatchObject({ attempts: 2, progress: 1 });
    expect(current(view.id).error).toBeUndefined();
    expect(existsSync(join(library.dir, 'flaky.gguf'))).toBe(true);
  });

  it('gives up after the configured retries without progress and leaves no file', async () => {
    await open(1);
    hf.addRepo('unit/down', [{ path: 'down.gguf', bytes: tinyGguf(), failTimes: 100 }]);
    const view = await library.downloads.create({ uri: 'hf:unit/down' }, 'admin');
    await until(() => current(view.id).error !== undefined, 'first failure');
    clock.advance(250);
    await until(() => current(view.id).status === 'failed', 'failure');
    expect(current(view.id)).toMatchObject({ attempts: 2 });
    expect(current(view.id).error).toMatch(/HTTP 503/);
    expect(readdirSync(join(library.dir, '.downloads'))).toEqual([]);
    expect(existsSync(join(library.dir, 'down.gguf'))).toBe(false);
  });

  it('does not retry a 404; the request and the cancel are audited', async () => {
    await open(5);
    hf.addRepo('unit/gone', [{ path: 'gone.gguf', bytes: tinyGguf(), failTimes: 1, failStatus: 404 }]);
    const view = await library.downloads.create({ uri: 'hf:unit/gone' }, 'admin');
    await until(() => current(view.id).status === 'failed', 'failure');
    expect(current(view.id)).toMatchObject({ attempts: 1 });
    expect(current(view.id).error).toMatch(/HTTP 404/);
    // removing the failed record from the history is audited like any cancel, with the caller as actor
    await library.downloads.cancel(view.id, 'tray');
    expect(store.recentAudit(10)).toEqual([
      expect.objectContaining({ actor: 'tray', action: 'models.download.cancel', target: 'gone', detail: { id: view.id, status: 'failed' } }),
      expect.objectContaining({ actor: 'admin', action: 'models.download', target: 'gone', detail: { id: view.id, uri: 'hf:unit/gone' } }),
    ]);
  });

  it('stop() during a backoff cancels its timer and keeps the download queued for the next start', async () => {
    await open(3);
    hf.addRepo('unit/later', [{ path: 'later.gguf', bytes: tinyGguf(), failTimes: 1 }]);
    const view = await library.downloads.create({ uri: 'hf:unit/later' }, 'admin');
    await until(() => current(view.id).error !== undefined, 'first failure');
    expect(clock.pendingTimers()).toBeGreaterThan(0);
    await library.stop();
    expect(clock.pendingTimers()).toBe(0);
    const row = store.db.prepare('SELECT status FROM model_downloads WHERE id = ?').get(view.id) as { status: string };
    expect(row.status).toBe('queued');
    await library.start();
    await until(() => current(view.id).status === 'completed', 'completion after restart');
  });

  it('keeps only the newest 200 finished records across restarts', async () => {
    await open(0);
    await library.stop();
    const insert = store.db.prepare(
      `INSERT INTO model_downloads (id, uri, name, status, url, bytes_done, created_at, updated_at) VALUES (?, 'hf:a/b', 'm', 'completed', 'http://x', 0, ?, ?)`,
    );
    for (let i = 0; i < 205; i++) insert.run(`dl-old-${i}`, i, i);
    await library.start();
    const ids = library.downloads.list().map((d) => d.id);
    expect(ids).toHaveLength(200);
    expect(ids).not.toContain('dl-old-0');
    expect(ids).toContain('dl-old-204');
  });
});
