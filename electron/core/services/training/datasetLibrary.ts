import { randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { link, mkdir, readdir, rm, stat } from 'node:fs/promises';
import { extname, join } from 'node:path';
import { Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Logger } from 'pino';
import type { ConfigStore } from '../../base/config.js';
import { AppError, ErrorCode, invalidRequest } from '../../base/errors.js';
import type { DatasetDetails, DatasetSummary } from '../../../../shared/contracts/datasets.js';
import { datasetIssueDetails, inspectDataset, type DatasetInspection } from './datasets.js';

export interface DatasetLibraryOptions {
  config: ConfigStore;
  logger: Logger;
  /** Uploads go to `DATA_DIR/datasets/` (where training requests' relative `datasets/<name>` point). */
  dataDir: string;
}

/** Extensions an upload may have (they decide how the file is parsed, see datasets.ts). */
export const DATASET_EXTENSIONS = ['.jsonl', '.ndjson', '.json', '.txt', '.md'] as const;

/** ISO-8601 UTC with `Z`, whole seconds (contract §1.5). */
function iso(ms: number): string {
  return new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/**
 * A safe file name from an uploaded one: the last path segment, only `[A-Za-z0-9._-]`, no leading
 * dot (no hidden files), at most 120 characters with the extension kept, lower-case extension.
 */
export function sanitizeDatasetName(input: string): string {
  const last = input.split(/[\\/]/).pop() ?? '';
  const ext = extname(last).toLowerCase().replace(/[^a-z0-9.]/g, '');
  const stem = last
    .slice(0, last.length - extname(last).length)
    .replace(/[^A-Za-z0-9._-]+/g, '-')
    .replace(/^[.\-_]+|[.\-_]+$/g, '')
    .replace(/\.{2,}/g, '.')
    .slice(0, 120 - ext.length);
  return `${stem === '' ? 'dataset' : stem}${ext}`;
}

/** `name-1.jsonl`, `name-2.jsonl`, ... for a name that is taken. */
function withSuffix(name: string, n: number): string {
  const ext = extname(name);
  return `${name.slice(0, name.length - ext.length)}-${n}${ext}`;
}

/**
 * The uploaded training datasets in `DATA_DIR/datasets/`. Every upload is validated before it is
 * kept (an invalid one is deleted and refused with its bad rows); a name that is taken gets a
 * numeric suffix (`cat-1.jsonl`), unless the file there has the same content, which is reused.
 * Inspections are cached by size and modification time, so listing does not re-read files.
 */
export class DatasetLibrary {
  private readonly cache = new Map<string, { size: number; mtimeMs: number; inspection: DatasetInspection }>();

  constructor(private readonly options: DatasetLibraryOptions) {}

  get dir(): string {
    return join(this.options.dataDir, 'datasets');
  }

  /** `training.maxDatasetUploadBytes`. */
  get maxUploadBytes(): number {
    return this.options.config.get().training.maxDatasetUploadBytes;
  }

  async list(): Promise<DatasetSummary[]> {
    let names: string[];
    try {
      names = await readdir(this.dir);
    } catch {
      return [];
    }
    const out: DatasetSummary[] = [];
    for (const name of names.sort()) {
      if (name.startsWith('.')) continue;
      try {
        const details = await this.details(name);
        if (details) out.push(summary(details));
      } catch (err) {
        this.options.logger.warn({ err, name }, 'cannot read a dataset');
      }
    }
    return out;
  }

  /** Details and a preview; 404 NOT_FOUND for an unknown name. */
  async get(name: string): Promise<DatasetDetails> {
    const details = /^[^\\/]+$/.test(name) && !name.startsWith('.') ? await this.details(name) : undefined;
    if (!details) throw new AppError(ErrorCode.NOT_FOUND, `Dataset not found: ${name}`);
    return details;
  }

  /**
   * Stores an uploaded file under its sanitised name, validates it and returns its details.
   * 400 INVALID_REQUEST for an unsupported extension or bad rows (the file is deleted), 413 when
   * it is larger than `training.maxDatasetUploadBytes`.
   */
  async upload(filename: string, source: Readable): Promise<DatasetDetails> {
    const name = sanitizeDatasetName(filename);
    const ext = extname(name);
    if (!(DATASET_EXTENSIONS as readonly string[]).includes(ext)) {
      source.resume();
      throw invalidRequest(`Unsupported dataset file type '${ext || '(none)'}'`, [
        { type: 'invalid_dataset', field: 'file', description: `the file name must end with ${DATASET_EXTENSIONS.join(', ')}` },
      ]);
    }
    await mkdir(this.dir, { recursive: true });
    const tmp = join(this.dir, `.upload-${randomBytes(6).toString('hex')}${ext}`);
    const max = this.maxUploadBytes;
    let bytes = 0;
    const limit = new Transform({
      transform(chunk: Buffer, _enc, done) {
        bytes += chunk.length;
        if (bytes > max) done(new AppError(ErrorCode.PAYLOAD_TOO_LARGE, `The dataset is larger than training.maxDatasetUploadBytes (${max} bytes)`));
        else done(null, chunk);
      },
    });
    const sink = createWriteStream(tmp, { mode: 0o600 });
    try {
      await pipeline(source, limit, sink);
      const inspection = await inspectDataset(tmp);
      if (!inspection.ok) {
        throw invalidRequest(
          `Invalid dataset ${name}: ${inspection.issueCount} bad ${inspection.issueCount === 1 ? 'row' : 'rows'}`,
          datasetIssueDetails(inspection, 'file'),
        );
      }
      const final = await this.place(tmp, name, inspection.sha256);
      this.options.logger.info({ name: final, rows: inspection.rows, bytes: inspection.bytes }, 'dataset uploaded');
      return await this.get(final);
    } finally {
      // A failed pipeline settles before the file stream has closed (it may not even have opened):
      // removing the temp file before then would let the open create it again afterwards.
      if (!sink.closed) await new Promise<void>((resolve) => sink.once('close', () => resolve()));
      await rm(tmp, { force: true });
    }
  }

  /** Links the temp file to `name` (or `name-N`) without ever replacing a file; returns the name used. */
  private async place(tmp: string, name: string, sha256: string): Promise<string> {
    for (let n = 0; n < 10_000; n++) {
      const candidate = n === 0 ? name : withSuffix(name, n);
      try {
        await link(tmp, join(this.dir, candidate));
        return candidate;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
        const existing = await this.details(candidate).catch(() => undefined);
        if (existing?.sha256 === sha256) return candidate; // the same content again
      }
    }
    throw new AppError(ErrorCode.CONFLICT, `Too many datasets named like ${name}`);
  }

  private async details(name: string): Promise<DatasetDetails | undefined> {
    const path = join(this.dir, name);
    let info;
    try {
      info = await stat(path);
    } catch {
      this.cache.delete(name);
      return undefined;
    }
    if (!info.isFile()) return undefined;
    let cached = this.cache.get(name);
    if (!cached || cached.size !== info.size || cached.mtimeMs !== info.mtimeMs) {
      cached = { size: info.size, mtimeMs: info.mtimeMs, inspection: await inspectDataset(path) };
      this.cache.set(name, cached);
    }
    const i = cached.inspection;
    return {
      name,
      path,
      format: i.format,
      size: i.bytes,
      rows: i.rows,
      shapes: i.shapes,
      sha256: i.sha256,
      modifiedAt: iso(info.mtimeMs),
      issueCount: i.issueCount,
      preview: i.preview,
      issues: i.issues,
    };
  }
}

function summary(d: DatasetDetails): DatasetSummary {
  return { name: d.name, path: d.path, format: d.format, size: d.size, rows: d.rows, shapes: d.shapes, sha256: d.sha256, modifiedAt: d.modifiedAt, issueCount: d.issueCount };
}
