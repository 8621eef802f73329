import { Type, type Static } from '@sinclair/typebox';

export const LogLevelQuery = Type.Object(
  {
    logger_name: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })),
    level: Type.Optional(Type.String({ minLength: 1, maxLength: 20 })),
  },
  { additionalProperties: false },
);
export type LogLevelQuery = Static<typeof LogLevelQuery>;

export const ThreadsQuery = Type.Object(
  {
    name: Type.Optional(Type.String({ maxLength: 200 })),
    thread_id: Type.Optional(Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER })),
  },
  { additionalProperties: false },
);
export type ThreadsQuery = Static<typeof ThreadsQuery>;

export const PeriodicThreadsQuery = Type.Object(
  {
    level: Type.Optional(Type.String()),
    running_only: Type.Optional(Type.Boolean({ default: false })),
    active_only: Type.Optional(Type.Boolean({ default: false })),
  },
  { additionalProperties: false },
);
export type PeriodicThreadsQuery = Static<typeof PeriodicThreadsQuery>;

export const PeriodicThread = Type.Object({
  name: Type.String(),
  level: Type.String(),
  is_running: Type.Boolean(),
  is_active: Type.Boolean(),
  last_run_time: Type.Union([Type.String(), Type.Null()]),
  last_run_ago: Type.Union([Type.Number(), Type.Null()]),
  interval: Type.Number(),
  run_count: Type.Integer(),
  error_count: Type.Integer(),
  last_error: Type.Union([Type.String(), Type.Null()]),
  last_duration_ms: Type.Union([Type.Number(), Type.Null()]),
});
export type PeriodicThread = Static<typeof PeriodicThread>;

export const PeriodicThreadsResponse = Type.Object({
  summary: Type.Object({
    total_count: Type.Integer(),
    running_count: Type.Integer(),
    active_count: Type.Integer(),
    by_level: Type.Record(Type.String(), Type.Object({ total: Type.Integer(), running: Type.Integer(), active: Type.Integer() })),
  }),
  threads: Type.Array(PeriodicThread),
});
export type PeriodicThreadsResponse = Static<typeof PeriodicThreadsResponse>;

export const PeriodicHealthResponse = Type.Object({
  healthy: Type.Boolean(),
  unhealthy_count: Type.Integer(),
  unhealthy_threads: Type.Array(
    Type.Object({ name: Type.String(), level: Type.String(), last_run_ago: Type.Union([Type.Number(), Type.Null()]), interval: Type.Number() }),
  ),
});
export type PeriodicHealthResponse = Static<typeof PeriodicHealthResponse>;

/** GET /health (contract §9). */
export const LivenessResponse = Type.Object(
  {
    status: Type.Literal('ok'),
    uptime: Type.Number(),
    version: Type.String(),
    service: Type.Literal('console'),
  },
  { additionalProperties: true },
);
export type LivenessResponse = Static<typeof LivenessResponse>;

/** GET /api/v1/health. */
export const ComponentsHealthResponse = Type.Object({
  status: Type.Union([Type.Literal('UP'), Type.Literal('DOWN')]),
  components: Type.Record(Type.String(), Type.Object({ status: Type.String(), details: Type.Optional(Type.Record(Type.String(), Type.Unknown())) })),
  timestamp: Type.String(),
});
export type ComponentsHealthResponse = Static<typeof ComponentsHealthResponse>;

/** GET/PUT /api/console/config. */
export const ConsoleConfigView = Type.Object({
  /** Effective config (defaults < file < env < flags), secrets masked. */
  config: Type.Record(Type.String(), Type.Unknown()),
  /** What config.json holds, secrets masked. */
  file: Type.Record(Type.String(), Type.Unknown()),
  /** Dotted paths set by env vars or flags (a file edit does not change them). */
  overridden: Type.Array(Type.String()),
  /** What pins each overridden path: `env CONSOLE_HTTP_PORT`, `flag --port`. */
  pinnedBy: Type.Optional(Type.Record(Type.String(), Type.String())),
  path: Type.String(),
});
export type ConsoleConfigView = Static<typeof ConsoleConfigView>;
