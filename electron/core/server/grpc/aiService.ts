import { randomUUID } from 'node:crypto';
import {
  Metadata,
  type ServerUnaryCall,
  type ServerWritableStream,
  type ServiceDefinition,
  type UntypedServiceImplementation,
  type sendUnaryData,
} from '@grpc/grpc-js';
import { PRIORITIES, type Priority } from '../../../../shared/contracts/priority.js';
import { checkValue } from '../../../../shared/contracts/validate.js';
import { InferenceRequest } from '../../../../shared/contracts/engine.js';
import { AppError, ErrorCode, invalidRequest } from '../../base/errors.js';
import type { EngineService, RunOptions, SamplingParams } from '../../services/engine/engineService.js';
import { TokenChunker } from '../../services/engine/tokenChunker.js';
import type { Auth } from '../auth.js';
import { authorizeCall, loadServiceDefinition, protoPath, toGrpcError } from './grpcServer.js';
export { PROTO_LOADER_OPTIONS } from './grpcServer.js';

/** Path of the proto file (shared with clients and tests). */
export function aiServiceProtoPath(): string {
  return protoPath('ai_service.proto');
}

/** The AIService definition, loaded from shared/proto/ai_service.proto. */
export function aiServiceDefinition(): ServiceDefinition {
  return loadServiceDefinition('ai_service.proto', 'AIService');
}

interface GenerationMessage {
  max_new_tokens?: number;
  temperature?: number;
  top_p?: number;
  repetition_penalty?: number;
  seed?: number;
}

interface PredictRequestMessage {
  model_id?: string;
  prompt?: string;
  adapter?: string;
  priority?: number;
  generation?: GenerationMessage | null;
  metadata?: { trace_id?: string; tenant?: string; player_id?: string; locale?: string } | null;
  worker_hint?: string;
}

export interface AiServiceOptions {
  engine: EngineService;
  auth: Auth;
}

/** gRPC priority (contract §10): 1=URGENT..4=LOW, 0 = NORMAL. */
function priorityOf(value: number | undefined): Priority {
  if (value === undefined || value === 0) return 'normal';
  const p = PRIORITIES[value - 1];
  if (!p) throw invalidRequest('Invalid priority', [{ type: 'validation', field: 'priority', description: 'must be 0 (normal) or 1..4 (urgent..low)' }]);
  return p;
}

/** Request message → the REST request shape, validated with the same contract schema. */
function toInput(req: PredictRequestMessage): { modelId: string; prompt: string; adapter: string; params: SamplingParams } {
  const g = req.generation ?? undefined;
  const generation = {
    ...(g?.max_new_tokens ? { maxNewTokens: g.max_new_tokens } : {}),
    ...(g?.temperature !== undefined && g.temperature !== null ? { temperature: Math.round(g.temperature * 1e6) / 1e6 } : {}),
    ...(g?.top_p !== undefined && g.top_p !== null ? { topP: Math.round(g.top_p * 1e6) / 1e6 } : {}),
    ...(g?.repetition_penalty !== undefined && g.repetition_penalty !== null ? { repetitionPenalty: Math.round(g.repetition_penalty * 1e6) / 1e6 } : {}),
    ...(g?.seed !== undefined && g.seed !== null ? { seed: g.seed } : {}),
  };
  const candidate = { modelId: req.model_id ?? '', prompt: req.prompt ?? '', generation };
  const issues = checkValue(InferenceRequest, candidate);
  if (issues.length > 0) {
    const snake: Record<string, string> = { modelId: 'model_id', 'generation.maxNewTokens': 'generation.max_new_tokens', 'generation.topP': 'generation.top_p', 'generation.repetitionPenalty': 'generation.repetition_penalty' };
    throw invalidRequest(
      'Invalid request',
      issues.map((i) => ({ type: 'validation', field: snake[i.path] ?? i.path, description: `expected ${i.expected}, got ${i.got}` })),
    );
  }
  return {
    modelId: candidate.modelId,
    prompt: candidate.prompt,
    adapter: req.adapter ?? '',
    params: {
      maxTokens: generation.maxNewTokens ?? 256,
      temperature: generation.temperature ?? 0.7,
      topP: generation.topP ?? 0.95,
      repeatPenalty: generation.repetitionPenalty ?? 1.0,
      ...(generation.seed !== undefined ? { seed: generation.seed } : {}),
    },
  };
}

/**
 * gRPC AIService (contract §10) over the engine: the same `complete()` the HTTP routes call, the
 * same chunking as the REST SSE stream. Auth: `x-internal-token` (auth.internalToken) or
 * `x-api-key` under the /api/v1 key rule.
 */
export function createAiService({ engine, auth }: AiServiceOptions): UntypedServiceImplementation {
  const authorize = (metadata: Metadata) => authorizeCall(auth, metadata);

  const callSignal = (call: { on(event: 'cancelled', fn: () => void): unknown }) => {
    const controller = new AbortController();
    call.on('cancelled', () => controller.abort(new AppError(ErrorCode.INVALID_REQUEST, 'client cancelled the call', { status: 499 })));
    return controller.signal;
  };

  const reject = (err: unknown) => toGrpcError(err instanceof AppError ? err : new AppError(ErrorCode.INTERNAL_ERROR, (err as Error)?.message ?? 'Internal error'));
  /** Auth and message checks fail before the engine counts the request, so they are counted here. */
  const refused = (route: 'grpc_stream_predict' | 'grpc_predict', err: unknown) => {
    engine.recordRejected(route);
    return reject(err);
  };

  /** Auth, message checks and priority: everything the engine needs before it sees the request. */
  const admit = (call: { metadata: Metadata; request: PredictRequestMessage }) => {
    authorize(call.metadata);
    return { input: toInput(call.request), priority: priorityOf(call.request.priority), traceId: call.request.metadata?.trace_id || `trace-${randomUUID()}` };
  };

  return {
    StreamPredict(call: ServerWritableStream<PredictRequestMessage, unknown>) {
      void (async () => {
        let headersSent = false;
        const sendHeaders = (position: number, etaMs: number) => {
          if (headersSent) return;
          headersSent = true;
          const md = new Metadata();
          md.set('x-queue-position', String(position));
          md.set('x-queue-eta-ms', String(etaMs));
          call.sendMetadata(md);
        };
        let admitted: ReturnType<typeof admit>;
        try {
          admitted = admit(call);
        } catch (err) {
          call.emit('error', refused('grpc_stream_predict', err));
          return;
        }
        const { input, priority, traceId } = admitted;
        try {
          let index = 0;
          const chunker = new TokenChunker(engine.chunkSize(), (text) => {
            call.write({ trace_id: traceId, chunk: text, end_of_stream: false, index: index++ });
          });
          const opts: RunOptions = {
            route: 'grpc_stream_predict',
            priority,
            requestId: `grpc-${randomUUID().slice(0, 8)}`,
            signal: callSignal(call),
            onQueued: (p) => {
              sendHeaders(p.position, p.etaMs);
              call.write({ trace_id: traceId, chunk: '', end_of_stream: false, index, queue_position: p.position, queue_eta_ms: p.etaMs });
            },
            onStart: () => sendHeaders(0, 0),
            onText: (text, tokens) => chunker.push(text, tokens),
          };
          const r = await engine.complete(input, opts);
          const rest = chunker.take();
          if (rest !== '') call.write({ trace_id: traceId, chunk: rest, end_of_stream: false, index: index++ });
          call.write({ trace_id: traceId, chunk: '', end_of_stream: true, index, finish_reason: r.finishReason });
          call.end();
        } catch (err) {
          if (call.cancelled) return;
          call.emit('error', reject(err));
        }
      })();
    },

    Predict(call: ServerUnaryCall<PredictRequestMessage, unknown>, callback: sendUnaryData<unknown>) {
      void (async () => {
        let admitted: ReturnType<typeof admit>;
        try {
          admitted = admit(call);
        } catch (err) {
          callback(refused('grpc_predict', err));
          return;
        }
        const { input, priority, traceId } = admitted;
        try {
          const r = await engine.complete(input, { route: 'grpc_predict', priority, requestId: `grpc-${randomUUID().slice(0, 8)}`, signal: callSignal(call) });
          callback(null, {
            id: `gen-${randomUUID().replace(/-/g, '').slice(0, 16)}`,
            model_id: r.modelId,
            text: r.text,
            finish_reason: r.finishReason,
            usage: { prompt_tokens: r.promptTokens, completion_tokens: r.completionTokens, total_tokens: r.promptTokens + r.completionTokens },
            trace_id: traceId,
          });
        } catch (err) {
          callback(reject(err));
        }
      })();
    },

    ListModels(call: ServerUnaryCall<unknown, unknown>, callback: sendUnaryData<unknown>) {
      void (async () => {
        try {
          authorize(call.metadata);
          const models = await engine.listModels();
          callback(null, { models: models.map((m) => ({ id: m.id, status: m.status, max_model_len: m.maxModelLen ?? 0, error: m.error ?? '' })) });
        } catch (err) {
          callback(reject(err));
        }
      })();
    },
  };
}
