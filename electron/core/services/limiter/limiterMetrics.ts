import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import { PRIORITIES, type Priority } from '../../../../shared/contracts/priority.js';
import { RETREAT_STATE_CODE } from './retreatController.js';
import type { Outcome, ProviderLimiter } from './providerLimiter.js';

/** Contract labels are upper-case priorities. */
export const PRIORITY_LABEL: Readonly<Record<Priority, string>> = { urgent: 'URGENT', high: 'HIGH', normal: 'NORMAL', low: 'LOW' };

/**
 * The limiter's Prometheus series (contract §11.1: 10 base + 3 retreat, plus transitions, drops
 * and invalid priorities). Every series is labelled by `provider` (a configured name, so bounded),
 * never by model id. Gauges read the live limiters when scraped.
 */
export class LimiterMetrics {
  readonly requests: Counter<'provider' | 'priority' | 'status'>;
  readonly queueLatency: Histogram<'provider' | 'priority'>;
  readonly upstreamLatency: Histogram<'provider'>;
  readonly upstreamErrors: Counter<'provider' | 'status_code'>;
  readonly passthrough: Counter<'provider'>;
  readonly transitions: Counter<'provider' | 'from' | 'to'>;
  readonly drops: Counter<'provider' | 'reason'>;
  readonly invalidPriority: Counter<'provider'>;

  constructor(
    registry: Registry,
    limiters: () => Iterable<ProviderLimiter>,
    uptimeSeconds: () => number,
  ) {
    const reg = [registry];
    const add = <T extends Counter<string> | Gauge<string> | Histogram<string>>(m: T): T => m;
    this.requests = add(
      new Counter({ name: 'sidecar_requests_total', help: 'Limiter requests by provider, priority and outcome', labelNames: ['provider', 'priority', 'status'], registers: reg }),
    );
    add(
      new Gauge({
        name: 'sidecar_tokens_available',
        help: 'Tokens currently in the bucket',
        labelNames: ['provider'],
        registers: reg,
        collect() {
          this.reset(); // a removed provider's series disappear
          for (const l of limiters()) this.set({ provider: l.name }, l.bucket.tokens());
        },
      }),
    );
    add(
      new Gauge({
        name: 'sidecar_tokens_rate',
        help: 'Bucket refill rate in tokens per minute',
        labelNames: ['provider'],
        registers: reg,
        collect() {
          this.reset(); // a removed provider's series disappear
          for (const l of limiters()) this.set({ provider: l.name }, l.bucket.ratePerMinute);
        },
      }),
    );
    add(
      new Gauge({
        name: 'sidecar_queue_depth',
        help: 'Queued requests by priority',
        labelNames: ['provider', 'priority'],
        registers: reg,
        collect() {
          this.reset(); // a removed provider's series disappear
          for (const l of limiters()) for (const p of PRIORITIES) this.set({ provider: l.name, priority: PRIORITY_LABEL[p] }, l.depth(p));
        },
      }),
    );
    add(
      new Gauge({
        name: 'sidecar_queue_max_size',
        help: 'Queue capacity (queue_max_size): the queue-full alert compares the depth with it',
        labelNames: ['provider'],
        registers: reg,
        collect() {
          this.reset(); // a removed provider's series disappear
          for (const l of limiters()) this.set({ provider: l.name }, l.limits.queue_max_size);
        },
      }),
    );
    this.queueLatency = add(
      new Histogram({
        name: 'sidecar_queue_latency_seconds',
        help: 'Time spent waiting for a token',
        labelNames: ['provider', 'priority'],
        buckets: [0.01, 0.05, 0.1, 0.5, 1, 2, 5, 10, 30, 60, 120],
        registers: reg,
      }),
    );
    this.upstreamLatency = add(
      new Histogram({
        name: 'sidecar_upstream_latency_seconds',
        help: 'Upstream time to response headers',
        labelNames: ['provider'],
        buckets: [0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600],
        registers: reg,
      }),
    );
    this.upstreamErrors = add(
      new Counter({ name: 'sidecar_upstream_errors_total', help: 'Non-2xx upstream responses and transport failures (status_code "transport")', labelNames: ['provider', 'status_code'], registers: reg }),
    );
    this.passthrough = add(new Counter({ name: 'sidecar_fallback_passthrough_total', help: 'Queue-full passthroughs', labelNames: ['provider'], registers: reg }));
    add(
      new Gauge({
        name: 'sidecar_health_status',
        help: '1 healthy, 0 after an upstream transport error until the next response',
        labelNames: ['provider'],
        registers: reg,
        collect() {
          this.reset(); // a removed provider's series disappear
          for (const l of limiters()) this.set({ provider: l.name }, l.healthy ? 1 : 0);
        },
      }),
    );
    add(
      new Gauge({
        name: 'sidecar_uptime_seconds',
        help: 'Seconds since the limiter started',
        registers: reg,
        collect() {
          this.set(uptimeSeconds());
        },
      }),
    );
    add(
      new Gauge({
        name: 'sidecar_retreat_state',
        help: 'Retreat state: 0 NORMAL, 1 RETREAT, 2 RECOVER',
        labelNames: ['provider'],
        registers: reg,
        collect() {
          this.reset(); // a removed provider's series disappear
          for (const l of limiters()) this.set({ provider: l.name }, RETREAT_STATE_CODE[l.retreat.state]);
        },
      }),
    );
    add(
      new Gauge({
        name: 'sidecar_effective_rate_rpm',
        help: 'Post-retreat rate in requests per minute',
        labelNames: ['provider'],
        registers: reg,
        collect() {
          this.reset(); // a removed provider's series disappear
          for (const l of limiters()) this.set({ provider: l.name }, l.retreat.rpm);
        },
      }),
    );
    add(
      new Gauge({
        name: 'sidecar_upstream_429_rate',
        help: '429 share of upstream responses in the retreat window (0-1)',
        labelNames: ['provider'],
        registers: reg,
        collect() {
          this.reset(); // a removed provider's series disappear
          for (const l of limiters()) this.set({ provider: l.name }, l.retreat.ratio('retreat'));
        },
      }),
    );
    this.transitions = add(
      new Counter({ name: 'sidecar_retreat_transitions_total', help: 'Retreat state changes and rate steps', labelNames: ['provider', 'from', 'to'], registers: reg }),
    );
    this.drops = add(
      new Counter({
        name: 'sidecar_dropped_total',
        help: 'Requests that left the queue without a token (timeout, queue_full, dropped, cancelled, stopped)',
        labelNames: ['provider', 'reason'],
        registers: reg,
      }),
    );
    this.invalidPriority = add(
      new Counter({ name: 'sidecar_invalid_priority_total', help: 'Requests whose X-Priority was not one of the four levels (served as NORMAL)', labelNames: ['provider'], registers: reg }),
    );
  }

  outcome(provider: string, priority: Priority, status: Outcome): void {
    this.requests.inc({ provider, priority: PRIORITY_LABEL[priority], status });
  }
}
