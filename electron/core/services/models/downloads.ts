import { createHash, randomUUID } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { readdir, stat, statfs, truncate, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { Logger } from 'pino';
import { Agent, interceptors, request, type Dispatcher } from 'undici';
import type { DownloadStatus, DownloadView } from '../../../../shared/contracts/models.js';
import type { Clock } from '../../base/clock.js';
import type { ConfigStore } from '../../base/config.js';
import { AppError, ErrorCode, type ErrorDetail } from '../../base/errors.js';
import type { MetricsRegistry } from '../../base/metrics.js';
import type { AuditPort } from '../../base/ports.js';
import type { Store } from '../../base/store.js';
import { DownloadMetrics } from './downloadMetrics.js';
import { DownloadRecords, type DownloadRecord } from './downloadRecords.js';
import { inspectGguf } from './gguf.js';
import { parseModelUri, resolveModelUri, type ModelUri } from './modelUri.js';
import { GGUF_EXT, idProblem } from './paths.js';

/** What downloads need from the library that owns them. */
export interface DownloadHost {
  readonly stagingDir: string;
  assertFree(id: string, field?: string): Promise<void>;
  publish(stagedPath: string, id: string, field?: string): Promise<string>;
  notify(): void;
}

export interface ModelDownloadsOptions {
  host: DownloadHost;
  store: Store;
  config: ConfigStore;
  clock: Clock;
  logger: Logger;
  metrics: MetricsRegistry;
  /** Requests and cancellations are recorded here (with the actor the surface passes in). */
  audit: AuditPort;
  userAgent: string;
  /** HTTP dispatcher (tests may inject one); default: an undici Agent that follows redirects. */
  dispatcher?: Dispatcher;
}

export interface DownloadRequestInput {
  uri: string;
  name?: string;
  sha256?: string;
}

const ACTIVE: ReadonlySet<DownloadStatus> = new Set(['queued', 'downloading', 'verifying']);
const EMIT_EVERY_MS = 250;
const PERSIST_EVERY_MS = 2000;
const SPEED_WINDOW_MS = 5000;
/** Finished download records kept across restarts. */
const HISTORY_LIMIT = 200;

/** A download in memory: its record plus the running transfer's state. */
interface Job extends DownloadRecord {
  abort: AbortController | undefined;
  running: Promise<void> | undefined;
  cancelRequested: boolean;
  samples: Array<[t: number, bytes: number]>;
  lastEmit: number;
  lastPersist: number;
}

/** A transfer problem; `retriable` ones are retried with an HTTP Range resume. */
class TransferError extends Error {
  constructor(
    message: string,
    readonly retriable: boolean,
  ) {
    super(message);
    this.name = 'TransferError';
  }
}

function iso(ms: number): string {
  return new Date(ms).toISOString();
}

function errText(err: unknown): string {
  if (err instanceof AppError || err instanceof TransferError) return err.message;
  const e = err as { message?: string; code?: string };
  return e.code ? `${e.message ?? 'error'} (${e.code})` : (e.message ?? String(err));
}

async function fileSize(path: string): Promise<number> {
  try {
    return (await stat(path)).size;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return 0;
    throw err;
  }
}

async function sha256File(path: string, signal: AbortSignal): Promise<string> {
  const hash = createHash('sha256');
  await pipeline(createReadStream(path, { highWaterMark: 1 << 20 }), hash, { signal });
  return hash.digest('hex');
}

/**
 * Downloads of `hf:` URIs and https URLs into the models dir: queued (bounded concurrency),
 * streamed to `<models>/.downloads/<id>.partial` (never visible as a model), resumed with HTTP
 * Range after a dropped connection or a restart, size- and sha256-checked, GGUF-checked, then
 * published atomically. A failed or cancelled download leaves no file behind. Records live in the
 * store (table `model_downloads`).
 */
export class ModelDownloads {
  private readonly jobs = new Map<string, Job>();
  private readonly listeners = new Set<(view: DownloadView) => void>();
  private dispatcher: Dispatcher | undefined;
  private ownsDispatcher = false;
  private stopping = false;
  private started = false;
  private active = 0;
  private readonly metrics: DownloadMetrics;
  private readonly records: DownloadRecords;

  constructor(private readonly options: ModelDownloadsOptions) {
    this.records = new DownloadRecords(options.store);
    const jobs = this.jobs;
    this.metrics = new DownloadMetrics(options.metrics, { active: () => [...jobs.values()].filter((j) => ACTIVE.has(j.status)).length });
  }

  // --- lifecycle (driven by the library) ---

  async start(): Promise<void> {
    if (this.started) return;
    this.started = true;
    this.stopping = false;
    if (this.options.dispatcher) {
      this.dispatcher = this.options.dispatcher;
    } else {
      this.dispatcher = new Agent({ connections: 8 }).compose(interceptors.redirect({ maxRedirections: 5 }));
      this.ownsDispatcher = true;
    }
    this.jobs.clear();
    // Keep the history bounded: the newest finished records only.
    this.records.pruneFinished(HISTORY_LIMIT);
    for (const record of this.records.list()) {
      const job = this.fromRecord(record);
      if (ACTIVE.has(job.status)) {
        // Interrupted by a stop or a crash: resume from what the partial file holds.
        job.status = 'queued';
        job.bytesDone = await fileSize(this.partialPath(job.id));
        this.persist(job);
      }
      this.jobs.set(job.id, job);
    }
    await this.removeOrphanPartials();
    this.pump();
  }

  /** Aborts running transfers but keeps their partial files and records, so the next start resumes them. */
  async stop(): Promise<void> {
    if (!this.started) return;
    this.stopping = true;
    const running = [...this.jobs.values()].filter((j) => j.running);
    for (const job of running) job.abort?.abort(new Error('shutdown'));
    await Promise.allSettled(running.map((j) => j.running));
    if (this.ownsDispatcher && this.dispatcher) await this.dispatcher.close();
    this.dispatcher = undefined;
    this.ownsDispatcher = false;
    this.started = false;
  }

  // --- API ---

  /**
   * Validates a request (every bad field listed), resolves the URI (Hugging Face API for `hf:`),
   * checks the target name is free, and queues the download. Audited as `actor`.
   */
  async create(input: DownloadRequestInput, actor: string): Promise<DownloadView> {
    this.assertStarted();
    const details: ErrorDetail[] = [];
    let parsed: ModelUri | undefined;
    try {
      parsed = parseModelUri(input.uri);
    } catch (err) {
      if (err instanceof AppError && err.details) details.push(...err.details);
      else throw err;
    }
    if (input.name !== undefined) {
      const problem = idProblem(input.name);
      if (problem) details.push({ type: 'invalid_model_id', field: 'name', description: problem });
    }
    if (input.sha256 !== undefined && !/^[0-9a-fA-F]{64}$/.test(input.sha256)) details.push({ type: 'validation', field: 'sha256', description: 'must be 64 hex characters' });
    if (details.length > 0 || !parsed) throw new AppError(ErrorCode.INVALID_REQUEST, 'Invalid download request', { details });

    const lib = this.options.config.get().engine.library;
    const source = await resolveModelUri(parsed, {
      endpoint: lib.hfEndpoint,
      token: lib.hfToken || undefined,
      dispatcher: this.dispatcher!,
      userAgent: this.options.userAgent,
    });
    const given = input.sha256?.toLowerCase();
    if (given && source.sha256 && given !== source.sha256) {
      throw new AppError(ErrorCode.INVALID_REQUEST, `sha256 does not match the repo's published sha256 ${source.sha256}`, {
        details: [{ type: 'sha256_mismatch', field: 'sha256', description: `the repo publishes ${source.sha256}` }],
      });
    }
    const name = input.name ?? (source.fileName.toLowerCase().endsWith(GGUF_EXT) ? source.fileName.slice(0, -GGUF_EXT.length) : source.fileName);
    const problem = idProblem(name);
    if (problem) {
      throw new AppError(ErrorCode.INVALID_REQUEST, `The remote file name '${source.fileName}' cannot be a model id (${problem}); pass "name"`, {
        details: [{ type: 'invalid_model_id', field: 'name', description: `derived name ${problem}` }],
      });
    }
    await this.options.host.assertFree(name, 'name');
    if (source.sizeBytes !== undefined) await this.assertSpace(source.sizeBytes);
    // Checked last, with no await before the insert below, so two requests cannot both pass it.
    const busy = this.writing(name);
    if (busy) {
      throw new AppError(ErrorCode.CONFLICT, `A download of '${name}' is already in progress (${busy})`, {
        details: [{ type: 'already_exists', field: 'name', description: `download ${busy} is writing ${name}${GGUF_EXT}` }],
      });
    }

    const now = this.options.clock.now();
    const job = this.fromRecord({
      id: `dl-${randomUUID()}`,
      uri: input.uri,
      name,
      url: source.url,
      status: 'queued',
      bytesDone: 0,
      bytesTotal: source.sizeBytes ?? null,
      sha256: given ?? source.sha256 ?? null,
      attempts: 0,
      error: undefined,
      createdAt: now,
      updatedAt: now,
      finishedAt: undefined,
    });
    this.jobs.set(job.id, job);
    this.persist(job);
    this.options.logger.info({ id: job.id, uri: job.uri, name, url: job.url }, 'download queued');
    this.options.audit.record({ actor, action: 'models.download', target: name, detail: { id: job.id, uri: job.uri } });
    this.emit(job);
    this.pump();
    return this.view(job);
  }

  /** The id of the active download that will create model `name`, if any. */
  writing(name: string): string | undefined {
    for (const job of this.jobs.values()) if (job.name === name && ACTIVE.has(job.status)) return job.id;
    return undefined;
  }

  list(): DownloadView[] {
    return [...this.jobs.values()].sort((a, b) => b.createdAt - a.createdAt).map((j) => this.view(j));
  }

  get(id: string): DownloadView {
    return this.view(this.find(id));
  }

  /** Cheap, synchronous: downloads queued or running, with progress (for the dashboard stream). */
  snapshot(): DownloadView[] {
    return [...this.jobs.values()].filter((j) => ACTIVE.has(j.status)).map((j) => this.view(j));
  }

  /**
   * Cancels an active download (its partial file is removed) and returns it; on a finished one,
   * removes the record from the history and returns it as it was. Audited as `actor`.
   */
  async cancel(id: string, actor: string): Promise<DownloadView> {
    const job = this.find(id);
    if (!ACTIVE.has(job.status)) {
      this.jobs.delete(id);
      this.records.remove(id);
      return this.audited(this.view(job), actor);
    }
    job.cancelRequested = true;
    if (job.running) {
      job.abort?.abort(new Error('cancelled'));
      await job.running.catch(() => undefined);
    } else {
      await unlink(this.partialPath(job.id)).catch(() => undefined);
      this.finish(job, 'cancelled');
    }
    return this.audited(this.view(job), actor);
  }

  private audited(view: DownloadView, actor: string): DownloadView {
    this.options.audit.record({ actor, action: 'models.download.cancel', target: view.name, detail: { id: view.id, status: view.status } });
    return view;
  }

  /** Progress and state changes; returns the unsubscribe function. */
  onEvent(listener: (view: DownloadView) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  // --- the transfer ---

  private pump(): void {
    if (!this.started || this.stopping) return;
    const max = this.options.config.get().engine.library.maxConcurrentDownloads;
    const queued = [...this.jobs.values()].filter((j) => j.status === 'queued' && !j.running).sort((a, b) => a.createdAt - b.createdAt);
    for (const job of queued) {
      if (this.active >= max) break;
      this.active++;
      job.running = this.run(job).finally(() => {
        this.active--;
        job.running = undefined;
        this.pump();
      });
    }
  }

  private async run(job: Job): Promise<void> {
    const abort = new AbortController();
    job.abort = abort;
    const { signal } = abort;
    const partial = this.partialPath(job.id);
    this.setStatus(job, 'downloading');
    try {
      let failures = 0;
      for (;;) {
        const before = job.bytesDone;
        job.attempts++;
        try {
          await this.transfer(job, partial, signal);
          break;
        } catch (err) {
          if (signal.aborted) throw err;
          if (!(err instanceof TransferError) || !err.retriable) throw err;
          failures = job.bytesDone > before ? 1 : failures + 1;
          if (failures > this.options.config.get().engine.library.downloadRetries) throw err;
          const delay = Math.min(10_000, 250 * 2 ** (failures - 1));
          job.error = `${err.message}; retrying in ${delay} ms`;
          this.options.logger.warn({ id: job.id, err: err.message, bytesDone: job.bytesDone, delay }, 'download interrupted; resuming');
          this.emit(job, true);
          await this.sleep(delay, signal);
        }
      }
      job.error = undefined;
      this.setStatus(job, 'verifying');
      await this.verify(job, partial, signal);
      await this.options.host.publish(partial, job.name, 'name');
      this.finish(job, 'completed');
      this.options.logger.info({ id: job.id, name: job.name, bytes: job.bytesDone }, 'download completed');
      this.options.host.notify();
    } catch (err) {
      if (this.stopping && !job.cancelRequested) {
        // Shutdown: keep the partial file and the record; the next start resumes it.
        job.status = 'queued';
        job.samples = [];
        this.persist(job);
        return;
      }
      await unlink(partial).catch(() => undefined);
      if (job.cancelRequested) {
        this.finish(job, 'cancelled');
        this.options.logger.info({ id: job.id }, 'download cancelled');
      } else {
        job.error = errText(err);
        this.finish(job, 'failed');
        this.options.logger.warn({ id: job.id, uri: job.uri, error: job.error }, 'download failed');
      }
    } finally {
      job.abort = undefined;
    }
  }

  private async transfer(job: Job, partial: string, signal: AbortSignal): Promise<void> {
    let offset = await fileSize(partial);
    if (job.bytesTotal !== null && offset > job.bytesTotal) {
      await truncate(partial, 0);
      offset = 0;
    }
    job.bytesDone = offset;
    if (job.bytesTotal !== null && offset > 0 && offset === job.bytesTotal) return;
    const lib = this.options.config.get().engine.library;
    const headers: Record<string, string> = { 'user-agent': this.options.userAgent, 'accept-encoding': 'identity' };
    if (offset > 0) headers.range = `bytes=${offset}-`;
    if (lib.hfToken && new URL(job.url).origin === new URL(lib.hfEndpoint).origin) headers.authorization = `Bearer ${lib.hfToken}`;
    let res: Dispatcher.ResponseData;
    try {
      res = await request(job.url, { dispatcher: this.dispatcher, signal, headers, headersTimeout: 60_000, bodyTimeout: 60_000 });
    } catch (err) {
      if (signal.aborted) throw err;
      throw new TransferError(`cannot connect: ${errText(err)}`, true);
    }
    let total: number | null = null;
    if (res.statusCode === 206) {
      const m = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(String(res.headers['content-range'] ?? ''));
      if (!m || Number(m[1]) !== offset) {
        await res.body.dump();
        await truncate(partial, 0);
        throw new TransferError(`server resumed at the wrong offset (${String(res.headers['content-range'] ?? 'no Content-Range')}); restarting`, true);
      }
      total = m[3] === '*' ? null : Number(m[3]);
    } else if (res.statusCode === 200) {
      offset = 0;
      job.bytesDone = 0;
      const length = Number(res.headers['content-length']);
      total = Number.isFinite(length) && res.headers['content-length'] !== undefined ? length : null;
    } else if (res.statusCode === 416 && offset > 0) {
      await res.body.dump();
      await truncate(partial, 0);
      throw new TransferError('server refused the resume range; restarting from zero', true);
    } else {
      await res.body.dump();
      const retriable = res.statusCode === 408 || res.statusCode === 429 || res.statusCode >= 500;
      throw new TransferError(`HTTP ${res.statusCode} from ${new URL(job.url).host}`, retriable);
    }
    if (total !== null) {
      if (job.bytesTotal !== null && total !== job.bytesTotal) {
        await res.body.dump();
        throw new TransferError(`size mismatch: the server has ${total} bytes, expected ${job.bytesTotal}`, false);
      }
      if (job.bytesTotal === null) {
        // First time the size is known (plain URLs): check the disk before writing.
        try {
          await this.assertSpace(total - offset);
        } catch (err) {
          await res.body.dump();
          throw err;
        }
      }
      job.bytesTotal = total;
    }
    job.samples = [[this.options.clock.monotonic(), job.bytesDone]];
    this.emit(job, true);
    // Counting on 'data' next to the pipe (no extra Transform stage); the pipe still applies backpressure.
    res.body.on('data', (chunk: Buffer) => this.onBytes(job, chunk.length));
    try {
      await pipeline(res.body, createWriteStream(partial, { flags: offset > 0 ? 'a' : 'w', highWaterMark: 1 << 20 }), { signal });
    } catch (err) {
      if (signal.aborted) throw err;
      throw new TransferError(`connection lost at ${job.bytesDone}${job.bytesTotal !== null ? ` of ${job.bytesTotal}` : ''} bytes: ${errText(err)}`, true);
    } finally {
      this.persist(job);
    }
    if (job.bytesTotal !== null && job.bytesDone < job.bytesTotal) {
      throw new TransferError(`connection closed early at ${job.bytesDone} of ${job.bytesTotal} bytes`, true);
    }
  }

  private async verify(job: Job, partial: string, signal: AbortSignal): Promise<void> {
    const size = await fileSize(partial);
    if (job.bytesTotal !== null && size !== job.bytesTotal) throw new TransferError(`size mismatch: expected ${job.bytesTotal} bytes, got ${size}`, false);
    job.bytesTotal = size;
    job.bytesDone = size;
    const actual = await sha256File(partial, signal);
    if (job.sha256 !== null && actual !== job.sha256) throw new TransferError(`sha256 mismatch: expected ${job.sha256}, got ${actual}`, false);
    const summary = await inspectGguf(partial);
    if (summary.error) throw new TransferError(`not a usable GGUF: ${summary.error}`, false);
    job.sha256 = actual;
  }

  private onBytes(job: Job, n: number): void {
    job.bytesDone += n;
    this.metrics.bytes.inc(n);
    const now = this.options.clock.monotonic();
    const last = job.samples[job.samples.length - 1];
    if (!last || now - last[0] >= 100) {
      job.samples.push([now, job.bytesDone]);
      while (job.samples.length > 2 && now - job.samples[0]![0] > SPEED_WINDOW_MS) job.samples.shift();
    }
    if (now - job.lastPersist >= PERSIST_EVERY_MS) this.persist(job);
    if (now - job.lastEmit >= EMIT_EVERY_MS) this.emit(job, true);
  }

  private speed(job: Job): number {
    if (job.status !== 'downloading' || job.samples.length < 2) return 0;
    const first = job.samples[0]!;
    const last = job.samples[job.samples.length - 1]!;
    const dt = (last[0] - first[0]) / 1000;
    return dt > 0 ? Math.max(0, (last[1] - first[1]) / dt) : 0;
  }

  private sleep(ms: number, signal: AbortSignal): Promise<void> {
    return new Promise((resolve, reject) => {
      const onAbort = () => {
        timer.cancel();
        reject(signal.reason instanceof Error ? signal.reason : new Error('aborted'));
      };
      const timer = this.options.clock.setTimeout(() => {
        signal.removeEventListener('abort', onAbort);
        resolve();
      }, ms);
      if (signal.aborted) onAbort();
      else signal.addEventListener('abort', onAbort, { once: true });
    });
  }

  // --- records ---

  private setStatus(job: Job, status: DownloadStatus): void {
    job.status = status;
    this.persist(job);
    this.emit(job);
  }

  private finish(job: Job, status: 'completed' | 'failed' | 'cancelled'): void {
    job.status = status;
    job.finishedAt = this.options.clock.now();
    job.samples = [];
    this.metrics.outcomes.inc({ outcome: status });
    this.persist(job);
    this.emit(job);
  }

  private emit(job: Job, progressOnly = false): void {
    job.lastEmit = this.options.clock.monotonic();
    if (!progressOnly) job.updatedAt = this.options.clock.now();
    if (this.listeners.size === 0) return;
    const view = this.view(job);
    for (const listener of [...this.listeners]) {
      try {
        listener(view);
      } catch (err) {
        this.options.logger.warn({ err }, 'download listener failed');
      }
    }
  }

  private persist(job: Job): void {
    job.lastPersist = this.options.clock.monotonic();
    job.updatedAt = this.options.clock.now();
    this.records.put(job);
  }

  /** A job of this process for a stored (or new) record: nothing running yet. */
  private fromRecord(record: DownloadRecord): Job {
    return {
      ...record,
      abort: undefined,
      running: undefined,
      cancelRequested: false,
      samples: [],
      lastEmit: 0,
      lastPersist: 0,
    };
  }

  private view(job: Job): DownloadView {
    const speed = this.speed(job);
    const left = job.bytesTotal !== null ? Math.max(0, job.bytesTotal - job.bytesDone) : null;
    return {
      id: job.id,
      uri: job.uri,
      name: job.name,
      status: job.status,
      url: job.url,
      bytesDone: job.bytesDone,
      bytesTotal: job.bytesTotal,
      progress: job.bytesTotal ? Math.min(1, job.bytesDone / job.bytesTotal) : job.status === 'completed' ? 1 : null,
      speedBytesPerSecond: Math.round(speed),
      etaSeconds: left !== null && speed > 0 ? Math.round((left / speed) * 10) / 10 : left === 0 ? 0 : null,
      sha256: job.sha256,
      attempts: job.attempts,
      ...(job.error !== undefined ? { error: job.error } : {}),
      createdAt: iso(job.createdAt),
      updatedAt: iso(job.updatedAt),
      ...(job.finishedAt !== undefined ? { finishedAt: iso(job.finishedAt) } : {}),
    };
  }

  private find(id: string): Job {
    const job = this.jobs.get(id);
    if (!job) {
      throw new AppError(ErrorCode.NOT_FOUND, `Download '${id}' not found`, { details: [{ type: 'download_not_found', field: 'id', description: 'no such download' }] });
    }
    return job;
  }

  private partialPath(id: string): string {
    // ids are generated here (`dl-<uuid>`) or come from our own table; never from a request path.
    return join(this.options.host.stagingDir, `${id}.partial`);
  }

  private async removeOrphanPartials(): Promise<void> {
    const keep = new Set([...this.jobs.values()].filter((j) => ACTIVE.has(j.status)).map((j) => `${j.id}.partial`));
    for (const name of await readdir(this.options.host.stagingDir)) {
      if (name.endsWith('.partial') && !keep.has(name)) await unlink(join(this.options.host.stagingDir, name)).catch(() => undefined);
    }
  }

  /** Refuses a download that cannot fit on the disk of the models dir (with what other downloads still need). */
  private async assertSpace(bytes: number): Promise<void> {
    let free: number;
    try {
      const fs = await statfs(this.options.host.stagingDir);
      free = fs.bavail * fs.bsize;
    } catch {
      return; // not supported here: the write itself will fail cleanly if the disk fills up
    }
    const pending = [...this.jobs.values()].filter((j) => ACTIVE.has(j.status) && j.bytesTotal !== null).reduce((n, j) => n + (j.bytesTotal! - j.bytesDone), 0);
    if (bytes + pending > free) {
      throw new AppError(ErrorCode.INSUFFICIENT_RESOURCES, `Not enough disk space for the download: needs ${bytes} bytes (+${pending} for running downloads), ${free} free`, {
        details: [{ type: 'insufficient_disk_space', field: 'uri', description: `needs ${bytes} bytes, ${free} free` }],
      });
    }
  }

  private assertStarted(): void {
    if (!this.started || this.stopping) throw new AppError(ErrorCode.UNAVAILABLE, 'The model library is not running');
  }
}
