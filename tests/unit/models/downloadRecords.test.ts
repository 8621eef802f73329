import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Store } from '../../../electron/core/base/store.js';
import { DownloadRecords, type DownloadRecord } from '../../../electron/core/services/models/downloadRecords.js';

describe('DownloadRecords (table model_downloads)', () => {
  let dir: string;
  let store: Store;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'downloads-'));
    store = new Store({ path: join(dir, 'console.db') });
  });
  afterEach(() => {
    store.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const record = (id: string, createdAt: number, over: Partial<DownloadRecord> = {}): DownloadRecord => ({
    id,
    uri: `hf:o/r/${id}.gguf`,
    name: id,
    url: `https://example.test/${id}.gguf`,
    status: 'queued',
    bytesDone: 0,
    bytesTotal: null,
    sha256: null,
    attempts: 0,
    error: undefined,
    createdAt,
    updatedAt: createdAt,
    finishedAt: undefined,
    ...over,
  });

  it('puts, updates (uri, name and creation time stay), lists oldest first and removes; survives a reopen', () => {
    const records = new DownloadRecords(store);
    records.put(record('b', 2));
    records.put(record('a', 1));
    records.put(record('a', 99, { uri: 'changed', name: 'changed', status: 'completed', bytesDone: 10, bytesTotal: 10, sha256: 'ab', attempts: 2, error: 'x', updatedAt: 5, finishedAt: 5 }));
    store.close();
    store = new Store({ path: join(dir, 'console.db') });
    const again = new DownloadRecords(store);
    expect(again.list()).toEqual([
      record('a', 1, { status: 'completed', bytesDone: 10, bytesTotal: 10, sha256: 'ab', attempts: 2, error: 'x', updatedAt: 5, finishedAt: 5 }),
      record('b', 2),
    ]);
    again.remove('a');
    expect(again.list().map((r) => r.id)).toEqual(['b']);
  });

  it('keeps the newest finished records only; active ones always stay', () => {
    const records = new DownloadRecords(store);
    records.put(record('old-done', 1, { status: 'completed' }));
    records.put(record('old-failed', 2, { status: 'failed' }));
    records.put(record('active', 3, { status: 'downloading' }));
    records.put(record('new-cancelled', 4, { status: 'cancelled' }));
    records.pruneFinished(2);
    expect(records.list().map((r) => r.id)).toEqual(['old-failed', 'active', 'new-cancelled']);
  });

  it('reads an unknown status as failed', () => {
    const records = new DownloadRecords(store);
    records.put(record('x', 1));
    store.db.prepare("UPDATE model_downloads SET status = 'bogus' WHERE id = 'x'").run();
    expect(records.list()[0]?.status).toBe('failed');
  });
});
