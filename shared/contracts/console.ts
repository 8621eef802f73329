/**
 * Types and constants of the console-wide live stream, free of TypeBox so the dashboard's first
 * bundle stays small; the request schemas are in `consoleSchemas.ts`.
 *
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
  /** `backlog`: the recent records sent on (re)subscribing; they replace what the viewer had. */
  | { type: 'logs'; records: ConsoleLogRecord[]; backlog?: boolean }
  | { type: 'error'; message: string };

export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal'] as const;
export type LogLevelName = (typeof LOG_LEVELS)[number];

/** Filter for log records: one module (exact) and a minimum level. Schema: `consoleSchemas.ts`. */
export interface LogFilter {
  module?: string;
  level?: LogLevelName;
}

/** Messages a viewer sends: subscribe to logs (admin only) with a filter, or unsubscribe. */
export type StreamClientMessage = { type: 'logs'; filter: LogFilter } | { type: 'logs-off' };

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
