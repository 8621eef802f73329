import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startConsole, type TestConsole } from '../helpers/startConsole.js';
import { installTinyModel } from '../helpers/tinyModel.js';
import { waitUntil } from '../helpers/wait.js';

/**
 * Many more concurrent requests than context sequences: every one must be queued by priority and
 * answered (node-llama-cpp frees a disposed sequence id asynchronously, so a slot handed straight
 * to the next waiter once made all but `parallel` requests fail with "No sequences left").
 */
const PARALLEL = 4;
const ENGINE = { gpu: 'false', threads: 1, detectOnStart: false, contextSize: 1024, parallel: PARALLEL, queueMaxSize: 200, maxLoadedModels: 2 };
const PRIORITIES = ['low', 'normal', 'high', 'urgent'] as const;

interface Finished {
  status: number;
  priority: string;
  doneAt: number;
  queueHeader: string | null;
  body: string;
}

describe('engine under load (tiny model, CPU)', () => {
  let c: TestConsole;
  beforeAll(async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'engine-load-'));
    for (const id of ['tiny', 'tiny-b', 'tiny-c']) installTinyModel(dataDir, id);
    c = await startConsole({ dataDir, config: { engine: ENGINE } });
  });
  afterAll(async () => {
    await c?.close();
  });

  const chat = async (model: string, priority: string, stream = false): Promise<Finished> => {
    const res = await fetch(`${c.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-priority': priority },
      body: JSON.stringify({ model, messages: [{ role: 'user', content: 'hello there' }], max_tokens: 24, temperature: 0, stream }),
    });
    const body = await res.text();
    return { status: res.status, priority, doneAt: performance.now(), queueHeader: res.headers.get('x-queue-position'), body };
  };

  it('answers 40 concurrent chat requests on 4 sequences, urgent ones first', async () => {
    // Load the model and fill its sequences first, so the rest really wait in the queue.
    const warm = await chat('tiny', 'normal');
    expect(warm.status).toBe(200);
    const requests: Array<Promise<Finished>> = [];
    for (let i = 0; i < 40; i++) requests.push(chat('tiny', PRIORITIES[i % 4]!, i % 5 === 0));
    const results = await Promise.all(requests);
    const failed = results.filter((r) => r.status !== 200);
    expect(failed.map((r) => `${r.status} ${r.body.slice(0, 200)}`)).toEqual([]);
    const order = [...results].sort((a, b) => a.doneAt - b.doneAt);
    const medianIndex = (p: string) => {
      const idx = order.map((r, i) => (r.priority === p ? i : -1)).filter((i) => i >= 0);
      return idx[Math.floor(idx.length / 2)]!;
    };
    expect(medianIndex('urgent')).toBeLessThan(medianIndex('low'));
    // Requests that waited learned their place: in headers (non-stream) or a `: queued` comment (stream).
    const told = results.filter((r) => r.queueHeader !== null || r.body.includes(': queued'));
    expect(told.length).toBeGreaterThan(0);
    const status = (await (await fetch(`${c.url}/api/v1/engine/status`)).json()) as { activeSequences: number };
    expect(status.activeSequences).toBe(0);
  }, 180_000);

  it('orders embeddings by X-Priority too (they share the engine queue)', async () => {
    const embed = async (priority: string) => {
      const res = await fetch(`${c.url}/v1/embeddings`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-priority': priority },
        body: JSON.stringify({ model: 'tiny', input: Array.from({ length: 6 }, (_, i) => `the cat sat on the mat ${i} `.repeat(8)) }),
      });
      await res.text();
      return { status: res.status, priority, doneAt: performance.now(), queued: res.headers.get('x-queue-position') };
    };
    const results = await Promise.all(Array.from({ length: 16 }, (_, i) => embed(PRIORITIES[i % 4]!)));
    expect(results.map((r) => r.status)).toEqual(results.map(() => 200));
    const order = [...results].sort((a, b) => a.doneAt - b.doneAt);
    const median = (p: string) => {
      const idx = order.map((r, i) => (r.priority === p ? i : -1)).filter((i) => i >= 0);
      return idx[Math.floor(idx.length / 2)]!;
    };
    expect(median('urgent')).toBeLessThan(median('low'));
    expect(results.some((r) => r.queued !== null)).toBe(true);
  }, 120_000);

  it('queues requests for a model that cannot be loaded yet instead of refusing them', async () => {
    const requests: Array<Promise<Finished>> = [];
    for (let i = 0; i < 18; i++) requests.push(chat(['tiny', 'tiny-b', 'tiny-c'][i % 3]!, PRIORITIES[i % 4]!));
    const results = await Promise.all(requests);
    const errors = c.logs.filter((l) => l.includes('"level":50'));
    expect(results.filter((r) => r.status !== 200).map((r) => `${r.status} ${r.body.slice(0, 200)}`), errors.join('\n').slice(0, 3000)).toEqual([]);
  }, 180_000);

  // Last: it stops the console.
  it('a console drain refuses the queued requests at once (503) and lets the running ones finish', async () => {
    const long = async () => {
      const res = await fetch(`${c.url}/v1/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'tiny', prompt: 'the cat', max_tokens: 400, temperature: 0 }),
      });
      return { status: res.status, at: performance.now(), body: await res.text() };
    };
    const requests = Array.from({ length: PARALLEL * 3 }, () => long());
    await waitUntil(() => c.console.engine.snapshot().queue.total >= PARALLEL, 20_000, 'requests waiting in the engine queue');
    const t0 = performance.now();
    const closing = c.console.close({ graceMs: 120_000 });
    const results = await Promise.all(requests);
    await closing;
    const refused = results.filter((r) => r.status === 503);
    const served = results.filter((r) => r.status === 200);
    expect(refused.length + served.length).toBe(results.length);
    expect(served.length).toBeGreaterThanOrEqual(PARALLEL);
    expect(refused.length).toBeGreaterThanOrEqual(PARALLEL);
    for (const r of refused) expect(r.body).toContain('The engine is stopping');
    // Refused at the start of the drain, long before the running ones end.
    expect(Math.max(...refused.map((r) => r.at - t0))).toBeLessThan(Math.min(...served.map((r) => r.at - t0)));
    for (const r of served) expect((JSON.parse(r.body) as { choices: Array<{ finish_reason: string }> }).choices[0]!.finish_reason).toBe('length');
  }, 180_000);
});
