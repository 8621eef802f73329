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

/** Per-priority depths keyed by the contract's upper-case names. */
export type PriorityDepths = Record<'URGENT' | 'HIGH' | 'NORMAL' | 'LOW', number>;

export interface LimiterQueueStatus {
  max_size: number;
  current_size: number;
  total_enqueued: number;
  total_dequeued: number;
  total_dropped: number;
  depth_by_priority: PriorityDepths;
  full_policy: 'passthrough' | 'reject' | 'drop_lowest';
  utilization: number;
}

export interface LimiterBucketStatus {
  tokens: number;
  capacity: number;
  rate_per_minute: number;
  utilization: number;
  /** Seconds left of an upstream Retry-After pause. */
  paused_seconds: number;
}

export interface LimiterRetreatStatus {
  state: 'normal' | 'retreat' | 'recover';
  effective_rpm: number;
  base_rpm: number;
  ceiling_rpm: number;
  upstream_429_rate: number;
}

/** One provider's block of `/status` (contract §6.7 shape). */
export interface LimiterProviderStatus {
  provider: string;
  aliases: string[];
  upstream_url: string;
  healthy: boolean;
  requests: { total: number; passthrough: number; ratelimited: number };
  errors: { queue_full_rejects: number; upstream_errors: number };
  queue: LimiterQueueStatus;
  token_bucket: LimiterBucketStatus;
  retreat: LimiterRetreatStatus;
}

/** A retreat transition as pushed to the dashboard stream. */
export interface LimiterTransitionEvent {
  provider: string;
  from: 'normal' | 'retreat' | 'recover';
  to: 'normal' | 'retreat' | 'recover';
  previous_rpm: number;
  rpm: number;
  ratio: number;
  reason: string;
  /** Unix seconds (float). */
  timestamp: number;
}

/** `GET /api/limiter/status` (alias `/status`): the default provider at the top level (contract §6.7), every provider under `providers`. */
export interface LimiterStatus {
  requests: { total: number; nvidia: number; passthrough: number; ratelimited: number };
  errors: { queue_full_rejects: number; upstream_errors: number };
  queue: LimiterQueueStatus;
  token_bucket: LimiterBucketStatus;
  retreat: LimiterRetreatStatus;
  uptime_seconds: number;
  providers: Record<string, LimiterProviderStatus>;
}

/** One frame of `/api/dashboard/stream` and of the WebSocket (contract §6.7). */
export interface LimiterSnapshot {
  timestamp: number;
  uptime_seconds: number;
  token_bucket: LimiterBucketStatus;
  queue: Omit<LimiterQueueStatus, 'depth_by_priority'> & { per_priority: PriorityDepths };
  retreat: LimiterRetreatStatus;
  requests: LimiterStatus['requests'];
  errors: LimiterStatus['errors'];
  providers: Record<string, LimiterProviderStatus>;
  recent_transitions: LimiterTransitionEvent[];
}
