import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { copyFile, link, mkdir, readdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import { basename, dirname, join } from 'node:path';
import type { Logger } from 'pino';
import type { Clock, TimerHandle } from '../../base/clock.js';
import type { ChildProcessRegistry } from '../../base/managedProcess.js';
import type { ConfigStore } from '../../base/config.js';
import { AppError, ErrorCode } from '../../base/errors.js';
import { BaseService, drainUntil } from '../../base/lifecycle.js';
import type { MetricsRegistry } from '../../base/metrics.js';
import type { GpuLease, GpuLockPort, GpuTenantPort, HeartbeatPort, ModelFilesPort } from '../../base/ports.js';
import type { Store } from '../../base/store.js';
import { Value } from '@sinclair/typebox/value';
import {
  TERMINAL_STATUSES,
  TrainingHyperParams,
  type CancelTrainingResponse,
  type ListTrainingQuery,
  type ListTrainingResponse,
  type LossResponse,
  type LogsResponse,
  type StartTrainingRequest,
  type StartTrainingResponse,
  type TrainingEvent,
  type TrainingInfo,
  type TrainingJobStatus,
  type TrainingMethod,
  type TrainingResult,
  type TrainingSnapshot,
} from '../../../../shared/contracts/training.js';
import { TrainingMetrics } from './trainingMetrics.js';
import { TrainingJobStore, type JobRow } from './jobStore.js';
import { renderDataset } from './datasets.js';
import { processStartTime, signalGroup } from '../../base/processUtil.js';
import { isInside } from './pathPolicy.js';
import { TrainingRun, type TrainerCommand } from './trainingRun.js';
import { JobPlanner } from './jobPlanner.js';
import { ensureTrainer, type TrainerBinary } from './trainerBuild.js';
import { ADAPTERS_DIR, type AdapterSidecar } from '../../base/adapters.js';
import { sha256File } from './loraPlan.js';

export interface TrainingServiceOptions {
  config: ConfigStore;
  store: Store;
  clock: Clock;
  logger: Logger;
  metrics: MetricsRegistry;
  /** The console's data dir: jobs' files live in `DATA_DIR/training`, the trainer in `DATA_DIR/trainer`. */
  dataDir: string;
  /** The models dir (absolute, real path) where finished models are published. */
  modelsDir: () => string;
  /** Resolves `baseModel` ids; without it ids are looked up as `<modelsDir>/<id>.gguf`. */
  models?: ModelFilesPort;
  /**
   * GPU locks (monitoring). Optional: without it jobs still run one at a time (this service's own
   * queue), but nothing stops another program from using the GPU meanwhile.
   */
  gpuLocks?: GpuLockPort;
  /** Heartbeats (monitoring). Optional: without it a stuck trainer is only stopped by cancel. */
  heartbeats?: HeartbeatPort;
  /** The engine, which gives the GPU up while a job holds its lock (training.enginePolicy). */
  gpuTenant?: GpuTenantPort;
  /** Where the native trainer comes from (tests and benchmarks may pass a prebuilt one). */
  trainer?: () => Promise<TrainerBinary>;
  /** Where /threads lists the trainer processes. */
  children?: ChildProcessRegistry;
}

/** The job running now: its run, and a promise that resolves once its end is recorded. */
interface ActiveRun {
  run: TrainingRun;
  settled: Promise<void>;
}

const SNAPSHOT_JOBS = 20;

/** The newest `checkpoint-step-N.gguf` in a job's output dir. */
async function latestCheckpoint(dir: string): Promise<{ path: string; step: number } | undefined> {
  let best: { path: string; step: number } | undefined;
  for (const name of await readdir(dir).catch(() => [] as string[])) {
    const m = /^checkpoint-step-(\d+)\.gguf$/.exec(name);
    if (m && (!best || Number(m[1]) > best.step)) best = { path: join(dir, name), step: Number(m[1]) };
  }
  return best;
}

/** Values of a request the llama backend cannot honour, each with the reason (logged in the job). */
function ignoredParams(request: StartTrainingRequest, method: TrainingMethod): string[] {
  const hp = request.hyperParams;
  const notes: string[] = [];
  if (hp.batchSize > 1) {
    notes.push(
      `batchSize ${hp.batchSize} is ignored: llama.cpp's optimizer API takes one step per ${hp.maxSeqLength}-token window (its ubatches are accumulated) and offers no accumulation across windows; raise maxSeqLength for larger steps`,
    );
  }
  const dropout = request.loraConfig?.loraDropout ?? hp.loraDropout;
  if (method === 'lora' && dropout > 0) {
    notes.push(`loraDropout ${dropout} is ignored: llama.cpp's training graph has no dropout op (the adapter trains without dropout)`);
  }
  return notes;
}

/** ISO-8601 UTC with `Z`, whole seconds (contract §1.5). */
function iso(ms: number): string {
  return new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

function newJobId(): string {
  return `job-${randomBytes(6).toString('hex')}`;
}

/**
 * The training runner (contract §4): a persisted FIFO queue of fine-tuning jobs, run one at a time
 * per GPU, each in its own child process (the native llama.cpp trainer or a configured command)
 * that reports progress as JSON lines. A running job holds the GPU lock and sends heartbeats when
 * monitoring's ports are given. Finished models are published into the models dir, where the
 * engine lists them.
 */
export class TrainingService extends BaseService {
  readonly name = 'training';
  private readonly jobs: TrainingJobStore;
  private active: ActiveRun | undefined;
  /** The job a stop is ending: it goes back to the queue if it has a checkpoint to resume from. */
  private resumeAfterStop: string | null = null;
  private pumping = false;
  private pumpAgain = false;
  /** The queue step in progress (taking the next job off the queue, up to its trainer's spawn). */
  private pumpRun: Promise<void> | undefined;
  private retryTimer: TimerHandle | undefined;
  /** One-shot timers (queue pumps) not fired yet; cancelled when the service stops. */
  private readonly pendingTimers = new Set<TimerHandle>();
  /** The last reason each waiting job was logged with (logged again only when it changes). */
  private waitingLogged = new Map<string, string>();
  private trainerBuild: Promise<TrainerBinary> | undefined;
  private readonly listeners = new Map<string, Set<(event: TrainingEvent) => void>>();
  private readonly metrics: TrainingMetrics;
  private readonly planner: JobPlanner;

  constructor(private readonly options: TrainingServiceOptions) {
    super();
    this.jobs = new TrainingJobStore(options.store);
    const jobs = this.jobs;
    this.metrics = new TrainingMetrics(options.metrics, { countByStatus: () => jobs.countByStatus() });
    this.planner = new JobPlanner({ config: options.config, dataDir: options.dataDir, modelsDir: options.modelsDir, ...(options.models ? { models: options.models } : {}) });
  }

  private get cfg() {
    return this.options.config.get().training;
  }

  protected async onStart(): Promise<void> {
    // A LoRA job interrupted by a restart resumes from its last checkpoint; others cannot (say why).
    for (const job of this.jobs.interrupted()) {
      // A trainer that outlived a crashed console (a `command` trainer ignores its parent's death) is stopped.
      const leftover = job.plan.trainerProcess;
      if (leftover && leftover.startTime !== null && processStartTime(leftover.pid) === leftover.startTime) {
        signalGroup(leftover.pid, 'SIGKILL');
        this.log(job.id, 'warn', `the trainer (pid ${leftover.pid}) outlived the console; stopped it and its process group`);
      }
      await this.requeueFromCheckpoint(job);
    }
    const failed = this.jobs.failInterrupted(this.options.clock.now(), 'The console stopped while this job was running and it has no checkpoint to resume from (full fine-tuning, or a LoRA job stopped before its first saveSteps); start the job again.');
    for (const id of failed) this.log(id, 'error', 'marked failed: the console stopped while the job was running');
    if (failed.length > 0) this.options.logger.warn({ jobs: failed }, 'training jobs interrupted by a restart were marked failed');
    this.disposables.defer(() => {
      this.retryTimer?.cancel();
      this.retryTimer = undefined;
      for (const t of this.pendingTimers) t.cancel();
      this.pendingTimers.clear();
    });
    this.later(() => this.pump());
  }

  /**
   * Drains: queued jobs are not started any more (`running` is false, so the queue does not pump);
   * a job being started or running may go on until it ends or `deadline` fires. Then onStop ends
   * what is left as a stop does.
   */
  protected override async onDrain(deadline: AbortSignal): Promise<void> {
    // A job being taken off the queue (lock, trainer build) becomes the active one, or goes back.
    if (this.pumpRun && !(await drainUntil(deadline, this.pumpRun))) return;
    const active = this.active;
    if (!active) return;
    this.log(active.run.job.id, 'info', 'the training service is stopping; this job may finish until its drain deadline');
    await drainUntil(deadline, active.settled);
  }

  protected override async onStop(): Promise<void> {
    const active = this.active;
    if (active) {
      // A stop keeps what a crash keeps: a LoRA job with a checkpoint goes back to the queue and
      // resumes from it when training starts again (see the run's end in startJob).
      this.resumeAfterStop = active.run.job.id;
      void active.run.close({ status: 'failed', reason: 'The console stopped while this job was running and it has no checkpoint to resume from; start it again.' });
      await active.settled;
      this.resumeAfterStop = null;
    }
    this.listeners.clear();
  }

  /**
   * Puts an interrupted LoRA job back in the queue to resume from its latest checkpoint; false when
   * it has none (full fine-tuning, or stopped before its first saveSteps).
   */
  private async requeueFromCheckpoint(job: JobRow): Promise<boolean> {
    const checkpoint = job.plan.method === 'lora' ? await latestCheckpoint(job.plan.outputDir) : undefined;
    if (!checkpoint) return false;
    this.jobs.requeue(job.id, { ...job.plan, resumeFrom: checkpoint.path, resumeStep: checkpoint.step });
    this.log(job.id, 'info', `the console stopped while this job was running; it resumes from its checkpoint at step ${checkpoint.step} (${checkpoint.path}) when training runs again; AdamW's moment estimates start afresh`);
    return true;
  }

  // --- public API (used by the HTTP adapter) ---

  /** Validates and queues a job (§4.1). Paths are untrusted: see `StartTrainingRequest`. */
  async submit(request: StartTrainingRequest): Promise<StartTrainingResponse> {
    const refused = this.refusal('The training service');
    if (refused) throw refused;
    const plan = await this.planner.plan(request);
    const conflict = this.jobs.activeForOutputDir(plan.outputDir);
    if (conflict) {
      throw new AppError(ErrorCode.TRAINING_JOB_RUNNING, `Job ${conflict.id} (${conflict.status}) already writes to outputDir ${plan.outputDir}`, {
        details: [{ type: 'training_job_running', field: 'outputDir', description: `job ${conflict.id} is ${conflict.status} with this outputDir` }],
      });
    }
    const now = this.options.clock.now();
    const id = newJobId();
    this.jobs.insert({ id, status: 'queued', backend: plan.backend, baseModel: request.baseModel, outputDir: plan.outputDir, datasetPath: plan.datasetPath, request, plan, createdAt: now });
    this.log(id, 'info', `queued (${plan.backend} backend): base model ${plan.modelPath}, dataset ${plan.datasetPath}, output ${plan.outputDir}`);
    this.emitStatus(id);
    this.pump();
    return { jobId: id, status: 'queued', message: 'Training job has been queued', createdAt: iso(now) };
  }

  /** §4.2; 404 TRAINING_JOB_NOT_FOUND for an unknown id. */
  status(jobId: string): TrainingJobStatus {
    return this.toStatus(this.require(jobId));
  }

  /** §4.3: idempotent; a running job gets SIGTERM (SIGKILL after the grace) and this resolves once it exited. */
  async cancel(jobId: string): Promise<CancelTrainingResponse> {
    const job = this.require(jobId);
    if (TERMINAL_STATUSES.includes(job.status)) return { jobId, status: job.status, message: `Training job is already ${job.status}` };
    const active = this.active;
    if (active && active.run.job.id === jobId) {
      void active.run.cancel();
      await active.settled;
    } else if (this.jobs.finish(jobId, 'cancelled', this.options.clock.now(), null, null)) {
      this.log(jobId, 'info', 'cancelled while queued');
      this.emitStatus(jobId);
    }
    const after = this.require(jobId);
    return {
      jobId,
      status: after.status,
      message: after.status === 'cancelled' ? 'Training job has been cancelled' : `Training job is already ${after.status}`,
    };
  }

  /** §4.4: newest first; `limit` clamped to 1..1000. */
  list(query: ListTrainingQuery): ListTrainingResponse {
    const limit = Math.min(1000, Math.max(1, Math.trunc(query.limit)));
    const offset = Math.max(0, Math.trunc(query.offset));
    const { jobs, total } = this.jobs.list(query.status, limit, offset);
    return {
      jobs: jobs.map((j) => ({ jobId: j.id, baseModel: j.baseModel, status: j.status, createdAt: iso(j.createdAt), completedAt: j.completedAt === null ? null : iso(j.completedAt) })),
      total,
      limit,
      offset,
    };
  }

  /** Loss points (per step) and validation losses (per epoch) of a job. */
  loss(jobId: string, afterStep = -1): LossResponse {
    this.require(jobId);
    return { jobId, ...this.jobs.loss(jobId, afterStep) };
  }

  /** A job's log lines after `afterId`, oldest first. */
  logs(jobId: string, afterId = 0, limit = 500): LogsResponse {
    this.require(jobId);
    return { jobId, lines: this.jobs.logs(jobId, afterId, limit).map((l) => ({ ...l, at: iso(l.at) })) };
  }

  /** Live events of one job (status changes, loss points, logs); returns the unsubscribe function. */
  onEvent(jobId: string, listener: (event: TrainingEvent) => void): () => void {
    this.require(jobId);
    let set = this.listeners.get(jobId);
    if (!set) {
      set = new Set();
      this.listeners.set(jobId, set);
    }
    set.add(listener);
    return () => {
      const current = this.listeners.get(jobId);
      current?.delete(listener);
      if (current && current.size === 0) this.listeners.delete(jobId);
    };
  }

  /** What the configured backend can do (for forms). */
  info(): TrainingInfo {
    const cfg = this.cfg;
    return {
      backend: cfg.backend,
      supportsLora: true,
      gpuId: cfg.gpuId,
      validationSplit: cfg.validationSplit,
      defaults: Value.Default(TrainingHyperParams, {}) as TrainingInfo['defaults'],
    };
  }

  /** Cheap synchronous view for the dashboard's snapshot stream. */
  snapshot(): TrainingSnapshot {
    const counts = this.jobs.countByStatus();
    const recent = this.jobs.recent(SNAPSHOT_JOBS);
    return {
      queued: counts.queued ?? 0,
      running: this.active?.run.job.id ?? null,
      jobs: recent.map((j) => {
        const p = this.active?.run.job.id === j.id ? this.active.run.progress : j.progress;
        return {
          jobId: j.id,
          status: j.status,
          currentStep: p?.currentStep ?? 0,
          totalSteps: p?.totalSteps ?? 0,
          ...(p?.loss !== undefined ? { loss: p.loss } : {}),
          ...(p?.valLoss !== undefined ? { valLoss: p.valLoss } : {}),
        };
      }),
    };
  }

  // --- running ---

  private pump(): void {
    if (!this.running || this.active) return;
    if (this.pumping) {
      this.pumpAgain = true;
      return;
    }
    this.pumping = true;
    this.pumpRun = this.runNext()
      .catch((err: unknown) => this.options.logger.error({ err }, 'training queue failed'))
      .finally(() => {
        this.pumping = false;
        this.pumpRun = undefined;
        if (this.pumpAgain) {
          this.pumpAgain = false;
          this.pump();
        }
      });
  }

  /** Runs `fn` on a later turn of the clock; cancelled if the service stops first. */
  private later(fn: () => void, ms = 0): void {
    const timer = this.options.clock.setTimeout(() => {
      this.pendingTimers.delete(timer);
      fn();
    }, ms);
    this.pendingTimers.add(timer);
  }

  private scheduleRetry(): void {
    if (this.retryTimer || !this.running) return;
    this.retryTimer = this.options.clock.setTimeout(() => {
      this.retryTimer = undefined;
      this.pump();
    }, this.cfg.lockRetrySeconds * 1000);
  }

  private async runNext(): Promise<void> {
    const job = this.jobs.nextQueued();
    if (!job) return;
    const gpuId = this.cfg.gpuId;
    let lease: GpuLease | undefined;
    if (this.options.gpuLocks) {
      try {
        lease = await this.options.gpuLocks.acquire({ gpuId, holder: job.id, purpose: 'training' });
      } catch (err) {
        // Held by someone else, or the lock store is away (a cluster's Redis): the job waits in the
        // queue and the lock is tried again every lockRetrySeconds.
        if (err instanceof AppError && (err.code === ErrorCode.CONFLICT || err.code === ErrorCode.UNAVAILABLE)) {
          const why = err.code === ErrorCode.CONFLICT ? `waiting for GPU lock gpu_lock:${gpuId}` : `waiting for the GPU lock store to answer (gpu_lock:${gpuId})`;
          if (this.waitingLogged.get(job.id) !== err.code) {
            this.waitingLogged.set(job.id, err.code);
            this.log(job.id, 'info', `${why}: ${err.message}`);
          }
          this.scheduleRetry();
          return;
        }
        this.finish(job.id, 'failed', `cannot take the GPU lock: ${(err as Error).message}`, null);
        this.later(() => this.pump());
        return;
      }
    }
    this.waitingLogged.delete(job.id);
    const current = this.jobs.get(job.id);
    if (!this.running || !current || current.status !== 'queued') {
      // cancelled (or the service stopped) while the lock was being taken
      if (lease) await this.options.gpuLocks?.release(lease.gpuId, lease.holder, lease.fencingToken).catch(() => undefined);
      if (this.running) this.later(() => this.pump());
      return;
    }
    await this.startRun(current, lease);
  }

  private async startRun(job: JobRow, lease: GpuLease | undefined): Promise<void> {
    const { clock, logger, gpuLocks, heartbeats, gpuTenant, children } = this.options;
    const cfg = this.cfg;
    const id = job.id;
    const run = new TrainingRun({
      job,
      lease,
      clock,
      logger,
      metrics: this.metrics,
      sink: {
        log: (level, message) => this.log(id, level, message),
        loss: (point) => {
          this.jobs.addLoss(id, point);
          this.emit(id, { type: 'progress', data: point });
        },
        validation: (point) => {
          this.jobs.addValidation(id, point);
          this.emit(id, { type: 'validation', data: point });
        },
        saveProgress: (progress) => this.jobs.saveProgress(id, progress),
        trainerProcess: (info) => this.jobs.setTrainerProcess(id, info),
      },
      ...(gpuLocks ? { gpuLocks } : {}),
      ...(heartbeats ? { heartbeats } : {}),
      heartbeatIntervalMs: cfg.heartbeatIntervalSeconds * 1000,
      ...(gpuTenant ? { gpuTenant: { port: gpuTenant, policy: cfg.enginePolicy } } : {}),
      cancelGraceMs: () => this.cfg.cancelGraceSeconds * 1000,
      ...(children ? { children } : {}),
      publish: (r, output) => this.publish(r, output),
    });
    const settled = run.ended
      .then(async (end) => {
        if (this.resumeAfterStop === id && end.status === 'failed' && (await this.requeueFromCheckpoint(this.jobs.get(id) ?? job))) {
          this.emitStatus(id);
          return;
        }
        this.finish(id, end.status, end.error, end.result);
        if (end.status === 'completed' && end.result) this.log(id, 'info', `completed: model '${end.result.modelId}' (${end.result.modelPath})`);
      })
      .catch((err: unknown) => logger.error({ err, jobId: id }, 'recording the end of a training job failed'))
      .finally(() => {
        this.active = undefined;
        this.pump();
      });
    this.active = { run, settled };
    this.jobs.markRunning(id, clock.now());
    // Never the fencing token: job logs are readable with an API key, and the token (with the
    // job id, which is the lock's public holder name) is what renews or releases the lock.
    this.log(id, 'info', lease ? `started; holding gpu_lock:${lease.gpuId}` : 'started');
    this.emitStatus(id);
    await run.start(() => this.commandFor(job));
  }

  /** The executable, arguments and job config file of a run. */
  private async commandFor(job: JobRow): Promise<TrainerCommand> {
    const cfg = this.cfg;
    const hp = job.request.hyperParams;
    const jobsDir = join(this.options.dataDir, 'training', 'jobs');
    await mkdir(jobsDir, { recursive: true });
    const configPath = join(jobsDir, `${job.id}.json`);
    const lora = {
      r: job.request.loraConfig?.r ?? hp.loraRank,
      loraAlpha: job.request.loraConfig?.loraAlpha ?? hp.loraAlpha,
      loraDropout: job.request.loraConfig?.loraDropout ?? hp.loraDropout,
      targetModules: job.request.loraConfig?.targetModules ?? ['q_proj', 'v_proj'],
      bias: job.request.loraConfig?.bias ?? 'none',
    };
    const common = {
      jobId: job.id,
      baseModel: job.baseModel,
      modelPath: job.plan.modelPath,
      datasetPath: job.plan.datasetPath,
      outputDir: job.plan.outputDir,
      outputPath: join(job.plan.outputDir, 'model.gguf'),
      checkpointDir: job.plan.outputDir,
      epochs: hp.epochs,
      learningRate: hp.learningRate,
      nCtx: hp.maxSeqLength,
      batchSize: hp.batchSize,
      saveSteps: hp.saveSteps,
      evalSteps: hp.evalSteps,
      validationSplit: cfg.validationSplit,
      threads: cfg.threads > 0 ? cfg.threads : availableParallelism(),
      hyperParams: hp,
      lora: job.request.loraConfig !== undefined ? lora : null,
    };
    if (job.plan.backend === 'command') {
      await writeFile(configPath, JSON.stringify(common, null, 2));
      return { file: cfg.command.executable, args: [...cfg.command.args, configPath], env: { TRAINING_CONFIG: configPath, TRAINING_JOB_ID: job.id } };
    }
    const binary = await this.trainerBinary(job.id);
    const plan = job.plan;
    const method = plan.method ?? 'full';
    const rank = job.request.loraConfig?.r ?? hp.loraRank;
    const alpha = job.request.loraConfig?.loraAlpha ?? hp.loraAlpha;
    const what =
      method === 'lora'
        ? `LoRA rank ${rank}, alpha ${alpha} on ${plan.loraTargets?.length ?? 0} weights (${(plan.trainableParams ?? 0).toLocaleString('en')} trainable parameters; the base stays frozen)`
        : `full fine-tuning of the F32 tensors (${(plan.trainableParams ?? 0).toLocaleString('en')} parameters)`;
    this.log(job.id, 'info', `llama backend (${binary.variant}): ${what}; one optimizer step per ${hp.maxSeqLength}-token window, ${hp.lrScheduler} learning rate${hp.warmupSteps > 0 ? ` after ${hp.warmupSteps} warm-up steps` : ''}, validation every ${hp.evalSteps} steps, checkpoint every ${hp.saveSteps} steps`);
    for (const note of ignoredParams(job.request, method)) this.log(job.id, 'warn', note);
    // The trainer reads {"text"} rows: chat rows rendered with the base's own chat template, prompt/completion rows joined.
    await mkdir(plan.outputDir, { recursive: true });
    const rendered = await renderDataset({ datasetPath: plan.datasetPath, modelPath: plan.modelPath, outputPath: join(plan.outputDir, 'prepared-dataset.jsonl') });
    const shapes = Object.entries(rendered.shapes).filter(([, n]) => n > 0).map(([shape, n]) => `${n} ${shape}`).join(', ');
    this.log(job.id, 'info', `dataset: ${rendered.rows} rows (${shapes})${rendered.chatFormat === 'none' ? '' : `, chat rows rendered with ${rendered.chatFormat === 'template' ? "the base model's chat template" : 'the fallback format'}`}`);
    for (const warning of rendered.warnings) this.log(job.id, 'warn', warning);
    // Lineage: hashed when the job starts (not when it is submitted: a multi-GB base takes seconds).
    const [base, dataset] = await Promise.all([sha256File(plan.modelPath), sha256File(plan.datasetPath)]);
    const outputPath = join(job.plan.outputDir, method === 'lora' ? 'adapter.gguf' : 'model.gguf');
    await writeFile(
      configPath,
      JSON.stringify(
        {
          ...common,
          datasetPath: rendered.path,
          parseSpecial: rendered.containsSpecialTokens,
          outputPath,
          backendDir: binary.backendDir,
          gpuLayers: binary.variant === 'cuda' ? -1 : 0,
          method,
          architecture: plan.architecture ?? 'llama',
          loraTargets: plan.loraTargets ?? [],
          loraRank: rank,
          loraAlpha: alpha,
          lrSchedule: hp.lrScheduler,
          ...(plan.resumeFrom ? { resumeFrom: plan.resumeFrom, resumeStep: plan.resumeStep ?? 0 } : {}),
          warmupSteps: hp.warmupSteps,
          weightDecay: hp.weightDecay,
        },
        null,
        2,
      ),
    );
    return { file: binary.path, args: [configPath], env: {}, hashes: { base, dataset } };
  }

  /** The native trainer, built once per process when missing or stale. */
  private async trainerBinary(jobId: string): Promise<TrainerBinary> {
    if (this.options.trainer) return this.options.trainer();
    if (!this.trainerBuild) {
      const cacheDir = this.cfg.trainerDir !== '' ? this.cfg.trainerDir : join(this.options.dataDir, 'trainer');
      this.log(jobId, 'info', `checking the native trainer in ${cacheDir}`);
      this.trainerBuild = ensureTrainer({ cacheDir, gpu: this.cfg.gpu }).then((b) => {
        if (b.built) this.options.logger.info({ path: b.path, variant: b.variant }, 'built the native trainer');
        return b;
      });
      this.trainerBuild.catch(() => {
        this.trainerBuild = undefined;
      });
    }
    return this.trainerBuild;
  }

  /**
   * Publishes the result so the engine lists it: a full fine-tune's GGUF into the models dir (hard
   * link, else copy); a LoRA adapter into `<models>/adapters/<name>.gguf` with its lineage beside it
   * (`<name>.json`), served as the model `<base>+<name>`.
   */
  private async publish(run: TrainingRun, output: string): Promise<TrainingResult> {
    await stat(output);
    if (!output.endsWith('.gguf')) return { modelId: '', modelPath: output };
    const { job } = run;
    const modelsDir = this.options.modelsDir();
    const lora = job.plan.method === 'lora';
    const dir = lora ? join(modelsDir, ADAPTERS_DIR) : modelsDir;
    await mkdir(dir, { recursive: true });
    let name = job.plan.outputModelId;
    if (existsSync(join(dir, `${name}.gguf`))) name = `${name}-${job.id}`;
    const target = join(dir, `${name}.gguf`);
    const tmp = join(dir, `.${name}.publishing`);
    await rm(tmp, { force: true });
    try {
      await link(output, tmp);
    } catch {
      await copyFile(output, tmp);
    }
    const lineage = {
      baseModel: job.baseModel,
      baseSha256: run.hashes?.base ?? '',
      datasetSha256: run.hashes?.dataset ?? '',
      method: job.plan.method ?? 'full',
      trainableParams: job.plan.trainableParams ?? 0,
      hyperParams: { ...job.request.hyperParams, ...(job.request.loraConfig ? { loraConfig: job.request.loraConfig } : {}) },
      ...(run.progress.loss !== undefined ? { finalLoss: run.progress.loss } : {}),
      ...(run.progress.valLoss !== undefined ? { finalValLoss: run.progress.valLoss } : {}),
      completedAt: iso(this.options.clock.now()),
    };
    if (!lora) {
      await rename(tmp, target);
      return { modelId: name, modelPath: target, lineage };
    }
    // The engine serves an adapter on its base by model id, so the base must be a model of the models dir.
    const baseId = isInside(modelsDir, job.plan.modelPath) && dirname(job.plan.modelPath) === modelsDir ? basename(job.plan.modelPath, '.gguf') : undefined;
    const sidecar: AdapterSidecar = { base: baseId ?? null, basePath: job.plan.modelPath, jobId: job.id, ...lineage };
    await writeFile(join(dir, `${name}.json`), JSON.stringify(sidecar, null, 2));
    await rename(tmp, target);
    if (!baseId) {
      this.log(job.id, 'warn', `the base ${job.plan.modelPath} is not in the models dir, so the engine cannot serve the adapter by id; import the base into the models dir as well`);
      return { modelId: '', modelPath: target, adapter: name, lineage };
    }
    return { modelId: `${baseId}+${name}`, modelPath: target, adapter: name, lineage };
  }

  private finish(id: string, status: 'completed' | 'failed' | 'cancelled', error: string | null, result: JobRow['result']): void {
    if (this.jobs.finish(id, status, this.options.clock.now(), error, result)) {
      if (status !== 'completed') this.log(id, status === 'failed' ? 'error' : 'info', status === 'failed' ? `failed: ${error ?? 'unknown error'}` : 'cancelled');
      this.emitStatus(id);
    }
  }

  // --- helpers ---

  private require(jobId: string): JobRow {
    const job = this.jobs.get(jobId);
    if (!job) throw new AppError(ErrorCode.TRAINING_JOB_NOT_FOUND, `Training job not found: ${jobId}`);
    return job;
  }

  private toStatus(job: JobRow): TrainingJobStatus {
    const now = this.options.clock.now();
    const p = this.active?.run.job.id === job.id ? this.active.run.progress : job.progress;
    const end = job.completedAt ?? now;
    const elapsed = job.startedAt !== null ? Math.max(0, Math.round((end - job.startedAt) / 1000)) : 0;
    const step = p?.currentStep ?? 0;
    const total = p?.totalSteps ?? 0;
    const remaining = job.status === 'running' && step > 0 && total > step ? Math.round((elapsed * (total - step)) / step) : 0;
    return {
      jobId: job.id,
      status: job.status,
      progress: {
        currentEpoch: p?.currentEpoch ?? 0,
        currentStep: step,
        totalSteps: total,
        ...(p?.loss !== undefined ? { loss: p.loss } : {}),
        learningRate: p?.learningRate ?? job.request.hyperParams.learningRate,
        ...(p?.valLoss !== undefined ? { valLoss: p.valLoss } : {}),
        ...(p?.accuracy !== undefined ? { accuracy: p.accuracy } : {}),
      },
      elapsedTimeSeconds: elapsed,
      estimatedTimeRemainingSeconds: remaining,
      createdAt: iso(job.createdAt),
      ...(job.startedAt !== null ? { startedAt: iso(job.startedAt) } : {}),
      ...(job.completedAt !== null ? { completedAt: iso(job.completedAt) } : {}),
      ...(job.status === 'failed' ? { error: job.error ?? 'unknown error' } : {}),
      baseModel: job.baseModel,
      outputDir: job.outputDir,
      backend: job.backend,
      ...(job.plan.method ? { method: job.plan.method } : {}),
      ...(job.plan.trainableParams !== undefined ? { trainableParams: job.plan.trainableParams } : {}),
      ...(job.result && job.result.modelId !== '' ? { result: job.result } : {}),
    };
  }

  private emit(jobId: string, event: TrainingEvent): void {
    const set = this.listeners.get(jobId);
    if (!set) return;
    for (const listener of [...set]) {
      try {
        listener(event);
      } catch (err) {
        this.options.logger.warn({ err, jobId }, 'training event listener failed');
      }
    }
  }

  private emitStatus(jobId: string): void {
    if (!this.listeners.has(jobId)) return;
    const job = this.jobs.get(jobId);
    if (job) this.emit(jobId, { type: 'status', data: this.toStatus(job) });
  }

  private log(jobId: string, level: 'info' | 'warn' | 'error', message: string): void {
    const at = this.options.clock.now();
    const id = this.jobs.addLog(jobId, at, level, message);
    this.options.logger[level]({ jobId }, message);
    this.emit(jobId, { type: 'log', data: { id, at: iso(at), level, message } });
  }
}
