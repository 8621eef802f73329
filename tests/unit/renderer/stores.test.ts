import { describe, expect, it } from 'vitest';
import { ConsoleClient } from '../../../shared/client/consoleClient.js';
import type { GpuLockStatus, HealthDetails, LimiterStatus } from '../../../shared/client/apiTypes.js';
import type { StreamStatus } from '../../../shared/client/liveStream.js';
import type { ConsoleLogRecord, ConsoleSnapshot, LogFilter } from '../../../shared/contracts/console.js';
import { createLiveStore } from '../../../renderer/src/app/liveStore.js';
import { createSessionStore, TOKEN_KEY } from '../../../renderer/src/app/sessionStore.js';
import { createRouterStore } from '../../../renderer/src/app/router.js';
import { createChatStore, validateParams } from '../../../renderer/src/features/chat/store.js';
import { buildPatch, createConfigStore, flattenConfig } from '../../../renderer/src/features/config/store.js';
import { createGpuStore, ttlLeft } from '../../../renderer/src/features/gpu/store.js';
import { createLimiterStore } from '../../../renderer/src/features/limiter/store.js';
import { createLogsStore } from '../../../renderer/src/features/logs/store.js';
import { createModelsStore, validateModelUri } from '../../../renderer/src/features/models/store.js';
import { createTrainingStore, formToRequest, mergeLoss, validateTrainingForm } from '../../../renderer/src/features/training/store.js';
import { alertsFor } from '../../../renderer/src/features/overview/alerts.js';
import { waitUntil } from '../../helpers/wait.js';
import { fakeFetch, snapshot, sseResponse } from './fakes.js';

function source() {
  const snaps = new Set<(s: ConsoleSnapshot) => void>();
  const stats = new Set<(s: StreamStatus) => void>();
  return {
    onSnapshot: (fn: (s: ConsoleSnapshot) => void) => (snaps.add(fn), () => snaps.delete(fn)),
    onStatus: (fn: (s: StreamStatus) => void) => (stats.add(fn), () => stats.delete(fn)),
    getStatus: (): StreamStatus => 'connecting',
    emit: (s: ConsoleSnapshot) => snaps.forEach((f) => f(s)),
    status: (s: StreamStatus) => stats.forEach((f) => f(s)),
  };
}

/** `GET /api/v1/health/details` with these components. */
function health(components: HealthDetails['components']): HealthDetails {
  return { status: 'UP', components, timestamp: '2026-01-01T00:00:00Z' };
}

function limiterStatus(state: LimiterStatus['retreat']['state'], rpm: number, ratio: number): LimiterStatus {
  return {
    requests: { total: 0, nvidia: 0, passthrough: 0, ratelimited: 0 },
    errors: { queue_full_rejects: 0, upstream_errors: 0 },
    queue: { max_size: 500, current_size: 3, total_enqueued: 0, total_dequeued: 0, total_dropped: 0, depth_by_priority: { URGENT: 0, HIGH: 1, NORMAL: 0, LOW: 2 }, full_policy: 'passthrough', utilization: 0.006 },
    token_bucket: { tokens: 12, capacity: 40, rate_per_minute: rpm, utilization: 0.7, paused_seconds: 0 },
    retreat: { state, effective_rpm: rpm, base_rpm: 40, ceiling_rpm: 40, upstream_429_rate: ratio },
    uptime_seconds: 5,
    providers: {},
  };
}

describe('live store', () => {
  it('keeps the latest snapshot, the series and the disconnection time', () => {
    const src = source();
    let now = 100;
    const live = createLiveStore(src, { now: () => now, capacity: 5 });
    src.emit(snapshot(1000, { services: { monitoring: { telemetry: { latest: { gpus: [{ index: 0, utilizationGpu: 30 }, { index: 1, utilizationGpu: 50 }, { index: 2, utilizationGpu: null }] } } }, engine: { tokensPerSecond: 42 } } }));
    const st = live.getState();
    expect(st.tick).toBe(1);
    expect(st.firstDataAt).toBe(100);
    expect(st.series.gpuUtil.last()?.value).toBe(40);
    expect(st.series.tokensPerSecond.last()?.value).toBe(42);
    expect(st.series.memory.last()?.value).toBe(50);
    now = 500;
    src.status('disconnected');
    expect(live.getState().disconnectedSince).toBe(500);
    now = 900;
    src.status('disconnected');
    expect(live.getState().disconnectedSince).toBe(500);
    src.status('open');
    expect(live.getState().disconnectedSince).toBeNull();
    live.getState().dispose();
  });
});

describe('limiter store', () => {
  it('records rolling history and a retreat timeline from statuses', () => {
    const limiter = createLimiterStore(new ConsoleClient({ baseUrl: '', fetch: fakeFetch({}) }), { capacity: 100 });
    limiter.getState().ingest(limiterStatus('normal', 40, 0), 1000);
    limiter.getState().ingest(limiterStatus('normal', 40, 0.01), 2000);
    limiter.getState().ingest(limiterStatus('retreat', 30, 0.08), 3000);
    limiter.getState().ingest(limiterStatus('retreat', 22.5, 0.12), 4000);
    const st = limiter.getState();
    expect(st.availability).toBe('ok');
    expect(Object.keys(st.providers)).toEqual(['nvidia']);
    const h = st.history.nvidia!;
    expect(h.timeline).toEqual([
      { time: 1000, state: 'normal', rpm: 40, reason: 'first seen' },
      { time: 3000, state: 'retreat', rpm: 30 },
    ]);
    expect(h.rpm.window(0).map((p) => p.v)).toEqual([40, 40, 30, 22.5]);
    expect(h.ratio429.last()?.value).toBeCloseTo(12);
    expect(h.queueDepth.last()?.value).toBe(3);
  });
  it("uses the limiter's own transition log when the snapshot carries one", () => {
    const limiter = createLimiterStore(new ConsoleClient({ baseUrl: '', fetch: fakeFetch({}) }), { capacity: 100 });
    limiter.getState().ingest(limiterStatus('normal', 40, 0), 1000);
    const s = { ...limiterStatus('retreat', 30, 0.1), recent_transitions: [{ provider: 'nvidia', from: 'normal', to: 'retreat', previous_rpm: 40, rpm: 30, ratio: 0.1, reason: '429 ratio 0.10 ≥ 0.05', timestamp: 1.5 }] };
    limiter.getState().ingest(s, 2000);
    limiter.getState().ingest(s, 3000); // the same transition again is not repeated
    expect(limiter.getState().history.nvidia?.timeline.slice(1)).toEqual([{ time: 1500, state: 'retreat', rpm: 30, reason: '429 ratio 0.10 ≥ 0.05' }]);
  });

  it('reads recent requests per provider from the limiter request log', async () => {
    const f = fakeFetch({
      'GET /api/console/logs': () => [200, { records: [
        { time: 1, level: 'info', module: 'limiter', msg: 'limiter started' },
        { time: 2, level: 'info', module: 'limiter', msg: 'request_completed', provider: 'nvidia', status: 429, queue_latency: 0.01, total_latency: 0.2, retreat_state: 'retreat' },
        { time: 3, level: 'info', module: 'limiter', msg: 'request_failed', provider: 'other', error: 'timeout' },
      ] }],
    });
    const limiter = createLimiterStore(new ConsoleClient({ baseUrl: '', fetch: f }));
    await limiter.getState().refreshRecent();
    expect(f.calls[0]?.url).toBe('/api/console/logs?module=limiter&limit=1000');
    expect(limiter.getState().recent).toEqual({
      nvidia: [{ time: 2, provider: 'nvidia', status: 429, error: undefined, queueLatency: 0.01, totalLatency: 0.2, retreatState: 'retreat' }],
      other: [{ time: 3, provider: 'other', status: null, error: 'timeout', queueLatency: undefined, totalLatency: undefined, retreatState: undefined }],
    });
  });

  it('says "missing" when the limiter route is not in this build', async () => {
    const limiter = createLimiterStore(new ConsoleClient({ baseUrl: '', fetch: fakeFetch({}) }));
    await limiter.getState().refresh(1);
    expect(limiter.getState().availability).toBe('missing');
  });
});

describe('gpu store', () => {
  it('counts the TTL down locally from when the lock was received', async () => {
    let now = 10_000;
    const lock: GpuLockStatus = {
      lock_key: 'gpu_lock:0', is_locked: true, lock_holder: 'train', ttl_seconds: 60, timestamp: 1, lock_age: 3,
      health: { status: 'healthy', last_check: null, issues: [] },
      statistics: { total_attempts: 1, success_count: 1, timeout_count: 0, failure_count: 0, average_execution_time: 0 },
      recent_history: [], lock_type: 'GPU_LOCK', purpose: 'training', task_id: null, acquired_at: 1, lock_ttl: 60,
    };
    const f = fakeFetch({
      'GET /api/v1/monitoring/gpu-lock/status': () => [200, lock],
      'GET /api/v1/monitoring/heartbeat/all': () => [200, { active_tasks: {}, dead_tasks: [], orphaned_tasks: [], statistics: { total_tasks: 0, active_count: 0, dead_count: 0, orphaned_count: 0, average_heartbeat_interval: 0 }, timestamp: 1 }],
      'POST /api/v1/monitoring/lock/release': (body) => [200, { success: true, message: 'released', lock_key: (body as { lock_key: string }).lock_key, task_name: 'dashboard' }],
    });
    const gpu = createGpuStore(new ConsoleClient({ baseUrl: '', fetch: f }), { now: () => now });
    await gpu.getState().refresh();
    const st = gpu.getState();
    expect(ttlLeft(st.lock, st.lockReceivedAt, now)).toBe(60);
    expect(ttlLeft(st.lock, st.lockReceivedAt, now + 15_500)).toBeCloseTo(44.5);
    expect(ttlLeft(st.lock, st.lockReceivedAt, now + 100_000)).toBe(0);
    expect(ttlLeft({ ...lock, is_locked: false, ttl_seconds: null }, 0, now)).toBeNull();
    now += 1;
    expect(await gpu.getState().forceRelease()).toEqual({ ok: true, message: 'released' });
    expect(f.calls.find((c) => c.method === 'POST')?.body).toEqual({ lock_key: 'gpu_lock:0', task_name: 'dashboard' });
  });
});

describe('config store', () => {
  const view = { config: { server: { httpPort: 8080, allowedHosts: [] }, auth: { openaiToken: 'abcd****' }, ops: { runScript: { enabled: false } } }, file: {}, overridden: ['server.httpPort'], path: '/d/config.json' };

  it('flattens leaves, marks secrets and env overrides', () => {
    const fields = flattenConfig(view.config, view.overridden);
    expect(fields.map((f) => [f.path, f.kind, f.secret, f.overridden])).toEqual([
      ['server.httpPort', 'number', false, true],
      ['server.allowedHosts', 'list', false, false],
      ['auth.openaiToken', 'string', true, false],
      ['ops.runScript.enabled', 'boolean', false, false],
    ]);
    expect(buildPatch({ 'ops.runScript.enabled': true, 'server.httpPort': 1 })).toEqual({ ops: { runScript: { enabled: true } }, server: { httpPort: 1 } });
  });

  it('shows a diff, sends only changed fields, and maps server field errors; nothing saved on error', async () => {
    const f = fakeFetch({
      'GET /api/console/config': () => [200, view],
      'PATCH /api/console/config': () => [400, { error: { code: 'INVALID_REQUEST', message: 'Invalid config; nothing was changed', details: [{ type: 'validation', field: 'server.httpPort', description: 'expected integer ≤ 65535, got 70000' }] } }],
    });
    const cfg = createConfigStore(new ConsoleClient({ baseUrl: '', fetch: f }));
    await cfg.getState().load();
    expect(cfg.getState().draft['auth.openaiToken']).toBe('');
    expect(cfg.getState().changes()).toEqual([]);
    cfg.getState().setField('server.httpPort', '70000');
    expect(cfg.getState().changes()).toEqual([{ path: 'server.httpPort', from: '8080', to: '70000' }]);
    expect(await cfg.getState().apply()).toBe(false);
    expect(f.calls.at(-1)?.body).toEqual({ server: { httpPort: 70000 } });
    expect(cfg.getState().fieldErrors['server.httpPort']).toContain('65535');
    expect(cfg.getState().error).toContain('nothing was changed');
    // the draft survives, so the user can fix it
    expect(cfg.getState().draft['server.httpPort']).toBe('70000');
  });

  it('refuses unparsable input locally without calling the server', async () => {
    const withObjects = { ...view, config: { ...view.config, limiter: { providers: [] as unknown[] } } };
    const schema = { properties: { limiter: { properties: { providers: { type: 'array', items: { type: 'object' } } } } } };
    const f = fakeFetch({ 'GET /api/console/config': () => [200, withObjects], 'GET /api/console/config/schema': () => [200, schema] });
    const cfg = createConfigStore(new ConsoleClient({ baseUrl: '', fetch: f }));
    await cfg.getState().load();
    expect(cfg.getState().fields.find((x) => x.path === 'limiter.providers')?.kind).toBe('json');
    cfg.getState().setField('limiter.providers', '[oops');
    expect(await cfg.getState().apply()).toBe(false);
    expect(cfg.getState().fieldErrors['limiter.providers']).toMatch(/JSON/);
    expect(f.calls.filter((c) => c.method === 'PATCH')).toHaveLength(0);
  });

  it('shows each field\'s description, default, env var and what pins it; arrays of scalars edit as typed lists', async () => {
    const schema = {
      properties: {
        server: {
          properties: {
            httpPort: { type: 'integer', default: 8080, description: 'Main HTTP port.', 'x-env': ['CONSOLE_HTTP_PORT'], 'x-flag': '--port' },
            allowedHosts: { type: 'array', items: { type: 'string' }, default: [], description: 'Extra Host names.', 'x-env': ['CONSOLE_ALLOWED_HOSTS'] },
          },
        },
        monitoring: { properties: { locks: { properties: { gpuIds: { type: 'array', items: { type: 'integer' }, default: [0] } } } } },
      },
    };
    const listView = { ...view, config: { ...view.config, monitoring: { locks: { gpuIds: [0, 1] } } }, pinnedBy: { 'server.httpPort': 'env CONSOLE_HTTP_PORT' } };
    const f = fakeFetch({
      'GET /api/console/config': () => [200, listView],
      'GET /api/console/config/schema': () => [200, schema],
      'PATCH /api/console/config': () => [200, listView],
    });
    const cfg = createConfigStore(new ConsoleClient({ baseUrl: '', fetch: f }));
    await cfg.getState().load();
    const byPath = new Map(cfg.getState().fields.map((x) => [x.path, x]));
    expect(byPath.get('server.httpPort')).toMatchObject({ overridden: true, pinnedBy: 'env CONSOLE_HTTP_PORT', doc: { description: 'Main HTTP port.', default: '8080', env: ['CONSOLE_HTTP_PORT'], flag: '--port' } });
    expect(byPath.get('server.allowedHosts')).toMatchObject({ kind: 'list', itemKind: 'string', original: '[]', doc: { default: '[]', env: ['CONSOLE_ALLOWED_HOSTS'] } });
    expect(byPath.get('monitoring.locks.gpuIds')).toMatchObject({ kind: 'list', itemKind: 'number', original: '["0","1"]', doc: { default: '[0]', env: [] } });
    // rows: a number list refuses a non-number row locally, naming the item
    cfg.getState().setField('monitoring.locks.gpuIds', JSON.stringify(['0', 'x']));
    expect(await cfg.getState().apply()).toBe(false);
    expect(cfg.getState().fieldErrors['monitoring.locks.gpuIds']).toBe('item 2 must be a number');
    cfg.getState().setField('monitoring.locks.gpuIds', JSON.stringify(['0', '1', '3']));
    cfg.getState().setField('server.allowedHosts', JSON.stringify(['gpu-box.lan']));
    expect(await cfg.getState().apply()).toBe(true);
    expect(f.calls.at(-1)?.body).toEqual({ monitoring: { locks: { gpuIds: [0, 1, 3] } }, server: { allowedHosts: ['gpu-box.lan'] } });
  });

  it('sends a secret only when the user typed a new one', async () => {
    const f = fakeFetch({ 'GET /api/console/config': () => [200, view], 'PATCH /api/console/config': () => [200, view] });
    const cfg = createConfigStore(new ConsoleClient({ baseUrl: '', fetch: f }));
    await cfg.getState().load();
    cfg.getState().setField('auth.openaiToken', 'new-secret-value');
    expect(cfg.getState().changes()).toEqual([{ path: 'auth.openaiToken', from: 'abcd****', to: '****' }]);
    expect(await cfg.getState().apply()).toBe(true);
    expect(f.calls.at(-1)?.body).toEqual({ auth: { openaiToken: 'new-secret-value' } });
  });
});

describe('chat store', () => {
  it('streams a reply into the last message and measures TTFT and tokens/s', async () => {
    let now = 0;
    const chunk = (content: string) => JSON.stringify({ choices: [{ index: 0, delta: { content }, finish_reason: null }] });
    const f = fakeFetch({
      'GET /v1/models': () => [200, { object: 'list', data: [{ id: 'tiny', object: 'model' }] }],
      'POST /v1/chat/completions': () => {
        now = 50; // first token arrives 50 ms after send
        return sseResponse([chunk('a'), chunk('b'), chunk('c'), '[DONE]']);
      },
    });
    const chat = createChatStore(new ConsoleClient({ baseUrl: '', fetch: f }), { now: () => now });
    await chat.getState().loadModels();
    expect(chat.getState().model).toBe('tiny');
    const p = chat.getState().send('hello');
    expect(chat.getState().streaming).toBe(true);
    await p;
    const st = chat.getState();
    expect(st.messages).toEqual([
      { role: 'user', content: 'hello' },
      { role: 'assistant', content: 'abc' },
    ]);
    expect(st.streaming).toBe(false);
    expect(st.stats?.ttftMs).toBe(50);
    expect(st.stats?.tokens).toBe(3);
    expect(f.calls.at(-1)?.body).toMatchObject({ model: 'tiny', messages: [{ role: 'system' }, { role: 'user', content: 'hello' }] });
  });
  it('Stop aborts a running stream; what arrived stays, no error is shown', async () => {
    const enc = new TextEncoder();
    let aborted = false;
    const f = fakeFetch({});
    const fetchImpl = async (url: string, init?: RequestInit) => {
      if (!url.endsWith('/v1/chat/completions')) return f(url, init);
      const body = new ReadableStream<Uint8Array>({
        start(controller) {
          controller.enqueue(enc.encode(`data: ${JSON.stringify({ choices: [{ index: 0, delta: { content: 'partial' } }] })}\n\n`));
          init?.signal?.addEventListener('abort', () => {
            aborted = true;
            controller.error(Object.assign(new Error('aborted'), { name: 'AbortError' }));
          });
        },
      });
      return new Response(body, { status: 200, headers: { 'content-type': 'text/event-stream' } });
    };
    const chat = createChatStore(new ConsoleClient({ baseUrl: '', fetch: fetchImpl }));
    chat.getState().setModel('tiny');
    const p = chat.getState().send('go on forever');
    await waitUntil(() => chat.getState().messages.at(-1)?.content === 'partial', 5000, 'the first streamed chunk to reach the chat');
    chat.getState().stop();
    await p;
    expect(aborted).toBe(true);
    expect(chat.getState().streaming).toBe(false);
    expect(chat.getState().error).toBeNull();
    expect(chat.getState().messages.at(-1)?.content).toBe('partial');
  });

  it('validates parameters before sending', () => {
    expect(validateParams({ temperature: 3, max_tokens: 10, top_p: 1 })).toMatch(/temperature/);
    expect(validateParams({ temperature: 1, max_tokens: 0, top_p: 1 })).toBe('max_tokens: expected integer to be greater or equal to 1, got 0');
    expect(validateParams({ temperature: 3, max_tokens: 0, top_p: 1 })?.split('\n')).toHaveLength(2);
    expect(validateParams({ temperature: 1, max_tokens: 10, top_p: 0.9 })).toBeNull();
  });
});

describe('training, models, logs, session, router, overview', () => {
  it('merges training loss points and validation losses by step', () => {
    const a = mergeLoss([], [{ step: 1, loss: 3 }, { step: 2, loss: 2.5 }], []);
    const b = mergeLoss(a, [{ step: 2, loss: 2.4 }, { step: 3, loss: 2 }], [{ step: 3, valLoss: 2.2 }]);
    expect(b).toEqual([{ step: 1, loss: 3 }, { step: 2, loss: 2.4 }, { step: 3, loss: 2, validationLoss: 2.2 }]);
  });

  it('validates the training form and maps server field errors', async () => {
    expect(validateTrainingForm({ baseModel: '', datasetPath: 'd', outputDir: 'o', epochs: '1.5', learningRate: '-1', batchSize: '4', loraRank: '', maxSeqLength: '', method: '', loraAlpha: '', targetModules: [] })).toEqual({
      baseModel: 'Base model is required',
      epochs: 'Epochs: expected integer, got 1.5',
      learningRate: 'Learning rate: expected number to be greater than 0, got -1',
    });
    const f = fakeFetch({ 'POST /api/v1/training/start': () => [400, { error: { code: 'INVALID_REQUEST', message: 'bad', details: [{ type: 'v', field: 'hyperParams.batchSize', description: 'too big for this GPU' }] } }] });
    const t = createTrainingStore(new ConsoleClient({ baseUrl: '', fetch: f }));
    t.getState().setField('baseModel', 'tiny');
    t.getState().setField('datasetPath', '/d.jsonl');
    t.getState().setField('outputDir', '/out');
    expect(await t.getState().start()).toBe('bad');
    expect(t.getState().fieldErrors).toEqual({ batchSize: 'too big for this GPU' });
  });

  it('sends the LoRA choices as loraConfig (method, alpha, target modules) and maps their errors', async () => {
    let sent: unknown;
    const f = fakeFetch({
      'POST /api/v1/training/start': (body) => {
        sent = body;
        return [400, { error: { code: 'INVALID_REQUEST', message: 'bad', details: [{ type: 'v', field: 'loraConfig.targetModules', description: "'k_proj' matches no weight" }] } }];
      },
    });
    const t = createTrainingStore(new ConsoleClient({ baseUrl: '', fetch: f }));
    for (const [k, v] of [['baseModel', 'qwen-q4'], ['datasetPath', 'datasets/chat.jsonl'], ['outputDir', 'mine'], ['method', 'lora'], ['loraRank', '16'], ['loraAlpha', '32']] as const) t.getState().setField(k, v);
    t.getState().toggleTarget('q_proj', true);
    t.getState().toggleTarget('k_proj', true);
    t.getState().toggleTarget('q_proj', false);
    await t.getState().start();
    expect(sent).toMatchObject({ hyperParams: { method: 'lora', loraRank: 16 }, loraConfig: { loraAlpha: 32, targetModules: ['k_proj'] } });
    expect(t.getState().fieldErrors).toEqual({ targetModules: "'k_proj' matches no weight" });
    // a full fine-tune sends no LoRA values
    expect(formToRequest({ ...t.getState().form, method: 'full' }).loraConfig).toBeUndefined();
  });

  it('accepts hf: and https model URIs only', () => {
    expect(validateModelUri('hf:bartowski/Qwen2.5-0.5B-Instruct-GGUF:Q4_K_M')).toBeNull();
    expect(validateModelUri('https://example.com/m.gguf')).toBeNull();
    expect(validateModelUri('')).toMatch(/Enter/);
    expect(validateModelUri('file:///etc/passwd')).toMatch(/Not a model URI/);
  });

  it('models store reports a missing engine and library separately', async () => {
    const m = createModelsStore(new ConsoleClient({ baseUrl: '', fetch: fakeFetch({ 'GET /api/v1/models': () => [200, { models: [] }] }) }));
    await m.getState().refresh();
    expect(m.getState().engine).toBe('ok');
    expect(m.getState().library).toBe('missing');
  });

  it('logs store subscribes with the filter, keeps a bounded buffer, pauses', () => {
    let listener: ((r: ConsoleLogRecord[], backlog: boolean) => void) | null = null;
    const filters: Array<LogFilter | null> = [];
    const logs = createLogsStore({ onLogs: (fn) => ((listener = fn), () => (listener = null)), subscribeLogs: (f) => filters.push(f) }, { max: 3 });
    logs.getState().activate();
    const rec = (i: number, module = 'http'): ConsoleLogRecord => ({ time: i, level: 'info', module, msg: `m${i}` });
    listener!([rec(1), rec(2), rec(3, 'engine'), rec(4)], false);
    expect(logs.getState().records.map((r) => r.msg)).toEqual(['m2', 'm3', 'm4']);
    expect(logs.getState().modules).toEqual(['engine', 'http']);
    logs.getState().setPaused(true);
    listener!([rec(5)], false);
    expect(logs.getState().records).toHaveLength(3);
    logs.getState().setPaused(false);
    listener!([rec(7), rec(8)], true); // a backlog after a reconnect replaces, never duplicates
    expect(logs.getState().records.map((r) => r.msg)).toEqual(['m7', 'm8']);
    logs.getState().setFilter({ module: 'http', level: 'warn' });
    expect(filters.at(-1)).toEqual({ module: 'http', level: 'warn' });
    logs.getState().deactivate();
    expect(filters.at(-1)).toBeNull();
    expect(listener).toBeNull();
  });

  it('session keeps a checked token in storage and forgets it', async () => {
    const storage = new Map<string, string>();
    const st = { getItem: (k: string) => storage.get(k) ?? null, setItem: (k: string, v: string) => void storage.set(k, v), removeItem: (k: string) => void storage.delete(k) };
    const f = fakeFetch({ 'GET /api/console/session': (_b, url) => [200, { admin: true, url }], 'POST /api/console/session': (b) => ((b as { code: string }).code === 'good-code-123' ? [200, { token: 'T0K3N-from-link' }] : [403, { error: { code: 'FORBIDDEN', message: 'used' } }]) });
    const client = new ConsoleClient({ baseUrl: '', fetch: f });
    const session = createSessionStore(client, st);
    expect(await session.getState().exchangeCode('good-code-123')).toBe(true);
    expect(storage.get(TOKEN_KEY)).toBe('T0K3N-from-link');
    expect(client.getToken()).toBe('T0K3N-from-link');
    expect(await session.getState().exchangeCode('bad-code-1234')).toBe(false);
    expect(session.getState().error).toBe('used');
    session.getState().forget();
    expect(storage.has(TOKEN_KEY)).toBe(false);
    expect(client.getToken()).toBeNull();
  });

  it('router pushes history', () => {
    const pushed: string[] = [];
    let pathname = '/';
    const r = createRouterStore({ pushState: (_d, _u, url) => { pushed.push(url); pathname = url; }, get pathname() { return pathname; } });
    r.getState().navigate('/limiter');
    r.getState().navigate('/limiter');
    expect(pushed).toEqual(['/limiter']);
    pathname = '/gpu';
    r.getState().sync();
    expect(r.getState().path).toBe('/gpu');
  });

  it('overview derives alerts from the snapshot', () => {
    const s = snapshot(1, { services: { limiter: { retreat: { state: 'retreat' } } }, errors: { engine: 'boom' } });
    s.core.eventLoopLagMs = 250;
    const alerts = alertsFor(s, health({ engine: { status: 'DOWN' } }));
    expect(alerts.join('\n')).toMatch(/event loop/);
    expect(alerts.join('\n')).toMatch(/RETREAT/);
    expect(alerts.join('\n')).toMatch(/engine: snapshot failed/);
    expect(alerts.join('\n')).toMatch(/engine is DOWN/);
    // Alerts Alertmanager posted to /api/alerts, as the snapshot carries them.
    const prom = alertsFor(snapshot(3, { services: { alerts: { firing: [{ alertname: 'HeartbeatStale', severity: 'warning', summary: 'no beat for 2 min' }], lastReceivedAt: 1 } } }), null);
    expect(prom).toContain('[warning] HeartbeatStale: no beat for 2 min');
    // The engine lent the GPU to a training job (training.enginePolicy unload).
    const lent = alertsFor(snapshot(4, { services: { engine: { gpuLent: { holder: 'job-1', purpose: 'training', gpuId: 0, policy: 'unload', since: 1 } } } }), null);
    expect(lent).toContain('GPU 0 is lent to training job job-1: models are unloaded; requests wait until the job ends.');

    // What the console reported on an H200 whose driver could not run the prebuilt CUDA kernels.
    const fallback = alertsFor(
      snapshot(2),
      health({
        engine: {
          status: 'UP',
          details: { backend: 'cpu', selfTests: [{ backend: 'cuda', ok: false, reason: 'CUDA error: the provided PTX was compiled with an unsupported toolchain. (probe killed by SIGABRT)', hint: 'Update the driver.', ms: 3169 }] },
        },
      }),
    );
    expect(fallback).toEqual(['GPU backend cuda failed its self-test (CUDA error: the provided PTX was compiled with an unsupported toolchain. (probe killed by SIGABRT)); inference runs on the CPU. Update the driver.']);
    expect(alertsFor(snapshot(3), health({ engine: { status: 'UP', details: { backend: 'cuda', selfTests: [{ backend: 'cuda', ok: true, ms: 900 }] } } }))).toEqual([]);
  });
});
