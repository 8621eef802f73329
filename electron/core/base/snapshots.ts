import { cpus, freemem, totalmem } from 'node:os';
import { monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks';
import type { Logger } from 'pino';
import type { ConsoleSnapshot, CoreSnapshot } from '../../../shared/contracts/console.js';
import type { Clock, TimerHandle } from './clock.js';
import type { MetricsRegistry } from './metrics.js';

/** A cheap, synchronous view of one service's live state (what its dashboard page shows). */
export type SnapshotProvider = () => object;

/**
 * Where services' `snapshot()` functions are registered by name (the composition root does it:
 * `snapshots.register('limiter', () => limiter.snapshot())`). The stream calls every provider once
 * per tick, however many viewers are connected.
 */
export class SnapshotRegistry {
  private readonly providers = new Map<string, SnapshotProvider>();
  private readonly adminOnlyNames = new Set<string>();

  /**
   * Registers a provider; returns a function that removes it. A second provider for a name
   * replaces the first. `adminOnly` sections (e.g. ones carrying log lines) reach only viewers
   * that connected with the admin token.
   */
  register(name: string, provider: SnapshotProvider, options: { adminOnly?: boolean } = {}): () => void {
    this.providers.set(name, provider);
    if (options.adminOnly) this.adminOnlyNames.add(name);
    else this.adminOnlyNames.delete(name);
    return () => {
      if (this.providers.get(name) !== provider) return;
      this.providers.delete(name);
      this.adminOnlyNames.delete(name);
    };
  }

  names(): string[] {
    return [...this.providers.keys()];
  }

  /** Names of the sections only admin viewers get. */
  adminOnly(): ReadonlySet<string> {
    return this.adminOnlyNames;
  }

  /** Calls every provider; one that throws is reported under `errors` and the others still run. */
  collect(): { services: Record<string, unknown>; errors: Record<string, string> } {
    const services: Record<string, unknown> = {};
    const errors: Record<string, string> = {};
    for (const [name, provider] of this.providers) {
      try {
        services[name] = provider();
      } catch (err) {
        errors[name] = (err as Error).message ?? String(err);
      }
    }
    return { services, errors };
  }
}

export interface CoreStatsOptions {
  clock: Clock;
  metrics: MetricsRegistry;
  version: string;
  /** Monotonic ms when the console started. */
  startedMono: number;
}

function cpuTimes(): { idle: number; total: number } {
  let idle = 0;
  let total = 0;
  for (const c of cpus()) {
    idle += c.times.idle;
    total += c.times.user + c.times.nice + c.times.sys + c.times.idle + c.times.irq;
  }
  return { idle, total };
}

/** Facts about the core process, measured as deltas between two samples (one per stream tick). */
export class CoreStats {
  private readonly loop: IntervalHistogram = monitorEventLoopDelay({ resolution: 20 });
  private lastMono: number;
  private lastCpu = process.cpuUsage();
  private lastSys = cpuTimes();
  private lastRequests: number | null = null;
  private enabled = false;

  constructor(private readonly options: CoreStatsOptions) {
    this.lastMono = options.clock.monotonic();
  }

  /** Starts sampling the event-loop delay (only while someone watches). */
  enable(): void {
    if (this.enabled) return;
    this.enabled = true;
    this.loop.reset();
    this.loop.enable();
  }
  disable(): void {
    if (!this.enabled) return;
    this.enabled = false;
    this.loop.disable();
  }

  async sample(viewers: number): Promise<CoreSnapshot> {
    const { clock, metrics, version, startedMono } = this.options;
    const mono = clock.monotonic();
    const elapsedMs = Math.max(1, mono - this.lastMono);
    this.lastMono = mono;

    const cpu = process.cpuUsage();
    const cpuMicros = cpu.user - this.lastCpu.user + (cpu.system - this.lastCpu.system);
    this.lastCpu = cpu;

    const sys = cpuTimes();
    const dTotal = sys.total - this.lastSys.total;
    const dIdle = sys.idle - this.lastSys.idle;
    this.lastSys = sys;

    const counter = await metrics.httpRequests.get();
    const total = counter.values.reduce((sum, v) => sum + v.value, 0);
    const requestsPerSecond = this.lastRequests === null ? 0 : Math.max(0, total - this.lastRequests) / (elapsedMs / 1000);
    this.lastRequests = total;

    const lag = this.enabled && this.loop.count > 0 ? this.loop.percentile(99) / 1e6 : 0;
    this.loop.reset();
    const mem = process.memoryUsage();
    const round = (n: number, d = 1) => Math.round(n * 10 ** d) / 10 ** d;
    return {
      uptimeSeconds: Math.floor((mono - startedMono) / 1000),
      requestsPerSecond: round(requestsPerSecond, 2),
      processCpuPercent: round((cpuMicros / 1000 / elapsedMs) * 100),
      rssBytes: mem.rss,
      heapUsedBytes: mem.heapUsed,
      eventLoopLagMs: round(lag, 2),
      systemCpuPercent: dTotal > 0 ? round((1 - dIdle / dTotal) * 100) : 0,
      systemMemUsedBytes: totalmem() - freemem(),
      systemMemTotalBytes: totalmem(),
      viewers,
      version,
    };
  }
}

export interface SnapshotStreamOptions {
  registry: SnapshotRegistry;
  core: CoreStats;
  clock: Clock;
  logger: Logger;
  /** Tick period; 1000 ms by default (contract: 1 Hz). */
  intervalMs?: number;
}

/**
 * The console-wide live stream's engine: builds ONE snapshot per tick and hands it to every
 * viewer. The timer runs only while at least one viewer is subscribed.
 */
export class SnapshotStream {
  private readonly viewers = new Set<(snapshot: ConsoleSnapshot) => void>();
  private timer: TimerHandle | null = null;
  private seq = 0;
  private latest: ConsoleSnapshot | null = null;
  private building: Promise<ConsoleSnapshot> | null = null;
  /** How many snapshots were built (tests check it stays one per tick). */
  builds = 0;
  private serialized: { seq: number; time: number; admin: string | null; public: string | null } | null = null;

  constructor(private readonly options: SnapshotStreamOptions) {}

  viewerCount(): number {
    return this.viewers.size;
  }
  isTicking(): boolean {
    return this.timer !== null;
  }

  /** Adds a viewer; it gets the latest snapshot at once (built now if there is none yet). */
  subscribe(viewer: (snapshot: ConsoleSnapshot) => void): () => void {
    this.viewers.add(viewer);
    if (!this.timer) {
      this.options.core.enable();
      this.timer = this.options.clock.setInterval(() => void this.tick(), this.options.intervalMs ?? 1000);
    }
    void this.current().then((s) => {
      if (this.viewers.has(viewer)) viewer(s);
    });
    return () => {
      this.viewers.delete(viewer);
      if (this.viewers.size === 0) this.halt();
    };
  }

  /** The latest snapshot, or a fresh one when none was built in the last interval. */
  async current(): Promise<ConsoleSnapshot> {
    const interval = this.options.intervalMs ?? 1000;
    if (this.latest && this.options.clock.now() - this.latest.time < interval) return this.latest;
    return this.build();
  }

  /** Stops the timer and drops every viewer (console stop). Safe twice. */
  stop(): void {
    this.viewers.clear();
    this.halt();
  }

  private halt(): void {
    this.timer?.cancel();
    this.timer = null;
    this.options.core.disable();
  }

  /**
   * The snapshot as one viewer may see it, serialised once per snapshot and audience (so a
   * hundred viewers cost at most two JSON.stringify calls per tick).
   */
  serialize(snapshot: ConsoleSnapshot, admin: boolean, wrap: (s: ConsoleSnapshot) => unknown = (s) => s): string {
    const key = admin ? 'admin' : 'public';
    if (this.serialized?.seq !== snapshot.seq || this.serialized.time !== snapshot.time) this.serialized = { seq: snapshot.seq, time: snapshot.time, admin: null, public: null };
    const cached = this.serialized[key];
    if (cached !== null) return cached;
    const hidden = this.options.registry.adminOnly();
    let view = snapshot;
    if (!admin && Object.keys(snapshot.services).some((n) => hidden.has(n))) {
      view = { ...snapshot, services: Object.fromEntries(Object.entries(snapshot.services).filter(([n]) => !hidden.has(n))) };
    }
    const text = JSON.stringify(wrap(view));
    this.serialized[key] = text;
    return text;
  }

  private async tick(): Promise<void> {
    let snapshot: ConsoleSnapshot;
    try {
      snapshot = await this.build();
    } catch (err) {
      this.options.logger.warn({ err }, 'snapshot build failed');
      return;
    }
    for (const viewer of this.viewers) {
      try {
        viewer(snapshot);
      } catch (err) {
        this.options.logger.warn({ err }, 'snapshot viewer failed');
      }
    }
  }

  private build(): Promise<ConsoleSnapshot> {
    // Concurrent callers (a tick and a new viewer) share one build.
    if (this.building) return this.building;
    this.building = (async () => {
      try {
        this.builds += 1;
        const core = await this.options.core.sample(this.viewers.size);
        const { services, errors } = this.options.registry.collect();
        const snapshot: ConsoleSnapshot = { time: this.options.clock.now(), seq: ++this.seq, core, services };
        if (Object.keys(errors).length > 0) snapshot.errors = errors;
        this.latest = snapshot;
        return snapshot;
      } finally {
        this.building = null;
      }
    })();
    return this.building;
  }
}
