import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CancelTrainingResponse, StartTrainingResponse, TrainingJobStatus } from '../../shared/contracts/training.js';
import { startConsole, type TestConsole } from '../helpers/startConsole.js';
import { processesMentioning, waitFor } from '../helpers/training.js';

const FAKE_TRAINER = join(dirname(fileURLToPath(import.meta.url)), '..', 'unit', 'training', 'fixtures', 'fakeTrainer.mjs');

describe.skipIf(process.platform !== 'linux')('a `command` trainer on a real console', () => {
  let c: TestConsole;
  beforeAll(async () => {
    c = await startConsole({ config: { training: { backend: 'command', command: { executable: process.execPath, args: [FAKE_TRAINER] }, cancelGraceSeconds: 5 } } });
  });
  afterAll(async () => {
    await c?.close();
  });

  it('is listed by /threads while it runs; cancel ends it and the worker its script started', async () => {
    const marker = `peft-worker-${Date.now()}`;
    mkdirSync(join(c.dataDir, 'datasets'), { recursive: true });
    writeFileSync(join(c.dataDir, 'datasets', 'plan.json'), JSON.stringify({ steps: 100_000, stepMs: 20, worker: marker }));
    const res = await fetch(`${c.url}/api/v1/training/start`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ baseModel: 'org/remote-model', datasetPath: 'datasets/plan.json', outputDir: 'cmd-run', hyperParams: { learningRate: 0.01 } }),
    });
    const start = (await res.json()) as StartTrainingResponse;
    expect(res.status).toBe(200);
    const jobId = start.jobId;
    await waitFor(
      async () => {
        const s = (await (await fetch(`${c.url}/api/v1/training/status/${jobId}`)).json()) as TrainingJobStatus;
        return s.status === 'running' && s.progress.currentStep > 0 ? s : undefined;
      },
      20_000,
      'the job to run',
      50,
    );
    await waitFor(() => (processesMentioning(marker).length === 1 ? true : undefined), 10_000, 'the worker to start');

    const threads = await (await fetch(`${c.url}/threads?name=trainer`, { headers: c.admin })).text();
    const trainerPid = processesMentioning(`${jobId}.json`)[0];
    expect(trainerPid).toBeGreaterThan(0);
    expect(threads).toContain(`Process ${trainerPid}: trainer ${jobId} [child-process]`);
    expect(threads).toContain('kind: trainer');
    expect(threads).toContain('state: running');

    const cancel = await fetch(`${c.url}/api/v1/training/cancel/${jobId}`, { method: 'POST' });
    expect(cancel.status).toBe(200);
    expect((await cancel.json()) as CancelTrainingResponse).toEqual({ jobId, status: 'cancelled', message: 'Training job has been cancelled' });
    await waitFor(() => (processesMentioning(marker).length === 0 ? true : undefined), 5000, 'the worker to be gone');
    expect(processesMentioning(`${jobId}.json`)).toEqual([]);
    expect(await (await fetch(`${c.url}/threads?name=trainer`, { headers: c.admin })).text()).toContain('matching: 0 of');
  });
});

describe.skipIf(process.platform !== 'linux')('draining training on a real console', () => {
  let c: TestConsole;
  beforeAll(async () => {
    c = await startConsole({ config: { training: { backend: 'command', command: { executable: process.execPath, args: [FAKE_TRAINER] }, cancelGraceSeconds: 5 } } });
  });
  afterAll(async () => {
    await c?.close();
  });

  const start = (outputDir: string) =>
    fetch(`${c.url}/api/v1/training/start`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ baseModel: 'org/remote-model', datasetPath: 'datasets/long.json', outputDir, hyperParams: { learningRate: 0.01 } }),
    });
  const status = async (jobId: string) => (await (await fetch(`${c.url}/api/v1/training/status/${jobId}`)).json()) as TrainingJobStatus;

  it('answers a start with 503 UNAVAILABLE while the job in flight runs on; the deadline stops it', async () => {
    mkdirSync(join(c.dataDir, 'datasets'), { recursive: true });
    writeFileSync(join(c.dataDir, 'datasets', 'long.json'), JSON.stringify({ steps: 100_000, stepMs: 20 }));
    const jobId = ((await (await start('drain-a')).json()) as StartTrainingResponse).jobId;
    await waitFor(async () => ((await status(jobId)).progress.currentStep > 0 ? true : undefined), 20_000, 'the job to run', 50);

    const deadline = new AbortController();
    const closing = c.console.training.close({ deadline: deadline.signal });
    const refused = await start('drain-b');
    expect(refused.status).toBe(503);
    expect(await refused.json()).toMatchObject({ error: { code: 'UNAVAILABLE', message: 'The training service is stopping' } });
    // the API still answers, and the job trains on
    const step = (await status(jobId)).progress.currentStep;
    await waitFor(async () => ((await status(jobId)).progress.currentStep > step ? true : undefined), 10_000, 'the job to go on while draining', 50);
    expect((await status(jobId)).status).toBe('running');

    deadline.abort();
    await closing;
    expect(await status(jobId)).toMatchObject({ status: 'failed', error: 'The console stopped while this job was running and it has no checkpoint to resume from; start it again.' });
    expect(processesMentioning(`${jobId}.json`)).toEqual([]);
  });
});
