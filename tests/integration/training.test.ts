import { existsSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { getLlama, LlamaCompletion, readGgufFileInfo } from 'node-llama-cpp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Store } from '../../electron/core/base/store.js';
import type { CancelTrainingResponse, ListTrainingResponse, LogsResponse, LossResponse, StartTrainingResponse, TrainingJobStatus } from '../../shared/contracts/training.js';
import { startConsole, type TestConsole } from '../helpers/startConsole.js';
import { MODEL_SHAPES, TINY_CHAT_TEMPLATE, writeTinyModel } from '../../electron/core/services/engine/tinyGguf.js';
import { installTinyModel } from '../helpers/tinyModel.js';
import { TEST_TRAINER_DIR, processesMentioning, waitFor, writeCatDataset } from '../helpers/training.js';

const json = { 'content-type': 'application/json' };
const trainingConfig = { trainerDir: TEST_TRAINER_DIR, threads: 1, gpu: 'cpu', cancelGraceSeconds: 5 };

async function post<T>(c: TestConsole, path: string, body?: unknown): Promise<{ status: number; body: T }> {
  const res = await fetch(`${c.url}${path}`, { method: 'POST', headers: body === undefined ? {} : json, body: body === undefined ? undefined : JSON.stringify(body) });
  return { status: res.status, body: (await res.json()) as T };
}
async function get<T>(c: TestConsole, path: string): Promise<{ status: number; body: T }> {
  const res = await fetch(`${c.url}${path}`);
  return { status: res.status, body: (await res.json()) as T };
}
async function waitForStatus(c: TestConsole, jobId: string, accept: (s: TrainingJobStatus) => boolean, timeoutMs: number): Promise<TrainingJobStatus> {
  return waitFor(async () => {
    const { body } = await get<TrainingJobStatus>(c, `/api/v1/training/status/${jobId}`);
    return accept(body) ? body : undefined;
  }, timeoutMs, `job ${jobId} to reach the expected state`, 200);
}

interface EngineError {
  error: { code: string; message: string; details?: Array<{ field?: string; description: string }> };
}

describe('training API on a real console (llama backend, CPU)', () => {
  let c: TestConsole;
  beforeAll(async () => {
    c = await startConsole({ config: { engine: { gpu: 'false' }, training: trainingConfig } });
    installTinyModel(c.dataDir, 'tiny');
    writeCatDataset(c.dataDir);
  });
  afterAll(async () => {
    await c?.close();
  });

  it('trains the tiny model for 2 epochs: completed, decreasing loss, a GGUF that node-llama-cpp loads', async () => {
    const start = await post<StartTrainingResponse>(c, '/api/v1/training/start', {
      baseModel: 'tiny',
      datasetPath: 'datasets/cat.txt',
      outputDir: 'cat-run',
      hyperParams: { epochs: 2, learningRate: 1e-3, maxSeqLength: 128, saveSteps: 5 },
    });
    expect(start.status).toBe(200);
    expect(start.body).toMatchObject({ status: 'queued', message: 'Training job has been queued' });
    expect(start.body.jobId).toMatch(/^job-[0-9a-f]+$/);
    expect(start.body.createdAt).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    const jobId = start.body.jobId;

    // live events while it runs
    const events: Array<{ event: string; data: unknown }> = [];
    const sse = fetch(`${c.url}/api/v1/training/${jobId}/events`).then(async (res) => {
      expect(res.headers.get('content-type')).toMatch(/^text\/event-stream/);
      const text = await res.text(); // the stream ends after the terminal status
      for (const block of text.split('\n\n')) {
        const event = /^event: (.+)$/m.exec(block)?.[1];
        const data = /^data: (.+)$/m.exec(block)?.[1];
        if (event && data) events.push({ event, data: JSON.parse(data) as unknown });
      }
    });

    const done = await waitForStatus(c, jobId, (s) => ['completed', 'failed', 'cancelled'].includes(s.status), 150_000);
    if (done.status !== 'completed') {
      const logs = await get<LogsResponse>(c, `/api/v1/training/${jobId}/logs`);
      throw new Error(`job ended ${done.status}: ${done.error}\n${logs.body.lines.map((l) => l.message).join('\n')}`);
    }
    expect(done.progress.currentEpoch).toBe(2);
    expect(done.progress.currentStep).toBe(done.progress.totalSteps);
    expect(done.progress.totalSteps).toBeGreaterThan(10);
    expect(done.completedAt).toBeDefined();
    expect(done.estimatedTimeRemainingSeconds).toBe(0);
    expect(done.result?.modelId).toBe('cat-run');

    const loss = await get<LossResponse>(c, `/api/v1/training/${jobId}/loss`);
    const points = loss.body.points;
    expect(points).toHaveLength(done.progress.totalSteps);
    const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    const firstEpoch = points.filter((p) => p.epoch === 1).map((p) => p.loss);
    const secondEpoch = points.filter((p) => p.epoch === 2).map((p) => p.loss);
    expect(points[points.length - 1]!.loss).toBeLessThan(points[0]!.loss);
    expect(mean(secondEpoch)).toBeLessThan(mean(firstEpoch));
    expect(loss.body.validation).toHaveLength(2);
    expect(loss.body.validation[1]!.valLoss).toBeLessThan(loss.body.validation[0]!.valLoss);
    expect(done.progress.valLoss).toBe(loss.body.validation[1]!.valLoss);
    const incremental = await get<LossResponse>(c, `/api/v1/training/${jobId}/loss?afterStep=${points.length - 3}`);
    expect(incremental.body.points.map((p) => p.step)).toEqual([points.length - 2, points.length - 1, points.length]);

    // the model is in the models dir, listed by the engine ("open in Chat")
    const modelPath = join(c.dataDir, 'models', 'cat-run.gguf');
    expect(existsSync(modelPath)).toBe(true);
    expect(existsSync(join(c.dataDir, 'training', 'outputs', 'cat-run', 'model.gguf'))).toBe(true);
    // saveSteps 5: checkpoints inside the epochs too
    for (const step of [5, 10, 15]) expect(existsSync(join(c.dataDir, 'training', 'outputs', 'cat-run', `checkpoint-step-${step}.gguf`))).toBe(true);
    expect(statSync(modelPath).size).toBeGreaterThan(400_000);
    expect(done).toMatchObject({ method: 'full', trainableParams: expect.any(Number) });
    // the fine-tuned GGUF keeps the base's tokenizer metadata, chat template included
    const meta = (await readGgufFileInfo(modelPath)).metadata as { tokenizer?: { chat_template?: string } };
    expect(meta.tokenizer?.chat_template).toBe(TINY_CHAT_TEMPLATE);
    const models = await get<{ models: Array<{ id: string }> }>(c, '/api/v1/models');
    expect(models.body.models.map((m) => m.id)).toContain('cat-run');

    const llama = await getLlama({ gpu: false });
    try {
      const model = await llama.loadModel({ modelPath });
      const context = await model.createContext({ contextSize: 256, threads: 1 });
      const completion = new LlamaCompletion({ contextSequence: context.getSequence() });
      const text = await completion.generateCompletion('the cat sat on', { maxTokens: 8, temperature: 0 });
      expect(typeof text).toBe('string');
      expect(text.length).toBeGreaterThan(0);
      await context.dispose();
      await model.dispose();
    } finally {
      await llama.dispose();
    }

    const logs = await get<LogsResponse>(c, `/api/v1/training/${jobId}/logs`);
    const messages = logs.body.lines.map((l) => l.message);
    expect(messages.some((m) => m.startsWith('queued'))).toBe(true);
    expect(messages.some((m) => m.startsWith('epoch 2 done'))).toBe(true);
    expect(messages.some((m) => m.startsWith("completed: model 'cat-run'"))).toBe(true);

    await sse;
    expect(events[0]?.event).toBe('status');
    expect(events.some((e) => e.event === 'progress')).toBe(true);
    expect(events.some((e) => e.event === 'validation')).toBe(true);
    const last = events[events.length - 1]!;
    expect(last.event).toBe('status');
    expect((last.data as TrainingJobStatus).status).toBe('completed');

    const metrics = await (await fetch(`${c.url}/metrics`)).text();
    expect(metrics).toMatch(/^console_training_jobs\{status="completed"\} 1$/m);
    expect(metrics).toMatch(new RegExp(`^console_training_steps_total ${done.progress.totalSteps}$`, 'm'));
    expect(metrics).not.toContain(jobId);

    const snapshot = c.console.training.snapshot();
    expect(snapshot.jobs[0]).toMatchObject({ jobId, status: 'completed', currentStep: done.progress.totalSteps });

    // the same outputDir can be used again once the first job is terminal; the model id then gets the job id
    const list = await get<ListTrainingResponse>(c, '/api/v1/training/list');
    expect(list.body.jobs[0]).toMatchObject({ jobId, baseModel: 'tiny', status: 'completed' });
  }, 200_000);

  it('cancels a running job: status cancelled, trainer process gone, no model published', async () => {
    writeCatDataset(c.dataDir, 'datasets/long.txt', 130);
    const start = await post<StartTrainingResponse>(c, '/api/v1/training/start', {
      baseModel: 'tiny',
      datasetPath: 'datasets/long.txt',
      outputDir: 'long-run',
      hyperParams: { epochs: 1000, maxSeqLength: 128 },
    });
    expect(start.status).toBe(200);
    const jobId = start.body.jobId;
    // a second job with the same outputDir conflicts while the first is not terminal
    const conflict = await post<EngineError>(c, '/api/v1/training/start', { baseModel: 'tiny', datasetPath: 'datasets/long.txt', outputDir: 'long-run' });
    expect(conflict.status).toBe(400);
    expect(conflict.body.error.code).toBe('TRAINING_JOB_RUNNING');

    await waitForStatus(c, jobId, (s) => s.status === 'running' && s.progress.currentStep > 0, 120_000);
    expect(processesMentioning(`${jobId}.json`).length).toBeGreaterThan(0);

    const cancel = await post<CancelTrainingResponse>(c, `/api/v1/training/cancel/${jobId}`);
    expect(cancel.status).toBe(200);
    expect(cancel.body).toEqual({ jobId, status: 'cancelled', message: 'Training job has been cancelled' });
    expect(processesMentioning(`${jobId}.json`)).toEqual([]);
    const status = await get<TrainingJobStatus>(c, `/api/v1/training/status/${jobId}`);
    expect(status.body.status).toBe('cancelled');
    expect(status.body.completedAt).toBeDefined();
    expect(status.body.result).toBeUndefined();
    expect(existsSync(join(c.dataDir, 'models', 'long-run.gguf'))).toBe(false);

    const again = await post<CancelTrainingResponse>(c, `/api/v1/training/cancel/${jobId}`);
    expect(again.body).toEqual({ jobId, status: 'cancelled', message: 'Training job is already cancelled' });
    const cancelled = await get<ListTrainingResponse>(c, '/api/v1/training/list?status=cancelled');
    expect(cancelled.body.jobs.map((j) => j.jobId)).toEqual([jobId]);
  }, 200_000);

  it('fails a job whose dataset is too small, with the trainer\'s reason', async () => {
    writeCatDataset(c.dataDir, 'datasets/small.txt', 5);
    const start = await post<StartTrainingResponse>(c, '/api/v1/training/start', { baseModel: 'tiny', datasetPath: 'datasets/small.txt', outputDir: 'small-run', hyperParams: { maxSeqLength: 128 } });
    const done = await waitForStatus(c, start.body.jobId, (s) => ['completed', 'failed', 'cancelled'].includes(s.status), 60_000);
    expect(done.status).toBe('failed');
    expect(done.error).toMatch(/^dataset too small: \d+ tokens; with maxSeqLength 256 at least \d+ are needed/);
  }, 90_000);

  it('trains a 16-layer model (past the inference-sized graph of the bundled llama.cpp, see trainer.cpp)', async () => {
    writeTinyModel(join(c.dataDir, 'models', 'deep.gguf'), { shape: { ...MODEL_SHAPES.tiny, layers: 16 } });
    const start = await post<StartTrainingResponse>(c, '/api/v1/training/start', { baseModel: 'deep', datasetPath: 'datasets/cat.txt', outputDir: 'deep-run', hyperParams: { epochs: 1, maxSeqLength: 128 } });
    expect(start.status).toBe(200);
    const done = await waitForStatus(c, start.body.jobId, (s) => ['completed', 'failed', 'cancelled'].includes(s.status), 120_000);
    expect(done.error ?? null).toBeNull();
    expect(done.status).toBe('completed');
  }, 150_000);

  it('rejects bad input with 400 listing every bad field', async () => {
    const res = await post<EngineError>(c, '/api/v1/training/start', {
      baseModel: '',
      outputDir: { path: 'x' },
      hyperParams: { epochs: 0, learningRate: -1, batchSize: 'many' },
      loraConfig: { bias: 'sometimes', r: 0 },
      extra: true,
    });
    expect(res.status).toBe(400);
    expect(res.body.error.code).toBe('INVALID_REQUEST');
    const fields = res.body.error.details!.map((d) => d.field);
    for (const f of ['baseModel', 'outputDir', 'datasetPath', 'hyperParams.epochs', 'hyperParams.learningRate', 'hyperParams.batchSize', 'loraConfig.bias', 'loraConfig.r', 'extra']) {
      expect(fields).toContain(f);
    }
  });

  it('checks paths: outside the data dir, missing files', async () => {
    const res = await post<EngineError>(c, '/api/v1/training/start', {
      baseModel: '/etc/hostname.gguf',
      datasetPath: '/etc/passwd',
      outputDir: '../../escape',
      loraConfig: { r: 8 },
    });
    expect(res.status).toBe(400);
    const byField = Object.fromEntries(res.body.error.details!.map((d) => [d.field, d.description]));
    expect(Object.keys(byField).sort()).toEqual(['baseModel', 'datasetPath', 'outputDir']);
    expect(byField.datasetPath).toMatch(/inside the data dir/);
    expect(byField.outputDir).toMatch(/no "\.\."/);

    const missing = await post<EngineError>(c, '/api/v1/training/start', { baseModel: 'no-such-model', datasetPath: 'datasets/cat.txt', outputDir: 'x', hyperParams: { loraRank: 8 } });
    expect(missing.status).toBe(404);
    expect(missing.body.error.code).toBe('MODEL_NOT_FOUND');
    const hf = await post<EngineError>(c, '/api/v1/training/start', { baseModel: 'Qwen/Qwen2.5-7B', datasetPath: 'datasets/cat.txt', outputDir: 'x' });
    expect(hf.status).toBe(404);
    const noFile = await post<EngineError>(c, '/api/v1/training/start', { baseModel: 'tiny', datasetPath: 'datasets/none.txt', outputDir: 'x' });
    expect(noFile.status).toBe(400);
    expect(noFile.body.error.details?.[0]?.field).toBe('datasetPath');
  });

  it('describes the backend for forms: llama, LoRA, the §4.1 defaults', async () => {
    const info = await get<Record<string, unknown>>(c, '/api/v1/training/info');
    expect(info.body).toEqual({
      backend: 'llama',
      supportsLora: true,
      gpuId: 0,
      validationSplit: 0.1,
      defaults: {
        batchSize: 4,
        learningRate: 2e-4,
        epochs: 3,
        maxSeqLength: 2048,
        loraRank: 64,
        loraAlpha: 16,
        loraDropout: 0.05,
        saveSteps: 100,
        evalSteps: 100,
        lrScheduler: 'linear',
        warmupSteps: 0,
        weightDecay: 0,
      },
    });
  });

  it('answers 404 TRAINING_JOB_NOT_FOUND for an unknown job on every route', async () => {
    for (const [method, path] of [
      ['GET', '/api/v1/training/status/job-nope'],
      ['POST', '/api/v1/training/cancel/job-nope'],
      ['GET', '/api/v1/training/job-nope/loss'],
      ['GET', '/api/v1/training/job-nope/logs'],
      ['GET', '/api/v1/training/job-nope/events'],
    ] as const) {
      const res = await fetch(`${c.url}${path}`, { method });
      expect(res.status, path).toBe(404);
      expect(((await res.json()) as EngineError).error.code).toBe('TRAINING_JOB_NOT_FOUND');
    }
  });

  it('lists newest first with limit clamped to 1..1000', async () => {
    const all = await get<ListTrainingResponse>(c, '/api/v1/training/list?limit=5000');
    expect(all.body.limit).toBe(1000);
    expect(all.body.total).toBeGreaterThanOrEqual(2);
    const created = all.body.jobs.map((j) => j.createdAt);
    expect([...created].sort().reverse()).toEqual(created);
    const one = await get<ListTrainingResponse>(c, '/api/v1/training/list?limit=0&offset=1');
    expect(one.body).toMatchObject({ limit: 1, offset: 1, total: all.body.total });
    expect(one.body.jobs).toHaveLength(1);
    expect((await get<EngineError>(c, '/api/v1/training/list?status=bogus')).status).toBe(400);
  });
});

describe('training with monitoring wired in (GPU lock + heartbeat)', () => {
  it('holds gpu_lock:0 and a heartbeat while running, releases both at the end; a forced release fails the job', async () => {
    const c = await startConsole({ config: { engine: { gpu: 'false' }, training: { ...trainingConfig, heartbeatIntervalSeconds: 1 } } });
    try {
      installTinyModel(c.dataDir, 'tiny');
      writeCatDataset(c.dataDir);
      const start = await post<StartTrainingResponse>(c, '/api/v1/training/start', { baseModel: 'tiny', datasetPath: 'datasets/cat.txt', outputDir: 'locked', hyperParams: { epochs: 1000, maxSeqLength: 128 } });
      const jobId = start.body.jobId;
      await waitForStatus(c, jobId, (s) => s.status === 'running' && s.progress.currentStep > 0, 120_000);
      const lock = await get<{ is_locked: boolean; lock_holder: string | null }>(c, '/api/v1/monitoring/gpu-lock/status');
      expect(lock.body).toMatchObject({ is_locked: true, lock_holder: jobId });
      const beat = await waitFor(async () => {
        const hb = await get<{ is_running: boolean; heartbeat_data: { progress: number } | null }>(c, `/api/v1/monitoring/heartbeat/task/${jobId}`);
        return hb.body.is_running && (hb.body.heartbeat_data?.progress ?? 0) > 0 ? hb.body : undefined;
      }, 30_000, 'a heartbeat with progress');
      expect(beat.heartbeat_data!.progress).toBeLessThan(1);

      const res = await fetch(`${c.url}/api/v1/monitoring/lock/release`, { method: 'POST', headers: { ...json, ...c.admin }, body: JSON.stringify({ lock_key: 'gpu_lock:0' }) });
      expect(res.status).toBe(200);
      const failed = await waitForStatus(c, jobId, (s) => s.status !== 'running', 30_000);
      expect(failed).toMatchObject({ status: 'failed', error: 'gpu lock force-released' });
      expect(processesMentioning(`${jobId}.json`)).toEqual([]);
      const hb = await get<{ is_running: boolean }>(c, `/api/v1/monitoring/heartbeat/task/${jobId}`);
      expect(hb.body.is_running).toBe(false);

      // the next job takes the lock again and releases it when done
      const next = await post<StartTrainingResponse>(c, '/api/v1/training/start', { baseModel: 'tiny', datasetPath: 'datasets/cat.txt', outputDir: 'after', hyperParams: { epochs: 1, maxSeqLength: 128 } });
      expect((await waitForStatus(c, next.body.jobId, (s) => ['completed', 'failed'].includes(s.status), 120_000)).status).toBe('completed');
      expect((await get<{ is_locked: boolean }>(c, '/api/v1/monitoring/gpu-lock/status')).body.is_locked).toBe(false);
    } finally {
      await c.close();
    }
  }, 300_000);
});

describe('training jobs across restarts and API keys', () => {
  it('marks a job that was running when the console died as failed, with the reason', async () => {
    const first = await startConsole({ keepDataDir: true, config: { training: trainingConfig } });
    const dataDir = first.dataDir;
    await first.close();
    const store = new Store({ path: join(dataDir, 'console.db') });
    store.db
      .prepare(
        "INSERT INTO training_jobs (id, status, backend, base_model, output_dir, dataset_path, request, plan, created_at, started_at) VALUES ('job-crashed', 'running', 'llama', 'tiny', '/x', '/y', ?, ?, 1, 2)",
      )
      .run(JSON.stringify({ baseModel: 'tiny', outputDir: 'x', datasetPath: 'y', hyperParams: { learningRate: 2e-4 } }), JSON.stringify({}));
    store.close();
    const second = await startConsole({ dataDir, config: { training: trainingConfig } });
    try {
      const status = await get<TrainingJobStatus>(second, '/api/v1/training/status/job-crashed');
      expect(status.body.status).toBe('failed');
      expect(status.body.error).toMatch(/console stopped while this job was running/);
    } finally {
      await second.close();
      rmSync(dataDir, { recursive: true, force: true });
    }
  });

  it('applies the /api/v1 API-key rule to training routes', async () => {
    const c = await startConsole({ config: { auth: { apiKeys: ['k-12345678'] }, training: trainingConfig } });
    try {
      expect((await fetch(`${c.url}/api/v1/training/list`)).status).toBe(401);
      expect((await fetch(`${c.url}/api/v1/training/list`, { headers: { 'x-api-key': 'wrong' } })).status).toBe(403);
      expect((await fetch(`${c.url}/api/v1/training/list`, { headers: { 'x-api-key': 'k-12345678' } })).status).toBe(200);
      const res = await fetch(`${c.url}/api/v1/training/start`, { method: 'POST', headers: json, body: '{}' });
      expect(res.status).toBe(401);
    } finally {
      await c.close();
    }
  });
});
