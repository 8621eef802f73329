import { Type, type Static } from '@sinclair/typebox';
import { checkValue } from './validate.js';
import { ProcessName } from './config/runtime.js';

/**
 * Runtime supervisor contract (API.md §8). Field names are the seed's (snake_case); every error
 * body of this family is `{"detail": "<text>"}`.
 */

export const RuntimeMode = Type.Union([Type.Literal('live'), Type.Literal('backtest')]);
export type RuntimeMode = Static<typeof RuntimeMode>;

/** Public schedule modes; `intraday` is a legacy input alias of `interval` and never appears in output. */
export const ScheduleMode = Type.Union([Type.Literal('daily'), Type.Literal('interval')]);
export type ScheduleMode = Static<typeof ScheduleMode>;

const DATE = '^\\d{4}-\\d{2}-\\d{2}$';

/** `POST /api/runtime/start` body (§8.5). */
export const RuntimeStartRequest = Type.Object(
  {
    mode: RuntimeMode,
    tickers: Type.Array(Type.String({ minLength: 1, maxLength: 64 }), { minItems: 1, maxItems: 10_000 }),
    initial_cash: Type.Optional(Type.Number({ exclusiveMinimum: 0 })),
    margin_requirement: Type.Optional(Type.Number({ minimum: 0, maximum: 1 })),
    start_date: Type.Optional(Type.String({ pattern: DATE })),
    end_date: Type.Optional(Type.String({ pattern: DATE })),
    schedule_mode: Type.Optional(Type.Union([ScheduleMode, Type.Literal('intraday')])),
  },
  { additionalProperties: false },
);
export type RuntimeStartRequest = Static<typeof RuntimeStartRequest>;

/** A start request after validation: the schedule mode normalised (`intraday` → `interval`). */
export type RuntimeRunParams = Omit<RuntimeStartRequest, 'schedule_mode'> & { schedule_mode: ScheduleMode };

/** The seed's wording for each field's problem. */
const FIELD_MESSAGES: Record<string, string> = {
  mode: "mode must be 'live' or 'backtest'",
  tickers: 'tickers must be a non-empty list of ticker symbols',
  initial_cash: 'initial_cash must be greater than 0',
  margin_requirement: 'margin_requirement must be between 0 and 1',
  start_date: 'start_date must be in YYYY-MM-DD format',
  end_date: 'end_date must be in YYYY-MM-DD format',
  schedule_mode: "schedule_mode must be 'daily' or 'interval'",
};

function isRealDate(text: string): boolean {
  const d = new Date(`${text}T00:00:00Z`);
  return !Number.isNaN(d.getTime()) && d.toISOString().slice(0, 10) === text;
}

/**
 * Checks a start body against §8.5 and lists every problem (the seed's messages). Pure: the
 * supervisor adds the environment and process checks.
 */
export function validateStartRequest(body: unknown): { ok: true; value: RuntimeRunParams } | { ok: false; issues: string[] } {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) {
    return { ok: false, issues: ['request body must be a JSON object'] };
  }
  const issues: string[] = [];
  const seen = new Set<string>();
  for (const issue of checkValue(RuntimeStartRequest, body)) {
    const field = issue.path.split('.')[0] ?? '';
    if (seen.has(field)) continue;
    seen.add(field);
    if (issue.expected.startsWith('no such field')) issues.push(`unknown field '${issue.path}'`);
    else issues.push(FIELD_MESSAGES[field] ?? `${issue.path || 'body'}: expected ${issue.expected}, got ${issue.got}`);
  }
  const b = body as Record<string, unknown>;
  for (const key of ['start_date', 'end_date'] as const) {
    const v = b[key];
    if (typeof v === 'string' && new RegExp(DATE).test(v) && !isRealDate(v)) issues.push(`${key} is not a valid date: ${v}`);
  }
  if (b.mode === 'backtest') {
    if (b.start_date === undefined) issues.push('start_date is required for backtest mode');
    if (b.end_date === undefined) issues.push('end_date is required for backtest mode');
    if (typeof b.start_date === 'string' && typeof b.end_date === 'string' && isRealDate(b.start_date) && isRealDate(b.end_date) && b.start_date >= b.end_date) {
      issues.push('start_date must be earlier than end_date');
    }
  }
  if (issues.length > 0) return { ok: false, issues };
  const request = body as RuntimeStartRequest;
  const schedule: ScheduleMode = request.schedule_mode === 'interval' || request.schedule_mode === 'intraday' ? 'interval' : 'daily';
  return { ok: true, value: { ...request, schedule_mode: schedule } };
}

/** Contract `process_status` (§8.2). */
export const ProcessStatusName = Type.Union([Type.Literal('running'), Type.Literal('exited'), Type.Literal('not_running')]);
export type ProcessStatusName = Static<typeof ProcessStatusName>;

const Nullable = <T extends Parameters<typeof Type.Union>[0][number]>(t: T) => Type.Union([t, Type.Null()]);

/** `GET /api/runtime/mode` (§8.1). */
export const RuntimeModeResponse = Type.Object({
  mode: Type.Union([RuntimeMode, Type.Literal('stopped')]),
  is_backtest: Type.Boolean(),
  run_id: Nullable(Type.String()),
  schedule_mode: Nullable(ScheduleMode),
  is_running: Type.Boolean(),
});
export type RuntimeModeResponse = Static<typeof RuntimeModeResponse>;

/** `GET /api/runtime/gateway/status` (§8.2). */
export const GatewayStatusResponse = Type.Object({
  is_running: Type.Boolean(),
  port: Type.Integer(),
  run_id: Nullable(Type.String()),
  process_status: ProcessStatusName,
  pid: Nullable(Type.Integer()),
});
export type GatewayStatusResponse = Static<typeof GatewayStatusResponse>;

export const HealthStatus = Type.Union([Type.Literal('healthy'), Type.Literal('degraded'), Type.Literal('unhealthy')]);
export type HealthStatus = Static<typeof HealthStatus>;

const Check = <T extends Parameters<typeof Type.Object>[0]>(details: T) => Type.Object({ status: HealthStatus, details: Type.Object(details) });

/** `GET /api/runtime/gateway/health` and `GET /health/gateway` (§8.3). */
export const GatewayHealthResponse = Type.Object({
  status: HealthStatus,
  checks: Type.Object({
    process: Check({ pid: Nullable(Type.Integer()), status: ProcessStatusName, returncode: Nullable(Type.Integer()) }),
    port: Check({
      port: Type.Integer(),
      accessible: Type.Boolean(),
      /** Extension: the health URL probed instead of a bare TCP connect, and its HTTP status. */
      url: Type.Optional(Type.String()),
      status_code: Type.Optional(Nullable(Type.Integer())),
      error: Type.Optional(Type.String()),
    }),
    configuration: Check({ has_runtime_manager: Type.Boolean(), issues: Type.Optional(Type.Array(Type.String())) }),
  }),
  timestamp: Type.String(),
});
export type GatewayHealthResponse = Static<typeof GatewayHealthResponse>;

/** `GET /api/status` (§8.4). */
export const RuntimeStatusResponse = Type.Object({
  status: Type.Union([Type.Literal('operational'), Type.Literal('degraded')]),
  service: Type.Literal('runtime-service'),
  runtime: Type.Object({
    gateway_running: Type.Boolean(),
    gateway_port: Type.Integer(),
    gateway_pid: Nullable(Type.Integer()),
    gateway_process_status: ProcessStatusName,
    has_runtime_manager: Type.Boolean(),
  }),
});
export type RuntimeStatusResponse = Static<typeof RuntimeStatusResponse>;

/** `POST /api/runtime/start` success (§8.5). */
export const RuntimeStartResponse = Type.Object({
  status: Type.Literal('started'),
  run_id: Type.String(),
  pid: Type.Integer(),
  port: Type.Integer(),
});
export type RuntimeStartResponse = Static<typeof RuntimeStartResponse>;

/** `POST /api/runtime/stop` success (§8.6). */
export const RuntimeStopResponse = Type.Object({ status: Type.Literal('stopped'), message: Type.String() });
export type RuntimeStopResponse = Static<typeof RuntimeStopResponse>;

// --- extensions: every supervised process, logs, orphans, the dashboard snapshot ---

/**
 * Supervisor state of one process. `exited`: ended on its own (no restart pending); `backoff`:
 * waiting to restart; `failed`: gave up after `maxRestarts`.
 */
export const ProcessState = Type.Union([
  Type.Literal('not_running'),
  Type.Literal('starting'),
  Type.Literal('running'),
  Type.Literal('stopping'),
  Type.Literal('exited'),
  Type.Literal('backoff'),
  Type.Literal('failed'),
]);
export type ProcessState = Static<typeof ProcessState>;

/** A process a previous console run started and this one does not own. */
export const OrphanInfo = Type.Object({
  pid: Type.Integer(),
  /** ISO-8601 UTC, when the previous run started it. */
  started_at: Type.String(),
  run_id: Nullable(Type.String()),
  message: Type.String(),
});
export type OrphanInfo = Static<typeof OrphanInfo>;

export const ProcessInfo = Type.Object({
  name: Type.String(),
  configured: Type.Boolean(),
  state: ProcessState,
  process_status: ProcessStatusName,
  pid: Nullable(Type.Integer()),
  /** ISO-8601 UTC. */
  started_at: Nullable(Type.String()),
  uptime_seconds: Nullable(Type.Number()),
  /** Restarts done by the restart policy since the last manual start. */
  restarts: Type.Integer(),
  exit_code: Nullable(Type.Integer()),
  exit_signal: Nullable(Type.String()),
  run_id: Nullable(Type.String()),
  mode: Nullable(RuntimeMode),
  next_restart_in_seconds: Nullable(Type.Number()),
  last_error: Nullable(Type.String()),
  orphan: Nullable(OrphanInfo),
  log_file: Type.String(),
});
export type ProcessInfo = Static<typeof ProcessInfo>;

export const ProcessListResponse = Type.Object({ processes: Type.Array(ProcessInfo) });
export type ProcessListResponse = Static<typeof ProcessListResponse>;

export const ProcessNameParams = Type.Object({ name: ProcessName }, { additionalProperties: false });
export type ProcessNameParams = Static<typeof ProcessNameParams>;

export const LogTailQuery = Type.Object(
  {
    /** Last N lines (default 200). */
    lines: Type.Optional(Type.Integer({ minimum: 1, maximum: 10_000, default: 200 })),
  },
  { additionalProperties: false },
);
export type LogTailQuery = Static<typeof LogTailQuery>;

export const LogTailResponse = Type.Object({ name: Type.String(), file: Type.String(), lines: Type.Array(Type.String()) });
export type LogTailResponse = Static<typeof LogTailResponse>;

export const LogStreamQuery = Type.Object(
  {
    /** Lines of history sent before live output (default 50). */
    tail: Type.Optional(Type.Integer({ minimum: 0, maximum: 10_000, default: 50 })),
  },
  { additionalProperties: false },
);
export type LogStreamQuery = Static<typeof LogStreamQuery>;

/** One line of child output, as streamed (SSE `data:`). */
export const LogLine = Type.Object({
  name: Type.String(),
  stream: Type.Union([Type.Literal('stdout'), Type.Literal('stderr'), Type.Literal('supervisor')]),
  line: Type.String(),
  /** Unix ms. */
  at: Type.Number(),
});
export type LogLine = Static<typeof LogLine>;

/** The dashboard's cheap view of every process (no I/O to build). */
export const RuntimeSnapshot = Type.Object({
  processes: Type.Array(
    Type.Object({
      name: Type.String(),
      state: ProcessState,
      pid: Nullable(Type.Integer()),
      uptime_seconds: Nullable(Type.Number()),
      restarts: Type.Integer(),
      exit_code: Nullable(Type.Integer()),
      orphan_pid: Nullable(Type.Integer()),
      last_lines: Type.Array(Type.String()),
    }),
  ),
});
export type RuntimeSnapshot = Static<typeof RuntimeSnapshot>;

/** `POST /api/runtime/processes/{name}/orphan/kill` success. */
export const OrphanKillResponse = Type.Object({ status: Type.Literal('killed'), pid: Type.Integer(), message: Type.String() });
export type OrphanKillResponse = Static<typeof OrphanKillResponse>;
