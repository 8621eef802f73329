import { PassThrough } from 'node:stream';
import type { Static, TSchema } from '@sinclair/typebox';
import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import {
  ChatCompletionRequest,
  CompletionRequest,
  EmbeddingRequest,
  InferenceRequest,
  ModelIdParams,
  ModelLoadRequest,
  StreamWithMetadataRequest,
} from '../../../../../shared/contracts/engine.js';
import { parsePriority, type Priority } from '../../../../../shared/contracts/priority.js';
import { validate } from '../../../../../shared/contracts/validate.js';
import type { Clock } from '../../../base/clock.js';
import { AppError, invalidRequest } from '../../../base/errors.js';
import type { EngineRoute, EngineService, GenerationResult, QueuePosition } from '../../../services/engine/engineService.js';
import { collect, generationId, newId, newTraceId, openAiSampling, restSampling, type GenerateOptions, type GenerationRequest } from '../../../services/engine/generation.js';
import { TokenChunker } from '../../../services/engine/tokenChunker.js';
import type { Auth } from '../../auth.js';
import { httpClientGone } from '../../clientGone.js';
import { errorBody, logServerError, toAppError } from '../errorEnvelope.js';
import type { OpenAiHandlers, OpenAiModel } from './openaiRouter.js';

/** What the HTTP surface needs of the engine (a fake implements it in the plugin's own tests). */
export type EngineHttpPort = Pick<EngineService, 'generate' | 'embed' | 'chunkSize' | 'listModels' | 'getModel' | 'load' | 'unload' | 'snapshot' | 'waiting' | 'recordRejected'>;

export interface EnginePluginOptions extends Record<string, unknown> {
  engine: EngineHttpPort;
  auth: Auth;
  clock: Clock;
}

/** Validates `value` against one contract schema with the one `validate()`; 400 listing every bad field. */
export function validateBody<S extends TSchema>(schema: S, value: unknown): Static<S> {
  const details = validate(schema, value);
  if (details.length === 0) return value as Static<S>;
  throw invalidRequest('Invalid request', details);
}

const SSE_HEADERS = { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache', 'x-accel-buffering': 'no', connection: 'keep-alive' };

/**
 * One SSE response that starts lazily: on the first of "the request had to wait" (so the client
 * learns its queue place at once, in headers and a `: queued` comment) or "generation started".
 * Errors before that are ordinary HTTP errors.
 */
class SseResponse {
  readonly stream = new PassThrough();
  private started = false;

  constructor(private readonly reply: FastifyReply) {}

  get isStarted(): boolean {
    return this.started;
  }

  start(position: QueuePosition): void {
    if (this.started) return;
    this.started = true;
    void this.reply
      .code(200)
      .headers({ ...SSE_HEADERS, 'x-queue-position': String(position.position), 'x-queue-eta-ms': String(position.etaMs) })
      .send(this.stream);
  }
  queued(position: QueuePosition): void {
    this.start(position);
    if (this.stream.destroyed || this.stream.writableEnded) return;
    this.stream.write(`: queued position=${position.position} eta_ms=${position.etaMs}\n\n`);
  }
  data(value: unknown): void {
    if (this.stream.destroyed || this.stream.writableEnded) return;
    this.stream.write(`data: ${typeof value === 'string' ? value : JSON.stringify(value)}\n\n`);
  }
  end(): void {
    this.stream.end();
  }
}

function priorityOf(request: FastifyRequest): Priority {
  return parsePriority(request.headers['x-priority']).priority;
}

/** What one surface sends on its SSE stream for each step of a generation (`send` writes one `data:` event). */
interface SseEncoder {
  started?(): void;
  text(text: string, tokens: number): void;
  done(result: GenerationResult): void;
}

/**
 * The engine's HTTP surface: the seed API (`/api/v1/inference*`, `/api/v1/models*`, engine
 * status) and the local OpenAI handlers that `openaiRouterPlugin` mounts on `/v1`. Every
 * generation route is `engine.generate()` encoded as JSON (`respondJson`) or SSE (`respondSse`).
 */
export function createEngineHttp({ engine, clock }: { engine: EngineHttpPort; clock: Clock }) {
  const unix = () => Math.floor(clock.now() / 1000);

  /** Who asks, how urgently, and the signal that the client went away. */
  const generateOptions = (request: FastifyRequest, route: EngineRoute, ttl: number | undefined): GenerateOptions => ({
    route,
    priority: priorityOf(request),
    requestId: String(request.id),
    signal: httpClientGone(request.raw.socket),
    ...(ttl !== undefined ? { ttlSeconds: ttl } : {}),
  });

  /** A malformed body, refused before the engine saw the request. */
  const invalid = (route: EngineRoute, err: unknown) => {
    engine.recordRejected(route);
    return rejected(route, err);
  };

  const rejected = (route: EngineRoute, err: unknown) => {
    let e = toAppError(err);
    // The engine names the REST field (`modelId`); on /v1 the same field is `model`.
    if (route.startsWith('v1_') && e.details?.some((d) => d.field === 'modelId')) {
      e = new AppError(e.code, e.message, { status: e.status, type: e.type, headers: e.headers, cause: e, details: e.details.map((d) => (d.field === 'modelId' ? { ...d, field: 'model' } : d)) });
    }
    return e;
  };

  /** Non-streaming responses carry the queue place the request first had (0 = served at once). */
  const queueHeaders = () => {
    let first: QueuePosition = { position: 0, etaMs: 0 };
    let seen = false;
    return {
      onQueued: (p: QueuePosition) => {
        if (!seen) first = p;
        seen = true;
      },
      apply: (reply: FastifyReply) => void reply.headers({ 'x-queue-position': String(first.position), 'x-queue-eta-ms': String(first.etaMs) }),
    };
  };

  /** A generation as one JSON response: its result, with the first queue place in headers; any error is an ordinary HTTP error. */
  const respondJson = async <T>(reply: FastifyReply, route: EngineRoute, request: GenerationRequest, opts: GenerateOptions, encode: (r: GenerationResult) => T): Promise<T> => {
    const q = queueHeaders();
    const result = await collect(engine.generate(request, opts), (event) => {
      if (event.type === 'queued') q.onQueued(event.position);
    }).catch((err: unknown) => {
      throw rejected(route, err);
    });
    q.apply(reply);
    return encode(result);
  };

  /**
   * A generation as an SSE stream, started on its first `queued` or `started` event: an error
   * before that is an ordinary HTTP error; after it, the stream's last event (logged when 5xx), then
   * `[DONE]` as after a result.
   */
  const respondSse = async (
    request: FastifyRequest,
    reply: FastifyReply,
    route: EngineRoute,
    generation: GenerationRequest,
    opts: GenerateOptions,
    errorFormat: 'openai' | 'engine',
    encoder: (send: (value: unknown) => void) => SseEncoder,
  ): Promise<FastifyReply> => {
    const sse = new SseResponse(reply);
    const enc = encoder((value) => sse.data(value));
    for await (const event of engine.generate(generation, opts)) {
      switch (event.type) {
        case 'queued':
          sse.queued(event.position);
          break;
        case 'started':
          sse.start({ position: 0, etaMs: 0 });
          enc.started?.();
          break;
        case 'text':
          enc.text(event.text, event.tokens);
          break;
        case 'done':
          enc.done(event.result);
          sse.data('[DONE]');
          sse.end();
          break;
        case 'error': {
          if (!sse.isStarted) throw rejected(route, event.error);
          const e = toAppError(event.error);
          logServerError(request, e, event.error);
          sse.data(errorBody(e, errorFormat).body);
          sse.data('[DONE]');
          sse.end();
          break;
        }
      }
    }
    return reply;
  };

  const usage = (r: GenerationResult) => ({ prompt_tokens: r.promptTokens, completion_tokens: r.completionTokens, total_tokens: r.promptTokens + r.completionTokens });

  // ------------------------------------------------------------ /v1 (OpenAI)

  const openai: OpenAiHandlers = {
    async chatCompletions(request, reply, raw) {
      const route: EngineRoute = 'v1_chat';
      let body: ChatCompletionRequest;
      try {
        body = validateBody(ChatCompletionRequest, raw);
      } catch (err) {
        throw invalid(route, err);
      }
      const id = newId('chatcmpl');
      const created = unix();
      const generation: GenerationRequest = {
        kind: 'chat',
        input: {
          modelId: body.model,
          messages: body.messages,
          params: openAiSampling(body),
          ...(body.response_format ? { responseFormat: body.response_format } : {}),
          ...(body.tools ? { tools: body.tools } : {}),
          ...(body.tool_choice ? { toolChoice: body.tool_choice } : {}),
        },
      };
      const opts = generateOptions(request, route, body.ttl);
      const toolCallsOf = (r: GenerationResult) => r.toolCalls?.map((c) => ({ id: c.id, type: 'function' as const, function: { name: c.name, arguments: c.arguments } }));
      if (!body.stream) {
        return respondJson(reply, route, generation, opts, (r) => {
          const toolCalls = toolCallsOf(r);
          return {
            id,
            object: 'chat.completion',
            created,
            model: r.modelId,
            choices: [{ index: 0, message: { role: 'assistant', content: toolCalls ? (r.text === '' ? null : r.text) : r.text, ...(toolCalls ? { tool_calls: toolCalls } : {}) }, finish_reason: r.finishReason, logprobs: null }],
            usage: usage(r),
          };
        });
      }
      let model = body.model ?? 'default';
      const chunk = (delta: Record<string, unknown>, finish: string | null) => ({ id, object: 'chat.completion.chunk', created, model, choices: [{ index: 0, delta, finish_reason: finish, logprobs: null }] });
      return respondSse(request, reply, route, generation, opts, 'openai', (send) => ({
        started: () => send(chunk({ role: 'assistant', content: '' }, null)),
        text: (text) => {
          if (text !== '') send(chunk({ content: text }, null));
        },
        done: (r) => {
          model = r.modelId;
          const toolCalls = toolCallsOf(r);
          if (toolCalls) send(chunk({ tool_calls: toolCalls.map((c, index) => ({ index, ...c })) }, null));
          send(chunk({}, r.finishReason));
          if (body.stream_options?.include_usage) send({ id, object: 'chat.completion.chunk', created, model, choices: [], usage: usage(r) });
        },
      }));
    },

    async completions(request, reply, raw) {
      const route: EngineRoute = 'v1_completions';
      let body: CompletionRequest;
      try {
        body = validateBody(CompletionRequest, raw);
      } catch (err) {
        throw invalid(route, err);
      }
      const prompt = Array.isArray(body.prompt) ? body.prompt[0]! : body.prompt;
      const id = newId('cmpl');
      const created = unix();
      const generation: GenerationRequest = { kind: 'completion', input: { modelId: body.model, prompt, params: openAiSampling(body) } };
      const opts = generateOptions(request, route, body.ttl);
      if (!body.stream) {
        return respondJson(reply, route, generation, opts, (r) => ({
          id,
          object: 'text_completion',
          created,
          model: r.modelId,
          choices: [{ index: 0, text: r.text, finish_reason: r.finishReason, logprobs: null }],
          usage: usage(r),
        }));
      }
      let model = body.model ?? 'default';
      const chunk = (text: string, finish: string | null) => ({ id, object: 'text_completion', created, model, choices: [{ index: 0, text, finish_reason: finish, logprobs: null }] });
      return respondSse(request, reply, route, generation, opts, 'openai', (send) => ({
        text: (text) => {
          if (text !== '') send(chunk(text, null));
        },
        done: (r) => {
          model = r.modelId;
          send(chunk('', r.finishReason));
          if (body.stream_options?.include_usage) send({ id, object: 'text_completion', created, model, choices: [], usage: usage(r) });
        },
      }));
    },

    async embeddings(request, reply, raw) {
      const route: EngineRoute = 'v1_embeddings';
      let body: EmbeddingRequest;
      try {
        body = validateBody(EmbeddingRequest, raw);
      } catch (err) {
        throw invalid(route, err);
      }
      const inputs = Array.isArray(body.input) ? body.input : [body.input];
      const q = queueHeaders();
      const r = await engine.embed(body.model, inputs, { ...generateOptions(request, route, body.ttl), onQueued: q.onQueued }).catch((err: unknown) => {
        throw rejected(route, err);
      });
      q.apply(reply);
      const encode = (v: number[]) => (body.encoding_format === 'base64' ? Buffer.from(new Float32Array(v).buffer).toString('base64') : v);
      return {
        object: 'list',
        data: r.vectors.map((v, index) => ({ object: 'embedding', index, embedding: encode(body.dimensions ? v.slice(0, body.dimensions) : v) })),
        model: r.modelId,
        usage: { prompt_tokens: r.promptTokens, total_tokens: r.promptTokens },
      };
    },

    async listModels(): Promise<OpenAiModel[]> {
      const models = await engine.listModels();
      return models.map((m) => ({ id: m.id, object: 'model', created: 0, owned_by: 'local', status: m.status }));
    },

    async getModel(_request, id): Promise<OpenAiModel | undefined> {
      const models = await engine.listModels();
      const m = models.find((x) => x.id === id);
      return m ? { id: m.id, object: 'model', created: 0, owned_by: 'local', status: m.status } : undefined;
    },
  };

  // ------------------------------------------------------------ /api/v1 (seed API)

  const plugin: FastifyPluginAsync<EnginePluginOptions> = async (app, { auth }) => {
    const completion = (body: InferenceRequest): GenerationRequest => ({
      kind: 'completion',
      input: { modelId: body.modelId, prompt: body.prompt, adapter: body.adapter, params: restSampling(body.generation) },
    });

    app.post('/api/v1/inference', { preHandler: auth.apiKey, schema: { body: InferenceRequest } }, async (request, reply) => {
      const body = request.body as InferenceRequest;
      return respondJson(reply, 'api_inference', completion(body), generateOptions(request, 'api_inference', body.ttl), (r) => ({
        id: generationId(),
        modelId: r.modelId,
        object: 'text_completion',
        created: unix(),
        choices: [{ index: 0, text: r.text, finish_reason: r.finishReason }],
        usage: usage(r),
      }));
    });

    const streamRoute = (path: string, withMetadata: boolean) =>
      app.post(path, { preHandler: auth.apiKey, schema: { body: withMetadata ? StreamWithMetadataRequest : InferenceRequest } }, async (request, reply) => {
        const body = request.body as StreamWithMetadataRequest;
        const id = generationId();
        const traceId = withMetadata ? (body.metadata?.traceId ?? body.metadata?.trace_id ?? newTraceId()) : undefined;
        let offset = 0;
        const event = (text: string, finish?: string) => ({
          id,
          object: 'text_completion.chunk',
          ...(traceId ? { traceId } : {}),
          choices: [{ index: 0, text, ...(finish ? { finish_reason: finish } : {}), offset }],
        });
        return respondSse(request, reply, 'api_stream', completion(body), generateOptions(request, 'api_stream', body.ttl), 'engine', (send) => {
          const chunker = new TokenChunker(engine.chunkSize(), (text) => {
            send(event(text));
            offset++;
          });
          return {
            text: (text, tokens) => chunker.push(text, tokens),
            done: (r) => send(event(chunker.take(), r.finishReason)),
          };
        });
      });
    streamRoute('/api/v1/inference/stream', false);
    streamRoute('/api/v1/inference/streamWithMetadata', true);

    app.get('/api/v1/models', { preHandler: auth.apiKey }, async () => ({ models: await engine.listModels() }));
    app.get('/api/v1/models/:modelId', { preHandler: auth.apiKey, schema: { params: ModelIdParams } }, async (request) => engine.getModel((request.params as ModelIdParams).modelId));
    app.post('/api/v1/models/:modelId/load', { preHandler: auth.apiKey, schema: { params: ModelIdParams } }, async (request) => {
      const body = validateBody(ModelLoadRequest, request.body ?? {});
      return engine.load((request.params as ModelIdParams).modelId, body.ttl);
    });
    app.post('/api/v1/models/:modelId/unload', { preHandler: auth.apiKey, schema: { params: ModelIdParams } }, async (request) => engine.unload((request.params as ModelIdParams).modelId));
    app.get('/api/v1/engine/status', { preHandler: auth.apiKey }, async () => ({ ...engine.snapshot(), waiting: engine.waiting() }));
  };

  return { openai, plugin };
}

