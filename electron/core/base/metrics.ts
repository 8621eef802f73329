import { monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/**
 * The console's Prometheus registry (one per Console, never prom-client's global one) and the
 * event-loop delay monitor that /threads and the metrics share.
 */
export class MetricsRegistry {
  readonly registry = new Registry();
  readonly httpRequests: Counter<'method' | 'route' | 'status'>;
  readonly httpDuration: Histogram<'method' | 'route'>;
  /** Set by the console's `metrics-uptime` periodic task. */
  readonly uptime: Gauge;
  private readonly loopDelay: IntervalHistogram;
  private readonly resetHooks = new Set<() => void>();

  constructor() {
    // The conventional names (process_*, nodejs_*), so stock dashboards and alert rules work.
    collectDefaultMetrics({ register: this.registry });
    this.loopDelay = monitorEventLoopDelay({ resolution: 10 });
    this.httpRequests = new Counter({
      name: 'console_http_requests_total',
      help: 'HTTP requests handled, by method, route pattern and status code',
      labelNames: ['method', 'route', 'status'],
      registers: [this.registry],
    });
    this.httpDuration = new Histogram({
      name: 'console_http_request_duration_seconds',
      help: 'HTTP request duration by method and route pattern',
      labelNames: ['method', 'route'],
      buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: [this.registry],
    });
    this.uptime = new Gauge({ name: 'console_uptime_seconds', help: 'Seconds since the console started', registers: [this.registry] });
    const loop = this.loopDelay;
    new Gauge({
      name: 'console_event_loop_lag_p99_seconds',
      help: 'p99 event-loop delay since the last reset of the monitor (seconds)',
      registers: [this.registry],
      collect() {
        this.set(loop.percentile(99) / 1e9);
      },
    });
  }

  /** Starts sampling the event-loop delay. */
  start(): void {
    this.loopDelay.enable();
  }
  stop(): void {
    this.loopDelay.disable();
  }

  /** Event-loop delay in milliseconds (p50, p99, max) since the last reset. */
  eventLoopLag(): { p50: number; p99: number; max: number; mean: number } {
    const h = this.loopDelay;
    const ms = (ns: number) => Math.round((ns / 1e6) * 100) / 100;
    return { p50: ms(h.percentile(50)), p99: ms(h.percentile(99)), max: ms(h.max), mean: ms(Number.isNaN(h.mean) ? 0 : h.mean) };
  }
  resetEventLoopLag(): void {
    this.loopDelay.reset();
  }

  /** A service registers a hook that re-populates its live gauges after POST /metrics/reset. */
  onReset(hook: () => void): () => void {
    this.resetHooks.add(hook);
    return () => this.resetHooks.delete(hook);
  }

  /** Resets every metric to its initial state, then lets services re-populate live gauges. */
  reset(): void {
    this.registry.resetMetrics();
    for (const hook of this.resetHooks) hook();
  }

  async text(): Promise<string> {
    return this.registry.metrics();
  }
  get contentType(): string {
    return this.registry.contentType;
  }
}
