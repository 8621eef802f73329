import {
  Metadata,
  type ServerUnaryCall,
  type ServerWritableStream,
  type ServiceDefinition,
  type UntypedServiceImplementation,
  type sendUnaryData,
} from '@grpc/grpc-js';
import { PRIORITIES, type Priority } from '../../../../shared/contracts/priority.js';
import { validate } from '../../../../shared/contracts/validate.js';
import { InferenceRequest, type GenerationParameters } from '../../../../shared/contracts/engine.js';
import { invalidRequest } from '../../base/errors.js';
import type { CompletionInput, EngineRoute, EngineService, GenerationResult } from '../../services/engine/engineService.js';
import { collect, generationId, newId, newTraceId, restSampling, type GenerateOptions, type GenerationEvent, type GenerationRequest } from '../../services/engine/generation.js';
import { TokenChunker } from '../../services/engine/tokenChunker.js';
import type { Auth } from '../auth.js';
import { clientGoneSignal } from '../clientGone.js';
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
function toInput(req: PredictRequestMessage): CompletionInput {
  const g = req.generation ?? undefined;
  const generation: GenerationParameters = {
    ...(g?.max_new_tokens ? { maxNewTokens: g.max_new_tokens } : {}),
    ...(g?.temperature !== undefined && g.temperature !== null ? { temperature: Math.round(g.temperature * 1e6) / 1e6 } : {}),
    ...(g?.top_p !== undefined && g.top_p !== null ? { topP: Math.round(g.top_p * 1e6) / 1e6 } : {}),
    ...(g?.repetition_penalty !== undefined && g.repetition_penalty !== null ? { repetitionPenalty: Math.round(g.repetition_penalty * 1e6) / 1e6 } : {}),
    ...(g?.seed !== undefined && g.seed !== null ? { seed: g.seed } : {}),
  };
  const candidate = { modelId: req.model_id ?? '', prompt: req.prompt ?? '', generation };
  const snake: Record<string, string> = { modelId: 'model_id', 'generation.maxNewTokens': 'generation.max_new_tokens', 'generation.topP': 'generation.top_p', 'generation.repetitionPenalty': 'generation.repetition_penalty' };
  const details = validate(InferenceRequest, candidate, { rename: snake });
  if (details.length > 0) throw invalidRequest('Invalid request', details);
  return { modelId: candidate.modelId, prompt: candidate.prompt, adapter: req.adapter ?? '', params: restSampling(generation) };
}

/**
 * gRPC AIService (contract §10) over the engine: the same `complete()` the HTTP routes call, the
 * same chunking as the REST SSE stream. Auth: `x-internal-token` (auth.internalToken) or
 * `x-api-key` under the /api/v1 key rule.
 */
export function createAiService({ engine, auth }: AiServiceOptions): UntypedServiceImplementation {
  const authorize = (metadata: Metadata) => authorizeCall(auth, metadata);

  /** Auth and message checks fail before the engine counts the request, so they are counted here. */
  const refused = (route: 'grpc_stream_predict' | 'grpc_predict', err: unknown) => {
    engine.recordRejected(route);
    return toGrpcError(err);
  };

  /** Auth, message checks and priority: everything the engine needs before it sees the request. */
  const admit = (route: EngineRoute, call: { metadata: Metadata; request: PredictRequestMessage; on(event: 'cancelled', fn: () => void): unknown }) => {
    authorize(call.metadata);
    const request: GenerationRequest = { kind: 'completion', input: toInput(call.request) };
    const opts: GenerateOptions = {
      route,
      priority: priorityOf(call.request.priority),
      requestId: newId('grpc', 8),
      signal: clientGoneSignal((gone) => call.on('cancelled', gone)),
    };
    return { request, opts, traceId: call.request.metadata?.trace_id || newTraceId() };
  };

  return {
    StreamPredict(call: ServerWritableStream<PredictRequestMessage, unknown>) {
      void (async () => {
        let admitted: ReturnType<typeof admit>;
        try {
          admitted = admit('grpc_stream_predict', call);
        } catch (err) {
          call.emit('error', refused('grpc_stream_predict', err));
          return;
        }
        const { request, opts, traceId } = admitted;
        let headersSent = false;
        const sendHeaders = (position: number, etaMs: number) => {
          if (headersSent) return;
          headersSent = true;
          const md = new Metadata();
          md.set('x-queue-position', String(position));
          md.set('x-queue-eta-ms', String(etaMs));
          call.sendMetadata(md);
        };
        let index = 0;
        const chunker = new TokenChunker(engine.chunkSize(), (text) => {
          call.write({ trace_id: traceId, chunk: text, end_of_stream: false, index: index++ });
        });
        const encode = (event: GenerationEvent) => {
          switch (event.type) {
            case 'queued':
              sendHeaders(event.position.position, event.position.etaMs);
              call.write({ trace_id: traceId, chunk: '', end_of_stream: false, index, queue_position: event.position.position, queue_eta_ms: event.position.etaMs });
              break;
            case 'started':
              sendHeaders(0, 0);
              break;
            case 'text':
              chunker.push(event.text, event.tokens);
              break;
            case 'done': {
              const rest = chunker.take();
              if (rest !== '') call.write({ trace_id: traceId, chunk: rest, end_of_stream: false, index: index++ });
              call.write({ trace_id: traceId, chunk: '', end_of_stream: true, index, finish_reason: event.result.finishReason });
              call.end();
              break;
            }
            case 'error':
              if (!call.cancelled) call.emit('error', toGrpcError(event.error));
              break;
          }
        };
        try {
          for await (const event of engine.generate(request, opts)) encode(event);
        } catch (err) {
          // A write that failed (the call went away meanwhile) ends the stream like an engine error.
          if (!call.cancelled) call.emit('error', toGrpcError(err));
        }
      })();
    },

    Predict(call: ServerUnaryCall<PredictRequestMessage, unknown>, callback: sendUnaryData<unknown>) {
      void (async () => {
        let admitted: ReturnType<typeof admit>;
        try {
          admitted = admit('grpc_predict', call);
        } catch (err) {
          callback(refused('grpc_predict', err));
          return;
        }
        const { request, opts, traceId } = admitted;
        let r: GenerationResult;
        try {
          r = await collect(engine.generate(request, opts));
        } catch (err) {
          callback(toGrpcError(err));
          return;
        }
        callback(null, {
          id: generationId(),
          model_id: r.modelId,
          text: r.text,
          finish_reason: r.finishReason,
          usage: { prompt_tokens: r.promptTokens, completion_tokens: r.completionTokens, total_tokens: r.promptTokens + r.completionTokens },
          trace_id: traceId,
        });
      })();
    },

    ListModels(call: ServerUnaryCall<unknown, unknown>, callback: sendUnaryData<unknown>) {
      void (async () => {
        try {
          authorize(call.metadata);
          const models = await engine.listModels();
          callback(null, { models: models.map((m) => ({ id: m.id, status: m.status, max_model_len: m.maxModelLen ?? 0, error: m.error ?? '' })) });
        } catch (err) {
          callback(toGrpcError(err));
        }
      })();
    },
  };
}
