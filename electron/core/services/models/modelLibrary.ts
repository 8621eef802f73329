import { randomUUID } from 'node:crypto';
import { watch, type FSWatcher } from 'node:fs';
import { copyFile, link, lstat, mkdir, readdir, readFile, realpath, rename, stat, unlink } from 'node:fs/promises';
import { basename, isAbsolute, join, resolve } from 'node:path';
import type { Logger } from 'pino';
import type { Dispatcher } from 'undici';
import { Value } from '@sinclair/typebox/value';
import { Catalog, type DownloadView } from '../../../../shared/contracts/models.js';
import type { Clock, TimerHandle } from '../../base/clock.js';
import type { ConfigStore } from '../../base/config.js';
import { AppError, ErrorCode } from '../../base/errors.js';
import { BaseService } from '../../base/lifecycle.js';
import { ADAPTERS_DIR, type AdapterSidecar } from '../../base/adapters.js';
import type { MetricsRegistry } from '../../base/metrics.js';
import { packageRoot, packageVersion } from '../../base/packageInfo.js';
import type { Store } from '../../base/store.js';
import type { AuditPort, LocalAdapterFile, LocalModelFile, ModelFilesPort } from '../../base/ports.js';
import { ModelDownloads } from './downloads.js';
import { inspectGguf, type GgufSummary } from './gguf.js';
import { GGUF_EXT, assertSafeId, idProblem, isInside, modelPathFor, resolveModelPath } from './paths.js';

export interface ModelLibraryOptions {
  config: ConfigStore;
  /** The console's data dir; models live in `<dataDir>/models` unless `engine.library.modelsDir` says otherwise. */
  dataDir: string;
  clock: Clock;
  logger: Logger;
  /** Download records are kept here (table `model_downloads`). */
  store: Store;
  metrics: MetricsRegistry;
  /** Imports, deletions and downloads are recorded here (with the actor the surface passes in). */
  audit: AuditPort;
  /** HTTP dispatcher for downloads (tests); default: an undici Agent that follows redirects. */
  dispatcher?: Dispatcher;
  /** The catalog of recommended models; default `resources/model-catalog.json`. */
  catalogPath?: string;
}

/** Hidden folder inside the models dir for partial downloads and import staging (never listed). */
export const STAGING_DIR = '.downloads';

interface CacheEntry {
  size: number;
  mtimeMs: number;
  summary: Promise<GgufSummary>;
}

/**
 * The model library: GGUF files in the models dir. Implements the engine's read port
 * (`ModelFilesPort`), imports local files (staged, checked as GGUF, then published atomically)
 * and deletes files. Every id and path from outside goes through `paths.ts`: nothing reads or
 * writes outside the models dir.
 */
export class ModelLibrary extends BaseService implements ModelFilesPort {
  readonly name = 'models';
  private realDir: string | undefined;
  private readonly listeners = new Set<() => void>();
  private readonly cache = new Map<string, CacheEntry>();
  private watcher: FSWatcher | undefined;
  private notifyTimer: TimerHandle | undefined;
  private catalogCache: Catalog | undefined;
  /** Downloads into this library (`hf:` URIs and https URLs). */
  readonly downloads: ModelDownloads;

  constructor(private readonly options: ModelLibraryOptions) {
    super();
    this.downloads = new ModelDownloads({
      host: this,
      store: options.store,
      config: options.config,
      clock: options.clock,
      logger: options.logger,
      metrics: options.metrics,
      audit: options.audit,
      dispatcher: options.dispatcher,
      userAgent: `gpu-console/${packageVersion()} (model library)`,
    });
  }

  /** The configured models dir (absolute, not yet resolved through symlinks). */
  configuredDir(): string {
    const configured = this.options.config.get().engine.library.modelsDir;
    return configured ? resolve(this.options.dataDir, configured) : join(this.options.dataDir, 'models');
  }

  /** The models dir with symlinks resolved (after start). */
  get dir(): string {
    if (!this.realDir) throw new AppError(ErrorCode.UNAVAILABLE, 'The model library is not started');
    return this.realDir;
  }

  /** Where partial downloads and import copies are staged (inside the models dir, never listed). */
  get stagingDir(): string {
    return join(this.dir, STAGING_DIR);
  }

  protected async onStart(): Promise<void> {
    const dir = this.configuredDir();
    await mkdir(dir, { recursive: true });
    this.realDir = await realpath(dir);
    await mkdir(this.stagingDir, { recursive: true });
    await this.removeStaleImports();
    await this.downloads.start();
    this.disposables.defer(() => this.downloads.stop());
    try {
      const watcher = watch(this.realDir, { persistent: false }, (_event, file) => {
        if (file === null || String(file).endsWith(GGUF_EXT)) this.scheduleNotify();
      });
      watcher.on('error', (err) => {
        this.options.logger.warn({ err }, 'models dir watcher failed; changes made outside the console are seen on the next list');
        watcher.close();
      });
      this.watcher = watcher;
      this.disposables.defer(() => {
        watcher.close();
        this.watcher = undefined;
      });
    } catch (err) {
      this.options.logger.warn({ err }, 'cannot watch the models dir; changes made outside the console are seen on the next list');
    }
    this.disposables.defer(() => {
      this.notifyTimer?.cancel();
      this.notifyTimer = undefined;
    });
    this.options.logger.info({ dir: this.realDir }, 'model library ready');
  }

  // --- ModelFilesPort ---

  /** LoRA adapters published by training (`adapters/<name>.gguf` with a `<name>.json` sidecar naming the base). */
  async adapters(): Promise<LocalAdapterFile[]> {
    const dir = join(this.dir, ADAPTERS_DIR);
    let names: string[];
    try {
      names = await readdir(dir);
    } catch {
      return [];
    }
    const out: LocalAdapterFile[] = [];
    for (const file of names) {
      if (!file.endsWith(GGUF_EXT)) continue;
      const name = file.slice(0, -GGUF_EXT.length);
      if (idProblem(name) !== undefined) continue;
      try {
        const sidecar = JSON.parse(await readFile(join(dir, `${name}.json`), 'utf8')) as AdapterSidecar;
        if (typeof sidecar.base !== 'string' || idProblem(sidecar.base) !== undefined) continue;
        const info = await stat(join(dir, file));
        out.push({ name, base: sidecar.base, path: join(dir, file), sizeBytes: info.size, modifiedAt: info.mtimeMs, lineage: { ...sidecar } });
      } catch (err) {
        this.options.logger.debug({ err, file }, 'skipping an adapter without a readable sidecar');
      }
    }
    return out.sort((a, b) => a.name.localeCompare(b.name));
  }

  async list(): Promise<LocalModelFile[]> {
    const dir = this.dir;
    const entries = await readdir(dir, { withFileTypes: true });
    const out: LocalModelFile[] = [];
    const seen = new Set<string>();
    for (const entry of entries) {
      if (!entry.name.endsWith(GGUF_EXT)) continue;
      const id = entry.name.slice(0, -GGUF_EXT.length);
      if (idProblem(id) !== undefined) {
        this.options.logger.debug({ file: entry.name }, 'skipping a file whose name is not a safe model id');
        continue;
      }
      try {
        const file = await this.describe(id);
        if (file) {
          out.push(file);
          seen.add(file.path);
        }
      } catch (err) {
        if (err instanceof AppError) this.options.logger.warn({ file: entry.name, reason: err.message }, 'skipping model file');
        else throw err;
      }
    }
    for (const key of this.cache.keys()) if (!seen.has(key)) this.cache.delete(key);
    return out.sort((a, b) => a.id.localeCompare(b.id));
  }

  async get(id: string): Promise<LocalModelFile | undefined> {
    assertSafeId(id);
    return this.describe(id);
  }

  onChange(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Cheap and synchronous: downloads queued or running, with progress (the dashboard's live stream). */
  snapshot(): DownloadView[] {
    return this.downloads.snapshot();
  }

  /** The recommended models (`resources/model-catalog.json`), validated once and cached. */
  async catalog(): Promise<Catalog> {
    if (this.catalogCache) return this.catalogCache;
    const path = this.options.catalogPath ?? join(packageRoot(), 'resources', 'model-catalog.json');
    let parsed: unknown;
    try {
      parsed = JSON.parse(await readFile(path, 'utf8'));
    } catch (err) {
      throw new AppError(ErrorCode.INTERNAL_ERROR, `Cannot read the model catalog ${path}: ${(err as Error).message}`, { cause: err });
    }
    if (!Value.Check(Catalog, parsed)) {
      const first = [...Value.Errors(Catalog, parsed)][0];
      throw new AppError(ErrorCode.INTERNAL_ERROR, `The model catalog ${path} is invalid at ${first?.path ?? '/'}: ${first?.message ?? 'unknown'}`);
    }
    this.catalogCache = parsed;
    return parsed;
  }

  // --- writes ---

  /**
   * Copies a local GGUF file into the models dir. The copy is staged in the hidden staging dir,
   * checked as GGUF, then published under `<name>.gguf` with a no-clobber link, so a half copy or
   * a bad file never becomes visible. `sourcePath` must be absolute (it is an admin's local file).
   * Audited as `actor`.
   */
  async importFile(sourcePath: string, name: string | undefined, actor: string): Promise<LocalModelFile> {
    if (sourcePath.includes('\u0000') || !isAbsolute(sourcePath)) {
      throw new AppError(ErrorCode.INVALID_REQUEST, 'Invalid import path', {
        details: [{ type: 'invalid_path', field: 'path', description: 'must be an absolute path without NUL characters' }],
      });
    }
    let id: string;
    if (name !== undefined) {
      assertSafeId(name, 'name');
      id = name;
    } else {
      const base = basename(sourcePath);
      id = base.toLowerCase().endsWith(GGUF_EXT) ? base.slice(0, -GGUF_EXT.length) : base;
      const problem = idProblem(id);
      if (problem) {
        throw new AppError(ErrorCode.INVALID_REQUEST, `The file name cannot be used as a model id (${problem}); pass "name"`, {
          details: [{ type: 'invalid_model_id', field: 'name', description: `derived name '${id}' ${problem}` }],
        });
      }
    }
    let info;
    try {
      info = await stat(sourcePath);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      throw new AppError(ErrorCode.INVALID_REQUEST, `Cannot read ${sourcePath}: ${code ?? 'error'}`, {
        details: [{ type: 'invalid_path', field: 'path', description: code === 'ENOENT' ? 'no such file' : `cannot be read (${code ?? 'error'})` }],
      });
    }
    if (!info.isFile()) {
      throw new AppError(ErrorCode.INVALID_REQUEST, `${sourcePath} is not a regular file`, {
        details: [{ type: 'invalid_path', field: 'path', description: 'is not a regular file' }],
      });
    }
    await this.assertFree(id, 'name');
    const busy = this.downloads.writing(id);
    if (busy) {
      throw new AppError(ErrorCode.CONFLICT, `Download ${busy} is about to create '${id}'; cancel it or pick another name`, {
        details: [{ type: 'already_exists', field: 'name', description: `download ${busy} is writing ${id}${GGUF_EXT}` }],
      });
    }
    const staged = join(this.stagingDir, `import-${randomUUID()}.tmp`);
    try {
      await copyFile(sourcePath, staged);
      const summary = await inspectGguf(staged);
      if (summary.error) {
        throw new AppError(ErrorCode.INVALID_REQUEST, `${sourcePath} is not a usable GGUF file: ${summary.error}`, {
          details: [{ type: 'invalid_gguf', field: 'path', description: summary.error }],
        });
      }
      await this.publish(staged, id, 'name');
    } finally {
      await unlink(staged).catch(() => undefined);
    }
    this.options.logger.info({ id, source: sourcePath }, 'model imported');
    this.notify();
    const file = await this.describe(id);
    if (!file) throw new AppError(ErrorCode.INTERNAL_ERROR, `Imported model '${id}' vanished`);
    this.options.audit.record({ actor, action: 'models.import', target: file.id, detail: { path: sourcePath } });
    return file;
  }

  /** Deletes a model file (a symlink entry is removed, never its target); audited as `actor`. */
  async deleteFile(id: string, actor: string): Promise<void> {
    assertSafeId(id);
    const resolved = await resolveModelPath(this.dir, id);
    if (!resolved) throw this.notFound(id);
    await unlink(resolved.linkPath);
    this.cache.delete(resolved.realPath);
    this.options.logger.info({ id }, 'model deleted');
    this.options.audit.record({ actor, action: 'models.delete', target: id });
    this.notify();
  }

  /**
   * Makes a fully written, verified staged file visible as `<id>.gguf`. Never overwrites an
   * existing model (409). Used by import and downloads.
   */
  async publish(stagedPath: string, id: string, field = 'name'): Promise<string> {
    const dest = modelPathFor(this.dir, id);
    try {
      await link(stagedPath, dest);
      await unlink(stagedPath);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'EEXIST') throw this.conflict(id, field);
      if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'EXDEV' && code !== 'ENOSYS') throw err;
      // File systems without hard links: check, then rename (a tiny race with another writer).
      if (await exists(dest)) throw this.conflict(id, field);
      await rename(stagedPath, dest);
    }
    return dest;
  }

  /** 409 when a model named `id` already exists. */
  async assertFree(id: string, field = 'name'): Promise<void> {
    if (await exists(modelPathFor(this.dir, id))) throw this.conflict(id, field);
  }

  /** Tells listeners the set of model files changed. */
  notify(): void {
    this.notifyTimer?.cancel();
    this.notifyTimer = undefined;
    for (const listener of [...this.listeners]) {
      try {
        listener();
      } catch (err) {
        this.options.logger.warn({ err }, 'model change listener failed');
      }
    }
  }

  // --- internals ---

  private scheduleNotify(): void {
    if (!this.running || this.notifyTimer) return;
    this.notifyTimer = this.options.clock.setTimeout(() => {
      this.notifyTimer = undefined;
      this.notify();
    }, 200);
  }

  private async describe(id: string): Promise<LocalModelFile | undefined> {
    const resolved = await resolveModelPath(this.dir, id);
    if (!resolved) return undefined;
    let info;
    try {
      info = await stat(resolved.realPath);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined; // removed meanwhile
      throw err;
    }
    if (!info.isFile()) return undefined;
    let entry = this.cache.get(resolved.realPath);
    if (!entry || entry.size !== info.size || entry.mtimeMs !== info.mtimeMs) {
      entry = { size: info.size, mtimeMs: info.mtimeMs, summary: inspectGguf(resolved.realPath) };
      this.cache.set(resolved.realPath, entry);
    }
    const summary = await entry.summary;
    return {
      id,
      path: resolved.realPath,
      sizeBytes: info.size,
      modifiedAt: Math.round(info.mtimeMs),
      ...(summary.architecture !== undefined ? { architecture: summary.architecture } : {}),
      ...(summary.contextLength !== undefined ? { contextLength: summary.contextLength } : {}),
      ...(summary.name !== undefined ? { displayName: summary.name } : {}),
      ...(summary.error !== undefined ? { error: summary.error } : {}),
    };
  }

  private notFound(id: string): AppError {
    return new AppError(ErrorCode.MODEL_NOT_FOUND, `Model file '${id}' not found in the models dir`, {
      details: [{ type: 'model_not_found', field: 'id', description: `no file ${id}${GGUF_EXT}` }],
    });
  }

  private conflict(id: string, field: string): AppError {
    return new AppError(ErrorCode.CONFLICT, `A model named '${id}' already exists; delete it first or pick another name`, {
      details: [{ type: 'already_exists', field, description: `${id}${GGUF_EXT} already exists` }],
    });
  }

  private async removeStaleImports(): Promise<void> {
    const dir = this.stagingDir;
    for (const name of await readdir(dir)) {
      if (!name.startsWith('import-') || !name.endsWith('.tmp')) continue;
      const path = join(dir, name);
      if (isInside(dir, path)) await unlink(path).catch(() => undefined);
    }
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await lstat(path);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  }
}
