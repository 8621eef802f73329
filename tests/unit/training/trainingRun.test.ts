import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pino from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FakeClock } from '../../../electron/core/base/clock.js';
import { AppError, ErrorCode } from '../../../electron/core/base/errors.js';
import { ChildProcessRegistry } from '../../../electron/core/base/managedProcess.js';
import { MetricsRegistry } from '../../../electron/core/base/metrics.js';
import type { GpuLease, GpuLockPort, HeartbeatPort } from '../../../electron/core/base/ports.js';
import type { JobProgress, JobRow } from '../../../electron/core/services/training/jobStore.js';
import { TrainingMetrics } from '../../../electron/core/services/training/trainingMetrics.js';
import { TrainingRun, type TrainerCommand } from '../../../electron/core/services/training/trainingRun.js';
import type { LossPoint, StartTrainingRequest } from '../../../shared/contracts/training.js';
import { processesMentioning, waitUntil } from '../../helpers/training.js';

const FAKE_TRAINER = join(dirname(fileURLToPath(import.meta.url)), 'fixtures', 'fakeTrainer.mjs');

/** A lock store whose renewals can be made to fail as unavailable (a Redis blip) or as lost. */
class BlinkingLocks implements GpuLockPort {
  renewFails: 'no' | 'unavailable' | 'conflict' = 'no';
  renewals = 0;
  released: number[] = [];
  async acquire(): Promise<GpuLease> {
    throw new Error('not used: the run is given its lease');
  }
  async renew(gpuId: number, holder: string, fencingToken: number): Promise<GpuLease> {
    this.renewals += 1;
    if (this.renewFails === 'unavailable') throw new AppError(ErrorCode.UNAVAILABLE, 'lock store unavailable');
    if (this.renewFails === 'conflict') throw new AppError(ErrorCode.CONFLICT, 'stale fencing token');
    return { gpuId, holder, purpose: 'training', fencingToken, ttlSeconds: 3, expiresAt: 0 };
  }
  async release(_gpuId: number, _holder: string, fencingToken: number): Promise<void> {
    this.released.push(fencingToken);
  }
}

describe('TrainingRun (one running job, with the fake trainer)', () => {
  let dir: string;
  let clock: FakeClock;
  let locks: BlinkingLocks;
  let children: ChildProcessRegistry;
  let logs: string[];
  let losses: LossPoint[];
  let saved: JobProgress[];
  let published: string[];
  let runs: TrainingRun[];

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'training-run-'));
    clock = new FakeClock();
    locks = new BlinkingLocks();
    children = new ChildProcessRegistry();
    logs = [];
    losses = [];
    saved = [];
    published = [];
    runs = [];
  });
  afterEach(async () => {
    await Promise.all(runs.map((r) => r.destroy()));
    rmSync(dir, { recursive: true, force: true });
  });

  /** A run of the fake trainer with `plan` as its dataset (see fixtures/fakeTrainer.mjs). */
  const makeRun = (name: string, plan: Record<string, unknown>, lease?: GpuLease, heartbeats?: HeartbeatPort) => {
    const datasetPath = join(dir, `${name}.json`);
    writeFileSync(datasetPath, JSON.stringify(plan));
    const configPath = join(dir, `${name}-config.json`);
    const outputDir = join(dir, name);
    writeFileSync(configPath, JSON.stringify({ datasetPath, outputPath: join(outputDir, 'model.gguf'), learningRate: 0.01 }));
    const job: JobRow = {
      id: `job-${name}`,
      status: 'running',
      backend: 'command',
      baseModel: 'org/remote-model',
      outputDir,
      datasetPath,
      request: { baseModel: 'org/remote-model', datasetPath, outputDir, hyperParams: { learningRate: 0.01 } } as StartTrainingRequest,
      plan: { backend: 'command', modelPath: 'org/remote-model', datasetPath, outputDir, outputModelId: name },
      createdAt: clock.now(),
      startedAt: clock.now(),
      completedAt: null,
      error: null,
      progress: null,
      result: null,
    };
    const run = new TrainingRun({
      job,
      lease,
      clock,
      logger: pino({ level: 'silent' }),
      metrics: new TrainingMetrics(new MetricsRegistry(), { countByStatus: () => ({}) }),
      sink: {
        log: (_level, message) => logs.push(message),
        loss: (point) => losses.push(point),
        validation: () => undefined,
        saveProgress: (progress) => saved.push({ ...progress }),
        trainerProcess: () => undefined,
      },
      ...(lease ? { gpuLocks: locks } : {}),
      ...(heartbeats ? { heartbeats } : {}),
      heartbeatIntervalMs: 1000,
      cancelGraceMs: () => 5000,
      children,
      publish: async (_run, output) => {
        published.push(readFileSync(output, 'utf8'));
        return { modelId: name, modelPath: output };
      },
    });
    runs.push(run);
    const command: TrainerCommand = { file: process.execPath, args: [FAKE_TRAINER, configPath], env: {} };
    return { run, start: () => run.start(async () => command), configPath };
  };
  const lease = (): GpuLease => ({ gpuId: 0, holder: 'job', purpose: 'training', fencingToken: 7, ttlSeconds: 3, expiresAt: 0 });
  const stepped = (run: TrainingRun, steps = 1) => waitUntil(() => run.progress.currentStep >= steps, 10_000, `the trainer to report step ${steps}`);

  it('parses the trainer protocol into progress, losses and logs, publishes its output and ends completed', async () => {
    const { run, start } = makeRun('ok', { steps: 3 });
    await start();
    expect(await run.ended).toEqual({ status: 'completed', error: null, result: { modelId: 'ok', modelPath: join(dir, 'ok', 'model.gguf') } });
    expect(losses.map((p) => p.loss)).toEqual([3, 1.5, 1]);
    expect(run.progress).toMatchObject({ currentEpoch: 1, currentStep: 3, totalSteps: 3, loss: 1, valLoss: 1.5 });
    expect(saved.at(-1)).toMatchObject({ currentStep: 3, totalSteps: 3 });
    expect(published).toEqual(['GGUF-fake']);
    expect(logs).toContain('training 3 steps (3 per epoch)');
    expect(logs.some((m) => m.startsWith('unparsed trainer output (not JSON'))).toBe(true);
    expect(children.list()).toEqual([]);
  });

  it('close() asks the trainer to stop and kills it after the grace when it ignores SIGTERM', async () => {
    const { run, start, configPath } = makeRun('stubborn', { steps: 100_000, stepMs: 20, ignoreTerm: true });
    await start();
    await stepped(run);
    const ended = run.close({ status: 'failed', reason: 'shutting down' }, 2000);
    await waitUntil(() => logs.some((m) => m.includes('ignoring SIGTERM')), 5000, 'the trainer to get (and ignore) SIGTERM');
    expect(processesMentioning(configPath).length).toBe(1);
    clock.advance(2000);
    expect(await ended).toEqual({ status: 'failed', error: 'shutting down', result: null });
    expect(processesMentioning(configPath)).toEqual([]);
    expect(logs).toContain('trainer did not stop within 2 s of SIGTERM; sending SIGKILL');
    expect(published).toEqual([]);
  });

  it('close() with a deadline signal kills a trainer that ignores SIGTERM when the deadline fires', async () => {
    const { run, start, configPath } = makeRun('deadline', { steps: 100_000, stepMs: 20, ignoreTerm: true });
    await start();
    await stepped(run);
    const deadline = new AbortController();
    const ended = run.close({ status: 'failed', reason: 'the drain deadline passed' }, deadline.signal);
    await waitUntil(() => logs.some((m) => m.includes('ignoring SIGTERM')), 5000, 'the trainer to get (and ignore) SIGTERM');
    clock.advance(60_000); // no grace in clock time: only the signal ends it
    expect(processesMentioning(configPath).length).toBe(1);
    deadline.abort();
    expect(await ended).toEqual({ status: 'failed', error: 'the drain deadline passed', result: null });
    expect(processesMentioning(configPath)).toEqual([]);
    expect(logs).toContain('trainer did not stop by its deadline; sending SIGKILL');
  });

  it('destroy() kills the trainer now, without a grace; the first end wins', async () => {
    const { run, start, configPath } = makeRun('abort', { steps: 100_000, stepMs: 20, ignoreTerm: true });
    await start();
    await stepped(run);
    void run.cancel(); // graceful, 5 s grace on the (fake, unmoved) clock: the trainer ignores it
    await waitUntil(() => logs.some((m) => m.includes('ignoring SIGTERM')), 5000, 'the trainer to get (and ignore) SIGTERM');
    expect(await run.destroy()).toEqual({ status: 'cancelled', error: null, result: null });
    expect(processesMentioning(configPath)).toEqual([]);
  });

  it('retries lease renewals across a lock-store blip, and keeps training', async () => {
    const { run, start } = makeRun('blip', { steps: 100_000, stepMs: 20 }, lease());
    await start();
    await stepped(run);
    locks.renewFails = 'unavailable';
    await clock.advanceAsync(1500, 250); // a renewal at 1 s fails; retried every 500 ms
    expect(locks.renewals).toBeGreaterThanOrEqual(2);
    expect(logs.some((m) => m.startsWith('could not renew the GPU lock (lock store unavailable); retrying until it would expire in 2.0 s'))).toBe(true);
    locks.renewFails = 'no';
    await clock.advanceAsync(500, 250);
    expect(logs.some((m) => /^GPU lock renewed again after \d/.test(m))).toBe(true);
    const step = run.progress.currentStep;
    await stepped(run, step + 2);
    const ended = run.close({ status: 'cancelled', reason: 'done with the test' });
    expect((await ended).status).toBe('cancelled');
    expect(locks.released).toEqual([7]);
  });

  it('fails the run when the lock store stays away past the lease TTL (lock lost, not released)', async () => {
    const { run, start } = makeRun('outage', { steps: 100_000, stepMs: 20 }, lease());
    await start();
    await stepped(run);
    locks.renewFails = 'unavailable';
    await clock.advanceAsync(4000, 250);
    expect(await run.ended).toEqual({ status: 'failed', error: 'gpu lock lost: not renewed within its 3 s TTL (lock store unavailable)', result: null });
    expect(logs).toContain('lost the GPU lock: lock store unavailable');
    expect(locks.released).toEqual([]);
  });

  it('a heartbeat that finds the lock gone during the outage gives the same reason (TTL ran out), not a forced release', async () => {
    // Monitoring's own view lets the lock expire while Redis is away; its heartbeat can notice that
    // before the renewal retry does. Both must tell the same story.
    const beats: HeartbeatPort = {
      register: async () => undefined,
      complete: async () => undefined,
      onTimeout: () => () => undefined,
      beat: async () => {
        if (locks.renewFails === 'unavailable' && locks.renewals > 1) throw new AppError(ErrorCode.CONFLICT, 'Task job-racing no longer holds gpu_lock:0: stop using the GPU');
      },
    };
    const { run, start } = makeRun('racing', { steps: 100_000, stepMs: 20 }, lease(), beats);
    await start();
    await stepped(run);
    locks.renewFails = 'unavailable';
    await clock.advanceAsync(2500, 250);
    expect(await run.ended).toEqual({ status: 'failed', error: 'gpu lock lost: not renewed within its 3 s TTL (lock store unavailable)', result: null });
    expect(logs).toContain('lost the GPU lock: Task job-racing no longer holds gpu_lock:0: stop using the GPU');
  });

  it('fails the run at once when a renewal says the lock is someone else\'s', async () => {
    const { run, start } = makeRun('stolen', { steps: 100_000, stepMs: 20 }, lease());
    await start();
    await stepped(run);
    locks.renewFails = 'conflict';
    await clock.advanceAsync(1000, 250);
    expect(await run.ended).toEqual({ status: 'failed', error: 'gpu lock force-released', result: null });
    expect(locks.released).toEqual([]);
  });

  it('a prepare that throws ends the run failed without a trainer', async () => {
    const { run } = makeRun('noprep', {});
    await run.start(async () => {
      throw new Error('the trainer could not be built');
    });
    expect(await run.ended).toEqual({ status: 'failed', error: 'the trainer could not be built', result: null });
  });
});
