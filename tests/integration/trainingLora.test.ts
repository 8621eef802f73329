import { createHash } from 'node:crypto';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { LossResponse, StartTrainingResponse, TrainingJobStatus } from '../../shared/contracts/training.js';
import { writeTinyModel } from '../../electron/core/services/engine/tinyGguf.js';
import { Store } from '../../electron/core/base/store.js';
import { startConsole, type TestConsole } from '../helpers/startConsole.js';
import { TEST_TRAINER_DIR, waitFor, writeCatDataset } from '../helpers/training.js';

/**
 * LoRA training on quantized and F16 bases with the native trainer, and the adapter served by the
 * engine as `<base>+<adapter>` (tiny random-weight models, CPU).
 */
const json = { 'content-type': 'application/json' };
const CAT = 'the cat sat on the mat. ';

interface EngineError {
  error: { code: string; message: string; details?: Array<{ field?: string; description: string }> };
}

async function call<T>(c: TestConsole, method: string, path: string, body?: unknown): Promise<{ status: number; body: T }> {
  const res = await fetch(`${c.url}${path}`, { method, headers: body === undefined ? {} : json, body: body === undefined ? undefined : JSON.stringify(body) });
  return { status: res.status, body: (await res.json()) as T };
}

const sha256 = (path: string) => createHash('sha256').update(readFileSync(path)).digest('hex');

/** Share of the characters of `text` that occur in the training sentence. */
function catLikeness(text: string): number {
  const chars = [...text];
  return chars.length === 0 ? 0 : chars.filter((ch) => CAT.includes(ch)).length / chars.length;
}

describe('LoRA training and adapters served by the engine (tiny models, CPU)', () => {
  let c: TestConsole;
  beforeAll(async () => {
    c = await startConsole({
      config: { engine: { gpu: 'false', threads: 1, contextSize: 512 }, training: { trainerDir: TEST_TRAINER_DIR, threads: 2, gpu: 'cpu', cancelGraceSeconds: 5 } },
    });
    writeTinyModel(join(c.dataDir, 'models', 'tiny-q8.gguf'), { type: 'q8_0' });
    writeTinyModel(join(c.dataDir, 'models', 'tiny-f16.gguf'), { type: 'f16' });
    writeTinyModel(join(c.dataDir, 'models', 'tiny-q4.gguf'), { type: 'q4_0' });
    writeCatDataset(c.dataDir, 'datasets/cat.txt', 300);
    writeCatDataset(c.dataDir, 'datasets/cat-long.txt', 260);
  });
  afterAll(async () => {
    await c?.close();
  });

  const train = async (body: unknown): Promise<TrainingJobStatus> => {
    const start = await call<StartTrainingResponse & EngineError>(c, 'POST', '/api/v1/training/start', body);
    expect(start.status, JSON.stringify(start.body)).toBe(200);
    return waitFor(async () => {
      const { body: s } = await call<TrainingJobStatus>(c, 'GET', `/api/v1/training/status/${start.body.jobId}`);
      return ['completed', 'failed', 'cancelled'].includes(s.status) ? s : undefined;
    }, 240_000, 'the LoRA job to end', 250);
  };

  const generate = async (model: string): Promise<string> => {
    const res = await call<{ choices: Array<{ text: string }> }>(c, 'POST', '/v1/completions', { model, prompt: 'the cat', max_tokens: 24, temperature: 0 });
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    return res.body.choices[0]!.text;
  };

  for (const [base, type] of [
    ['tiny-q8', 'Q8_0'],
    ['tiny-f16', 'F16'],
  ] as const) {
    it(`trains a LoRA adapter on a ${type} base: loss falls by 30 %, the base is untouched, the engine serves ${base}+cat-${base}`, async () => {
      const basePath = join(c.dataDir, 'models', `${base}.gguf`);
      const before = sha256(basePath);
      const done = await train({
        baseModel: base,
        datasetPath: 'datasets/cat.txt',
        outputDir: `cat-${base}`,
        hyperParams: { epochs: 2, learningRate: 3e-3, maxSeqLength: 256, evalSteps: 20, saveSteps: 40, warmupSteps: 4, lrScheduler: 'cosine' },
        loraConfig: { r: 8, loraAlpha: 16, targetModules: ['all-linear', 'output'] },
      });
      expect(done.status, done.error).toBe('completed');
      expect(done.method).toBe('lora');
      // rank 8 on 7 block weights x 2 layers (64x64 x4, 64x128 x3) plus output (64x300)
      expect(done.trainableParams).toBe(8 * (2 * (4 * 128 + 3 * 192) + 364));
      expect(sha256(basePath)).toBe(before);
      expect(done.progress.currentStep).toBe(done.progress.totalSteps);

      const loss = (await call<LossResponse>(c, 'GET', `/api/v1/training/${done.jobId}/loss`)).body;
      const first = loss.points[0]!.loss;
      const last = loss.points[loss.points.length - 1]!.loss;
      expect(last).toBeLessThan(first * 0.7);
      // validation every evalSteps, not only at epoch ends
      expect(loss.validation.length).toBeGreaterThan(2);

      // the adapter is published with its lineage and served on its base
      expect(done.result).toMatchObject({ modelId: `${base}+cat-${base}`, adapter: `cat-${base}` });
      expect(done.result?.lineage).toMatchObject({ baseSha256: before, method: 'lora', baseModel: base });
      expect(existsSync(join(c.dataDir, 'models', 'adapters', `cat-${base}.gguf`))).toBe(true);
      const models = (await call<{ data: Array<{ id: string }> }>(c, 'GET', '/v1/models')).body.data.map((m) => m.id);
      expect(models).toContain(`${base}+cat-${base}`);
      const listed = (await call<{ models: Array<{ id: string; loraAdapters?: string[] }> }>(c, 'GET', '/api/v1/models')).body.models;
      expect(listed.find((m) => m.id === base)?.loraAdapters).toEqual([`cat-${base}`]);

      const plain = await generate(base);
      const tuned = await generate(`${base}+cat-${base}`);
      expect(catLikeness(tuned)).toBeGreaterThan(catLikeness(plain));
      // the §3.1 `adapter` field selects the same adapter
      const viaField = await call<{ choices: Array<{ text: string }> } & EngineError>(c, 'POST', '/api/v1/inference', {
        modelId: base,
        prompt: 'the cat',
        adapter: `cat-${base}`,
        generation: { maxNewTokens: 24, temperature: 0 },
      });
      expect(viaField.status, JSON.stringify(viaField.body)).toBe(200);
      expect(viaField.body.choices[0]!.text).toBe(tuned);
    }, 300_000);
  }

  it('trains on a Q4_0 base (weight repacking off for the backward pass)', async () => {
    const done = await train({
      baseModel: 'tiny-q4',
      datasetPath: 'datasets/cat.txt',
      outputDir: 'cat-q4',
      hyperParams: { epochs: 1, learningRate: 3e-3, maxSeqLength: 256 },
      loraConfig: { r: 4, targetModules: ['q_proj', 'v_proj', 'output'] },
    });
    expect(done.status, done.error).toBe('completed');
    expect(done.result?.modelId).toBe('tiny-q4+cat-q4');
  }, 300_000);

  it('counts optimizer steps at maxSeqLength 2048: progress is monotonic and never passes the total', async () => {
    const start = await call<StartTrainingResponse>(c, 'POST', '/api/v1/training/start', {
      baseModel: 'tiny-q8',
      datasetPath: 'datasets/cat-long.txt',
      outputDir: 'long-ctx',
      hyperParams: { epochs: 2, maxSeqLength: 2048 },
      loraConfig: { r: 4 },
    });
    expect(start.status).toBe(200);
    const done = await waitFor(async () => {
      const { body: s } = await call<TrainingJobStatus>(c, 'GET', `/api/v1/training/status/${start.body.jobId}`);
      return ['completed', 'failed'].includes(s.status) ? s : undefined;
    }, 240_000, 'the 2048 job', 250);
    expect(done.status, done.error).toBe('completed');
    const steps = (await call<LossResponse>(c, 'GET', `/api/v1/training/${done.jobId}/loss`)).body.points.map((p) => p.step);
    expect(steps.length).toBe(done.progress.totalSteps);
    for (let i = 1; i < steps.length; i++) expect(steps[i]).toBe(steps[i - 1]! + 1);
    expect(Math.max(...steps)).toBe(done.progress.totalSteps);
  }, 300_000);

  it('refuses what would train nothing or what llama.cpp cannot do, before queueing', async () => {
    const unknown = await call<EngineError>(c, 'POST', '/api/v1/training/start', {
      baseModel: 'tiny-q8',
      datasetPath: 'datasets/cat.txt',
      outputDir: 'x1',
      loraConfig: { targetModules: ['q_proj', 'qkv_proj'], bias: 'all' },
    });
    expect(unknown.status).toBe(400);
    const byField = Object.fromEntries(unknown.body.error.details!.map((d) => [d.field, d.description]));
    expect(byField['loraConfig.targetModules']).toMatch(/'qkv_proj' match no weight of this model; its weights are attn_k, attn_output, attn_q, attn_v, ffn_down, ffn_gate, ffn_up, output/);
    expect(byField['loraConfig.bias']).toMatch(/use "none"/);

    const fullOnQuantized = await call<EngineError>(c, 'POST', '/api/v1/training/start', {
      baseModel: 'tiny-q8',
      datasetPath: 'datasets/cat.txt',
      outputDir: 'x2',
      hyperParams: { method: 'full' },
    });
    expect(fullOnQuantized.status).toBe(400);
    expect(fullOnQuantized.body.error.details?.[0]).toMatchObject({ field: 'hyperParams.method' });
    expect(fullOnQuantized.body.error.details?.[0]?.description).toMatch(/would train nothing.*Q8_0.*Use method "lora"/);
  });

  it('the engine gives the GPU up while a job holds its lock (the CPU stands in for it) and takes it back after', async () => {
    expect(await generate('tiny-f16')).not.toBe('');
    const engineStatus = async () => (await call<{ loadedModels: Array<{ id: string }>; gpuLent: { holder: string; policy: string } | null }>(c, 'GET', '/api/v1/engine/status')).body;
    expect((await engineStatus()).loadedModels.map((m) => m.id)).toContain('tiny-f16');
    const start = await call<StartTrainingResponse>(c, 'POST', '/api/v1/training/start', {
      baseModel: 'tiny-q8',
      datasetPath: 'datasets/cat.txt',
      outputDir: 'gpu-share',
      hyperParams: { epochs: 2, maxSeqLength: 256 },
      loraConfig: { r: 4, targetModules: ['all-linear'] },
    });
    expect(start.status).toBe(200);
    const lent = await waitFor(async () => {
      const s = await engineStatus();
      return s.gpuLent ? s : undefined;
    }, 60_000, 'the engine to lend the GPU', 50);
    expect(lent.gpuLent).toMatchObject({ holder: start.body.jobId, policy: 'unload' });
    expect(lent.loadedModels).toEqual([]);
    // A request meanwhile waits for the job to end (queue place in a header), then is served.
    const res = await fetch(`${c.url}/v1/completions`, { method: 'POST', headers: json, body: JSON.stringify({ model: 'tiny-f16', prompt: 'the cat', max_tokens: 4 }) });
    const answeredAt = Date.now();
    expect(res.status, await res.clone().text()).toBe(200);
    expect(res.headers.get('x-queue-position')).not.toBeNull();
    const job = (await call<TrainingJobStatus>(c, 'GET', `/api/v1/training/status/${start.body.jobId}`)).body;
    expect(job.status).toBe('completed');
    expect(Date.parse(job.completedAt!)).toBeLessThanOrEqual(answeredAt);
    expect((await engineStatus()).gpuLent).toBeNull();
    const logs = (await call<{ lines: Array<{ message: string }> }>(c, 'GET', `/api/v1/training/${start.body.jobId}/logs`)).body.lines.map((l) => l.message);
    expect(logs.some((m) => m.includes('asking the engine to give up the GPU'))).toBe(true);
  }, 300_000);

  it('a LoRA job stopped (or killed) with a checkpoint resumes from it after a restart', async () => {
    const first = await startConsole({ keepDataDir: true, config: { engine: { gpu: 'false' }, training: { trainerDir: TEST_TRAINER_DIR, threads: 2, gpu: 'cpu' } } });
    const dataDir = first.dataDir;
    writeTinyModel(join(dataDir, 'models', 'tiny-q8.gguf'), { type: 'q8_0' });
    writeCatDataset(dataDir, 'datasets/cat.txt', 300);
    const start = await call<StartTrainingResponse>(first, 'POST', '/api/v1/training/start', {
      baseModel: 'tiny-q8',
      datasetPath: 'datasets/cat.txt',
      outputDir: 'resume',
      hyperParams: { epochs: 3, maxSeqLength: 256, saveSteps: 10 },
      loraConfig: { r: 4 },
    });
    const jobId = start.body.jobId;
    await waitFor(() => (existsSync(join(dataDir, 'training', 'outputs', 'resume', 'checkpoint-step-10.gguf')) ? true : undefined), 120_000, 'a checkpoint', 50);
    await first.close();
    const store = new Store({ path: join(dataDir, 'console.db') });
    // A stop keeps the job: back in the queue, to resume from its checkpoint.
    const stopped = store.db.prepare('SELECT status, error, plan FROM training_jobs WHERE id = ?').get(jobId) as { status: string; error: string | null; plan: string };
    expect(stopped).toMatchObject({ status: 'queued', error: null });
    expect(JSON.parse(stopped.plan)).toMatchObject({ resumeFrom: expect.stringMatching(/checkpoint-step-\d+\.gguf$/) });
    // What a kill -9 leaves behind instead: the job still marked running (the restart resumes it too).
    store.db.prepare("UPDATE training_jobs SET status = 'running', completed_at = NULL, error = NULL WHERE id = ?").run(jobId);
    store.close();
    const second = await startConsole({ dataDir, config: { engine: { gpu: 'false' }, training: { trainerDir: TEST_TRAINER_DIR, threads: 2, gpu: 'cpu' } } });
    try {
      const done = await waitFor(async () => {
        const { body: s } = await call<TrainingJobStatus>(second, 'GET', `/api/v1/training/status/${jobId}`);
        return ['completed', 'failed'].includes(s.status) ? s : undefined;
      }, 240_000, 'the resumed job', 250);
      expect(done.status, done.error).toBe('completed');
      expect(done.progress.currentStep).toBe(done.progress.totalSteps);
      const logs = (await call<{ lines: Array<{ message: string }> }>(second, 'GET', `/api/v1/training/${jobId}/logs`)).body.lines.map((l) => l.message);
      expect(logs.some((m) => /resumes from its checkpoint at step \d+/.test(m))).toBe(true);
      expect(done.result?.modelId).toBe('tiny-q8+resume');
    } finally {
      await second.close();
      rmSync(dataDir, { recursive: true, force: true });
    }
  }, 300_000);

  it('trains on a chat dataset (OpenAI messages rows) rendered with the base model\'s chat template', async () => {
    const rows = Array.from({ length: 120 }, (_, i) =>
      JSON.stringify({ messages: [{ role: 'user', content: `where is the cat ${i % 7}?` }, { role: 'assistant', content: 'the cat sat on the mat.' }] }),
    );
    writeFileSync(join(c.dataDir, 'datasets', 'chat.jsonl'), `${rows.join('\n')}\n`);
    const done = await train({
      baseModel: 'tiny-q8',
      datasetPath: 'datasets/chat.jsonl',
      outputDir: 'chat-lora',
      hyperParams: { epochs: 3, learningRate: 1e-3, warmupSteps: 5, maxSeqLength: 256 },
      loraConfig: { r: 8, targetModules: ['all-linear', 'output'] },
    });
    expect(done.status, done.error).toBe('completed');
    const logs = (await call<{ lines: Array<{ message: string }> }>(c, 'GET', `/api/v1/training/${done.jobId}/logs`)).body.lines.map((l) => l.message);
    expect(logs.some((m) => m.startsWith("dataset: 120 rows (120 chat), chat rows rendered with the base model's chat template"))).toBe(true);
    const prepared = readFileSync(join(c.dataDir, 'training', 'outputs', 'chat-lora', 'prepared-dataset.jsonl'), 'utf8');
    expect(prepared).toContain('<|im_start|>assistant\\nthe cat sat on the mat.<|im_end|>');
    const loss = (await call<LossResponse>(c, 'GET', `/api/v1/training/${done.jobId}/loss`)).body.points;
    expect(loss[loss.length - 1]!.loss).toBeLessThan(loss[0]!.loss * 0.85);
  }, 300_000);

  it('resolves the seed\'s Hugging Face baseModel through the model catalog, or says how to download it', async () => {
    const body = { baseModel: 'Qwen/Qwen2.5-0.5B-Instruct', datasetPath: 'datasets/cat.txt', outputDir: 'hf-id', hyperParams: { epochs: 1, maxSeqLength: 256 }, loraConfig: { r: 4 } };
    const missing = await call<EngineError>(c, 'POST', '/api/v1/training/start', body);
    expect(missing.status).toBe(404);
    expect(missing.body.error.details?.[0]?.description).toMatch(/catalog's 'qwen2\.5-0\.5b-instruct-q4_k_m' .*POST \/api\/v1\/library\/downloads/);
    // once downloaded (a stand-in file under the catalog id), the same request is accepted
    writeTinyModel(join(c.dataDir, 'models', 'qwen2.5-0.5b-instruct-q4_k_m.gguf'), { type: 'q8_0' });
    const ok = await call<StartTrainingResponse>(c, 'POST', '/api/v1/training/start', body);
    expect(ok.status).toBe(200);
    await waitFor(async () => {
      const { body: s } = await call<TrainingJobStatus>(c, 'GET', `/api/v1/training/status/${ok.body.jobId}`);
      return ['completed', 'failed'].includes(s.status) ? s : undefined;
    }, 120_000, 'the job', 250);
  }, 180_000);

  it('answers 400 for an adapter the model does not have', async () => {
    const res = await call<EngineError>(c, 'POST', '/api/v1/inference', { modelId: 'tiny-f16', prompt: 'x', adapter: 'nope', generation: { maxNewTokens: 2 } });
    expect(res.status).toBe(400);
    expect(res.body.error.details?.[0]?.field).toBe('adapter');
  });
});
