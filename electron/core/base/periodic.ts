import type { Logger } from 'pino';
import type { Clock, TimerHandle } from './clock.js';

export type PeriodicLevel = 'critical' | 'high' | 'medium' | 'low';
export const PERIODIC_LEVELS: readonly PeriodicLevel[] = ['critical', 'high', 'medium', 'low'];

export interface PeriodicTaskOptions {
  /** Unique name shown in /periodic-threads. */
  name: string;
  level: PeriodicLevel;
  intervalSeconds: number;
  /** One tick of work. Errors are logged and counted, never stop the loop. */
  run: () => void | Promise<void>;
  /** Run once immediately on start (default true). */
  runOnStart?: boolean;
}

/** What /periodic-threads shows for one task (contract §2.6). */
export interface PeriodicTaskInfo {
  name: string;
  level: PeriodicLevel;
  is_running: boolean;
  is_active: boolean;
  last_run_time: string | null;
  last_run_ago: number | null;
  interval: number;
  run_count: number;
  error_count: number;
  last_error: string | null;
  last_duration_ms: number | null;
}

/** A handle a service keeps to start and stop its own periodic task. */
export interface PeriodicTask {
  readonly name: string;
  start(): void;
  stop(): void;
  /** Runs one tick now (tests, and "run now" buttons). */
  runNow(): Promise<void>;
  setInterval(seconds: number): void;
}

class Task implements PeriodicTask {
  private timer: TimerHandle | null = null;
  private lastRunMono: number | null = null;
  private lastRunWall: number | null = null;
  private runCount = 0;
  private errorCount = 0;
  private lastError: string | null = null;
  private lastDuration: number | null = null;
  private inFlight: Promise<void> | null = null;

  constructor(
    private options: PeriodicTaskOptions,
    private readonly clock: Clock,
    private readonly logger: Logger,
  ) {}

  get name(): string {
    return this.options.name;
  }

  start(): void {
    if (this.timer) return;
    this.timer = this.clock.setInterval(() => void this.runNow(), this.options.intervalSeconds * 1000);
    if (this.options.runOnStart !== false) void this.runNow();
  }

  stop(): void {
    this.timer?.cancel();
    this.timer = null;
  }

  setInterval(seconds: number): void {
    this.options = { ...this.options, intervalSeconds: seconds };
    if (this.timer) {
      this.stop();
      this.timer = this.clock.setInterval(() => void this.runNow(), seconds * 1000);
    }
  }

  async runNow(): Promise<void> {
    if (this.inFlight) return this.inFlight; // never overlap ticks of one task
    const started = this.clock.monotonic();
    this.inFlight = (async () => {
      try {
        await this.options.run();
      } catch (err) {
        this.errorCount++;
        this.lastError = (err as Error).message ?? String(err);
        this.logger.warn({ err, task: this.options.name }, 'periodic task failed');
      } finally {
        this.runCount++;
        this.lastRunMono = this.clock.monotonic();
        this.lastRunWall = this.clock.now();
        this.lastDuration = this.lastRunMono - started;
        this.inFlight = null;
      }
    })();
    return this.inFlight;
  }

  info(): PeriodicTaskInfo {
    const running = this.timer !== null;
    const ago = this.lastRunMono === null ? null : (this.clock.monotonic() - this.lastRunMono) / 1000;
    const interval = this.options.intervalSeconds;
    return {
      name: this.options.name,
      level: this.options.level,
      is_running: running,
      is_active: running && ago !== null && ago <= 3 * interval,
      last_run_time: this.lastRunWall === null ? null : new Date(this.lastRunWall).toISOString().replace('Z', ''),
      last_run_ago: ago === null ? null : Math.round(ago * 1000) / 1000,
      interval,
      run_count: this.runCount,
      error_count: this.errorCount,
      last_error: this.lastError,
      last_duration_ms: this.lastDuration,
    };
  }
}

/**
 * The registry behind /periodic-threads. Services register their loops here and start/stop them
 * with their own lifecycle; the registry stops any still running when the console stops.
 */
export class PeriodicTaskRegistry {
  private readonly tasks = new Map<string, Task>();

  constructor(
    private readonly clock: Clock,
    private readonly logger: Logger,
  ) {}

  register(options: PeriodicTaskOptions): PeriodicTask {
    if (this.tasks.has(options.name)) throw new Error(`periodic task already registered: ${options.name}`);
    if (!(options.intervalSeconds > 0)) throw new Error(`periodic task ${options.name}: interval must be > 0`);
    const task = new Task(options, this.clock, this.logger);
    this.tasks.set(options.name, task);
    return task;
  }

  unregister(name: string): void {
    this.tasks.get(name)?.stop();
    this.tasks.delete(name);
  }

  list(): PeriodicTaskInfo[] {
    return [...this.tasks.values()].map((t) => t.info());
  }

  get(name: string): PeriodicTaskInfo | undefined {
    return this.tasks.get(name)?.info();
  }

  stopAll(): void {
    for (const t of this.tasks.values()) t.stop();
  }
}
