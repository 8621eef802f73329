import { mkdir } from 'node:fs/promises';
import type { Logger } from 'pino';
import type { Clock, TimerHandle } from '../../base/clock.js';
import { cudaDriverRemedy } from '../../base/gpuErrors.js';
import { AppError, ErrorCode } from '../../base/errors.js';
import { DisposableStore, type Disposable } from '../../base/lifecycle.js';
import { ManagedProcess, type ChildProcessRegistry, type ProcessExit } from '../../base/managedProcess.js';
import type { GpuLease, GpuLockPort, GpuTenantPort, HeartbeatPort } from '../../base/ports.js';
import { processStartTime } from '../../base/processUtil.js';
import type { LossPoint, TrainingResult, ValidationPoint } from '../../../../shared/contracts/training.js';
import type { JobProgress, JobRow } from './jobStore.js';
import { parseTrainerLine, type TrainerMessage } from './protocol.js';
import type { TrainingMetrics } from './trainingMetrics.js';

const MAX_LOG_LINES_PER_JOB = 5000;

/** A timer as a disposable (cancelled when its owner is disposed). */
const timerDisposable = (timer: TimerHandle): Disposable => ({ dispose: () => timer.cancel() });

/**
 * Known native failures of the llama trainer, in words an operator can act on. The llama.cpp in
 * node-llama-cpp 3.22.1 sizes its compute graph for inference (max(1024, 8 × tensors) nodes); the
 * trainer enlarges that budget 8× (trainer.cpp), which was measured to fit models of 2–32 layers;
 * a model whose training graph still does not fit ends with this assertion.
 */
export function explainTrainerCrash(nativeError: string | undefined): string | undefined {
  if (nativeError && /hash_set\.size >= graph->n_nodes|cgraph->n_nodes < cgraph->size/.test(nativeError)) {
    return "This model's training graph is larger than the trainer's graph budget (8x llama.cpp's inference budget, TRAIN_GRAPH_FACTOR in resources/trainer/trainer.cpp). Raise that factor, or use training.backend \"command\" with an external trainer";
  }
  return nativeError ? cudaDriverRemedy(nativeError, 'set training.gpu to "cpu"') : undefined;
}

/** What a run executes: the trainer, its arguments and environment, and the lineage hashes it read. */
export interface TrainerCommand {
  file: string;
  args: string[];
  env: Record<string, string>;
  /** sha256 of the base and the dataset as this run read them (lineage of the result). */
  hashes?: { base: string; dataset: string };
}

/** Where a run's observations go: the service persists them and turns them into events. */
export interface TrainingRunSink {
  /** A log line of the job (already capped per job by the run). */
  log(level: 'info' | 'warn' | 'error', message: string): void;
  /** A training loss point (one per step that reported a loss). */
  loss(point: LossPoint): void;
  /** A validation loss point. */
  validation(point: ValidationPoint): void;
  /** The progress to persist (at most once a second, and at epoch ends and the end). */
  saveProgress(progress: JobProgress): void;
  /** The trainer's pid and kernel start time, persisted so a restarted console can stop a leftover trainer. */
  trainerProcess(info: { pid: number; startTime: string | null }): void;
}

export interface TrainingRunOptions {
  job: JobRow;
  /** The GPU lock taken for this run (renewed while it runs, released when it ends). */
  lease: GpuLease | undefined;
  clock: Clock;
  logger: Logger;
  metrics: TrainingMetrics;
  sink: TrainingRunSink;
  gpuLocks?: GpuLockPort;
  heartbeats?: HeartbeatPort;
  heartbeatIntervalMs: number;
  /** The engine gives the GPU up while the run holds its lock (unless the policy is `keep`). */
  gpuTenant?: { port: GpuTenantPort; policy: 'unload' | 'cpu' | 'keep' };
  /** SIGTERM → SIGKILL grace of cancel() and close() (read when they are called: config may change). */
  cancelGraceMs: () => number;
  /** Where /threads lists the trainer. */
  children?: ChildProcessRegistry;
  /** Publishes the trained output (the run ends `completed` only when this resolves). */
  publish: (run: TrainingRun, output: string) => Promise<TrainingResult>;
}

/** How a run ended. */
export interface TrainingRunResult {
  status: 'completed' | 'failed' | 'cancelled';
  error: string | null;
  result: TrainingResult | null;
}

/** Why a run is ended early, and how it is recorded. */
export interface RunEnd {
  status: 'cancelled' | 'failed';
  reason: string;
}

/**
 * One running training job. It owns what the job holds while it runs: the trainer child process
 * (its own process group), the GPU lock's lease renewal (retried across a lock-store blip until the
 * lease would expire), the heartbeat timer and the heartbeat-timeout subscription; it parses the
 * trainer's JSON-lines protocol into progress, loss and log lines for its sink. `ended` resolves
 * (never rejects) once the trainer is gone, its output is published (on success) and the lock,
 * the engine's GPU and the heartbeat are released.
 *
 * Ending early: `close(end, graceMs)` asks the trainer to stop (SIGTERM to its group; the native
 * trainer prints `cancelled` and exits at its next check, it does not checkpoint on SIGTERM: its
 * checkpoints are the ones written every saveSteps) and kills it after the grace; `cancel()` is
 * close() by request; `destroy()` kills it now.
 */
export class TrainingRun implements Disposable {
  readonly job: JobRow;
  readonly ended: Promise<TrainingRunResult>;
  private readonly progressValue: JobProgress;
  private readonly resources = new DisposableStore();
  private resolveEnded!: (result: TrainingRunResult) => void;
  private leaseValue: GpuLease | undefined;
  private proc: ManagedProcess | undefined;
  private abortValue: RunEnd | undefined;
  /** How long an early end lets the trainer stop after SIGTERM (set with `abortValue`). */
  private grace: number | AbortSignal = 0;
  private settling = false;
  /** Since when renewals of the lease fail because the lock store is away (null: they don't). */
  private leaseOutageSince: number | null = null;
  private lastError: string | undefined;
  private readonly stderrTail: string[] = [];
  /** The first native assertion or error line the trainer printed (a backtrace follows it). */
  private nativeError: string | undefined;
  private doneOutput: string | undefined;
  private logLines = 0;
  private lastProgressSave = 0;
  private lastStep = 0;
  private gpuYielded = false;
  private hashesValue: { base: string; dataset: string } | undefined;

  constructor(private readonly options: TrainingRunOptions) {
    this.job = options.job;
    this.leaseValue = options.lease;
    this.progressValue = { currentEpoch: 0, currentStep: 0, totalSteps: 0, learningRate: options.job.request.hyperParams.learningRate };
    this.ended = new Promise((resolve) => (this.resolveEnded = resolve));
  }

  /** Progress as the trainer last reported it. */
  get progress(): Readonly<JobProgress> {
    return this.progressValue;
  }

  /** sha256 of the base and the dataset as the trainer read them (once prepared). */
  get hashes(): { base: string; dataset: string } | undefined {
    return this.hashesValue;
  }

  /** Set once the run is being ended early: why, and as what. */
  get abort(): RunEnd | undefined {
    return this.abortValue;
  }

  /**
   * Registers the heartbeat and starts lease renewal, runs `prepare` (the trainer command), has
   * the engine give the GPU up, and spawns the trainer. Resolves once the trainer is spawned or the
   * run ended before (a failure is the run's result, never thrown); await `ended` for the end.
   */
  async start(prepare: () => Promise<TrainerCommand>): Promise<void> {
    const { job, clock, heartbeats, gpuLocks, metrics } = this.options;
    const lease = this.leaseValue;
    metrics.loss.reset();
    metrics.validationLoss.reset();
    try {
      if (heartbeats) {
        await heartbeats.register({ taskId: job.id, owner: 'training', ...(lease ? { gpuId: lease.gpuId, fencingToken: lease.fencingToken } : {}), metadata: { baseModel: job.baseModel } });
        this.resources.defer(heartbeats.onTimeout(job.id, () => this.stop({ status: 'failed', reason: 'heartbeat timed out; monitoring released the GPU lock' })));
        this.resources.add(timerDisposable(clock.setInterval(() => this.beat(heartbeats), this.options.heartbeatIntervalMs)));
      }
      if (lease && gpuLocks) this.renewLease(lease, gpuLocks);
      const command = await prepare();
      this.hashesValue = command.hashes;
      const tenant = this.options.gpuTenant;
      if (lease && tenant && tenant.policy !== 'keep') {
        this.options.sink.log('info', `asking the engine to give up the GPU (training.enginePolicy "${tenant.policy}")`);
        await tenant.port.yieldGpu({ gpuId: lease.gpuId, holder: job.id, purpose: 'training', policy: tenant.policy });
        this.gpuYielded = true;
      }
      if (this.abortValue) {
        this.settle(null);
        return;
      }
      await mkdir(job.plan.outputDir, { recursive: true });
      this.spawn(command);
    } catch (err) {
      this.lastError = err instanceof Error ? err.message : String(err);
      this.settle(null);
    }
  }

  /**
   * Ends the run early, gracefully: SIGTERM to the trainer's group now, SIGKILL when `grace` is
   * over (milliseconds, default training.cancelGraceSeconds, or until an AbortSignal fires: a
   * drain's deadline); recorded as `end`. The first end wins; safe to call twice.
   */
  close(end: RunEnd, grace: number | AbortSignal = this.options.cancelGraceMs()): Promise<TrainingRunResult> {
    this.stop(end, grace);
    return this.ended;
  }

  /** Cancels by request (status `cancelled`), with the configured grace. */
  cancel(): Promise<TrainingRunResult> {
    return this.close({ status: 'cancelled', reason: 'cancelled by request' });
  }

  /** Aborts now: SIGKILL to the trainer's group, no grace (recorded as `end`, unless already ending). */
  destroy(end: RunEnd = { status: 'failed', reason: 'the training run was aborted' }): Promise<TrainingRunResult> {
    this.stop(end, 0);
    this.proc?.destroy();
    return this.ended;
  }

  async dispose(): Promise<void> {
    await this.destroy();
  }

  private stop(end: RunEnd, grace: number | AbortSignal = this.options.cancelGraceMs()): void {
    if (this.abortValue || this.settling) return;
    this.abortValue = end;
    this.grace = grace;
    this.log(end.status === 'cancelled' ? 'info' : 'error', `stopping: ${end.reason}`);
    this.kill();
  }

  /** SIGTERM to the trainer's group now, SIGKILL after the grace (the exit settles the run). */
  private kill(): void {
    const proc = this.proc;
    const grace = this.grace;
    if (!proc || proc.hasExited) return;
    if (typeof grace === 'number' && grace <= 0) {
      proc.destroy();
      return;
    }
    const within = typeof grace === 'number' ? `within ${grace / 1000} s of SIGTERM` : 'by its deadline';
    void proc.close(grace, () => this.log('warn', `trainer did not stop ${within}; sending SIGKILL`));
  }

  private spawn(command: TrainerCommand): void {
    const { job, clock, children } = this.options;
    // Its own process group: cancel reaches a trainer's workers too (a PEFT script's data loaders).
    const proc = ManagedProcess.spawn({
      command: command.file,
      args: command.args,
      env: { ...process.env, ...command.env },
      clock,
      onLine: (stream, line) => (stream === 'stdout' ? this.onStdout(line) : this.onStderr(line)),
      ...(children ? { registry: { registry: children, name: `trainer ${job.id}`, kind: 'trainer' as const, detail: () => [`job: ${job.id}`, `backend: ${job.plan.backend}`] } } : {}),
    });
    this.proc = this.resources.add(proc);
    const pid = proc.pid;
    if (pid !== undefined) this.options.sink.trainerProcess({ pid, startTime: processStartTime(pid) });
    void proc.exited.then((exit) => {
      if (exit.error) this.lastError = `cannot start the trainer: ${exit.error.message}`;
      // Whatever the trainer left running in its group (workers) was killed when it exited.
      if (exit.strays && !this.abortValue) this.log('warn', `the trainer left processes in its group ${pid}; killed them`);
      this.settle(exit);
    });
    if (this.abortValue) this.kill();
  }

  private beat(heartbeats: HeartbeatPort): void {
    const { currentStep, totalSteps } = this.progressValue;
    // `progress` (0–1) is what monitoring shows; the rest travels as detail.
    void heartbeats.beat(this.job.id, { ...this.progressValue, progress: totalSteps > 0 ? Math.min(1, currentStep / totalSteps) : 0 }).catch((err: unknown) => {
      // CONFLICT: monitoring says the task no longer holds its GPU lock (forced release).
      if (err instanceof AppError && err.code === ErrorCode.CONFLICT && this.options.lease) this.lockLost(err);
      else this.options.logger.warn({ err, jobId: this.job.id }, 'heartbeat failed');
    });
  }

  /**
   * Renews the lease every third of its TTL; renewing also notices a forced release (heartbeats
   * notice it sooner when monitoring is wired). A renewal the lock store could not answer (503:
   * Redis of a cluster away for a moment) is retried until the lock would expire: the lock is ours
   * until the last renewal's TTL runs out, and nobody else can take it before. Only past that the
   * run fails (lock lost).
   */
  private renewLease(lease: GpuLease, gpuLocks: GpuLockPort): void {
    const { clock } = this.options;
    const renewMs = Math.max(1000, Math.min(30_000, (lease.ttlSeconds * 1000) / 3));
    let heldUntil = clock.monotonic() + lease.ttlSeconds * 1000;
    let renewing = false;
    let retry: TimerHandle | undefined;
    this.resources.add({ dispose: () => retry?.cancel() });
    const renew = (): void => {
      const held = this.leaseValue;
      if (!held || renewing || this.abortValue) return;
      renewing = true;
      retry?.cancel();
      retry = undefined;
      const sentAt = clock.monotonic();
      gpuLocks.renew(held.gpuId, held.holder, held.fencingToken).then(
        (renewed) => {
          renewing = false;
          this.leaseValue = renewed;
          heldUntil = sentAt + renewed.ttlSeconds * 1000;
          if (this.leaseOutageSince !== null) this.log('info', `GPU lock renewed again after ${((clock.monotonic() - this.leaseOutageSince) / 1000).toFixed(1)} s of failed renewals`);
          this.leaseOutageSince = null;
        },
        (err: unknown) => {
          renewing = false;
          if (!(err instanceof AppError && err.code === ErrorCode.UNAVAILABLE)) {
            this.lockLost(err);
            return;
          }
          const now = clock.monotonic();
          const left = heldUntil - now;
          const firstFailure = this.leaseOutageSince === null;
          if (firstFailure) this.leaseOutageSince = now;
          if (left <= 0) {
            this.lockLost(err);
            return;
          }
          if (firstFailure) {
            this.log('warn', `could not renew the GPU lock (${err.message}); retrying until it would expire in ${(left / 1000).toFixed(1)} s`);
          }
          retry = clock.setTimeout(renew, Math.max(50, Math.min(500, left / 4)));
        },
      );
    };
    this.resources.add(timerDisposable(clock.setInterval(renew, renewMs)));
  }

  /**
   * While the lock store is away nobody can force-release the lock, so a lock found gone then (a
   * heartbeat noticing it before the renewal retry does) ran out its TTL: the run says so.
   */
  private leaseOutageReason(): string | undefined {
    const held = this.leaseValue;
    return held && this.leaseOutageSince !== null ? `gpu lock lost: not renewed within its ${held.ttlSeconds} s TTL (lock store unavailable)` : undefined;
  }

  /** The GPU lock was taken away (forced release, expiry): the run fails with the contract's reason. */
  private lockLost(err: unknown, reason = this.leaseOutageReason() ?? 'gpu lock force-released'): void {
    if (this.abortValue || this.settling) return;
    this.leaseValue = undefined;
    this.log('error', `lost the GPU lock: ${(err as Error).message}`);
    this.stop({ status: 'failed', reason });
  }

  // --- the trainer's output ---

  private onStdout(line: string): void {
    const parsed = parseTrainerLine(line);
    if (parsed.ok === 'ignored') return;
    if (parsed.ok === false) {
      this.log('warn', `unparsed trainer output (${parsed.reason})`);
      return;
    }
    this.onMessage(parsed.message);
  }

  private onStderr(line: string): void {
    if (line.trim() === '') return;
    this.stderrTail.push(line);
    if (this.stderrTail.length > 20) this.stderrTail.shift();
    if (this.nativeError === undefined && /GGML_ASSERT|\berror:/i.test(line)) this.nativeError = line.trim();
    this.log('warn', line);
  }

  private onMessage(m: TrainerMessage): void {
    const { clock, metrics, sink } = this.options;
    const p = this.progressValue;
    switch (m.type) {
      case 'start':
        p.totalSteps = m.totalSteps;
        this.log('info', `training ${m.totalSteps} steps${m.stepsPerEpoch ? ` (${m.stepsPerEpoch} per epoch)` : ''}`);
        this.saveProgress(true);
        break;
      case 'progress': {
        p.currentEpoch = m.epoch;
        p.currentStep = m.step;
        p.totalSteps = m.totalSteps;
        if (m.learningRate !== undefined) p.learningRate = m.learningRate;
        if (m.accuracy !== undefined) p.accuracy = m.accuracy;
        if (m.step > this.lastStep) {
          metrics.steps.inc(m.step - this.lastStep);
          this.lastStep = m.step;
        }
        if (m.loss !== undefined) {
          p.loss = m.loss;
          metrics.loss.set(m.loss);
          sink.loss({ step: m.step, epoch: m.epoch, loss: m.loss, ...(m.accuracy !== undefined ? { accuracy: m.accuracy } : {}), at: clock.now() });
        }
        if (m.valLoss !== undefined) this.onValidation(m.epoch, m.step, m.valLoss, undefined);
        this.saveProgress(false);
        break;
      }
      case 'eval':
        this.onValidation(m.epoch, m.step, m.valLoss, m.valAccuracy);
        break;
      case 'epoch': {
        const parts = [`epoch ${m.epoch} done at step ${m.step}`];
        if (m.loss !== undefined) parts.push(`loss ${m.loss.toFixed(4)}`);
        if (m.valLoss !== undefined) parts.push(`validation loss ${m.valLoss.toFixed(4)}`);
        if (m.seconds !== undefined) parts.push(`${m.seconds.toFixed(2)} s`);
        if (m.tokensPerSecond !== undefined) parts.push(`${Math.round(m.tokensPerSecond)} tokens/s`);
        this.log('info', parts.join(', '));
        this.saveProgress(true);
        break;
      }
      case 'checkpoint':
        this.log('info', `checkpoint at step ${m.step}: ${m.path}`);
        break;
      case 'log':
        this.log(m.level, m.message);
        break;
      case 'done':
        this.doneOutput = m.output;
        break;
      case 'error':
        this.lastError = m.message;
        this.log('error', m.message);
        break;
      case 'cancelled':
        this.log('info', 'trainer stopped on request');
        break;
    }
  }

  private onValidation(epoch: number, step: number, valLoss: number, valAccuracy: number | undefined): void {
    this.progressValue.valLoss = valLoss;
    this.options.metrics.validationLoss.set(valLoss);
    this.options.sink.validation({ step, epoch, valLoss, ...(valAccuracy !== undefined ? { valAccuracy } : {}), at: this.options.clock.now() });
  }

  /** Progress is written at most once a second (and at epoch ends), not on every step. */
  private saveProgress(force: boolean): void {
    const now = this.options.clock.monotonic();
    if (!force && now - this.lastProgressSave < 1000) return;
    this.lastProgressSave = now;
    this.options.sink.saveProgress(this.progressValue);
  }

  /** A log line of the run, capped per job so a chatty trainer cannot fill the disk. */
  private log(level: 'info' | 'warn' | 'error', message: string): void {
    this.logLines += 1;
    if (this.logLines > MAX_LOG_LINES_PER_JOB) return;
    if (this.logLines === MAX_LOG_LINES_PER_JOB) message = `log limit of ${MAX_LOG_LINES_PER_JOB} lines reached; further lines are dropped`;
    this.options.sink.log(level, message.length > 4000 ? `${message.slice(0, 4000)}…` : message);
  }

  // --- the end ---

  /** The trainer is gone (or never started: `exit` null): works out the result and releases what the run holds. */
  private settle(exit: ProcessExit | null): void {
    if (this.settling) return;
    this.settling = true;
    void this.settleAsync(exit).then(this.resolveEnded, (err: unknown) => {
      this.options.logger.error({ err, jobId: this.job.id }, 'finishing a training job failed');
      this.resolveEnded({ status: 'failed', error: `finishing the job failed: ${(err as Error).message}`, result: null });
    });
  }

  private async settleAsync(exit: ProcessExit | null): Promise<TrainingRunResult> {
    const { job, logger, gpuLocks, heartbeats } = this.options;
    const id = job.id;
    await this.resources.dispose().catch((err: unknown) => logger.warn({ err, jobId: id }, "releasing the run's resources failed"));
    this.saveProgress(true);
    const code = exit ? exit.code : null;
    const signal = exit ? exit.signal : null;
    let status: TrainingRunResult['status'];
    let error: string | null = null;
    let result: TrainingResult | null = null;
    if (this.abortValue) {
      status = this.abortValue.status;
      error = status === 'failed' ? this.abortValue.reason : null;
    } else if (code === 0 && this.doneOutput) {
      try {
        result = await this.options.publish(this, this.doneOutput);
        status = 'completed';
      } catch (err) {
        status = 'failed';
        error = `training finished but the model could not be published: ${(err as Error).message}`;
      }
    } else {
      status = 'failed';
      const how = signal ? `was killed by ${signal}` : code === null ? 'could not be started' : `exited with code ${code}`;
      const reason = this.lastError ?? (code === 0 ? 'the trainer exited without reporting a result' : `the trainer ${how}`);
      const tail = this.lastError ? '' : (this.nativeError ?? this.stderrTail.slice(-3).join(' | '));
      error = tail ? `${reason}: ${tail}` : reason;
      const explained = this.lastError ? undefined : explainTrainerCrash(this.nativeError);
      if (explained) error = `${error}. ${explained}`;
    }
    const lease = this.leaseValue;
    if (lease && gpuLocks) {
      await gpuLocks.release(lease.gpuId, lease.holder, lease.fencingToken).catch((err: unknown) => {
        logger.warn({ err, jobId: id }, 'releasing the GPU lock failed');
      });
    }
    if (this.gpuYielded) this.options.gpuTenant?.port.reclaimGpu(id);
    if (heartbeats) {
      await heartbeats.complete(id, status).catch((err: unknown) => logger.warn({ err, jobId: id }, 'ending the heartbeat failed'));
    }
    return { status, error, result };
  }
}
