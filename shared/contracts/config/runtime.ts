import { Type, type Static } from '@sinclair/typebox';
import type { ConfigSection } from './section.js';

/** A process name: used in URLs and as the log file name, so a plain slug. */
export const ProcessName = Type.String({ pattern: '^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$' });

/** What the supervisor does when a process exits on its own after a successful start-up. */
export const RestartPolicy = Type.Object(
  {
    policy: Type.Union([Type.Literal('never'), Type.Literal('on-failure'), Type.Literal('always')], { default: 'never', description: '`never`: stay exited; `on-failure`: restart after a non-zero exit or a signal; `always`: restart after any exit.' }),
    initialDelaySeconds: Type.Number({ default: 1, minimum: 0, maximum: 3600, description: 'Delay before the first restart; each further one multiplies it by `multiplier`, up to `maxDelaySeconds`.' }),
    maxDelaySeconds: Type.Number({ default: 60, minimum: 0, maximum: 86400, description: 'Longest delay between restarts.' }),
    multiplier: Type.Number({ default: 2, minimum: 1, maximum: 10, description: 'Factor applied to the delay after each restart.' }),
    maxRestarts: Type.Integer({ default: 10, minimum: 0, maximum: 1_000_000, description: 'Consecutive restarts before giving up (state `failed`); 0 = unlimited.' }),
    resetAfterSeconds: Type.Number({ default: 60, minimum: 0, maximum: 86400, description: 'A process that stayed up this long resets the backoff and the consecutive-restart count.' }),
  },
  { additionalProperties: false, default: {}, description: 'What the supervisor does when the process exits on its own after a successful start-up (exponential backoff on the injected clock).' },
);
export type RestartPolicy = Static<typeof RestartPolicy>;

/** One supervised process (contract §8: the "gateway" is the one named by `runtime.gateway`). */
export const RuntimeProcessConfig = Type.Object(
  {
    name: Type.String({ pattern: ProcessName.pattern, description: 'A plain slug (`[A-Za-z0-9][A-Za-z0-9_-]{0,63}`): the log file and URL name.' }),
    command: Type.String({ minLength: 1, maxLength: 4096, description: 'Executable: an absolute path, a path relative to `cwd`, or a name looked up in PATH.' }),
    args: Type.Array(Type.String({ maxLength: 65536 }), { default: [], maxItems: 1000, description: 'Arguments passed to `command`.' }),
    env: Type.Record(Type.String({ pattern: '^[A-Za-z_][A-Za-z0-9_]*$' }), Type.String(), { default: {}, description: 'Extra environment for the child (on top of the console\'s environment minus its own secrets).' }),
    cwd: Type.Optional(Type.String({ minLength: 1, description: 'Working directory; default: the data dir.' })),
    port: Type.Optional(Type.Integer({ minimum: 1, maximum: 65535, description: 'Port the process listens on (for the §8.3 port check); the gateway\'s contract default is 8765.' })),
    healthUrl: Type.Optional(Type.String({ pattern: '^https?://[^\\s]+$', description: 'HTTP URL probed (GET, status < 500 = healthy) for start-up readiness and health; else a TCP check of `port`.' })),
    startupTimeoutSeconds: Type.Number({ default: 30, exclusiveMinimum: 0, maximum: 3600, description: 'Longest wait for the health URL (or port) to answer after spawn; then the process is killed and start fails.' }),
    startupWatchSeconds: Type.Number({ default: 5, minimum: 0, maximum: 3600, description: 'Without a health URL or port: the process must stay up this long for start to succeed (contract: 5 s).' }),
    stopGraceSeconds: Type.Number({ default: 10, minimum: 0, maximum: 3600, description: 'Time between SIGTERM and SIGKILL when stopping (contract: 10 s).' }),
    requiredEnv: Type.Array(Type.String({ minLength: 1 }), { default: [], description: 'Environment variables that must be set (in `env` or the console\'s environment) before start.' }),
    autoStart: Type.Boolean({ default: false, description: 'Start this process when the console starts (failures are logged, never fatal).' }),
    restart: RestartPolicy,
  },
  { additionalProperties: false, description: 'One supervised process (the contract\'s "gateway" is the one named by `runtime.gateway`).' },
);
export type RuntimeProcessConfig = Static<typeof RuntimeProcessConfig>;

/** The `runtime` section of config.json. */
export const RuntimeConfig = Type.Object(
  {
    processes: Type.Array(RuntimeProcessConfig, { default: [], maxItems: 64, description: 'Supervised processes.' }),
    gateway: Type.String({ default: 'gateway', minLength: 1, description: 'Which process the contract\'s single-gateway endpoints (§8) drive.' }),
    gatewayPort: Type.Integer({ default: 8765, minimum: 1, maximum: 65535, description: 'Port reported for the gateway when its entry has none (contract §1.1).' }),
    modeEnv: Type.Object(
      {
        live: Type.Array(Type.String({ minLength: 1 }), { default: ['FINNHUB_API_KEY', 'MODEL_NAME', 'OPENAI_API_KEY'], description: 'Env vars a `live` gateway start needs.' }),
        backtest: Type.Array(Type.String({ minLength: 1 }), { default: ['MODEL_NAME', 'OPENAI_API_KEY'], description: 'Env vars a `backtest` gateway start needs.' }),
      },
      { additionalProperties: false, default: {}, description: 'Environment variables a gateway start needs per mode (contract §8.5; values from the seed).' },
    ),
    orphanPolicy: Type.Union([Type.Literal('report'), Type.Literal('kill')], { default: 'report', description: 'A process left running by a previous console run: `report` it (status + admin kill action) or `kill` it at start.' }),
    logMaxBytes: Type.Integer({ default: 10 * 1024 * 1024, minimum: 1024, maximum: 1024 * 1024 * 1024, description: 'Per-process log file size that triggers rotation (`<name>.log` → `<name>.log.1` ...).' }),
    logMaxFiles: Type.Integer({ default: 3, minimum: 0, maximum: 100, description: 'Rotated files kept per process besides the current one.' }),
  },
  {
    additionalProperties: false,
    default: {},
    description: 'Supervisor of external processes (the contract\'s gateway and any others), each in its own process group; logs in `DATA_DIR/logs/runtime/`.',
  },
);
export type RuntimeConfig = Static<typeof RuntimeConfig>;

export const runtimeSection: ConfigSection<typeof RuntimeConfig> = {
  schema: RuntimeConfig,
  env: {
    CONSOLE_RUNTIME_GATEWAY: 'gateway',
    CONSOLE_RUNTIME_ORPHAN_POLICY: 'orphanPolicy',
    CONSOLE_RUNTIME_LOG_MAX_BYTES: 'logMaxBytes',
  },
};
