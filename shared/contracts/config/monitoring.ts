import { Type, type Static } from '@sinclair/typebox';
import type { ConfigSection } from './section.js';

/** What the timeout manager does, after releasing the lock, when a task misses its heartbeat. */
export const TimeoutRecovery = Type.Union([Type.Literal('cancel'), Type.Literal('retry'), Type.Literal('notify')], { default: 'cancel' });
export type TimeoutRecovery = Static<typeof TimeoutRecovery>;

/** The `monitoring` section of config.json (defaults from seed 004 / contract §7). */
export const MonitoringConfig = Type.Object(
  {
    monitor: Type.Object(
      {
        /** The monitor loop starts with the console (it can be stopped/started over HTTP). */
        enabled: Type.Boolean({ default: true }),
        /** Seconds between monitor checks (S4 `check_interval` / `monitor_check_interval`). */
        checkIntervalSeconds: Type.Number({ default: 30, exclusiveMinimum: 0, maximum: 3600 }),
      },
      { additionalProperties: false, default: {} },
    ),
    locks: Type.Object(
      {
        /** GPU ids that can be locked (`gpu_lock:<id>`); GPUs found by telemetry are added. */
        gpuIds: Type.Array(Type.Integer({ minimum: 0, maximum: 1023 }), { default: [0], maxItems: 1024 }),
        /** TTL of a lock when the request names none (contract §7: 3000 s). */
        defaultTtlSeconds: Type.Number({ default: 3000, exclusiveMinimum: 0, maximum: 7 * 86400 }),
        /** Largest TTL a request may ask for (larger → 400). */
        maxTtlSeconds: Type.Number({ default: 86400, exclusiveMinimum: 0, maximum: 7 * 86400 }),
        /** A task's lock older than this with no fresh heartbeat is timed out (S4 `gpu_timeout`). */
        gpuTimeoutSeconds: Type.Number({ default: 300, exclusiveMinimum: 0, maximum: 7 * 86400 }),
        /** Longest `wait_seconds` an acquire may ask for. */
        maxWaitSeconds: Type.Number({ default: 300, minimum: 0, maximum: 3600 }),
        /** History entries kept per lock in the store (the API shows the last 20). */
        historyKept: Type.Integer({ default: 1000, minimum: 20, maximum: 100000 }),
      },
      { additionalProperties: false, default: {} },
    ),
    heartbeat: Type.Object(
      {
        /** A running task whose last beat is older than this is timed out (S4 `heartbeat_timeout`). */
        timeoutSeconds: Type.Number({ default: 120, exclusiveMinimum: 0, maximum: 7 * 86400 }),
        /** Expected beat interval (S4 example: 15 s); informational, shown to clients. */
        intervalSeconds: Type.Number({ default: 15, exclusiveMinimum: 0, maximum: 3600 }),
        /** A beat for an unknown task registers it (instead of 404). */
        autoRegister: Type.Boolean({ default: false }),
        /**
         * Ended tasks (completed, failed, cancelled, timed out) are listed as dead for this long, then
         * forgotten by the monitor loop (POST /heartbeat/cleanup forgets them at once).
         */
        endedRetentionSeconds: Type.Number({ default: 3600, exclusiveMinimum: 0, maximum: 30 * 86400 }),
      },
      { additionalProperties: false, default: {} },
    ),
    timeout: Type.Object(
      {
        /** Run recovery on timeouts (S4 `auto_recovery_enabled`); when false, timeouts are only reported. */
        autoRecovery: Type.Boolean({ default: true }),
        /** What happens to a timed-out task after its lock is released. */
        recovery: TimeoutRecovery,
        /** Retries of a failed forced release, and re-arms of a task under `retry` (S4 `max_retry_attempts`). */
        maxRetryAttempts: Type.Integer({ default: 3, minimum: 0, maximum: 100 }),
      },
      { additionalProperties: false, default: {} },
    ),
    telemetry: Type.Object(
      {
        enabled: Type.Boolean({ default: true }),
        /** Seconds between samples of CPU/RAM and (on NVIDIA) GPU telemetry. */
        intervalSeconds: Type.Number({ default: 5, minimum: 0.2, maximum: 3600 }),
        /** Samples kept in the ring buffer. */
        historySize: Type.Integer({ default: 120, minimum: 1, maximum: 10000 }),
        /** The nvidia-smi executable (name on PATH or absolute path). */
        nvidiaSmiPath: Type.String({ default: 'nvidia-smi', minLength: 1 }),
        /**
         * Keep one nvidia-smi running with `--loop-ms` (NVML initialised once) instead of starting
         * it for every sample; a one-shot call is still used to detect it and after it exits.
         */
        nvidiaSmiLoop: Type.Boolean({ default: true }),
        /** Longest one nvidia-smi call may take. */
        nvidiaSmiTimeoutMs: Type.Integer({ default: 5000, minimum: 100, maximum: 60000 }),
      },
      { additionalProperties: false, default: {} },
    ),
  },
  { additionalProperties: false, default: {} },
);
export type MonitoringConfig = Static<typeof MonitoringConfig>;

export const monitoringSection: ConfigSection<typeof MonitoringConfig> = {
  schema: MonitoringConfig,
  env: {
    CONSOLE_MONITOR_ENABLED: 'monitor.enabled',
    CONSOLE_MONITOR_CHECK_INTERVAL: 'monitor.checkIntervalSeconds',
    CONSOLE_GPU_LOCK_TIMEOUT: 'locks.gpuTimeoutSeconds',
    CONSOLE_GPU_LOCK_TTL: 'locks.defaultTtlSeconds',
    CONSOLE_GPU_IDS: 'locks.gpuIds',
    CONSOLE_HEARTBEAT_TIMEOUT: 'heartbeat.timeoutSeconds',
    CONSOLE_TIMEOUT_RECOVERY: 'timeout.recovery',
    CONSOLE_TELEMETRY_INTERVAL: 'telemetry.intervalSeconds',
    CONSOLE_NVIDIA_SMI: 'telemetry.nvidiaSmiPath',
  },
};
