import { Type, type Static } from '@sinclair/typebox';
import type { ConfigSection } from './section.js';

const LEVELS = ['trace', 'debug', 'info', 'warn', 'warning', 'error', 'fatal', 'critical', 'silent'] as const;

/** Log level names: pino's, plus the contract's (DEBUG, INFO, WARNING, ERROR, CRITICAL), lower or upper case. */
export const LogLevelName = Type.Union([...LEVELS, ...LEVELS.map((l) => l.toUpperCase())].map((l) => Type.Literal(l)), {
  default: 'info',
  description: 'Root log level (pino\'s names or the contract\'s DEBUG/INFO/WARNING/ERROR/CRITICAL); each named logger can be changed at run time via /loglevel.',
});

export const OpsConfig = Type.Object(
  {
    logLevel: LogLevelName,
    logFormat: Type.Union([Type.Literal('auto'), Type.Literal('json'), Type.Literal('pretty')], {
      default: 'auto',
      description: 'Log lines on stdout: `auto` = readable lines (pino-pretty) when stdout is a terminal, JSON lines otherwise; `json` or `pretty` force one. Applies at start.',
    }),
    shutdownGraceSeconds: Type.Number({
      default: 30,
      minimum: 0,
      maximum: 3600,
      description:
        'Drain on stop (first SIGINT/SIGTERM, tray Quit, a service stopped from the tray): listeners stop accepting, work in flight (requests, generations, gateway processes, run_script) may finish for up to this many seconds, then what is left is aborted. A second signal aborts at once. Keep systemd `TimeoutStopSec` / `docker stop -t` above it. Read when the stop begins.',
    }),
    runScript: Type.Object(
      {
        enabled: Type.Boolean({ default: false, description: 'POST /run_script is off unless this is true.' }),
        timeoutSeconds: Type.Number({ default: 30, exclusiveMinimum: 0, maximum: 3600, description: 'Wall-time limit for one script.' }),
        memoryMb: Type.Integer({ default: 256, minimum: 16, maximum: 65536, description: 'Memory limit (heap and resident set) for one script.' }),
        maxUploadBytes: Type.Integer({ default: 256 * 1024, minimum: 1, maximum: 16 * 1024 * 1024, description: 'Largest script accepted.' }),
      },
      { additionalProperties: false, default: {}, description: '`POST /run_script`: a JavaScript file run in a separate, limited child process.' },
    ),
    storeBackup: Type.Object(
      {
        keep: Type.Integer({ default: 5, minimum: 0, maximum: 100, description: 'Rolling online backups of console.db kept in `DATA_DIR/backups/` (oldest removed first); 0 turns backups off.' }),
        intervalSeconds: Type.Integer({ default: 3600, minimum: 60, maximum: 7 * 24 * 3600, description: 'Seconds between backups (60 s to 7 days); one is also taken at every start, after migrations.' }),
      },
      { additionalProperties: false, default: {}, description: 'Rolling online backups of console.db (SQLite backup API) in `DATA_DIR/backups`.' },
    ),
  },
  { additionalProperties: false, default: {}, description: 'Logging, the ops endpoints and store backups.' },
);
export type OpsConfig = Static<typeof OpsConfig>;

export const opsSection: ConfigSection<typeof OpsConfig> = {
  schema: OpsConfig,
  env: {
    CONSOLE_LOG_LEVEL: 'logLevel',
    CONSOLE_LOG_FORMAT: 'logFormat',
    CONSOLE_SHUTDOWN_GRACE_SECONDS: 'shutdownGraceSeconds',
    CONSOLE_RUN_SCRIPT_ENABLED: 'runScript.enabled',
    CONSOLE_STORE_BACKUPS: 'storeBackup.keep',
  },
};
