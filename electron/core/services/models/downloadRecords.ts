import type { DownloadStatus } from '../../../../shared/contracts/models.js';
import type { Store } from '../../base/store.js';

/** A model download as the store keeps it (table `model_downloads`). */
export interface DownloadRecord {
  id: string;
  uri: string;
  name: string;
  url: string;
  status: DownloadStatus;
  bytesDone: number;
  bytesTotal: number | null;
  /** Expected sha256, then the verified one. */
  sha256: string | null;
  attempts: number;
  error: string | undefined;
  /** Unix ms. */
  createdAt: number;
  updatedAt: number;
  finishedAt: number | undefined;
}

interface Row {
  id: string;
  uri: string;
  name: string;
  status: string;
  url: string;
  bytes_done: number;
  bytes_total: number | null;
  sha256: string | null;
  attempts: number;
  error: string | null;
  created_at: number;
  updated_at: number;
  finished_at: number | null;
}

const STATUSES: readonly DownloadStatus[] = ['queued', 'downloading', 'verifying', 'completed', 'failed', 'cancelled'];

/** Durable download records, so a restart resumes active downloads and keeps the finished history. */
export class DownloadRecords {
  constructor(private readonly store: Store) {}

  /** Inserts or updates a record (the uri, name and creation time of an existing one stay). */
  put(r: DownloadRecord): void {
    this.store.db
      .prepare(
        `INSERT INTO model_downloads (id, uri, name, status, url, bytes_done, bytes_total, sha256, attempts, error, created_at, updated_at, finished_at)
         VALUES (@id, @uri, @name, @status, @url, @bytes_done, @bytes_total, @sha256, @attempts, @error, @created_at, @updated_at, @finished_at)
         ON CONFLICT(id) DO UPDATE SET status = excluded.status, url = excluded.url, bytes_done = excluded.bytes_done, bytes_total = excluded.bytes_total,
           sha256 = excluded.sha256, attempts = excluded.attempts, error = excluded.error, updated_at = excluded.updated_at, finished_at = excluded.finished_at`,
      )
      .run({
        id: r.id,
        uri: r.uri,
        name: r.name,
        status: r.status,
        url: r.url,
        bytes_done: r.bytesDone,
        bytes_total: r.bytesTotal,
        sha256: r.sha256,
        attempts: r.attempts,
        error: r.error ?? null,
        created_at: r.createdAt,
        updated_at: r.updatedAt,
        finished_at: r.finishedAt ?? null,
      });
  }

  remove(id: string): void {
    this.store.db.prepare('DELETE FROM model_downloads WHERE id = ?').run(id);
  }

  /** Keeps only the newest `keep` finished records (completed, failed, cancelled); active ones stay. */
  pruneFinished(keep: number): void {
    this.store.db
      .prepare(
        `DELETE FROM model_downloads WHERE status IN ('completed', 'failed', 'cancelled') AND id NOT IN
           (SELECT id FROM model_downloads WHERE status IN ('completed', 'failed', 'cancelled') ORDER BY created_at DESC LIMIT ?)`,
      )
      .run(keep);
  }

  /** Every record, oldest first; an unknown status reads as `failed`. */
  list(): DownloadRecord[] {
    const rows = this.store.db.prepare('SELECT * FROM model_downloads ORDER BY created_at').all() as Row[];
    return rows.map((row) => ({
      id: row.id,
      uri: row.uri,
      name: row.name,
      url: row.url,
      status: STATUSES.find((s) => s === row.status) ?? 'failed',
      bytesDone: row.bytes_done,
      bytesTotal: row.bytes_total,
      sha256: row.sha256,
      attempts: row.attempts,
      error: row.error ?? undefined,
      createdAt: row.created_at,
      updatedAt: row.updated_at,
      finishedAt: row.finished_at ?? undefined,
    }));
  }
}
