import { EventEmitter } from 'node:events';
import { Writable } from 'node:stream';
import pino, { type Logger, type LevelWithSilent } from 'pino';
import pinoPretty from 'pino-pretty';

/** One log record as kept for the dashboard's live log view. */
export interface LogRecord {
  time: number;
  level: string;
  module: string;
  msg: string;
  [key: string]: unknown;
}

const PINO_LEVELS: Record<string, LevelWithSilent> = {
  trace: 'trace',
  debug: 'debug',
  info: 'info',
  warn: 'warn',
  warning: 'warn',
  error: 'error',
  fatal: 'fatal',
  critical: 'fatal',
  silent: 'silent',
};
const CONTRACT_NAMES: Record<string, string> = {
  trace: 'TRACE',
  debug: 'DEBUG',
  info: 'INFO',
  warn: 'WARNING',
  error: 'ERROR',
  fatal: 'CRITICAL',
  silent: 'SILENT',
};
const NUM_TO_LEVEL: Record<number, string> = { 10: 'trace', 20: 'debug', 30: 'info', 40: 'warn', 50: 'error', 60: 'fatal' };

/** Maps `DEBUG`, `warning`, `CRITICAL`… to a pino level; undefined when unknown. */
export function toPinoLevel(name: string): LevelWithSilent | undefined {
  return PINO_LEVELS[name.toLowerCase()];
}

/** Maps a pino level to the contract's name (`warn` → `WARNING`, `fatal` → `CRITICAL`). */
export function toContractLevel(level: string): string {
  return CONTRACT_NAMES[level] ?? level.toUpperCase();
}

export interface LoggerRegistryOptions {
  level: string;
  /** Where log lines go; stdout by default. Tests pass a sink to keep output quiet. */
  destination?: NodeJS.WritableStream;
  /** `json` (default): one JSON object per line. `pretty`: readable lines (pino-pretty) for a terminal. */
  format?: 'json' | 'pretty';
  /** Colour the pretty lines (when the destination is a terminal). */
  colorize?: boolean;
  /** How many recent records to keep for the GUI. */
  ringSize?: number;
}

/**
 * Named child loggers whose levels can be changed at run time (GET /loglevel), plus a ring buffer
 * and an event stream of recent records for the dashboard.
 */
export class LoggerRegistry {
  readonly root: Logger;
  private readonly loggers = new Map<string, Logger>();
  private readonly ring: LogRecord[] = [];
  private readonly ringSize: number;
  private readonly events = new EventEmitter();

  constructor(options: LoggerRegistryOptions) {
    this.ringSize = options.ringSize ?? 2000;
    const tap = new Writable({
      write: (chunk: Buffer, _enc, cb) => {
        this.capture(chunk.toString('utf8'));
        cb();
      },
    });
    const streams: pino.StreamEntry[] = [{ level: 'trace', stream: tap }];
    const destination = options.destination ?? process.stdout;
    streams.push({ level: 'trace', stream: options.format === 'pretty' ? prettyStream(destination, options.colorize ?? false) : destination });
    this.root = pino(
      {
        level: toPinoLevel(options.level) ?? 'info',
        base: undefined,
        redact: { paths: ['*.apiKey', '*.api_key', '*.token', '*.authorization', 'req.headers.authorization', 'req.headers["x-api-key"]'], censor: '****' },
      },
      pino.multistream(streams),
    );
    this.loggers.set('root', this.root);
    this.events.setMaxListeners(0);
  }

  /** Returns the logger for `name` (created on first use, inheriting the root level). */
  get(name: string): Logger {
    let logger = this.loggers.get(name);
    if (!logger) {
      logger = this.root.child({ module: name });
      this.loggers.set(name, logger);
    }
    return logger;
  }

  has(name: string): boolean {
    return this.loggers.has(name);
  }

  /** All loggers with their levels, sorted by name. */
  list(): Array<{ name: string; level: string }> {
    return [...this.loggers.entries()]
      .map(([name, logger]) => ({ name, level: logger.level }))
      .sort((a, b) => a.name.localeCompare(b.name));
  }

  /** Sets one logger's level ('root' also sets every logger that still follows the old root level). */
  setLevel(name: string, level: LevelWithSilent): void {
    const logger = this.get(name);
    if (name === 'root') {
      const old = this.root.level;
      for (const [n, l] of this.loggers) if (n !== 'root' && l.level === old) l.level = level;
    }
    logger.level = level;
  }

  /** Recent records, oldest first, optionally filtered. */
  recent(filter: { module?: string; minLevel?: string; limit?: number } = {}): LogRecord[] {
    const min = filter.minLevel ? levelNumber(filter.minLevel) : 0;
    const out = this.ring.filter((r) => (!filter.module || r.module === filter.module) && levelNumber(r.level) >= min);
    return filter.limit ? out.slice(-filter.limit) : out;
  }

  onRecord(listener: (record: LogRecord) => void): () => void {
    this.events.on('record', listener);
    return () => this.events.off('record', listener);
  }

  async flush(): Promise<void> {
    await new Promise<void>((resolve) => this.root.flush(() => resolve()));
  }

  private capture(line: string): void {
    for (const part of line.split('\n')) {
      if (!part) continue;
      let obj: Record<string, unknown>;
      try {
        obj = JSON.parse(part) as Record<string, unknown>;
      } catch {
        continue;
      }
      const record: LogRecord = {
        ...obj,
        time: typeof obj.time === 'number' ? obj.time : Date.now(),
        level: NUM_TO_LEVEL[obj.level as number] ?? String(obj.level),
        module: typeof obj.module === 'string' ? obj.module : 'root',
        msg: typeof obj.msg === 'string' ? obj.msg : '',
      };
      this.ring.push(record);
      if (this.ring.length > this.ringSize) this.ring.splice(0, this.ring.length - this.ringSize);
      this.events.emit('record', record);
    }
  }
}

/** Formats each JSON line with pino-pretty (`12:00:01.234 INFO [engine] model loaded {…}`) and writes it on. */
function prettyStream(destination: NodeJS.WritableStream, colorize: boolean): Writable {
  const format = pinoPretty.prettyFactory({
    colorize,
    translateTime: 'SYS:HH:MM:ss.l',
    ignore: 'pid,hostname,module',
    messageFormat: '{if module}[{module}] {end}{msg}',
    singleLine: true,
  });
  return new Writable({
    write: (chunk: Buffer, _enc, cb) => {
      destination.write(format(chunk.toString('utf8')));
      cb();
    },
  });
}

function levelNumber(level: string): number {
  const pinoLevel = toPinoLevel(level) ?? level;
  const entry = Object.entries(NUM_TO_LEVEL).find(([, l]) => l === pinoLevel);
  return entry ? Number(entry[0]) : 0;
}
