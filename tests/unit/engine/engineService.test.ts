import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FakeClock } from '../../../electron/core/base/clock.js';
import { ConfigStore, loadSettings, type Layer } from '../../../electron/core/base/config.js';
import { AppError } from '../../../electron/core/base/errors.js';
import { MetricsRegistry } from '../../../electron/core/base/metrics.js';
import type { LocalModelFile, ModelFilesPort } from '../../../electron/core/base/ports.js';
import { EngineService, type CompletionInput, type EngineServiceOptions, type GenerationEvent, type GenerationResult, type RunOptions } from '../../../electron/core/services/engine/engineService.js';
import { collect } from '../../../electron/core/services/engine/generation.js';
import { tinyModelPath } from '../../helpers/tinyModel.js';
import { waitUntil } from '../../helpers/wait.js';

/** A small ModelFilesPort over a folder: every `<id>.gguf` is a model. */
class DirModelFiles implements ModelFilesPort {
  constructor(private readonly dir: string) {}
  async list(): Promise<LocalModelFile[]> {
    return readdirSync(this.dir)
      .filter((f) => f.endsWith('.gguf'))
      .sort()
      .map((f) => {
        const s = statSync(join(this.dir, f));
        return { id: f.slice(0, -5), path: join(this.dir, f), sizeBytes: s.size, modifiedAt: s.mtimeMs };
      });
  }
  async get(id: string): Promise<LocalModelFile | undefined> {
    return (await this.list()).find((m) => m.id === id);
  }
  private readonly listeners = new Set<() => void>();
  onChange(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
  emit(): void {
    for (const l of this.listeners) l();
  }
}

interface Harness {
  engine: EngineService;
  clock: FakeClock;
  config: ConfigStore;
  modelsDir: string;
  files: DirModelFiles;
  close(): Promise<void>;
}

async function harness(engineConfig: Layer, extra: Pick<EngineServiceOptions, 'selfTest'> = {}): Promise<Harness> {
  const dir = mkdtempSync(join(tmpdir(), 'engine-unit-'));
  const modelsDir = join(dir, 'models');
  mkdirSync(modelsDir);
  copyFileSync(tinyModelPath(), join(modelsDir, 'tiny.gguf'));
  const config = new ConfigStore(loadSettings({ env: {}, dataDir: dir, overrides: { engine: { gpu: 'false', detectOnStart: false, ...engineConfig } } }));
  const clock = new FakeClock();
  const files = new DirModelFiles(modelsDir);
  const engine = new EngineService({ config, clock, logger: pino({ level: 'silent' }), metrics: new MetricsRegistry(), models: files, ...extra });
  await engine.start();
  return {
    engine,
    clock,
    config,
    modelsDir,
    files,
    async close() {
      await engine.stop();
      await engine.stop();
      // Idle-unload timers are released with the models.
      expect(clock.pendingTimers()).toBe(0);
      expect(engine.snapshot().loadedModels).toEqual([]);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

const greedy = { maxTokens: 6, temperature: 0 };
const opts = (extra: Partial<RunOptions> = {}): RunOptions => ({ route: 'api_inference', priority: 'normal', requestId: 'r', ...extra });

/** A completion through `generate()`, run to its end; the callbacks of `o` see its events. */
function complete(engine: EngineService, input: CompletionInput, o: RunOptions): Promise<GenerationResult> {
  const { onQueued, onStart, onText, ...options } = o;
  return collect(engine.generate({ kind: 'completion', input }, options), (e) => {
    if (e.type === 'queued') onQueued?.(e.position);
    else if (e.type === 'started') onStart?.();
    else if (e.type === 'text') onText?.(e.text, e.tokens);
  });
}

/** Waits for what a fired timer or a file event started (an unload, a queue change) to finish. */
async function settle(predicate: () => boolean, what: string): Promise<void> {
  await waitUntil(predicate, 5000, what, 5);
}

describe('EngineService: loading, idle unload, errors', () => {
  let h: Harness;
  beforeAll(async () => {
    h = await harness({ threads: 2, idleTtlSeconds: 600, parallel: 2 });
  });
  afterAll(async () => h.close());

  it('loads on the first request and generates deterministic greedy text', async () => {
    expect(h.engine.snapshot().loadedModels).toEqual([]);
    const a = await complete(h.engine, { modelId: 'tiny', prompt: 'hello', params: greedy }, opts());
    const b = await complete(h.engine, { modelId: undefined, prompt: 'hello', params: greedy }, opts());
    expect(a.modelId).toBe('tiny');
    expect(b.modelId).toBe('tiny');
    expect(a.text).toBe(b.text);
    expect(a.tokens).toEqual(b.tokens);
    expect(a.completionTokens).toBe(6);
    expect(a.finishReason).toBe('length');
    expect(h.engine.snapshot()).toMatchObject({ backend: 'cpu', activeSequences: 0, loadedModels: [{ id: 'tiny', parallel: 2, activeSequences: 0 }] });
    expect((await h.engine.health()).details).toMatchObject({ backend: 'cpu', requestedBackend: 'false', threads: 2 });
  });

  it('unloads an idle model after the TTL, and a per-request ttl overrides it', async () => {
    await complete(h.engine, { modelId: 'tiny', prompt: 'a', params: greedy }, opts());
    h.clock.advance(599_000);
    expect(h.engine.snapshot().loadedModels).toHaveLength(1);
    h.clock.advance(2_000);
    await settle(() => h.engine.snapshot().loadedModels.length === 0, 'the model to be unloaded');
    expect(h.engine.snapshot().loadedModels).toEqual([]);
    expect((await h.engine.getModel('tiny')).status).toBe('unloaded');

    await complete(h.engine, { modelId: 'tiny', prompt: 'a', params: greedy }, opts({ ttlSeconds: 5 }));
    expect(h.engine.snapshot().loadedModels[0]?.idleTtlSeconds).toBe(5);
    h.clock.advance(5_001);
    await settle(() => h.engine.snapshot().loadedModels.length === 0, 'the model to be unloaded');
    expect(h.engine.snapshot().loadedModels).toEqual([]);
  });

  it('unloads a model whose file was replaced, and the next request loads the new file', async () => {
    const before = await complete(h.engine, { modelId: 'tiny', prompt: 'hello', params: greedy }, opts());
    copyFileSync(tinyModelPath(2), join(h.modelsDir, 'tiny.gguf'));
    const t = new Date(Date.now() + 5000);
    utimesSync(join(h.modelsDir, 'tiny.gguf'), t, t);
    h.files.emit();
    await settle(() => h.engine.snapshot().loadedModels.length === 0, 'the model to be unloaded');
    expect(h.engine.snapshot().loadedModels).toEqual([]);
    const after = await complete(h.engine, { modelId: 'tiny', prompt: 'hello', params: greedy }, opts());
    expect(after.text).not.toBe(before.text);
    copyFileSync(tinyModelPath(1), join(h.modelsDir, 'tiny.gguf'));
    h.files.emit();
    await settle(() => h.engine.snapshot().loadedModels.length === 0, 'the model to be unloaded');
  });

  it('answers 404 listing the available ids for an unknown model', async () => {
    const err = await complete(h.engine, { modelId: 'nope', prompt: 'a', params: greedy }, opts()).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AppError);
    expect((err as AppError).status).toBe(404);
    expect((err as AppError).message).toContain('available: tiny');
  });

  it('rejects a corrupt GGUF with the file name and reason, and keeps serving', async () => {
    writeFileSync(join(h.modelsDir, 'broken.gguf'), Buffer.concat([Buffer.from('GGUF'), Buffer.alloc(64, 0xff)]));
    const err = await complete(h.engine, { modelId: 'broken', prompt: 'a', params: greedy }, opts()).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AppError);
    expect((err as AppError).status).toBe(503);
    expect((err as AppError).message).toContain('broken.gguf');
    expect((await h.engine.getModel('broken')).status).toBe('error');
    const ok = await complete(h.engine, { modelId: 'tiny', prompt: 'a', params: greedy }, opts());
    expect(ok.completionTokens).toBe(6);
    rmSync(join(h.modelsDir, 'broken.gguf'));
  });

  it('refuses a model bigger than the memory budget, naming the file', async () => {
    await h.engine.unload('tiny');
    h.config.update({ engine: { memoryBudgetMb: 0 } });
    const cfg = h.config.get().engine;
    expect(cfg.memoryBudgetMb).toBe(0);
    // A 1 MiB budget cannot hold weights + 2 sequences of 512 tokens of KV cache.
    const tight = h.config.update({ engine: { memoryBudgetMb: 1 } });
    expect(tight.ok).toBe(true);
    const err = await h.engine.load('tiny').catch((e: unknown) => e);
    expect((err as AppError).code).toBe('INSUFFICIENT_RESOURCES');
    expect((err as AppError).message).toMatch(/tiny\.gguf.*MiB/);
    h.config.update({ engine: { memoryBudgetMb: 0 } });
    expect((await h.engine.load('tiny')).status).toBe('ready');
  });

  it('unloads the least recently used idle model when maxLoadedModels is reached', async () => {
    h.config.update({ engine: { maxLoadedModels: 1 } });
    copyFileSync(join(h.modelsDir, 'tiny.gguf'), join(h.modelsDir, 'tiny2.gguf'));
    await h.engine.load('tiny');
    await complete(h.engine, { modelId: 'tiny2', prompt: 'a', params: greedy }, opts());
    expect(h.engine.snapshot().loadedModels.map((m) => m.id)).toEqual(['tiny2']);
    h.config.update({ engine: { maxLoadedModels: 2 } });
    await h.engine.unload('tiny2');
  });
});

describe('EngineService: sequences and the priority queue', () => {
  let h: Harness;
  beforeAll(async () => {
    // 1 thread: long generations stay fast on a loaded 2-core machine (2 threads spin in ggml barriers).
    // Context 4096 (past the trained 512; llama.cpp allows it): the holder's generation is long
    // enough that the test acts while it runs even on a fast machine (it is aborted early).
    h = await harness({ threads: 1, parallel: 1, queueMaxSize: 2, contextSize: 4096 });
    await h.engine.load('tiny');
  });
  afterAll(async () => h.close());

  /** Starts a long generation and resolves once it has produced text (so it holds the only sequence). */
  function holdSequence(controller: AbortController) {
    let started!: () => void;
    const running = new Promise<void>((r) => (started = r));
    const result = complete(h.engine, { modelId: 'tiny', prompt: 'x', params: { maxTokens: 4000, temperature: 0 } }, opts({ requestId: 'holder', signal: controller.signal, onText: () => started() }));
    return { running, result };
  }

  it('queues requests beyond `parallel` by priority, reports places, refuses beyond the bound, frees the sequence on abort', async () => {
    const holder = new AbortController();
    const hold = holdSequence(holder);
    await hold.running;
    expect(h.engine.snapshot().activeSequences).toBe(1);

    const order: string[] = [];
    const places: Record<string, number[]> = { low: [], urgent: [] };
    const low = complete(h.engine, { modelId: 'tiny', prompt: 'a', params: greedy }, opts({ requestId: 'low', priority: 'low', onQueued: (p) => places.low!.push(p.position), onStart: () => order.push('low') }));
    const urgent = complete(h.engine, { modelId: 'tiny', prompt: 'a', params: greedy }, opts({ requestId: 'urgent', priority: 'urgent', onQueued: (p) => places.urgent!.push(p.position), onStart: () => order.push('urgent') }));
    await settle(() => h.engine.snapshot().queue.total === 2, 'two requests in the queue');
    expect(h.engine.snapshot().queue.depth).toEqual({ urgent: 1, high: 0, normal: 0, low: 1 });
    expect(h.engine.waiting().map((w) => [w.id, w.position])).toEqual([
      ['urgent', 1],
      ['low', 2],
    ]);
    expect(places.low).toEqual([1, 2]);
    expect(places.urgent).toEqual([1]);

    const full = await complete(h.engine, { modelId: 'tiny', prompt: 'a', params: greedy }, opts({ requestId: 'third' })).catch((e: unknown) => e);
    expect((full as AppError).status).toBe(429);
    expect((full as AppError).headers['retry-after']).toMatch(/^\d+$/);

    // The holder's client goes away: its sequence is freed at once and the urgent request goes first.
    holder.abort(new Error('client gone'));
    const held = await hold.result;
    expect(held.aborted).toBe(true);
    expect(held.completionTokens).toBeLessThan(4000);
    await Promise.all([low, urgent]);
    expect(order).toEqual(['urgent', 'low']);
    expect(h.engine.snapshot()).toMatchObject({ activeSequences: 0, queue: { total: 0 } });
  });

  it('generate() is one stream of events: queue places, started, text, then done; a failure is the last event', async () => {
    const holder = new AbortController();
    const hold = holdSequence(holder);
    await hold.running;
    const events: GenerationEvent[] = [];
    const input = { modelId: 'tiny', prompt: 'hello', params: greedy };
    const consumed = (async () => {
      for await (const e of h.engine.generate({ kind: 'completion', input }, opts({ requestId: 'gen' }))) events.push(e);
    })();
    await settle(() => h.engine.snapshot().queue.total === 1, 'one request in the queue');
    holder.abort(new Error('client gone'));
    await hold.result;
    await consumed;

    const types = events.map((e) => e.type);
    expect(events[0]).toEqual({ type: 'queued', position: { position: 1, etaMs: expect.any(Number) } });
    expect(types.filter((t) => t === 'started')).toHaveLength(1);
    expect(types.indexOf('started')).toBeGreaterThan(types.lastIndexOf('queued'));
    expect(types.at(-1)).toBe('done');
    expect(types.slice(types.indexOf('started') + 1, -1).every((t) => t === 'text')).toBe(true);
    const done = events.at(-1) as Extract<GenerationEvent, { type: 'done' }>;
    const text = events.map((e) => (e.type === 'text' ? e.text : '')).join('');
    expect(text).toBe(done.result.text);
    // The same text as the same generation run again (greedy, same prompt).
    expect(done.result.text).toBe((await complete(h.engine, input, opts())).text);
    expect(done.result).toMatchObject({ modelId: 'tiny', finishReason: 'length', completionTokens: 6, aborted: false });

    const failed: GenerationEvent[] = [];
    for await (const e of h.engine.generate({ kind: 'completion', input: { ...input, modelId: 'nope' } }, opts())) failed.push(e);
    expect(failed.map((e) => e.type)).toEqual(['error']);
    expect(((failed[0] as Extract<GenerationEvent, { type: 'error' }>).error as AppError).status).toBe(404);
    expect(h.engine.snapshot()).toMatchObject({ activeSequences: 0, queue: { total: 0 } });
  });

  it('a request aborted while waiting leaves the queue and never takes a sequence', async () => {
    const holder = new AbortController();
    const hold = holdSequence(holder);
    await hold.running;
    const waiter = new AbortController();
    let started = false;
    const queued = complete(h.engine, { modelId: 'tiny', prompt: 'a', params: greedy }, opts({ requestId: 'w', signal: waiter.signal, onStart: () => (started = true) }));
    await settle(() => h.engine.snapshot().queue.total === 1, 'one request in the queue');
    waiter.abort(new Error('gone while waiting'));
    await expect(queued).rejects.toThrow('gone while waiting');
    expect(h.engine.snapshot().queue.total).toBe(0);
    holder.abort();
    await hold.result;
    expect(started).toBe(false);
    expect(h.engine.snapshot().activeSequences).toBe(0);
  });

  it('rejects a prompt longer than the context with the token counts, holding no sequence', async () => {
    const err = await complete(h.engine, { modelId: 'tiny', prompt: 'ab '.repeat(1500), params: greedy }, opts()).catch((e: unknown) => e);
    expect((err as AppError).status).toBe(400);
    expect((err as AppError).message).toMatch(/prompt is \d+ tokens; the model's context holds 4096/);
    expect(h.engine.snapshot().activeSequences).toBe(0);
  });
});

describe('EngineService: close() drains', () => {
  /** A generation consumed in the background: its events, and a promise of its first text. */
  function watch(h: Harness, input: CompletionInput, requestId: string) {
    const events: GenerationEvent[] = [];
    let firstText!: () => void;
    const producing = new Promise<void>((r) => (firstText = r));
    const ended = (async () => {
      for await (const e of h.engine.generate({ kind: 'completion', input }, { route: 'api_inference', priority: 'normal', requestId })) {
        events.push(e);
        if (e.type === 'text') firstText();
      }
    })();
    return { events, producing, ended, text: () => events.map((e) => (e.type === 'text' ? e.text : '')).join('') };
  }
  const last = (events: GenerationEvent[]) => events.at(-1);
  const stopping = (e: GenerationEvent | undefined) => e?.type === 'error' && e.error instanceof AppError && e.error.status === 503 && e.error.code === 'UNAVAILABLE' && e.error.message === 'The engine is stopping';

  it('lets a running generation finish with its full text; refuses new requests, queued ones and loads with 503 while it drains', async () => {
    const h = await harness({ threads: 1, parallel: 1, queueMaxSize: 2, contextSize: 4096 });
    try {
      const input = { modelId: 'tiny', prompt: 'hello', params: { maxTokens: 300, temperature: 0 } };
      const expected = await complete(h.engine, input, opts());
      expect(expected.completionTokens).toBe(300);

      const running = watch(h, input, 'running');
      await running.producing;
      const queued = watch(h, { modelId: 'tiny', prompt: 'a', params: greedy }, 'queued');
      await settle(() => h.engine.snapshot().queue.total === 1, 'one request in the queue');

      // A deadline that does not fire: the drain waits as long as the running generation takes.
      const closing = h.engine.close({ deadline: new AbortController().signal });
      expect(h.engine.draining).toBe(true);
      expect(h.engine.snapshot().activeSequences).toBe(1);
      const late: GenerationEvent[] = [];
      for await (const e of h.engine.generate({ kind: 'completion', input }, opts({ requestId: 'late' }))) late.push(e);
      expect(late).toHaveLength(1);
      expect(stopping(late[0])).toBe(true);
      const load = await h.engine.load('tiny').catch((e: unknown) => e);
      expect(load).toMatchObject({ status: 503, message: 'The engine is stopping' });
      const embedding = await h.engine.embed('tiny', ['a'], opts({ requestId: 'embed' })).catch((e: unknown) => e);
      expect(embedding).toMatchObject({ status: 503, message: 'The engine is stopping' });

      // The queued request never started: it is refused at once, before the running one ends.
      await queued.ended;
      expect(queued.events.map((e) => e.type)).toEqual(['queued', 'error']);
      expect(stopping(last(queued.events))).toBe(true);
      expect(h.engine.draining).toBe(true);

      await closing;
      await running.ended;
      const done = last(running.events);
      expect(done?.type).toBe('done');
      const result = (done as Extract<GenerationEvent, { type: 'done' }>).result;
      expect(result).toMatchObject({ aborted: false, finishReason: 'length', completionTokens: 300, text: expected.text });
      expect(running.text()).toBe(expected.text);
      expect(h.engine.running).toBe(false);

      // Closed: refused as not running.
      const after = await complete(h.engine, input, opts()).catch((e: unknown) => e);
      expect(after).toMatchObject({ status: 503, message: 'The engine is not running' });
    } finally {
      await h.close();
    }
  });

  it('refuses a request accepted before the drain that still waits for its model to load', async () => {
    const h = await harness({ threads: 1, parallel: 1 });
    try {
      const waiting = watch(h, { modelId: 'tiny', prompt: 'a', params: greedy }, 'loading');
      await settle(() => h.engine.snapshot().loading.includes('tiny'), 'the model to be loading');
      await h.engine.close({ deadline: new AbortController().signal });
      await waiting.ended;
      expect(waiting.events.map((e) => e.type)).toEqual(['error']);
      expect(stopping(last(waiting.events))).toBe(true);
      expect(h.engine.snapshot()).toMatchObject({ activeSequences: 0, loadedModels: [], loading: [] });
    } finally {
      await h.close();
    }
  });

  it('aborts a running generation when the deadline fires: it ends with a 503 error, not a short answer', async () => {
    const h = await harness({ threads: 1, parallel: 1, contextSize: 4096 });
    try {
      const running = watch(h, { modelId: 'tiny', prompt: 'x', params: { maxTokens: 4000, temperature: 0 } }, 'long');
      await running.producing;
      await h.engine.close({ deadline: AbortSignal.abort() });
      await running.ended;
      const types = running.events.map((e) => e.type);
      expect(types[0]).toBe('started');
      expect(types).toContain('text');
      expect(types).not.toContain('done');
      expect(stopping(last(running.events))).toBe(true);
      expect(h.engine.running).toBe(false);
      expect(h.engine.snapshot()).toMatchObject({ activeSequences: 0, loadedModels: [] });
    } finally {
      await h.close();
    }
  });
});

describe('EngineService: a forced backend that is missing', () => {
  // Metal exists only on macOS, CUDA never there: the forced backend is missing on any machine.
  const missing = process.platform === 'darwin' ? 'cuda' : 'metal';
  it('answers 503 with the reason, reports DOWN in health, and keeps running', async () => {
    const h = await harness({ gpu: missing, threads: 1 });
    try {
      const err = await complete(h.engine, { modelId: 'tiny', prompt: 'a', params: greedy }, opts()).catch((e: unknown) => e);
      expect((err as AppError).code).toBe('INSUFFICIENT_RESOURCES');
      expect((err as AppError).message).toContain(`Inference backend '${missing}' is not available`);
      const health = await h.engine.health();
      expect(health.status).toBe('DOWN');
      expect(health.details).toMatchObject({ backend: null, requestedBackend: missing, error: expect.stringContaining(missing) });
      expect((await h.engine.listModels()).map((m) => m.id)).toEqual(['tiny']);
      expect(h.engine.snapshot().activeSequences).toBe(0);
    } finally {
      await h.close();
    }
  });
});

describe('EngineService: GPU self-test', () => {
  it('a forced GPU backend whose self-test crashes is refused with the native reason; the console process lives on', async () => {
    const tested: unknown[] = [];
    const h = await harness(
      { gpu: 'cuda', threads: 1 },
      {
        selfTest: async (b) => {
          tested.push(b);
          return { backend: 'cuda', ok: false, reason: 'CUDA error: the provided PTX was compiled with an unsupported toolchain. (probe killed by SIGABRT)', ms: 5 };
        },
      },
    );
    try {
      const err = await complete(h.engine, { modelId: 'tiny', prompt: 'a', params: greedy }, opts()).catch((e: unknown) => e);
      expect((err as AppError).code).toBe('INSUFFICIENT_RESOURCES');
      expect((err as AppError).message).toContain('the cuda backend failed its self-test: CUDA error: the provided PTX');
      const health = await h.engine.health();
      expect(health.status).toBe('DOWN');
      expect(health.details).toMatchObject({ backend: null, requestedBackend: 'cuda', selfTests: [{ backend: 'cuda', ok: false }] });
      expect(tested).toEqual(['cuda']);
      // The next request tries the backend again, but does not probe it again.
      const again = await complete(h.engine, { modelId: 'tiny', prompt: 'a', params: greedy }, opts()).catch((e: unknown) => e);
      expect((again as AppError).message).toContain('the cuda backend failed its self-test');
      expect(tested).toEqual(['cuda']);
    } finally {
      await h.close();
    }
  });

  it('gpuSelfTest false skips the probe (auto goes straight to node-llama-cpp)', async () => {
    let calls = 0;
    const h = await harness({ gpu: 'auto', threads: 1, gpuSelfTest: false }, { selfTest: async () => ({ backend: 'cuda', ok: false, ms: 0, reason: `${++calls}` }) });
    try {
      const r = await complete(h.engine, { modelId: 'tiny', prompt: 'a', params: greedy }, opts());
      expect(r.text.length).toBeGreaterThan(0);
      expect(calls).toBe(0);
      expect((await h.engine.health()).details).not.toHaveProperty('selfTests');
    } finally {
      await h.close();
    }
  });
});
