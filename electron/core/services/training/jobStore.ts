import type { Store } from '../../base/store.js';
import type {
  LossPoint,
  StartTrainingRequest,
  TrainingBackendName,
  TrainingMethod,
  TrainingResult,
  TrainingStatusValue,
  ValidationPoint,
} from '../../../../shared/contracts/training.js';
import type { LoraTarget } from './loraPlan.js';

/** What the runner needs to start a job (resolved paths, decided numbers). */
export interface TrainingPlan {
  backend: TrainingBackendName;
  /** Absolute path of the base GGUF, or the id passed through to a `command` trainer. */
  modelPath: string;
  datasetPath: string;
  outputDir: string;
  /** Model id the result is published under in the models dir (a LoRA job: the adapter's name). */
  outputModelId: string;
  /** llama backend: what is trained (absent on jobs queued before LoRA existed: full). */
  method?: TrainingMethod;
  trainableParams?: number;
  /** `general.architecture` of the base (written into a LoRA adapter). */
  architecture?: string;
  /** LoRA: the base weights that get an adapter, with their shapes. */
  loraTargets?: LoraTarget[];
  /** The trainer process while the job runs (pid + kernel start time, so a recycled pid is not mistaken for it). */
  trainerProcess?: { pid: number; startTime: string | null };
  /** LoRA: resume from this adapter checkpoint, written after `resumeStep` optimizer steps. */
  resumeFrom?: string;
  resumeStep?: number;
}

/** Last known progress of a job. */
export interface JobProgress {
  currentEpoch: number;
  currentStep: number;
  totalSteps: number;
  loss?: number;
  valLoss?: number;
  accuracy?: number;
  learningRate: number;
}

export interface JobRow {
  id: string;
  status: TrainingStatusValue;
  backend: TrainingBackendName;
  baseModel: string;
  outputDir: string;
  datasetPath: string;
  request: StartTrainingRequest;
  plan: TrainingPlan;
  createdAt: number;
  startedAt: number | null;
  completedAt: number | null;
  error: string | null;
  progress: JobProgress | null;
  result: TrainingResult | null;
}

interface RawJob {
  id: string;
  status: string;
  backend: string;
  base_model: string;
  output_dir: string;
  dataset_path: string;
  request: string;
  plan: string;
  created_at: number;
  started_at: number | null;
  completed_at: number | null;
  error: string | null;
  progress: string | null;
  result: string | null;
}

function toJob(r: RawJob): JobRow {
  return {
    id: r.id,
    status: r.status as TrainingStatusValue,
    backend: r.backend as TrainingBackendName,
    baseModel: r.base_model,
    outputDir: r.output_dir,
    datasetPath: r.dataset_path,
    request: JSON.parse(r.request) as StartTrainingRequest,
    plan: JSON.parse(r.plan) as TrainingPlan,
    createdAt: r.created_at,
    startedAt: r.started_at,
    completedAt: r.completed_at,
    error: r.error,
    progress: r.progress === null ? null : (JSON.parse(r.progress) as JobProgress),
    result: r.result === null ? null : (JSON.parse(r.result) as TrainingResult),
  };
}

const NON_TERMINAL = "('queued','running','paused')";

/**
 * Persistence of training jobs (migration 0006). Job rows go through the synchronous=FULL
 * connection (a status change survives a crash); loss points and log lines, which are many and
 * re-creatable, through the bulk connection.
 */
export class TrainingJobStore {
  constructor(private readonly store: Store) {}

  insert(job: Omit<JobRow, 'startedAt' | 'completedAt' | 'error' | 'progress' | 'result'>): void {
    this.store.db
      .prepare(
        `INSERT INTO training_jobs (id, status, backend, base_model, output_dir, dataset_path, request, plan, created_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      )
      .run(job.id, job.status, job.backend, job.baseModel, job.outputDir, job.datasetPath, JSON.stringify(job.request), JSON.stringify(job.plan), job.createdAt);
  }

  get(id: string): JobRow | undefined {
    const r = this.store.db.prepare('SELECT * FROM training_jobs WHERE id = ?').get(id) as RawJob | undefined;
    return r ? toJob(r) : undefined;
  }

  /** Oldest queued job (FIFO). */
  nextQueued(): JobRow | undefined {
    const r = this.store.db.prepare("SELECT * FROM training_jobs WHERE status = 'queued' ORDER BY created_at, rowid LIMIT 1").get() as RawJob | undefined;
    return r ? toJob(r) : undefined;
  }

  /** A non-terminal job writing to `outputDir`, if any. */
  activeForOutputDir(outputDir: string): JobRow | undefined {
    const r = this.store.db.prepare(`SELECT * FROM training_jobs WHERE output_dir = ? AND status IN ${NON_TERMINAL} LIMIT 1`).get(outputDir) as RawJob | undefined;
    return r ? toJob(r) : undefined;
  }

  list(status: TrainingStatusValue | undefined, limit: number, offset: number): { jobs: JobRow[]; total: number } {
    const where = status ? 'WHERE status = ?' : '';
    const params = status ? [status] : [];
    const total = (this.store.db.prepare(`SELECT COUNT(*) AS n FROM training_jobs ${where}`).get(...params) as { n: number }).n;
    const rows = this.store.db
      .prepare(`SELECT * FROM training_jobs ${where} ORDER BY created_at DESC, rowid DESC LIMIT ? OFFSET ?`)
      .all(...params, limit, offset) as RawJob[];
    return { jobs: rows.map(toJob), total };
  }

  /** Recent and non-terminal jobs, newest first (for the snapshot). */
  recent(limit: number): JobRow[] {
    const rows = this.store.db
      .prepare(`SELECT * FROM training_jobs ORDER BY CASE WHEN status IN ${NON_TERMINAL} THEN 0 ELSE 1 END, created_at DESC, rowid DESC LIMIT ?`)
      .all(limit) as RawJob[];
    return rows.map(toJob);
  }

  countByStatus(): Record<string, number> {
    const rows = this.store.db.prepare('SELECT status, COUNT(*) AS n FROM training_jobs GROUP BY status').all() as Array<{ status: string; n: number }>;
    return Object.fromEntries(rows.map((r) => [r.status, r.n]));
  }

  markRunning(id: string, at: number): void {
    this.store.db.prepare("UPDATE training_jobs SET status = 'running', started_at = ? WHERE id = ?").run(at, id);
  }

  /** Moves a job to a terminal status (only from a non-terminal one); false when it already was terminal. */
  finish(id: string, status: 'completed' | 'failed' | 'cancelled', at: number, error: string | null, result: JobRow['result']): boolean {
    const info = this.store.db
      .prepare(`UPDATE training_jobs SET status = ?, completed_at = ?, error = ?, result = ? WHERE id = ? AND status IN ${NON_TERMINAL}`)
      .run(status, at, error, result === null ? null : JSON.stringify(result), id);
    return info.changes > 0;
  }

  saveProgress(id: string, progress: JobProgress): void {
    this.store.bulk.prepare('UPDATE training_jobs SET progress = ? WHERE id = ?').run(JSON.stringify(progress), id);
  }

  /** Jobs left `running` by a previous process (crash or kill): they cannot be resumed. */
  /** Jobs that were running (or paused) when the console stopped. */
  interrupted(): JobRow[] {
    return (this.store.db.prepare("SELECT * FROM training_jobs WHERE status IN ('running','paused') ORDER BY created_at").all() as RawJob[]).map(toJob);
  }

  /** Records the trainer process of a running job (pid and kernel start time), to find it after a crash. */
  setTrainerProcess(id: string, trainer: { pid: number; startTime: string | null }): void {
    const job = this.get(id);
    if (!job) return;
    this.store.db.prepare('UPDATE training_jobs SET plan = ? WHERE id = ?').run(JSON.stringify({ ...job.plan, trainerProcess: trainer }), id);
  }

  /** Puts an interrupted job back in the queue with a new plan (e.g. resuming from a checkpoint). */
  requeue(id: string, plan: TrainingPlan): void {
    this.store.db.prepare("UPDATE training_jobs SET status = 'queued', plan = ? WHERE id = ? AND status IN ('running','paused')").run(JSON.stringify(plan), id);
  }

  failInterrupted(at: number, reason: string): string[] {
    return this.store.transaction(() => {
      const ids = (this.store.db.prepare("SELECT id FROM training_jobs WHERE status IN ('running','paused')").all() as Array<{ id: string }>).map((r) => r.id);
      this.store.db.prepare("UPDATE training_jobs SET status = 'failed', completed_at = ?, error = ? WHERE status IN ('running','paused')").run(at, reason);
      return ids;
    });
  }

  addLoss(jobId: string, point: LossPoint): void {
    this.store.bulk
      .prepare("INSERT OR REPLACE INTO training_loss (job_id, kind, step, epoch, loss, accuracy, at) VALUES (?, 'train', ?, ?, ?, ?, ?)")
      .run(jobId, point.step, point.epoch, point.loss, point.accuracy ?? null, point.at);
  }

  addValidation(jobId: string, point: ValidationPoint): void {
    this.store.bulk
      .prepare("INSERT OR REPLACE INTO training_loss (job_id, kind, step, epoch, loss, accuracy, at) VALUES (?, 'val', ?, ?, ?, ?, ?)")
      .run(jobId, point.step, point.epoch, point.valLoss, point.valAccuracy ?? null, point.at);
  }

  loss(jobId: string, afterStep: number): { points: LossPoint[]; validation: ValidationPoint[] } {
    const rows = this.store.bulk
      .prepare('SELECT kind, step, epoch, loss, accuracy, at FROM training_loss WHERE job_id = ? AND step > ? ORDER BY step, kind')
      .all(jobId, afterStep) as Array<{ kind: string; step: number; epoch: number; loss: number; accuracy: number | null; at: number }>;
    const points: LossPoint[] = [];
    const validation: ValidationPoint[] = [];
    for (const r of rows) {
      if (r.kind === 'train') points.push({ step: r.step, epoch: r.epoch, loss: r.loss, ...(r.accuracy !== null ? { accuracy: r.accuracy } : {}), at: r.at });
      else validation.push({ step: r.step, epoch: r.epoch, valLoss: r.loss, ...(r.accuracy !== null ? { valAccuracy: r.accuracy } : {}), at: r.at });
    }
    return { points, validation };
  }

  addLog(jobId: string, at: number, level: 'info' | 'warn' | 'error', message: string): number {
    return Number(this.store.bulk.prepare('INSERT INTO training_logs (job_id, at, level, message) VALUES (?, ?, ?, ?)').run(jobId, at, level, message).lastInsertRowid);
  }

  logs(jobId: string, afterId: number, limit: number): Array<{ id: number; at: number; level: 'info' | 'warn' | 'error'; message: string }> {
    return this.store.bulk
      .prepare('SELECT id, at, level, message FROM training_logs WHERE job_id = ? AND id > ? ORDER BY id LIMIT ?')
      .all(jobId, afterId, limit) as Array<{ id: number; at: number; level: 'info' | 'warn' | 'error'; message: string }>;
  }
}
