import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import type { FastifyPluginAsync, FastifyReply, FastifyRequest } from 'fastify';
import { Value } from '@sinclair/typebox/value';
import type { WebSocket } from 'ws';
import type { ConsoleSnapshot } from '../../../../../shared/contracts/console.js';
import { LimiterConfigPatch, LimiterResetRequest } from '../../../../../shared/contracts/limiter.js';
import { parsePriority } from '../../../../../shared/contracts/priority.js';
import { pointerToPath, validate } from '../../../../../shared/contracts/validate.js';
import { packageRoot } from '../../../base/packageInfo.js';
import type { SnapshotStream } from '../../../base/snapshots.js';
import { AppError, ErrorCode } from '../../../base/errors.js';
import type { LimiterEvent, LimiterService } from '../../../services/limiter/limiterService.js';
import type { Auth } from '../../auth.js';
import { httpClientGone } from '../../clientGone.js';
import type { OpenAiModel, RemoteOpenAiHandlers } from './openaiRouter.js';

/**
 * The model id sent upstream: the alias prefix is removed when what remains still names an org
 * (`nvidia/meta/llama-3.1-8b-instruct` → `meta/llama-3.1-8b-instruct`); otherwise the id is sent
 * whole (`nvidia/nemotron-4-340b-instruct` is itself an NVIDIA id).
 */
export function upstreamModelId(modelId: string): string {
  const slash = modelId.indexOf('/');
  const rest = modelId.slice(slash + 1);
  return rest.includes('/') ? rest : modelId;
}

/** `"model"` as a JSON key, and any `\u00XX` escape of an ASCII character (which could spell a key). */
const MODEL_KEY = /"model"\s*:\s*/g;
const ASCII_ESCAPE = /\\u00[0-7]/i;

/**
 * The body to send upstream: the client's own JSON text, with only the model id replaced where it
 * changes, so the body is not serialised again (issue 16). The text is spliced only when that is
 * certainly the top-level `model`: the key appears once in the whole text, no escape could spell
 * it elsewhere, and its value is exactly the id routed on; anything else is serialised from the
 * parsed body as before.
 */
export function upstreamBody(raw: string | null, body: Record<string, unknown>, modelId: string, upstreamId: string): string {
  if (raw !== null && upstreamId === modelId) return raw;
  if (raw !== null && !ASCII_ESCAPE.test(raw)) {
    MODEL_KEY.lastIndex = 0;
    const first = MODEL_KEY.exec(raw);
    if (first && MODEL_KEY.exec(raw) === null) {
      const at = first.index + first[0].length;
      const quoted = JSON.stringify(modelId);
      if (raw.startsWith(quoted, at)) return `${raw.slice(0, at)}${JSON.stringify(upstreamId)}${raw.slice(at + quoted.length)}`;
    }
  }
  return JSON.stringify({ ...body, model: upstreamId });
}

type Path = '/chat/completions' | '/completions' | '/embeddings';

const EVENT_STREAM = /event-stream/i;

/**
 * The limiter's side of `/v1` (contract §3.4, §6): model ids with a configured provider prefix go
 * through the provider's queue and bucket; provider-looking ids with an unknown prefix get a 404
 * naming the configured providers. Streaming bodies are relayed chunk by chunk; a client that goes
 * away cancels the queued or upstream request.
 */
export function createLimiterOpenAiHandlers(limiter: LimiterService): RemoteOpenAiHandlers {
  const forward = async (request: FastifyRequest, reply: FastifyReply, body: Record<string, unknown>, path: Path): Promise<unknown> => {
    const modelId = String(body.model);
    const route = limiter.route(modelId);
    if (route.kind === 'unknown-provider') throw limiter.unknownProviderError(route.prefix, modelId);
    if (route.kind !== 'provider') throw new AppError(ErrorCode.MODEL_NOT_FOUND, `Model '${modelId}' is not a remote model`);
    const { priority, invalid } = parsePriority(request.headers['x-priority']);
    const res = await limiter.proxy({
      provider: route.provider,
      method: 'POST',
      path,
      headers: request.headers,
      body: upstreamBody(typeof body.model === 'string' ? request.rawJson : null, body, modelId, upstreamModelId(modelId)),
      priority,
      priorityInvalid: invalid,
      signal: httpClientGone(request.raw.socket),
      requestId: request.id,
      modelId,
    });
    const streaming = EVENT_STREAM.test(res.headers['content-type'] ?? '');
    const headers: Record<string, string> = { ...res.headers, 'x-request-id': request.id };
    reply.code(res.status);
    if (streaming) {
      delete headers['content-length'];
      headers['x-accel-buffering'] = 'no';
      reply.headers(headers);
      return reply.send(res.body); // relayed chunk by chunk as the upstream sends them
    }
    reply.headers(headers);
    // A plain JSON answer of known small size goes out in one write (headers and body together).
    const length = Number(res.headers['content-length']);
    if (Number.isFinite(length) && length <= 1024 * 1024) {
      // Headers are not sent yet: a failure mid-body is still a clean 502/504 (contract §6.9).
      const buffered = await limiter.readBody(route.provider, res);
      return reply.send(buffered);
    }
    return reply.send(res.body);
  };

  const toModel = (provider: string, m: Record<string, unknown>): OpenAiModel => ({
    ...m,
    id: `${provider}/${String(m.id)}`,
    object: 'model',
    created: typeof m.created === 'number' ? m.created : 0,
    owned_by: typeof m.owned_by === 'string' ? m.owned_by : provider,
  });

  return {
    handles: (modelId) => limiter.route(modelId).kind !== 'local',
    onLocalRequest: () => limiter.countLocalRequest(),
    chatCompletions: (req, reply, body) => forward(req, reply, body, '/chat/completions'),
    completions: (req, reply, body) => forward(req, reply, body, '/completions'),
    embeddings: (req, reply, body) => forward(req, reply, body, '/embeddings'),
    async listModels(request) {
      // Only `GET /v1/models?provider=<name>` asks an upstream (contract §3.4); a plain listing stays local.
      const wanted = (request.query as Record<string, unknown> | undefined)?.provider;
      if (typeof wanted !== 'string' || wanted === '') return [];
      const provider = limiter.providers().find((p) => p.name === wanted || p.aliases.includes(wanted.toLowerCase()));
      if (!provider) throw limiter.unknownProviderError(wanted, `${wanted}/...`);
      const ac = new AbortController();
      const list = (await limiter.listModels(provider.name, ac.signal, request.id)) as { data?: unknown };
      const data = Array.isArray(list.data) ? (list.data as Array<Record<string, unknown>>) : [];
      return data.filter((m) => typeof m === 'object' && m !== null && 'id' in m).map((m) => toModel(provider.name, m));
    },
    async getModel(request, id) {
      const route = limiter.route(id);
      if (route.kind === 'unknown-provider') throw limiter.unknownProviderError(route.prefix, id);
      if (route.kind !== 'provider') return undefined;
      const ac = new AbortController();
      const res = await limiter.proxy({
        provider: route.provider,
        method: 'GET',
        path: `/models/${upstreamModelId(id)}`,
        headers: { accept: 'application/json' },
        priority: 'normal',
        priorityInvalid: false,
        signal: ac.signal,
        requestId: request.id,
        modelId: id,
      });
      const buffered = await limiter.readBody(route.provider, res);
      if (res.status === 404) return undefined;
      if (res.status >= 400) throw new AppError(ErrorCode.UPSTREAM_ERROR, `Bad Gateway — 上游返回错误状态 ${res.status}`, { type: 'HTTPStatusError' });
      try {
        return toModel(route.provider, { ...(JSON.parse(buffered.toString('utf8')) as Record<string, unknown>), id: upstreamModelId(id) });
      } catch {
        throw new AppError(ErrorCode.UPSTREAM_ERROR, 'Bad Gateway — upstream model is not JSON', { type: 'HTTPStatusError' });
      }
    },
  };
}

/** A dashboard viewer: an SSE response stream or a WebSocket. */
interface Viewer {
  snapshot(json: string): void;
  event(json: string): void;
  close(): void;
}

/** The console's one snapshot stream, as the limiter's dashboard needs it. */
export type SnapshotFeed = Pick<SnapshotStream, 'subscribe'>;

/**
 * The limiter's dashboard stream (contract §6.7) as a view of the console's one snapshot stream
 * (base/snapshots.ts): no timer or snapshot of its own. Each tick's `services.limiter` is
 * serialised once for every viewer; transitions go out at once (one subscription to the
 * limiter's events while anyone watches).
 */
export class DashboardBroadcaster {
  private readonly viewers = new Map<Viewer, () => void>();
  private unsubscribe: (() => void) | null = null;
  private last: { seq: number; time: number; json: string } | null = null;

  constructor(
    private readonly source: { onEvent(l: (e: LimiterEvent) => void): () => void },
    private readonly stream: SnapshotFeed,
  ) {}

  get size(): number {
    return this.viewers.size;
  }

  add(viewer: Viewer): () => void {
    if (!this.unsubscribe) {
      this.unsubscribe = this.source.onEvent((e) => {
        const json = JSON.stringify(e.event);
        for (const v of this.viewers.keys()) v.event(json);
      });
    }
    this.viewers.set(viewer, this.stream.subscribe((snapshot) => viewer.snapshot(this.frame(snapshot))));
    return () => this.remove(viewer);
  }

  /** Closes every viewer (plugin close). */
  closeAll(): void {
    for (const v of [...this.viewers.keys()]) {
      v.close();
      this.remove(v);
    }
  }

  private remove(viewer: Viewer): void {
    const off = this.viewers.get(viewer);
    if (!off) return;
    this.viewers.delete(viewer);
    off();
    if (this.viewers.size === 0) {
      this.unsubscribe?.();
      this.unsubscribe = null;
    }
  }

  /** The limiter's part of a console snapshot, serialised once per snapshot. */
  private frame(snapshot: ConsoleSnapshot): string {
    if (this.last?.seq === snapshot.seq && this.last.time === snapshot.time) return this.last.json;
    const limiter = snapshot.services.limiter;
    const json = limiter === undefined || snapshot.errors?.limiter !== undefined ? JSON.stringify({ error: 'internal' }) : JSON.stringify(limiter);
    this.last = { seq: snapshot.seq, time: snapshot.time, json };
    return json;
  }
}

export interface LimiterPluginOptions extends Record<string, unknown> {
  limiter: LimiterService;
  auth: Auth;
  /** The console's snapshot stream (the limiter registers `limiter` in its registry). */
  stream: SnapshotFeed;
  /** `GET /api/dashboard`'s page; default `resources/limiter-dashboard.html`. */
  dashboardPagePath?: string;
}

/** 422 for type errors, 400 for values out of range (contract §6.8); every bad field listed. */
function patchError(body: unknown): AppError | null {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    return new AppError(ErrorCode.INVALID_REQUEST, 'Body must be a JSON object', { status: 422, details: [{ type: 'validation', field: 'body', description: 'expected an object' }] });
  }
  const details: Array<{ type: string; field: string; description: string }> = [];
  let typeError = false;
  for (const e of Value.Errors(LimiterConfigPatch, body)) {
    const field = pointerToPath(e.path);
    if (details.some((d) => d.field === field)) continue;
    const expected = (e.schema as { type?: string }).type;
    const v = e.value;
    const wrongType = v === undefined || (expected !== undefined && !(expected === 'integer' ? typeof v === 'number' && Number.isInteger(v) : typeof v === expected));
    typeError ||= wrongType;
    const gtZero = !wrongType && (e.schema as { exclusiveMinimum?: number }).exclusiveMinimum === 0;
    details.push({ type: wrongType ? 'type' : 'value', field, description: gtZero ? 'must be > 0' : e.message });
  }
  if (details.length === 0) return null;
  // One out-of-range field: the contract's exact text (`rate_rpm must be > 0`); otherwise every field is listed.
  if (details.length === 1 && !typeError) return new AppError(ErrorCode.INVALID_REQUEST, `${details[0]!.field} ${details[0]!.description}`, { status: 400 });
  return new AppError(ErrorCode.INVALID_REQUEST, 'Invalid config; nothing was changed', { status: typeError ? 422 : 400, details });
}

/**
 * Limiter status, dashboard stream (SSE + WebSocket), admin config and reset (contract §6.7, §6.8).
 * Reads go through `auth.apiKey` (open on loopback without keys); writes need the admin token.
 */
export const limiterPlugin: FastifyPluginAsync<LimiterPluginOptions> = async (app, { limiter, auth, stream, dashboardPagePath }) => {
  const broadcaster = new DashboardBroadcaster(limiter, stream);
  // `GET /api/dashboard` (contract §6.7): a small live page for plain browsers; the desktop UI replaces it.
  const dashboardPage = readFileSync(dashboardPagePath ?? join(packageRoot(), 'resources', 'limiter-dashboard.html'), 'utf8');
  app.addHook('onClose', async () => broadcaster.closeAll());

  const status = async () => limiter.status();
  app.get('/api/limiter/status', { preHandler: auth.apiKey }, status);
  app.get('/status', { preHandler: auth.apiKey }, status);

  app.get('/api/dashboard', { preHandler: auth.apiKey }, async (_request, reply) => reply.header('cache-control', 'max-age=300').type('text/html; charset=utf-8').send(dashboardPage));

  app.get('/api/dashboard/stream', { preHandler: auth.apiKey, config: { watch: true } }, async (request, reply) => {
    const stream = new PassThrough();
    let first = true;
    const remove = broadcaster.add({
      snapshot: (json) => {
        stream.write(`${first ? 'retry: 3000\n' : ''}data: ${json}\n\n`);
        first = false;
      },
      event: (json) => stream.write(`event: transition\ndata: ${json}\n\n`),
      close: () => stream.end(),
    });
    request.raw.socket.setNoDelay(true);
    reply.raw.once('close', () => {
      remove();
      stream.destroy();
    });
    reply.header('content-type', 'text/event-stream; charset=utf-8').header('cache-control', 'no-cache').header('x-accel-buffering', 'no');
    return reply.send(stream);
  });

  // The same snapshots for the GUI: {"type":"snapshot","data":{...}} each second, {"type":"transition","data":{...}} at once.
  app.get('/api/dashboard/ws', { websocket: true, preHandler: auth.apiKey }, (socket: WebSocket) => {
    const send = (text: string) => {
      if (socket.readyState === socket.OPEN) socket.send(text);
    };
    const remove = broadcaster.add({
      snapshot: (json) => send(`{"type":"snapshot","data":${json}}`),
      event: (json) => send(`{"type":"transition","data":${json}}`),
      close: () => socket.close(1001, 'server closing'),
    });
    socket.on('close', remove);
    socket.on('error', remove);
  });

  app.get('/api/admin/config', { preHandler: auth.admin }, async () => limiter.adminConfig());

  app.post('/api/admin/config', { preHandler: auth.admin }, async (request) => {
    const body = request.body ?? {};
    const err = patchError(body);
    if (err) throw err;
    const changed = limiter.applyAdminPatch(body as LimiterConfigPatch);
    return { status: 'ok', changed };
  });

  app.post('/api/limiter/admin/reset', { preHandler: auth.admin }, async (request) => {
    const body = request.body ?? {};
    const details = validate(LimiterResetRequest, body);
    if (details.length > 0) throw new AppError(ErrorCode.INVALID_REQUEST, 'Body must be {} or {"provider": "<name>"}', { details });
    return { status: 'ok', retreat: await limiter.reset((body as LimiterResetRequest).provider) };
  });
};
