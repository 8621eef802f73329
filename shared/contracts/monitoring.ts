import { Type, type Static, type TSchema } from '@sinclair/typebox';

/** Monitoring API schemas (contract §7). Field names are snake_case; times are Unix seconds (float). */

/** `gpu_lock:<gpu id>` (this console's GPU) or, in a cluster, `gpu_lock:<node id>:<gpu id>`. */
export const LOCK_KEY_PATTERN = '^gpu_lock:([A-Za-z0-9][A-Za-z0-9_.-]{0,63}:)?[0-9]{1,4}$';
const LockKey = Type.String({ pattern: LOCK_KEY_PATTERN, description: 'gpu_lock:<gpu id> or gpu_lock:<node id>:<gpu id>' });
const TaskName = Type.String({ minLength: 1, maxLength: 200 });
const FencingToken = Type.Integer({ minimum: 1, description: 'the token acquire returned' });
/** Upper bound here is a sanity limit; the configured `monitoring.locks.maxTtlSeconds` is checked by the service (400 too). */
const TtlSeconds = Type.Number({ exclusiveMinimum: 0, maximum: 7 * 86400 });

export const LockKeyQuery = Type.Object({ lock_key: Type.Optional(LockKey) }, { additionalProperties: false });
export type LockKeyQuery = Static<typeof LockKeyQuery>;

export const TaskIdParams = Type.Object({ task_id: Type.String({ pattern: '^[A-Za-z0-9._:@-]{1,200}$' }) });
export type TaskIdParams = Static<typeof TaskIdParams>;

/** POST /gpu-lock/acquire (extension for local apps). */
export const AcquireBody = Type.Object(
  {
    lock_key: LockKey,
    task_name: TaskName,
    ttl_seconds: Type.Optional(TtlSeconds),
    wait_seconds: Type.Optional(Type.Number({ minimum: 0, maximum: 3600 })),
    purpose: Type.Optional(Type.String({ maxLength: 500 })),
    /** Links the lock to a heartbeat task (orphan detection, timeout release). */
    task_id: Type.Optional(TaskIdParams.properties.task_id),
  },
  { additionalProperties: false },
);
export type AcquireBody = Static<typeof AcquireBody>;

export const AcquireResponse = Type.Object({
  acquired: Type.Boolean(),
  lock_key: Type.String(),
  fencing_token: Type.Integer(),
  expires_in: Type.Number(),
  lock_holder: Type.String(),
  ttl_seconds: Type.Number(),
});
export type AcquireResponse = Static<typeof AcquireResponse>;

/**
 * POST /gpu-lock/renew. Only the holder may renew: it proves it with the fencing token its own
 * acquire returned plus the `task_name` it acquired with (both must match). Readers never see the token.
 */
export const RenewBody = Type.Object(
  { lock_key: LockKey, fencing_token: FencingToken, task_name: TaskName, ttl_seconds: Type.Optional(TtlSeconds) },
  { additionalProperties: false },
);
export type RenewBody = Static<typeof RenewBody>;

/** POST /gpu-lock/release: the holder's release (token and `task_name` must match, as for renew). */
export const ReleaseBody = Type.Object({ lock_key: LockKey, fencing_token: FencingToken, task_name: TaskName }, { additionalProperties: false });
export type ReleaseBody = Static<typeof ReleaseBody>;

export const ReleaseResponse = Type.Object({ released: Type.Boolean(), lock_key: Type.String(), fencing_token: Type.Integer() });
export type ReleaseResponse = Static<typeof ReleaseResponse>;

/** POST /lock/release (admin's forced release, §7.6). */
export const ForceReleaseBody = Type.Object(
  { lock_key: LockKey, task_name: Type.Optional(TaskName), reason: Type.Optional(Type.String({ minLength: 1, maxLength: 500 })) },
  { additionalProperties: false },
);
export type ForceReleaseBody = Static<typeof ForceReleaseBody>;

/** POST /heartbeat/task/{task_id}/start. */
export const HeartbeatStartBody = Type.Object(
  {
    task_name: Type.Optional(TaskName),
    gpu_lock: Type.Optional(LockKey),
    fencing_token: Type.Optional(FencingToken),
    timeout_seconds: Type.Optional(TtlSeconds),
    metadata: Type.Optional(Type.Record(Type.String(), Type.Unknown())),
  },
  { additionalProperties: false },
);
export type HeartbeatStartBody = Static<typeof HeartbeatStartBody>;

/** POST /heartbeat/task/{task_id} (a beat). */
export const HeartbeatBeatBody = Type.Object(
  {
    progress: Type.Optional(Type.Number({ minimum: 0, maximum: 1 })),
    status: Type.Optional(Type.Union([Type.Literal('running'), Type.Literal('completed'), Type.Literal('failed'), Type.Literal('cancelled')])),
    fencing_token: Type.Optional(FencingToken),
    detail: Type.Optional(Type.Record(Type.String(), Type.Unknown())),
  },
  { additionalProperties: false },
);
export type HeartbeatBeatBody = Static<typeof HeartbeatBeatBody>;

export const HeartbeatBeatResponse = Type.Object({ success: Type.Boolean(), task_id: Type.String(), status: Type.String(), last_update: Type.Number() });
export type HeartbeatBeatResponse = Static<typeof HeartbeatBeatResponse>;

export const TelemetryQuery = Type.Object({ limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 10000 })) }, { additionalProperties: false });
export type TelemetryQuery = Static<typeof TelemetryQuery>;

const HealthStatus = Type.Union([Type.Literal('healthy'), Type.Literal('warning'), Type.Literal('critical')]);
const Nullable = <T extends TSchema>(t: T) => Type.Union([t, Type.Null()]);

/** GET /gpu-lock/status (§7.1). */
export const LockStatusResponse = Type.Object({
  lock_key: Type.String(),
  is_locked: Type.Boolean(),
  lock_holder: Type.Union([Type.String(), Type.Null()]),
  ttl_seconds: Nullable(Type.Number()),
  timestamp: Type.Number(),
  health: Type.Object({ status: HealthStatus, last_check: Nullable(Type.Number()), issues: Type.Array(Type.String()) }),
  statistics: Type.Object({
    total_attempts: Type.Integer(),
    success_count: Type.Integer(),
    timeout_count: Type.Integer(),
    failure_count: Type.Integer(),
    average_execution_time: Type.Number(),
  }),
  recent_history: Type.Array(Type.Object({ action: Type.String(), task_name: Type.Union([Type.String(), Type.Null()]), timestamp: Type.Number(), success: Type.Boolean() })),
  lock_type: Type.Literal('GPU_LOCK'),
  lock_age: Nullable(Type.Number()),
  /** Extension: the holder's purpose and task, when the lock was taken (Unix s) and its TTL (s). Never the fencing token. */
  purpose: Type.Union([Type.String(), Type.Null()]),
  task_id: Type.Union([Type.String(), Type.Null()]),
  acquired_at: Nullable(Type.Number()),
  lock_ttl: Nullable(Type.Number()),
});
export type LockStatusResponse = Static<typeof LockStatusResponse>;

/**
 * GET /heartbeat/all (§7.4). Extension (cluster only): every node's tasks, each with its `node`; in
 * `active_tasks` another node's task is keyed `<node>/<task id>` and carries its `task_id`.
 */
export const HeartbeatAllResponse = Type.Object({
  active_tasks: Type.Record(
    Type.String(),
    Type.Object({
      task_name: Type.String(),
      last_update: Type.Number(),
      status: Type.String(),
      progress: Nullable(Type.Number()),
      gpu_lock: Type.Union([Type.String(), Type.Null()]),
      node: Type.Optional(Type.String()),
      task_id: Type.Optional(Type.String()),
    }),
  ),
  dead_tasks: Type.Array(Type.Object({ task_id: Type.String(), task_name: Type.String(), status: Type.String(), last_update: Type.Number(), reason: Type.Union([Type.String(), Type.Null()]), node: Type.Optional(Type.String()) })),
  orphaned_tasks: Type.Array(
    Type.Object({
      task_id: Type.Union([Type.String(), Type.Null()]),
      last_update: Nullable(Type.Number()),
      timeout: Type.Boolean(),
      reason: Type.String(),
      lock_key: Type.Union([Type.String(), Type.Null()]),
      node: Type.Optional(Type.String()),
    }),
  ),
  statistics: Type.Object({ total_tasks: Type.Integer(), active_count: Type.Integer(), dead_count: Type.Integer(), orphaned_count: Type.Integer(), average_heartbeat_interval: Type.Number() }),
  timestamp: Type.Number(),
});
export type HeartbeatAllResponse = Static<typeof HeartbeatAllResponse>;

/** GET /snapshot: what the dashboard's live view shows (no fencing tokens). */
export const MonitoringSnapshotResponse = Type.Object({
  timestamp: Type.Number(),
  /** Monitoring health and its issues (as GET /health), what the Overview's alerts show. */
  status: HealthStatus,
  issues: Type.Array(Type.String()),
  monitor: Type.Object({ running: Type.Boolean(), last_check: Nullable(Type.Number()), checks_performed: Type.Integer(), uptime: Type.Number() }),
  locks: Type.Array(
    Type.Object({
      lock_key: Type.String(),
      is_locked: Type.Boolean(),
      lock_holder: Type.Union([Type.String(), Type.Null()]),
      purpose: Type.Union([Type.String(), Type.Null()]),
      task_id: Type.Union([Type.String(), Type.Null()]),
      ttl_seconds: Nullable(Type.Number()),
      lock_age: Nullable(Type.Number()),
    }),
  ),
  heartbeats: Type.Object({ active: Type.Integer(), dead: Type.Integer(), orphaned: Type.Integer() }),
  telemetry: Type.Object({
    nvidia_available: Type.Boolean(),
    reason: Type.Union([Type.String(), Type.Null()]),
    latest: Type.Union([Type.Unknown(), Type.Null()]),
  }),
  /** Cluster only (null on a single box): every node's GPUs, locks and tasks, and who holds the monitor lease. */
  cluster: Type.Union([
    Type.Null(),
    Type.Object({
      node_id: Type.String(),
      redis_connected: Type.Boolean(),
      lease_holder: Type.Union([Type.String(), Type.Null()]),
      lease_held_here: Type.Boolean(),
      /** Why the last read of the cluster failed (Redis away…), null when it worked. */
      error: Type.Union([Type.String(), Type.Null()]),
      refreshed_at: Nullable(Type.Number()),
      nodes: Type.Array(Type.Object({ node_id: Type.String(), online: Type.Boolean(), lockable: Type.Array(Type.Integer()), nvidia_available: Type.Boolean(), gpus: Type.Array(Type.Unknown()) })),
      locks: Type.Array(
        Type.Object({ node_id: Type.String(), lock_key: Type.String(), is_locked: Type.Boolean(), lock_holder: Type.Union([Type.String(), Type.Null()]), task_id: Type.Union([Type.String(), Type.Null()]), ttl_seconds: Nullable(Type.Number()), lock_age: Nullable(Type.Number()) }),
      ),
      tasks: Type.Array(
        Type.Object({
          node_id: Type.String(),
          task_id: Type.String(),
          task_name: Type.String(),
          status: Type.String(),
          gpu_lock: Type.Union([Type.String(), Type.Null()]),
          last_beat_age: Type.Number(),
          timeout_seconds: Type.Number(),
          progress: Nullable(Type.Number()),
          end_reason: Type.Union([Type.String(), Type.Null()]),
        }),
      ),
    }),
  ]),
});
export type MonitoringSnapshotResponse = Static<typeof MonitoringSnapshotResponse>;

/** POST /lock/release (§7.6, admin): the seed's Chinese messages kept; a freed lock names its holder. */
export const ForceReleaseResponse = Type.Object({
  success: Type.Boolean(),
  message: Type.String(),
  lock_key: Type.String(),
  task_name: Type.String(),
  released_holder: Type.Optional(Type.String()),
  fencing_token: Type.Optional(Type.Union([Type.Integer(), Type.String()])),
  reason: Type.Optional(Type.String()),
});
export type ForceReleaseResponse = Static<typeof ForceReleaseResponse>;

/** One GPU of the telemetry sample (nvidia-smi); a value the driver does not report is null. */
export const GpuReading = Type.Object({
  index: Type.Integer(),
  uuid: Type.String(),
  name: Type.String(),
  /** Percent 0–100. */
  utilizationGpu: Nullable(Type.Number()),
  utilizationMemory: Nullable(Type.Number()),
  memoryTotalMiB: Nullable(Type.Number()),
  memoryUsedMiB: Nullable(Type.Number()),
  memoryFreeMiB: Nullable(Type.Number()),
  temperatureC: Nullable(Type.Number()),
  powerDrawW: Nullable(Type.Number()),
  powerLimitW: Nullable(Type.Number()),
});
export type GpuReading = Static<typeof GpuReading>;
