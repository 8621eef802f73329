import { Type, type Static } from '@sinclair/typebox';

/**
 * The console-wide live stream (`/api/console/stream`, WebSocket; `/api/console/stream/sse`, SSE):
 * one shared snapshot per second, plus log records for viewers that subscribed to them.
 */

/** Facts about the core process itself, computed once per tick. */
export interface CoreSnapshot {
  /** Seconds since the console started. */
  uptimeSeconds: number;
  /** HTTP requests per second over the last tick (from the request counter). */
  requestsPerSecond: number;
  /** Process CPU use over the last tick, percent of one core. */
  processCpuPercent: number;
  /** Resident set size of the core process, bytes. */
  rssBytes: number;
  /** V8 heap in use, bytes. */
  heapUsedBytes: number;
  /** Event-loop delay p99 over the last tick, milliseconds. */
  eventLoopLagMs: number;
  /** Whole-machine CPU use over the last tick, percent (0–100). */
  systemCpuPercent: number;
  systemMemUsedBytes: number;
  systemMemTotalBytes: number;
  /** Number of viewers connected to the stream. */
  viewers: number;
  version: string;
}

/**
 * One tick of the stream. `services` holds each registered provider's `snapshot()` by name
 * (`engine`, `limiter`, `monitoring`, `runtime`, `training`, `library`...); a provider that threw
 * appears under `errors` instead.
 */
export interface ConsoleSnapshot {
  /** Unix milliseconds when the snapshot was built. */
  time: number;
  /** Tick counter since the stream's timer started. */
  seq: number;
  core: CoreSnapshot;
  services: Record<string, unknown>;
  errors?: Record<string, string>;
}

/** One log record as the Logs page shows it (a pino line, level names lower-case pino names). */
export interface ConsoleLogRecord {
  time: number;
  level: string;
  module: string;
  msg: string;
  [key: string]: unknown;
}

/** Messages the server sends on the stream. */
export type StreamServerMessage =
  | { type: 'hello'; version: string; logs: boolean }
  | { type: 'snapshot'; data: ConsoleSnapshot }
  | { type: 'logs'; records: ConsoleLogRecord[] }
  | { type: 'error'; message: string };

export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal'] as const;
export type LogLevelName = (typeof LOG_LEVELS)[number];

/** Filter for log records: one module (exact) and a minimum level. */
export const LogFilter = Type.Object(
  {
    module: Type.Optional(Type.String({ minLength: 1, maxLength: 100 })),
    level: Type.Optional(Type.Union(LOG_LEVELS.map((l) => Type.Literal(l)))),
  },
  { additionalProperties: false },
);
export type LogFilter = Static<typeof LogFilter>;

/** Messages a viewer sends: subscribe to logs (admin only) with a filter, or unsubscribe. */
export const StreamClientMessage = Type.Union([
  Type.Object({ type: Type.Literal('logs'), filter: LogFilter }, { additionalProperties: false }),
  Type.Object({ type: Type.Literal('logs-off') }, { additionalProperties: false }),
]);
export type StreamClientMessage = Static<typeof StreamClientMessage>;

/** Query of the stream endpoints (browsers cannot set headers on WebSocket/EventSource). */
export const StreamQuery = Type.Object(
  {
    /** Admin token (enables log subscriptions) or API key (snapshots only, when keys are configured). */
    token: Type.Optional(Type.String({ maxLength: 500 })),
    /** SSE only: also send log records, with this filter. */
    logs: Type.Optional(Type.Boolean()),
    module: Type.Optional(Type.String({ minLength: 1, maxLength: 100 })),
    level: Type.Optional(Type.Union(LOG_LEVELS.map((l) => Type.Literal(l)))),
  },
  { additionalProperties: false },
);
export type StreamQuery = Static<typeof StreamQuery>;

/** `GET /api/console/logs` query (admin). */
export const LogsQuery = Type.Object(
  {
    module: Type.Optional(Type.String({ minLength: 1, maxLength: 100 })),
    level: Type.Optional(Type.Union(LOG_LEVELS.map((l) => Type.Literal(l)))),
    limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 2000, default: 200 })),
  },
  { additionalProperties: false },
);
export type LogsQuery = Static<typeof LogsQuery>;

/** `POST /api/console/session` body: exchange the one-time login code printed at start for the admin token. */
export const SessionExchange = Type.Object({ code: Type.String({ minLength: 8, maxLength: 200 }) }, { additionalProperties: false });
export type SessionExchange = Static<typeof SessionExchange>;

/** The dashboard's pages: client-side paths the core answers with the dashboard's index.html. */
export const DASHBOARD_PAGES = [
  { path: '/', id: 'overview', title: 'Overview' },
  { path: '/limiter', id: 'limiter', title: 'Limiter' },
  { path: '/gpu', id: 'gpu', title: 'GPU & tasks' },
  { path: '/models', id: 'models', title: 'Models' },
  { path: '/chat', id: 'chat', title: 'Chat' },
  { path: '/training', id: 'training', title: 'Training' },
  { path: '/runtime', id: 'runtime', title: 'Runtime' },
  { path: '/config', id: 'config', title: 'Config' },
  { path: '/logs', id: 'logs', title: 'Logs' },
] as const;
export type DashboardPageId = (typeof DASHBOARD_PAGES)[number]['id'];
