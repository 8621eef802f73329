import { Type, type Static } from '@sinclair/typebox';
import type { ConfigSection } from './section.js';

/** What the timeout manager does, after releasing the lock, when a task misses its heartbeat. */
export const TimeoutRecovery = Type.Union([Type.Literal('cancel'), Type.Literal('retry'), Type.Literal('notify')], {
  default: 'cancel',
  description:
    'After a missed heartbeat (task marked `timed_out`, its lock released, event logged): `cancel` calls the owner\'s `onTimeout` handlers; `retry` gives the task a fresh heartbeat window, keeping its lock, up to `maxRetryAttempts` times, then cancels; `notify` only emits the event.',
});
export type TimeoutRecovery = Static<typeof TimeoutRecovery>;

/** The `monitoring` section of config.json (defaults from seed 004 / contract §7). */
export const MonitoringConfig = Type.Object(
  {
    monitor: Type.Object(
      {
        enabled: Type.Boolean({ default: true, description: 'The monitor loop starts with the console (it can be stopped/started over HTTP).' }),
        checkIntervalSeconds: Type.Number({ default: 30, exclusiveMinimum: 0, maximum: 3600, description: 'Seconds between monitor checks (S4 `check_interval` / `monitor_check_interval`).' }),
      },
      { additionalProperties: false, default: {}, description: 'The monitor loop: GPU lock TTLs and the heartbeat sweep with timeout recovery.' },
    ),
    locks: Type.Object(
      {
        gpuIds: Type.Array(Type.Integer({ minimum: 0, maximum: 1023 }), { default: [0], maxItems: 1024, description: 'GPU ids that can be locked (`gpu_lock:<id>`); GPUs nvidia-smi reports are added; others → 404.' }),
        defaultTtlSeconds: Type.Number({ default: 3000, exclusiveMinimum: 0, maximum: 7 * 86400, description: 'TTL of a lock when the request names none (contract §7: 3000 s).' }),
        maxTtlSeconds: Type.Number({ default: 86400, exclusiveMinimum: 0, maximum: 7 * 86400, description: 'Largest TTL a request may ask for (larger → 400).' }),
        gpuTimeoutSeconds: Type.Number({ default: 300, exclusiveMinimum: 0, maximum: 7 * 86400, description: 'A lock older than this without a live heartbeat is timed out (S4 `gpu_timeout`): the heartbeat of the task named by the lock\'s `task_id`, or of the task registered with its fencing token; a lock no heartbeat belongs to is timed out too.' }),
        maxWaitSeconds: Type.Number({ default: 300, minimum: 0, maximum: 3600, description: 'Longest `wait_seconds` an acquire may ask for.' }),
        historyKept: Type.Integer({ default: 1000, minimum: 20, maximum: 100000, description: 'History entries kept per lock in the store (the API shows the last 20).' }),
      },
      { additionalProperties: false, default: {}, description: 'GPU locks with TTL and fencing tokens (contract §7).' },
    ),
    heartbeat: Type.Object(
      {
        timeoutSeconds: Type.Number({ default: 120, exclusiveMinimum: 0, maximum: 7 * 86400, description: 'A running task whose last beat is older than this is timed out (S4 `heartbeat_timeout`).' }),
        intervalSeconds: Type.Number({ default: 15, exclusiveMinimum: 0, maximum: 3600, description: 'Expected beat interval (S4 example: 15 s); informational, shown to clients.' }),
        autoRegister: Type.Boolean({ default: false, description: 'A beat for an unknown task registers it (instead of 404).' }),
        endedRetentionSeconds: Type.Number({ default: 3600, exclusiveMinimum: 0, maximum: 30 * 86400, description: 'Ended tasks (completed, failed, cancelled, timed out) are listed as dead for this long, then forgotten by the monitor loop (POST /heartbeat/cleanup forgets them at once).' }),
      },
      { additionalProperties: false, default: {}, description: 'Task heartbeats.' },
    ),
    timeout: Type.Object(
      {
        autoRecovery: Type.Boolean({ default: true, description: 'Run recovery on timeouts (S4 `auto_recovery_enabled`); when false, timeouts are only reported.' }),
        recovery: TimeoutRecovery,
        maxRetryAttempts: Type.Integer({ default: 3, minimum: 0, maximum: 100, description: 'Retries of a failed forced release, and re-arms of a task under `retry` (S4 `max_retry_attempts`).' }),
      },
      { additionalProperties: false, default: {}, description: 'The timeout manager.' },
    ),
    telemetry: Type.Object(
      {
        enabled: Type.Boolean({ default: true, description: 'Sample CPU/RAM (systeminformation) and NVIDIA GPUs (nvidia-smi).' }),
        intervalSeconds: Type.Number({ default: 5, minimum: 0.2, maximum: 3600, description: 'Seconds between samples of CPU/RAM and (on NVIDIA) GPU telemetry.' }),
        historySize: Type.Integer({ default: 120, minimum: 1, maximum: 10000, description: 'Samples kept in the ring buffer.' }),
        nvidiaSmiPath: Type.String({ default: 'nvidia-smi', minLength: 1, description: 'The nvidia-smi executable (name on PATH or absolute path).' }),
        nvidiaSmiLoop: Type.Boolean({ default: true, description: 'Keep one nvidia-smi running with `--loop-ms` (NVML initialised once) instead of starting it for every sample; a one-shot call is still used to detect it and after it exits.' }),
        nvidiaSmiTimeoutMs: Type.Integer({ default: 5000, minimum: 100, maximum: 60000, description: 'Longest one nvidia-smi call may take.' }),
      },
      { additionalProperties: false, default: {}, description: 'CPU/RAM and GPU telemetry sampling.' },
    ),
  },
  {
    additionalProperties: false,
    default: {},
    description: 'GPU locks with TTL and fencing tokens, task heartbeats, the timeout manager, the monitor loop and GPU telemetry (seed 004, contract §7).',
  },
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
