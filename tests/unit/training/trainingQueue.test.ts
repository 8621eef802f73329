import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pino from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FakeClock } from '../../../electron/core/base/clock.js';
import { ConfigStore, loadSettings } from '../../../electron/core/base/config.js';
import { ChildProcessRegistry } from '../../../electron/core/base/managedProcess.js';
import { AppError, ErrorCode } from '../../../electron/core/base/errors.js';
import { MetricsRegistry } from '../../../electron/core/base/metrics.js';
import type { GpuLease, GpuLockPort, GpuLockRequest, HeartbeatPort, TaskRegistration } from '../../../electron/core/base/ports.js';
import { Store } from '../../../electron/core/base/store.js';
import { TrainingService } from '../../../electron/core/services/training/trainingService.js';
import type { StartTrainingRequest, TrainingJobStatus } from '../../../shared/contracts/training.js';
import { processesMentioning, waitFor, waitUntil } from '../../helpers/training.js';

const FAKE_TRAINER = join(dirname(fileURLToPath(import.meta.url)), 'fixtures', 'fakeTrainer.mjs');

/** An in-memory GpuLockPort: one holder per GPU, fencing tokens, scripted conflicts and renew failures. */
class FakeLocks implements GpuLockPort {
  holder: string | undefined;
  token = 0;
  conflictsLeft = 0;
  failRenew = false;
  readonly events: string[] = [];
  async acquire(r: GpuLockRequest): Promise<GpuLease> {
    if (this.conflictsLeft > 0 || this.holder !== undefined) {
      this.conflictsLeft = Math.max(0, this.conflictsLeft - 1);
      throw new AppError(ErrorCode.CONFLICT, `gpu_lock:${r.gpuId} is held by someone-else`);
    }
    this.holder = r.holder;
    this.token += 1;
    this.events.push(`acquire ${r.holder}`);
    return { gpuId: r.gpuId, holder: r.holder, purpose: r.purpose, fencingToken: this.token, ttlSeconds: 3, expiresAt: 0 };
  }
  async renew(gpuId: number, holder: string, fencingToken: number): Promise<GpuLease> {
    if (this.failRenew || this.holder !== holder || fencingToken !== this.token) throw new AppError(ErrorCode.CONFLICT, 'stale fencing token');
    return { gpuId, holder, purpose: 'training', fencingToken, ttlSeconds: 3, expiresAt: 0 };
  }
  async release(_gpuId: number, holder: string, fencingToken: number): Promise<void> {
    if (this.holder === holder && fencingToken === this.token) {
      this.holder = undefined;
      this.events.push(`release ${holder}`);
    }
  }
}

class FakeHeartbeats implements HeartbeatPort {
  readonly registered: TaskRegistration[] = [];
  readonly beats: string[] = [];
  readonly completed: Array<[string, string]> = [];
  readonly timeoutHandlers = new Map<string, () => void>();
  async register(task: TaskRegistration): Promise<void> {
    this.registered.push(task);
  }
  async beat(taskId: string): Promise<void> {
    this.beats.push(taskId);
  }
  async complete(taskId: string, outcome: 'completed' | 'failed' | 'cancelled'): Promise<void> {
    this.completed.push([taskId, outcome]);
  }
  onTimeout(taskId: string, handler: () => void): () => void {
    this.timeoutHandlers.set(taskId, handler);
    return () => this.timeoutHandlers.delete(taskId);
  }
}

describe('TrainingService queue (command backend with a fake trainer)', () => {
  let dataDir: string;
  let store: Store;
  let clock: FakeClock;
  let locks: FakeLocks;
  let heartbeats: FakeHeartbeats;
  let service: TrainingService;
  let children: ChildProcessRegistry;

  const make = (training: Record<string, unknown> = {}) => {
    const settings = loadSettings({
      env: {},
      dataDir,
      overrides: { training: { backend: 'command', command: { executable: process.execPath, args: [FAKE_TRAINER] }, cancelGraceSeconds: 5, heartbeatIntervalSeconds: 1, ...training } },
    });
    return new TrainingService({
      config: new ConfigStore(settings),
      store,
      clock,
      logger: pino({ level: 'silent' }),
      metrics: new MetricsRegistry(),
      dataDir,
      modelsDir: () => join(dataDir, 'models'),
      gpuLocks: locks,
      heartbeats,
      children,
    });
  };
  const dataset = (name: string, plan: Record<string, unknown>) => {
    writeFileSync(join(dataDir, `${name}.json`), JSON.stringify(plan));
    return `${name}.json`;
  };
  const request = (name: string, plan: Record<string, unknown>): StartTrainingRequest =>
    ({ baseModel: 'org/remote-model', datasetPath: dataset(name, plan), outputDir: name, hyperParams: { learningRate: 0.01 } }) as StartTrainingRequest;
  const settle = async (jobId: string, accept: (s: TrainingJobStatus) => boolean = (s) => ['completed', 'failed', 'cancelled'].includes(s.status)) =>
    waitFor(() => {
      const s = service.status(jobId);
      return accept(s) ? s : undefined;
    }, 20_000, `${jobId} to settle`, 20);

  beforeEach(async () => {
    dataDir = mkdtempSync(join(tmpdir(), 'training-unit-'));
    mkdirSync(join(dataDir, 'models'));
    store = new Store({ path: join(dataDir, 'console.db') });
    clock = new FakeClock();
    locks = new FakeLocks();
    heartbeats = new FakeHeartbeats();
    children = new ChildProcessRegistry();
    service = make();
    await service.start();
    clock.advance(0);
  });
  afterEach(async () => {
    await service.stop();
    store.close();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('runs jobs one at a time in FIFO order, holding the GPU lock and a heartbeat for each', async () => {
    const a = await service.submit(request('a', { steps: 4 }));
    const b = await service.submit(request('b', { steps: 2 }));
    expect(service.status(b.jobId).status).toBe('queued');
    const sa = await settle(a.jobId);
    expect(sa.status).toBe('completed');
    expect(sa.result).toMatchObject({ modelId: 'a', modelPath: join(dataDir, 'models', 'a.gguf'), lineage: { baseModel: expect.any(String) } });
    expect(readFileSync(join(dataDir, 'models', 'a.gguf'), 'utf8')).toBe('GGUF-fake');
    const sb = await settle(b.jobId);
    expect(sb.status).toBe('completed');
    expect(locks.events).toEqual([`acquire ${a.jobId}`, `release ${a.jobId}`, `acquire ${b.jobId}`, `release ${b.jobId}`]);
    expect(heartbeats.registered.map((t) => [t.taskId, t.owner, t.fencingToken])).toEqual([
      [a.jobId, 'training', 1],
      [b.jobId, 'training', 2],
    ]);
    expect(heartbeats.completed).toEqual([
      [a.jobId, 'completed'],
      [b.jobId, 'completed'],
    ]);
    expect(service.loss(a.jobId).points.map((p) => p.loss)).toEqual([3, 1.5, 1, 0.75]);
    expect(service.loss(a.jobId).validation).toMatchObject([{ step: 4, valLoss: 1.5 }]);
    const logs = service.logs(a.jobId).lines.map((l) => l.message);
    expect(logs.some((m) => m.startsWith('unparsed trainer output'))).toBe(true);
    // job logs are readable with an API key: they name the lock, never its fencing token
    expect(logs).toContain('started; holding gpu_lock:0');
    expect(logs.join('\n')).not.toMatch(/fencing token/);
    const config = JSON.parse(readFileSync(join(dataDir, 'training', 'jobs', `${a.jobId}.json`), 'utf8')) as { modelPath: string; learningRate: number };
    expect(config).toMatchObject({ modelPath: 'org/remote-model', learningRate: 0.01 });
  });

  it('keeps a job queued while the GPU lock is taken and retries on the clock', async () => {
    locks.conflictsLeft = 1;
    const a = await service.submit(request('wait', { steps: 1 }));
    await waitFor(() => (service.logs(a.jobId).lines.some((l) => l.message.startsWith('waiting for GPU lock')) ? true : undefined), 5000, 'the wait log');
    expect(service.status(a.jobId).status).toBe('queued');
    expect(locks.events).toEqual([]);
    clock.advance(5000); // training.lockRetrySeconds
    expect((await settle(a.jobId)).status).toBe('completed');
  });

  it('fails the job when its heartbeat times out, and kills the trainer', async () => {
    const a = await service.submit(request('hb', { steps: 1000, stepMs: 20 }));
    await settle(a.jobId, (s) => s.status === 'running' && s.progress.currentStep > 0);
    heartbeats.timeoutHandlers.get(a.jobId)!();
    const s = await settle(a.jobId);
    expect(s.status).toBe('failed');
    expect(s.error).toMatch(/heartbeat timed out/);
    expect(processesMentioning(`${a.jobId}.json`)).toEqual([]);
    expect(locks.holder).toBeUndefined();
    expect(heartbeats.completed).toEqual([[a.jobId, 'failed']]);
  });

  it('fails the job when the GPU lock cannot be renewed (force-released)', async () => {
    const a = await service.submit(request('renew', { steps: 1000, stepMs: 20 }));
    await settle(a.jobId, (s) => s.status === 'running' && s.progress.currentStep > 0);
    locks.failRenew = true;
    clock.advance(1000); // ttl 3 s → renewed every second; heartbeats every second too
    expect(heartbeats.beats).toContain(a.jobId);
    const s = await settle(a.jobId);
    expect(s.status).toBe('failed');
    expect(s.error).toBe('gpu lock force-released');
    expect(service.logs(a.jobId).lines.some((l) => l.message === 'lost the GPU lock: stale fencing token')).toBe(true);
  });

  it('cancels a trainer that ignores SIGTERM with SIGKILL after the grace period', async () => {
    const a = await service.submit(request('stubborn', { steps: 1000, stepMs: 20, ignoreTerm: true }));
    await settle(a.jobId, (s) => s.status === 'running' && s.progress.currentStep > 0);
    const cancelled = service.cancel(a.jobId);
    await waitUntil(() => service.logs(a.jobId).lines.some((l) => l.message.includes('ignoring SIGTERM')), 5000, 'the trainer to get (and ignore) SIGTERM');
    expect(processesMentioning(`${a.jobId}.json`).length).toBe(1); // still alive: SIGTERM ignored
    clock.advance(5000);
    expect(await cancelled).toEqual({ jobId: a.jobId, status: 'cancelled', message: 'Training job has been cancelled' });
    expect(processesMentioning(`${a.jobId}.json`)).toEqual([]);
    expect(service.logs(a.jobId).lines.some((l) => /sending SIGKILL/.test(l.message))).toBe(true);
  });

  it('cancel stops the trainer\'s whole process group: workers it started are gone too', async () => {
    const marker = `worker-${Date.now()}`;
    const a = await service.submit(request('workers', { steps: 1000, stepMs: 20, worker: marker }));
    await settle(a.jobId, (s) => s.status === 'running' && s.progress.currentStep > 0);
    expect(processesMentioning(marker).length).toBe(1);
    // /threads' registry lists the trainer while it runs
    expect(children.list()).toEqual([expect.objectContaining({ name: `trainer ${a.jobId}`, kind: 'trainer', state: 'running', detail: [`job: ${a.jobId}`, 'backend: command'] })]);
    await service.cancel(a.jobId);
    await waitFor(() => (processesMentioning(marker).length === 0 ? true : undefined), 5000, 'the worker to be gone');
    expect(children.list()).toEqual([]);
  });

  it('cancel also ends a worker that ignores SIGTERM and holds the trainer\'s output open', async () => {
    const marker = `stubborn-worker-${Date.now()}`;
    const a = await service.submit(request('stubborn-worker', { steps: 1000, stepMs: 20, stubbornWorker: marker }));
    await waitFor(() => (service.logs(a.jobId).lines.some((l) => l.message.includes(`${marker} ready`)) ? true : undefined), 10_000, 'the worker to be ready');
    expect(processesMentioning(marker).length).toBe(1);
    // The trainer exits on SIGTERM; the worker survives it but goes with the trainer's exit (no grace needed).
    expect(await service.cancel(a.jobId)).toEqual({ jobId: a.jobId, status: 'cancelled', message: 'Training job has been cancelled' });
    await waitFor(() => (processesMentioning(marker).length === 0 ? true : undefined), 5000, 'the worker to be gone');
  });

  it('cancels a queued job without running it', async () => {
    const a = await service.submit(request('first', { steps: 1000, stepMs: 20 }));
    const b = await service.submit(request('second', { steps: 1 }));
    expect(await service.cancel(b.jobId)).toEqual({ jobId: b.jobId, status: 'cancelled', message: 'Training job has been cancelled' });
    await service.cancel(a.jobId);
    expect(locks.events.filter((e) => e.includes(b.jobId))).toEqual([]);
  });

  it('reports the trainer\'s error message, or its exit code and stderr', async () => {
    const a = await service.submit(request('err', { steps: 1, fail: 'dataset too small' }));
    const sa = await settle(a.jobId);
    expect(sa).toMatchObject({ status: 'failed', error: 'dataset too small' });
    const b = await service.submit(request('crash', { steps: 1, fail: '', exitCode: 3, stderr: 'segfault-ish trouble' }));
    const sb = await settle(b.jobId);
    expect(sb.status).toBe('failed');
    expect(sb.error).toBe('the trainer exited with code 3: segfault-ish trouble');
    expect(existsSync(join(dataDir, 'models', 'crash.gguf'))).toBe(false);
  });

  it('stop() ends a running job (failed, child gone) and a new service reads it as failed', async () => {
    const a = await service.submit(request('stopme', { steps: 1000, stepMs: 20 }));
    await settle(a.jobId, (s) => s.status === 'running' && s.progress.currentStep > 0);
    await service.stop();
    await service.stop(); // twice is fine
    expect(processesMentioning(`${a.jobId}.json`)).toEqual([]);
    const again = make();
    await again.start();
    const s = again.status(a.jobId);
    expect(s.status).toBe('failed');
    expect(s.error).toMatch(/console stopped/);
    await again.stop();
  });

  it('close() lets a running job go on until the deadline, then stops it as stop() does; a submit meanwhile is 503', async () => {
    const a = await service.submit(request('drain-long', { steps: 100_000, stepMs: 20 }));
    const b = await service.submit(request('drain-queued', { steps: 1 }));
    const before = (await settle(a.jobId, (s) => s.status === 'running' && s.progress.currentStep > 0)).progress.currentStep;
    const deadline = new AbortController();
    clock.setTimeout(() => deadline.abort(), 30_000);
    let closed = false;
    const closing = service.close({ deadline: deadline.signal }).then(() => (closed = true));
    expect(service.draining).toBe(true);
    await expect(service.submit(request('drain-late', { steps: 1 }))).rejects.toMatchObject({
      code: 'UNAVAILABLE',
      status: 503,
      message: 'The training service is stopping',
    });
    // the job trains on while the service drains
    await settle(a.jobId, (s) => s.status === 'running' && s.progress.currentStep > before + 3);
    expect(closed).toBe(false);
    expect(processesMentioning(`${a.jobId}.json`).length).toBe(1);
    clock.advance(30_000); // the deadline
    await closing;
    expect(processesMentioning(`${a.jobId}.json`)).toEqual([]);
    const sa = service.status(a.jobId);
    expect(sa.status).toBe('failed');
    expect(sa.error).toBe('The console stopped while this job was running and it has no checkpoint to resume from; start it again.');
    expect(service.status(b.jobId).status).toBe('queued');
    expect(locks.events).toEqual([`acquire ${a.jobId}`, `release ${a.jobId}`]);
    expect(heartbeats.completed).toEqual([[a.jobId, 'failed']]);
    // recorded as a stop is: a new service reads it as failed, and runs the job that stayed queued
    const again = make();
    await again.start();
    clock.advance(0);
    expect(again.status(a.jobId)).toMatchObject({ status: 'failed', error: sa.error });
    await waitUntil(() => again.status(b.jobId).status === 'completed', 20_000, 'the queued job to run on the new service');
    await again.stop();
  });

  it('close() with a deadline the job does not reach lets it finish completed before close() resolves; queued jobs are not started', async () => {
    const a = await service.submit(request('drain-short', { steps: 15, stepMs: 20 }));
    const b = await service.submit(request('drain-next', { steps: 1 }));
    await settle(a.jobId, (s) => s.status === 'running' && s.progress.currentStep > 0);
    const deadline = new AbortController();
    clock.setTimeout(() => deadline.abort(), 3_600_000);
    await service.close({ deadline: deadline.signal });
    expect(deadline.signal.aborted).toBe(false);
    expect(service.running).toBe(false);
    const sa = service.status(a.jobId);
    expect(sa.status).toBe('completed');
    expect(sa.result).toMatchObject({ modelId: 'drain-short' });
    expect(readFileSync(join(dataDir, 'models', 'drain-short.gguf'), 'utf8')).toBe('GGUF-fake');
    expect(service.status(b.jobId).status).toBe('queued');
    expect(locks.events).toEqual([`acquire ${a.jobId}`, `release ${a.jobId}`]);
    expect(heartbeats.completed).toEqual([[a.jobId, 'completed']]);
    expect(children.list()).toEqual([]);
  });

  it('refuses a relative outputDir that climbs out and a dataset outside the data dir, listing both', async () => {
    await expect(service.submit({ ...request('x', {}), outputDir: '../../etc', datasetPath: '/etc/hostname' })).rejects.toMatchObject({
      code: 'INVALID_REQUEST',
      details: [expect.objectContaining({ field: 'datasetPath' }), expect.objectContaining({ field: 'outputDir' })],
    });
  });
});
