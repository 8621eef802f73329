import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { SystemClock } from '../../../electron/core/base/clock.js';
import { ConfigStore, loadSettings } from '../../../electron/core/base/config.js';
import { AppError } from '../../../electron/core/base/errors.js';
import { Store } from '../../../electron/core/base/store.js';
import { ModelLibrary } from '../../../electron/core/services/models/modelLibrary.js';
import { idProblem } from '../../../electron/core/services/models/paths.js';
import { tinyGguf, writeTinyGguf } from '../../helpers/gguf.js';
import { StoreAuditLog } from '../../../electron/core/base/audit.js';
import { MetricsRegistry } from '../../../electron/core/base/metrics.js';

const BAD_IDS = [
  '..',
  '../escape',
  '../../etc/passwd',
  'a/../../b',
  '%2e%2e',
  '%2E%2E%2Fescape',
  '%252e%252e',
  '/etc/passwd',
  '/tmp/x',
  'C:\\Windows\\x',
  'a\\b',
  '..\\escape',
  'nul\u0000byte',
  '.hidden',
  '',
  'x'.repeat(201),
];

async function rejection(p: Promise<unknown>): Promise<AppError> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(AppError);
    return err as AppError;
  }
  throw new Error('expected a rejection');
}

describe('model ids', () => {
  it.each(BAD_IDS)('refuses %j', (id) => {
    expect(idProblem(id)).toBeTypeOf('string');
  });
  it('refuses the decoded forms of percent-encoded traversal too', () => {
    expect(idProblem(decodeURIComponent('%2e%2e'))).toBeTypeOf('string');
    expect(idProblem(decodeURIComponent('%2e%2e%2fescape'))).toBeTypeOf('string');
  });
  it.each(['Qwen2.5-0.5B-Instruct-Q4_K_M', 'tiny', 'model (1)', 'llama-3.2-1b_instruct+lora'])('accepts %j', (id) => {
    expect(idProblem(id)).toBeUndefined();
  });
});

describe('ModelLibrary', () => {
  let root: string;
  let dataDir: string;
  let modelsDir: string;
  let outside: string;
  let library: ModelLibrary;
  let store: Store;

  beforeEach(async () => {
    root = mkdtempSync(join(tmpdir(), 'models-lib-'));
    dataDir = join(root, 'data');
    outside = join(root, 'outside');
    mkdirSync(outside, { recursive: true });
    const settings = loadSettings({ env: {}, dataDir });
    store = new Store({ path: ':memory:' });
    const clock = new SystemClock();
    library = new ModelLibrary({ config: new ConfigStore(settings), dataDir, clock, logger: pino({ level: 'silent' }), store, metrics: new MetricsRegistry(), audit: new StoreAuditLog(store, clock) });
    await library.start();
    modelsDir = library.dir;
  });
  afterEach(async () => {
    await library.stop();
    store.close();
    rmSync(root, { recursive: true, force: true });
  });

  it('creates DATA_DIR/models and lists a .gguf placed there by file name, with header facts', async () => {
    expect(existsSync(join(dataDir, 'models'))).toBe(true);
    writeTinyGguf(join(modelsDir, 'tiny-chat.gguf'), { contextLength: 2048, name: 'Tiny Chat' });
    writeFileSync(join(modelsDir, 'notes.txt'), 'not a model');
    const list = await library.list();
    expect(list).toHaveLength(1);
    expect(list[0]).toMatchObject({ id: 'tiny-chat', path: join(modelsDir, 'tiny-chat.gguf'), architecture: 'llama', contextLength: 2048, displayName: 'Tiny Chat' });
    expect(list[0]!.error).toBeUndefined();
    expect(list[0]!.sizeBytes).toBe(tinyGguf({ contextLength: 2048, name: 'Tiny Chat' }).length);
    expect(await library.get('tiny-chat')).toEqual(list[0]);
    expect(await library.get('missing')).toBeUndefined();
  });

  it('lists a file that does not parse with the reason, and a truncated one too, without throwing', async () => {
    writeFileSync(join(modelsDir, 'garbage.gguf'), 'this is not a gguf file at all');
    writeFileSync(join(modelsDir, 'empty.gguf'), '');
    const full = tinyGguf({ elements: 4096 });
    writeFileSync(join(modelsDir, 'truncated.gguf'), full.subarray(0, full.length - 100));
    const byId = new Map((await library.list()).map((f) => [f.id, f]));
    expect(byId.get('garbage')?.error).toMatch(/invalid GGUF.*magic/i);
    expect(byId.get('empty')?.error).toMatch(/not a GGUF/);
    expect(byId.get('truncated')?.error).toMatch(/truncated GGUF/);
  });

  it.each(BAD_IDS)('get(%j) rejects with INVALID_REQUEST', async (id) => {
    const err = await rejection(library.get(id));
    expect(err.code).toBe('INVALID_REQUEST');
    expect(err.details?.[0]?.field).toBe('id');
  });

  it.each(BAD_IDS)('deleteFile(%j) rejects and deletes nothing', async (id) => {
    writeTinyGguf(join(outside, 'victim.gguf'));
    writeTinyGguf(join(root, 'escape.gguf'));
    const err = await rejection(library.deleteFile(id, 'admin'));
    expect(err.code).toBe('INVALID_REQUEST');
    expect(existsSync(join(outside, 'victim.gguf'))).toBe(true);
    expect(existsSync(join(root, 'escape.gguf'))).toBe(true);
  });

  it('never follows a symlink out of the models dir', async () => {
    writeTinyGguf(join(outside, 'secret.gguf'));
    symlinkSync(join(outside, 'secret.gguf'), join(modelsDir, 'leak.gguf'));
    symlinkSync(outside, join(modelsDir, 'dirlink'));
    expect((await library.list()).map((f) => f.id)).toEqual([]);
    const err = await rejection(library.get('leak'));
    expect(err.code).toBe('INVALID_REQUEST');
    expect(err.message).toMatch(/outside the models dir/);
    expect((await rejection(library.deleteFile('leak', 'admin'))).code).toBe('INVALID_REQUEST');
    expect(existsSync(join(outside, 'secret.gguf'))).toBe(true);
  });

  it('follows a symlink that stays inside, and deleting it removes only the link', async () => {
    mkdirSync(join(modelsDir, 'store'));
    writeTinyGguf(join(modelsDir, 'store', 'real.gguf'));
    symlinkSync(join(modelsDir, 'store', 'real.gguf'), join(modelsDir, 'alias.gguf'));
    const alias = await library.get('alias');
    expect(alias?.path).toBe(join(modelsDir, 'store', 'real.gguf'));
    await library.deleteFile('alias', 'admin');
    expect(existsSync(join(modelsDir, 'alias.gguf'))).toBe(false);
    expect(existsSync(join(modelsDir, 'store', 'real.gguf'))).toBe(true);
  });

  it('imports a local GGUF atomically under its file name or a given name, and notifies', async () => {
    const src = join(outside, 'My-Model.Q4_K_M.gguf');
    const bytes = writeTinyGguf(src, { seed: 7 });
    let changes = 0;
    const off = library.onChange(() => changes++);
    const imported = await library.importFile(src, undefined, 'admin');
    expect(imported).toMatchObject({ id: 'My-Model.Q4_K_M', path: join(modelsDir, 'My-Model.Q4_K_M.gguf'), architecture: 'llama' });
    expect(readFileSync(imported.path).equals(bytes)).toBe(true);
    await library.importFile(src, 'renamed', 'admin');
    expect((await library.list()).map((f) => f.id)).toEqual(['My-Model.Q4_K_M', 'renamed']);
    expect(changes).toBeGreaterThanOrEqual(2);
    off();
    expect(readdirSync(join(modelsDir, '.downloads'))).toEqual([]);
  });

  it('refuses to import a file that is not a GGUF, leaving nothing behind', async () => {
    const src = join(outside, 'fake.gguf');
    writeFileSync(src, 'GGUF but not really');
    const err = await rejection(library.importFile(src, undefined, 'admin'));
    expect(err.code).toBe('INVALID_REQUEST');
    expect(err.details?.[0]).toMatchObject({ type: 'invalid_gguf', field: 'path' });
    expect(await library.list()).toEqual([]);
    expect(readdirSync(modelsDir).filter((n) => n !== '.downloads')).toEqual([]);
    expect(readdirSync(join(modelsDir, '.downloads'))).toEqual([]);
  });

  it.each(['../escape', '%2e%2e', '/abs/olute', 'a\\b', 'x\u0000y'])('refuses import name %j and writes nothing outside', async (name) => {
    const src = join(outside, 'ok.gguf');
    writeTinyGguf(src);
    const err = await rejection(library.importFile(src, name, 'admin'));
    expect(err.code).toBe('INVALID_REQUEST');
    expect(err.details?.[0]?.field).toBe('name');
    expect(readdirSync(root).sort()).toEqual(['data', 'outside']);
    expect(readdirSync(modelsDir).filter((n) => n !== '.downloads')).toEqual([]);
  });

  it('refuses relative, missing and non-file import paths, and existing names', async () => {
    expect((await rejection(library.importFile('relative/x.gguf', undefined, 'admin'))).details?.[0]?.field).toBe('path');
    expect((await rejection(library.importFile(join(outside, 'missing.gguf'), undefined, 'admin'))).details?.[0]?.description).toBe('no such file');
    expect((await rejection(library.importFile(outside, 'dir', 'admin'))).details?.[0]?.description).toBe('is not a regular file');
    const src = join(outside, 'dup.gguf');
    writeTinyGguf(src);
    await library.importFile(src, undefined, 'admin');
    expect((await rejection(library.importFile(src, undefined, 'admin'))).code).toBe('CONFLICT');
  });

  it('deletes a model file and reports unknown ids as MODEL_NOT_FOUND', async () => {
    writeTinyGguf(join(modelsDir, 'bye.gguf'));
    await library.deleteFile('bye', 'admin');
    expect(await library.list()).toEqual([]);
    expect((await rejection(library.deleteFile('bye', 'admin'))).code).toBe('MODEL_NOT_FOUND');
  });

  it('audits imports and deletions with the actor the caller passes, and nothing that was refused', async () => {
    const src = join(outside, 'audited.gguf');
    writeTinyGguf(src);
    await library.importFile(src, 'kept', 'tray');
    await rejection(library.importFile(src, 'kept', 'admin')); // CONFLICT: not audited
    await library.deleteFile('kept', 'admin');
    await rejection(library.deleteFile('kept', 'admin')); // MODEL_NOT_FOUND: not audited
    expect(store.recentAudit(10)).toEqual([
      expect.objectContaining({ actor: 'admin', action: 'models.delete', target: 'kept', detail: null }),
      expect.objectContaining({ actor: 'tray', action: 'models.import', target: 'kept', detail: { path: src } }),
    ]);
  });

  it('notices files dropped into the dir (fs.watch) and stops watching on stop', async () => {
    const changed = new Promise<void>((resolve) => library.onChange(resolve));
    writeTinyGguf(join(modelsDir, 'dropped.gguf'));
    await changed;
    await library.stop();
    await library.stop();
    let after = 0;
    library.onChange(() => after++);
    writeTinyGguf(join(modelsDir, 'late.gguf'));
    // A fixed wait on purpose: the point is that NO change event comes after stop(), and there is
    // no event to wait for; 400 ms is twice the library's 200 ms change debounce.
    await new Promise((r) => setTimeout(r, 400));
    expect(after).toBe(0);
    await library.start();
    expect((await library.list()).map((f) => f.id)).toEqual(['dropped', 'late']);
  });
});
