import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TSchema } from '@sinclair/typebox';
import { Value } from '@sinclair/typebox/value';
import OpenAI from 'openai';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { startUpstreamSim, type UpstreamSim } from '../../scripts/upstream-sim.js';
import { LimiterResetResponse, LimiterSnapshot, LimiterStatus, LimiterTransitionEvent } from '../../shared/contracts/limiter.js';
import { startConsole, type TestConsole } from '../helpers/startConsole.js';
import { waitUntil } from '../helpers/wait.js';

const KEY = 'nvapi-supersecret-key-123';
const json = { 'content-type': 'application/json' };

async function post(c: TestConsole, path: string, body: unknown, headers: Record<string, string> = {}) {
  return fetch(`${c.url}${path}`, { method: 'POST', headers: { ...json, ...headers }, body: JSON.stringify(body) });
}

/** Where `value` departs from the contract schema (`path: message` per bad field; empty when it conforms). */
function schemaErrors(schema: TSchema, value: unknown): string[] {
  return [...Value.Errors(schema, value)].map((e) => `${e.path}: ${e.message}`);
}

/** Reads SSE frames until `pred` matches one, or fails after `ms`. */
async function readSse(res: Response, pred: (frame: string) => boolean, ms = 10_000): Promise<string[]> {
  const reader = res.body!.getReader();
  const frames: string[] = [];
  let buf = '';
  const deadline = Date.now() + ms;
  try {
    while (Date.now() < deadline) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += Buffer.from(value).toString('utf8');
      let i;
      while ((i = buf.indexOf('\n\n')) >= 0) {
        const frame = buf.slice(0, i);
        buf = buf.slice(i + 2);
        frames.push(frame);
        if (pred(frame)) return frames;
      }
    }
  } finally {
    await reader.cancel().catch(() => undefined);
  }
  throw new Error(`no matching SSE frame in ${ms} ms; got ${frames.length} frames`);
}

describe('limiter through /v1 against the upstream simulator', () => {
  let sim: UpstreamSim;
  let c: TestConsole;

  beforeAll(async () => {
    sim = await startUpstreamSim({ capacity: 100_000, apiKey: KEY, streamChunks: 5, chunkDelayMs: 150 });
    c = await startConsole({
      env: { SIDECAR_API_KEY: KEY },
      config: {
        limiter: {
          upstream_url: sim.baseUrl,
          rate_rpm: 6000,
          bucket_capacity: 100,
          providers: [{ name: 'down', aliases: ['down'], upstream_url: 'http://127.0.0.1:9/v1', connect_timeout: 2 }],
        },
      },
    });
  });
  afterAll(async () => {
    await c?.close();
    await sim?.close();
  });

  it('forwards a chat completion with the upstream key, the prefix removed, and no local credentials', async () => {
    const res = await post(c, '/v1/chat/completions', { model: 'nvidia/meta/llama-3.1-8b-instruct', messages: [{ role: 'user', content: 'hi' }] }, { 'x-api-key': 'local-key', 'x-priority': 'HIGH' });
    expect(res.status).toBe(200);
    const body = (await res.json()) as { choices: Array<{ message: { content: string } }> };
    expect(body.choices[0]!.message.content).toContain('simulator');
    const last = sim.lastRequest()!;
    expect(last.path).toBe('/v1/chat/completions');
    expect(last.headers.authorization).toBe(`Bearer ${KEY}`);
    expect(last.headers['x-api-key']).toBeUndefined();
    expect(JSON.parse(last.body).model).toBe('meta/llama-3.1-8b-instruct');
  });

  it('relays the client\'s JSON text as sent, only the model id replaced (no second serialisation)', async () => {
    const send = async (text: string) => {
      const res = await fetch(`${c.url}/v1/chat/completions`, { method: 'POST', headers: json, body: text });
      expect(res.status).toBe(200);
      await res.arrayBuffer();
      return sim.lastRequest()!.body;
    };
    // spacing, key order and number spelling survive; only the id changes
    const spaced = '{ "temperature" : 1.0,\n  "model" :  "nvidia/meta/x", "messages": [{"role": "user", "content": "model: \\"nvidia/meta/x\\""}], "n": 1e0 }';
    expect(await send(spaced)).toBe(spaced.replace('"nvidia/meta/x", "messages"', '"meta/x", "messages"'));
    // an id sent whole (no org after the prefix) is the body untouched
    const whole = '{"model":"nvidia/nemotron-4-340b-instruct","messages":[],"top_p":0.50}';
    expect(await send(whole)).toBe(whole);
    // where the text is ambiguous ("model" twice, escapes that could spell a key) the parsed body is serialised
    const twice = '{"model":"nvidia/meta/x","messages":[],"metadata":{"model":"nvidia/meta/x"}}';
    expect(JSON.parse(await send(twice))).toEqual({ model: 'meta/x', messages: [], metadata: { model: 'nvidia/meta/x' } });
    const escaped = '{"mod\\u0065l":"nvidia/meta/x","messages":[{"role":"user","content":"{\\"model\\": 1}"}]}';
    expect(JSON.parse(await send(escaped))).toMatchObject({ model: 'meta/x' });
  });

  it('works with the official openai client, streaming and not', async () => {
    const client = new OpenAI({ baseURL: `${c.url}/v1`, apiKey: 'unused-locally', maxRetries: 0 });
    const done = await client.chat.completions.create({ model: 'nvidia/meta/llama-3.1-8b-instruct', messages: [{ role: 'user', content: 'hi' }] });
    expect(done.choices[0]?.message.content).toContain('simulator');
    const stream = await client.chat.completions.create({ model: 'nvidiavx/meta/llama-3.1-8b-instruct', messages: [{ role: 'user', content: 'hi' }], stream: true });
    let text = '';
    for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? '';
    expect(text).toBe('tok0 tok1 tok2 tok3 tok4 ');
    const emb = await client.embeddings.create({ model: 'nvidia/nv-embed', input: 'x' });
    expect(emb.data[0]?.embedding.length).toBe(3);
  });

  it('relays a stream chunk by chunk (the first chunk arrives while the upstream is still sending)', async () => {
    const t0 = Date.now();
    const res = await post(c, '/v1/chat/completions', { model: 'nvidia/meta/x', messages: [], stream: true });
    expect(res.headers.get('content-type')).toContain('text/event-stream');
    const reader = res.body!.getReader();
    const first = await reader.read();
    const tFirst = Date.now() - t0;
    expect(Buffer.from(first.value!).toString()).toContain('tok0');
    expect(sim.stats().inFlight).toBeGreaterThan(0); // upstream not finished: nothing was buffered
    let rest = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      rest += Buffer.from(value).toString();
    }
    expect(rest).toContain('[DONE]');
    expect(Date.now() - t0).toBeGreaterThan(tFirst + 400); // 5 chunks × 150 ms spread over time
  });

  it('a client that disconnects mid-stream cancels the upstream request', async () => {
    const before = sim.stats().abortedStreams;
    const ac = new AbortController();
    const res = await fetch(`${c.url}/v1/chat/completions`, {
      method: 'POST',
      headers: json,
      body: JSON.stringify({ model: 'nvidia/meta/x', messages: [], stream: true }),
      signal: ac.signal,
    });
    const reader = res.body!.getReader();
    await reader.read();
    ac.abort();
    await waitUntil(() => sim.stats().abortedStreams !== before, 10_000, 'the upstream to see its stream aborted', 50);
    expect(sim.stats().abortedStreams).toBe(before + 1);
  });

  it('an unknown provider prefix gets a 404 naming the configured providers', async () => {
    const res = await post(c, '/v1/chat/completions', { model: 'acme/meta/llama', messages: [] });
    expect(res.status).toBe(404);
    const body = (await res.json()) as { error: { message: string; code: string } };
    expect(body.error.message).toContain("Unknown provider 'acme'");
    expect(body.error.message).toContain('nvidia (nvidia, nvidia-gateway, nvidiavx, nvidiavx18088980513)');
    expect(body.error.message).toContain('down');
  });

  it('an upstream that is down gives 502 ConnectError while other providers keep working', async () => {
    const res = await post(c, '/v1/chat/completions', { model: 'down/org/model', messages: [] });
    expect(res.status).toBe(502);
    const body = (await res.json()) as { error: { message: string; type: string } };
    expect(body.error.type).toBe('ConnectError');
    expect(body.error.message).toContain('上游连接失败');
    const ok = await post(c, '/v1/chat/completions', { model: 'nvidia/meta/x', messages: [] });
    expect(ok.status).toBe(200);
  });

  it('rejects bad input with clear 4xx', async () => {
    const notObject = await fetch(`${c.url}/v1/chat/completions`, { method: 'POST', headers: json, body: '[1]' });
    expect(notObject.status).toBe(400);
    const big = await post(c, '/v1/chat/completions', { model: 'nvidia/meta/x', messages: [{ role: 'user', content: 'x'.repeat(33 * 1024 * 1024) }] });
    expect(big.status).toBe(413);
  });

  it('counts an invalid X-Priority and serves it as NORMAL', async () => {
    const res = await post(c, '/v1/chat/completions', { model: 'nvidia/meta/x', messages: [] }, { 'x-priority': 'super-urgent' });
    expect(res.status).toBe(200);
    const metrics = await (await fetch(`${c.url}/metrics`)).text();
    expect(metrics).toMatch(/sidecar_invalid_priority_total\{provider="nvidia"\} [1-9]/);
    expect(metrics).toMatch(/sidecar_requests_total\{provider="nvidia",priority="NORMAL",status="success"\} [1-9]/);
    expect(metrics).not.toMatch(/sidecar_[a-z_]+\{[^}]*model/);
  });

  it('status (and its /status alias), admin config and /env never show the key', async () => {
    const status = await fetch(`${c.url}/api/limiter/status`);
    expect(status.status).toBe(200);
    const s = (await status.json()) as Record<string, Record<string, unknown>>;
    expect(schemaErrors(LimiterStatus, s)).toEqual([]);
    expect(Object.keys(s)).toEqual(expect.arrayContaining(['requests', 'errors', 'queue', 'token_bucket', 'retreat', 'uptime_seconds', 'providers']));
    expect(s.queue!.depth_by_priority).toEqual({ URGENT: 0, HIGH: 0, NORMAL: 0, LOW: 0 });
    expect(s.retreat).toMatchObject({ state: 'normal', base_rpm: 6000 });
    expect((s.requests!.nvidia as number) > 0).toBe(true);
    const alias = await (await fetch(`${c.url}/status`)).text();
    expect(schemaErrors(LimiterStatus, JSON.parse(alias))).toEqual([]);
    const cfg = await (await fetch(`${c.url}/api/admin/config`, { headers: c.admin })).text();
    const consoleCfg = await (await fetch(`${c.url}/api/console/config`, { headers: c.admin })).text();
    for (const text of [JSON.stringify(s), alias, cfg, consoleCfg, c.logs.join('\n')]) expect(text).not.toContain(KEY);
    expect(JSON.parse(cfg).upstream_api_key).toBe('nvap****');
    expect((await fetch(`${c.url}/api/admin/config`)).status).toBe(401);
  });

  it('readiness: ready with a reachable provider; the limiter is a health component', async () => {
    const ready = await fetch(`${c.url}/health/ready`);
    const body = (await ready.json()) as Record<string, boolean>;
    expect(body).toMatchObject({ queue_healthy: true, upstream_probed: true });
    expect(ready.status).toBe(200);
    const health = (await (await fetch(`${c.url}/api/v1/health/details`)).json()) as { components: Record<string, { details: Record<string, unknown> }> };
    expect(health.components.limiter?.details).toMatchObject({ queue: { maxSize: 500 } });
  });
});

describe('limiter admin config (contract §6.8)', () => {
  let c: TestConsole;
  beforeAll(async () => {
    c = await startConsole({ config: { limiter: { upstream_url: 'http://127.0.0.1:9/v1' } } });
  });
  afterAll(async () => {
    await c?.close();
  });

  it('invalid values: 400 listing every field, nothing changed; type errors 422', async () => {
    const bad = await post(c, '/api/admin/config', { rate_rpm: 0, queue_max_size: -1 }, c.admin);
    expect(bad.status).toBe(400);
    const body = (await bad.json()) as { detail: string };
    expect(body.detail).toContain('rate_rpm: must be > 0');
    expect(body.detail).toContain('queue_max_size: must be > 0');
    const one = (await (await post(c, '/api/admin/config', { rate_rpm: -3 }, c.admin)).json()) as { detail: string };
    expect(one.detail).toBe('rate_rpm must be > 0');
    const typed = await post(c, '/api/admin/config', { rate_rpm: 'fast', bogus: 1 }, c.admin);
    expect(typed.status).toBe(422);
    const cfg = (await (await fetch(`${c.url}/api/admin/config`, { headers: c.admin })).json()) as Record<string, unknown>;
    expect(cfg).toMatchObject({ rate_rpm: 40, queue_max_size: 500, upstream_api_key: '' });
  });

  it('a valid change applies at once and resets the retreat state; auth is required', async () => {
    expect((await post(c, '/api/admin/config', { rate_rpm: 90 })).status).toBe(401);
    expect((await post(c, '/api/admin/config', { rate_rpm: 90 }, { authorization: 'Bearer nope' })).status).toBe(403);
    const res = await post(c, '/api/admin/config', { rate_rpm: 90, queue_full_policy: 'drop_lowest' }, c.admin);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ status: 'ok', changed: ['rate_rpm', 'queue_full_policy'] });
    const s = (await (await fetch(`${c.url}/api/limiter/status`)).json()) as { retreat: { base_rpm: number; effective_rpm: number }; queue: { full_policy: string } };
    expect(s.retreat).toMatchObject({ base_rpm: 90, effective_rpm: 90 });
    expect(s.queue.full_policy).toBe('drop_lowest');
    const reset = (await (await post(c, '/api/limiter/admin/reset', {}, c.admin)).json()) as unknown;
    expect(schemaErrors(LimiterResetResponse, reset)).toEqual([]);
    expect(reset).toMatchObject({ status: 'ok', retreat: { state: 'normal', effective_rpm: 90 } });
  });
});

describe('retreat against a throttling upstream (scaled-up rates)', () => {
  it('429s drive NORMAL → RETREAT: relayed, logged, counted, streamed, persisted across a restart', async () => {
    // Capacity 1200 RPM per 1 s window = 20 requests per second; the limiter starts at 2400 RPM.
    const sim = await startUpstreamSim({ capacity: 1200, windowMs: 1000, retryAfter: 'fractional' });
    const config = {
      limiter: { upstream_url: sim.baseUrl, rate_rpm: 2400, bucket_capacity: 40, retreat_window_seconds: 2, recover_window_seconds: 4, request_timeout: 30 },
    };
    let c = await startConsole({ config, keepDataDir: true });
    const dataDir = c.dataDir;
    try {
      const stream = await fetch(`${c.url}/api/dashboard/stream`);
      expect(stream.headers.get('content-type')).toContain('text/event-stream');
      const framesP = readSse(stream, (f) => f.startsWith('event: transition'), 20_000);
      const statuses: number[] = [];
      await Promise.all(
        Array.from({ length: 80 }, async () => {
          const res = await post(c, '/v1/chat/completions', { model: 'nvidia/meta/x', messages: [] });
          statuses.push(res.status);
          await res.arrayBuffer();
        }),
      );
      expect(statuses).toContain(429); // upstream 429s are relayed unchanged
      const frames = await framesP;
      expect(frames[0]).toMatch(/^retry: 3000\ndata: \{/);
      expect(schemaErrors(LimiterSnapshot, JSON.parse(frames[0]!.split('data: ')[1]!))).toEqual([]);
      const transition = JSON.parse(frames[frames.length - 1]!.split('data: ')[1]!) as { provider: string; to: string; rpm: number };
      expect(transition).toMatchObject({ provider: 'nvidia', to: 'retreat' });
      expect(schemaErrors(LimiterTransitionEvent, transition)).toEqual([]);
      const s = (await (await fetch(`${c.url}/api/limiter/status`)).json()) as { retreat: { state: string; effective_rpm: number } };
      expect(schemaErrors(LimiterStatus, s)).toEqual([]);
      expect(s.retreat.state).not.toBe('normal');
      expect(s.retreat.effective_rpm).toBeLessThan(2400);
      const metrics = await (await fetch(`${c.url}/metrics`)).text();
      expect(metrics).toMatch(/sidecar_retreat_transitions_total\{provider="nvidia",from="normal",to="retreat"\} 1/);
      expect(metrics).toMatch(/sidecar_upstream_errors_total\{provider="nvidia",status_code="429"\} [1-9]/);
      expect(c.logs.some((l) => l.includes('"retreat_transition"'))).toBe(true);
      const learned = s.retreat.effective_rpm;
      await c.close();
      // Restart on the same data dir: the learned rate is kept, not the base.
      c = await startConsole({ config, dataDir });
      const after = (await (await fetch(`${c.url}/api/limiter/status`)).json()) as { retreat: { state: string; effective_rpm: number } };
      expect(after.retreat.effective_rpm).toBeLessThan(2400);
      expect(after.retreat.effective_rpm).toBeCloseTo(learned, 0);
    } finally {
      await c.close();
      await sim.close();
    }
  });

  it('the WebSocket receives the same snapshot; /api/dashboard serves the live page', async () => {
    const c = await startConsole({ config: { limiter: { upstream_url: 'http://127.0.0.1:9/v1' } } });
    try {
      const page = await fetch(`${c.url}/api/dashboard`);
      expect(page.headers.get('content-type')).toContain('text/html');
      expect(await page.text()).toContain("new EventSource('/api/dashboard/stream')");
      const ws = new WebSocket(`${c.url.replace('http', 'ws')}/api/dashboard/ws`);
      const msg = await new Promise<string>((resolve, reject) => {
        ws.once('message', (d) => resolve(String(d)));
        ws.once('error', reject);
      });
      const parsed = JSON.parse(msg) as { type: string; data: { queue: { per_priority: Record<string, number> }; retreat: { state: string } } };
      expect(parsed.type).toBe('snapshot');
      expect(schemaErrors(LimiterSnapshot, parsed.data)).toEqual([]);
      expect(parsed.data.queue.per_priority).toEqual({ URGENT: 0, HIGH: 0, NORMAL: 0, LOW: 0 });
      expect(parsed.data.retreat.state).toBe('normal');
      ws.close();
    } finally {
      await c.close();
    }
  });

  it('an upstream timeout maps to 504 TimeoutException', async () => {
    const sim = await startUpstreamSim({ capacity: 1000, latencyMs: 3000 });
    const c = await startConsole({ config: { limiter: { upstream_url: sim.baseUrl, request_timeout: 0.5 } } });
    try {
      const res = await post(c, '/v1/chat/completions', { model: 'nvidia/meta/x', messages: [] });
      expect(res.status).toBe(504);
      const body = (await res.json()) as { error: { type: string; message: string } };
      expect(body.error.type).toBe('TimeoutException');
      expect(body.error.message).toContain('上游超时');
    } finally {
      await c.close();
      await sim.close();
    }
  });
});

describe('limiter config at start-up', () => {
  it('invalid values are start-up errors listing every field (no silent reset)', async () => {
    await expect(
      startConsole({ env: { SIDECAR_RATE_RPM: '-5', SIDECAR_QUEUE_MAX: 'lots' }, config: { limiter: { retreat_factor: 2 } } }),
    ).rejects.toThrow(/limiter\.rate_rpm[\s\S]*SIDECAR_RATE_RPM|limiter\.queue_max_size/);
    await expect(startConsole({ config: { limiter: { providers: [{ name: 'x', aliases: ['nvidia'], upstream_url: 'http://a/v1' }] } } })).rejects.toThrow(/aliases/);
  });

  it('env beats config.json beats defaults', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'limiter-cfg-'));
    writeFileSync(join(dataDir, 'config.json'), JSON.stringify({ limiter: { rate_rpm: 50, bucket_capacity: 9 } }));
    const c = await startConsole({ dataDir, env: { SIDECAR_RATE_RPM: '75', SIDECAR_RECOVER_WINDOW_SECONDS: '30' } });
    try {
      const cfg = (await (await fetch(`${c.url}/api/admin/config`, { headers: c.admin })).json()) as Record<string, unknown>;
      expect(cfg).toMatchObject({ rate_rpm: 75, bucket_capacity: 9, recover_window_seconds: 30, request_timeout: 60 });
    } finally {
      await c.close();
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});

describe('queue over HTTP', () => {
  it('queue full (reject) → 503 QueueFullError at once; a queued client that disconnects frees its slot', async () => {
    const sim = await startUpstreamSim({ capacity: 100_000 });
    const c = await startConsole({
      config: { limiter: { upstream_url: sim.baseUrl, rate_rpm: 1, bucket_capacity: 1, queue_max_size: 1, fallback_enabled_passthrough: false, request_timeout: 120 } },
    });
    const status = async () => (await (await fetch(`${c.url}/api/limiter/status`)).json()) as { queue: { current_size: number }; errors: { queue_full_rejects: number } };
    try {
      expect((await post(c, '/v1/chat/completions', { model: 'nvidia/meta/x', messages: [] })).status).toBe(200); // takes the only token
      const ac = new AbortController();
      const queued = fetch(`${c.url}/v1/chat/completions`, { method: 'POST', headers: json, body: JSON.stringify({ model: 'nvidia/meta/x', messages: [] }), signal: ac.signal }).catch(
        (e: Error) => e,
      );
      await waitUntil(async () => (await status()).queue.current_size > 0, 10_000, 'the second request to be queued');
      const full = await post(c, '/v1/chat/completions', { model: 'nvidia/meta/x', messages: [] }, { 'x-priority': 'urgent' });
      expect(full.status).toBe(503);
      const body = (await full.json()) as { error: { type: string; message: string } };
      expect(body.error.type).toBe('QueueFullError');
      expect(body.error.message).toContain('队列已满');
      ac.abort();
      await queued;
      await waitUntil(async () => (await status()).queue.current_size === 0, 10_000, 'the disconnected client to leave the queue');
      const s = await status();
      expect(s.queue.current_size).toBe(0);
      expect(s.errors.queue_full_rejects).toBe(1);
      expect(sim.stats().attempts).toBe(1); // the cancelled request never reached the upstream
    } finally {
      await c.close();
      await sim.close();
    }
  });
});

describe('providers are config entries', () => {
  it('a provider added through the config API serves at once with its own bucket and key; removing it gives the 404 again', async () => {
    const sim = await startUpstreamSim({ capacity: 100_000, apiKey: 'or-key-abcdef' });
    const c = await startConsole({ env: { OR_KEY: 'or-key-abcdef' }, config: { limiter: { upstream_url: 'http://127.0.0.1:9/v1' } } });
    const chat = () => post(c, '/v1/chat/completions', { model: 'openrouter/meta-llama/llama-3', messages: [] });
    try {
      expect((await chat()).status).toBe(404);
      const patch = await fetch(`${c.url}/api/console/config`, {
        method: 'PATCH',
        headers: { ...json, ...c.admin },
        body: JSON.stringify({ limiter: { providers: [{ name: 'openrouter', aliases: ['openrouter'], upstream_url: sim.baseUrl, api_key_env: 'OR_KEY', rate_rpm: 77 }] } }),
      });
      expect(patch.status).toBe(200);
      expect((await chat()).status).toBe(200);
      expect(sim.lastRequest()!.headers.authorization).toBe('Bearer or-key-abcdef');
      expect(JSON.parse(sim.lastRequest()!.body).model).toBe('meta-llama/llama-3');
      const s = (await (await fetch(`${c.url}/api/limiter/status`)).json()) as { providers: Record<string, { retreat: { base_rpm: number } }> };
      expect(s.providers.openrouter?.retreat.base_rpm).toBe(77);
      expect(s.providers.nvidia?.retreat.base_rpm).toBe(40);
      const metrics = await (await fetch(`${c.url}/metrics`)).text();
      expect(metrics).toMatch(/sidecar_requests_total\{provider="openrouter",priority="NORMAL",status="success"\} 1/);
      await fetch(`${c.url}/api/console/config`, { method: 'PATCH', headers: { ...json, ...c.admin }, body: JSON.stringify({ limiter: { providers: [] } }) });
      expect((await chat()).status).toBe(404);
    } finally {
      await c.close();
      await sim.close();
    }
  });
});
