import type { FastifyPluginAsync } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Value } from '@sinclair/typebox/value';
import type { ConsoleLogRecord, ConsoleSnapshot, LogFilter, StreamServerMessage } from '../../../../../shared/contracts/console.js';
import { LogsQuery, SessionExchange, StreamClientMessage, StreamQuery } from '../../../../../shared/contracts/consoleSchemas.js';
import { AppError, ErrorCode } from '../../../base/errors.js';
import type { LogRecord, LoggerRegistry } from '../../../base/logger.js';
import type { LoginLink } from '../../../base/loginLink.js';
import type { SnapshotStream } from '../../../base/snapshots.js';
import type { Auth } from '../../auth.js';

export interface ConsoleStreamPluginOptions extends Record<string, unknown> {
  stream: SnapshotStream;
  logs: LoggerRegistry;
  auth: Auth;
  loginLink: LoginLink;
  adminToken: string;
}

const asMessage = (data: ConsoleSnapshot): StreamServerMessage => ({ type: 'snapshot', data });

/** Most log records one viewer gets per tick; older ones in a burst are dropped (the count is sent). */
const MAX_LOGS_PER_TICK = 500;
const BACKLOG = 200;

function matches(record: LogRecord, filter: LogFilter, minLevel: number): boolean {
  return (!filter.module || record.module === filter.module) && levelRank(record.level) >= minLevel;
}
const RANKS: Record<string, number> = { trace: 10, debug: 20, info: 30, warn: 40, error: 50, fatal: 60 };
function levelRank(level: string): number {
  return RANKS[level] ?? 0;
}

/**
 * One viewer's log subscription: matching records are buffered and flushed with each snapshot
 * tick, so a log burst costs one message per second per viewer.
 */
class LogTap {
  private pending: ConsoleLogRecord[] = [];
  private dropped = 0;
  private off: (() => void) | null = null;

  constructor(private readonly logs: LoggerRegistry) {}

  /** Starts (or re-filters) the subscription; returns the backlog to send now. */
  subscribe(filter: LogFilter): ConsoleLogRecord[] {
    this.unsubscribe();
    const min = filter.level ? levelRank(filter.level) : 0;
    this.off = this.logs.onRecord((r) => {
      if (!matches(r, filter, min)) return;
      this.pending.push(r);
      if (this.pending.length > MAX_LOGS_PER_TICK) {
        this.pending.shift();
        this.dropped += 1;
      }
    });
    return this.logs.recent({ module: filter.module, minLevel: filter.level, limit: BACKLOG });
  }

  unsubscribe(): void {
    this.off?.();
    this.off = null;
    this.pending = [];
  }

  /** Records since the last flush (with a marker record when some were dropped). */
  drain(): ConsoleLogRecord[] {
    if (this.pending.length === 0) return [];
    const out = this.pending;
    this.pending = [];
    if (this.dropped > 0) {
      out.unshift({ time: out[0]?.time ?? Date.now(), level: 'warn', module: 'dashboard', msg: `${this.dropped} log records skipped (burst)` });
      this.dropped = 0;
    }
    return out;
  }
}

/**
 * The console-wide live stream for the dashboard: WebSocket `/api/console/stream` (+ SSE fallback
 * `/api/console/stream/sse`) sending one shared snapshot per second; log records for viewers with
 * the admin token; `GET /api/console/logs`; and the one-time login exchange.
 */
export const consoleStreamPlugin: FastifyPluginAsync<ConsoleStreamPluginOptions> = async (fastify, { stream, logs, auth, loginLink, adminToken }) => {
  const app = fastify.withTypeProvider<TypeBoxTypeProvider>();
  const isAdminToken = (token: string | undefined) => {
    if (!token) return false;
    try {
      auth.checkAdmin(token);
      return true;
    } catch {
      return false;
    }
  };
  // Snapshots follow the API-key rule (open on loopback when no keys are configured); browsers
  // cannot set headers on WebSocket/EventSource, so the token may come in the query.
  const streamAuth = async (request: { query: unknown; headers: Record<string, unknown> }) => {
    const q = request.query as StreamQuery;
    const header = request.headers.authorization;
    const bearer = typeof header === 'string' ? /^Bearer\s+(.+)$/i.exec(header)?.[1] : undefined;
    auth.checkApiKey(q.token ?? bearer);
  };

  app.get('/api/console/stream', { websocket: true, schema: { querystring: StreamQuery }, preHandler: streamAuth }, (socket, request) => {
    const admin = isAdminToken(request.query.token);
    const tap = new LogTap(logs);
    const send = (msg: StreamServerMessage) => {
      if (socket.readyState === socket.OPEN) socket.send(JSON.stringify(msg));
    };
    send({ type: 'hello', version: '1', logs: admin });
    const unsubscribe = stream.subscribe((snapshot) => {
      if (socket.readyState === socket.OPEN) socket.send(stream.serialize(snapshot, admin, asMessage));
      const records = tap.drain();
      if (records.length > 0) send({ type: 'logs', records });
    });
    socket.on('message', (raw: Buffer) => {
      let msg: unknown;
      try {
        msg = JSON.parse(raw.toString('utf8'));
      } catch {
        send({ type: 'error', message: 'messages must be JSON' });
        return;
      }
      if (!Value.Check(StreamClientMessage, msg)) {
        send({ type: 'error', message: 'unknown message; send {"type":"logs","filter":{"module"?,"level"?}} or {"type":"logs-off"}' });
        return;
      }
      if (msg.type === 'logs-off') {
        tap.unsubscribe();
        return;
      }
      if (!admin) {
        send({ type: 'error', message: 'log records need the admin token (connect with ?token=<admin token>)' });
        return;
      }
      send({ type: 'logs', records: tap.subscribe(msg.filter), backlog: true });
    });
    socket.on('close', () => {
      unsubscribe();
      tap.unsubscribe();
    });
  });

  app.get('/api/console/stream/sse', { schema: { querystring: StreamQuery }, preHandler: streamAuth, config: { watch: true } }, (request, reply) => {
    const q = request.query;
    const sseAdmin = isAdminToken(q.token);
    if (q.logs && !sseAdmin) throw new AppError(ErrorCode.UNAUTHENTICATED, 'log records need the admin token (?token=<admin token>)');
    reply.hijack();
    const res = reply.raw;
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache',
      'x-accel-buffering': 'no',
      'x-request-id': request.id,
      ...(typeof request.headers.origin === 'string' ? { 'access-control-allow-origin': request.headers.origin, vary: 'Origin' } : {}),
    });
    res.write('retry: 3000\n\n');
    const write = (msg: StreamServerMessage) => res.write(`data: ${JSON.stringify(msg)}\n\n`);
    write({ type: 'hello', version: '1', logs: !!q.logs });
    const tap = new LogTap(logs);
    if (q.logs) write({ type: 'logs', records: tap.subscribe({ module: q.module, level: q.level }), backlog: true });
    const unsubscribe = stream.subscribe((snapshot) => {
      res.write(`data: ${stream.serialize(snapshot, sseAdmin, asMessage)}\n\n`);
      const records = tap.drain();
      if (records.length > 0) write({ type: 'logs', records });
    });
    const done = () => {
      unsubscribe();
      tap.unsubscribe();
    };
    res.on('close', done);
    res.on('error', done);
  });

  app.get('/api/console/logs', { preHandler: auth.admin, schema: { querystring: LogsQuery } }, async (request) => ({
    records: logs.recent({ module: request.query.module, minLevel: request.query.level, limit: request.query.limit ?? 200 }),
  }));

  app.get('/api/console/session', { preHandler: auth.admin }, async () => ({ admin: true }));

  app.post('/api/console/session', { schema: { body: SessionExchange } }, async (request) => {
    if (!loginLink.consume(request.body.code)) {
      throw new AppError(ErrorCode.FORBIDDEN, 'This login link was already used or is not valid; paste the admin token instead (DATA_DIR/admin-token)');
    }
    return { token: adminToken };
  });
};
