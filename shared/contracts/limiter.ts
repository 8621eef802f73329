import { Type, type Static } from '@sinclair/typebox';

/**
 * `POST /api/admin/config` body (contract §6.8): every field optional. Applies to the default
 * provider (`nvidia`); the retreat fields of §6.6 may be changed too. Unknown fields are rejected.
 */
export const LimiterConfigPatch = Type.Object(
  {
    rate_rpm: Type.Optional(Type.Number({ exclusiveMinimum: 0 })),
    queue_max_size: Type.Optional(Type.Integer({ exclusiveMinimum: 0 })),
    fallback_enabled_passthrough: Type.Optional(Type.Boolean()),
    queue_full_policy: Type.Optional(Type.Union([Type.Literal('passthrough'), Type.Literal('reject'), Type.Literal('drop_lowest')])),
    bucket_capacity: Type.Optional(Type.Number({ exclusiveMinimum: 0 })),
    request_timeout: Type.Optional(Type.Number({ exclusiveMinimum: 0, maximum: 300 })),
    low_priority_timeout: Type.Optional(Type.Number({ exclusiveMinimum: 0, maximum: 300 })),
    max_rpm: Type.Optional(Type.Number({ minimum: 0 })),
    recover_mode: Type.Optional(Type.Union([Type.Literal('step'), Type.Literal('probe')])),
    retreat_window_seconds: Type.Optional(Type.Number({ exclusiveMinimum: 0 })),
    retreat_429_threshold: Type.Optional(Type.Number({ exclusiveMinimum: 0, maximum: 1 })),
    retreat_factor: Type.Optional(Type.Number({ exclusiveMinimum: 0, exclusiveMaximum: 1 })),
    retreat_min_rpm: Type.Optional(Type.Number({ exclusiveMinimum: 0 })),
    recover_window_seconds: Type.Optional(Type.Number({ exclusiveMinimum: 0 })),
    recover_429_threshold: Type.Optional(Type.Number({ minimum: 0, maximum: 1 })),
    recover_increment_rpm: Type.Optional(Type.Number({ exclusiveMinimum: 0 })),
  },
  { additionalProperties: false },
);
export type LimiterConfigPatch = Static<typeof LimiterConfigPatch>;

/** `POST /api/limiter/admin/reset` body: one provider, or all when absent. */
export const LimiterResetRequest = Type.Object({ provider: Type.Optional(Type.String({ maxLength: 64 })) }, { additionalProperties: false });
export type LimiterResetRequest = Static<typeof LimiterResetRequest>;

/** Per-priority depths keyed by the contract's upper-case names (every level present, 0 when empty). */
export const PriorityDepths = Type.Object(
  { URGENT: Type.Integer({ minimum: 0 }), HIGH: Type.Integer({ minimum: 0 }), NORMAL: Type.Integer({ minimum: 0 }), LOW: Type.Integer({ minimum: 0 }) },
  { additionalProperties: false },
);
export type PriorityDepths = Static<typeof PriorityDepths>;

const FullPolicy = Type.Union([Type.Literal('passthrough'), Type.Literal('reject'), Type.Literal('drop_lowest')]);
const RetreatState = Type.Union([Type.Literal('normal'), Type.Literal('retreat'), Type.Literal('recover')]);

export const LimiterQueueStatus = Type.Object(
  {
    max_size: Type.Integer(),
    current_size: Type.Integer({ minimum: 0 }),
    total_enqueued: Type.Integer({ minimum: 0 }),
    total_dequeued: Type.Integer({ minimum: 0 }),
    total_dropped: Type.Integer({ minimum: 0 }),
    depth_by_priority: PriorityDepths,
    full_policy: FullPolicy,
    /** current_size / max_size, rounded to 4 decimals. */
    utilization: Type.Number(),
  },
  { additionalProperties: false },
);
export type LimiterQueueStatus = Static<typeof LimiterQueueStatus>;

export const LimiterBucketStatus = Type.Object(
  {
    /** Rounded to 2 decimals. */
    tokens: Type.Number(),
    capacity: Type.Number(),
    rate_per_minute: Type.Number(),
    /** (capacity − tokens) / capacity, rounded to 4 decimals. */
    utilization: Type.Number(),
    /** Seconds left of an upstream Retry-After pause. */
    paused_seconds: Type.Number({ minimum: 0 }),
  },
  { additionalProperties: false },
);
export type LimiterBucketStatus = Static<typeof LimiterBucketStatus>;

export const LimiterRetreatStatus = Type.Object(
  {
    state: RetreatState,
    effective_rpm: Type.Number(),
    base_rpm: Type.Number(),
    ceiling_rpm: Type.Number(),
    upstream_429_rate: Type.Number({ minimum: 0, maximum: 1 }),
  },
  { additionalProperties: false },
);
export type LimiterRetreatStatus = Static<typeof LimiterRetreatStatus>;

const Counter = Type.Integer({ minimum: 0 });
const LimiterErrors = Type.Object({ queue_full_rejects: Counter, upstream_errors: Counter }, { additionalProperties: false });

/** One provider's block of `/status` (contract §6.7 shape). */
export const LimiterProviderStatus = Type.Object(
  {
    provider: Type.String(),
    aliases: Type.Array(Type.String()),
    upstream_url: Type.String(),
    healthy: Type.Boolean(),
    requests: Type.Object({ total: Counter, passthrough: Counter, ratelimited: Counter }, { additionalProperties: false }),
    errors: LimiterErrors,
    queue: LimiterQueueStatus,
    token_bucket: LimiterBucketStatus,
    retreat: LimiterRetreatStatus,
  },
  { additionalProperties: false },
);
export type LimiterProviderStatus = Static<typeof LimiterProviderStatus>;

/** A retreat transition as pushed to the dashboard stream. */
export const LimiterTransitionEvent = Type.Object(
  {
    provider: Type.String(),
    from: RetreatState,
    to: RetreatState,
    previous_rpm: Type.Number(),
    rpm: Type.Number(),
    ratio: Type.Number(),
    reason: Type.String(),
    /** Unix seconds (float). */
    timestamp: Type.Number(),
  },
  { additionalProperties: false },
);
export type LimiterTransitionEvent = Static<typeof LimiterTransitionEvent>;

/** `GET /api/limiter/status` (alias `/status`): the default provider at the top level (contract §6.7), every provider under `providers`. */
export const LimiterStatus = Type.Object(
  {
    requests: Type.Object({ total: Counter, nvidia: Counter, passthrough: Counter, ratelimited: Counter }, { additionalProperties: false }),
    errors: LimiterErrors,
    queue: LimiterQueueStatus,
    token_bucket: LimiterBucketStatus,
    retreat: LimiterRetreatStatus,
    uptime_seconds: Type.Integer({ minimum: 0 }),
    providers: Type.Record(Type.String(), LimiterProviderStatus),
  },
  { additionalProperties: false },
);
export type LimiterStatus = Static<typeof LimiterStatus>;

/** `POST /api/limiter/admin/reset` response (contract §6.8): the retreat block of the (first) provider reset. */
export const LimiterResetResponse = Type.Object({ status: Type.Literal('ok'), retreat: LimiterRetreatStatus }, { additionalProperties: false });
export type LimiterResetResponse = Static<typeof LimiterResetResponse>;

/** The queue of a dashboard frame: as in `/status`, with `per_priority` in place of `depth_by_priority`. */
export const LimiterSnapshotQueue = Type.Composite([Type.Omit(LimiterQueueStatus, ['depth_by_priority']), Type.Object({ per_priority: PriorityDepths })], {
  additionalProperties: false,
});
export type LimiterSnapshotQueue = Static<typeof LimiterSnapshotQueue>;

/** One frame of `/api/dashboard/stream` and of the WebSocket (contract §6.7). */
export const LimiterSnapshot = Type.Object(
  {
    /** Unix seconds (float). */
    timestamp: Type.Number(),
    uptime_seconds: Type.Integer({ minimum: 0 }),
    token_bucket: LimiterBucketStatus,
    queue: LimiterSnapshotQueue,
    retreat: LimiterRetreatStatus,
    requests: LimiterStatus.properties.requests,
    errors: LimiterErrors,
    providers: Type.Record(Type.String(), LimiterProviderStatus),
    recent_transitions: Type.Array(LimiterTransitionEvent),
  },
  { additionalProperties: false },
);
export type LimiterSnapshot = Static<typeof LimiterSnapshot>;
