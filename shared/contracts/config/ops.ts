import { Type, type Static } from '@sinclair/typebox';
import type { ConfigSection } from './section.js';

const LEVELS = ['trace', 'debug', 'info', 'warn', 'warning', 'error', 'fatal', 'critical', 'silent'] as const;

/** Log level names: pino's, plus the contract's (DEBUG, INFO, WARNING, ERROR, CRITICAL), lower or upper case. */
export const LogLevelName = Type.Union([...LEVELS, ...LEVELS.map((l) => l.toUpperCase())].map((l) => Type.Literal(l)), {
  default: 'info',
});

export const OpsConfig = Type.Object(
  {
    /** Root log level; each named logger can be changed at run time via GET /loglevel. */
    logLevel: LogLevelName,
    runScript: Type.Object(
      {
        /** POST /run_script is off unless this is true. */
        enabled: Type.Boolean({ default: false }),
        /** Wall-time limit for one script. */
        timeoutSeconds: Type.Number({ default: 30, exclusiveMinimum: 0, maximum: 3600 }),
        /** Memory limit (heap and resident set) for one script. */
        memoryMb: Type.Integer({ default: 256, minimum: 16, maximum: 65536 }),
        /** Largest script accepted. */
        maxUploadBytes: Type.Integer({ default: 256 * 1024, minimum: 1, maximum: 16 * 1024 * 1024 }),
      },
      { additionalProperties: false, default: {} },
    ),
    /** Rolling online backups of console.db (SQLite backup API) in `<data dir>/backups`. */
    storeBackup: Type.Object(
      {
        /** Backups kept (oldest removed first); 0 turns backups off. */
        keep: Type.Integer({ default: 5, minimum: 0, maximum: 100 }),
        /** Seconds between backups; one is also taken at every start, after migrations. */
        intervalSeconds: Type.Integer({ default: 3600, minimum: 60, maximum: 7 * 24 * 3600 }),
      },
      { additionalProperties: false, default: {} },
    ),
  },
  { additionalProperties: false, default: {} },
);
export type OpsConfig = Static<typeof OpsConfig>;

export const opsSection: ConfigSection<typeof OpsConfig> = {
  schema: OpsConfig,
  env: {
    CONSOLE_LOG_LEVEL: 'logLevel',
    CONSOLE_RUN_SCRIPT_ENABLED: 'runScript.enabled',
    CONSOLE_STORE_BACKUPS: 'storeBackup.keep',
  },
};
