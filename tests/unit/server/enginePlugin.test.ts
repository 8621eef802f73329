import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { SystemClock } from '../../../electron/core/base/clock.js';
import { ConfigStore, loadSettings } from '../../../electron/core/base/config.js';
import { AppError, ErrorCode } from '../../../electron/core/base/errors.js';
import { MetricsRegistry } from '../../../electron/core/base/metrics.js';
import { Auth } from '../../../electron/core/server/auth.js';
import { HttpServer } from '../../../electron/core/server/http/httpServer.js';
import { createEngineHttp, type EngineHttpPort } from '../../../electron/core/server/http/plugins/engine.js';
import type { GenerationResult } from '../../../electron/core/services/engine/engineService.js';
import type { GenerateOptions, GenerationEvent, GenerationRequest } from '../../../electron/core/services/engine/generation.js';

/*
 * The engine's HTTP surface against a fake engine whose generate() plays a scripted event stream:
 * the encoders (OpenAI JSON/SSE, REST SSE) and the error paths, without a model, through app.inject().
 */

const result = (over: Partial<GenerationResult> = {}): GenerationResult => ({
  modelId: 'fake',
  text: 'Hello world',
  finishReason: 'stop',
  promptTokens: 3,
  completionTokens: 2,
  tokens: [],
  queueMs: 0,
  ttftMs: 1,
  durationMs: 2,
  aborted: false,
  ...over,
});

class FakeEngine implements EngineHttpPort {
  script: GenerationEvent[] = [];
  readonly calls: Array<{ request: GenerationRequest; opts: GenerateOptions }> = [];
  readonly rejected: string[] = [];

  async *generate(request: GenerationRequest, opts: GenerateOptions): AsyncIterable<GenerationEvent> {
    this.calls.push({ request, opts });
    for (const e of this.script) yield e;
  }
  embed(): never {
    throw new AppError(ErrorCode.UNAVAILABLE, 'no embeddings in the fake');
  }
  chunkSize(): number {
    return 1;
  }
  async listModels(): Promise<never[]> {
    return [];
  }
  getModel(): never {
    throw new AppError(ErrorCode.NOT_FOUND, 'no such model');
  }
  load(): never {
    throw new AppError(ErrorCode.NOT_FOUND, 'no such model');
  }
  unload(): never {
    throw new AppError(ErrorCode.NOT_FOUND, 'no such model');
  }
  snapshot(): never {
    throw new Error('not used');
  }
  waiting(): [] {
    return [];
  }
  recordRejected(route: string): void {
    this.rejected.push(route);
  }
}

/** The `data:` payloads and `:` comments of an SSE body, in order. */
function sseEvents(body: string): string[] {
  return body
    .split('\n\n')
    .filter((b) => b !== '')
    .map((b) => (b.startsWith('data: ') ? b.slice(6) : b));
}

describe('engine HTTP plugin over a scripted generation stream', () => {
  let http: HttpServer;
  let engine: FakeEngine;

  beforeEach(async () => {
    const settings = loadSettings({ dataDir: mkdtempSync(join(tmpdir(), 'engine-plugin-')), env: {}, argv: [] });
    const config = new ConfigStore(settings);
    http = new HttpServer({ config, logger: pino({ level: 'silent' }), metrics: new MetricsRegistry() });
    await http.init();
    engine = new FakeEngine();
    const clock = new SystemClock();
    const engineHttp = createEngineHttp({ engine, clock });
    const auth = new Auth({ adminToken: 'admin-secret', config });
    await http.register(engineHttp.plugin, { engine, auth, clock });
    await http.register(async (app) => {
      app.post('/v1/chat/completions', (request, reply) => engineHttp.openai.chatCompletions(request, reply, request.body as Record<string, unknown>));
      app.post('/v1/completions', (request, reply) => engineHttp.openai.completions(request, reply, request.body as Record<string, unknown>));
    }, {});
  });
  afterEach(async () => {
    await http.app.close();
  });

  it('chat JSON: the done event becomes one chat.completion with usage; X-Priority reaches the engine', async () => {
    engine.script = [{ type: 'started' }, { type: 'text', text: 'Hello ', tokens: 1 }, { type: 'text', text: 'world', tokens: 1 }, { type: 'done', result: result() }];
    const res = await http.app.inject({ method: 'POST', url: '/v1/chat/completions', headers: { 'x-priority': 'URGENT' }, payload: { model: 'fake', messages: [{ role: 'user', content: 'hi' }] } });
    expect(res.statusCode).toBe(200);
    const body = res.json() as { object: string; id: string; choices: Array<{ message: { content: string }; finish_reason: string }>; usage: Record<string, number> };
    expect(body.object).toBe('chat.completion');
    expect(body.id).toMatch(/^chatcmpl-/);
    expect(body.choices[0]).toMatchObject({ message: { content: 'Hello world' }, finish_reason: 'stop' });
    expect(body.usage).toEqual({ prompt_tokens: 3, completion_tokens: 2, total_tokens: 5 });
    expect(engine.calls[0]!.request.kind).toBe('chat');
    expect(engine.calls[0]!.opts.priority).toBe('urgent');
  });

  it('chat SSE while queued: queue headers and a comment first, then role, text chunks, finish and [DONE]', async () => {
    engine.script = [
      { type: 'queued', position: { position: 3, etaMs: 1500 } },
      { type: 'started' },
      { type: 'text', text: 'Hi', tokens: 1 },
      { type: 'done', result: result({ text: 'Hi' }) },
    ];
    const res = await http.app.inject({ method: 'POST', url: '/v1/chat/completions', payload: { model: 'fake', stream: true, messages: [{ role: 'user', content: 'hi' }] } });
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toMatch(/^text\/event-stream/);
    expect(res.headers['x-queue-position']).toBe('3');
    expect(res.headers['x-queue-eta-ms']).toBe('1500');
    const events = sseEvents(res.body);
    expect(events[0]).toBe(': queued position=3 eta_ms=1500');
    const chunks = events.slice(1, -1).map((e) => JSON.parse(e) as { choices: Array<{ delta: Record<string, unknown>; finish_reason: string | null }> });
    expect(chunks.map((c) => c.choices[0]!.delta)).toEqual([{ role: 'assistant', content: '' }, { content: 'Hi' }, {}]);
    expect(chunks.at(-1)!.choices[0]!.finish_reason).toBe('stop');
    expect(events.at(-1)).toBe('[DONE]');
  });

  it('an error before the stream started is an ordinary HTTP error in the OpenAI envelope', async () => {
    engine.script = [{ type: 'error', error: new AppError(ErrorCode.NOT_FOUND, "model 'nope' is not in the library") }];
    const res = await http.app.inject({ method: 'POST', url: '/v1/chat/completions', payload: { model: 'nope', stream: true, messages: [{ role: 'user', content: 'hi' }] } });
    expect(res.statusCode).toBe(404);
    expect(res.headers['content-type']).toMatch(/json/);
    expect((res.json() as { error: { message: string } }).error.message).toMatch(/nope/);
  });

  it('an error after the stream started is its last event, then [DONE]', async () => {
    engine.script = [{ type: 'started' }, { type: 'text', text: 'par', tokens: 1 }, { type: 'error', error: new AppError(ErrorCode.UNAVAILABLE, 'engine stopping') }];
    const res = await http.app.inject({ method: 'POST', url: '/api/v1/inference/stream', payload: { modelId: 'fake', prompt: 'x' } });
    expect(res.statusCode).toBe(200);
    const events = sseEvents(res.body);
    expect(JSON.parse(events[0]!)).toMatchObject({ object: 'text_completion.chunk', choices: [{ text: 'par', offset: 0 }] });
    expect(JSON.parse(events[1]!)).toMatchObject({ error: { code: 'UNAVAILABLE', message: 'engine stopping' } });
    expect(events.at(-1)).toBe('[DONE]');
  });

  it('a bad body is a 400 listing every bad field, and the engine is never asked', async () => {
    const res = await http.app.inject({ method: 'POST', url: '/v1/chat/completions', payload: { model: 7, messages: 'hi', temperature: 'hot' } });
    expect(res.statusCode).toBe(400);
    const fields = ((res.json() as { error: { details?: Array<{ field: string }> } }).error.details ?? []).map((d) => d.field);
    expect(fields).toEqual(expect.arrayContaining(['model', 'messages', 'temperature']));
    expect(engine.calls).toHaveLength(0);
    expect(engine.rejected).toContain('v1_chat');
  });

  it('completions SSE: text chunks, a final chunk with the finish reason, [DONE]', async () => {
    engine.script = [{ type: 'started' }, { type: 'text', text: 'a', tokens: 1 }, { type: 'text', text: 'b', tokens: 1 }, { type: 'done', result: result({ text: 'ab', finishReason: 'length' }) }];
    const res = await http.app.inject({ method: 'POST', url: '/v1/completions', payload: { model: 'fake', prompt: 'x', stream: true } });
    const events = sseEvents(res.body);
    const chunks = events.slice(0, -1).map((e) => JSON.parse(e) as { object: string; choices: Array<{ text: string; finish_reason: string | null }> });
    expect(chunks.map((c) => c.choices[0]!.text)).toEqual(['a', 'b', '']);
    expect(chunks.at(-1)!.choices[0]!.finish_reason).toBe('length');
    expect(chunks.every((c) => c.object === 'text_completion')).toBe(true);
    expect(events.at(-1)).toBe('[DONE]');
  });
});
