import { Type, type Static } from '@sinclair/typebox';
import type { ConfigSection } from './section.js';

/** The NVIDIA alias set of contract §3.4 (provider = text before the first `/`, lower-cased). */
export const NVIDIA_ALIASES = ['nvidia', 'nvidia-gateway', 'nvidiavx', 'nvidiavx18088980513'] as const;

const QueueFullPolicy = Type.Union([Type.Literal('passthrough'), Type.Literal('reject'), Type.Literal('drop_lowest')]);

/**
 * How the rate climbs back after a retreat. `step` is the seed (contract §6.6): after
 * `recover_window_seconds` under `recover_429_threshold`, +`recover_increment_rpm` per upstream
 * response up to the ceiling. `probe` (faster, documented in docs/services.md): multiplicative probe, the rate
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
    rate_rpm: Type.Number({ exclusiveMinimum: 0, maximum: 1_000_000, ...d(40), description: 'Base rate (RPM): the bucket starts here, `reset` returns here.' }),
    max_rpm: Type.Number({
      minimum: 0,
      maximum: 1_000_000,
      ...d(0),
      description: 'Recovery ceiling (RPM); above the base only while demand is waiting. 0 = `rate_rpm` (the seed: recovery never goes above the base).',
    }),
    bucket_capacity: Type.Number({ exclusiveMinimum: 0, maximum: 1_000_000, ...d(40), description: 'Burst size in requests (the bucket starts full).' }),
    request_timeout: Type.Number({
      exclusiveMinimum: 0,
      maximum: 300,
      ...d(60),
      description: 'Seconds: token wait of URGENT/HIGH/NORMAL, and upstream time to first byte / between chunks.',
    }),
    connect_timeout: Type.Number({ exclusiveMinimum: 0, maximum: 300, ...d(10), description: 'Seconds to open a connection to the upstream.' }),
    queue_max_size: Type.Integer({ minimum: 1, maximum: 1_000_000, ...d(500), description: 'Queued requests per provider.' }),
    low_priority_timeout: Type.Number({ exclusiveMinimum: 0, maximum: 300, ...d(2), description: 'Seconds a LOW request waits for a token before its 429.' }),
    fallback_enabled_passthrough: Type.Boolean({
      ...d(true),
      description: 'Queue-full policy when `queue_full_policy` is absent: true → `passthrough`, false → `reject`.',
    }),
    queue_full_policy: Type.Optional(
      Type.Union(QueueFullPolicy.anyOf, {
        description:
          '`passthrough` / `reject` / `drop_lowest` (contract §6.5); absent: from `fallback_enabled_passthrough`. Passthrough overflow still waits for a token and never goes before a queued request of higher priority; at most `queue_max_size` requests overflow at once, beyond that 503. `drop_lowest` evicts the lowest-priority, newest queued request (503).',
      }),
    ),
    aging_seconds: Type.Number({
      exclusiveMinimum: 0,
      maximum: 86_400,
      ...d(30),
      description: 'Anti-starvation: a queued request moves up one priority level (up to HIGH) per this many seconds waited.',
    }),
    retreat_window_seconds: Type.Number({ exclusiveMinimum: 0, maximum: 86_400, ...d(60), description: 'Window (seconds) of the upstream 429 ratio.' }),
    retreat_429_threshold: Type.Number({
      exclusiveMinimum: 0,
      maximum: 1,
      ...d(0.05),
      description: '429 ratio in the window that triggers a retreat (again at 2×).',
    }),
    retreat_factor: Type.Number({ exclusiveMinimum: 0, exclusiveMaximum: 1, ...d(0.75), description: 'Rate × this factor per retreat.' }),
    retreat_min_rpm: Type.Number({
      exclusiveMinimum: 0,
      maximum: 1_000_000,
      ...d(5),
      description: 'Floor of a retreat (RPM); a `rate_rpm` below it is its own floor.',
    }),
    recover_window_seconds: Type.Number({ exclusiveMinimum: 0, maximum: 86_400, ...d(120), description: 'Calm seconds before recovering.' }),
    recover_429_threshold: Type.Number({ minimum: 0, maximum: 1, ...d(0.02), description: '"Calm" = 429 ratio below this.' }),
    recover_increment_rpm: Type.Number({
      exclusiveMinimum: 0,
      maximum: 1_000_000,
      ...d(2),
      description: '`step` mode: RPM added per upstream response while recovering.',
    }),
    recover_mode: Type.Union(RecoverMode.anyOf, {
      ...d('step'),
      description:
        '`step` = the seed (+`recover_increment_rpm` per response after a calm window); `probe` = multiplicative probing, × `probe_factor` per calm `probe_interval_seconds` while demand waits (see docs/configuration.md).',
    }),
    probe_factor: Type.Number({ exclusiveMinimum: 1, maximum: 10, ...d(1.25), description: '`probe` mode: rate × this factor per probe interval without 429.' }),
    probe_interval_seconds: Type.Number({ exclusiveMinimum: 0, maximum: 86_400, ...d(10), description: '`probe` mode: seconds per probe step.' }),
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
    name: Type.String({ pattern: NameSchema.pattern, maxLength: 64, description: 'Label in metrics, /status and messages (e.g. `openrouter`).' }),
    aliases: Type.Array(NameSchema, {
      minItems: 1,
      maxItems: 32,
      description: 'Model-id prefixes (text before the first `/`, lower-cased) routed to this provider.',
    }),
    upstream_url: Type.String({ pattern: '^https?://', description: 'OpenAI-compatible base URL including the version path, e.g. `https://api.example.com/v1`.' }),
    upstream_api_key: Type.Optional(Type.String({ description: 'Upstream key sent as `Authorization: Bearer`; never logged or returned unmasked.' })),
    api_key_env: Type.Optional(
      Type.String({ pattern: '^[A-Za-z_][A-Za-z0-9_]*$', description: 'Take the key from this environment variable instead (wins over `upstream_api_key`).' }),
    ),
    probe: Type.Optional(Type.Boolean({ description: 'Probe the upstream for /health/ready; default: only when it has a key.' })),
    ...Type.Partial(Type.Object(limitFields(false))).properties,
  },
  { additionalProperties: false },
);
export type LimiterProviderConfig = Static<typeof LimiterProviderConfig>;

/** The `limiter` section of config.json (contract §6.2 plus the retreat parameters of §6.6). */
export const LimiterConfig = Type.Object(
  {
    enabled: Type.Boolean({ default: true, description: 'Build the limiter at all.' }),
    listen_host: Type.String({ default: '127.0.0.1', description: 'Address of the optional `listen_port` / `metrics_port` listeners (a non-loopback address needs API keys).' }),
    listen_port: Type.Integer({
      minimum: 0,
      maximum: 65535,
      default: 9190,
      description:
        'Off unless a config layer sets it (the default alone opens nothing): the limiter\'s own surface (remote-provider /v1/*, /api/limiter/*, /status, /api/dashboard*, /api/admin/config, /health) on `listen_host:listen_port`, with the main port\'s Host/Origin and auth rules; 0 = ephemeral. Set with `enabled: false`: start-up error.',
    }),
    metrics_port: Type.Integer({
      minimum: 0,
      maximum: 65535,
      default: 9191,
      description: 'Off unless set: a metrics-only listener serving GET /metrics on `listen_host:metrics_port` (0 = ephemeral); /metrics on the main port always works.',
    }),
    upstream_url: Type.String({
      pattern: '^https?://',
      default: 'https://integrate.api.nvidia.com/v1',
      description: 'Base URL of the default provider (`nvidia`).',
    }),
    upstream_api_key: Type.String({
      default: '',
      description: 'Key of the default provider; never logged, masked (`nvap****`) in every view; empty → `Bearer nvidia` as in the seed.',
    }),
    nvidia_aliases: Type.Array(NameSchema, {
      default: [...NVIDIA_ALIASES],
      minItems: 1,
      maxItems: 32,
      description: 'Model-id prefixes routed to the default provider (contract §3.4).',
    }),
    probe_upstream: Type.Optional(
      Type.Boolean({ description: 'Probe the default upstream for /health/ready; default: only when a key is set (an offline console stays ready).' }),
    ),
    log_level: Type.String({
      pattern: '^(?:DEBUG|INFO|WARNING|ERROR|CRITICAL|debug|info|warning|error|critical)$',
      default: 'INFO',
      description: 'Level of the `limiter` logger.',
    }),
    providers: Type.Array(LimiterProviderConfig, {
      default: [],
      maxItems: 32,
      description:
        'More OpenAI-compatible providers, each with its own queue, bucket and metrics label: `{name, aliases[], upstream_url, upstream_api_key?, api_key_env?, probe?}` plus any limit field of this section to override it for that provider. Duplicate names or aliases are start-up errors.',
    }),
    ...limitFields(true),
  },
  {
    additionalProperties: false,
    default: {},
    description:
      'Rate-limiting proxy to remote OpenAI-compatible providers: per provider a 4-level priority queue and an adaptive token bucket that retreats on HTTP 429 (contract §6).',
  },
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
