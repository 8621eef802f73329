import { Type, type Static } from '@sinclair/typebox';
import type { ConfigSection } from './section.js';

/** The NVIDIA alias set of contract §3.4 (provider = text before the first `/`, lower-cased). */
export const NVIDIA_ALIASES = ['nvidia', 'nvidia-gateway', 'nvidiavx', 'nvidiavx18088980513'] as const;

const QueueFullPolicy = Type.Union([Type.Literal('passthrough'), Type.Literal('reject'), Type.Literal('drop_lowest')]);

/**
 * How the rate climbs back after a retreat. `step` is the seed (contract §6.6): after
 * `recover_window_seconds` under `recover_429_threshold`, +`recover_increment_rpm` per upstream
 * response up to the ceiling. `probe` (faster, documented in README): multiplicative probe, the rate
 * grows by `probe_factor` per `probe_interval_seconds` without 429 while the bucket is the bottleneck.
 */
const RecoverMode = Type.Union([Type.Literal('step'), Type.Literal('probe')]);

/**
 * Bucket, queue and retreat settings. At the top level of the section they are the defaults of every
 * provider (with the seed's numbers as defaults); in a `providers[]` entry each one is optional and
 * overrides the default for that provider only.
 */
function limitFields(withDefaults: boolean) {
  const d = <T>(value: T) => (withDefaults ? { default: value } : {});
  return {
    /** Base rate (RPM): the bucket starts here, `reset` returns here. */
    rate_rpm: Type.Number({ exclusiveMinimum: 0, maximum: 1_000_000, ...d(40) }),
    /** Ceiling for recovery (RPM); 0 = `rate_rpm` (the seed: recovery never goes above the base). */
    max_rpm: Type.Number({ minimum: 0, maximum: 1_000_000, ...d(0) }),
    bucket_capacity: Type.Number({ exclusiveMinimum: 0, maximum: 1_000_000, ...d(40) }),
    /** Seconds: token wait for URGENT/HIGH/NORMAL, and the upstream response timeout. */
    request_timeout: Type.Number({ exclusiveMinimum: 0, maximum: 300, ...d(60) }),
    /** Seconds to open a connection to the upstream. */
    connect_timeout: Type.Number({ exclusiveMinimum: 0, maximum: 300, ...d(10) }),
    queue_max_size: Type.Integer({ minimum: 1, maximum: 1_000_000, ...d(500) }),
    /** Seconds a LOW request waits for a token before its 429. */
    low_priority_timeout: Type.Number({ exclusiveMinimum: 0, maximum: 300, ...d(2) }),
    fallback_enabled_passthrough: Type.Boolean({ ...d(true) }),
    /** Absent: derived from `fallback_enabled_passthrough` (true → passthrough, false → reject). */
    queue_full_policy: Type.Optional(QueueFullPolicy),
    /** Anti-starvation: a queued request moves up one priority level per this many seconds waited. */
    aging_seconds: Type.Number({ exclusiveMinimum: 0, maximum: 86_400, ...d(30) }),
    retreat_window_seconds: Type.Number({ exclusiveMinimum: 0, maximum: 86_400, ...d(60) }),
    retreat_429_threshold: Type.Number({ exclusiveMinimum: 0, maximum: 1, ...d(0.05) }),
    retreat_factor: Type.Number({ exclusiveMinimum: 0, exclusiveMaximum: 1, ...d(0.75) }),
    retreat_min_rpm: Type.Number({ exclusiveMinimum: 0, maximum: 1_000_000, ...d(5) }),
    recover_window_seconds: Type.Number({ exclusiveMinimum: 0, maximum: 86_400, ...d(120) }),
    recover_429_threshold: Type.Number({ minimum: 0, maximum: 1, ...d(0.02) }),
    recover_increment_rpm: Type.Number({ exclusiveMinimum: 0, maximum: 1_000_000, ...d(2) }),
    recover_mode: withDefaults ? Type.Union(RecoverMode.anyOf, { default: 'step' }) : RecoverMode,
    /** `probe` mode: rate × this factor per probe interval without 429. */
    probe_factor: Type.Number({ exclusiveMinimum: 1, maximum: 10, ...d(1.25) }),
    probe_interval_seconds: Type.Number({ exclusiveMinimum: 0, maximum: 86_400, ...d(10) }),
  };
}

/** Limits of one provider after merging its entry over the section defaults. */
export const LimitSettings = Type.Object(limitFields(true));
export type LimitSettings = Static<typeof LimitSettings>;
export const LIMIT_KEYS = Object.keys(LimitSettings.properties) as Array<keyof LimitSettings>;

const NameSchema = Type.String({ pattern: '^[a-z0-9][a-z0-9._-]*$', maxLength: 64 });

/** One remote OpenAI-compatible provider with its own bucket and queue. */
export const LimiterProviderConfig = Type.Object(
  {
    /** Label in metrics, /status and messages (e.g. `openrouter`). */
    name: NameSchema,
    /** Model-id prefixes (text before the first `/`, lower-cased) routed to this provider. */
    aliases: Type.Array(NameSchema, { minItems: 1, maxItems: 32 }),
    /** OpenAI-compatible base URL including the version path, e.g. `https://api.example.com/v1`. */
    upstream_url: Type.String({ pattern: '^https?://' }),
    /** Upstream key sent as `Authorization: Bearer`; never logged or returned unmasked. */
    upstream_api_key: Type.Optional(Type.String()),
    /** Take the key from this environment variable instead (wins over `upstream_api_key`). */
    api_key_env: Type.Optional(Type.String({ pattern: '^[A-Za-z_][A-Za-z0-9_]*$' })),
    /** Probe the upstream for /health/ready; default: only when it has a key. */
    probe: Type.Optional(Type.Boolean()),
    ...Type.Partial(Type.Object(limitFields(false))).properties,
  },
  { additionalProperties: false },
);
export type LimiterProviderConfig = Static<typeof LimiterProviderConfig>;

/** The `limiter` section of config.json (contract §6.2 plus the retreat parameters of §6.6). */
export const LimiterConfig = Type.Object(
  {
    /** Build the limiter at all. */
    enabled: Type.Boolean({ default: true }),
    /**
     * S2's separate listeners (`SIDECAR_HOST`/`SIDECAR_PORT`/`SIDECAR_METRICS_PORT`), off unless a config layer sets the
     * port: `listen_port` opens the limiter's own surface, `metrics_port` a metrics-only listener, both on `listen_host`.
     */
    listen_host: Type.String({ default: '127.0.0.1' }),
    listen_port: Type.Integer({ minimum: 0, maximum: 65535, default: 9190 }),
    metrics_port: Type.Integer({ minimum: 0, maximum: 65535, default: 9191 }),
    /** The default provider (`nvidia`): upstream base URL and key. */
    upstream_url: Type.String({ pattern: '^https?://', default: 'https://integrate.api.nvidia.com/v1' }),
    upstream_api_key: Type.String({ default: '' }),
    /** Model-id prefixes routed to the default provider (contract §3.4). */
    nvidia_aliases: Type.Array(NameSchema, { default: [...NVIDIA_ALIASES], minItems: 1, maxItems: 32 }),
    /** Probe the default upstream for /health/ready; default: only when a key is set (an offline console stays ready). */
    probe_upstream: Type.Optional(Type.Boolean()),
    log_level: Type.String({ pattern: '^(?:DEBUG|INFO|WARNING|ERROR|CRITICAL|debug|info|warning|error|critical)$', default: 'INFO' }),
    /** More OpenAI-compatible providers, each with its own bucket; omitted limits default to the fields of this section. */
    providers: Type.Array(LimiterProviderConfig, { default: [], maxItems: 32 }),
    ...limitFields(true),
  },
  { additionalProperties: false, default: {} },
);
export type LimiterConfig = Static<typeof LimiterConfig>;

/** `SIDECAR_` + field name in upper case; `NVIDIA_API_KEY` also sets the key (`SIDECAR_API_KEY` wins). */
const retreatEnv = Object.fromEntries(
  [
    'retreat_window_seconds',
    'retreat_429_threshold',
    'retreat_factor',
    'retreat_min_rpm',
    'recover_window_seconds',
    'recover_429_threshold',
    'recover_increment_rpm',
    'recover_mode',
    'max_rpm',
    'aging_seconds',
    'queue_full_policy',
  ].map((f) => [`SIDECAR_${f.toUpperCase()}`, f]),
);

export const limiterSection: ConfigSection<typeof LimiterConfig> = {
  schema: LimiterConfig,
  env: {
    SIDECAR_HOST: 'listen_host',
    SIDECAR_PORT: 'listen_port',
    SIDECAR_METRICS_PORT: 'metrics_port',
    SIDECAR_UPSTREAM: 'upstream_url',
    NVIDIA_API_KEY: 'upstream_api_key',
    SIDECAR_API_KEY: 'upstream_api_key',
    SIDECAR_RATE_RPM: 'rate_rpm',
    SIDECAR_BUCKET_CAPACITY: 'bucket_capacity',
    SIDECAR_TIMEOUT: 'request_timeout',
    SIDECAR_QUEUE_MAX: 'queue_max_size',
    SIDECAR_LOW_TIMEOUT: 'low_priority_timeout',
    SIDECAR_FALLBACK_PASSTHROUGH: 'fallback_enabled_passthrough',
    SIDECAR_LOG_LEVEL: 'log_level',
    ...retreatEnv,
  },
};
