import * as grpc from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { getLlama, LlamaCompletion, type Llama } from 'node-llama-cpp';
import OpenAI from 'openai';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { aiServiceProtoPath, PROTO_LOADER_OPTIONS } from '../../electron/core/server/grpc/aiService.js';
import { startConsole, type TestConsole } from '../helpers/startConsole.js';
import { installTinyModel, tinyModelPath } from '../helpers/tinyModel.js';
import { waitUntil } from '../helpers/wait.js';

interface StreamPredictResponse {
  trace_id: string;
  chunk: string;
  end_of_stream: boolean;
  index: number;
  finish_reason: string;
  queue_position: number;
}
interface AiClient extends grpc.Client {
  StreamPredict(request: object, metadata?: grpc.Metadata): grpc.ClientReadableStream<StreamPredictResponse>;
  Predict(request: object, cb: (err: grpc.ServiceError | null, res?: { text: string; finish_reason: string; usage: { completion_tokens: number } }) => void): void;
  ListModels(request: object, metadata: grpc.Metadata, cb: (err: grpc.ServiceError | null, res?: { models: Array<{ id: string; status: string }> }) => void): void;
}

/**
 * Threads: 1 keeps the tiny model fast on the shared 2-core test machine (2 threads spin in ggml
 * barriers under load). Context 4096, past the tiny model's trained 512 (llama.cpp allows it with a
 * warning): room for tool documentation, and for generations long enough that a test can act
 * while one runs, even on a fast machine.
 */
const ENGINE = { gpu: 'false', threads: 1, detectOnStart: false, contextSize: 4096 };
const LONG = 4000;

async function json(res: Response): Promise<Record<string, unknown>> {
  return (await res.json()) as Record<string, unknown>;
}

/** Waits for a condition the server reaches asynchronously (polling the status endpoint, bounded). */
const until = (check: () => Promise<boolean>, what: string): Promise<void> => waitUntil(check, 5000, what, 25);

/** Reads an SSE body until `stop` returns true for the text so far. */
async function readUntil(reader: ReadableStreamDefaultReader<Uint8Array>, stop: (text: string) => boolean): Promise<string> {
  const decoder = new TextDecoder();
  let text = '';
  while (!stop(text)) {
    const { value, done } = await reader.read();
    if (done) break;
    text += decoder.decode(value, { stream: true });
  }
  return text;
}

describe('engine over HTTP and gRPC (tiny model, CPU)', () => {
  let c: TestConsole;
  let openai: OpenAI;
  let client: AiClient;
  let llama: Llama;
  const post = (path: string, body: unknown, headers: Record<string, string> = {}) =>
    fetch(`${c.url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) });
  const status = async () => json(await fetch(`${c.url}/api/v1/engine/status`));

  beforeAll(async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'engine-it-'));
    installTinyModel(dataDir, 'tiny');
    c = await startConsole({ dataDir, config: { engine: ENGINE } });
    openai = new OpenAI({ baseURL: `${c.url}/v1`, apiKey: 'unused', maxRetries: 0 });
    const def = grpc.loadPackageDefinition(loadSync(aiServiceProtoPath(), PROTO_LOADER_OPTIONS));
    const AIService = ((def.cyllm as grpc.GrpcObject).v1 as grpc.GrpcObject).AIService as grpc.ServiceClientConstructor;
    client = new AIService(c.grpcAddress, grpc.credentials.createInsecure()) as unknown as AiClient;
  });
  afterAll(async () => {
    client?.close();
    await llama?.dispose();
    await c?.close();
  });

  const grpcStream = (request: object, metadata = new grpc.Metadata()) =>
    new Promise<StreamPredictResponse[]>((resolve, reject) => {
      const out: StreamPredictResponse[] = [];
      const call = client.StreamPredict(request, metadata);
      call.on('data', (m: StreamPredictResponse) => out.push(m));
      call.on('error', reject);
      call.on('end', () => resolve(out));
    });

  it('lists the model from DATA_DIR/models on /v1/models and /api/v1/models', async () => {
    const list = await openai.models.list();
    expect(list.data.map((m) => m.id)).toEqual(['tiny']);
    const models = await json(await fetch(`${c.url}/api/v1/models`));
    expect(models.models).toEqual([{ id: 'tiny', name: 'tiny-llama', engine: 'node-llama-cpp', status: 'unloaded', capabilities: ['inference', 'stream', 'embeddings'], maxModelLen: 512 }]);
  });

  it('HTTP (openai client), /api/v1, gRPC and direct node-llama-cpp give identical greedy text', async () => {
    const prompt = 'the cat sat';
    const n = 12;
    llama = await getLlama({ gpu: false });
    const model = await llama.loadModel({ modelPath: tinyModelPath() });
    const ctx = await model.createContext({ contextSize: 512, threads: 1 });
    const direct = await new LlamaCompletion({ contextSequence: ctx.getSequence() }).generateCompletion(prompt, { maxTokens: n, temperature: 0 });
    expect(direct.length).toBeGreaterThan(0);

    const viaOpenAi = await openai.completions.create({ model: 'tiny', prompt, max_tokens: n, temperature: 0 });
    expect(viaOpenAi.choices[0]?.text).toBe(direct);
    expect(viaOpenAi.usage?.completion_tokens).toBe(n);

    let streamed = '';
    const stream = await openai.completions.create({ model: 'tiny', prompt, max_tokens: n, temperature: 0, stream: true });
    for await (const chunk of stream) streamed += chunk.choices[0]?.text ?? '';
    expect(streamed).toBe(direct);

    const rest = await json(await post('/api/v1/inference', { modelId: 'tiny', prompt, generation: { maxNewTokens: n, temperature: 0 } }));
    expect(rest).toMatchObject({ modelId: 'tiny', object: 'text_completion', choices: [{ index: 0, text: direct, finish_reason: 'length' }], usage: { completion_tokens: n } });
    expect(rest.id).toMatch(/^gen-/);

    const messages = await grpcStream({ model_id: 'tiny', prompt, generation: { max_new_tokens: n, temperature: 0 }, metadata: { trace_id: 'trace-it' } });
    expect(messages.map((m) => m.chunk).join('')).toBe(direct);
    const last = messages.at(-1)!;
    expect(last).toMatchObject({ end_of_stream: true, chunk: '', trace_id: 'trace-it', finish_reason: 'length' });
    // Chunks of engine.streamChunkSize (4) tokens, indexed like the REST `offset`.
    expect(messages.slice(0, -1).map((m) => m.index)).toEqual([0, 1, 2]);
    expect(messages[0]!.chunk.length).toBe(4);
    const unary = await new Promise<{ text: string; finish_reason: string; usage: { completion_tokens: number } }>((resolve, reject) =>
      client.Predict({ model_id: 'tiny', prompt, generation: { max_new_tokens: n, temperature: 0 } }, (err, res) => (err ? reject(err) : resolve(res!))),
    );
    expect(unary).toMatchObject({ text: direct, finish_reason: 'length', usage: { completion_tokens: n } });
    await ctx.dispose();
    await model.dispose();
  });

  it('serves chat completions, streaming with include_usage, via the openai client', async () => {
    const r = await openai.chat.completions.create({ model: 'tiny', messages: [{ role: 'system', content: 'be brief' }, { role: 'user', content: 'hi' }], max_tokens: 5, temperature: 0, seed: 1 });
    expect(r.id).toMatch(/^chatcmpl-[0-9a-f]{32}$/);
    expect(r.object).toBe('chat.completion');
    expect(r.choices[0]?.message.role).toBe('assistant');
    expect(r.choices[0]?.finish_reason).toBe('length');
    expect(r.usage?.completion_tokens).toBe(5);
    expect(r.usage?.prompt_tokens).toBeGreaterThan(10);

    const stream = await openai.chat.completions.create({ model: 'tiny', messages: [{ role: 'user', content: 'hi' }], max_tokens: 5, temperature: 0, stream: true, stream_options: { include_usage: true } });
    let text = '';
    let finish: string | null = null;
    let usage: OpenAI.CompletionUsage | undefined | null;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta.content ?? '';
      finish = chunk.choices[0]?.finish_reason ?? finish;
      if (chunk.usage) usage = chunk.usage;
    }
    expect(text).toBe(r.choices[0]?.message.content);
    expect(finish).toBe('length');
    expect(usage).toMatchObject({ completion_tokens: 5 });
  });

  it('honours stop strings and JSON mode', async () => {
    const base = await openai.completions.create({ model: 'tiny', prompt: 'the cat sat', max_tokens: 12, temperature: 0 });
    const full = base.choices[0]!.text;
    const stopAt = full.slice(3, 5);
    const stopped = await openai.completions.create({ model: 'tiny', prompt: 'the cat sat', max_tokens: 12, temperature: 0, stop: [stopAt] });
    expect(stopped.choices[0]?.text).toBe(full.slice(0, full.indexOf(stopAt)));
    expect(stopped.choices[0]?.finish_reason).toBe('stop');

    const j = await openai.chat.completions.create({ model: 'tiny', messages: [{ role: 'user', content: 'json' }], max_tokens: 24, temperature: 0, response_format: { type: 'json_object' } });
    expect(j.choices[0]?.message.content?.trimStart().startsWith('{')).toBe(true);
    const schema = await openai.chat.completions.create({
      model: 'tiny',
      messages: [{ role: 'user', content: 'n' }],
      max_tokens: 40,
      temperature: 0,
      response_format: { type: 'json_schema', json_schema: { name: 'n', schema: { type: 'object', properties: { n: { type: 'boolean' } }, required: ['n'], additionalProperties: false } } },
    });
    const content = schema.choices[0]!.message.content!;
    if (schema.choices[0]?.finish_reason === 'stop') expect(typeof (JSON.parse(content) as { n: unknown }).n).toBe('boolean');
    else expect(content.replace(/\s/g, '')).toMatch(/^\{("n"?)?/);
  });

  it('returns embeddings', async () => {
    const e = await openai.embeddings.create({ model: 'tiny', input: ['hello', 'world'] });
    expect(e.data).toHaveLength(2);
    expect(e.data[0]!.embedding).toHaveLength(64);
    expect(e.data[0]!.embedding).not.toEqual(e.data[1]!.embedding);
  });

  it('streams /api/v1/inference/streamWithMetadata in 4-token chunks with the trace id', async () => {
    const res = await post('/api/v1/inference/streamWithMetadata', { modelId: 'tiny', prompt: 'abc', generation: { maxNewTokens: 6, temperature: 0 }, metadata: { trace_id: 't-1', tenant: 'x' } });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toContain('text/event-stream');
    expect(res.headers.get('x-accel-buffering')).toBe('no');
    expect(res.headers.get('x-queue-position')).toBe('0');
    const events = (await res.text()).split('\n\n').filter((e) => e.startsWith('data: ')).map((e) => e.slice(6));
    expect(events.at(-1)).toBe('[DONE]');
    const chunks = events.slice(0, -1).map((e) => JSON.parse(e) as { traceId: string; choices: Array<{ text: string; offset: number; finish_reason?: string }> });
    expect(chunks.map((ch) => ch.choices[0]!.offset)).toEqual([0, 1]);
    expect(chunks.every((ch) => ch.traceId === 't-1')).toBe(true);
    expect(chunks[0]!.choices[0]!.text.length).toBe(4);
    expect(chunks.at(-1)!.choices[0]!.finish_reason).toBe('length');
  });

  it('rejects bad input with clear 4xx and the right envelope, holding no sequence', async () => {
    const unknown = await post('/v1/chat/completions', { model: 'nope', messages: [{ role: 'user', content: 'x' }] });
    expect(unknown.status).toBe(404);
    const unknownBody = (await json(unknown)).error as Record<string, unknown>;
    expect(unknownBody.code).toBe('MODEL_NOT_FOUND');
    expect(unknownBody.message).toContain('available: tiny');
    expect(unknownBody.param).toBe('model');

    const rest404 = await json(await post('/api/v1/inference', { modelId: 'nope', prompt: 'x' }));
    expect(rest404).toMatchObject({ error: { code: 'MODEL_NOT_FOUND' } });

    const malformed = await post('/v1/chat/completions', { model: 'tiny', messages: [{ role: 'wizard', content: 'x' }, { content: 3 }], max_tokens: -5, temperature: 9 });
    expect(malformed.status).toBe(400);
    const fields = (((await json(malformed)).error as { details: Array<{ field: string }> }).details ?? []).map((d) => d.field);
    expect(fields).toEqual(expect.arrayContaining(['messages.0.role', 'messages.1.role', 'max_tokens', 'temperature']));
    const badFormat = await post('/v1/chat/completions', { model: 'tiny', messages: [{ role: 'user', content: 'x' }], response_format: { type: 'xml' } });
    expect(((await json(badFormat)).error as { details: Array<{ field: string; description: string }> }).details).toEqual([
      { type: 'validation', field: 'response_format.type', description: 'must be one of "text", "json_object", "json_schema", got "xml"' },
    ]);

    await expect(openai.chat.completions.create({ model: 'tiny', messages: [{ role: 'user', content: 'x' }], max_tokens: -1 })).rejects.toMatchObject({ status: 400 });
    const unsupported = await post('/v1/chat/completions', { model: 'tiny', messages: [{ role: 'user', content: 'x' }], n: 3, logprobs: true, logit_bias: { '50': 1 } });
    expect(unsupported.status).toBe(400);
    const unsupportedFields = (((await json(unsupported)).error as { details: Array<{ field: string }> }).details ?? []).map((d) => d.field);
    expect(unsupportedFields).toEqual(expect.arrayContaining(['n', 'logprobs', 'logit_bias']));

    const restBad = await json(await post('/api/v1/inference', { modelId: 'tiny', prompt: 'x', generation: { maxNewTokens: -1, temperature: 3 } }));
    expect(restBad).toMatchObject({ error: { code: 'INVALID_REQUEST' } });
    expect(((restBad.error as { details: Array<{ field: string }> }).details).map((d) => d.field)).toEqual(expect.arrayContaining(['generation.maxNewTokens', 'generation.temperature']));

    const tooLong = await post('/v1/completions', { model: 'tiny', prompt: 'word '.repeat(1000), max_tokens: 4 });
    expect(tooLong.status).toBe(400);
    expect(((await json(tooLong)).error as { message: string }).message).toMatch(/prompt is 50\d\d tokens; the model's context holds 4096/);
    const chatTooLong = await post('/v1/chat/completions', { model: 'tiny', messages: [{ role: 'user', content: 'word '.repeat(1000) }] });
    expect(chatTooLong.status).toBe(400);
    expect(((await json(chatTooLong)).error as { param: string; message: string })).toMatchObject({ param: 'messages', message: expect.stringMatching(/prompt is \d+ tokens; the model's context holds 4096/) });

    const adapter = await json(await post('/api/v1/inference', { modelId: 'tiny', prompt: 'x', adapter: 'furina' }));
    expect(adapter).toMatchObject({ error: { code: 'INVALID_REQUEST', details: [{ field: 'adapter' }] } });
    const forced = await post('/v1/chat/completions', { model: 'tiny', messages: [{ role: 'user', content: 'w' }], tools: [{ type: 'function', function: { name: 'f' } }], tool_choice: 'required' });
    expect(forced.status).toBe(400);
    expect(((await json(forced)).error as { param: string }).param).toBe('tool_choice');

    const huge = await fetch(`${c.url}/api/v1/inference`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ modelId: 'tiny', prompt: 'x'.repeat(9 * 1024 * 1024) }) });
    expect(huge.status).toBe(413);

    const grpcBad = await grpcStream({ model_id: 'tiny', prompt: 'x', priority: 9 }).catch((e: grpc.ServiceError) => e);
    expect((grpcBad as grpc.ServiceError).code).toBe(grpc.status.INVALID_ARGUMENT);
    const grpcUnknown = await grpcStream({ model_id: 'nope', prompt: 'x' }).catch((e: grpc.ServiceError) => e);
    expect((grpcUnknown as grpc.ServiceError).code).toBe(grpc.status.NOT_FOUND);
    expect((grpcUnknown as grpc.ServiceError).metadata.get('x-error-code')).toEqual(['MODEL_NOT_FOUND']);

    expect(await status()).toMatchObject({ activeSequences: 0, queue: { total: 0 } });
  });

  it('frees the sequence at once when a streaming client disconnects', async () => {
    const controller = new AbortController();
    const stream = await openai.chat.completions.create({ model: 'tiny', messages: [{ role: 'user', content: 'go' }], max_tokens: LONG, temperature: 0, stream: true }, { signal: controller.signal });
    let got = 0;
    try {
      for await (const chunk of stream) {
        if (chunk.choices[0]?.delta.content) got++;
        if (got === 2) controller.abort();
      }
    } catch {
      // the client's own abort
    }
    expect(got).toBe(2);
    await until(async () => (await status()).activeSequences === 0, 'the sequence to be freed');
    const metrics = await (await fetch(`${c.url}/metrics`)).text();
    expect(metrics).toMatch(/console_inference_requests_total\{surface="v1_chat",status="cancelled"\} 1/);
  });

  it('frees the sequence at once when a gRPC client cancels StreamPredict', async () => {
    const call = client.StreamPredict({ model_id: 'tiny', prompt: 'go', generation: { max_new_tokens: LONG, temperature: 0 } });
    await new Promise<void>((resolve) => call.once('data', () => resolve()));
    call.on('error', () => undefined);
    call.cancel();
    await until(async () => (await status()).activeSequences === 0, 'the sequence to be freed');
    await until(async () => /console_inference_requests_total\{surface="grpc_stream_predict",status="cancelled"\} 1/.test(await (await fetch(`${c.url}/metrics`)).text()), 'the cancelled count');
  });

  it('queues beyond `parallel`: place in headers and SSE comments, then serves it', async () => {
    expect(c.console.config.update({ engine: { parallel: 1 } }).ok).toBe(true);
    expect((await json(await post('/api/v1/models/tiny/unload', {}))).status).toBe('unloaded');
    expect((await json(await post('/api/v1/models/tiny/load', { ttl: 60 }))).config).toMatchObject({ parallel: 1, idleTtlSeconds: 60 });

    const holder = new AbortController();
    const hold = await post('/api/v1/inference/stream', { modelId: 'tiny', prompt: 'x', generation: { maxNewTokens: LONG, temperature: 0 } });
    const holdReader = hold.body!.getReader();
    await readUntil(holdReader, (t) => t.includes('data: '));

    const waiting = await fetch(`${c.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-priority': 'high' },
      body: JSON.stringify({ model: 'tiny', messages: [{ role: 'user', content: 'q' }], max_tokens: 3, temperature: 0, stream: true }),
    });
    expect(waiting.status).toBe(200);
    expect(waiting.headers.get('x-queue-position')).toBe('1');
    expect(Number(waiting.headers.get('x-queue-eta-ms'))).toBeGreaterThan(0);
    const reader = waiting.body!.getReader();
    const head = await readUntil(reader, (t) => t.includes('\n\n'));
    expect(head).toMatch(/^: queued position=1 eta_ms=\d+/);
    const st = await status();
    expect(st).toMatchObject({ activeSequences: 1, queue: { total: 1, depth: { high: 1 } } });
    expect((st.waiting as Array<{ position: number; priority: string }>)[0]).toMatchObject({ position: 1, priority: 'high', modelId: 'tiny' });

    // gRPC StreamPredict waits in the same queue (behind the high-priority chat): its place in the
    // response headers and in a first, empty message.
    const grpcCall = client.StreamPredict({ model_id: 'tiny', prompt: 'q', generation: { max_new_tokens: 2, temperature: 0 } });
    const grpcHeaders = new Promise<grpc.Metadata>((resolve) => grpcCall.on('metadata', resolve));
    const grpcMessages: StreamPredictResponse[] = [];
    grpcCall.on('data', (m: StreamPredictResponse) => grpcMessages.push(m));
    const grpcDone = new Promise<void>((resolve, reject) => {
      grpcCall.on('end', resolve);
      grpcCall.on('error', reject);
    });
    expect((await grpcHeaders).get('x-queue-position')).toEqual(['2']);
    await until(async () => grpcMessages.length > 0, 'the queued gRPC message');
    expect(grpcMessages[0]).toMatchObject({ chunk: '', end_of_stream: false, index: 0, queue_position: 2 });

    // A full queue refuses at once: 429 with Retry-After, in each family's envelope.
    expect(c.console.config.update({ engine: { queueMaxSize: 1 } }).ok).toBe(true);
    const full = await post('/v1/completions', { model: 'tiny', prompt: 'q', max_tokens: 2, stream: true });
    expect(full.status).toBe(429);
    expect(Number(full.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
    expect((await json(full)).error).toMatchObject({ type: 'QueueFullError', code: 'RATE_LIMITED' });
    const fullRest = await post('/api/v1/inference', { modelId: 'tiny', prompt: 'q' });
    expect(fullRest.status).toBe(429);
    expect(await json(fullRest)).toMatchObject({ error: { code: 'RATE_LIMITED' } });
    c.console.config.update({ engine: { queueMaxSize: 64 } });

    await holdReader.cancel();
    holder.abort();
    const rest = await readUntil(reader, (t) => t.includes('[DONE]'));
    expect(rest).toContain('"finish_reason":"length"');
    await grpcDone;
    expect(grpcMessages.at(-1)).toMatchObject({ end_of_stream: true, finish_reason: 'length' });
    await until(async () => (await status()).activeSequences === 0, 'the requests to finish');
    c.console.config.update({ engine: { parallel: 4 } });
  });

  it('documents tools in the prompt through the chat template', async () => {
    const tools: OpenAI.ChatCompletionTool[] = [{ type: 'function', function: { name: 'get_weather', description: 'weather', parameters: { type: 'object', properties: { city: { type: 'string' } } } } }];
    const base = await openai.chat.completions.create({ model: 'tiny', messages: [{ role: 'user', content: 'w' }], max_tokens: 2, temperature: 0 });
    const r = await openai.chat.completions.create({ model: 'tiny', messages: [{ role: 'user', content: 'w' }], tools, max_tokens: 4, temperature: 0 });
    expect(['stop', 'length', 'tool_calls']).toContain(r.choices[0]?.finish_reason);
    // The function documentation the chat wrapper adds is hundreds of tokens long.
    expect(r.usage!.prompt_tokens - base.usage!.prompt_tokens).toBeGreaterThan(300);
    const none = await openai.chat.completions.create({ model: 'tiny', messages: [{ role: 'user', content: 'w' }], tools, tool_choice: 'none', max_tokens: 2, temperature: 0 });
    expect(none.usage!.prompt_tokens).toBe(base.usage!.prompt_tokens);
  });

  it('reports the backend in health details and engine metrics without model labels', async () => {
    const details = await json(await fetch(`${c.url}/api/v1/health/details`));
    expect((details.components as Record<string, { status: string; details: Record<string, unknown> }>).engine).toMatchObject({ status: 'UP', details: { backend: 'cpu', requestedBackend: 'false', threads: 1 } });
    const metrics = await (await fetch(`${c.url}/metrics`)).text();
    expect(metrics).toMatch(/console_engine_tokens_total\{route="v1_completions",priority="normal",direction="out"\} \d+/);
    expect(metrics).toMatch(/console_engine_ttft_seconds_count\{route="grpc_stream_predict",priority="normal"\} [1-9]/);
    expect(metrics).toMatch(/console_engine_queue_depth\{priority="urgent"\} 0/);
    expect(metrics).toMatch(/console_engine_loaded_models 1/);
    // Each request counted once: the 7 refused /v1/chat/completions of the bad-input test, the one cancelled.
    expect(metrics).toMatch(/console_inference_requests_total\{surface="v1_chat",status="rejected"\} 7\n/);
    expect(metrics).toMatch(/console_inference_requests_total\{surface="v1_chat",status="cancelled"\} 1\n/);
    expect(metrics).toMatch(/console_inference_requests_total\{surface="v1_completions",status="rejected"\} 2\n/);
    expect(metrics).not.toMatch(/console_engine_[a-z_]+\{[^}]*model=/);
  });

  it('requires X-API-Key on /api/v1 and gRPC once keys are configured', async () => {
    expect(c.console.config.update({ auth: { apiKeys: ['engine-test-key'] } }).ok).toBe(true);
    try {
      expect((await fetch(`${c.url}/api/v1/models`)).status).toBe(401);
      expect((await fetch(`${c.url}/api/v1/models`, { headers: { 'x-api-key': 'wrong-key-123' } })).status).toBe(403);
      expect((await fetch(`${c.url}/api/v1/models/tiny`, { headers: { 'x-api-key': 'engine-test-key' } })).status).toBe(200);
      const denied = await grpcStream({ model_id: 'tiny', prompt: 'x' }).catch((e: grpc.ServiceError) => e);
      expect((denied as grpc.ServiceError).code).toBe(grpc.status.UNAUTHENTICATED);
      const md = new grpc.Metadata();
      md.set('x-api-key', 'engine-test-key');
      const list = await new Promise<{ models: Array<{ id: string; status: string }> }>((resolve, reject) => client.ListModels({}, md, (err, res) => (err ? reject(err) : resolve(res!))));
      expect(list.models).toEqual([expect.objectContaining({ id: 'tiny', status: 'ready' })]);
    } finally {
      c.console.config.update({ auth: { apiKeys: [] } });
    }
  });
});
