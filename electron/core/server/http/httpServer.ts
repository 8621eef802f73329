import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import cors from '@fastify/cors';
import multipart from '@fastify/multipart';
import websocket from '@fastify/websocket';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import Fastify, {
  type FastifyInstance,
  type FastifyPluginAsync,
  type FastifyServerOptions,
  type onRequestHookHandler,
  type onResponseHookHandler,
} from 'fastify';
import FindMyWay from 'find-my-way';
import type { Logger } from 'pino';
import type { ConfigStore } from '../../base/config.js';
import { AppError, ErrorCode } from '../../base/errors.js';
import type { MetricsRegistry } from '../../base/metrics.js';
import { isAllowedHost, isAllowedOrigin } from './hostOrigin.js';
import { logServerError, schemaValidator, sendError, toAppError } from './errorEnvelope.js';

declare module 'fastify' {
  interface FastifyRequest {
    /** The JSON body as received (the text the parsed `body` came from); null for other bodies. */
    rawJson: string | null;
  }
  interface FastifyContextConfig {
    /** Envelope for this route's errors, when the URL's family is not right. */
    errorFamily?: import('./errorEnvelope.js').ErrorFamily;
    /** This route accepts multipart/form-data uploads. */
    multipart?: boolean;
    /** Skip the HTTP metrics for this route (e.g. /metrics itself). */
    skipMetrics?: boolean;
    /**
     * An endless watch stream (SSE of snapshots, logs, progress): no work of its own, so a drain
     * ends it at once instead of waiting for it (clients reconnect elsewhere or later).
     */
    watch?: boolean;
  }
}

export interface HttpServerOptions {
  config: ConfigStore;
  logger: Logger;
  metrics: MetricsRegistry;
  /** Where to listen; default the config's `server.host` and `server.httpPort` (the main port). */
  listenOn?: () => { host: string; port: number };
}

/** `<8 random hex>-<counter in base 36>`: unique within a run, distinct across restarts. */
function requestIdGenerator(): () => string {
  const prefix = randomUUID().slice(0, 8);
  let counter = 0;
  return () => `${prefix}-${(++counter).toString(36)}`;
}

function toArray<T>(value: T | T[] | undefined): T[] {
  return value === undefined ? [] : Array.isArray(value) ? value : [value];
}

/** One registered route as the route table keeps it (method, URL pattern, schema). */
export interface HttpRouteInfo {
  method: string;
  url: string;
  schema?: { body?: unknown; querystring?: unknown; params?: unknown; headers?: unknown };
  /** `config.multipart`, `config.errorFamily` etc. of the route. */
  config?: Record<string, unknown>;
  /** A websocket route. */
  websocket: boolean;
}

/** Deepest JSON nesting a body may have: far above any real request, far below a stack overflow. */
export const MAX_JSON_DEPTH = 128;

/** True when a JSON text nests arrays/objects deeper than `max` (a linear scan, strings skipped). */
export function jsonTooDeep(text: string, max: number): boolean {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text.charCodeAt(i);
    if (inString) {
      if (ch === 92 /* \\ */) i++;
      else if (ch === 34 /* " */) inString = false;
    } else if (ch === 34) inString = true;
    else if (ch === 123 /* { */ || ch === 91 /* [ */) {
      if (++depth > max) return true;
    } else if (ch === 125 /* } */ || ch === 93 /* ] */) depth--;
  }
  return false;
}

type Methods = 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE' | 'HEAD' | 'OPTIONS';
const ALL_METHODS: Methods[] = ['GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'HEAD', 'OPTIONS'];

/**
 * The HTTP adapter: Fastify with the console's edge rules (Host/Origin checks, JSON-only bodies,
 * body limit, request ids, one error envelope per route family, 404/405, metrics). Service
 * plugins are registered before `listen()`.
 */
export class HttpServer {
  readonly app: FastifyInstance;
  private readonly routeTable = FindMyWay({ ignoreTrailingSlash: true });
  private readonly routeList: HttpRouteInfo[] = [];
  private listening = false;
  /** Set by close(): requests in flight answer with `Connection: close`; `cut` ends them all. */
  private closingMode: 'drain' | 'abort' | null = null;
  /** Open watch streams (`config.watch`), ended when a drain begins. */
  private readonly watchers = new Set<IncomingMessage>();

  constructor(private readonly options: HttpServerOptions) {
    const cfg = options.config.get().server;
    const fastifyOptions: FastifyServerOptions = {
      bodyLimit: cfg.bodyLimitBytes,
      // close() decides: an abort cuts every connection, a drain lets requests in flight finish
      // (until its deadline) and only idle keep-alive sockets are closed at once.
      forceCloseConnections: false,
      return503OnClosing: true,
      logger: false,
      requestIdHeader: 'x-request-id',
      // Unique per process and cheap (a UUID per request costs ~10 % of /health throughput);
      // a client's own X-Request-Id is kept as is.
      genReqId: requestIdGenerator(),
      routerOptions: { ignoreTrailingSlash: true, maxParamLength: 500 },
      // Errors Fastify raises before routing (a URL that does not decode, e.g. `%ff` or `%c0%ae`) get
      // the route family's envelope like any other 400 instead of Fastify's own shape.
      frameworkErrors: (error, request, reply) => {
        void sendError(request, reply, new AppError(ErrorCode.INVALID_REQUEST, `Invalid URL: ${error.message}`));
      },
    };
    this.app = Fastify(fastifyOptions).withTypeProvider<TypeBoxTypeProvider>() as unknown as FastifyInstance;
    // Fastify's own per-request logger is off (it costs /health throughput); errors reach the
    // console's log through this decoration (see logServerError).
    this.app.decorate('consoleLog', options.logger);
    this.installEdgeRules();
  }

  private installEdgeRules(): void {
    const app = this.app;
    const { config, metrics } = this.options;

    // Closing: an abort cuts every connection just before the listener closes (what Fastify's
    // forceCloseConnections did); during a drain a request in flight answers with
    // `Connection: close`, so its keep-alive socket does not hold the close up once it is done.
    app.addHook('preClose', (done) => {
      if (this.closingMode === 'abort') this.app.server.closeAllConnections();
      // Watch streams hold no work: a drain does not wait for them.
      for (const raw of this.watchers) raw.socket.destroy();
      this.watchers.clear();
      done();
    });
    app.addHook('onSend', (_request, reply, payload, done) => {
      if (this.closingMode !== null) reply.header('connection', 'close');
      done(null, payload);
    });

    // Every route's schema goes through the one validate() (errors list every bad field).
    app.setValidatorCompiler(schemaValidator);

    // Only JSON (and multipart on routes that opt in): browser form posts that skip CORS
    // preflight (text/plain, urlencoded) get 415.
    app.removeContentTypeParser(['text/plain']);
    // Fastify's own JSON parser (proto-poisoning checks and its error codes kept), behind a nesting
    // limit: a body like [[[[…]]]] 20 000 deep parses fine but overflows the stack of whatever
    // walks it next (validation, config merge, structuredClone) and answered 500.
    const defaultJson = app.getDefaultJsonParser('error', 'error');
    app.removeContentTypeParser('application/json');
    // The text is kept (`request.rawJson`) so a proxy can relay it without serialising it again.
    app.decorateRequest('rawJson', null);
    app.addContentTypeParser('application/json', { parseAs: 'string' }, (request, body, done) => {
      if (typeof body === 'string' && jsonTooDeep(body, MAX_JSON_DEPTH)) {
        done(new AppError(ErrorCode.INVALID_REQUEST, `JSON body nests deeper than ${MAX_JSON_DEPTH} levels`), undefined);
        return;
      }
      const text = typeof body === 'string' ? body : body.toString('utf8');
      request.rawJson = text;
      defaultJson(request, text, done);
    });

    // Per-route rules are compiled into route-level hooks once, at registration, so the hot path
    // never rebuilds `request.routeOptions` (a fresh object on every access in Fastify 5).
    app.addHook('onRoute', (route) => {
      const methods = Array.isArray(route.method) ? route.method : [route.method];
      for (const method of methods) {
        if (!ALL_METHODS.includes(method as Methods)) continue;
        try {
          this.routeTable.on(method as Methods, route.url, () => undefined);
        } catch {
          // duplicate shapes (e.g. HEAD auto-routes) are fine
        }
        this.routeList.push({
          method,
          url: route.url,
          schema: route.schema as HttpRouteInfo['schema'],
          config: route.config as Record<string, unknown> | undefined,
          websocket: (route as { websocket?: boolean }).websocket === true,
        });
      }
      const extraOnRequest: onRequestHookHandler[] = [];
      if (route.config?.multipart !== true) {
        extraOnRequest.push((request, _reply, done) => {
          const type = request.headers['content-type'];
          if (type !== undefined && /^multipart\//i.test(type)) {
            done(new AppError(ErrorCode.UNSUPPORTED_MEDIA_TYPE, 'Unsupported content type: send application/json'));
            return;
          }
          done();
        });
      }
      if (route.config?.watch === true) {
        extraOnRequest.push((request, _reply, done) => {
          const raw = request.raw;
          this.watchers.add(raw);
          raw.socket.once('close', () => this.watchers.delete(raw));
          done();
        });
      }
      route.onRequest = [...toArray(route.onRequest), ...extraOnRequest];
      if (route.config?.skipMetrics !== true) {
        const routeLabel = route.url;
        const onResponse: onResponseHookHandler = (request, reply, done) => {
          metrics.httpRequests.inc({ method: request.method, route: routeLabel, status: reply.statusCode });
          metrics.httpDuration.observe({ method: request.method, route: routeLabel }, reply.elapsedTime / 1000);
          done();
        };
        route.onResponse = [...toArray(route.onResponse), onResponse];
      }
    });

    app.addHook('onRequest', (request, reply, done) => {
      reply.header('x-request-id', request.id);
      const server = config.get().server;
      if (!isAllowedHost(request.headers.host, server.allowedHosts, server.host)) {
        done(new AppError(ErrorCode.FORBIDDEN, `Host header not allowed: ${request.headers.host ?? '(none)'} (add it to server.allowedHosts)`, { status: 403 }));
        return;
      }
      const origin = request.headers.origin;
      if (origin === 'null') {
        done(new AppError(ErrorCode.FORBIDDEN, 'Opaque origin not allowed'));
        return;
      }
      if (typeof origin === 'string' && !isAllowedOrigin(origin, server.allowedOrigins)) {
        done(new AppError(ErrorCode.FORBIDDEN, `Origin not allowed: ${origin} (add it to server.allowedOrigins)`));
        return;
      }
      done();
    });

    // 404s and 405s never match a route, so they are counted here.
    app.addHook('onResponse', (request, reply, done) => {
      if (request.is404) metrics.httpRequests.inc({ method: request.method, route: 'unmatched', status: reply.statusCode });
      done();
    });

    app.setErrorHandler((error, request, reply) => {
      const err = toAppError(error);
      logServerError(request, err, error);
      return sendError(request, reply, err);
    });

    app.setNotFoundHandler((request, reply) => {
      const path = request.url.split('?')[0] ?? request.url;
      const allow = ALL_METHODS.filter((m) => m !== request.method && m !== 'HEAD' && m !== 'OPTIONS' && this.routeTable.find(m as Methods, path));
      if (allow.length > 0 && request.method !== 'OPTIONS') {
        return sendError(request, reply, new AppError(ErrorCode.METHOD_NOT_ALLOWED, `Method ${request.method} not allowed on ${path}; use ${allow.join(', ')}`, { headers: { allow: allow.join(', ') } }));
      }
      return sendError(request, reply, new AppError(ErrorCode.NOT_FOUND, `No route: ${request.method} ${path}`));
    });
  }

  /** Every registered route (tests drive fuzzing from this; nothing on the hot path reads it). */
  routes(): readonly HttpRouteInfo[] {
    return this.routeList;
  }

  /** Registers the shared plugins (CORS, multipart, websocket). Call once before service plugins. */
  async init(): Promise<void> {
    const { config } = this.options;
    await this.app.register(cors, {
      origin: (origin, cb) => cb(null, origin === undefined ? false : isAllowedOrigin(origin, config.get().server.allowedOrigins)),
      credentials: false,
      methods: ['GET', 'POST', 'PUT', 'PATCH', 'DELETE'],
      allowedHeaders: ['content-type', 'authorization', 'x-api-key', 'x-priority', 'x-request-id'],
      exposedHeaders: ['x-request-id', 'retry-after', 'x-queue-position', 'x-queue-eta-ms'],
    });
    await this.app.register(multipart, { limits: { fileSize: 16 * 1024 * 1024, files: 1 } });
    await this.app.register(websocket, { options: { maxPayload: 1024 * 1024 } });
  }

  /** Registers one service's routes (an encapsulated Fastify plugin). */
  async register<O extends Record<string, unknown>>(plugin: FastifyPluginAsync<O>, options: O): Promise<void> {
    await this.app.register(plugin, options);
  }

  async listen(): Promise<{ host: string; port: number }> {
    const server = this.options.config.get().server;
    const { host, port } = this.options.listenOn?.() ?? { host: server.host, port: server.httpPort };
    await this.app.listen({ host, port });
    this.listening = true;
    const addr = this.app.server.address() as AddressInfo;
    return { host, port: addr.port };
  }

  /**
   * Stops listening. Without a deadline it aborts: every connection is cut, requests in flight
   * included. With one it drains: no new connection is accepted, a request on a kept-alive socket
   * gets 503, requests in flight finish, and when `deadline` fires what is left is cut.
   */
  async close(options: { deadline?: AbortSignal } = {}): Promise<void> {
    if (!this.listening) {
      await this.app.close();
      return;
    }
    this.listening = false;
    const { deadline } = options;
    this.closingMode = deadline ? 'drain' : 'abort';
    const cut = () => {
      this.closingMode = 'abort';
      this.app.server.closeAllConnections();
    };
    deadline?.addEventListener('abort', cut, { once: true });
    try {
      const closed = this.app.close();
      if (deadline?.aborted) cut();
      await closed;
    } finally {
      deadline?.removeEventListener('abort', cut);
    }
  }
}
