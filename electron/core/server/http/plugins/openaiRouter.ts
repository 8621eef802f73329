import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import { AppError, ErrorCode } from '../../../base/errors.js';
import type { Auth } from '../../auth.js';

/** One model entry of `GET /v1/models` (OpenAI shape). */
export interface OpenAiModel {
  id: string;
  object: 'model';
  created: number;
  owned_by: string;
  [extra: string]: unknown;
}

/**
 * The handlers behind the OpenAI-compatible routes. The engine provides the local ones; the limiter
 * provides the remote ones (model ids of configured providers, e.g. `nvidia/...`). Handlers receive
 * the parsed JSON body (already checked to be an object) and own the reply (JSON or SSE).
 */
export interface OpenAiHandlers {
  chatCompletions(request: FastifyRequest, reply: FastifyReply, body: Record<string, unknown>): Promise<unknown>;
  completions(request: FastifyRequest, reply: FastifyReply, body: Record<string, unknown>): Promise<unknown>;
  embeddings(request: FastifyRequest, reply: FastifyReply, body: Record<string, unknown>): Promise<unknown>;
  listModels(request: FastifyRequest): Promise<OpenAiModel[]>;
  getModel(request: FastifyRequest, id: string): Promise<OpenAiModel | undefined>;
}

/** Remote handlers also say which model ids are theirs. */
export interface RemoteOpenAiHandlers extends OpenAiHandlers {
  handles(modelId: string): boolean;
  /** Called for every `/v1/*` request routed locally (the limiter counts them as `passthrough`, §6.7). */
  onLocalRequest?(): void;
}

export interface OpenAiRouterOptions extends Record<string, unknown> {
  auth: Auth;
  /** Local models (engine); absent when the engine is not built. */
  local?: OpenAiHandlers;
  /** Remote providers (limiter); absent when the limiter is not built. */
  remote?: RemoteOpenAiHandlers;
}

type Kind = 'chatCompletions' | 'completions' | 'embeddings';

/**
 * `/v1/*` (contract §3.4, §6.1): one OpenAI-compatible surface for local and remote models.
 * A model id that a remote provider handles goes through the limiter; any other id is local.
 */
export const openaiRouterPlugin: FastifyPluginAsync<OpenAiRouterOptions> = async (app, { auth, local, remote }) => {
  const pick = (modelId: unknown): OpenAiHandlers => {
    if (typeof modelId === 'string' && remote?.handles(modelId)) return remote;
    if (local) {
      remote?.onLocalRequest?.();
      return local;
    }
    if (remote && typeof modelId === 'string') {
      throw new AppError(ErrorCode.MODEL_NOT_FOUND, `Model '${modelId}' is not served: the local engine is not available and no remote provider handles it`);
    }
    throw new AppError(ErrorCode.UNAVAILABLE, 'No model backend is available');
  };

  const route = (path: string, kind: Kind) =>
    app.post(path, { preHandler: auth.openai, bodyLimit: 32 * 1024 * 1024 }, async (request, reply) => {
      const body = request.body;
      if (typeof body !== 'object' || body === null || Array.isArray(body)) {
        throw new AppError(ErrorCode.INVALID_REQUEST, 'Request body must be a JSON object', {
          details: [{ type: 'invalid_type', field: 'body', description: 'expected a JSON object' }],
        });
      }
      const parsed = body as Record<string, unknown>;
      return pick(parsed.model)[kind](request, reply, parsed);
    });

  route('/v1/chat/completions', 'chatCompletions');
  route('/v1/completions', 'completions');
  route('/v1/embeddings', 'embeddings');

  app.get('/v1/models', { preHandler: auth.openai }, async (request) => {
    const lists = await Promise.all([local?.listModels(request) ?? [], remote?.listModels(request).catch(() => []) ?? []]);
    return { object: 'list', data: lists.flat() };
  });

  app.get<{ Params: { '*': string } }>('/v1/models/*', { preHandler: auth.openai }, async (request) => {
    const id = decodeURIComponent(request.params['*']);
    const owner = remote?.handles(id) ? remote : local;
    const model = owner ? await owner.getModel(request, id) : undefined;
    if (!model) throw new AppError(ErrorCode.MODEL_NOT_FOUND, `The model '${id}' does not exist`);
    return model;
  });
};
